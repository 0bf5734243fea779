//! The dossier register and purpose binding, end to end over real sockets and the real
//! simulators: under `binding = "declared"` a lookup is served only for a declared subject
//! of an open dossier of the caller's, for the dossier's procedure, and every refusal stops
//! before the provider; dossiers are shared by replicas on PostgreSQL, a closure reaching
//! the other replica through Redis; a dossier never closed expires, audited.

mod common;

use common::*;
use serde_json::{Value, json};
use sha2::Digest;
use std::time::Duration;

const OTHER_KEY: &str = "other-onestop-key";
const CITIZEN_LOOKUP: &str = "TraCuuThongTinCongDan";

/// The demo config with the population grant bound to declared dossiers, and a second
/// consumer holding the same grant.
fn declared(file: &str, text: String) -> String {
    match file {
        "grants.toml" => {
            let text = text.replacen(
                "dataset = \"population.citizen\"\n",
                "dataset = \"population.citizen\"\nbinding = \"declared\"\n",
                1,
            );
            format!(
                "{text}\n[[grant]]\nconsumer = \"other-onestop\"\ndataset = \"population.citizen\"\n\
                 procedures = [\"1.*\"]\nfields = [\"*\"]\nmodes = [\"fetch\"]\nbinding = \"declared\"\n\
                 legal_basis = \"Nghị định 47/2020/NĐ-CP\"\n"
            )
        }
        "consumers.toml" => format!(
            "{text}\n[[consumer]]\nid = \"other-onestop\"\nname = \"Một cửa tỉnh khác\"\n\
             api_key_sha256 = [\"{}\"]\n",
            hex::encode(sha2::Sha256::digest(OTHER_KEY.as_bytes()))
        ),
        _ => text,
    }
}

/// A receipt time a minute ago, as a one-stop system sends it (Vietnam's offset).
fn received_now() -> String {
    let ms = lienthong::audit::record::now_ms() - 60_000 + 7 * 3_600_000;
    format!("{}+07:00", &lienthong::domain::date::iso_ms(ms)[..19])
}

fn declaration(dossier: &str, keys: &[&str]) -> Value {
    json!({
        "dossier_id": dossier,
        "procedure_code": PROCEDURE,
        "received_at": received_now(),
        "officer_id": OFFICER,
        "subjects": keys.iter().map(|k| json!({"dataset": "population.citizen", "key": k})).collect::<Vec<_>>(),
    })
}

async fn post(h: &Harness, key: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = h
        .http
        .post(format!("{}{path}", h.base))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("sent");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A citizen lookup as `key`, under `dossier` and `procedure`: (status, body).
async fn look(h: &Harness, key: &str, dossier: &str, procedure: &str, id: &str) -> (u16, Value) {
    let r = h
        .http
        .get(format!("{}/v1/citizens/{id}", h.base))
        .bearer_auth(key)
        .header("X-Procedure-Code", procedure)
        .header("X-Dossier-Id", dossier)
        .header("X-Officer-Id", OFFICER)
        .send()
        .await
        .expect("sent");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn refused_unbound(answer: &(u16, Value), secret: &str, says: &str) {
    let (status, body) = answer;
    assert_eq!(*status, 403, "{body}");
    assert_eq!(body["code"], "purpose_not_bound", "{body}");
    let detail = body["detail"].as_str().expect("detail");
    assert!(detail.contains(says), "{detail:?} should say {says:?}");
    assert!(
        !detail.contains(secret),
        "the refusal echoes the key: {detail}"
    );
}

#[tokio::test]
async fn declared_binding_serves_declared_subjects_and_refuses_the_rest_before_the_provider() {
    let h = Harness::start_with(declared).await;
    let ids = h
        .sims
        .data
        .samples("population.citizen", 4)
        .expect("samples");
    let [a, b, c, d] = [&ids[0], &ids[1], &ids[2], &ids[3]].map(String::as_str);
    let calls = || h.sims.population.calls(CITIZEN_LOOKUP);

    // No dossier declared yet: refused, naming the dossier, and the provider is not asked.
    refused_unbound(
        &look(&h, API_KEY, DOSSIER, PROCEDURE, a).await,
        a,
        "was not declared by this consumer",
    );
    assert_eq!(calls(), 0);

    // One declaration, sent twice below: the retry carries the same receipt time.
    let first = declaration(DOSSIER, &[a]);
    let r = h
        .http
        .post(format!("{}/v1/dossiers", h.base))
        .bearer_auth(API_KEY)
        .json(&first)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers().get("location").and_then(|v| v.to_str().ok()),
        Some(format!("/v1/dossiers/{DOSSIER}").as_str())
    );
    let dossier: Value = r.json().await.expect("json");
    assert_eq!(dossier["status"], "open");
    assert_eq!(dossier["subjects"].as_array().map(Vec::len), Some(1));
    assert!(
        !dossier.to_string().contains(a),
        "the register answers references only"
    );
    // The same declaration again (a retry) is answered as it stands.
    let (status, _) = post(&h, API_KEY, "/v1/dossiers", &first).await;
    assert_eq!(status, 200);
    let (status, body) = post(&h, API_KEY, "/v1/dossiers", &declaration(DOSSIER, &[b])).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("already_exists"))
    );

    // The declared subject is served; another key, another procedure are not.
    assert_eq!(look(&h, API_KEY, DOSSIER, PROCEDURE, a).await.0, 200);
    assert_eq!(calls(), 1);
    refused_unbound(
        &look(&h, API_KEY, DOSSIER, PROCEDURE, b).await,
        b,
        "the key is not among the subjects",
    );
    refused_unbound(
        &look(&h, API_KEY, DOSSIER, "1.000046", a).await,
        a,
        "was declared for procedure 1.001612, not 1.000046",
    );

    // Another consumer's dossiers are not the caller's, whatever their ids.
    let other_dossier = "000.00.53.H48-251128-0002";
    for (dossier, keys) in [(DOSSIER, [c]), (other_dossier, [d])] {
        let (status, _) = post(&h, OTHER_KEY, "/v1/dossiers", &declaration(dossier, &keys)).await;
        assert_eq!(status, 201, "a dossier is keyed by consumer and id");
    }
    refused_unbound(
        &look(&h, API_KEY, DOSSIER, PROCEDURE, c).await,
        c,
        "not among the subjects",
    );
    refused_unbound(
        &look(&h, API_KEY, other_dossier, PROCEDURE, d).await,
        d,
        "was not declared by this consumer",
    );
    refused_unbound(
        &look(&h, OTHER_KEY, DOSSIER, PROCEDURE, a).await,
        a,
        "not among the subjects",
    );
    assert_eq!(
        look(&h, OTHER_KEY, other_dossier, PROCEDURE, d).await.0,
        200
    );
    let served_so_far = calls();
    let reading = h
        .http
        .get(format!("{}/v1/dossiers/{other_dossier}", h.base))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        reading.status(),
        404,
        "another consumer's dossier is not found"
    );

    // Batch items are checked one by one; verify is bound too.
    let batch: Value = with_context(h.http.post(format!("{}/v1/batch", h.base)))
        .json(&json!({"items": [
            {"dataset": "population.citizen", "key": a},
            {"dataset": "population.citizen", "key": b},
        ]}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(batch["items"][0]["outcome"], "ok", "{batch}");
    assert_eq!(batch["items"][1]["outcome"], "purpose_not_bound", "{batch}");
    let verify = |key: &str| {
        with_context(
            h.http
                .post(format!("{}/v1/datasets/population.citizen/verify", h.base)),
        )
        .json(&json!({"key": key, "claims": {"full_name": "Nguyễn Văn A"}}))
        .send()
    };
    assert_eq!(verify(b).await.expect("sent").status(), 403);
    assert_eq!(verify(a).await.expect("sent").status(), 200);

    // A subject added is served at once; removed, refused at once.
    let subjects = format!("/v1/dossiers/{DOSSIER}/subjects");
    let change =
        json!({"dataset": "population.citizen", "key": b, "reason": "người được ủy quyền"});
    assert_eq!(post(&h, API_KEY, &subjects, &change).await.0, 200);
    assert_eq!(look(&h, API_KEY, DOSSIER, PROCEDURE, b).await.0, 200);
    let (status, body) = post(&h, API_KEY, &subjects, &change).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("already_exists"))
    );
    let remove = format!("{subjects}/remove");
    let no_reason = json!({"dataset": "population.citizen", "key": b, "reason": " "});
    assert_eq!(post(&h, API_KEY, &remove, &no_reason).await.0, 400);
    let mistake = json!({"dataset": "population.citizen", "key": b, "reason": "khai nhầm"});
    assert_eq!(post(&h, API_KEY, &remove, &mistake).await.0, 200);
    refused_unbound(
        &look(&h, API_KEY, DOSSIER, PROCEDURE, b).await,
        b,
        "not among the subjects",
    );
    let bad_key = json!({"dataset": "population.citizen", "key": "00109900001", "reason": "x"});
    let (status, body) = post(&h, API_KEY, &subjects, &bad_key).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_key")));

    // Closed: nothing more is served under it, and it closes once.
    let close = format!("/v1/dossiers/{DOSSIER}/close");
    let (status, body) = post(&h, API_KEY, &close, &json!({"result": "maybe"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, closed) = post(&h, API_KEY, &close, &json!({"result": "approved"})).await;
    assert_eq!((status, closed["status"].as_str()), (200, Some("closed")));
    let before = calls();
    refused_unbound(
        &look(&h, API_KEY, DOSSIER, PROCEDURE, a).await,
        a,
        "is closed",
    );
    assert_eq!(
        calls(),
        before,
        "a refused lookup never reaches the provider"
    );
    let (status, body) = post(&h, API_KEY, &close, &json!({"result": "refused"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("dossier_ended"))
    );
    let (status, body) = post(&h, API_KEY, &subjects, &change).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("dossier_ended"))
    );
    assert!(calls() >= served_so_far);

    // Read back: closed, approved, the removed subject kept with its reason; no key.
    let back: Value = h
        .http
        .get(format!("{}/v1/dossiers/{DOSSIER}", h.base))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (back["status"].as_str(), back["result"].as_str()),
        (Some("closed"), Some("approved"))
    );
    let subjects = back["subjects"].as_array().expect("subjects");
    assert_eq!(subjects.len(), 2);
    assert_eq!(subjects[1]["removed_reason"], "khai nhầm");
    for k in [a, b] {
        assert!(!back.to_string().contains(k));
    }

    // Each declaration, change and closing left a record, refused ones included.
    let records = h
        .admin_json(
            "demo-operator-token",
            &format!("/admin/v1/audit/records?consumer=demo-onestop&dossier={DOSSIER}&limit=200"),
        )
        .await;
    let rows = records["records"].as_array().expect("records");
    let count = |action: &str, outcome: &str| {
        rows.iter()
            .filter(|r| r["action"] == action && r["outcome"] == outcome)
            .count()
    };
    assert_eq!(
        count("dossier_declare", "served"),
        2,
        "a declaration and its retry"
    );
    assert_eq!(count("dossier_declare", "already_exists"), 1);
    assert_eq!(count("dossier_add_subject", "served"), 1);
    assert_eq!(count("dossier_remove_subject", "served"), 1);
    assert_eq!(count("dossier_remove_subject", "invalid_request"), 1);
    assert_eq!(count("dossier_close", "served"), 1);
    assert_eq!(count("dossier_close", "dossier_ended"), 1);
    assert!(count("fetch", "purpose_not_bound") >= 4);
    assert!(
        !records.to_string().contains(a),
        "the trail holds references only"
    );
}

#[tokio::test]
async fn the_dossier_service_speaks_grpc() {
    use lienthong::proto::lienthong::dossier_service_client::DossierServiceClient;
    use lienthong::proto::lienthong::*;
    let h = Harness::start_with(declared).await;
    let id = h.sample("population.citizen");
    let mut client = DossierServiceClient::connect(h.base.clone())
        .await
        .expect("connects");
    let subject = || SubjectKey {
        dataset: "population.citizen".into(),
        key: id.clone(),
    };
    let declared = client
        .declare(authed(DeclareDossierRequest {
            dossier_id: DOSSIER.into(),
            procedure_code: PROCEDURE.into(),
            subjects: vec![subject()],
            received_at: received_now(),
            officer_id: OFFICER.into(),
        }))
        .await
        .expect("declared")
        .into_inner();
    assert!(declared.created);
    let mut lookups = h.grpc().await;
    let found = lookups
        .get_citizen(authed(GetCitizenRequest {
            context: context(),
            personal_id: id.clone(),
            fields: vec![],
        }))
        .await;
    assert!(found.is_ok(), "{found:?}");
    let closed = client
        .close(authed(CloseDossierRequest {
            dossier_id: DOSSIER.into(),
            result: "withdrawn".into(),
            officer_id: String::new(),
        }))
        .await
        .expect("closed")
        .into_inner();
    assert_eq!(closed.dossier.expect("dossier").result, "withdrawn");
    let refused = lookups
        .get_citizen(authed(GetCitizenRequest {
            context: context(),
            personal_id: id.clone(),
            fields: vec![],
        }))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let details = tonic_types::StatusExt::get_error_details(&refused);
    assert_eq!(
        details.error_info().map(|i| i.reason.as_str()),
        Some("purpose_not_bound")
    );
    let again = client
        .close(authed(CloseDossierRequest {
            dossier_id: DOSSIER.into(),
            result: "approved".into(),
            officer_id: String::new(),
        }))
        .await
        .expect_err("closed once");
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    // An unknown caller hears only that.
    let anonymous = client
        .get_dossier(GetDossierRequest {
            dossier_id: DOSSIER.into(),
        })
        .await
        .expect_err("refused");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
}

#[tokio::test]
async fn a_dossier_never_closed_expires_and_its_expiry_is_audited() {
    let h = Harness::start_with(|file, text| match file {
        "gateway.toml" => {
            format!("{text}\n[dossiers]\nexpire_days = 1\nsweep_interval_ms = 100\ncache_ms = 0\n")
        }
        _ => declared(file, text),
    })
    .await;
    let id = h.sample("population.citizen");
    // Received a day ago less two seconds: it expires two seconds from now.
    let received = lienthong::audit::record::now_ms() - 86_400_000 + 2_000;
    let mut body = declaration(DOSSIER, &[&id]);
    body["received_at"] = json!(lienthong::domain::date::iso_ms(received));
    assert_eq!(post(&h, API_KEY, "/v1/dossiers", &body).await.0, 201);
    assert_eq!(look(&h, API_KEY, DOSSIER, PROCEDURE, &id).await.0, 200);
    let mut expired = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let records = h
            .admin_json(
                "demo-operator-token",
                &format!("/admin/v1/audit/records?dossier={DOSSIER}"),
            )
            .await;
        if let Some(r) = records["records"]
            .as_array()
            .expect("records")
            .iter()
            .find(|r| r["action"] == "dossier_expire")
        {
            expired = Some(r.clone());
            break;
        }
    }
    let expired = expired.expect("the expiry is audited within 10 s");
    assert_eq!(expired["consumer"], "demo-onestop");
    assert_eq!(expired["procedure_code"], PROCEDURE);
    refused_unbound(
        &look(&h, API_KEY, DOSSIER, PROCEDURE, &id).await,
        &id,
        "is expired",
    );
    let (status, body) = post(
        &h,
        API_KEY,
        &format!("/v1/dossiers/{DOSSIER}/close"),
        &json!({"result": "approved"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("dossier_ended"))
    );
    // A receipt time the expiry has already passed, or in the future, is refused.
    for at in ["2020-01-01", "2999-01-01T00:00:00+07:00", "hôm qua"] {
        body_refused(&h, at).await;
    }
}

async fn body_refused(h: &Harness, received_at: &str) {
    let id = h.sample("population.citizen");
    let mut body = declaration("000.00.53.H48-251128-0099", &[&id]);
    body["received_at"] = json!(received_at);
    let (status, answer) = post(h, API_KEY, "/v1/dossiers", &body).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("invalid_request")),
        "{received_at}: {answer}"
    );
}

/// Two replicas in this process on the test PostgreSQL (a schema of their own) and Redis
/// (a key prefix of their own), each trusting its cached dossiers for a minute: only the
/// announcement over Redis can carry a closure to the other replica in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_dossiers_and_a_closure_reaches_the_other_within_moments() {
    let (Some(pg), Some(redis)) = (postgres_url(), redis_url()) else {
        return;
    };
    let schema = unique("t_dossiers");
    let prefix = unique("dossiers");
    let sims = lienthong::sim::spawn(lienthong::sim::SimOptions::ephemeral())
        .await
        .expect("simulators");
    let root = tempfile::tempdir().expect("dir");
    let extra = format!(
        "[storage]\npostgres_url = \"{pg}\"\nschema = \"{schema}\"\n\
         [redis]\nurl = \"{redis}\"\nkey_prefix = \"{prefix}:\"\n\
         [dossiers]\ncache_ms = 60000\n"
    );
    let replicas = start_replicas(
        root.path(),
        &sims,
        &["replica-a", "replica-b"],
        &extra,
        declared,
    )
    .await;
    let [a, b] = [&replicas[0], &replicas[1]].map(|r| format!("http://{}", r.lookup_addr));
    let http = reqwest::Client::new();
    let id = sims.data.samples("population.citizen", 2).expect("samples")[1].clone();
    let lookup_on = |base: &str| {
        http.get(format!("{base}/v1/citizens/{id}"))
            .bearer_auth(API_KEY)
            .header("X-Procedure-Code", PROCEDURE)
            .header("X-Dossier-Id", DOSSIER)
            .header("X-Officer-Id", OFFICER)
            .send()
    };
    let declared = http
        .post(format!("{a}/v1/dossiers"))
        .bearer_auth(API_KEY)
        .json(&declaration(DOSSIER, &[&id]))
        .send()
        .await
        .expect("sent");
    assert_eq!(declared.status(), 201);
    // Declared on A, served on B, and B now holds it in its cache.
    assert_eq!(lookup_on(&b).await.expect("sent").status(), 200);
    assert_eq!(lookup_on(&b).await.expect("sent").status(), 200);
    let read = http
        .get(format!("{b}/v1/dossiers/{DOSSIER}"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("sent");
    assert_eq!(read.status(), 200, "B reads the dossier A registered");

    let closed = http
        .post(format!("{a}/v1/dossiers/{DOSSIER}/close"))
        .bearer_auth(API_KEY)
        .json(&json!({"result": "transferred"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(closed.status(), 200);
    let started = std::time::Instant::now();
    let mut refused_after = None;
    while started.elapsed() < Duration::from_secs(5) {
        if lookup_on(&b).await.expect("sent").status() == 403 {
            refused_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = refused_after.expect("B refuses within 5 s, far inside its 60 s cache");
    eprintln!(
        "the closure reached the other replica in {} ms",
        after.as_millis()
    );
    for r in replicas {
        r.shutdown().await;
    }
    let pool = sqlx::PgPool::connect(&pg).await.expect("connects");
    // The shared store holds references, never the key.
    let stored: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT subject FROM {schema}.dossier_subjects"
    )))
    .fetch_all(&pool)
    .await
    .expect("reads");
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].contains(&id));
    drop_schema(&pg, &schema).await;
}

/// Dossier calls count against the consumer's overall quota: a consumer cannot flood the
/// register faster than it may look up.
#[tokio::test]
async fn dossier_calls_spend_the_consumers_quota() {
    let h = Harness::start_with(|file, text| match file {
        "consumers.toml" => declared(file, text).replacen(
            "id = \"demo-onestop\"\n",
            "id = \"demo-onestop\"\nquota = \"3/min\"\n",
            1,
        ),
        _ => declared(file, text),
    })
    .await;
    let ids = h
        .sims
        .data
        .samples("population.citizen", 4)
        .expect("samples");
    let mut statuses = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let dossier = format!("000.00.53.H48-251130-{:04}", i + 1);
        let (status, body) = post(&h, API_KEY, "/v1/dossiers", &declaration(&dossier, &[id])).await;
        statuses.push((status, body["code"].as_str().unwrap_or("").to_owned()));
    }
    assert_eq!(
        statuses,
        [
            (201, String::new()),
            (201, String::new()),
            (201, String::new()),
            (429, "rate_limited".to_owned())
        ]
    );
}
