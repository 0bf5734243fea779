//! A small load generator for the benchmarks (scripts/bench/): what wrk and h2load do not
//! give. Three modes:
//! - **open loop**: `--rate R --duration S`, requests at a fixed rate, latency measured from
//!   when each was due (no coordinated omission), for p50/p99 at a given load;
//! - **closed loop**: `--connections C --duration S`, as fast as C connections go;
//! - **burst**: `--burst N`, N requests at once (a herd on one key).
//!
//! It prints one JSON object: requests, statuses, throughput, latency percentiles.
//!
//! `cargo run --release --example loadgen -- --url 'http://127.0.0.1:8080/v1/citizens/{key}'
//!   --keys keys.txt --header 'Authorization: Bearer demo-onestop-key' --rate 500 --duration 10`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Args {
    url: String,
    keys: Vec<String>,
    headers: Vec<(String, String)>,
    method: reqwest::Method,
    body: Option<String>,
    rate: Option<f64>,
    connections: usize,
    duration: Duration,
    burst: Option<usize>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        url: String::new(),
        keys: vec![String::new()],
        headers: Vec::new(),
        method: reqwest::Method::GET,
        body: None,
        rate: None,
        connections: 16,
        duration: Duration::from_secs(10),
        burst: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value()?,
            "--key" => args.keys = vec![value()?],
            "--keys" => {
                let path = value()?;
                args.keys = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{path}: {e}"))?
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            "--header" => {
                let h = value()?;
                let (k, v) = h.split_once(':').ok_or("a header is 'Name: value'")?;
                args.headers
                    .push((k.trim().to_owned(), v.trim().to_owned()));
            }
            "--method" => {
                args.method = value()?.parse().map_err(|_| "not an HTTP method")?;
            }
            "--body" => args.body = Some(value()?),
            "--rate" => args.rate = Some(value()?.parse().map_err(|_| "--rate: a number")?),
            "--connections" => {
                args.connections = value()?.parse().map_err(|_| "--connections: a number")?
            }
            "--duration" => {
                args.duration =
                    Duration::from_secs_f64(value()?.parse().map_err(|_| "--duration: seconds")?)
            }
            "--burst" => args.burst = Some(value()?.parse().map_err(|_| "--burst: a number")?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.url.is_empty() || args.keys.is_empty() {
        return Err("--url (with {key}) and --key or --keys are needed".into());
    }
    Ok(args)
}

#[derive(Default)]
struct Results {
    latencies_us: Vec<u64>,
    statuses: BTreeMap<String, u64>,
}

async fn one(
    client: &reqwest::Client,
    args: &Args,
    key: &str,
    due: Instant,
    results: &Mutex<Results>,
) {
    let mut request = client.request(args.method.clone(), args.url.replace("{key}", key));
    for (k, v) in &args.headers {
        request = request.header(k, v);
    }
    if let Some(body) = &args.body {
        request = request.body(body.replace("{key}", key));
    }
    let status = match request.send().await {
        Ok(r) => {
            let status = r.status().as_u16().to_string();
            let _ = r.bytes().await;
            status
        }
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(_) => "error".into(),
    };
    let took = due.elapsed().as_micros() as u64;
    let mut r = results.lock().expect("results");
    r.latencies_us.push(took);
    *r.statuses.entry(status).or_default() += 1;
}

#[tokio::main]
async fn main() {
    lienthong::certs::install_crypto();
    let args = match parse() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let results = Arc::new(Mutex::new(Results::default()));
    let started = Instant::now();
    if let Some(n) = args.burst {
        // Open n connections' worth of requests at once.
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let (client, args, results) = (client.clone(), args.clone(), results.clone());
                tokio::spawn(async move {
                    let key = args.keys[i % args.keys.len()].clone();
                    one(&client, &args, &key, Instant::now(), &results).await
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    } else if let Some(rate) = args.rate {
        let interval = Duration::from_secs_f64(1.0 / rate);
        let total = (args.duration.as_secs_f64() * rate) as usize;
        let mut tasks = Vec::with_capacity(total);
        for i in 0..total {
            let due = started + interval * i as u32;
            tokio::time::sleep_until(due.into()).await;
            let (client, args, results) = (client.clone(), args.clone(), results.clone());
            tasks.push(tokio::spawn(async move {
                let key = args.keys[i % args.keys.len()].clone();
                one(&client, &args, &key, due, &results).await
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    } else {
        let end = started + args.duration;
        let tasks: Vec<_> = (0..args.connections)
            .map(|c| {
                let (client, args, results) = (client.clone(), args.clone(), results.clone());
                tokio::spawn(async move {
                    let mut i = c;
                    while Instant::now() < end {
                        let key = args.keys[i % args.keys.len()].clone();
                        one(&client, &args, &key, Instant::now(), &results).await;
                        i += args.connections;
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut r = results.lock().expect("results");
    r.latencies_us.sort_unstable();
    let n = r.latencies_us.len();
    let pct = |p: f64| -> f64 {
        if n == 0 {
            return 0.0;
        }
        let i = ((p / 100.0) * n as f64).ceil() as usize;
        r.latencies_us[i.clamp(1, n) - 1] as f64 / 1000.0
    };
    let out = serde_json::json!({
        "requests": n,
        "seconds": elapsed,
        "rps": n as f64 / elapsed,
        "statuses": r.statuses,
        "p50_ms": pct(50.0),
        "p90_ms": pct(90.0),
        "p99_ms": pct(99.0),
        "max_ms": pct(100.0),
    });
    println!("{out}");
}
