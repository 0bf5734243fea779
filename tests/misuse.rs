//! Misuse detection end to end: one officer looks up 200 distinct real citizens within a
//! minute under pattern binding; past the threshold an alert is raised once (an `alert`
//! audit record, the Prometheus counter, `/admin/v1/alerts`, acknowledged by an auditor),
//! and under `refuse` the calls past it are refused naming the rule.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

/// Detection on all day, every day (so the test holds at any hour), with the officer rule
/// at 99 distinct subjects an hour under `action`.
fn watching(action: &'static str) -> impl Fn(&str, String) -> String {
    move |file, text| match file {
        "gateway.toml" => format!(
            "{}\n[misuse]\nenabled = true\noffice_hours = \"00:00-24:00\"\n\
             office_days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n",
            text.replace(
                "officer_subjects_hour = { threshold = 99 }",
                &format!("officer_subjects_hour = {{ threshold = 99, action = \"{action}\" }}")
            )
        ),
        _ => text,
    }
}

/// Looks up each citizen once as the demo officer; the statuses in order.
async fn walk(h: &Harness, ids: &[String]) -> Vec<u16> {
    let mut statuses = Vec::new();
    for id in ids {
        statuses.push(h.get(&format!("/v1/citizens/{id}")).await.status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn an_officer_walking_the_population_database_raises_one_alert() {
    clear_of_the_hour_turning(Duration::from_secs(30)).await;
    let h = Harness::start_with(watching("alert")).await;
    let ids = h
        .sims
        .data
        .samples("population.citizen", 200)
        .expect("samples");
    let started = std::time::Instant::now();
    let statuses = walk(&h, &ids).await;
    assert!(statuses.iter().all(|s| *s == 200), "alert only: all served");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "within a minute"
    );

    // The alert: listed for operators, once, with its period and count.
    let mut listed = Value::Null;
    for _ in 0..50 {
        listed = h
            .admin_json(
                "demo-operator-token",
                "/admin/v1/alerts?rule=officer_subjects_hour",
            )
            .await;
        if listed["alerts"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let alerts = listed["alerts"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 1, "one alert per officer and hour: {listed}");
    let alert = &alerts[0];
    assert_eq!(alert["consumer"], "demo-onestop");
    assert_eq!(alert["officer_id"], OFFICER);
    assert_eq!(
        (alert["count"].as_i64(), alert["threshold"].as_i64()),
        (Some(100), Some(99))
    );
    assert_eq!(alert["acknowledged"], false);

    // Recorded in the audit trail, with no subject.
    let records = h
        .admin_json(
            "demo-operator-token",
            "/admin/v1/audit/records?consumer=demo-onestop&limit=500",
        )
        .await;
    let alerts_recorded: Vec<&Value> = records["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| {
            r["action"] == "alert"
                && r["detail"]
                    .as_str()
                    .unwrap_or("")
                    .contains("officer_subjects_hour")
        })
        .collect();
    assert_eq!(alerts_recorded.len(), 1, "{records}");
    assert_eq!(alerts_recorded[0]["officer_id"], OFFICER);
    assert_eq!(alerts_recorded[0]["subject"], "");

    // Counted by rule and consumer, never by officer.
    let metrics = h
        .http
        .get(format!("http://{}/metrics", h.gateway.admin_addr))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            "lienthong_misuse_alerts_total{rule=\"officer_subjects_hour\",consumer=\"demo-onestop\"} 1"
        ),
        "{metrics}"
    );
    assert!(!metrics.contains(OFFICER));

    // An auditor acknowledges it with a note; that is recorded too. A consumer cannot.
    let id = alert["id"].as_str().expect("id");
    let ack = |token: &'static str, body: Value| {
        h.http
            .post(format!(
                "http://{}/admin/v1/alerts/{id}/acknowledge",
                h.gateway.admin_addr
            ))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    assert_eq!(
        ack("demo-onestop-key", json!({"note": "x"}))
            .await
            .expect("sent")
            .status(),
        401
    );
    assert_eq!(
        ack("demo-auditor-token", json!({"note": " "}))
            .await
            .expect("sent")
            .status(),
        400
    );
    let acked: Value = ack(
        "demo-auditor-token",
        json!({"note": "Đã xác minh: đợt cấp đổi CCCD hàng loạt"}),
    )
    .await
    .expect("sent")
    .json()
    .await
    .expect("json");
    assert_eq!(acked["acknowledged"], true, "{acked}");
    assert_eq!(acked["acknowledged_by"], "demo-auditor");
    let open = h
        .admin_json(
            "demo-auditor-token",
            "/admin/v1/alerts?acknowledged=false&rule=officer_subjects_hour",
        )
        .await;
    assert_eq!(open["alerts"].as_array().map(Vec::len), Some(0), "{open}");
    let records = h
        .admin_json("demo-operator-token", "/admin/v1/audit/records?limit=500")
        .await;
    assert!(
        records["records"]
            .as_array()
            .expect("records")
            .iter()
            .any(|r| r["action"] == "alert_acknowledge"),
        "{records}"
    );
    let bad = h
        .http
        .get(format!(
            "http://{}/admin/v1/alerts?rule=nonsense",
            h.gateway.admin_addr
        ))
        .bearer_auth("demo-operator-token")
        .send()
        .await
        .expect("sent");
    assert_eq!(bad.status(), 400);

    // The same list over gRPC (AdminService), for an auditor.
    let mut admin = lienthong::proto::lienthong::admin_service_client::AdminServiceClient::connect(
        format!("http://{}", h.gateway.admin_addr),
    )
    .await
    .expect("connects");
    let body: pbjson_types::Struct =
        serde_json::from_value(json!({"rule": "officer_subjects_hour"})).expect("struct");
    let request = authed_as(
        "demo-auditor-token",
        lienthong::proto::lienthong::AdminRequest {
            body: Some(body),
            ..Default::default()
        },
    );
    let listed: Value = serde_json::to_value(
        admin
            .list_alerts(request)
            .await
            .expect("listed")
            .into_inner(),
    )
    .expect("json");
    assert_eq!(listed["alerts"][0]["id"], alert["id"], "{listed}");
    assert_eq!(listed["alerts"][0]["acknowledged"], true);
    let body: pbjson_types::Struct =
        serde_json::from_value(json!({"note": "Đã xem lại qua gRPC"})).expect("struct");
    let request = authed_as(
        "demo-auditor-token",
        lienthong::proto::lienthong::AdminRequest {
            name: id.to_owned(),
            body: Some(body),
            ..Default::default()
        },
    );
    let acked: Value = serde_json::to_value(
        admin
            .acknowledge_alert(request)
            .await
            .expect("acknowledged")
            .into_inner(),
    )
    .expect("json");
    assert_eq!(
        acked["note"], "Đã xem lại qua gRPC",
        "the latest note stands"
    );
}

#[tokio::test]
async fn under_refuse_the_calls_past_the_threshold_are_refused_naming_the_rule() {
    clear_of_the_hour_turning(Duration::from_secs(30)).await;
    let h = Harness::start_with(watching("refuse")).await;
    let ids = h
        .sims
        .data
        .samples("population.citizen", 200)
        .expect("samples");
    let statuses = walk(&h, &ids[..99]).await;
    assert!(statuses.iter().all(|s| *s == 200));
    let calls_before = h.sims.population.calls("TraCuuThongTinCongDan");
    for id in &ids[99..] {
        let r = h.get(&format!("/v1/citizens/{id}")).await;
        assert_eq!(r.status(), 403);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["code"], "permission_denied");
        let detail = body["detail"].as_str().expect("detail");
        assert!(detail.contains("officer_subjects_hour"), "{detail}");
        assert!(!detail.contains(id.as_str()));
    }
    assert_eq!(
        h.sims.population.calls("TraCuuThongTinCongDan"),
        calls_before,
        "refused calls never reach the provider"
    );
    // A citizen already looked up within the period is refused too: the rule fires.
    assert_eq!(
        h.get(&format!("/v1/citizens/{}", ids[0])).await.status(),
        403
    );
    // Another officer of the same consumer is not.
    let other = h
        .http
        .get(format!("{}/v1/citizens/{}", h.base, ids[150]))
        .bearer_auth(API_KEY)
        .header("X-Procedure-Code", PROCEDURE)
        .header("X-Dossier-Id", DOSSIER)
        .header("X-Officer-Id", "canbo02")
        .send()
        .await
        .expect("sent");
    assert_eq!(other.status(), 200);
}

/// Two replicas on the test PostgreSQL and Redis: an officer's lookups on both add up, the
/// calls past the threshold are refused on either, and what Redis holds are keyed
/// references, never the keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_add_up_through_redis_which_holds_no_key() {
    let (Some(pg), Some(redis)) = (postgres_url(), redis_url()) else {
        return;
    };
    clear_of_the_hour_turning(Duration::from_secs(30)).await;
    let schema = unique("t_misuse");
    let prefix = unique("misuse");
    let sims = lienthong::sim::spawn(lienthong::sim::SimOptions::ephemeral())
        .await
        .expect("simulators");
    let root = tempfile::tempdir().expect("dir");
    let extra = format!(
        "[storage]\npostgres_url = \"{pg}\"\nschema = \"{schema}\"\n\
         [redis]\nurl = \"{redis}\"\nkey_prefix = \"{prefix}:\"\n"
    );
    let replicas = start_replicas(
        root.path(),
        &sims,
        &["replica-a", "replica-b"],
        &extra,
        watching("refuse"),
    )
    .await;
    let bases = [&replicas[0], &replicas[1]].map(|r| format!("http://{}", r.lookup_addr));
    let ids = sims
        .data
        .samples("population.citizen", 120)
        .expect("samples");
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let r = with_context(http.get(format!("{}/v1/citizens/{id}", bases[i % 2])))
            .send()
            .await
            .expect("sent");
        statuses.push(r.status().as_u16());
    }
    assert!(statuses[..99].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses[99..].iter().all(|s| *s == 403), "{statuses:?}");
    // One alert, though both replicas saw the rule fire.
    let listed: Value = http
        .get(format!(
            "http://{}/admin/v1/alerts?rule=officer_subjects_hour",
            replicas[1].admin_addr
        ))
        .bearer_auth("demo-operator-token")
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let mut count = listed["alerts"].as_array().map(Vec::len).unwrap_or(0);
    for _ in 0..50 {
        if count == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let again: Value = http
            .get(format!(
                "http://{}/admin/v1/alerts?rule=officer_subjects_hour",
                replicas[0].admin_addr
            ))
            .bearer_auth("demo-operator-token")
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        count = again["alerts"].as_array().map(Vec::len).unwrap_or(0);
    }
    assert_eq!(count, 1);
    // What Redis holds for detection: references only.
    let client = redis::Client::open(redis.as_str()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:misuse:*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert!(!keys.is_empty());
    let mut held = String::new();
    for k in &keys {
        let kind: String = redis::cmd("TYPE")
            .arg(k)
            .query_async(&mut conn)
            .await
            .expect("type");
        held.push_str(k);
        if kind == "set" {
            let members: Vec<String> = redis::cmd("SMEMBERS")
                .arg(k)
                .query_async(&mut conn)
                .await
                .expect("members");
            held.push_str(&members.join(","));
        }
    }
    for id in &ids {
        assert!(
            !held.contains(id.as_str()),
            "Redis holds a key in the clear"
        );
    }
    for k in keys {
        let _: i64 = redis::cmd("DEL")
            .arg(k)
            .query_async(&mut conn)
            .await
            .expect("del");
    }
    for r in replicas {
        r.shutdown().await;
    }
    drop_schema(&pg, &schema).await;
}
