//! `synod`: runs one node of a Synod cluster (see `synod --help`).

// Every decoded command, reply and message buffer is a short-lived
// allocation; glibc's malloc was ~16 % of the machine's CPU under write
// load. jemalloc, side by side in six pairs of 64-client write runs: 5–16 %
// more writes, lower p99, and ~15 % less RSS (docs/bench/perf.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    synod_node::cli::main()
}
