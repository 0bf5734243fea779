//! Connectors managed at run time under `/admin/v1/connectors`:
//! - list them, with their credentials redacted;
//! - change one's settings by merging a JSON object into its `[[connector]]` table
//!   (`{"timeout_ms": 2000, "cache": {"ttl_s": 60}}`);
//! - with `?probe_key=K`, try the changed connector with one lookup of K before it goes live;
//! - with `?dry_run=true`, only check.
//!
//! Each change applies as a new registry version and is recorded in the audit trail with the
//! connector before and after (credentials redacted). Operators manage every connector; a
//! provider manages those of its agency's datasets.

use super::admin::{admin, files_with, manages, role_table};
use crate::core::error::{ErrorCode, LookupError};
use crate::core::live::Live;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Live>> {
    Router::new()
        .route("/admin/v1/connectors", axum::routing::get(list))
        .route("/admin/v1/connectors/{name}", axum::routing::put(update))
}

#[derive(Deserialize, Default)]
struct Options {
    #[serde(default)]
    dry_run: bool,
    probe_key: Option<String>,
}

/// Keys whose values are credentials: shown as "(set)".
const SECRET_KEYS: &[&str] = &["secret", "token", "api_key"];

fn redacted(connector: &toml::Value) -> Value {
    let mut v = serde_json::to_value(connector).unwrap_or(Value::Null);
    if let Some(auth) = v.get_mut("auth").and_then(Value::as_object_mut) {
        for k in SECRET_KEYS {
            if auth.contains_key(*k) {
                auth.insert((*k).to_owned(), json!("(set)"));
            }
        }
    }
    v
}

async fn list(State(live): State<Arc<Live>>, headers: HeaderMap) -> Response {
    let request_id = super::request_id();
    let g = live.current();
    let who = match admin(&g, &headers, &["operator", "provider"]) {
        Ok(w) => w,
        Err(e) => return super::rest::problem(&e, &request_id),
    };
    let table = match role_table(&g, "connectors") {
        Ok(t) => t,
        Err(e) => return super::rest::problem(&e, &request_id),
    };
    let connectors: Vec<Value> = table
        .get("connector")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
        .filter(|c| {
            manages(
                &g,
                &who,
                c.get("dataset").and_then(|d| d.as_str()).unwrap_or(""),
            )
        })
        .map(redacted)
        .collect();
    Json(json!({ "version": live.version(), "connectors": connectors })).into_response()
}

/// Merges `patch` into `table`: objects merge one level deep, other values replace.
fn merge(table: &mut toml::Table, patch: &serde_json::Map<String, Value>) -> Result<(), String> {
    for (k, v) in patch {
        let value = toml::Value::try_from(v).map_err(|e| format!("{k}: {e}"))?;
        match (table.get_mut(k), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(new)) => {
                for (nk, nv) in new {
                    existing.insert(nk, nv);
                }
            }
            (_, value) => {
                table.insert(k.clone(), value);
            }
        }
    }
    Ok(())
}

async fn update(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(options): Query<Options>,
    body: axum::body::Bytes,
) -> Response {
    let request_id = super::request_id();
    let fail = |e: LookupError| super::rest::problem(&e, &request_id);
    let g = live.current();
    let who = match admin(&g, &headers, &["operator", "provider"]) {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let patch: serde_json::Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return fail(LookupError::new(
                ErrorCode::InvalidRequest,
                format!("body must be a JSON object of connector settings: {e}"),
            ));
        }
    };
    if patch.contains_key("name") || patch.contains_key("dataset") {
        return fail(LookupError::new(
            ErrorCode::InvalidRequest,
            "a connector's name and dataset do not change",
        ));
    }
    let mut table = match role_table(&g, "connectors") {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let Some(connector) = table
        .get_mut("connector")
        .and_then(|c| c.as_array_mut())
        .and_then(|all| {
            all.iter_mut()
                .find(|c| c.get("name").and_then(|n| n.as_str()) == Some(name.as_str()))
        })
        .and_then(|c| c.as_table_mut())
    else {
        return fail(LookupError::new(
            ErrorCode::NotFound,
            format!("there is no connector {name:?}"),
        ));
    };
    let dataset = connector
        .get("dataset")
        .and_then(|d| d.as_str())
        .unwrap_or("")
        .to_owned();
    if !manages(&g, &who, &dataset) {
        return fail(LookupError::new(
            ErrorCode::PermissionDenied,
            format!("connector {name} is not this credential's to manage"),
        ));
    }
    let before = redacted(&toml::Value::Table(connector.clone()));
    if let Err(m) = merge(connector, &patch) {
        return fail(LookupError::new(ErrorCode::InvalidRequest, m));
    }
    let after = redacted(&toml::Value::Table(connector.clone()));
    let files = match files_with(&g, "connectors", &table) {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let summary = format!("connector {name} updated");
    let probe = options
        .probe_key
        .as_deref()
        .map(|key| (dataset.as_str(), key));
    let outcome = live
        .apply(&who.name, &summary, files, options.dry_run, probe)
        .await;
    if !options.dry_run {
        let _ = super::admin::record_admin(
            &g,
            super::admin::AdminAction {
                request_id: &request_id,
                actor: &who.name,
                action: "connector_updated",
                dataset: &dataset,
                subject: String::new(),
                ok: outcome.is_ok(),
                detail: json!({ "change": summary, "before": before, "after": after }).to_string(),
            },
        )
        .await;
    }
    match outcome {
        Ok(None) => {
            Json(json!({ "dry_run": true, "valid": true, "connector": after })).into_response()
        }
        Ok(Some(r)) => Json(json!({
            "version": r.version,
            "connectors_rebuilt": r.rebuilt,
            "connector": after,
        }))
        .into_response(),
        Err(e) => fail(super::admin::refusal(e)),
    }
}
