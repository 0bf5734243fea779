//! `GET /v1/me/access-report`: a citizen's own access report, for the public-service
//! portal that authenticated the citizen and asserts who they are (`X-Citizen-Assertion`,
//! a short-lived signed JWT). No dossier context: the portal's grant on
//! `population.citizen` is in `report` mode.

use super::problem;
use crate::core::report::ReportRequest;
use crate::core::request::ClientCertificate;
use crate::domain::error::{ErrorCode, LookupError};
use crate::transport::{ASSERTION_HEADER, Current};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    limit: Option<usize>,
    page_token: Option<String>,
}

/// The citizen's own report: every disclosure about them, across datasets, newest first;
/// entries of grants marked withheld are counted (`withheld_count`), not detailed.
#[utoipa::path(
    get,
    path = "/v1/me/access-report",
    tag = "citizen",
    params(
        ("X-Citizen-Assertion" = String, Header, description = "The portal's signed assertion (JWT: sub, iss, aud, iat, exp within 5 minutes, jti; EdDSA or ES256)"),
        ("limit" = Option<usize>, Query, description = "Entries per page, 1 to 200 (100)"),
        ("page_token" = Option<String>, Query, description = "From the previous page's next_page_token")
    ),
    responses((status = 200, description = "The citizen's access report", body = ref("#/components/schemas/lienthong.v1.AccessReport")))
)]
pub(super) async fn my_access_report(
    Current(g): Current,
    request: axum::extract::Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let text = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let caller = crate::transport::caller(
        text(header::AUTHORIZATION.as_str()),
        text("traceparent"),
        parts.extensions.get::<Arc<ClientCertificate>>().cloned(),
        "rest",
    );
    let page = match parts.uri.query() {
        None => Ok(Page {
            limit: None,
            page_token: None,
        }),
        Some(q) => page_query(q),
    };
    let page = match page {
        Ok(p) => p,
        Err(message) => {
            let e = g
                .refuse(
                    &caller,
                    "citizen_report",
                    LookupError::new(ErrorCode::InvalidRequest, message),
                )
                .await;
            return problem(&e, &caller.request_id);
        }
    };
    let request = ReportRequest {
        limit: page.limit,
        page_token: page.page_token,
    };
    match Box::pin(g.my_access_report(&caller, text(ASSERTION_HEADER), request)).await {
        Ok(report) => {
            let mut response = axum::Json(report).into_response();
            if let Ok(v) = HeaderValue::from_str(&caller.request_id) {
                response.headers_mut().insert("x-request-id", v);
            }
            response
        }
        Err(e) => problem(&e, &caller.request_id),
    }
}

/// `limit` and `page_token` from the query; anything else is refused by name.
fn page_query(query: &str) -> Result<Page, String> {
    let mut page = Page {
        limit: None,
        page_token: None,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = crate::transport::percent_decode(value)
            .ok_or("the query is not valid percent-encoded UTF-8")?;
        match name {
            "limit" if page.limit.is_none() => {
                page.limit = Some(value.parse().map_err(|_| "limit: a number from 1 to 200")?)
            }
            "page_token" if page.page_token.is_none() => page.page_token = Some(value),
            "limit" | "page_token" => return Err(format!("{name} is given more than once")),
            other => {
                return Err(format!(
                    "unknown query parameter {:?}: the report takes limit and page_token",
                    other.chars().take(40).collect::<String>()
                ));
            }
        }
    }
    Ok(page)
}
