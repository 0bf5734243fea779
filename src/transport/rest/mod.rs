//! The REST adapter: routes of the lookup API, translated to core calls; errors as RFC 9457
//! `application/problem+json` bodies carrying the stable `code`.

mod dossiers;
mod evidence;
mod incoming;
mod report;
mod verify;

use super::rate_limit_headers;
use crate::core::gateway::Gateway;
use crate::core::request::{BatchItem, BatchOutcome, Lookup, LookupRequest};
use crate::domain::dataset::{BUSINESS_ENTERPRISE, LAND_PARCEL, POPULATION_CITIZEN};
use crate::domain::error::{ErrorCode, LookupError};
use crate::domain::record::Freshness;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use incoming::{Fields, Incoming, read_body};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use std::sync::Arc;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

/// The lookup API's REST routes, and `GET /openapi.json` describing them.
pub fn router(gateway: Arc<crate::core::live::Live>) -> Router {
    let (router, api) = documented(gateway.clone());
    let live = gateway.clone();
    let json = api.to_pretty_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "OpenAPI document does not serialise");
        "{}".into()
    });
    router
        .route(
            "/openapi.json",
            get(move || {
                let json = json.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], json) }
            }),
        )
        .route("/v1/keys", get(move || evidence::keys(live.clone())))
}

/// `router` answering requests for no route (REST or gRPC) in the documented form.
pub fn answer_unrouted(router: Router, live: Arc<crate::core::live::Live>) -> Router {
    router
        .fallback(move |request: axum::extract::Request| incoming::unrouted(live.clone(), request))
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
        .routes(routes!(verify::verify))
        .routes(routes!(dossiers::declare))
        .routes(routes!(dossiers::get_dossier))
        .routes(routes!(dossiers::add_subject))
        .routes(routes!(dossiers::remove_subject))
        .routes(routes!(dossiers::close))
        .routes(routes!(report::my_access_report))
        .with_state(gateway.clone())
        .split_for_parts();
    let router = router.method_not_allowed_fallback(move |request: axum::extract::Request| {
        incoming::method_not_allowed(gateway.clone(), request)
    });
    super::openapi::complete(
        &mut api,
        crate::domain::dataset::descriptors(),
        &[
            CITIZEN_MESSAGE,
            ENTERPRISE_MESSAGE,
            LAND_PARCEL_MESSAGE,
            "lienthong.v1.Capabilities",
            "lienthong.v1.Dossier",
            "lienthong.v1.AccessReport",
        ],
        errors_of,
    );
    (router, api)
}

/// The codes an operation can answer with besides success: the door's refusals and an
/// unreadable query on every one, then what its steps can refuse.
fn errors_of(method: &str, path: &str) -> Vec<ErrorCode> {
    use ErrorCode::*;
    let mut codes = vec![
        Unauthenticated,
        RateLimited,
        Overloaded,
        HeadersTooLarge,
        InvalidRequest,
        AuditUnavailable,
    ];
    let provider = [
        PermissionDenied,
        PurposeNotBound,
        RegisterUnavailable,
        InvalidKey,
        InvalidContext,
        UnknownDataset,
        NotFound,
        UpstreamUnavailable,
        UpstreamTimeout,
        UpstreamBadResponse,
        Internal,
    ];
    let register = [
        InvalidKey,
        InvalidContext,
        UnknownDataset,
        NotFound,
        RegisterUnavailable,
        Internal,
    ];
    match (method, path) {
        ("get", "/v1/capabilities") => {}
        ("get", "/v1/me/access-report") => {
            codes.extend([PermissionDenied, InvalidKey, AuditUnavailable, Internal])
        }
        ("get", p) if p.starts_with("/v1/dossiers/") => codes.extend(register),
        ("post", p) if p.starts_with("/v1/dossiers") => {
            codes.extend(register);
            codes.extend([AlreadyExists, DossierEnded, PayloadTooLarge, RequestTimeout]);
        }
        ("post", "/v1/batch") => codes.extend([PayloadTooLarge, RequestTimeout, Internal]),
        ("post", _) => {
            codes.extend(provider);
            codes.extend([PayloadTooLarge, RequestTimeout]);
        }
        _ => {
            codes.extend(provider);
            codes.push(DeadlineExceeded);
        }
    }
    codes
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
    /// The civil servant handling the dossier; text other than ASCII percent-encoded (UTF-8).
    #[param(rename = "X-Officer-Id")]
    officer_id: String,
    /// The agency's code in the national list, e.g. `000.00.53.H48`.
    #[param(rename = "X-Agency-Code")]
    agency_code: Option<String>,
    /// Free-text purpose, percent-encoded UTF-8.
    #[param(rename = "X-Purpose")]
    purpose: Option<String>,
}

/// The caller's deadline for a lookup, like gRPC's `grpc-timeout`.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct Deadline {
    /// Milliseconds (1 to 600000) the caller will wait; a provider call still running then
    /// is given up and the answer is `deadline_exceeded` (504).
    #[param(rename = "X-Request-Timeout-Ms")]
    request_timeout_ms: Option<u64>,
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
        // A static name and the value's own bytes: nothing copied.
        if let Ok(v) = HeaderValue::try_from(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
}

const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
const X_DATA_FETCHED: HeaderName = HeaderName::from_static("x-data-fetched-at");
const X_DATA_TIME: HeaderName = HeaderName::from_static("x-data-time");

/// Freshness: when the gateway fetched the record from the provider, the provider's own
/// time of the data where it stated one, and, for an answer from the cache (`cache` "hit"
/// or "stale"), its `Age` (RFC 9111) in whole seconds.
fn insert_freshness(h: &mut HeaderMap, f: &Freshness, cache: &str) {
    if let Ok(v) = HeaderValue::from_str(&f.fetched_at) {
        h.insert(X_DATA_FETCHED, v);
    }
    if let Some(v) = f
        .data_time
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
    {
        h.insert(X_DATA_TIME, v);
    }
    if matches!(cache, "hit" | "stale") {
        let age = (crate::domain::date::now_ms() - f.fetched_ms).max(0) / 1000;
        h.insert(header::AGE, HeaderValue::from(age));
    }
}
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn served(lookup: Lookup, request_id: &str, mode: incoming::Evidence) -> Response {
    // Room for every header of an answer (the rate limit's, the length the router adds),
    // so the map is allocated once, at its size.
    let mut h = HeaderMap::with_capacity(12);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(X_CACHE, HeaderValue::from_static(lookup.cache.as_str()));
    insert_freshness(&mut h, &lookup.freshness, lookup.cache.as_str());
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(X_REQUEST_ID, v);
    }
    if let Some(q) = &lookup.quota {
        insert_rate_limit(&mut h, q);
    }
    let body = evidence::body(
        mode,
        lookup.record.to_json(),
        lookup.evidence.as_deref(),
        &mut h,
    );
    let mut response = axum::body::Body::from(body).into_response();
    *response.headers_mut() = h;
    response
}

/// What was wrong with the request before the core could take it (a path, query or
/// header it cannot read), answered after authentication and recorded for a known caller.
/// Checked without awaiting; the refusal itself runs boxed, so that its future does not
/// grow every handler's future (and the copies made of it) for the rare case.
async fn refused_early(
    gateway: &Gateway,
    incoming: &mut Incoming,
    path: Option<&PathRejection>,
    action: &'static str,
) -> Option<Response> {
    let problem_found = match path {
        Some(rejection) => Some(LookupError::new(
            crate::domain::error::ErrorCode::InvalidRequest,
            format!("the path does not read: {}", rejection.body_text()),
        )),
        None => incoming.problem.take(),
    }?;
    let e = Box::pin(gateway.refuse(&incoming.caller, action, problem_found)).await;
    Some(problem(&e, &incoming.caller.request_id))
}

async fn lookup(
    gateway: &Gateway,
    mut incoming: Incoming,
    dataset: &str,
    key: Result<String, PathRejection>,
) -> Response {
    if (incoming.problem.is_some() || key.is_err())
        && let Some(refused) = Box::pin(refused_early(
            gateway,
            &mut incoming,
            key.as_ref().err(),
            "fetch",
        ))
        .await
    {
        return refused;
    }
    let Incoming {
        context,
        fresh,
        caller,
        fields,
        deadline,
        evidence,
        ..
    } = incoming;
    let request = LookupRequest {
        dataset: dataset.to_owned(),
        key: key.unwrap_or_default(),
        fields,
        context,
        bypass_cache: fresh,
        deadline,
        evidence: evidence.wanted(),
    };
    // Boxed: the core's future is large, and the router moves the handler's future more than
    // once; a pointer moves for free.
    match Box::pin(gateway.lookup(&caller, request)).await {
        Ok(found) => served(found, &caller.request_id, evidence),
        Err(e) => problem(&e, &caller.request_id),
    }
}

/// A citizen from the national population database, by personal identification number.
#[utoipa::path(
    get,
    path = "/v1/citizens/{id}",
    tag = "lookup",
    params(("id" = String, Path, description = "12-digit personal identification number"), Fields, ContextHeaders, Deadline),
    responses((status = 200, description = "The record, only the granted (and asked) fields; `X-Cache` says where it came from", body = ref("#/components/schemas/lienthong.v1.Citizen")))
)]
async fn citizen(
    super::Current(g): super::Current,
    incoming: Incoming,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    lookup(&g, incoming, POPULATION_CITIZEN, id.map(|p| p.0)).await
}

/// An enterprise from the national business registration database, by enterprise code.
#[utoipa::path(
    get,
    path = "/v1/enterprises/{code}",
    tag = "lookup",
    params(("code" = String, Path, description = "10-digit enterprise code, or 13 with a branch suffix"), Fields, ContextHeaders, Deadline),
    responses((status = 200, description = "The record, only the granted (and asked) fields", body = ref("#/components/schemas/lienthong.v1.Enterprise")))
)]
async fn enterprise(
    super::Current(g): super::Current,
    incoming: Incoming,
    code: Result<Path<String>, PathRejection>,
) -> Response {
    lookup(&g, incoming, BUSINESS_ENTERPRISE, code.map(|p| p.0)).await
}

/// A land parcel from the land registry, by parcel id.
#[utoipa::path(
    get,
    path = "/v1/land-parcels/{parcel}",
    tag = "lookup",
    params(("parcel" = String, Path, description = "Parcel id: commune code, map sheet and parcel number"), Fields, ContextHeaders, Deadline),
    responses((status = 200, description = "The record, only the granted (and asked) fields", body = ref("#/components/schemas/lienthong.v1.LandParcel")))
)]
async fn parcel(
    super::Current(g): super::Current,
    incoming: Incoming,
    parcel: Result<Path<String>, PathRejection>,
) -> Response {
    lookup(&g, incoming, LAND_PARCEL, parcel.map(|p| p.0)).await
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
        ContextHeaders,
        Deadline
    ),
    responses((status = 200, description = "The record as a JSON object, only the granted (and asked) fields", body = Object))
)]
async fn record(
    super::Current(g): super::Current,
    incoming: Incoming,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let (dataset, key) = match path {
        Ok(Path((d, k))) => (d, Ok(k)),
        Err(e) => (String::new(), Err(e)),
    };
    lookup(&g, incoming, &dataset, key).await
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
    /// When the gateway fetched the record from the provider (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    fetched_at: Option<String>,
    /// The provider's own time of the data, where it stated one (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    data_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    record: Option<Value>,
    /// The item's evidence (a compact JWS over its `record`), when `X-Evidence` asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    evidence: Option<String>,
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
    mut incoming: Incoming,
    body: axum::body::Body,
) -> Response {
    let body = match read_body(&g, &incoming.caller, "batch", body).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    if let Some(refused) = refused_early(&g, &mut incoming, None, "batch").await {
        return refused;
    }
    let Incoming {
        context,
        caller,
        evidence,
        ..
    } = incoming;
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
    let stream = match g.batch(caller, context, items, evidence.wanted()).await {
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
                    fetched_at: Some(found.freshness.fetched_at.clone()),
                    data_time: found.freshness.data_time.clone(),
                    record: Some(Value::Object(found.record.to_record().0)),
                    evidence: found.evidence,
                    error: None,
                },
                Err(e) => BatchAnswerItem {
                    dataset,
                    key,
                    outcome: e.code.as_str().into(),
                    cache: None,
                    fetched_at: None,
                    data_time: None,
                    record: None,
                    evidence: None,
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
async fn capabilities(super::Current(g): super::Current, mut incoming: Incoming) -> Response {
    // A malformed query is answered for a known caller; an unknown one hears only that.
    if incoming.problem.is_some()
        && g.identify(&incoming.caller).is_ok()
        && let Some(refused) =
            Box::pin(refused_early(&g, &mut incoming, None, "capabilities")).await
    {
        return refused;
    }
    let caller = incoming.caller;
    match g.capabilities(&caller) {
        // The proto3 JSON form of the gRPC answer, so both transports say the same.
        Ok((consumer, grants)) => Json(super::capabilities(consumer, &grants)).into_response(),
        Err(e) => problem(&e, &caller.request_id),
    }
}
