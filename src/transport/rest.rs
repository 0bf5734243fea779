//! The REST adapter: routes of the lookup API, translated to core calls; errors as RFC 9457
//! `application/problem+json` bodies carrying the stable `code`.

use super::{bearer, context_from, rate_limit_headers, request_id, wants_fresh};
use crate::core::gateway::Gateway;
use crate::core::request::{
    BatchItem, BatchOutcome, Caller, ClientCertificate, Lookup, LookupRequest, TraceContext,
    VerifyRequest,
};
use crate::domain::context::RawContext;
use crate::domain::dataset::{BUSINESS_ENTERPRISE, LAND_PARCEL, POPULATION_CITIZEN};
use crate::domain::error::LookupError;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

/// The lookup API's REST routes, and `GET /openapi.json` describing them.
pub fn router(gateway: Arc<crate::core::live::Live>) -> Router {
    let (router, api) = documented(gateway);
    let json = api.to_pretty_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "OpenAPI document does not serialise");
        "{}".into()
    });
    router.route(
        "/openapi.json",
        get(move || {
            let json = json.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], json) }
        }),
    )
}

/// The routes and the OpenAPI document collected from their annotations.
pub fn documented(gateway: Arc<crate::core::live::Live>) -> (Router, utoipa::openapi::OpenApi) {
    let (router, mut api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(citizen))
        .routes(routes!(enterprise))
        .routes(routes!(parcel))
        .routes(routes!(record))
        .routes(routes!(batch))
        .routes(routes!(capabilities))
        .routes(routes!(verify))
        .with_state(gateway)
        .split_for_parts();
    super::openapi::complete(
        &mut api,
        crate::domain::dataset::descriptors(),
        &[
            CITIZEN_MESSAGE,
            ENTERPRISE_MESSAGE,
            LAND_PARCEL_MESSAGE,
            "lienthong.v1.Capabilities",
        ],
    );
    (router, api)
}

const CITIZEN_MESSAGE: &str = "lienthong.v1.Citizen";
const ENTERPRISE_MESSAGE: &str = "lienthong.v1.Enterprise";
const LAND_PARCEL_MESSAGE: &str = "lienthong.v1.LandParcel";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "lienthong lookup API",
        description = "Lookups in the national databases for one-stop systems, bound to a \
            procedure and a dossier. Every call needs a credential (an API key or a client \
            certificate) and the call-context headers; a consumer receives only the fields \
            its grant allows. The same operations are served over gRPC \
            (`lienthong.v1.LookupService`) on the same port."
    ),
    components(schemas(Problem))
)]
struct ApiDoc;

/// The call context every lookup carries (headers; `X-Purpose` is percent-encoded UTF-8).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct ContextHeaders {
    /// The administrative procedure code, e.g. `1.001612`.
    #[param(rename = "X-Procedure-Code")]
    procedure_code: String,
    /// The dossier (hồ sơ) being processed, e.g. `000.00.53.H48-251128-0001`.
    #[param(rename = "X-Dossier-Id")]
    dossier_id: String,
    /// The civil servant handling the dossier.
    #[param(rename = "X-Officer-Id")]
    officer_id: String,
    /// The agency's code in the national list, e.g. `000.00.53.H48`.
    #[param(rename = "X-Agency-Code")]
    agency_code: Option<String>,
    /// Free-text purpose, percent-encoded UTF-8.
    #[param(rename = "X-Purpose")]
    purpose: Option<String>,
}

#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
struct Fields {
    /// Comma-separated field names (proto names, e.g. `full_name,date_of_birth`); absent
    /// means every field the grant allows.
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

/// A request's call context, its cache directive, and the caller its headers (and the TLS
/// connection) identify.
struct Incoming {
    context: RawContext,
    fresh: bool,
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
            transport: "rest",
            trace: TraceContext::continue_from(
                parts
                    .headers
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok()),
            ),
            request_id: request_id(),
        };
        let headers = &parts.headers;
        Ok(Incoming {
            context: context_from(|name| header(headers, name)),
            fresh: wants_fresh(
                headers
                    .get(header::CACHE_CONTROL)
                    .and_then(|v| v.to_str().ok()),
            ),
            caller,
        })
    }
}

/// An RFC 9457 problem body.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// `urn:lienthong:error:` followed by the code.
    #[serde(rename = "type")]
    kind: String,
    title: String,
    /// The HTTP status, repeated.
    status: u16,
    /// What was wrong, naming the field, key or grant concerned.
    detail: String,
    /// The stable error code (see docs/errors.md).
    code: String,
    /// `urn:lienthong:request:` followed by the request id.
    instance: String,
}

/// The problem body for an error, with `Retry-After` where one applies.
pub fn problem(e: &LookupError, request_id: &str) -> Response {
    let status = e.code.http_status();
    let body = Problem {
        kind: format!("urn:lienthong:error:{}", e.code.as_str()),
        title: e.code.title().into(),
        status: status.as_u16(),
        detail: e.message.clone(),
        code: e.code.as_str().into(),
        instance: format!("urn:lienthong:request:{request_id}"),
    };
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
        // Whole seconds, rounded up: retrying earlier would be refused again.
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    if let Some(q) = &e.quota {
        insert_rate_limit(h, q);
    }
    response
}

fn insert_rate_limit(h: &mut HeaderMap, q: &crate::shared::limiter::QuotaState) {
    for (name, value) in rate_limit_headers(q) {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
}

fn served(lookup: Lookup, request_id: &str) -> Response {
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        lookup.record.to_json(),
    )
        .into_response();
    let h = response.headers_mut();
    h.insert("x-cache", HeaderValue::from_static(lookup.cache.as_str()));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    if let Some(q) = &lookup.quota {
        insert_rate_limit(h, q);
    }
    response
}

async fn lookup(
    gateway: &Gateway,
    Incoming {
        context,
        fresh,
        caller,
    }: Incoming,
    dataset: &str,
    key: String,
    fields: Option<String>,
) -> Response {
    let request = LookupRequest {
        dataset: dataset.to_owned(),
        key,
        fields: split_fields(fields),
        context,
        bypass_cache: fresh,
        deadline: None,
    };
    match gateway.lookup(&caller, request).await {
        Ok(found) => served(found, &caller.request_id),
        Err(e) => problem(&e, &caller.request_id),
    }
}

/// A citizen from the national population database, by personal identification number.
#[utoipa::path(
    get,
    path = "/v1/citizens/{id}",
    tag = "lookup",
    params(("id" = String, Path, description = "12-digit personal identification number"), Fields, ContextHeaders),
    responses((status = 200, description = "The record, only the granted (and asked) fields; `X-Cache` says where it came from", body = ref("#/components/schemas/lienthong.v1.Citizen")))
)]
async fn citizen(
    super::Current(g): super::Current,
    incoming: Incoming,
    Path(id): Path<String>,
    Query(q): Query<Fields>,
) -> Response {
    lookup(&g, incoming, POPULATION_CITIZEN, id, q.fields).await
}

/// An enterprise from the national business registration database, by enterprise code.
#[utoipa::path(
    get,
    path = "/v1/enterprises/{code}",
    tag = "lookup",
    params(("code" = String, Path, description = "10-digit enterprise code, or 13 with a branch suffix"), Fields, ContextHeaders),
    responses((status = 200, description = "The record, only the granted (and asked) fields", body = ref("#/components/schemas/lienthong.v1.Enterprise")))
)]
async fn enterprise(
    super::Current(g): super::Current,
    incoming: Incoming,
    Path(code): Path<String>,
    Query(q): Query<Fields>,
) -> Response {
    lookup(&g, incoming, BUSINESS_ENTERPRISE, code, q.fields).await
}

/// A land parcel from the land registry, by parcel id.
#[utoipa::path(
    get,
    path = "/v1/land-parcels/{parcel}",
    tag = "lookup",
    params(("parcel" = String, Path, description = "Parcel id: commune code, map sheet and parcel number"), Fields, ContextHeaders),
    responses((status = 200, description = "The record, only the granted (and asked) fields", body = ref("#/components/schemas/lienthong.v1.LandParcel")))
)]
async fn parcel(
    super::Current(g): super::Current,
    incoming: Incoming,
    Path(parcel): Path<String>,
    Query(q): Query<Fields>,
) -> Response {
    lookup(&g, incoming, LAND_PARCEL, parcel, q.fields).await
}

/// A record of any dataset, by its key.
#[utoipa::path(
    get,
    path = "/v1/datasets/{dataset}/records/{key}",
    tag = "lookup",
    params(
        ("dataset" = String, Path, description = "Dataset name, e.g. `population.citizen`"),
        ("key" = String, Path, description = "The dataset's key"),
        Fields,
        ContextHeaders
    ),
    responses((status = 200, description = "The record as a JSON object, only the granted (and asked) fields", body = Object))
)]
async fn record(
    super::Current(g): super::Current,
    incoming: Incoming,
    Path((dataset, key)): Path<(String, String)>,
    Query(q): Query<Fields>,
) -> Response {
    lookup(&g, incoming, &dataset, key, q.fields).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    /// At most `limits.max_batch_items` (100 by default).
    items: Vec<BatchBodyItem>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchBodyItem {
    dataset: String,
    key: String,
    /// Fields asked for; absent means every granted field.
    #[serde(default)]
    fields: Vec<String>,
}

#[derive(Serialize, ToSchema)]
struct BatchAnswer {
    /// One per item, in request order.
    items: Vec<BatchAnswerItem>,
}

#[derive(Serialize, ToSchema)]
struct BatchAnswerItem {
    dataset: String,
    key: String,
    /// `ok`, or the item's error code.
    outcome: String,
    /// Where a served record came from: hit, miss, stale or coalesced.
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    record: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<BatchItemError>,
}

#[derive(Serialize, ToSchema)]
struct BatchItemError {
    code: String,
    message: String,
}

/// Several lookups under one call context; each item succeeds or fails on its own.
#[utoipa::path(
    post,
    path = "/v1/batch",
    tag = "lookup",
    params(ContextHeaders),
    request_body = BatchBody,
    responses((status = 200, description = "One outcome per item, in request order", body = BatchAnswer))
)]
async fn batch(
    super::Current(g): super::Current,
    Incoming {
        context, caller, ..
    }: Incoming,
    body: axum::body::Bytes,
) -> Response {
    let parsed: BatchBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            let err = LookupError::new(
                crate::domain::error::ErrorCode::InvalidRequest,
                format!("body must be {{\"items\": [{{\"dataset\", \"key\", \"fields\"?}}]}}: {e}"),
            );
            let err = g.refuse(&caller, "batch", err).await;
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
    let request_id = caller.request_id.clone();
    let stream = match g.batch(caller, context, items).await {
        Ok(stream) => stream,
        Err(e) => return problem(&e, &request_id),
    };
    let items: Vec<BatchAnswerItem> = stream
        .map(
            |BatchOutcome {
                 dataset,
                 key,
                 result,
                 ..
             }| match result {
                Ok(found) => BatchAnswerItem {
                    dataset,
                    key,
                    outcome: "ok".into(),
                    cache: Some(found.cache.as_str().into()),
                    record: Some(Value::Object(found.record.to_record().0)),
                    error: None,
                },
                Err(e) => BatchAnswerItem {
                    dataset,
                    key,
                    outcome: e.code.as_str().into(),
                    cache: None,
                    record: None,
                    error: Some(BatchItemError {
                        code: e.code.as_str().into(),
                        message: e.message,
                    }),
                },
            },
        )
        .collect()
        .await;
    let mut response = (StatusCode::OK, Json(BatchAnswer { items })).into_response();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// What the caller's grants allow: datasets, fields, procedure codes, modes, validity.
#[utoipa::path(
    get,
    path = "/v1/capabilities",
    tag = "discovery",
    responses((status = 200, description = "The caller's grants", body = ref("#/components/schemas/lienthong.v1.Capabilities")))
)]
async fn capabilities(
    super::Current(g): super::Current,
    Incoming { caller, .. }: Incoming,
) -> Response {
    match g.capabilities(&caller) {
        // The proto3 JSON form of the gRPC answer, so both transports say the same.
        Ok((consumer, grants)) => Json(super::capabilities(consumer, &grants)).into_response(),
        Err(e) => problem(&e, &caller.request_id),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    key: String,
    /// Claimed values by field name, e.g. `{"full_name": "…", "date_of_birth": "1990-05-17"}`.
    #[schema(value_type = Object)]
    claims: serde_json::Map<String, Value>,
}

#[derive(Serialize, ToSchema)]
struct VerifyAnswer {
    /// Whether every claim matched.
    #[serde(rename = "match")]
    matched: bool,
    /// Match or no match, per claimed field; no value is disclosed.
    fields: BTreeMap<String, bool>,
}

/// Check claimed values against a record without receiving it.
#[utoipa::path(
    post,
    path = "/v1/datasets/{dataset}/verify",
    tag = "verify",
    params(("dataset" = String, Path, description = "Dataset name, e.g. `population.citizen`"), ContextHeaders),
    request_body = VerifyBody,
    responses((status = 200, description = "Match or no match per claim", body = VerifyAnswer))
)]
async fn verify(
    super::Current(g): super::Current,
    Incoming {
        context, caller, ..
    }: Incoming,
    Path(dataset): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let parsed: VerifyBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            let err = LookupError::new(
                crate::domain::error::ErrorCode::InvalidRequest,
                format!("body must be {{\"key\": \"...\", \"claims\": {{field: value}}}}: {e}"),
            );
            let err = g.refuse(&caller, "verify", err).await;
            return problem(&err, &caller.request_id);
        }
    };
    let request = VerifyRequest {
        dataset,
        key: parsed.key,
        claims: parsed.claims,
        context,
    };
    match g.verify(&caller, request).await {
        Ok(v) => {
            let answer = VerifyAnswer {
                matched: v.matched,
                fields: v.fields.into_iter().collect(),
            };
            let mut response = Json(answer).into_response();
            if let Ok(id) = HeaderValue::from_str(&caller.request_id) {
                response.headers_mut().insert("x-request-id", id);
            }
            response
        }
        Err(e) => problem(&e, &caller.request_id),
    }
}
