//! The `rest-json` connector: GET or POST with a JSON body template, with the connector's
//! credentials (a bearer token, an API key, an OAuth2 token or the signed header).

use super::connector::{Call, Payload, UpstreamError, http_error};
use super::credentials::Credentials;
use super::spec::{ConnectorConfig, ConnectorKind};
use super::template::Vars;

pub async fn call(
    client: &reqwest::Client,
    credentials: &Credentials,
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
        separator: config.key_separator,
        part_names: &config.key_parts,
    };
    let url = credentials.url(url.render(&vars));
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
    let response = credentials.send(request).await?;
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
