//! `synod`: runs one node of a Synod cluster (see `synod --help`).

fn main() -> std::process::ExitCode {
    synod_node::cli::main()
}
