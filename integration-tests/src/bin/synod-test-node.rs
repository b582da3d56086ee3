//! The `synod` binary, built inside this package so tests can find it.

fn main() -> std::process::ExitCode {
    synod_node::cli::main()
}
