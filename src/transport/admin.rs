//! The admin listener: liveness, readiness, `/metrics` and the live `/dashboard` (open), and
//! under `/admin/v1/` the operator's API, which needs an operator token from the start.

use crate::audit::query::{self, Filters};
use crate::config::{AdminRole, AdminToken};
use crate::core::error::{ErrorCode, LookupError};
use crate::core::service::{Gateway, same_digest};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub fn router(gateway: Arc<crate::core::live::Live>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|super::Current(g): super::Current| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    g.render_metrics().await,
                )
            }),
        )
        .route(
            "/dashboard",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    include_str!("dashboard.html"),
                )
            }),
        )
        .route("/admin/v1/audit/records", get(records))
        .route("/admin/v1/audit/report", get(report))
        .route("/admin/v1/breakers", get(breakers))
        .route("/admin/v1/reload", axum::routing::post(reload))
        .route("/admin/v1/registry/versions", get(versions))
        .route("/admin/v1/registry/rollback", axum::routing::post(rollback))
        .merge(super::admin_grants::routes())
        .merge(super::admin_connectors::routes())
        .route("/admin/v1/cache/purge", axum::routing::post(purge))
        .with_state(gateway)
}

/// Ready to take lookups: config loaded (it is, or the process would not run), not
/// shutting down, the audit store writable, and no connector marked critical hard down.
async fn readyz(super::Current(g): super::Current) -> Response {
    let draining = g.is_draining();
    let audit =
        match tokio::time::timeout(std::time::Duration::from_secs(2), g.audit().store().ping())
            .await
        {
            Ok(Ok(())) => "ok".to_owned(),
            Ok(Err(e)) => format!("not writable: {e}"),
            Err(_) => "not writable: no answer within 2 s".to_owned(),
        };
    let down = g.critical_down();
    let ready = !draining && audit == "ok" && down.is_empty();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": {
            "config": "ok",
            "draining": draining,
            "audit_store": audit,
            "critical_connectors_down": down,
        }
    });
    let status = if ready {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The admin credential behind `Authorization: Bearer <token>` (compared by SHA-256
/// without an early exit), if its role is among `allowed`; the refusal names the roles that
/// may.
pub(crate) fn admin(
    gateway: &Gateway,
    headers: &HeaderMap,
    allowed: &[&str],
) -> Result<AdminToken, LookupError> {
    let token = super::bearer(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
    .ok_or_else(|| {
        LookupError::new(
            ErrorCode::Unauthenticated,
            "send Authorization: Bearer <admin token>",
        )
    })?;
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let mut found = None;
    for t in &gateway.config().admin_tokens {
        // Every token is compared: the time taken does not say which one was close.
        if same_digest(&t.hash, &digest) {
            found = Some(t.clone());
        }
    }
    let who = found.ok_or_else(|| {
        LookupError::new(
            ErrorCode::Unauthenticated,
            "the admin token is not recognised",
        )
    })?;
    let role = match who.role {
        AdminRole::Operator => "operator",
        AdminRole::Auditor => "auditor",
        AdminRole::Provider { .. } => "provider",
    };
    if allowed.contains(&role) {
        Ok(who)
    } else {
        Err(LookupError::new(
            ErrorCode::PermissionDenied,
            format!(
                "{role} credentials cannot do this; it needs: {}",
                allowed.join(" or ")
            ),
        ))
    }
}

/// The current text of one of the registry's files ("connectors", "consumers", "grants"),
/// parsed.
pub(crate) fn role_table(g: &Gateway, role: &str) -> Result<toml::Table, LookupError> {
    let text = g
        .config()
        .files
        .iter()
        .find(|(r, _)| r == role)
        .map(|(_, t)| t.as_str())
        .unwrap_or_default();
    toml::from_str(text).map_err(|e| LookupError::new(ErrorCode::Internal, e.to_string()))
}

/// Why a configuration change was refused, as the admin API answers it.
pub(crate) fn refusal(e: crate::core::live::ReloadError) -> LookupError {
    let message = match e {
        crate::core::live::ReloadError::Invalid(errors) => {
            format!("the change is refused, nothing was applied:\n{errors}")
        }
        other => other.to_string(),
    };
    LookupError::new(ErrorCode::InvalidRequest, message)
}

/// The registry's files with `role`'s replaced by `table`.
pub(crate) fn files_with(
    g: &Gateway,
    role: &str,
    table: &toml::Table,
) -> Result<Vec<(String, String)>, LookupError> {
    let text =
        toml::to_string(table).map_err(|e| LookupError::new(ErrorCode::Internal, e.to_string()))?;
    let mut files = g.config().files.clone();
    files.retain(|(r, _)| r != role);
    files.push((role.to_owned(), text));
    Ok(files)
}

/// An admin action as the audit trail records it.
pub(crate) struct AdminAction<'a> {
    pub request_id: &'a str,
    pub actor: &'a str,
    pub action: &'a str,
    pub dataset: &'a str,
    pub subject: String,
    pub ok: bool,
    pub detail: String,
}

/// Records an admin action in the audit chain (committed before the answer leaves).
pub(crate) async fn record_admin(g: &Gateway, a: AdminAction<'_>) -> Result<(), LookupError> {
    let entry = crate::audit::record::AuditEntry {
        time_ms: crate::audit::record::now_ms(),
        request_id: a.request_id.to_owned(),
        transport: "admin".into(),
        actor: a.actor.to_owned(),
        credential: "admin_token".into(),
        dataset: a.dataset.to_owned(),
        subject: a.subject,
        action: a.action.to_owned(),
        outcome: if a.ok { "served" } else { "invalid_request" }.into(),
        upstream_ms: -1,
        detail: a.detail,
        ..Default::default()
    };
    g.audit().record(entry).await.map_err(|e| {
        tracing::error!(error = %e, action = a.action, "admin action not recorded");
        LookupError::new(
            ErrorCode::AuditUnavailable,
            "the action could not be recorded in the audit trail",
        )
    })
}

/// Whether this credential may manage `dataset` (operators all; providers those their
/// agency owns).
pub(crate) fn manages(g: &Gateway, who: &AdminToken, dataset: &str) -> bool {
    match &who.role {
        AdminRole::Operator => true,
        AdminRole::Auditor => false,
        AdminRole::Provider { agency } => g
            .config()
            .dataset(dataset)
            .is_some_and(|d| d.owner == agency),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Params {
    dataset: Option<String>,
    subject: Option<String>,
    consumer: Option<String>,
    dossier: Option<String>,
    officer: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    page_token: Option<String>,
}

impl From<Params> for Filters {
    fn from(p: Params) -> Filters {
        Filters {
            dataset: p.dataset,
            subject: p.subject,
            consumer: p.consumer,
            dossier: p.dossier,
            officer: p.officer,
            from: p.from,
            to: p.to,
            limit: p.limit,
            page_token: p.page_token,
        }
    }
}

async fn records(
    super::Current(g): super::Current,
    headers: HeaderMap,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    read(&g, &headers, params, false).await
}

/// A subject's access report: the disclosures of their data (needs dataset and subject).
async fn report(
    super::Current(g): super::Current,
    headers: HeaderMap,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    read(&g, &headers, params, true).await
}

async fn read(
    g: &Gateway,
    headers: &HeaderMap,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
    report: bool,
) -> Response {
    let request_id = super::request_id();
    let fail = |e: LookupError| super::rest::problem(&e, &request_id);
    let actor = match admin(g, headers, &["operator", "auditor"]) {
        Ok(w) => w.name,
        Err(e) => return fail(e),
    };
    let filters: Filters = match params {
        Ok(Query(p)) => p.into(),
        Err(e) => return fail(LookupError::new(ErrorCode::InvalidRequest, e.body_text())),
    };
    if report && (filters.dataset.is_none() || filters.subject.is_none()) {
        return fail(LookupError::new(
            ErrorCode::InvalidRequest,
            "a report needs dataset and subject",
        ));
    }
    let audit = g.audit();
    let mut q = match filters.to_query(audit.subjects()) {
        Ok(q) => q,
        Err(m) => return fail(LookupError::new(ErrorCode::InvalidRequest, m)),
    };
    if report {
        q.outcome = Some("served".into());
    }
    let page = match query::page(audit.store(), &q).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "audit query failed");
            return fail(LookupError::new(
                ErrorCode::AuditUnavailable,
                "the audit store cannot be read",
            ));
        }
    };
    // Reading the trail is itself recorded, and committed before the answer leaves.
    let mut entry = query::read_entry(&actor, "admin", &filters, &page, q.subject.clone());
    entry.request_id = request_id.clone();
    if let Err(e) = audit.record(entry).await {
        tracing::error!(error = %e, "audit read not recorded; refused");
        return fail(LookupError::new(
            ErrorCode::AuditUnavailable,
            "the read could not be recorded, so nothing is shown",
        ));
    }
    Json(json!({
        "records": page.records.iter().map(query::to_json).collect::<Vec<_>>(),
        "next_page_token": page.next,
    }))
    .into_response()
}

/// Each connector's guard (breaker state, load, refusals) and active health probe; a
/// provider credential sees its own agency's connectors only.
async fn breakers(super::Current(g): super::Current, headers: HeaderMap) -> Response {
    let who = match admin(&g, &headers, &["operator", "provider"]) {
        Ok(w) => w,
        Err(e) => return super::rest::problem(&e, &super::request_id()),
    };
    let probes = g.probes();
    let connectors: Vec<_> = g
        .guards()
        .into_iter()
        .filter(|(_, dataset, _, _)| manages(&g, &who, dataset))
        .map(
            |(name, dataset, s, [calls, attempts, retries, open, busy])| {
                let probe = probes.iter().find(|(n, _)| *n == name).map(|(_, p)| {
                    json!({
                        "up": p.up,
                        "probes": p.probes,
                        "failures": p.failures,
                        "last": crate::domain::date::iso_ms(p.last_ms),
                        "latency_ms": p.latency_ms,
                        "error": p.error,
                    })
                });
                json!({
                    "connector": name,
                    "dataset": dataset,
                    "breaker": s.breaker.as_str(),
                    "consecutive_failures": s.consecutive_failures,
                    "window_calls": s.window_calls,
                    "window_failures": s.window_failures,
                    "in_flight": s.in_flight,
                    "waiting": s.waiting,
                    "retry_balance": s.retry_balance,
                    "calls": calls,
                    "attempts": attempts,
                    "retries": retries,
                    "rejected_breaker_open": open,
                    "rejected_capacity": busy,
                    "health_probe": probe,
                })
            },
        )
        .collect();
    Json(json!({ "connectors": connectors })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    dataset: String,
    key: Option<String>,
}

/// Forgets cached records of a dataset, or of one key; recorded in the audit chain.
async fn purge(
    super::Current(g): super::Current,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request_id = super::request_id();
    let fail = |e: LookupError| super::rest::problem(&e, &request_id);
    let who = match admin(&g, &headers, &["operator", "provider"]) {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let actor = who.name.clone();
    let body: PurgeBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return fail(LookupError::new(
                ErrorCode::InvalidRequest,
                format!("body must be {{\"dataset\": \"...\", \"key\"?: \"...\"}}: {e}"),
            ));
        }
    };
    if g.config().dataset(&body.dataset).is_some() && !manages(&g, &who, &body.dataset) {
        return fail(LookupError::new(
            ErrorCode::PermissionDenied,
            format!("{} belongs to another agency", body.dataset),
        ));
    }
    let held = match g.purge(&body.dataset, body.key.as_deref()).await {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    let subject = body
        .key
        .as_deref()
        .map(|k| g.audit().subject(&body.dataset, k))
        .unwrap_or_default();
    let detail = if body.key.is_some() {
        "one key"
    } else {
        "whole dataset"
    };
    let recorded = record_admin(
        &g,
        AdminAction {
            request_id: &request_id,
            actor: &actor,
            action: "cache_purge",
            dataset: &body.dataset,
            subject,
            ok: true,
            detail: detail.into(),
        },
    )
    .await;
    if let Err(e) = recorded {
        return fail(e);
    }
    Json(json!({
        "dataset": body.dataset,
        "purged": if body.key.is_some() { "key" } else { "dataset" },
        "records_held_before": held,
    }))
    .into_response()
}

/// Reads the configuration files again and, if they validate, swaps them in at once:
/// calls in flight finish on the old version, new ones see the new. Recorded in the audit
/// trail. Operators only.
async fn reload(State(live): State<Arc<crate::core::live::Live>>, headers: HeaderMap) -> Response {
    let request_id = super::request_id();
    let fail = |e: LookupError| super::rest::problem(&e, &request_id);
    let g = live.current();
    let who = match admin(&g, &headers, &["operator"]) {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let outcome = live.reload(&who.name).await;
    let (status, detail, answer) = match &outcome {
        Ok(r) => (
            "served",
            format!(
                "version {}: kept {:?}, rebuilt {:?}, needs restart {:?}",
                r.version, r.kept, r.rebuilt, r.needs_restart
            ),
            Ok(json!({
                "version": r.version,
                "connectors_kept": r.kept,
                "connectors_rebuilt": r.rebuilt,
                "needs_restart": r.needs_restart,
            })),
        ),
        Err(e) => (
            "invalid_request",
            "refused: the running configuration stays".to_owned(),
            Err(e.to_string()),
        ),
    };
    let _ = record_admin(
        &g,
        AdminAction {
            request_id: &request_id,
            actor: &who.name,
            action: "config_reload",
            dataset: "",
            subject: String::new(),
            ok: status == "served",
            detail,
        },
    )
    .await;
    match answer {
        Ok(body) => Json(body).into_response(),
        Err(message) => fail(LookupError::new(ErrorCode::InvalidRequest, message)),
    }
}

/// The registry's history: every configuration version the gateway ran, newest first, with
/// who changed it and why (operators and auditors).
async fn versions(
    State(live): State<Arc<crate::core::live::Live>>,
    headers: HeaderMap,
) -> Response {
    let request_id = super::request_id();
    let g = live.current();
    if let Err(e) = admin(&g, &headers, &["operator", "auditor"]).map(|_| ()) {
        return super::rest::problem(&e, &request_id);
    }
    let Some(registry) = live.registry() else {
        return Json(json!({ "running": live.version(), "versions": [] })).into_response();
    };
    match registry.history().await {
        Ok(all) => Json(json!({
            "running": live.version(),
            "versions": all.iter().map(|v| json!({
                "version": v.version,
                "time": crate::domain::date::iso_ms(v.time_ms),
                "actor": v.actor,
                "change": v.change,
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => super::rest::problem(&LookupError::new(ErrorCode::Internal, e), &request_id),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    version: i64,
}

/// Runs an earlier configuration version again, as a new version (operators only).
async fn rollback(
    State(live): State<Arc<crate::core::live::Live>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request_id = super::request_id();
    let fail = |e: LookupError| super::rest::problem(&e, &request_id);
    let g = live.current();
    let who = match admin(&g, &headers, &["operator"]) {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let to = match serde_json::from_slice::<RollbackBody>(&body) {
        Ok(b) => b.version,
        Err(e) => {
            return fail(LookupError::new(
                ErrorCode::InvalidRequest,
                format!("body must be {{\"version\": N}}: {e}"),
            ));
        }
    };
    let outcome = live.rollback(&who.name, to).await;
    let _ = record_admin(
        &g,
        AdminAction {
            request_id: &request_id,
            actor: &who.name,
            action: "config_rollback",
            dataset: "",
            subject: String::new(),
            ok: outcome.is_ok(),
            detail: match &outcome {
                Ok(r) => format!("to version {to}, running as version {}", r.version),
                Err(e) => format!("to version {to} refused: {e}"),
            },
        },
    )
    .await;
    match outcome {
        Ok(r) => Json(json!({
            "version": r.version,
            "connectors_kept": r.kept,
            "connectors_rebuilt": r.rebuilt,
        }))
        .into_response(),
        Err(e) => fail(LookupError::new(ErrorCode::InvalidRequest, e.to_string())),
    }
}
