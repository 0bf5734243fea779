//! Grants managed at run time under `/admin/v1/grants`: list, add, remove, each change (or
//! its dry run) validated as a whole configuration, applied at once as a new registry
//! version, and recorded in the audit trail with what was before and after.
//!
//! Operators manage every grant; a provider manages grants on the datasets its agency owns;
//! auditors may list.

use super::admin::{admin, files_with, manages, role_table};
use crate::core::error::{ErrorCode, LookupError};
use crate::core::live::Live;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Live>> {
    Router::new()
        .route("/admin/v1/grants", axum::routing::get(list).post(add))
        .route("/admin/v1/grants/{index}", axum::routing::delete(remove))
}

/// A grant as the API takes it (the grants file's keys).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    consumer: String,
    dataset: String,
    procedures: Vec<String>,
    fields: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    modes: Vec<String>,
    legal_basis: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    valid_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    valid_until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quota: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    allow_cache_bypass: bool,
}

#[derive(Deserialize, Default)]
struct DryRun {
    #[serde(default)]
    dry_run: bool,
}

fn grants_array(table: &mut toml::Table) -> &mut Vec<toml::Value> {
    let entry = table
        .entry("grant")
        .or_insert_with(|| toml::Value::Array(Vec::new()));
    if !entry.is_array() {
        *entry = toml::Value::Array(Vec::new());
    }
    entry.as_array_mut().expect("an array")
}

fn to_json(v: &toml::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Applies (or checks) the grants file `table` as a new version, audits it, and answers.
async fn change(
    live: &Live,
    actor: &str,
    action: &str,
    summary: String,
    (before, after): (Value, Value),
    table: toml::Table,
    dry_run: bool,
) -> Response {
    let request_id = super::request_id();
    let g = live.current();
    let files = match files_with(&g, "grants", &table) {
        Ok(f) => f,
        Err(e) => return super::rest::problem(&e, &request_id),
    };
    let outcome = live.apply(actor, &summary, files, dry_run, None).await;
    if !dry_run {
        let _ = super::admin::record_admin(
            &g,
            super::admin::AdminAction {
                request_id: &request_id,
                actor,
                action,
                dataset: "",
                subject: String::new(),
                ok: outcome.is_ok(),
                detail: json!({ "change": summary, "before": before, "after": after }).to_string(),
            },
        )
        .await;
    }
    match outcome {
        Ok(None) => {
            Json(json!({ "dry_run": true, "valid": true, "change": summary })).into_response()
        }
        Ok(Some(r)) => Json(json!({ "version": r.version, "change": summary })).into_response(),
        Err(e) => super::rest::problem(&super::admin::refusal(e), &request_id),
    }
}

/// Every grant, with its position (the index to remove it by).
async fn list(State(live): State<Arc<Live>>, headers: HeaderMap) -> Response {
    let request_id = super::request_id();
    let g = live.current();
    let who = match admin(&g, &headers, &["operator", "auditor", "provider"]) {
        Ok(w) => w,
        Err(e) => return super::rest::problem(&e, &request_id),
    };
    let mut table = match role_table(&g, "grants") {
        Ok(t) => t,
        Err(e) => return super::rest::problem(&e, &request_id),
    };
    let grants: Vec<Value> = grants_array(&mut table)
        .iter()
        .enumerate()
        .filter(|(_, v)| {
            let dataset = v.get("dataset").and_then(|d| d.as_str()).unwrap_or("");
            matches!(who.role, crate::config::AdminRole::Auditor) || manages(&g, &who, dataset)
        })
        .map(|(i, v)| json!({ "index": i, "grant": to_json(v) }))
        .collect();
    Json(json!({ "version": live.version(), "grants": grants })).into_response()
}

async fn add(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    Query(q): Query<DryRun>,
    body: axum::body::Bytes,
) -> Response {
    let request_id = super::request_id();
    let fail = |e: LookupError| super::rest::problem(&e, &request_id);
    let g = live.current();
    let who = match admin(&g, &headers, &["operator", "provider"]) {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let grant: GrantBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return fail(LookupError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "body must be a grant (consumer, dataset, procedures, fields, legal_basis, …): {e}"
                ),
            ));
        }
    };
    if !manages(&g, &who, &grant.dataset) {
        return fail(LookupError::new(
            ErrorCode::PermissionDenied,
            format!(
                "grants on {} are not this credential's to manage",
                grant.dataset
            ),
        ));
    }
    let value = match toml::Value::try_from(&grant) {
        Ok(v) => v,
        Err(e) => return fail(LookupError::new(ErrorCode::InvalidRequest, e.to_string())),
    };
    let mut table = match role_table(&g, "grants") {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    grants_array(&mut table).push(value.clone());
    let summary = format!("grant added: {} on {}", grant.consumer, grant.dataset);
    change(
        &live,
        &who.name,
        "grant_added",
        summary,
        (Value::Null, to_json(&value)),
        table,
        q.dry_run,
    )
    .await
}

async fn remove(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    Path(index): Path<usize>,
    Query(q): Query<DryRun>,
) -> Response {
    let request_id = super::request_id();
    let fail = |e: LookupError| super::rest::problem(&e, &request_id);
    let g = live.current();
    let who = match admin(&g, &headers, &["operator", "provider"]) {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let mut table = match role_table(&g, "grants") {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let grants = grants_array(&mut table);
    if index >= grants.len() {
        return fail(LookupError::new(
            ErrorCode::NotFound,
            format!("there is no grant {index} (there are {})", grants.len()),
        ));
    }
    let dataset = grants[index]
        .get("dataset")
        .and_then(|d| d.as_str())
        .unwrap_or("")
        .to_owned();
    if !manages(&g, &who, &dataset) {
        return fail(LookupError::new(
            ErrorCode::PermissionDenied,
            format!("grants on {dataset} are not this credential's to manage"),
        ));
    }
    let removed = grants.remove(index);
    let consumer = removed
        .get("consumer")
        .and_then(|c| c.as_str())
        .unwrap_or("");
    let summary = format!("grant removed: {consumer} on {dataset}");
    change(
        &live,
        &who.name,
        "grant_removed",
        summary,
        (to_json(&removed), Value::Null),
        table,
        q.dry_run,
    )
    .await
}
