//! `POST /v1/datasets/{dataset}/verify`: whether claimed values match a record, per field.

use super::evidence;
use super::incoming::{Incoming, read_body};
use super::{ContextHeaders, X_REQUEST_ID, insert_freshness, problem, refused_early};
use crate::core::request::VerifyRequest;
use crate::domain::error::LookupError;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct VerifyBody {
    key: String,
    /// Claimed values by field name, e.g. `{"full_name": "…", "date_of_birth": "1990-05-17"}`.
    #[schema(value_type = Object)]
    claims: serde_json::Map<String, Value>,
}

/// The verify answer's form, for the OpenAPI document (the body is written by
/// `verification_answer`, whose digest evidence states).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(super) struct VerifyAnswer {
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
pub(super) async fn verify(
    crate::transport::Current(g): crate::transport::Current,
    mut incoming: Incoming,
    dataset: Result<Path<String>, PathRejection>,
    body: axum::body::Body,
) -> Response {
    let body = match read_body(&g, &incoming.caller, "verify", body).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    if let Some(refused) = refused_early(&g, &mut incoming, dataset.as_ref().err(), "verify").await
    {
        return refused;
    }
    let dataset = dataset.map(|p| p.0).unwrap_or_default();
    let Incoming {
        context,
        caller,
        evidence,
        ..
    } = incoming;
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
        evidence: evidence.wanted(),
    };
    match g.verify(&caller, request).await {
        Ok(v) => {
            let mut h = HeaderMap::with_capacity(6);
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Ok(id) = HeaderValue::from_str(&caller.request_id) {
                h.insert(X_REQUEST_ID, id);
            }
            insert_freshness(&mut h, &v.freshness, "");
            let answer = crate::core::evidence::verification_answer(&v).to_string();
            let body = evidence::body(evidence, answer.into_bytes(), v.evidence.as_deref(), &mut h);
            let mut response = axum::body::Body::from(body).into_response();
            *response.headers_mut() = h;
            response
        }
        Err(e) => problem(&e, &caller.request_id),
    }
}
