//! The test network: one namespace per node (`synod-j-nN`, address
//! `10.77.0.N/24` on its `eth0`), veth pairs into a bridge `synod-jbr0` in the
//! root namespace that holds `10.77.0.254` for the clients. Faults live
//! inside the node namespaces (iptables rules, netem qdiscs), so deleting the
//! namespaces removes every one of them; nothing touches the root
//! namespace's firewall.

use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

pub const PREFIX: &str = "synod-j-";
pub const BRIDGE: &str = "synod-jbr0";
const VETH_PREFIX: &str = "synod-jv";
const BRIDGE_IP: &str = "10.77.0.254/24";
const SUBNET_PREFIX: &str = "10.77.0.";

/// Node `i` (0-based) lives at `10.77.0.(i+1)`.
pub fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, (i + 1) as u8)
}

pub fn ns_name(i: usize) -> String {
    format!("{PREFIX}n{}", i + 1)
}

/// Runs a command, failing with its stderr if it exits non-zero.
pub fn run(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command and ignores failure (teardown of things that may be gone).
fn run_quiet(args: &[&str]) {
    let _ = run(args);
}

/// Runs a command inside node `i`'s namespace.
pub fn in_ns(i: usize, args: &[&str]) -> Result<String> {
    let ns = ns_name(i);
    let mut full = vec!["ip", "netns", "exec", ns.as_str()];
    full.extend_from_slice(args);
    run(&full)
}

pub fn check_tools() -> Result<()> {
    for tool in [&["ip", "-V"][..], &["iptables", "-V"], &["tc", "-V"]] {
        run(tool).with_context(|| {
            format!(
                "`{}` is needed (apt-get install iproute2 iptables)",
                tool[0]
            )
        })?;
    }
    if unsafe { libc::geteuid() } != 0 {
        bail!("synod-jepsen must run as root (network namespaces, iptables)");
    }
    Ok(())
}

/// Creates the bridge and `n` namespaces. Refuses if 10.77.0.0/24 is in
/// use by anything that is not ours.
pub fn setup(n: usize) -> Result<()> {
    let addrs = run(&["ip", "-o", "-4", "addr", "show"])?;
    if let Some(line) = addrs.lines().find(|l| l.contains(SUBNET_PREFIX)) {
        bail!("10.77.0.0/24 is already in use on this host: {line}");
    }
    run(&["ip", "link", "add", BRIDGE, "type", "bridge"])?;
    run(&["ip", "addr", "add", BRIDGE_IP, "dev", BRIDGE])?;
    run(&["ip", "link", "set", BRIDGE, "up"])?;
    for i in 0..n {
        let ns = ns_name(i);
        let host = format!("{VETH_PREFIX}{}", i + 1);
        let peer = format!("{VETH_PREFIX}{}p", i + 1);
        let ip = format!("{}/24", node_ip(i));
        run(&["ip", "netns", "add", &ns])?;
        run(&[
            "ip", "link", "add", &host, "type", "veth", "peer", "name", &peer,
        ])?;
        run(&["ip", "link", "set", &peer, "netns", &ns])?;
        in_ns(i, &["ip", "link", "set", &peer, "name", "eth0"])?;
        in_ns(i, &["ip", "addr", "add", &ip, "dev", "eth0"])?;
        in_ns(i, &["ip", "link", "set", "eth0", "up"])?;
        in_ns(i, &["ip", "link", "set", "lo", "up"])?;
        run(&["ip", "link", "set", &host, "master", BRIDGE])?;
        run(&["ip", "link", "set", &host, "up"])?;
    }
    Ok(())
}

/// Removes everything named with our prefixes: kills the processes left in
/// our namespaces (only ever our own synod nodes), deletes the namespaces
/// (and with them their veth ends, iptables rules and qdiscs), the bridge
/// and any stray veth. Safe to run at any time; returns what it removed.
pub fn cleanup() -> Vec<String> {
    let mut removed = Vec::new();
    let list = run(&["ip", "netns", "list"]).unwrap_or_default();
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if !name.starts_with(PREFIX) {
            continue;
        }
        let pids = run(&["ip", "netns", "pids", name]).unwrap_or_default();
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: plain kill(2) on a pid inside one of our namespaces.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        // The kernel needs a moment to release a namespace's last process.
        for _ in 0..20 {
            if run(&["ip", "netns", "del", name]).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        removed.push(format!("netns {name}"));
    }
    let links = run(&["ip", "-o", "link", "show"]).unwrap_or_default();
    for line in links.lines() {
        // "7: synod-jv1@if6: <...>"
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if name.starts_with(VETH_PREFIX) || name == BRIDGE {
            run_quiet(&["ip", "link", "del", name]);
            removed.push(format!("link {name}"));
        }
    }
    removed
}

/// Drops traffic from node `from` to node `to` (inside `to`'s namespace for
/// INPUT and `from`'s for OUTPUT), so one direction is cut on both ends.
pub fn drop_one_way(from: usize, to: usize) -> Result<()> {
    let src = node_ip(from).to_string();
    let dst = node_ip(to).to_string();
    in_ns(
        to,
        &[
            "iptables", "-w", "5", "-A", "INPUT", "-s", &src, "-j", "DROP",
        ],
    )?;
    in_ns(
        from,
        &[
            "iptables", "-w", "5", "-A", "OUTPUT", "-d", &dst, "-j", "DROP",
        ],
    )?;
    Ok(())
}

/// Drops node `target`'s incoming traffic from `from` only (the other end
/// keeps hearing `target`).
pub fn drop_input(target: usize, from: usize) -> Result<()> {
    let src = node_ip(from).to_string();
    in_ns(
        target,
        &[
            "iptables", "-w", "5", "-A", "INPUT", "-s", &src, "-j", "DROP",
        ],
    )?;
    Ok(())
}

pub fn delay(i: usize, ms: u64, jitter_ms: u64) -> Result<()> {
    let d = format!("{ms}ms");
    let j = format!("{jitter_ms}ms");
    in_ns(
        i,
        &[
            "tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", &d, &j,
        ],
    )?;
    Ok(())
}

/// Removes every rule and qdisc in node `i`'s namespace.
pub fn heal(i: usize) -> Result<()> {
    in_ns(i, &["iptables", "-w", "5", "-F", "INPUT"])?;
    in_ns(i, &["iptables", "-w", "5", "-F", "OUTPUT"])?;
    let qdisc = in_ns(i, &["tc", "qdisc", "show", "dev", "eth0"])?;
    if qdisc.contains("netem") {
        in_ns(i, &["tc", "qdisc", "del", "dev", "eth0", "root"])?;
    }
    Ok(())
}

/// Whether the kernel has `sch_netem` (tried on node `i`'s loopback).
pub fn netem_supported(i: usize) -> bool {
    let ok = in_ns(
        i,
        &[
            "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
        ],
    )
    .is_ok();
    if ok {
        let _ = in_ns(i, &["tc", "qdisc", "del", "dev", "lo", "root"]);
    }
    ok
}
