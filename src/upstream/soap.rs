//! The `soap-xml` connector: a SOAP 1.1 envelope over HTTP POST, with the population
//! database's signed-header scheme when configured.

use super::connector::{Call, Payload, UpstreamError, http_error};
use super::mapping::xml_to_json;
use super::spec::{ConnectorConfig, ConnectorKind, UpstreamAuth};
use super::template::Vars;
use crate::domain::signed_header::signed_header_authorization;
use crate::domain::xml::xml_escape as escape;
use std::fmt::Write;

pub async fn call(
    client: &reqwest::Client,
    config: &ConnectorConfig,
    call: &Call<'_>,
) -> Result<Payload, UpstreamError> {
    let ConnectorKind::SoapXml {
        namespace,
        operation,
        fields,
    } = &config.kind
    else {
        return Err(UpstreamError::Unavailable("not a soap connector".into()));
    };
    let user = match &config.auth {
        UpstreamAuth::SignedHeader { user, .. } => user.as_str(),
        _ => "",
    };
    let vars = Vars {
        key: call.key,
        request_id: call.request_id,
        context: call.context,
        auth_user: user,
    };
    let mut body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:ns=\"{}\"><soapenv:Header/><soapenv:Body><ns:{operation}>",
        escape(namespace)
    );
    for (name, template) in fields {
        let _ = write!(
            body,
            "<ns:{name}>{}</ns:{name}>",
            escape(&template.render(&vars))
        );
    }
    let _ = write!(body, "</ns:{operation}></soapenv:Body></soapenv:Envelope>");

    let mut request = client
        .post(&config.endpoint)
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("traceparent", call.traceparent)
        .header("SOAPAction", format!("{namespace}/{operation}"));
    match &config.auth {
        UpstreamAuth::SignedHeader {
            user,
            secret,
            client_id,
            api_key,
        } => {
            let timestamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
                .to_string();
            request = request.header("Timestamp", &timestamp).header(
                "Authorization",
                signed_header_authorization(&config.endpoint, user, &timestamp, secret),
            );
            if !client_id.is_empty() {
                request = request.header("X-Road-Client", client_id);
            }
            if let Some(key) = api_key {
                request = request.header("ApiKey", key);
            }
        }
        UpstreamAuth::Bearer { token } => request = request.bearer_auth(token),
        UpstreamAuth::None => {}
    }
    let response = request.body(body).send().await.map_err(http_error)?;
    let status = response.status();
    let text = response.text().await.map_err(http_error)?;
    let tree = xml_to_json(&text);
    if !status.is_success() {
        let fault = tree
            .ok()
            .and_then(|t| {
                let path = super::mapping::Path::parse("Envelope.Body.Fault.faultstring").ok()?;
                path.get(&t).and_then(|v| v.as_str()).map(str::to_owned)
            })
            .unwrap_or_default();
        return Err(super::connector::http_status_error(
            status,
            format!("http {status}; soap fault: {fault}"),
        ));
    }
    tree.map(Some).map_err(UpstreamError::BadResponse)
}
