//! The REST adapter: routes of the lookup API, translated to core calls; errors as RFC 9457
//! `application/problem+json` bodies carrying the stable `code`.

use super::{bearer, context_from, request_id};
use crate::core::error::LookupError;
use crate::core::service::{
    BatchItem, BatchOutcome, Caller, ClientCertificate, Gateway, Lookup, LookupRequest,
    VerifyRequest,
};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// The lookup API's REST routes.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/citizens/{id}", get(citizen))
        .route("/v1/enterprises/{code}", get(enterprise))
        .route("/v1/land-parcels/{parcel}", get(parcel))
        .route("/v1/datasets/{dataset}/records/{key}", get(record))
        .route("/v1/batch", post(batch))
        .route("/v1/capabilities", get(capabilities))
        .route("/v1/datasets/{dataset}/verify", post(verify))
        .with_state(gateway)
}

#[derive(Deserialize, Default)]
struct Fields {
    fields: Option<String>,
}

fn split_fields(fields: Option<String>) -> Vec<String> {
    fields
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect()
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A request's headers and the caller they (and the TLS connection) identify.
struct Incoming {
    headers: HeaderMap,
    caller: Caller,
}

impl<S: Send + Sync> FromRequestParts<S> for Incoming {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller {
            api_key: bearer(
                parts
                    .headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok()),
            ),
            certificate: parts.extensions.get::<Arc<ClientCertificate>>().cloned(),
            request_id: request_id(),
        };
        Ok(Incoming {
            headers: parts.headers.clone(),
            caller,
        })
    }
}

/// The problem body for an error, with `Retry-After` where one applies.
pub fn problem(e: &LookupError, request_id: &str) -> Response {
    let status = e.code.http_status();
    let body = json!({
        "type": format!("urn:lienthong:error:{}", e.code.as_str()),
        "title": e.code.title(),
        "status": status.as_u16(),
        "detail": e.message,
        "code": e.code.as_str(),
        "instance": format!("urn:lienthong:request:{request_id}"),
    });
    let mut response = (status, Json(body)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    if let Some(after) = e.retry_after {
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from(after.as_secs().max(1)),
        );
    }
    response
}

fn served(lookup: Lookup, request_id: &str) -> Response {
    let mut response = Json(Value::Object(lookup.record.0)).into_response();
    let h = response.headers_mut();
    h.insert("x-cache", HeaderValue::from_static(lookup.cache.as_str()));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    response
}

async fn lookup(
    gateway: &Gateway,
    Incoming { headers, caller }: Incoming,
    dataset: &str,
    key: String,
    fields: Option<String>,
) -> Response {
    let request = LookupRequest {
        dataset: dataset.to_owned(),
        key,
        fields: split_fields(fields),
        context: context_from(|name| header(&headers, name)),
    };
    match gateway.lookup(&caller, request).await {
        Ok(found) => served(found, &caller.request_id),
        Err(e) => problem(&e, &caller.request_id),
    }
}

async fn citizen(
    State(g): State<Arc<Gateway>>,
    incoming: Incoming,
    Path(id): Path<String>,
    Query(q): Query<Fields>,
) -> Response {
    lookup(&g, incoming, "population.citizen", id, q.fields).await
}

async fn enterprise(
    State(g): State<Arc<Gateway>>,
    incoming: Incoming,
    Path(code): Path<String>,
    Query(q): Query<Fields>,
) -> Response {
    lookup(&g, incoming, "business.enterprise", code, q.fields).await
}

async fn parcel(
    State(g): State<Arc<Gateway>>,
    incoming: Incoming,
    Path(parcel): Path<String>,
    Query(q): Query<Fields>,
) -> Response {
    lookup(&g, incoming, "land.parcel", parcel, q.fields).await
}

async fn record(
    State(g): State<Arc<Gateway>>,
    incoming: Incoming,
    Path((dataset, key)): Path<(String, String)>,
    Query(q): Query<Fields>,
) -> Response {
    lookup(&g, incoming, &dataset, key, q.fields).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    items: Vec<BatchBodyItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBodyItem {
    dataset: String,
    key: String,
    #[serde(default)]
    fields: Vec<String>,
}

async fn batch(
    State(g): State<Arc<Gateway>>,
    Incoming { headers, caller }: Incoming,
    body: axum::body::Bytes,
) -> Response {
    let parsed: BatchBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            let err = LookupError::new(
                crate::core::error::ErrorCode::InvalidRequest,
                format!("body must be {{\"items\": [{{\"dataset\", \"key\", \"fields\"?}}]}}: {e}"),
            );
            return problem(&err, &caller.request_id);
        }
    };
    let items: Vec<BatchItem> = parsed
        .items
        .into_iter()
        .map(|i| BatchItem {
            dataset: i.dataset,
            key: i.key,
            fields: i.fields,
        })
        .collect();
    let context = context_from(|name| header(&headers, name));
    let stream = match g.batch(&caller, context, items) {
        Ok(s) => s,
        Err(e) => return problem(&e, &caller.request_id),
    };
    let results: Vec<Value> = stream
        .map(|BatchOutcome { dataset, key, result, .. }| {
            match result {
                Ok(found) => json!({"dataset": dataset, "key": key, "outcome": "ok", "cache": found.cache.as_str(), "record": Value::Object(found.record.0)}),
                Err(e) => json!({"dataset": dataset, "key": key, "outcome": e.code.as_str(), "error": {"code": e.code.as_str(), "message": e.message}}),
            }
        })
        .collect()
        .await;
    let mut response = (StatusCode::OK, Json(json!({ "items": results }))).into_response();
    if let Ok(v) = HeaderValue::from_str(&caller.request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

async fn capabilities(
    State(g): State<Arc<Gateway>>,
    Incoming { caller, .. }: Incoming,
) -> Response {
    match g.capabilities(&caller) {
        // The proto3 JSON form of the gRPC answer, so both transports say the same.
        Ok((consumer, grants)) => Json(super::capabilities(consumer, &grants)).into_response(),
        Err(e) => problem(&e, &caller.request_id),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    key: String,
    claims: serde_json::Map<String, Value>,
}

async fn verify(
    State(g): State<Arc<Gateway>>,
    Incoming { headers, caller }: Incoming,
    Path(dataset): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let parsed: VerifyBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            let err = LookupError::new(
                crate::core::error::ErrorCode::InvalidRequest,
                format!("body must be {{\"key\": \"...\", \"claims\": {{field: value}}}}: {e}"),
            );
            return problem(&err, &caller.request_id);
        }
    };
    let request = VerifyRequest {
        dataset,
        key: parsed.key,
        claims: parsed.claims,
        context: context_from(|name| header(&headers, name)),
    };
    match g.verify(&caller, request).await {
        Ok(v) => {
            let fields: serde_json::Map<String, Value> = v
                .fields
                .into_iter()
                .map(|(f, m)| (f, Value::Bool(m)))
                .collect();
            let mut response =
                Json(json!({ "match": v.matched, "fields": fields })).into_response();
            if let Ok(id) = HeaderValue::from_str(&caller.request_id) {
                response.headers_mut().insert("x-request-id", id);
            }
            response
        }
        Err(e) => problem(&e, &caller.request_id),
    }
}
