//! The dossier register's REST routes: `POST /v1/dossiers` declares, `GET
//! /v1/dossiers/{id}` reads back, `POST …/subjects` and `…/subjects/remove` change the
//! subjects, `POST …/close` closes. Answers are the dossier in the proto3 JSON form of
//! `lienthong.v1.Dossier`, as gRPC's `DossierService` answers it.

use super::incoming::{Incoming, read_body};
use super::{problem, refused_early};
use crate::core::dossiers::{DeclareRequest, DossierChange, SubjectKey};
use crate::domain::error::{ErrorCode, LookupError};
use crate::dossiers::Dossier;
use crate::transport::Current;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

/// A dossier answer: the dossier, `X-Request-Id`, and on creation 201 with its `Location`.
fn answered(d: &Dossier, status: StatusCode, request_id: &str) -> Response {
    let mut response = (status, axum::Json(crate::transport::dossier_message(d))).into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    if status == StatusCode::CREATED
        && let Ok(v) = HeaderValue::from_str(&format!("/v1/dossiers/{}", d.dossier_id))
    {
        h.insert(header::LOCATION, v);
    }
    response
}

/// The body and path of a dossier call, or the answer refusing them (recorded for a known
/// caller, as every refusal is).
async fn read<T: DeserializeOwned>(
    g: &crate::core::gateway::Gateway,
    incoming: &mut Incoming,
    action: &'static str,
    path: Option<&PathRejection>,
    body: axum::body::Body,
    shape: &str,
) -> Result<T, Response> {
    let bytes = read_body(g, &incoming.caller, action, body).await?;
    if let Some(refused) = refused_early(g, incoming, path, action).await {
        return Err(refused);
    }
    match serde_json::from_slice(&bytes) {
        Ok(parsed) => Ok(parsed),
        Err(e) => {
            let error = LookupError::new(
                ErrorCode::InvalidRequest,
                format!("body must be {shape}: {e}"),
            );
            let error = Box::pin(g.refuse(&incoming.caller, action, error)).await;
            Err(problem(&error, &incoming.caller.request_id))
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DeclareBody {
    /// The dossier code (mã hồ sơ), e.g. `000.00.53.H48-251130-0001`.
    dossier_id: String,
    /// The procedure code (mã TTHC); lookups under the dossier must name the same.
    procedure_code: String,
    /// Whom the dossier concerns: at most `dossiers.max_subjects` (50 by default).
    subjects: Vec<SubjectBody>,
    /// When the dossier was received: RFC 3339 (`2026-11-30T08:15:00+07:00`) or a date.
    received_at: String,
    /// The officer who received it.
    #[serde(default)]
    officer_id: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SubjectBody {
    /// e.g. `population.citizen`
    dataset: String,
    /// The dataset's key, validated as a lookup key; kept only as a keyed reference.
    key: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SubjectChangeBody {
    dataset: String,
    key: String,
    /// Why the subject is added or removed (at most 500 characters).
    reason: String,
    #[serde(default)]
    officer_id: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CloseBody {
    /// `approved`, `refused`, `withdrawn` or `transferred`.
    result: String,
    #[serde(default)]
    officer_id: String,
}

/// Declare a dossier the caller received, with the subjects it concerns.
#[utoipa::path(
    post,
    path = "/v1/dossiers",
    tag = "dossiers",
    request_body = DeclareBody,
    responses(
        (status = 201, description = "Declared; `Location` names it", body = ref("#/components/schemas/lienthong.v1.Dossier")),
        (status = 200, description = "The same declaration was made before; nothing changed", body = ref("#/components/schemas/lienthong.v1.Dossier"))
    )
)]
pub(super) async fn declare(
    Current(g): Current,
    mut incoming: Incoming,
    body: axum::body::Body,
) -> Response {
    let parsed: DeclareBody = match read(
        &g,
        &mut incoming,
        "dossier_declare",
        None,
        body,
        "{\"dossier_id\", \"procedure_code\", \"subjects\": [{\"dataset\", \"key\"}], \"received_at\", \"officer_id\"?}",
    )
    .await
    {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let request = DeclareRequest {
        dossier_id: parsed.dossier_id,
        procedure_code: parsed.procedure_code,
        officer_id: parsed.officer_id,
        received_at: parsed.received_at,
        subjects: parsed
            .subjects
            .into_iter()
            .map(|s| SubjectKey {
                dataset: s.dataset,
                key: s.key,
            })
            .collect(),
    };
    let caller = incoming.caller;
    match Box::pin(g.declare(&caller, request)).await {
        Ok(a) if a.created => answered(&a.dossier, StatusCode::CREATED, &caller.request_id),
        Ok(a) => answered(&a.dossier, StatusCode::OK, &caller.request_id),
        Err(e) => problem(&e, &caller.request_id),
    }
}

/// Read one of the caller's dossiers back: status, result, subjects (as references).
#[utoipa::path(
    get,
    path = "/v1/dossiers/{id}",
    tag = "dossiers",
    params(("id" = String, Path, description = "The dossier code")),
    responses((status = 200, description = "The dossier", body = ref("#/components/schemas/lienthong.v1.Dossier")))
)]
pub(super) async fn get_dossier(
    Current(g): Current,
    mut incoming: Incoming,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    if let Some(refused) = refused_early(&g, &mut incoming, id.as_ref().err(), "dossier_read").await
    {
        return refused;
    }
    let caller = incoming.caller;
    let id = id.map(|p| p.0).unwrap_or_default();
    match Box::pin(g.dossier(&caller, &id)).await {
        Ok(d) => answered(&d, StatusCode::OK, &caller.request_id),
        Err(e) => problem(&e, &caller.request_id),
    }
}

async fn change(
    g: &crate::core::gateway::Gateway,
    mut incoming: Incoming,
    id: Result<Path<String>, PathRejection>,
    body: axum::body::Body,
    remove: bool,
) -> Response {
    let action = if remove {
        "dossier_remove_subject"
    } else {
        "dossier_add_subject"
    };
    let parsed: SubjectChangeBody = match read(
        g,
        &mut incoming,
        action,
        id.as_ref().err(),
        body,
        "{\"dataset\", \"key\", \"reason\", \"officer_id\"?}",
    )
    .await
    {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let subject = SubjectKey {
        dataset: parsed.dataset,
        key: parsed.key,
    };
    let change = if remove {
        DossierChange::Remove {
            subject,
            reason: parsed.reason,
        }
    } else {
        DossierChange::Add {
            subject,
            reason: parsed.reason,
        }
    };
    let caller = incoming.caller;
    let id = id.map(|p| p.0).unwrap_or_default();
    match Box::pin(g.change_dossier(&caller, &id, &parsed.officer_id, change)).await {
        Ok(d) => answered(&d, StatusCode::OK, &caller.request_id),
        Err(e) => problem(&e, &caller.request_id),
    }
}

/// Add a subject to an open dossier, with a reason.
#[utoipa::path(
    post,
    path = "/v1/dossiers/{id}/subjects",
    tag = "dossiers",
    params(("id" = String, Path, description = "The dossier code")),
    request_body = SubjectChangeBody,
    responses((status = 200, description = "The dossier with the subject added", body = ref("#/components/schemas/lienthong.v1.Dossier")))
)]
pub(super) async fn add_subject(
    Current(g): Current,
    incoming: Incoming,
    id: Result<Path<String>, PathRejection>,
    body: axum::body::Body,
) -> Response {
    change(&g, incoming, id, body, false).await
}

/// Remove a subject declared by mistake from an open dossier, with a reason.
#[utoipa::path(
    post,
    path = "/v1/dossiers/{id}/subjects/remove",
    tag = "dossiers",
    params(("id" = String, Path, description = "The dossier code")),
    request_body = SubjectChangeBody,
    responses((status = 200, description = "The dossier with the subject marked removed", body = ref("#/components/schemas/lienthong.v1.Dossier")))
)]
pub(super) async fn remove_subject(
    Current(g): Current,
    incoming: Incoming,
    id: Result<Path<String>, PathRejection>,
    body: axum::body::Body,
) -> Response {
    change(&g, incoming, id, body, true).await
}

/// Close an open dossier with its result; a dossier is closed once.
#[utoipa::path(
    post,
    path = "/v1/dossiers/{id}/close",
    tag = "dossiers",
    params(("id" = String, Path, description = "The dossier code")),
    request_body = CloseBody,
    responses((status = 200, description = "The closed dossier", body = ref("#/components/schemas/lienthong.v1.Dossier")))
)]
pub(super) async fn close(
    Current(g): Current,
    mut incoming: Incoming,
    id: Result<Path<String>, PathRejection>,
    body: axum::body::Body,
) -> Response {
    let parsed: CloseBody = match read(
        &g,
        &mut incoming,
        "dossier_close",
        id.as_ref().err(),
        body,
        "{\"result\", \"officer_id\"?}",
    )
    .await
    {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let caller = incoming.caller;
    let id = id.map(|p| p.0).unwrap_or_default();
    let change = DossierChange::Close {
        result: parsed.result,
    };
    match Box::pin(g.change_dossier(&caller, &id, &parsed.officer_id, change)).await {
        Ok(d) => answered(&d, StatusCode::OK, &caller.request_id),
        Err(e) => problem(&e, &caller.request_id),
    }
}
