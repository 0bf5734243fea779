//! A connector: calls one dataset's provider over its protocol and maps the payload to a
//! canonical record. Protocol specifics live in `soap`, `rest` and `grpc`.

use super::credentials::Credentials;
use super::spec::{ConnectorConfig, ConnectorKind};
use super::{grpc, rest, soap};
use crate::domain::context::CallContext;
use crate::domain::dataset::Dataset;
use crate::domain::record::Record;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Why a provider call gave no usable answer. Details are for logs, not for callers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamError {
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the call itself (credentials, signature, request form): retrying
    /// would not help.
    #[error("provider refused the call: {0}")]
    Refused(String),
    #[error("provider did not answer within {0:?}")]
    Timeout(Duration),
    #[error("unusable provider response: {0}")]
    BadResponse(String),
}

impl UpstreamError {
    /// The failure's kind, as metrics, audit records and probes name it.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Unavailable(_) => "unavailable",
            UpstreamError::Refused(_) => "refused",
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::BadResponse(_) => "bad_response",
        }
    }
}

/// A connector whose endpoint or TLS settings its transport cannot use.
#[derive(Debug, thiserror::Error)]
#[error("endpoint {endpoint:?}: {reason}")]
pub struct EndpointError {
    pub endpoint: String,
    pub reason: String,
}

/// What a protocol call returns: a payload tree, or `None` when the provider says the
/// record does not exist.
pub type Payload = Option<Value>;

/// One call's inputs.
/// A record as the provider gave it, and the provider's own time of its data (Unix ms),
/// where its answer states one.
#[derive(Debug, Clone)]
pub struct Provided {
    pub record: Record,
    pub data_time_ms: Option<i64>,
}

/// A provider's time of its data: RFC 3339, or without an offset in Vietnam's time.
fn parse_data_time(s: &str) -> Option<i64> {
    let s = s.trim();
    crate::domain::date::parse_rfc3339_ms(s).or_else(|| {
        let local = if s.contains('T') {
            format!("{s}+07:00")
        } else {
            s.replacen(' ', "T", 1) + "+07:00"
        };
        crate::domain::date::parse_rfc3339_ms(&local)
    })
}

pub struct Call<'a> {
    pub key: &'a str,
    pub request_id: &'a str,
    pub context: &'a CallContext,
    /// W3C `traceparent` for the provider call (this call's trace, the gateway's span).
    pub traceparent: &'a str,
}

enum Transport {
    Http(reqwest::Client),
    Grpc(tonic::transport::Channel),
    /// A provider in the test's hands: answers each key as the test says.
    #[cfg(test)]
    Fake(Fake),
}

/// A test's provider: the payload (or failure) for each key asked.
#[cfg(test)]
pub type Fake = Arc<dyn Fn(&str) -> Result<Payload, UpstreamError> + Send + Sync>;

/// A ready connector.
pub struct Connector {
    pub config: ConnectorConfig,
    dataset: Arc<Dataset>,
    transport: Transport,
    credentials: Credentials,
}

impl Connector {
    /// `http` is the gateway's shared client; a connector with its own TLS settings (a CA,
    /// a client certificate) gets a client of its own.
    pub fn new(
        config: ConnectorConfig,
        dataset: Arc<Dataset>,
        http: reqwest::Client,
    ) -> Result<Connector, EndpointError> {
        let failed = |reason: String| EndpointError {
            endpoint: config.endpoint.clone(),
            reason,
        };
        let transport = match (&config.kind, &config.tls) {
            (ConnectorKind::Grpc { .. }, tls) => Transport::Grpc(
                grpc::channel(&config.endpoint, config.timeout, tls.as_ref()).map_err(failed)?,
            ),
            (_, None) => Transport::Http(http.clone()),
            (_, Some(tls)) => {
                let rustls = tls.client_config().map_err(|e| failed(e.to_string()))?;
                let client = reqwest::Client::builder()
                    .tls_backend_preconfigured(rustls)
                    .pool_max_idle_per_host(64)
                    .build()
                    .map_err(|e| failed(e.to_string()))?;
                Transport::Http(client)
            }
        };
        // The token endpoint is reached like the provider: through its TLS settings.
        let token_client = match &transport {
            Transport::Http(c) => c.clone(),
            _ => http,
        };
        let credentials =
            Credentials::new(&config.auth, &config.endpoint, token_client, config.timeout);
        Ok(Connector {
            config,
            dataset,
            transport,
            credentials,
        })
    }

    /// A connector to a fake provider: the configured mapping and checks apply to what
    /// `answer` returns, as they would to a real provider's payload.
    #[cfg(test)]
    pub fn fake(config: ConnectorConfig, dataset: Arc<Dataset>, answer: Fake) -> Connector {
        let credentials = Credentials::new(
            &config.auth,
            &config.endpoint,
            reqwest::Client::new(),
            config.timeout,
        );
        Connector {
            config,
            dataset,
            transport: Transport::Fake(answer),
            credentials,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Fetches and maps the record for a normalised key; `Ok(None)` when it does not exist.
    pub async fn fetch(&self, call: &Call<'_>) -> Result<Option<Provided>, UpstreamError> {
        let timeout = self.config.timeout;
        let payload = tokio::time::timeout(timeout, self.call(call))
            .await
            .map_err(|_| UpstreamError::Timeout(timeout))??;
        let Some(payload) = payload else {
            return Ok(None);
        };
        let root = match &self.config.record_path {
            Some(path) => path.get(&payload),
            None => Some(&payload),
        };
        let root = match root {
            None => return Ok(None),
            Some(Value::String(s)) if s.is_empty() => return Ok(None),
            Some(Value::Array(a)) if a.is_empty() => return Ok(None),
            Some(Value::Array(a)) if a.len() > 1 => {
                return Err(UpstreamError::BadResponse(format!(
                    "{} records for one key",
                    a.len()
                )));
            }
            Some(Value::Array(a)) => &a[0],
            Some(v @ Value::Object(_)) => v,
            Some(_) => {
                return Err(UpstreamError::BadResponse(
                    "record is not a structure".into(),
                ));
            }
        };
        let mapped = self
            .config
            .mapping
            .apply(root)
            .map_err(|e| UpstreamError::BadResponse(e.0))?;
        let record =
            Record::canonical(&self.dataset.record, mapped).map_err(UpstreamError::BadResponse)?;
        let parts = self.dataset.key.split(call.key);
        for (field, part) in self.dataset.key_fields.iter().zip(&parts) {
            if record.get_str(field) != Some(*part) {
                return Err(UpstreamError::BadResponse(format!(
                    "record's {field} does not match the key asked for"
                )));
            }
        }
        let data_time_ms = self.config.data_time.as_ref().and_then(|path| {
            let stated = path.get(root)?.as_str()?;
            let parsed = parse_data_time(stated);
            if parsed.is_none() {
                tracing::warn!(
                    connector = self.config.name.as_str(),
                    "the provider's data time does not read as an instant; left out"
                );
            }
            parsed
        });
        Ok(Some(Provided {
            record,
            data_time_ms,
        }))
    }

    async fn call(&self, call: &Call<'_>) -> Result<Payload, UpstreamError> {
        match (&self.config.kind, &self.transport) {
            (ConnectorKind::SoapXml { .. }, Transport::Http(client)) => {
                soap::call(client, &self.credentials, &self.config, call).await
            }
            (ConnectorKind::RestJson { .. }, Transport::Http(client)) => {
                rest::call(client, &self.credentials, &self.config, call).await
            }
            (ConnectorKind::Grpc { .. }, Transport::Grpc(channel)) => {
                grpc::call(channel.clone(), &self.credentials, &self.config, call).await
            }
            #[cfg(test)]
            (_, Transport::Fake(answer)) => answer(call.key),
            _ => Err(UpstreamError::Unavailable(
                "connector transport does not match its kind".into(),
            )),
        }
    }
}

/// An unsuccessful HTTP status: 4xx (the provider refused the call) or anything else.
pub(crate) fn http_status_error(status: reqwest::StatusCode, detail: String) -> UpstreamError {
    if status.is_client_error() {
        UpstreamError::Refused(detail)
    } else {
        UpstreamError::Unavailable(detail)
    }
}

/// Classifies an HTTP client failure: timeouts apart, everything else as unavailable.
pub(crate) fn http_error(e: reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        UpstreamError::Timeout(Duration::ZERO)
    } else {
        UpstreamError::Unavailable(format!("http: {e}"))
    }
}
