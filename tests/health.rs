//! Health: `/healthz` says the process is alive, `/readyz` whether it should get traffic
//! (audit store writable, critical providers up, not draining), gRPC health per service; on
//! SIGTERM the gateway drains and exits.

mod common;

use common::*;
use lienthong::sim::control::Faults;
use serde_json::Value;
use std::time::Duration;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

async fn readyz(h: &Harness) -> (u16, Value) {
    let r = h
        .http
        .get(format!("http://{}/readyz", h.gateway.admin_addr))
        .send()
        .await
        .expect("sent");
    (r.status().as_u16(), r.json().await.expect("json"))
}

#[tokio::test]
async fn readiness_follows_the_audit_store_and_critical_providers() {
    let h = Harness::start_with(|name, text| {
        if name == "connectors.toml" {
            // Population is critical: the gateway is not ready while its breaker is open.
            text.replacen("timeout_ms = 3000\n", "timeout_ms = 3000\ncritical = true\n", 1)
                .replacen(
                    "[connector.guard]\n",
                    "[connector.guard]\nretries = 0\nbreaker_consecutive_failures = 2\nbreaker_open_s = 60\n",
                    1,
                )
        } else {
            text
        }
    })
    .await;
    let (status, body) = readyz(&h).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["audit_store"], "ok");

    // Business failing does not matter to readiness (not critical)…
    h.sims.business.set_faults(Faults {
        down: true,
        ..Faults::default()
    });
    for code in h
        .sims
        .data
        .samples("business.enterprise", 6)
        .expect("samples")
    {
        h.get(&format!("/v1/enterprises/{code}")).await;
    }
    assert_eq!(readyz(&h).await.0, 200);
    // …population hard down does.
    h.sims.population.set_faults(Faults {
        down: true,
        ..Faults::default()
    });
    for id in h
        .sims
        .data
        .samples("population.citizen", 3)
        .expect("samples")
    {
        h.get(&format!("/v1/citizens/{id}")).await;
    }
    let (status, body) = readyz(&h).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["critical_connectors_down"][0], "population");

    // Liveness is another matter.
    let alive = h
        .http
        .get(format!("http://{}/healthz", h.gateway.admin_addr))
        .send()
        .await
        .expect("sent");
    assert_eq!(alive.status(), 200);
}

#[tokio::test]
async fn an_audit_store_that_cannot_take_writes_makes_the_gateway_unready() {
    let h = Harness::start().await;
    assert_eq!(readyz(&h).await.0, 200);
    // The directory new segments are created in is gone (a volume unmounted, say): the
    // current log still takes appends, but the store can no longer grow.
    let segments = h.dir.path().join("data/audit.db.segments");
    let aside = h.dir.path().join("data/segments-aside");
    std::fs::rename(&segments, &aside).expect("move the segments away");
    let (status, body) = readyz(&h).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["checks"]["audit_store"]
            .as_str()
            .unwrap_or("")
            .starts_with("not writable"),
        "{body}"
    );
    std::fs::rename(&aside, &segments).expect("put them back");
    assert_eq!(readyz(&h).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_not_ready_finishes_in_flight_calls_then_exits() {
    let sims = lienthong::sim::spawn(lienthong::sim::SimOptions::ephemeral())
        .await
        .expect("simulators");
    let dir = tempfile::tempdir().expect("dir");
    let main = write_config(dir.path(), &sims, |name, text| {
        if name == "gateway.toml" {
            text.replace("[listen]\n", "[listen]\ndrain_delay_ms = 1000\n")
        } else {
            text
        }
    });
    let log = dir.path().join("gateway.log");
    let (mut child, lookup, admin) = spawn_serve(&main, &log, "info");
    lienthong::certs::install_crypto();
    let http = reqwest::Client::new();
    sims.population.set_faults(Faults {
        latency_ms: 1500,
        ..Faults::default()
    });
    let id = sims.data.samples("population.citizen", 2).expect("samples")[1].clone();
    let slow = {
        let http = http.clone();
        let url = format!("http://{lookup}/v1/citizens/{id}");
        tokio::spawn(async move {
            http.get(url)
                .bearer_auth(API_KEY)
                .header("X-Procedure-Code", PROCEDURE)
                .header("X-Dossier-Id", DOSSIER)
                .header("X-Officer-Id", OFFICER)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Draining: not ready, still alive, gRPC health says NOT_SERVING.
    let ready = http
        .get(format!("http://{admin}/readyz"))
        .send()
        .await
        .expect("admin up");
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.expect("json");
    assert_eq!(body["checks"]["draining"], true);
    let alive = http
        .get(format!("http://{admin}/healthz"))
        .send()
        .await
        .expect("admin up");
    assert_eq!(alive.status(), 200);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{lookup}"))
        .expect("uri")
        .connect()
        .await
        .expect("grpc");
    let mut health = HealthClient::new(channel);
    let status = health
        .check(HealthCheckRequest {
            service: "lienthong.v1.LookupService".into(),
        })
        .await
        .expect("health")
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::NotServing as i32
    );

    // The call in flight when SIGTERM came finishes, then the process exits cleanly.
    assert_eq!(slow.await.expect("task").expect("answered"), 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
    let verified = std::process::Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .args(["audit", "verify", "--config"])
        .arg(&main)
        .output()
        .expect("verify");
    let out = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success() && out.contains("1 records"),
        "{out}"
    );
}

#[tokio::test]
async fn active_probes_follow_a_provider_down_and_back_up() {
    let h = Harness::start_with(|name, text| {
        if name == "connectors.toml" {
            // Population is probed every 100 ms and is critical.
            text.replacen("timeout_ms = 3000\n", "timeout_ms = 3000\ncritical = true\n", 1)
                .replacen(
                    "[connector.guard]\n",
                    "[connector.health]\nprobe_key = \"001099000017\"\ninterval_ms = 100\n\n[connector.guard]\n",
                    1,
                )
        } else {
            text
        }
    })
    .await;
    let metric = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("lienthong_connector_up{connector=\"population\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    let scrape = || async {
        h.http
            .get(format!("http://{}/metrics", h.gateway.admin_addr))
            .send()
            .await
            .expect("sent")
            .text()
            .await
            .expect("text")
    };
    let wait_for = |want: f64| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if metric(&scrape().await) == Some(want) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "connector_up never became {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    wait_for(1.0).await;
    assert_eq!(readyz(&h).await.0, 200);
    // Probes reach the provider without any lookup (an absent key answers "not found").
    assert!(h.sims.population.calls("TraCuuThongTinCongDan") >= 1);
    assert_eq!(
        h.gateway
            .gateway()
            .audit()
            .stats()
            .records
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );

    h.sims.population.set_faults(Faults {
        down: true,
        ..Faults::default()
    });
    wait_for(0.0).await;
    let (status, body) = readyz(&h).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["critical_connectors_down"][0], "population");
    assert!(
        scrape()
            .await
            .contains("lienthong_connector_probe_seconds{connector=\"population\"}")
    );

    h.sims.population.set_faults(Faults::default());
    wait_for(1.0).await;
    assert_eq!(readyz(&h).await.0, 200);
}
