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
        &["check", "config", "compose.yml"],
        &["check", "rules", "alerts.yml"],
        &["test", "rules", "alerts_test.yml"],
    ] {
        let (ok, out) = run(args, None);
        assert!(ok, "promtool {}: {out}", args.join(" "));
    }

    // A live /metrics after some traffic, so every family has series; with quotas shared
    // through the test Redis, so the shared limiter's series are there too.
    let redis = redis_url();
    let prefix = unique("t_deploy");
    let shared = redis
        .clone()
        .map(|url| format!("\n[redis]\nurl = \"{url}\"\nkey_prefix = \"{prefix}:\"\n"));
    let h = Harness::start_with(move |name, text| match (name, &shared) {
        ("gateway.toml", Some(section)) => text + section,
        _ => text,
    })
    .await;
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
    let unknown: Vec<_> = named
        .difference(&served)
        // Without a test Redis (outside CI) the shared limiter's series are not served.
        .filter(|n| redis.is_some() || !n.starts_with("lienthong_quota_store"))
        .collect();
    assert!(
        unknown.is_empty(),
        "named in deploy/ but not served: {unknown:?}"
    );
}

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");

/// A YAML file's documents as JSON (through Python's yaml module, which Debian ships).
fn yaml(path: &str) -> Vec<serde_json::Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
            path,
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn python_yaml() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import yaml"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("LIENTHONG_CI").is_err(),
            "python3 with yaml is required under LIENTHONG_CI"
        );
        eprintln!("skipped: python3 -c 'import yaml' fails (apt-get install python3-yaml)");
    }
    found
}

/// Every `*_env = "NAME"` the deployment config reads its secrets from.
fn secret_vars() -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    for file in ["gateway.toml", "connectors.toml"] {
        let text = std::fs::read_to_string(format!("{DEPLOY}/config/{file}")).expect("config");
        for line in text.lines() {
            if let Some((key, value)) = line.split_once('=')
                && key.trim().ends_with("_env")
            {
                vars.insert(value.trim().trim_matches('"').to_owned());
            }
        }
    }
    vars
}

#[test]
fn the_deployment_config_validates_with_its_secrets_from_the_environment() {
    let vars = secret_vars();
    for v in [
        "LIENTHONG_POSTGRES_URL",
        "LIENTHONG_REDIS_URL",
        "LIENTHONG_SUBJECT_KEY",
        "LIENTHONG_SIGNING_KEY",
        "LIENTHONG_POPULATION_SECRET",
        "LIENTHONG_BUSINESS_TOKEN",
    ] {
        assert!(vars.contains(v), "{v} in {vars:?}");
    }
    let check = |env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_lienthong"))
            .args(["check-config", "--config"])
            .arg(format!("{DEPLOY}/config/gateway.toml"))
            .envs(env.iter().copied())
            .output()
            .expect("runs");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let secrets = [
        (
            "LIENTHONG_POSTGRES_URL",
            "postgres://lienthong@postgres:5432/lienthong",
        ),
        ("LIENTHONG_REDIS_URL", "redis://redis:6379/0"),
        (
            "LIENTHONG_SUBJECT_KEY",
            "Fl5JRkQd2jhRGdoPOCXGPCiBygsi+E03+R1LyWMhVC8=",
        ),
        (
            "LIENTHONG_SIGNING_KEY",
            "TmO4lEWqiimgrM4MtiLB8n6/LLmGdhpHZhX0kQjgO8s=",
        ),
        ("LIENTHONG_POPULATION_SECRET", "x"),
        ("LIENTHONG_BUSINESS_TOKEN", "y"),
    ];
    let (ok, out) = check(&secrets);
    assert!(ok, "{out}");
    // Without them, each missing one is named.
    let (ok, out) = check(&[]);
    assert!(!ok);
    assert!(out.contains("LIENTHONG_POSTGRES_URL is not set"), "{out}");
    assert!(out.contains("LIENTHONG_REDIS_URL is not set"), "{out}");
}

#[test]
fn kubernetes_and_compose_fit_the_gateway_config() {
    if !python_yaml() {
        return;
    }
    let vars = secret_vars();
    let docs: Vec<serde_json::Value> = std::fs::read_dir(format!("{DEPLOY}/k8s"))
        .expect("k8s")
        .flat_map(|e| yaml(e.expect("entry").path().to_str().expect("path")))
        .collect();
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name} in deploy/k8s"))
            .clone()
    };
    let deployment = find("Deployment", "lienthong");
    let pod = &deployment["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    let container = &pod["spec"]["containers"][0];
    // The ports the config listens on, named as the probes and the Service use them.
    let gateway: toml::Table = std::fs::read_to_string(format!("{DEPLOY}/config/gateway.toml"))
        .expect("config")
        .parse()
        .expect("toml");
    let port = |addr: &str| -> u64 {
        gateway["listen"][addr]
            .as_str()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .expect("a port")
    };
    let ports: Vec<(String, u64)> = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or("").to_owned(),
                p["containerPort"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("lookup".to_owned(), port("lookup")),
            ("admin".to_owned(), port("admin"))
        ]
    );
    for (probe, path) in [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ] {
        assert_eq!(container[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], "admin", "{probe}");
    }
    assert_eq!(
        container["args"],
        serde_json::json!(["serve", "--config", "/etc/lienthong/gateway.toml"])
    );
    // Every secret the config reads is in the Secret the pods load.
    let secret = find("Secret", "lienthong-secrets");
    assert_eq!(
        container["envFrom"][0]["secretRef"]["name"],
        "lienthong-secrets"
    );
    for v in &vars {
        assert!(
            secret["stringData"].get(v).is_some(),
            "{v} missing from the Secret"
        );
    }
    // The fallback share divides by the most replicas the autoscaler may run.
    let hpa = find("HorizontalPodAutoscaler", "lienthong");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "lienthong");
    let replicas = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "LIENTHONG_REDIS__REPLICAS")
        .expect("LIENTHONG_REDIS__REPLICAS")["value"]
        .clone();
    assert_eq!(replicas, hpa["spec"]["maxReplicas"].to_string());
    // The Service and the disruption budget select these pods.
    for (kind, selector) in [
        ("Service", &find("Service", "lienthong")["spec"]["selector"]),
        (
            "PodDisruptionBudget",
            &find("PodDisruptionBudget", "lienthong")["spec"]["selector"]["matchLabels"],
        ),
    ] {
        for (k, v) in selector.as_object().expect("selector") {
            assert_eq!(&labels[k], v, "{kind} selects {k}");
        }
    }
    // Drain fits in the grace period.
    let drain = gateway["listen"]["drain_delay_ms"]
        .as_integer()
        .expect("drain") as u64;
    let grace = pod["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace");
    assert!(
        drain / 1000 + 10 <= grace,
        "drain {drain} ms, grace {grace} s"
    );
    // The kustomization names files that exist and renders, where kubectl is installed.
    let kustomization = &yaml(&format!("{DEPLOY}/kustomization.yaml"))[0];
    for f in kustomization["resources"].as_array().expect("resources") {
        assert!(
            std::path::Path::new(&format!("{DEPLOY}/{}", f.as_str().unwrap_or(""))).exists(),
            "{f}"
        );
    }
    for f in kustomization["configMapGenerator"][0]["files"]
        .as_array()
        .expect("files")
    {
        assert!(
            std::path::Path::new(&format!("{DEPLOY}/{}", f.as_str().unwrap_or(""))).exists(),
            "{f}"
        );
    }
    match Command::new("kubectl").args(["kustomize", DEPLOY]).output() {
        Ok(out) => assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => eprintln!("kubectl is not installed: the kustomization was not rendered"),
    }

    // Compose: two gateways with every secret, PostgreSQL, Redis, the simulators, Prometheus.
    let compose = &yaml(&format!("{DEPLOY}/compose.yaml"))[0];
    let services = compose["services"].as_object().expect("services");
    for s in [
        "gateway-1",
        "gateway-2",
        "sims",
        "postgres",
        "redis",
        "prometheus",
    ] {
        assert!(services.contains_key(s), "{s} in compose.yaml");
    }
    for g in ["gateway-1", "gateway-2"] {
        let env = &services[g]["environment"];
        for v in &vars {
            assert!(env.get(v).is_some(), "{v} missing from {g}");
        }
        assert_eq!(services[g]["volumes"][0], "./config:/etc/lienthong:ro");
    }
}

#[test]
fn the_systemd_unit_verifies() {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("LIENTHONG_CI").is_err(),
            "systemd-analyze is required under LIENTHONG_CI"
        );
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    // The unit as shipped, with this build's binary and root as the user (the lienthong user
    // does not exist here).
    let unit = std::fs::read_to_string(format!("{DEPLOY}/systemd/lienthong.service"))
        .expect("unit")
        .replace("/usr/local/bin/lienthong", env!("CARGO_BIN_EXE_lienthong"))
        .replace("User=lienthong", "User=root")
        .replace("Group=lienthong", "Group=root")
        .replace(
            "EnvironmentFile=/etc/lienthong/secrets.env",
            "EnvironmentFile=-/etc/lienthong/secrets.env",
        );
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("lienthong.service");
    std::fs::write(&path, unit).expect("write");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !text.contains("lienthong.service:"),
        "{text}"
    );
}
