//! The `rest-json` connector: GET or POST with a JSON body template, bearer token auth.

use super::connector::{Call, Payload, UpstreamError, http_error};
use super::spec::{ConnectorConfig, ConnectorKind, UpstreamAuth};
use super::template::Vars;

pub async fn call(
    client: &reqwest::Client,
    config: &ConnectorConfig,
    call: &Call<'_>,
) -> Result<Payload, UpstreamError> {
    let ConnectorKind::RestJson { post, url, body } = &config.kind else {
        return Err(UpstreamError::Unavailable("not a rest connector".into()));
    };
    let vars = Vars {
        key: call.key,
        request_id: call.request_id,
        context: call.context,
        auth_user: "",
    };
    let url = url.render(&vars);
    let mut request = if *post {
        client.post(&url)
    } else {
        client.get(&url)
    };
    request = request
        .header("Accept", "application/json")
        .header("traceparent", call.traceparent)
        .header("X-Procedure-Code", call.context.procedure_code())
        .header("X-Dossier-Id", call.context.dossier_id())
        .header("X-Officer-Id", call.context.officer_id());
    if !call.context.agency_code().is_empty() {
        request = request.header("X-Agency-Code", call.context.agency_code());
    }
    if let Some(body) = body {
        request = request.json(&body.render(&vars));
    }
    if let UpstreamAuth::Bearer { token } = &config.auth {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(http_error)?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(super::connector::http_status_error(
            status,
            format!("http {status}"),
        ));
    }
    let bytes = response.bytes().await.map_err(http_error)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| UpstreamError::BadResponse(format!("not JSON: {e}")))
}
