//! Rotating the audit subject key without a restart: `admin reload` with a list of subject
//! keys, the new one first. New records use it; reports and the dossier register find a
//! subject under every key still held; the rotation is itself recorded.

mod common;

use common::*;
use serde_json::{Value, json};

const OPERATOR: &str = "demo-operator-token";
const OLD_KEY: &str = "Fl5JRkQd2jhRGdoPOCXGPCiBygsi+E03+R1LyWMhVC8=";
const NEW_KEY: &str = "bmV3IHN1YmplY3Qga2V5IGZvciB0aGUgcm90YXRpb24=";

async fn reload(h: &Harness) -> (u16, Value) {
    let r = h
        .http
        .post(format!("http://{}/admin/v1/reload", h.gateway.admin_addr))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .expect("sent");
    (r.status().as_u16(), r.json().await.expect("json"))
}

/// The main file with the demo's single subject key replaced by `keys` (id, secret), the
/// current one first.
fn with_subject_keys(h: &Harness, keys: &[(&str, &str)]) {
    let main = h.dir.path().join("gateway.toml");
    // Always from the file as the harness wrote it (kept aside the first time).
    let first = h.dir.path().join("gateway.toml.first");
    if !first.exists() {
        std::fs::copy(&main, &first).unwrap();
    }
    let text = std::fs::read_to_string(&first).unwrap();
    let mut out: String = text
        .lines()
        .filter(|l| !l.starts_with("subject_key_id = ") && !l.starts_with("subject_key = "))
        .map(|l| format!("{l}\n"))
        .collect();
    for (id, key) in keys {
        out.push_str(&format!(
            "\n[[audit.subject_keys]]\nid = \"{id}\"\nkey = \"{key}\"\n"
        ));
    }
    std::fs::write(main, out).unwrap();
}

async fn citizen(h: &Harness, id: &str) -> u16 {
    h.get(&format!("/v1/citizens/{id}")).await.status().as_u16()
}

/// The subjects of the disclosures the operator's report shows for `id`.
async fn report_subjects(h: &Harness, id: &str) -> Vec<String> {
    let report = h
        .admin_json(
            OPERATOR,
            &format!("/admin/v1/audit/report?dataset=population.citizen&subject={id}"),
        )
        .await;
    report["records"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"))
        .iter()
        .map(|r| r["subject"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn after_a_subject_key_rotation_reports_and_dossiers_find_records_under_both_keys() {
    // The population grant binds to declared dossiers, as in the demo.
    let h = Harness::start_with(|name, text| {
        if name == "grants.toml" {
            text.replacen(
                "dataset = \"population.citizen\"\n",
                "dataset = \"population.citizen\"\nbinding = \"declared\"\n",
                1,
            )
        } else {
            text
        }
    })
    .await;
    let ids = h.sims.data.samples("population.citizen", 2).unwrap();
    let (a, b) = (&ids[0], &ids[1]);
    let declared = with_context(h.http.post(format!("{}/v1/dossiers", h.base)))
        .json(&json!({
            "dossier_id": DOSSIER, "procedure_code": PROCEDURE,
            "received_at": lienthong::domain::date::Date::today().to_string(),
            "subjects": [
                {"dataset": "population.citizen", "key": a},
                {"dataset": "population.citizen", "key": b},
            ],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), 201, "{}", declared.text().await.unwrap());
    assert_eq!(citizen(&h, a).await, 200);
    assert_eq!(report_subjects(&h, a).await.len(), 1);

    // Rotate: k2 is current, the demo's key is still held.
    with_subject_keys(&h, &[("k2", NEW_KEY), ("demo-k1", OLD_KEY)]);
    let (status, body) = reload(&h).await;
    assert_eq!(status, 200, "{body}");

    // The dossier declared under the old key still binds the citizen.
    assert_eq!(citizen(&h, a).await, 200);
    // The report finds both lookups, one under each key.
    let subjects = report_subjects(&h, a).await;
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(subjects[0].starts_with("k2:") && subjects[1].starts_with("demo-k1:"));
    // So does the report across datasets.
    let report = h
        .admin_json(
            OPERATOR,
            &format!("/admin/v1/audit/citizen-report?personal_id={a}"),
        )
        .await;
    let entries = report["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(entries.len(), 2, "{report}");
    assert!(entries.iter().all(|e| e["role"] == "subject"), "{report}");

    // A subject declared under the old key is removed by its key.
    let removed = with_context(
        h.http
            .post(format!("{}/v1/dossiers/{DOSSIER}/subjects/remove", h.base)),
    )
    .json(&json!({"dataset": "population.citizen", "key": b, "reason": "nhập nhầm"}))
    .send()
    .await
    .unwrap();
    assert_eq!(removed.status(), 200, "{}", removed.text().await.unwrap());
    assert_eq!(citizen(&h, b).await, 403, "no longer in the dossier");

    // The rotation is on the trail, with the keys held.
    let records = h
        .admin_json(
            OPERATOR,
            "/admin/v1/audit/records?consumer=operator:61112491&limit=50",
        )
        .await;
    let rotation = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "gateway_key_rotated")
        .unwrap_or_else(|| panic!("{records}"))
        .clone();
    assert!(
        rotation["detail"]
            .as_str()
            .unwrap()
            .contains("now k2, demo-k1"),
        "{rotation}"
    );

    // Dropping the old key forgets what it referenced: only the newer record is found, and
    // the dossier declared under it no longer binds — why an old key is kept as long as
    // its records are.
    with_subject_keys(&h, &[("k2", NEW_KEY)]);
    let (status, body) = reload(&h).await;
    assert_eq!(status, 200, "{body}");
    let subjects = report_subjects(&h, a).await;
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    assert_eq!(citizen(&h, a).await, 403);
}

#[tokio::test]
async fn subject_keys_are_checked_and_named() {
    let sims = lienthong::sim::spawn(lienthong::sim::SimOptions::ephemeral())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let main = write_config(dir.path(), &sims, |name, text| {
        if name != "gateway.toml" {
            return text;
        }
        format!(
            "{text}\n[[audit.subject_keys]]\nid = \"k2\"\nkey = \"c2hvcnQ=\"\n\n[[audit.subject_keys]]\nid = \"k2\"\nkey = \"{OLD_KEY}\"\n"
        )
    });
    let errors = lienthong::app::build(&lienthong::config::Source::File(main), &Default::default())
        .expect_err("invalid");
    let text = errors.to_string();
    for (key, says) in [
        ("audit.subject_keys", "not both"),
        ("audit.subject_keys[0].key", "at least 16"),
        ("audit.subject_keys[1].id", "listed twice"),
    ] {
        assert!(
            errors
                .0
                .iter()
                .any(|e| e.key == key && e.message.contains(says)),
            "missing {key} ({says}) in\n{text}"
        );
    }
}
