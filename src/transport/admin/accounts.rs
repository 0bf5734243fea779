//! The admin API's consumers, their keys, and access requests (REST).

use super::{AdminCaller, Options, answer, json_body, no_probe, options};
use crate::admin::{Op, RequestFilters};
use crate::core::live::Live;
use crate::domain::error::{ErrorCode, LookupError};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::Value;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<Live>> {
    Router::new()
        .route(
            "/admin/v1/consumers",
            get(list_consumers).post(create_consumer),
        )
        .route(
            "/admin/v1/consumers/{id}",
            get(get_consumer)
                .put(update_consumer)
                .patch(update_consumer),
        )
        .route("/admin/v1/consumers/{id}/keys", post(issue_key))
        .route(
            "/admin/v1/consumers/{id}/keys/{key}",
            axum::routing::delete(revoke_key),
        )
        .route(
            "/admin/v1/consumers/{id}/keys/{key}/rotate",
            post(rotate_key),
        )
        .route(
            "/admin/v1/access-requests",
            get(list_requests).post(create_request),
        )
        .route("/admin/v1/access-requests/{id}", get(get_request))
        .route(
            "/admin/v1/access-requests/{id}/approve",
            post(approve_request),
        )
        .route(
            "/admin/v1/access-requests/{id}/refuse",
            post(refuse_request),
        )
        .route(
            "/admin/v1/access-requests/{id}/withdraw",
            post(withdraw_request),
        )
}

async fn list_consumers(State(live): State<Arc<Live>>, AdminCaller(c): AdminCaller) -> Response {
    answer(&live, &c, Ok(Op::ListConsumers)).await
}

async fn get_consumer(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    Path(id): Path<String>,
) -> Response {
    answer(&live, &c, Ok(Op::GetConsumer { id })).await
}

async fn create_consumer(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    q: Options,
    body: axum::body::Bytes,
) -> Response {
    let op = (|| {
        let o = options(q)?;
        no_probe(&o)?;
        Ok(Op::CreateConsumer {
            body: json_body(&body)?,
            dry_run: o.dry_run,
        })
    })();
    answer(&live, &c, op).await
}

async fn update_consumer(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    Path(id): Path<String>,
    q: Options,
    body: axum::body::Bytes,
) -> Response {
    let op = (|| {
        let o = options(q)?;
        no_probe(&o)?;
        Ok(Op::UpdateConsumer {
            id,
            body: json_body(&body)?,
            dry_run: o.dry_run,
        })
    })();
    answer(&live, &c, op).await
}

/// A key change's body: optional (an empty body takes the defaults).
fn optional_body(bytes: &[u8]) -> Result<Value, LookupError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Ok(Value::Null)
    } else {
        json_body(bytes)
    }
}

async fn issue_key(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let op = optional_body(&body).map(|body| Op::IssueKey { consumer: id, body });
    answer(&live, &c, op).await
}

async fn rotate_key(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    Path((id, key)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let op = optional_body(&body).map(|body| Op::RotateKey {
        consumer: id,
        key,
        body,
    });
    answer(&live, &c, op).await
}

async fn revoke_key(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    Path((id, key)): Path<(String, String)>,
) -> Response {
    answer(&live, &c, Ok(Op::RevokeKey { consumer: id, key })).await
}

async fn list_requests(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    q: Result<Query<RequestFilters>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let op = q
        .map(|Query(f)| Op::ListAccessRequests(f))
        .map_err(|e| LookupError::new(ErrorCode::InvalidRequest, e.body_text()));
    answer(&live, &c, op).await
}

async fn get_request(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    Path(id): Path<String>,
) -> Response {
    answer(&live, &c, Ok(Op::GetAccessRequest { id })).await
}

async fn create_request(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    body: axum::body::Bytes,
) -> Response {
    let op = json_body(&body).map(|body| Op::RequestAccess { body });
    answer(&live, &c, op).await
}

async fn approve_request(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let op = optional_body(&body).map(|body| Op::ApproveAccessRequest { id, body });
    answer(&live, &c, op).await
}

async fn refuse_request(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let op = json_body(&body).map(|body| Op::RefuseAccessRequest { id, body });
    answer(&live, &c, op).await
}

async fn withdraw_request(
    State(live): State<Arc<Live>>,
    AdminCaller(c): AdminCaller,
    Path(id): Path<String>,
) -> Response {
    answer(&live, &c, Ok(Op::WithdrawAccessRequest { id })).await
}
