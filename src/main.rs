//! The `lienthong` command: everything is in [`lienthong::cli`].

/// mimalloc: the request path allocates many small, short-lived objects (JSON values,
/// headers, audit entries), where it beats glibc's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    lienthong::cli::run().await
}
