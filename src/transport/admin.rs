//! The admin listener: liveness, readiness, `/metrics` and the live `/dashboard` (open), and
//! under `/admin/v1/` the admin API (REST), which needs an admin token or an admin client
//! certificate. Each route turns its request into a [`crate::admin::Op`]; the operations
//! and their rules live in [`crate::admin`], shared with the gRPC `AdminService`.

use crate::admin::{AuditFilters, Credential, Op};
use crate::core::live::Live;
use crate::domain::error::{ErrorCode, LookupError};
use crate::layers::authenticate::ClientCertificate;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{HeaderValue, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

mod accounts;

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
        .route(
            "/admin/v1/datasets",
            get(list_datasets).post(create_dataset),
        )
        .route(
            "/admin/v1/datasets/{name}",
            get(get_dataset).put(update_dataset).patch(update_dataset),
        )
        .route("/admin/v1/connectors", get(list_connectors))
        .route(
            "/admin/v1/connectors/{name}",
            get(get_connector)
                .put(update_connector)
                .patch(update_connector),
        )
        .route("/admin/v1/grants", get(list_grants).post(add_grant))
        .route(
            "/admin/v1/grants/{id}",
            get(get_grant)
                .put(update_grant)
                .patch(update_grant)
                .delete(remove_grant),
        )
        .route("/admin/v1/registry/versions", get(versions))
        .route("/admin/v1/registry/rollback", post(rollback))
        .route("/admin/v1/reload", post(reload))
        .route("/admin/v1/backup", post(backup))
        .route("/admin/v1/cache/purge", post(purge))
        .route("/admin/v1/breakers", get(breakers))
        .route("/admin/v1/audit/records", get(records))
        .route("/admin/v1/audit/report", get(report))
        .route("/admin/v1/audit/citizen-report", get(citizen_report))
        .route("/admin/v1/alerts", get(alerts))
        .route("/admin/v1/alerts/{id}/acknowledge", post(acknowledge))
        .merge(accounts::routes())
        .layer(axum::middleware::map_response(method_not_allowed))
        .with_state(gateway)
}

/// The router's bare 405 as a problem body, keeping `Allow`.
async fn method_not_allowed(response: Response) -> Response {
    if response.status() != axum::http::StatusCode::METHOD_NOT_ALLOWED
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let e = LookupError::new(
        ErrorCode::MethodNotAllowed,
        "this admin route does not take that method: see Allow and docs/admin.md",
    );
    let mut answer = super::rest::problem(&e, &super::request_id());
    if let Some(allow) = response.headers().get(header::ALLOW) {
        answer.headers_mut().insert(header::ALLOW, allow.clone());
    }
    answer
}

/// `router` answering requests for no admin route in the documented form: 404
/// `unknown_route` (or gRPC UNIMPLEMENTED with its ErrorInfo). Admin calls are audited by
/// what they change, so a request that reaches nothing leaves no record.
pub fn answer_unrouted(router: Router) -> Router {
    router.fallback(|request: axum::extract::Request| async move {
        let grpc = super::is_grpc(request.headers());
        let path: String = request.uri().path().chars().take(100).collect();
        let id = super::request_id();
        let e = LookupError::new(
            ErrorCode::UnknownRoute,
            format!(
                "no admin route {} {path}: see docs/admin.md",
                request.method()
            ),
        );
        super::refusal(grpc, &e, &id)
    })
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

/// The admin credential a request carries (its bearer token, and the verified client
/// certificate of its connection), and its `If-Match`.
pub struct AdminCaller(pub Caller);

pub struct Caller {
    credential: Credential,
    if_match: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for AdminCaller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(AdminCaller(Caller {
            credential: Credential {
                bearer: super::bearer(
                    parts
                        .headers
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok()),
                ),
                certificate: parts.extensions.get::<Arc<ClientCertificate>>().cloned(),
            },
            if_match: parts
                .headers
                .get(header::IF_MATCH)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        }))
    }
}

/// Runs `op` and answers its JSON (with the object's version as `ETag` when it names
/// one), or a problem body.
async fn answer(live: &Arc<Live>, caller: &Caller, op: Result<Op, LookupError>) -> Response {
    let request_id = super::request_id();
    let result = match op {
        Ok(op) => {
            crate::admin::run(
                live,
                &caller.credential,
                &request_id,
                op,
                caller.if_match.as_deref(),
            )
            .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(body) => {
            let etag = body
                .get("etag")
                .and_then(Value::as_str)
                .and_then(|t| HeaderValue::from_str(&format!("\"{t}\"")).ok());
            let mut response = Json(body).into_response();
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert("x-request-id", v);
            }
            if let Some(etag) = etag {
                response.headers_mut().insert(header::ETAG, etag);
            }
            response
        }
        Err(e) => super::rest::problem(&e, &request_id),
    }
}

/// `?dry_run=true` checks a change without applying it; `?probe_key=K` tries the new
/// connector with one lookup of K before it goes live.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ChangeOptions {
    #[serde(default)]
    dry_run: bool,
    probe_key: Option<String>,
}

type Options = Result<Query<ChangeOptions>, axum::extract::rejection::QueryRejection>;

fn options(q: Options) -> Result<ChangeOptions, LookupError> {
    q.map(|Query(o)| o)
        .map_err(|e| LookupError::new(ErrorCode::InvalidRequest, e.body_text()))
}

/// The JSON body of a change.
fn json_body(bytes: &[u8]) -> Result<Value, LookupError> {
    serde_json::from_slice(bytes).map_err(|e| {
        LookupError::new(
            ErrorCode::InvalidRequest,
            format!("the body is not JSON: {e}"),
        )
    })
}

fn no_probe(o: &ChangeOptions) -> Result<(), LookupError> {
    match o.probe_key {
        Some(_) => Err(LookupError::new(
            ErrorCode::InvalidRequest,
            "probe_key applies to connector changes only",
        )),
        None => Ok(()),
    }
}

async fn list_datasets(State(live): State<Arc<Live>>, AdminCaller(c): AdminCaller) -> Response {
    answer(&live, &c, Ok(Op::ListDatasets)).await
}

async fn get_dataset(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    Path(name): Path<String>,
) -> Response {
    answer(&live, &c, Ok(Op::GetDataset { name })).await
}

async fn create_dataset(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    q: Options,
    body: axum::body::Bytes,
) -> Response {
    let op = (|| {
        let o = options(q)?;
        Ok(Op::CreateDataset {
            body: json_body(&body)?,
            dry_run: o.dry_run,
            probe_key: o.probe_key,
        })
    })();
    answer(&live, &c, op).await
}

async fn update_dataset(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    Path(name): Path<String>,
    q: Options,
    body: axum::body::Bytes,
) -> Response {
    let op = (|| {
        let o = options(q)?;
        no_probe(&o)?;
        Ok(Op::UpdateDataset {
            name,
            body: json_body(&body)?,
            dry_run: o.dry_run,
        })
    })();
    answer(&live, &c, op).await
}

async fn list_connectors(State(live): State<Arc<Live>>, AdminCaller(c): AdminCaller) -> Response {
    answer(&live, &c, Ok(Op::ListConnectors)).await
}

async fn update_connector(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    Path(name): Path<String>,
    q: Options,
    body: axum::body::Bytes,
) -> Response {
    let op = (|| {
        let o = options(q)?;
        Ok(Op::UpdateConnector {
            name,
            body: json_body(&body)?,
            dry_run: o.dry_run,
            probe_key: o.probe_key,
        })
    })();
    answer(&live, &c, op).await
}

async fn list_grants(State(live): State<Arc<Live>>, AdminCaller(c): AdminCaller) -> Response {
    answer(&live, &c, Ok(Op::ListGrants)).await
}

async fn add_grant(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    q: Options,
    body: axum::body::Bytes,
) -> Response {
    let op = (|| {
        let o = options(q)?;
        no_probe(&o)?;
        Ok(Op::AddGrant {
            body: json_body(&body)?,
            dry_run: o.dry_run,
        })
    })();
    answer(&live, &c, op).await
}

async fn get_grant(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    Path(id): Path<String>,
) -> Response {
    answer(&live, &c, Ok(Op::GetGrant { id })).await
}

async fn update_grant(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    Path(id): Path<String>,
    q: Options,
    body: axum::body::Bytes,
) -> Response {
    let op = (|| {
        let o = options(q)?;
        no_probe(&o)?;
        Ok(Op::UpdateGrant {
            id,
            body: json_body(&body)?,
            dry_run: o.dry_run,
        })
    })();
    answer(&live, &c, op).await
}

async fn remove_grant(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    Path(id): Path<String>,
    q: Options,
) -> Response {
    let op = (|| {
        let o = options(q)?;
        no_probe(&o)?;
        Ok(Op::RemoveGrant {
            id,
            dry_run: o.dry_run,
        })
    })();
    answer(&live, &c, op).await
}

async fn get_connector(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    Path(name): Path<String>,
) -> Response {
    answer(&live, &c, Ok(Op::GetConnector { name })).await
}

async fn versions(State(live): State<Arc<Live>>, AdminCaller(c): AdminCaller) -> Response {
    answer(&live, &c, Ok(Op::Versions)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    version: i64,
}

async fn rollback(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    body: axum::body::Bytes,
) -> Response {
    let op = serde_json::from_slice::<RollbackBody>(&body)
        .map(|b| Op::Rollback { version: b.version })
        .map_err(|e| {
            LookupError::new(
                ErrorCode::InvalidRequest,
                format!("body must be {{\"version\": N}}: {e}"),
            )
        });
    answer(&live, &c, op).await
}

async fn reload(State(live): State<Arc<Live>>, AdminCaller(c): AdminCaller) -> Response {
    answer(&live, &c, Ok(Op::Reload)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackupBody {
    pub(super) to: String,
}

async fn backup(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    body: axum::body::Bytes,
) -> Response {
    let op = serde_json::from_slice::<BackupBody>(&body)
        .map(|b| Op::Backup { to: b.to })
        .map_err(|e| {
            LookupError::new(
                ErrorCode::InvalidRequest,
                format!("body must be {{\"to\": \"/absolute/dir\"}}: {e}"),
            )
        });
    answer(&live, &c, op).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    dataset: String,
    key: Option<String>,
}

async fn purge(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    body: axum::body::Bytes,
) -> Response {
    let op = serde_json::from_slice::<PurgeBody>(&body)
        .map(|b| Op::Purge {
            dataset: b.dataset,
            key: b.key,
        })
        .map_err(|e| {
            LookupError::new(
                ErrorCode::InvalidRequest,
                format!("body must be {{\"dataset\": \"...\", \"key\"?: \"...\"}}: {e}"),
            )
        });
    answer(&live, &c, op).await
}

async fn breakers(State(live): State<Arc<Live>>, AdminCaller(c): AdminCaller) -> Response {
    answer(&live, &c, Ok(Op::Breakers)).await
}

type Filters = Result<Query<AuditFilters>, axum::extract::rejection::QueryRejection>;

fn filters(q: Filters) -> Result<AuditFilters, LookupError> {
    q.map(|Query(f)| f)
        .map_err(|e| LookupError::new(ErrorCode::InvalidRequest, e.body_text()))
}

async fn records(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    q: Filters,
) -> Response {
    answer(&live, &c, filters(q).map(Op::AuditRecords)).await
}

/// A subject's access report: the disclosures of their data (needs dataset and subject).
async fn report(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    q: Filters,
) -> Response {
    answer(&live, &c, filters(q).map(Op::AuditReport)).await
}

/// Misuse alerts, filtered and paged, newest first.
async fn alerts(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    q: Result<Query<crate::admin::AlertQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let op = q
        .map(|Query(q)| Op::Alerts(q))
        .map_err(|e| LookupError::new(ErrorCode::InvalidRequest, e.body_text()));
    answer(&live, &c, op).await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AcknowledgeBody {
    note: String,
}

/// An auditor's acknowledgement of an alert, with a note.
async fn acknowledge(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let op = serde_json::from_slice::<AcknowledgeBody>(&body)
        .map(|b| Op::AcknowledgeAlert { id, note: b.note })
        .map_err(|e| {
            LookupError::new(
                ErrorCode::InvalidRequest,
                format!("body must be {{\"note\": \"...\"}}: {e}"),
            )
        });
    answer(&live, &c, op).await
}

/// One person's disclosures across every dataset, as the subject or named in the record.
async fn citizen_report(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    q: Result<Query<crate::admin::CitizenReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let op = q
        .map(|Query(q)| Op::CitizenReport(q))
        .map_err(|e| LookupError::new(ErrorCode::InvalidRequest, e.body_text()));
    answer(&live, &c, op).await
}
