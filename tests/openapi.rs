//! `/openapi.json` describes the REST surface that is actually served: every documented
//! operation answers, and what it answers fits the documented schema.

mod common;

use common::*;
use serde_json::{Value, json};

/// Whether `value` fits `schema` (the subset of JSON Schema the document uses): `$ref`,
/// `type`, `properties` (no undocumented keys), `items`, `additionalProperties`, `enum`.
fn conforms(value: &Value, schema: &Value, doc: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        let target = &doc["components"]["schemas"][name];
        if target.is_null() {
            return Err(format!("{at}: dangling reference {r}"));
        }
        return conforms(value, target, doc, at);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let actual = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let type_ok = types.is_empty()
        || types.contains(&actual)
        || (actual == "integer" && types.contains(&"number"));
    if !type_ok {
        return Err(format!("{at}: {actual} where the schema says {types:?}"));
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} is not among {allowed:?}"));
    }
    match value {
        Value::Object(map) => {
            let properties = schema["properties"].as_object();
            for (k, v) in map {
                match properties.and_then(|p| p.get(k)) {
                    Some(s) => conforms(v, s, doc, &format!("{at}.{k}"))?,
                    None => match &schema["additionalProperties"] {
                        Value::Bool(true) => {}
                        Value::Object(s) if !s.is_empty() => conforms(
                            v,
                            &schema["additionalProperties"],
                            doc,
                            &format!("{at}.{k}"),
                        )?,
                        _ if properties.is_none() => {}
                        _ => return Err(format!("{at}: key {k:?} is not documented")),
                    },
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                conforms(v, &schema["items"], doc, &format!("{at}[{i}]"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A receipt time of now, as a one-stop system would send it.
fn received_now() -> String {
    lienthong::domain::date::iso_ms(lienthong::audit::record::now_ms())
}

#[tokio::test]
async fn every_documented_operation_is_served_and_answers_as_documented() {
    let h = Harness::start().await;
    let doc: Value = h
        .http
        .get(format!("{}/openapi.json", h.base))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3.1"));

    let mut paths: Vec<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/v1/batch",
            "/v1/capabilities",
            "/v1/citizens/{id}",
            "/v1/datasets/{dataset}/records/{key}",
            "/v1/datasets/{dataset}/verify",
            "/v1/dossiers",
            "/v1/dossiers/{id}",
            "/v1/dossiers/{id}/close",
            "/v1/dossiers/{id}/subjects",
            "/v1/dossiers/{id}/subjects/remove",
            "/v1/enterprises/{code}",
            "/v1/land-parcels/{parcel}",
            "/v1/me/access-report",
        ]
    );

    let citizen = h.sample("population.citizen");
    let values = json!({
        "id": citizen,
        "code": h.sample("business.enterprise"),
        "parcel": h.sample("land.parcel"),
        "dataset": "population.citizen",
        "key": citizen,
    });
    let bodies = json!({
        "/v1/batch": {"items": [
            {"dataset": "population.citizen", "key": citizen},
            {"dataset": "business.enterprise", "key": "0100233489"}
        ]},
        "/v1/datasets/{dataset}/verify": {"key": citizen, "claims": {"full_name": "Nguyễn Văn A"}},
    });
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            operations += 1;
            if path.starts_with("/v1/dossiers") || path == "/v1/me/access-report" {
                continue; // dossiers in their order, below; the report in tests/report.rs
            }
            let mut url = path.clone();
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" {
                    let name = p["name"].as_str().expect("name");
                    let v = values[name]
                        .as_str()
                        .expect("a value for each path parameter");
                    url = url.replace(&format!("{{{name}}}"), v);
                }
            }
            let request = match method.as_str() {
                "get" => h.http.get(format!("{}{url}", h.base)),
                "post" => h
                    .http
                    .post(format!("{}{url}", h.base))
                    .json(&bodies[path.as_str()]),
                other => panic!("undocumented method in test: {other}"),
            };
            let response = request
                .bearer_auth(API_KEY)
                .header("X-Procedure-Code", PROCEDURE)
                .header("X-Dossier-Id", DOSSIER)
                .header("X-Officer-Id", OFFICER)
                .send()
                .await
                .expect("sent");
            assert_eq!(response.status(), 200, "{method} {url}");
            let body: Value = response.json().await.expect("json");
            let schema = &op["responses"]["200"]["content"]["application/json"]["schema"];
            assert!(!schema.is_null(), "{method} {path} documents its 200 body");
            if let Err(e) = conforms(&body, schema, &doc, "body") {
                panic!("{method} {url}: {e}\n{body}");
            }
        }
    }
    assert_eq!(operations, 13);

    // The dossier calls, in the order a one-stop system makes them.
    let dossier = "000.00.53.H48-251130-0042";
    let other = h
        .sims
        .data
        .samples("population.citizen", 3)
        .expect("samples")[2]
        .clone();
    for (method, path, url, status, body) in [
        (
            "post",
            "/v1/dossiers",
            "/v1/dossiers".to_owned(),
            201,
            json!({"dossier_id": dossier, "procedure_code": PROCEDURE, "received_at": received_now(),
                   "subjects": [{"dataset": "population.citizen", "key": citizen}]}),
        ),
        (
            "get",
            "/v1/dossiers/{id}",
            format!("/v1/dossiers/{dossier}"),
            200,
            Value::Null,
        ),
        (
            "post",
            "/v1/dossiers/{id}/subjects",
            format!("/v1/dossiers/{dossier}/subjects"),
            200,
            json!({"dataset": "population.citizen", "key": other, "reason": "spouse"}),
        ),
        (
            "post",
            "/v1/dossiers/{id}/subjects/remove",
            format!("/v1/dossiers/{dossier}/subjects/remove"),
            200,
            json!({"dataset": "population.citizen", "key": other, "reason": "declared by mistake"}),
        ),
        (
            "post",
            "/v1/dossiers/{id}/close",
            format!("/v1/dossiers/{dossier}/close"),
            200,
            json!({"result": "approved"}),
        ),
    ] {
        let target = format!("{}{url}", h.base);
        let request = match method {
            "get" => h.http.get(target),
            _ => h.http.post(target).json(&body),
        };
        let response = request.bearer_auth(API_KEY).send().await.expect("sent");
        assert_eq!(response.status(), status, "{method} {url}");
        let body: Value = response.json().await.expect("json");
        let schema = &doc["paths"][path][method]["responses"][status.to_string()]["content"]["application/json"]
            ["schema"];
        assert!(
            !schema.is_null(),
            "{method} {path} documents its {status} body"
        );
        if let Err(e) = conforms(&body, schema, &doc, "body") {
            panic!("{method} {url}: {e}\n{body}");
        }
    }

    // Errors: the documented problem body, with a code from the documented list.
    let problem = h
        .http
        .get(format!("{}/v1/citizens/{citizen}", h.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(problem.status(), 401);
    let body: Value = problem.json().await.expect("json");
    let documented = &doc["paths"]["/v1/citizens/{id}"]["get"]["responses"]["401"]["content"]["application/problem+json"]
        ["schema"];
    conforms(&body, documented, &doc, "problem").expect("problem fits");
    assert!(
        doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
            .as_array()
            .expect("codes")
            .contains(&json!("permission_denied"))
    );
    // Both ways in are declared.
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    assert_eq!(schemes["api_key"]["scheme"], "bearer");
    assert_eq!(schemes["client_certificate"]["type"], "mutualTLS");
}

#[test]
fn the_validator_rejects_what_does_not_fit() {
    let doc = json!({"components": {"schemas": {"R": {"type": "object", "properties": {"a": {"type": "string"}}}}}});
    let schema = json!({"$ref": "#/components/schemas/R"});
    assert!(conforms(&json!({"a": "x"}), &schema, &doc, "v").is_ok());
    assert!(conforms(&json!({"a": 1}), &schema, &doc, "v").is_err());
    assert!(conforms(&json!({"b": "x"}), &schema, &doc, "v").is_err());
    assert!(
        conforms(
            &json!({"a": "x"}),
            &json!({"$ref": "#/components/schemas/S"}),
            &doc,
            "v"
        )
        .is_err()
    );
}

/// A small deterministic generator (xorshift), so a failure names a seed that repeats it.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// The property Schemathesis checks, over every operation of `/openapi.json`: whatever is
/// sent (valid or not: keys, contexts, credentials, queries, bodies, sizes), the answer's
/// status is one the operation documents, with the content type documented for it.
#[tokio::test]
async fn no_request_gets_an_undocumented_status_or_content_type() {
    let h = Harness::start_with(|name, text| {
        if name == "gateway.toml" {
            // Small bounds so that generated requests reach them.
            text + "\n[door]\nsource_rate = \"1000000/s\"\nauth_failures = \"1000000/s\"\nmax_body_bytes = 4096\nmax_header_bytes = 4096\n"
        } else {
            text
        }
    })
    .await;
    let doc: Value = h
        .http
        .get(format!("{}/openapi.json", h.base))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let citizen = h.sample("population.citizen");
    let keys = [
        citizen.clone(),
        h.sample("business.enterprise"),
        h.sample("land.parcel"),
        "001099000017".to_owned(),
        "12".to_owned(),
        "%ZZ".to_owned(),
        "a%2Fb".to_owned(),
        "x".repeat(300),
        "%C3%28".to_owned(),
        "population.citizen".to_owned(),
        "tax.payer".to_owned(),
        "..".to_owned(),
        "000.00.53.H48-251130-0007".to_owned(),
    ];
    let queries = [
        "",
        "?fields=full_name",
        "?fields=a&fields=b",
        "?unknown=1",
        "?fields=%ZZ",
        "?fields=no_such_field",
        "?&&=",
    ];
    let bodies: Vec<Vec<u8>> = vec![
        br#"{"items":[{"dataset":"population.citizen","key":"KEY"}]}"#.to_vec(),
        br#"{"key":"KEY","claims":{"full_name":"A"}}"#.to_vec(),
        b"{}".to_vec(),
        b"{\"items\": [".to_vec(),
        b"not json".to_vec(),
        vec![b' '; 10_000],
        br#"{"items":[]}"#.to_vec(),
        br#"{"key":"KEY","claims":{"no_such":"x"}}"#.to_vec(),
        format!(r#"{{"dossier_id":"000.00.53.H48-251130-0007","procedure_code":"1.001612","received_at":"{}","subjects":[{{"dataset":"population.citizen","key":"KEY"}}]}}"#, received_now()).into_bytes(),
        br#"{"dossier_id":"x","procedure_code":"1","received_at":"soon","subjects":[]}"#.to_vec(),
        br#"{"dataset":"population.citizen","key":"KEY","reason":"spouse"}"#.to_vec(),
        br#"{"result":"approved"}"#.to_vec(),
        br#"{"result":"maybe"}"#.to_vec(),
    ];
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let mut checked = 0;
    let mut seen = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            for _ in 0..40 {
                let mut url = path.clone();
                for p in op["parameters"].as_array().into_iter().flatten() {
                    if p["in"] == "path" {
                        let name = p["name"].as_str().expect("name");
                        let key: &String = g.pick(&keys);
                        url = url.replace(&format!("{{{name}}}"), key);
                    }
                }
                let query: &&str = g.pick(&queries);
                url.push_str(query);
                let target = format!("{}{url}", h.base);
                let mut rb = match method.as_str() {
                    "get" => h.http.get(&target),
                    _ => {
                        let body = g.pick(&bodies).clone();
                        let body = String::from_utf8_lossy(&body).replace("KEY", &citizen);
                        h.http.post(&target).body(body)
                    }
                };
                if g.chance(80) {
                    rb = rb.bearer_auth(*g.pick(&[API_KEY, API_KEY, API_KEY, "wrong-key"]));
                }
                for (name, good, bad) in [
                    ("X-Procedure-Code", PROCEDURE, "3.000001"),
                    ("X-Dossier-Id", DOSSIER, "hồ sơ"),
                    ("X-Officer-Id", OFFICER, "c%C3"),
                ] {
                    if g.chance(85) {
                        rb = rb.header(name, if g.chance(80) { good } else { bad });
                    }
                }
                if g.chance(10) {
                    rb = rb.header("X-Purpose", *g.pick(&["abc%ZZ", "c%E1%BA%A5p", "%"]));
                }
                if g.chance(10) {
                    rb = rb.header("X-Request-Timeout-Ms", *g.pick(&["0", "5000", "soon"]));
                }
                if g.chance(5) {
                    rb = rb.header("X-Padding", "p".repeat(5000));
                }
                let response = rb.send().await.expect("sent");
                seen.insert(response.status().as_u16());
                let status = response.status().as_u16().to_string();
                let ct = response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let documented = &op["responses"][status.as_str()];
                assert!(
                    !documented.is_null(),
                    "{method} {url}: {status} is not documented for {path}"
                );
                assert!(
                    documented["content"].get(ct.as_str()).is_some(),
                    "{method} {url}: {status} came as {ct:?}, documented as {:?}",
                    documented["content"]
                        .as_object()
                        .map(|c| c.keys().collect::<Vec<_>>())
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 13 * 40);
    // The generator reaches the refusals, not only the happy path.
    for status in [200, 400, 401, 404, 413, 431] {
        assert!(seen.contains(&status), "no {status} among {seen:?}");
    }
}
