//! The benchmarks' framework floor (scripts/bench/): the HTTP stack lienthong is built on
//! (tokio, hyper through axum, the system allocator), answering every `GET` with a fixed body and doing
//! nothing else. Pinned to the same core as lienthong, it shows how much of a cache hit's
//! cost is the connection, parsing and writing any server on this stack pays.
//!
//! `cargo run --release --example floor -- --addr 127.0.0.1:28083 --body answer.json`

use axum::http::header;
use axum::response::IntoResponse;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = "127.0.0.1:28083".to_owned();
    let mut body_file = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => addr = args.next().ok_or("--addr needs a value")?,
            "--body" => body_file = Some(args.next().ok_or("--body needs a file")?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let body = bytes::Bytes::from(std::fs::read(body_file.ok_or("--body is required")?)?);
    let answer = move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body).into_response() }
    };
    let app = axum::Router::new().fallback(answer);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("floor listening on {addr}");
    axum::serve(listener, app).await?;
    Ok(())
}
