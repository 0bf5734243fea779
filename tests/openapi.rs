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
            "/v1/enterprises/{code}",
            "/v1/land-parcels/{parcel}",
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
    assert_eq!(operations, 7);

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
