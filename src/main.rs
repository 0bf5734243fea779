//! The `lienthong` command: everything is in [`lienthong::cli`].
//!
//! The system allocator: measured against mimalloc on the cache-hit load (docs/BENCHMARKS.md),
//! mimalloc was about 6% faster and held 12 MB more at idle (23 MB with transparent huge
//! pages), which the memory target does not leave room for.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    lienthong::cli::run().await
}
