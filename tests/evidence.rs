//! Evidence a one-stop system files with the dossier: asked for over REST and gRPC, for
//! lookups, batch items and verify answers; checked offline by `lienthong evidence verify`
//! against the published JWKS; one changed byte fails it; it cites the call's own audit
//! record; and it survives a rotation of the evidence key (and of the checkpoint key).

mod common;

use common::*;
use lienthong::audit::evidence::{Jwks, answer_digest, verify};
use serde_json::{Value, json};
use std::process::Command;

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_lienthong")
}

/// `lienthong evidence verify FILE --keys KEYS`: (success, stdout, stderr).
fn verify_cli(file: &std::path::Path, keys: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(exe())
        .args(["evidence", "verify"])
        .arg(file)
        .arg("--keys")
        .arg(keys)
        .output()
        .expect("lienthong runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn jwks(h: &Harness) -> Value {
    let r = h
        .http
        .get(format!("{}/v1/keys", h.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/jwk-set+json"
    );
    r.json().await.expect("jwks")
}

fn claims_of(jws: &str) -> Value {
    use base64::Engine;
    let payload = jws.split('.').nth(1).expect("payload");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("claims")
}

async fn evidence_get(h: &Harness, path: &str, mode: &str) -> reqwest::Response {
    with_context(h.http.get(format!("{}{path}", h.base)))
        .header("X-Evidence", mode)
        .send()
        .await
        .expect("sent")
}

#[tokio::test]
async fn evidence_verifies_offline_cites_its_audit_record_and_fails_on_one_changed_byte() {
    let h = Harness::start().await;
    let code = h.sample("business.enterprise");
    let keys_file = h.dir.path().join("keys.json");
    std::fs::write(&keys_file, jwks(&h).await.to_string()).unwrap();

    // A bundle: the answer, its evidence and key id, as one document to file.
    let r = evidence_get(&h, &format!("/v1/enterprises/{code}"), "bundle").await;
    assert_eq!(r.status(), 200);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let bundle: Value = r.json().await.unwrap();
    assert_eq!(bundle["key_id"], "demo-e1");
    assert_eq!(bundle["answer"]["enterprise_code"], code.as_str());
    let saved = h.dir.path().join("answer.json");
    std::fs::write(&saved, bundle.to_string()).unwrap();
    let (ok, stdout, stderr) = verify_cli(&saved, &keys_file);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("the evidence holds"), "{stdout}");
    assert!(
        stdout.contains("business.enterprise") && stdout.contains(DOSSIER),
        "{stdout}"
    );

    // It states the call's context and cites the call's own audit record.
    let claims = claims_of(bundle["evidence"].as_str().unwrap());
    assert_eq!(claims["consumer"], "demo-onestop");
    assert_eq!(claims["procedure"], PROCEDURE);
    assert_eq!(claims["dossier"], DOSSIER);
    assert_eq!(claims["cache"], "miss");
    assert_eq!(claims["data_time"].as_str(), stated_time(&code).as_deref());
    let records = h
        .admin_json(
            "demo-operator-token",
            "/admin/v1/audit/records?consumer=demo-onestop&limit=50",
        )
        .await;
    let record = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["request_id"] == request_id.as_str())
        .expect("the call's record")
        .clone();
    assert_eq!(claims["audit_seq"], record["seq"]);
    assert_eq!(claims["audit_instance"], record["instance"]);
    assert_eq!(claims["subject"], record["subject"]);
    // Nothing personal beyond the answer: the key appears only as its keyed reference.
    assert!(!claims.to_string().contains(&code));

    // One changed byte of the answer, and the check fails, naming why.
    let text = bundle.to_string();
    let name = bundle["answer"]["name"].as_str().unwrap();
    let mut changed_name = name.to_owned();
    changed_name.pop();
    changed_name.push('x');
    std::fs::write(&saved, text.replacen(name, &changed_name, 1)).unwrap();
    let (ok, _, stderr) = verify_cli(&saved, &keys_file);
    assert!(!ok);
    assert!(stderr.contains("digest"), "{stderr}");
    // …and so does a statement altered to cite another record.
    let jws = bundle["evidence"].as_str().unwrap();
    let forged = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut c = claims.clone();
        c["audit_seq"] = json!(c["audit_seq"].as_i64().unwrap() + 1);
        let parts: Vec<&str> = jws.split('.').collect();
        format!("{}.{}.{}", parts[0], b64.encode(c.to_string()), parts[2])
    };
    let mut forged_bundle = bundle.clone();
    forged_bundle["evidence"] = json!(forged);
    std::fs::write(&saved, forged_bundle.to_string()).unwrap();
    let (ok, _, stderr) = verify_cli(&saved, &keys_file);
    assert!(!ok);
    assert!(stderr.contains("signature does not verify"), "{stderr}");

    // `X-Evidence: jws`: the usual body, the JWS in the header; a hit says so.
    let r = evidence_get(&h, &format!("/v1/enterprises/{code}"), "jws").await;
    assert_eq!(r.status(), 200);
    let jws = r.headers()["x-evidence"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, bundle["answer"]);
    let keys: Jwks = serde_json::from_value(jwks(&h).await).unwrap();
    let stated = verify(&jws, None, &keys, &body).expect("header evidence verifies");
    assert_eq!(stated.cache, "hit");
    assert!(stated.audit_seq > claims["audit_seq"].as_i64().unwrap());

    // Projected answers are signed as delivered: the asked fields only.
    let r = evidence_get(
        &h,
        &format!("/v1/enterprises/{code}?fields=name,status"),
        "jws",
    )
    .await;
    let jws = r.headers()["x-evidence"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body.as_object().unwrap().len(), 2);
    verify(&jws, None, &keys, &body).expect("a projection verifies");
    assert!(verify(&jws, None, &keys, &bundle["answer"]).is_err());

    // An unknown X-Evidence value is refused, naming the values.
    let r = evidence_get(&h, &format!("/v1/enterprises/{code}"), "yes").await;
    assert_eq!(r.status(), 400);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["code"], "invalid_request");
    assert!(p["detail"].as_str().unwrap().contains("bundle"), "{p}");

    // Without asking, no evidence.
    let r = h.get(&format!("/v1/enterprises/{code}")).await;
    assert!(r.headers().get("x-evidence").is_none());
}

#[tokio::test]
async fn batch_items_verify_answers_and_grpc_answers_each_carry_their_own_evidence() {
    let h = Harness::start().await;
    let keys: Jwks = serde_json::from_value(jwks(&h).await).unwrap();
    let code = h.sample("business.enterprise");
    let parcel = h.sample("land.parcel");

    // Batch: each served item its own evidence, over its own record; a failed item none.
    let r = with_context(h.http.post(format!("{}/v1/batch", h.base)))
        .header("X-Evidence", "jws")
        .json(&json!({"items": [
            {"dataset": "business.enterprise", "key": code},
            {"dataset": "land.parcel", "key": parcel, "fields": ["parcel_id", "area_m2"]},
            {"dataset": "business.enterprise", "key": "123"},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let items = body["items"].as_array().unwrap();
    let mut seqs = Vec::new();
    for item in &items[..2] {
        let stated = verify(
            item["evidence"].as_str().expect("evidence per item"),
            None,
            &keys,
            &item["record"],
        )
        .expect("item evidence verifies");
        assert_eq!(stated.dataset, item["dataset"].as_str().unwrap());
        seqs.push(stated.audit_seq);
    }
    assert_ne!(seqs[0], seqs[1], "each item cites its own record");
    assert!(items[2].get("evidence").is_none());
    assert!(
        verify(
            items[0]["evidence"].as_str().unwrap(),
            None,
            &keys,
            &items[1]["record"]
        )
        .is_err()
    );

    // Verify: the match per field is what is signed.
    let r = with_context(
        h.http
            .post(format!("{}/v1/datasets/business.enterprise/verify", h.base)),
    )
    .header("X-Evidence", "bundle")
    .json(&json!({"key": code, "claims": {"status": "operating", "name": "not its name"}}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let bundle: Value = r.json().await.unwrap();
    assert_eq!(bundle["answer"]["fields"]["name"], false);
    let stated = verify(
        bundle["evidence"].as_str().unwrap(),
        None,
        &keys,
        &bundle["answer"],
    )
    .expect("verify evidence");
    assert_eq!(stated.action, "verify");
    let mut flipped = bundle["answer"].clone();
    flipped["fields"]["name"] = json!(true);
    assert!(verify(bundle["evidence"].as_str().unwrap(), None, &keys, &flipped).is_err());

    // gRPC: RequestContext.evidence; ResponseInfo.evidence over the record as JSON.
    let mut grpc = h.grpc().await;
    let mut ctx = context().unwrap();
    ctx.evidence = true;
    let reply = grpc
        .get(authed(lienthong::proto::lienthong::GetRequest {
            context: Some(ctx.clone()),
            dataset: "land.parcel".into(),
            key: parcel.clone(),
            fields: vec![],
        }))
        .await
        .expect("get")
        .into_inner();
    let info = reply.info.unwrap();
    let record = serde_json::to_value(reply.record.unwrap()).unwrap();
    let stated = verify(&info.evidence, None, &keys, &record).expect("gRPC evidence verifies");
    assert_eq!(stated.answer_sha256, answer_digest(&record));
    assert_eq!(stated.data_time.as_deref(), Some(info.data_time.as_str()));
    let item = grpc
        .batch_get(authed(lienthong::proto::lienthong::BatchGetRequest {
            context: Some(ctx),
            items: vec![lienthong::proto::lienthong::BatchItem {
                dataset: "business.enterprise".into(),
                key: code.clone(),
                fields: vec![],
            }],
        }))
        .await
        .expect("batch")
        .into_inner()
        .message()
        .await
        .expect("item")
        .expect("one item");
    let record = serde_json::to_value(item.record.unwrap()).unwrap();
    verify(&item.evidence, None, &keys, &record).expect("gRPC batch item evidence verifies");
}

#[tokio::test]
async fn evidence_is_refused_before_any_lookup_when_no_key_can_sign() {
    let h = Harness::start_with(|name, text| {
        if name != "gateway.toml" {
            return text;
        }
        let start = text.find("evidence_keys = [").expect("demo key");
        let end = start + text[start..].find('\n').unwrap();
        format!("{}{}", &text[..start], &text[end..])
    })
    .await;
    assert_eq!(jwks(&h).await, json!({"keys": []}));
    let code = h.sample("business.enterprise");
    let r = evidence_get(&h, &format!("/v1/enterprises/{code}"), "bundle").await;
    assert_eq!(r.status(), 400);
    let p: Value = r.json().await.unwrap();
    assert!(
        p["detail"].as_str().unwrap().contains("no evidence key"),
        "{p}"
    );
    let stats: Value = h
        .http
        .get(format!("http://{}/_sim/stats", h.sims.business_addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["total"], 0, "the provider was not asked: {stats}");
}

#[tokio::test]
async fn after_a_key_rotation_old_evidence_still_verifies_and_new_evidence_uses_the_new_key() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let h = Harness::start_with(|name, text| {
        if name == "gateway.toml" {
            // A checkpoint on every commit, so both signing keys sign some.
            text.replace("fsync = true", "fsync = true\ncheckpoint_every = 1")
        } else {
            text
        }
    })
    .await;
    let code = h.sample("business.enterprise");
    let before: Value = evidence_get(&h, &format!("/v1/enterprises/{code}"), "bundle")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(before["key_id"], "demo-e1");

    // Rotate: e2 signs from now on, demo-e1 stays published (public key only, valid until
    // now); the checkpoint key rotates too, the old one kept for verification.
    let main = h.dir.path().join("gateway.toml");
    let text = std::fs::read_to_string(&main).unwrap();
    let old_public = jwks(&h).await["keys"][0]["x"].as_str().unwrap().to_owned();
    let old_public = b64.encode(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(old_public)
            .unwrap(),
    );
    let old_signing = lienthong::audit::record::Signer::from_seed(
        "demo-s1",
        &b64.decode("TmO4lEWqiimgrM4MtiLB8n6/LLmGdhpHZhX0kQjgO8s=")
            .unwrap(),
    )
    .unwrap()
    .public_key();
    // The inline demo key gives way to tables (headers with the full path, at the end).
    let start = text.find("evidence_keys = [").unwrap();
    let end = start + text[start..].find('\n').unwrap();
    let until = lienthong::domain::date::iso_ms(lienthong::domain::date::now_ms() + 1000);
    let rotated = format!(
        "{}{}\n[[audit.evidence_keys]]\nid = \"e2\"\nseed = \"{}\"\n\n[[audit.evidence_keys]]\nid = \"demo-e1\"\npublic = \"{old_public}\"\nvalid_until = \"{until}\"\n",
        &text[..start],
        &text[end..],
        b64.encode([9u8; 32]),
    )
    .replace(
        "signing_key_id = \"demo-s1\"\nsigning_key = \"TmO4lEWqiimgrM4MtiLB8n6/LLmGdhpHZhX0kQjgO8s=\"",
        &format!(
            "signing_key_id = \"s2\"\nsigning_key = \"{}\"\nverify_keys = {{ demo-s1 = \"{}\" }}",
            b64.encode([5u8; 32]),
            b64.encode(&old_signing)
        ),
    );
    assert!(rotated.contains("s2") && rotated.contains("e2"));
    std::fs::write(&main, rotated).unwrap();
    let r = h
        .http
        .post(format!("http://{}/admin/v1/reload", h.gateway.admin_addr))
        .bearer_auth("demo-operator-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let published = jwks(&h).await;
    let ids: Vec<&str> = published["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["e2", "demo-e1"]);
    assert_eq!(published["keys"][1]["valid_until"], until.as_str());
    let keys: Jwks = serde_json::from_value(published).unwrap();
    verify(
        before["evidence"].as_str().unwrap(),
        None,
        &keys,
        &before["answer"],
    )
    .expect("evidence of the old key verifies after the rotation");
    let after: Value = evidence_get(&h, &format!("/v1/enterprises/{code}"), "bundle")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["key_id"], "e2");
    verify(
        after["evidence"].as_str().unwrap(),
        None,
        &keys,
        &after["answer"],
    )
    .expect("new evidence verifies");

    // Both rotations are in the trail, and the chain verifies under both checkpoint keys.
    let records = h
        .admin_json(
            "demo-operator-token",
            "/admin/v1/audit/records?consumer=operator:61112491&limit=50",
        )
        .await;
    let details: Vec<&str> = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "gateway_key_rotated")
        .map(|r| r["detail"].as_str().unwrap())
        .collect();
    assert!(
        details.iter().any(|d| d.contains("demo-s1 to s2"))
            && details.iter().any(|d| d.contains("demo-e1 to e2")),
        "{details:?}"
    );
    // A checkpoint for the rotation's own record, then the chain verifies with both keys,
    // and with either alone it does not: each signed some of its checkpoints.
    let _ = h.get(&format!("/v1/enterprises/{code}")).await;
    let g = h.gateway.gateway();
    let keys = g.config().audit.verify_keys.clone();
    assert_eq!(keys.len(), 2);
    lienthong::audit::verify::verify(g.audit_handle().store(), &keys, |_, _, _| {})
        .await
        .expect("the chain verifies across the rotation");
    for dropped in ["demo-s1", "s2"] {
        let mut fewer = keys.clone();
        fewer.remove(dropped);
        assert!(
            lienthong::audit::verify::verify(g.audit_handle().store(), &fewer, |_, _, _| {})
                .await
                .is_err(),
            "{dropped} signed no checkpoint"
        );
    }
}
