//! Which node of which cluster a data directory belongs to.
//!
//! `synod init` writes `IDENTITY` beside the acceptor log, and every start
//! checks it, so a data directory copied from another node, or a config
//! whose `data_root` now points at another cluster's files, is refused
//! instead of run: another node's promises are not this node's.

use crate::StorageError;
use std::io::Write;
use std::path::{Path, PathBuf};

const FILE: &str = "IDENTITY";
const MAGIC: &str = "synod data directory v1";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDirIdentity {
    pub cluster_id: String,
    pub node: String,
}

impl DataDirIdentity {
    pub fn new(cluster_id: &str, node: &str) -> Self {
        DataDirIdentity {
            cluster_id: cluster_id.to_string(),
            node: node.to_string(),
        }
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join(FILE)
    }

    fn render(&self) -> String {
        format!(
            "{MAGIC}\ncluster_id={}\nnode={}\n",
            self.cluster_id, self.node
        )
    }

    /// What `dir` says it belongs to, if it says anything.
    pub fn read(dir: &Path) -> Result<Option<DataDirIdentity>, StorageError> {
        let path = Self::path(dir);
        let bad = |reason: &str| StorageError::Identity {
            path: path.clone(),
            reason: reason.to_string(),
        };
        let text = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StorageError::Io { path, source }),
        };
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(bad("not a Synod identity file"));
        }
        let mut field = |key: &str| {
            lines
                .next()
                .and_then(|l| l.strip_prefix(key))
                .and_then(|v| v.strip_prefix('='))
                .map(str::to_string)
                .ok_or_else(|| bad(&format!("missing {key}")))
        };
        let cluster_id = field("cluster_id")?;
        let node = field("node")?;
        Ok(Some(DataDirIdentity { cluster_id, node }))
    }

    /// Writes the identity durably (temporary file, fsync, rename, fsync
    /// of the directory), replacing none: an existing one is an error.
    pub fn write(&self, dir: &Path) -> Result<(), StorageError> {
        let path = Self::path(dir);
        if path.exists() {
            return Err(StorageError::Exists { path });
        }
        let tmp = dir.join(format!("{FILE}.new"));
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| StorageError::Io { path: p, source }
        };
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(self.render().as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))
    }

    /// Refuses a directory that names another cluster or node.
    pub fn check(&self, dir: &Path) -> Result<(), StorageError> {
        match Self::read(dir)? {
            Some(found) if found != *self => Err(StorageError::Identity {
                path: Self::path(dir),
                reason: format!(
                    "belongs to node {} of cluster {:?}, not node {} of cluster {:?}",
                    found.node, found.cluster_id, self.node, self.cluster_id
                ),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_and_a_stranger_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let me = DataDirIdentity::new("prod", "n1");
        assert_eq!(DataDirIdentity::read(dir.path()).unwrap(), None);
        me.write(dir.path()).unwrap();
        assert_eq!(DataDirIdentity::read(dir.path()).unwrap(), Some(me.clone()));
        me.check(dir.path()).unwrap();
        assert!(matches!(
            me.write(dir.path()),
            Err(StorageError::Exists { .. })
        ));
        let other_node = DataDirIdentity::new("prod", "n2").check(dir.path());
        assert!(other_node
            .unwrap_err()
            .to_string()
            .contains("belongs to node n1"));
        let other_cluster = DataDirIdentity::new("test", "n1").check(dir.path());
        assert!(other_cluster.is_err());
        std::fs::write(DataDirIdentity::path(dir.path()), "garbage\n").unwrap();
        assert!(DataDirIdentity::read(dir.path()).is_err());
    }
}
