//! deploy/: the Prometheus config and alert rules pass promtool (syntax and unit tests), a
//! live `/metrics` passes `promtool check metrics`, and every metric the rules and the
//! Grafana dashboard name exists in it — so neither can drift from the code.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::process::{Command, Stdio};

fn promtool() -> bool {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("LIENTHONG_CI").is_err(),
            "promtool is required under LIENTHONG_CI"
        );
        eprintln!("skipped: promtool is not installed (apt-get install prometheus)");
    }
    found
}

fn run(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().expect("promtool ends");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Metric names an expression refers to (the `lienthong_*` words).
fn names_in(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("lienthong_"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn prometheus_rules_and_grafana_dashboard_match_the_metrics_served() {
    if !promtool() {
        return;
    }
    for args in [
        &["check", "config", "prometheus.yml"][..],
        &["check", "rules", "alerts.yml"],
        &["test", "rules", "alerts_test.yml"],
    ] {
        let (ok, out) = run(args, None);
        assert!(ok, "promtool {}: {out}", args.join(" "));
    }

    // A live /metrics after some traffic, so every family has series.
    let h = Harness::start().await;
    let id = h.sample("population.citizen");
    h.get(&format!("/v1/citizens/{id}")).await;
    h.get(&format!("/v1/citizens/{id}")).await;
    h.get("/v1/citizens/123").await;
    let text = h
        .http
        .get(format!("http://{}/metrics", h.gateway.admin_addr))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    let (ok, out) = run(&["check", "metrics"], Some(&text));
    assert!(ok, "promtool check metrics: {out}");

    let served: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .flat_map(|l| {
            let mut parts = l.split(' ');
            let name = parts.next().unwrap_or_default().to_owned();
            let kind = parts.next().unwrap_or_default();
            let mut all = vec![name.clone()];
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    all.push(format!("{name}{suffix}"));
                }
            }
            all
        })
        .collect();
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/alerts.yml"
    ))
    .expect("rules");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana/lienthong.json"
        ))
        .expect("dashboard"),
    )
    .expect("dashboard is JSON");
    let mut named = names_in(&rules);
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            named.extend(names_in(target["expr"].as_str().expect("expr")));
        }
    }
    assert!(named.len() >= 10, "{named:?}");
    let unknown: Vec<_> = named.difference(&served).collect();
    assert!(
        unknown.is_empty(),
        "named in deploy/ but not served: {unknown:?}"
    );
}
