//! The connectors file as written.

use super::*;
use serde::Deserialize;

/// The connectors file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawConnectors {
    pub connector: Vec<RawConnector>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawConnector {
    pub name: String,
    pub dataset: String,
    /// "soap-xml", "rest-json" or "grpc".
    pub kind: String,
    pub endpoint: String,
    pub timeout_ms: Option<u64>,
    /// Path in the payload tree to the record; absent or empty means not found.
    pub record_path: Option<String>,
    /// Path, from the record, to the provider's own time of its data (RFC 3339, or
    /// `yyyy-mm-ddThh:mm:ss` in Vietnam's time), e.g. "ThoiDiemDuLieu".
    pub data_time: Option<String>,
    pub auth: Option<RawUpstreamAuth>,
    pub tls: Option<RawConnectorTls>,
    pub soap: Option<RawSoap>,
    pub rest: Option<RawRest>,
    pub grpc: Option<RawGrpc>,
    pub mapping: toml::Table,
    pub templates: toml::Table,
    pub cache: RawCache,
    pub guard: RawGuard,
    /// Readiness fails while this connector's breaker is open.
    pub critical: bool,
    pub health: Option<RawHealth>,
}

/// Active health checks of a provider.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawHealth {
    /// A key to look up; a record or "no such record" both mean the provider answers. Use a
    /// test record: the answer is discarded.
    pub probe_key: String,
    /// Time between probes.
    pub interval_ms: u64,
}

/// Protection of one provider (see docs/configuration.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawGuard {
    /// Calls per second toward the provider; 0 is unlimited.
    pub capacity_rps: u32,
    pub burst: u32,
    pub max_in_flight: usize,
    pub max_wait_ms: u64,
    pub retries: u32,
    pub retry_budget: f64,
    pub backoff_ms: u64,
    pub breaker_consecutive_failures: u32,
    pub breaker_failure_rate: f64,
    pub breaker_min_calls: u32,
    pub breaker_window_s: u64,
    pub breaker_open_s: u64,
}

impl Default for RawGuard {
    fn default() -> Self {
        RawGuard {
            capacity_rps: DEFAULT_GUARD_CAPACITY_RPS,
            burst: DEFAULT_GUARD_BURST,
            max_in_flight: DEFAULT_GUARD_MAX_IN_FLIGHT,
            max_wait_ms: DEFAULT_GUARD_MAX_WAIT_MS,
            retries: DEFAULT_GUARD_RETRIES,
            retry_budget: DEFAULT_GUARD_RETRY_BUDGET,
            backoff_ms: DEFAULT_GUARD_BACKOFF_MS,
            breaker_consecutive_failures: DEFAULT_BREAKER_CONSECUTIVE_FAILURES,
            breaker_failure_rate: DEFAULT_BREAKER_FAILURE_RATE,
            breaker_min_calls: DEFAULT_BREAKER_MIN_CALLS,
            breaker_window_s: DEFAULT_BREAKER_WINDOW_S,
            breaker_open_s: DEFAULT_BREAKER_OPEN_S,
        }
    }
}

/// Caching of one connector's records.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawCache {
    /// Seconds a record is served without asking the provider; 0 turns caching off.
    pub ttl_s: u64,
    /// Seconds "no such record" is remembered.
    pub negative_ttl_s: u64,
    /// Seconds past the TTL a record may still be served when the provider fails.
    pub stale_if_error_s: u64,
    /// Most records held.
    pub capacity: u64,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            ttl_s: DEFAULT_CACHE_TTL_S,
            negative_ttl_s: DEFAULT_CACHE_NEGATIVE_TTL_S,
            stale_if_error_s: DEFAULT_CACHE_STALE_IF_ERROR_S,
            capacity: DEFAULT_CACHE_CAPACITY,
        }
    }
}

/// How the gateway authenticates to a provider. Every secret may be given inline, as
/// `NAME_env` (an environment variable's name) or as `NAME_file` (a file, relative to the
/// main config file); exactly one of the three.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawUpstreamAuth {
    /// "none", "signed-header" (the population scheme), "bearer", "api-key", "oauth2"
    /// (client credentials) or "ws-security" (UsernameToken with PasswordDigest, SOAP only).
    pub scheme: String,
    /// signed-header and ws-security: the account's name.
    pub user: Option<String>,
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
    pub token: Option<String>,
    pub token_env: Option<String>,
    pub token_file: Option<String>,
    /// signed-header: sent as `X-Road-Client`. oauth2: the client's id.
    pub client_id: Option<String>,
    /// signed-header: sent as `ApiKey`, when set. api-key: the key.
    pub api_key: Option<String>,
    pub api_key_env: Option<String>,
    pub api_key_file: Option<String>,
    /// api-key: the header that carries the key (`header`) or the query parameter
    /// (`query`); exactly one.
    pub header: Option<String>,
    pub query: Option<String>,
    /// oauth2: the token endpoint (RFC 6749 section 4.4).
    pub token_url: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_env: Option<String>,
    pub client_secret_file: Option<String>,
    /// oauth2: "basic" (client_secret_basic, the default) or "post" (client_secret_post).
    pub client_auth: Option<String>,
    /// oauth2: the scope asked for, when the provider wants one.
    pub scope: Option<String>,
    /// ws-security: the account's password.
    pub password: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
}

/// TLS toward a provider (an https endpoint): the CA its certificate is checked against,
/// and a client certificate (mTLS) to present.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawConnectorTls {
    pub ca_file: Option<String>,
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawSoap {
    /// "1.1" (the default) or "1.2".
    pub version: Option<String>,
    pub namespace: String,
    pub operation: String,
    /// Request elements: element name -> template, or nested elements; a table, or a list
    /// of one-element tables where the order must be kept (a JSON object sent through the
    /// admin API has no order, and a TOML table writes plain values first).
    pub fields: Option<toml::Value>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawRest {
    /// "GET" or "POST".
    pub method: Option<String>,
    /// JSON body template for POST.
    pub body: Option<toml::Value>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawGrpc {
    /// Full method name, "package.Service/Method".
    pub method: String,
    /// The provider's descriptors: a `FileDescriptorSet` (protobuf, Base64), holding the
    /// method and every message it uses. Without it, the method must be one compiled into
    /// the gateway.
    pub descriptor_set: Option<String>,
    /// Read `descriptor_set` from the provider by server reflection. Only through the admin
    /// API, which reads them once and stores them in their place.
    pub reflection: bool,
    /// Request message template (proto3 JSON, proto field names).
    pub request: toml::Table,
}
