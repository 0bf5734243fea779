//! Config as written in the TOML files, before validation. Unknown keys are collected (all
//! of them, not just the first) by the loader and reported as errors.

mod connector;
mod policy;
pub use connector::*;
pub use policy::*;

use serde::Deserialize;

/// Default listen addresses (the demo's).
pub const DEFAULT_LOOKUP_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9090";
/// Most items one batch call may carry.
pub const DEFAULT_MAX_BATCH_ITEMS: usize = 100;
/// Upstream timeout when a connector does not set one.
pub const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 5_000;
/// Concurrent upstream lookups one batch call may run.
pub const DEFAULT_BATCH_CONCURRENCY: usize = 16;

/// The audit writer: records waiting at most, records per commit at most, and a signed
/// checkpoint every so many records or seconds, whichever comes first.
pub const DEFAULT_AUDIT_QUEUE_CAPACITY: usize = 10_000;
pub const DEFAULT_AUDIT_MAX_BATCH: usize = 512;
pub const DEFAULT_AUDIT_CHECKPOINT_EVERY: u64 = 1000;
pub const DEFAULT_AUDIT_CHECKPOINT_INTERVAL_S: u64 = 10;

/// A connector's guard: no capacity limit (0), its burst, calls in flight at the provider,
/// how long a call waits for capacity, retries and the share of calls they may add, and
/// the pause before a retry.
pub const DEFAULT_GUARD_CAPACITY_RPS: u32 = 0;
pub const DEFAULT_GUARD_BURST: u32 = 10;
pub const DEFAULT_GUARD_MAX_IN_FLIGHT: usize = 64;
pub const DEFAULT_GUARD_MAX_WAIT_MS: u64 = 250;
pub const DEFAULT_GUARD_RETRIES: u32 = 2;
pub const DEFAULT_GUARD_RETRY_BUDGET: f64 = 0.1;
pub const DEFAULT_GUARD_BACKOFF_MS: u64 = 25;
/// The breaker opens after this many failures in a row, or this share of failures among at
/// least so many calls in a window, and stays open so long.
pub const DEFAULT_BREAKER_CONSECUTIVE_FAILURES: u32 = 5;
pub const DEFAULT_BREAKER_FAILURE_RATE: f64 = 0.5;
pub const DEFAULT_BREAKER_MIN_CALLS: u32 = 20;
pub const DEFAULT_BREAKER_WINDOW_S: u64 = 10;
pub const DEFAULT_BREAKER_OPEN_S: u64 = 5;

/// A connector's cache: records served without asking for 5 minutes, "no such record" for a
/// minute, stale records while the provider fails for an hour, 100,000 records at most.
pub const DEFAULT_CACHE_TTL_S: u64 = 300;
pub const DEFAULT_CACHE_NEGATIVE_TTL_S: u64 = 60;
pub const DEFAULT_CACHE_STALE_IF_ERROR_S: u64 = 3600;
pub const DEFAULT_CACHE_CAPACITY: u64 = 100_000;

/// The main file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawGateway {
    pub instance_id: Option<String>,
    /// Path of the connectors file, relative to the main file.
    pub connectors: Option<String>,
    pub consumers: Option<String>,
    pub grants: Option<String>,
    /// Datasets registered beyond the built-in three (optional).
    pub datasets: Option<String>,
    /// The procedures catalogue: procedure codes and their names, for access reports
    /// (optional).
    pub procedures: Option<String>,
    pub listen: RawListen,
    pub log: RawLog,
    pub limits: RawLimits,
    pub door: RawDoor,
    pub context: RawContextRules,
    pub admin: RawAdmin,
    pub tls: Option<RawTls>,
    pub audit: RawAudit,
    pub telemetry: RawTelemetry,
    pub registry: RawRegistry,
    pub dossiers: RawDossiers,
    pub misuse: RawMisuse,
    pub storage: RawStorage,
    pub redis: RawRedis,
    pub access_requests: RawAccessRequests,
}

/// Shared storage for many replicas: the audit trail and the registry in PostgreSQL.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawStorage {
    /// e.g. postgres://lienthong@db:5432/lienthong; unset keeps SQLite files.
    pub postgres_url: Option<String>,
    pub postgres_url_env: Option<String>,
    /// The schema that holds lienthong's tables.
    pub schema: String,
}

impl Default for RawStorage {
    fn default() -> Self {
        RawStorage {
            postgres_url: None,
            postgres_url_env: None,
            schema: "lienthong".into(),
        }
    }
}

/// Shared quotas and change broadcasts for many replicas.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawRedis {
    /// e.g. redis://cache:6379/0; unset keeps quotas per process.
    pub url: Option<String>,
    pub url_env: Option<String>,
    /// Prefix of every key and channel (several gateways may share one Redis).
    pub key_prefix: String,
    /// Replicas sharing the quotas: while Redis is unreachable each enforces quota ÷ this.
    pub replicas: u32,
    /// While Redis is unreachable: "local-share" (each replica its share) or "fail-closed".
    pub on_unavailable: String,
    /// How long a quota check waits for Redis before counting it unreachable.
    pub timeout_ms: u64,
}

impl Default for RawRedis {
    fn default() -> Self {
        RawRedis {
            url: None,
            url_env: None,
            key_prefix: "lienthong:".into(),
            replicas: 1,
            on_unavailable: "local-share".into(),
            timeout_ms: 50,
        }
    }
}

/// The dossier register (`[dossiers]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawDossiers {
    /// SQLite file, relative to the main file (PostgreSQL when `[storage]` names one).
    pub path: String,
    /// A dossier never closed expires this many days after it was received.
    pub expire_days: u64,
    /// Most subjects a dossier holds at once.
    pub max_subjects: usize,
    /// How long a replica trusts its cached copy of a dossier.
    pub cache_ms: u64,
    /// How often expired dossiers are marked (and audited) and old closed ones purged.
    pub sweep_interval_ms: u64,
}

impl Default for RawDossiers {
    fn default() -> Self {
        RawDossiers {
            path: "data/dossiers.db".into(),
            expire_days: 90,
            max_subjects: 50,
            cache_ms: 2_000,
            sweep_interval_ms: 60_000,
        }
    }
}

/// The registry of configuration versions.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawRegistry {
    /// SQLite file, relative to the main file.
    pub path: String,
}

impl Default for RawRegistry {
    fn default() -> Self {
        RawRegistry {
            path: "data/registry.db".into(),
        }
    }
}

/// OpenTelemetry span export.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawTelemetry {
    /// OTLP/gRPC collector, e.g. "http://127.0.0.1:4317"; empty exports nothing.
    pub otlp_endpoint: String,
    /// Fraction of traces started at the gateway that are sampled (callers' decisions are
    /// followed).
    pub sampling_ratio: f64,
    pub service_name: String,
}

impl Default for RawTelemetry {
    fn default() -> Self {
        RawTelemetry {
            otlp_endpoint: String::new(),
            sampling_ratio: 1.0,
            service_name: "lienthong".into(),
        }
    }
}

/// The audit trail.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawAudit {
    /// The SQLite file, relative to the main file (to the working directory for the
    /// embedded demo config).
    pub path: String,
    /// "sync" (a response leaves after its record is committed) or "async".
    pub durability: String,
    /// Each group commit reaches the disk (SQLite synchronous=FULL); off survives a crash of
    /// the process but not of the machine.
    pub fsync: bool,
    /// "fail-closed" (refuse lookups while the store fails) or "fail-open".
    pub on_store_failure: String,
    pub queue_capacity: usize,
    pub max_batch: usize,
    pub checkpoint_every: u64,
    pub checkpoint_interval_s: u64,
    /// Days records are kept before they are archived; 0 keeps them.
    pub retention_days: u64,
    /// Where archives are written, relative like `path`.
    pub archive_dir: String,
    /// The key of subject references (HMAC-SHA256), base64, with its id.
    pub subject_key_id: String,
    pub subject_key: Option<String>,
    pub subject_key_env: Option<String>,
    /// Instead of `subject_key`: the keys held, the current one first, older ones after it
    /// so that earlier records and dossiers are still found by subject.
    pub subject_keys: Vec<RawSubjectKey>,
    /// The ed25519 seed (32 bytes, base64) that signs checkpoints, with its id.
    pub signing_key_id: String,
    pub signing_key: Option<String>,
    pub signing_key_env: Option<String>,
    /// Public keys (base64) of earlier signing keys, by id, so old checkpoints still verify.
    pub verify_keys: std::collections::BTreeMap<String, String>,
    /// Keys that sign evidence (`[[audit.evidence_keys]]`), the signing one first; the
    /// others stay published so that what they signed still verifies.
    pub evidence_keys: Vec<RawEvidenceKey>,
    /// Witnesses each signed checkpoint is also sent to (`[[audit.witnesses]]`).
    pub witnesses: Vec<RawWitness>,
    /// Seconds a checkpoint may wait for its receipts before `audit verify` calls a missing
    /// one tampering.
    pub anchor_lag_s: u64,
}

/// A witness: `kind` "rfc3161" (a time-stamping authority, with its `certificate`, PEM,
/// relative to the main file) or "countersign" (with its Ed25519 `public_key`, base64).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawWitness {
    pub name: String,
    pub kind: String,
    pub url: String,
    pub certificate: Option<String>,
    pub public_key: Option<String>,
}

/// One subject key: its id and secret (base64, at least 16 bytes).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawSubjectKey {
    pub id: String,
    pub key: Option<String>,
    pub key_env: Option<String>,
}

/// One evidence key: a seed (base64, 32 bytes) for one that signs, or only its public key
/// for one retired; optional validity bounds (RFC 3339).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawEvidenceKey {
    pub id: String,
    pub seed: Option<String>,
    pub seed_env: Option<String>,
    pub public: Option<String>,
    pub valid_from: Option<String>,
    pub valid_until: Option<String>,
}

impl Default for RawAudit {
    fn default() -> Self {
        RawAudit {
            path: "data/audit.db".into(),
            durability: "sync".into(),
            fsync: true,
            on_store_failure: "fail-closed".into(),
            queue_capacity: DEFAULT_AUDIT_QUEUE_CAPACITY,
            max_batch: DEFAULT_AUDIT_MAX_BATCH,
            checkpoint_every: DEFAULT_AUDIT_CHECKPOINT_EVERY,
            checkpoint_interval_s: DEFAULT_AUDIT_CHECKPOINT_INTERVAL_S,
            retention_days: 0,
            archive_dir: "data/archive".into(),
            subject_key_id: "k1".into(),
            subject_key: None,
            subject_key_env: None,
            subject_keys: Vec::new(),
            signing_key_id: "s1".into(),
            signing_key: None,
            signing_key_env: None,
            verify_keys: Default::default(),
            evidence_keys: Vec::new(),
            witnesses: Vec::new(),
            anchor_lag_s: 600,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawListen {
    pub lookup: String,
    pub admin: String,
    /// Serve the lookup API without TLS on an address other than loopback.
    pub allow_plaintext: bool,
    /// On SIGTERM: how long to keep serving, not ready, before closing the lookup listener
    /// (time for load balancers to notice).
    pub drain_delay_ms: u64,
}

impl Default for RawListen {
    fn default() -> Self {
        RawListen {
            lookup: DEFAULT_LOOKUP_ADDR.into(),
            admin: DEFAULT_ADMIN_ADDR.into(),
            allow_plaintext: false,
            drain_delay_ms: 0,
        }
    }
}

/// TLS on the lookup listener; paths are relative to the main file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawTls {
    /// PEM: the server certificate, then any intermediates.
    pub cert: String,
    /// PEM: the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// PEM: the CA(s) that sign client certificates; enables mTLS.
    pub client_ca: Option<String>,
    /// "optional" (API keys still work; the default) or "required".
    pub client_auth: Option<String>,
    /// PEM files of certificate revocation lists from the client CAs: a client certificate
    /// they revoke is refused in the handshake.
    pub crl_files: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawLog {
    /// "text" or "json".
    pub format: String,
    /// A tracing filter, e.g. "info" or "lienthong=debug".
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawLimits {
    pub max_batch_items: usize,
    pub batch_concurrency: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_batch_items: DEFAULT_MAX_BATCH_ITEMS,
            batch_concurrency: DEFAULT_BATCH_CONCURRENCY,
        }
    }
}

/// The transport tier ahead of the core, on both listeners: what one source may do before
/// it is identified, connection caps, timeouts and protocol limits. Read at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawDoor {
    /// Requests per source (an IPv4 address, an IPv6 /64) before authentication, e.g.
    /// "600/s"; all of them may come at once.
    pub source_rate: String,
    /// Failed authentications per source before a back-off starts, e.g. "20/min".
    pub auth_failures: String,
    /// The first back-off; each further one while failures continue doubles it.
    pub auth_backoff_ms: u64,
    pub auth_backoff_max_ms: u64,
    /// Sources tracked at once; beyond it, untracked sources share one budget.
    pub max_sources: usize,
    /// CIDRs that skip the per-source budgets and caps (shared integration platforms).
    pub exempt: Vec<String>,
    /// CIDRs of reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Open connections on the lookup listener, in total and per source.
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    /// The same for the admin listener.
    pub admin_max_connections: usize,
    pub admin_max_connections_per_source: usize,
    /// File descriptors kept free for the audit store, the registry and the admin listener.
    pub descriptor_reserve: u64,
    /// Requests being answered at once on the lookup listener (the admin listener:
    /// `admin_max_in_flight`); beyond it requests are shed with `overloaded`.
    pub max_in_flight: usize,
    pub admin_max_in_flight: usize,
    /// From accept to a complete first request head, and from one request to the next
    /// request head on HTTP/1.1.
    pub header_read_timeout_ms: u64,
    /// From a request's arrival to the end of its body.
    pub body_timeout_ms: u64,
    /// A connection with no request in progress for this long is closed.
    pub idle_timeout_ms: u64,
    pub tls_handshake_timeout_ms: u64,
    /// Request header block: total bytes of names and values, and the number of fields.
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// A REST request body, or a gRPC request message.
    pub max_body_bytes: usize,
    pub h2_max_concurrent_streams: u32,
    pub h2_keepalive_interval_ms: u64,
    pub h2_keepalive_timeout_ms: u64,
    /// Streams a client may open and reset before the server reads them (rapid reset).
    pub h2_max_pending_reset_streams: usize,
    /// Streams the server may reset for a client's protocol errors before it is dropped.
    pub h2_max_local_reset_streams: usize,
    /// Refusals of unidentified callers are summed per (source, reason) over this window
    /// into one audit record, and logged at most once per window.
    pub summary_window_ms: u64,
}

pub const DEFAULT_DOOR_SOURCE_RATE: &str = "600/s";
pub const DEFAULT_DOOR_AUTH_FAILURES: &str = "20/min";
pub const DEFAULT_DOOR_AUTH_BACKOFF_MS: u64 = 1_000;
pub const DEFAULT_DOOR_AUTH_BACKOFF_MAX_MS: u64 = 300_000;
pub const DEFAULT_DOOR_MAX_SOURCES: usize = 65_536;
pub const DEFAULT_DOOR_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_DOOR_MAX_CONNECTIONS_PER_SOURCE: usize = 512;
pub const DEFAULT_DOOR_ADMIN_MAX_CONNECTIONS: usize = 256;
pub const DEFAULT_DOOR_ADMIN_MAX_CONNECTIONS_PER_SOURCE: usize = 32;
pub const DEFAULT_DOOR_DESCRIPTOR_RESERVE: u64 = 512;
pub const DEFAULT_DOOR_MAX_IN_FLIGHT: usize = 4_096;
pub const DEFAULT_DOOR_ADMIN_MAX_IN_FLIGHT: usize = 64;
pub const DEFAULT_DOOR_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_DOOR_BODY_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_DOOR_IDLE_TIMEOUT_MS: u64 = 120_000;
pub const DEFAULT_DOOR_TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_DOOR_MAX_HEADER_BYTES: usize = 16 * 1024;
pub const DEFAULT_DOOR_MAX_HEADERS: usize = 50;
pub const DEFAULT_DOOR_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
pub const DEFAULT_DOOR_H2_MAX_CONCURRENT_STREAMS: u32 = 256;
pub const DEFAULT_DOOR_H2_KEEPALIVE_INTERVAL_MS: u64 = 30_000;
pub const DEFAULT_DOOR_H2_KEEPALIVE_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_DOOR_H2_MAX_PENDING_RESET_STREAMS: usize = 20;
pub const DEFAULT_DOOR_H2_MAX_LOCAL_RESET_STREAMS: usize = 1_024;
pub const DEFAULT_DOOR_SUMMARY_WINDOW_MS: u64 = 10_000;

impl Default for RawDoor {
    fn default() -> Self {
        RawDoor {
            source_rate: DEFAULT_DOOR_SOURCE_RATE.into(),
            auth_failures: DEFAULT_DOOR_AUTH_FAILURES.into(),
            auth_backoff_ms: DEFAULT_DOOR_AUTH_BACKOFF_MS,
            auth_backoff_max_ms: DEFAULT_DOOR_AUTH_BACKOFF_MAX_MS,
            max_sources: DEFAULT_DOOR_MAX_SOURCES,
            exempt: Vec::new(),
            trusted_proxies: Vec::new(),
            max_connections: DEFAULT_DOOR_MAX_CONNECTIONS,
            max_connections_per_source: DEFAULT_DOOR_MAX_CONNECTIONS_PER_SOURCE,
            admin_max_connections: DEFAULT_DOOR_ADMIN_MAX_CONNECTIONS,
            admin_max_connections_per_source: DEFAULT_DOOR_ADMIN_MAX_CONNECTIONS_PER_SOURCE,
            descriptor_reserve: DEFAULT_DOOR_DESCRIPTOR_RESERVE,
            max_in_flight: DEFAULT_DOOR_MAX_IN_FLIGHT,
            admin_max_in_flight: DEFAULT_DOOR_ADMIN_MAX_IN_FLIGHT,
            header_read_timeout_ms: DEFAULT_DOOR_HEADER_READ_TIMEOUT_MS,
            body_timeout_ms: DEFAULT_DOOR_BODY_TIMEOUT_MS,
            idle_timeout_ms: DEFAULT_DOOR_IDLE_TIMEOUT_MS,
            tls_handshake_timeout_ms: DEFAULT_DOOR_TLS_HANDSHAKE_TIMEOUT_MS,
            max_header_bytes: DEFAULT_DOOR_MAX_HEADER_BYTES,
            max_headers: DEFAULT_DOOR_MAX_HEADERS,
            max_body_bytes: DEFAULT_DOOR_MAX_BODY_BYTES,
            h2_max_concurrent_streams: DEFAULT_DOOR_H2_MAX_CONCURRENT_STREAMS,
            h2_keepalive_interval_ms: DEFAULT_DOOR_H2_KEEPALIVE_INTERVAL_MS,
            h2_keepalive_timeout_ms: DEFAULT_DOOR_H2_KEEPALIVE_TIMEOUT_MS,
            h2_max_pending_reset_streams: DEFAULT_DOOR_H2_MAX_PENDING_RESET_STREAMS,
            h2_max_local_reset_streams: DEFAULT_DOOR_H2_MAX_LOCAL_RESET_STREAMS,
            summary_window_ms: DEFAULT_DOOR_SUMMARY_WINDOW_MS,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawContextRules {
    pub procedure_code_pattern: Option<String>,
    pub dossier_id_pattern: Option<String>,
    pub officer_id_pattern: Option<String>,
    pub agency_code_pattern: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawAdmin {
    /// SHA-256 (hex) of each operator token accepted on the admin listener.
    pub operator_token_sha256: Vec<String>,
    /// Named admin credentials with a role.
    pub token: Vec<RawAdminToken>,
    /// Admin callers known by their client certificate (needs `admin.tls`).
    pub client: Vec<RawAdminClient>,
    /// Serve the admin listener over TLS with the `[tls]` certificate, verifying client
    /// certificates against `tls.client_ca`.
    pub tls: bool,
    /// The key (32 bytes, Base64) that secrets sent through the admin API are sealed
    /// under; or `_env`, `_file`. Without one, the API refuses inline secrets.
    pub secrets_key: Option<String>,
    pub secrets_key_env: Option<String>,
    pub secrets_key_file: Option<String>,
    /// Earlier secrets keys, by the names of the environment variables holding them: what
    /// was sealed under one still opens (a rotation's overlap); new seals use the key
    /// above.
    pub previous_secrets_keys_env: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawAdminClient {
    pub name: String,
    /// Names the certificate carries, e.g. "CN=ops-alice" (any one identifies the caller).
    pub certificate_names: Vec<String>,
    pub role: String,
    pub agency: Option<String>,
    pub consumer: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawAdminToken {
    /// Who holds it, as the audit trail names them.
    pub name: String,
    pub sha256: String,
    /// "operator", "auditor", "provider" or "consumer_admin".
    pub role: String,
    /// For a provider: the agency whose datasets it manages (a dataset's owner).
    pub agency: Option<String>,
    /// For a consumer_admin: the consumer whose keys and access requests it manages.
    pub consumer: Option<String>,
}

/// How access requests are answered (`[access_requests]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawAccessRequests {
    /// A request is due this many working days after it was made.
    pub deadline_working_days: u32,
    /// Working days ("mon" … "sun") and days off (`yyyy-mm-dd`); misuse detection's
    /// `office_days` and `holidays` when unset.
    pub working_days: Option<Vec<String>>,
    pub holidays: Option<Vec<String>>,
}

impl Default for RawAccessRequests {
    fn default() -> Self {
        RawAccessRequests {
            deadline_working_days: 2,
            working_days: None,
            holidays: None,
        }
    }
}

/// The datasets file: datasets registered beyond the built-in three, and the built-in
/// ones switched off.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawDatasets {
    pub dataset: Vec<RawDataset>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(default)]
pub struct RawDataset {
    /// `owner.record`, e.g. `tax.status`; the owner is the agency before the dot.
    pub name: String,
    pub description: String,
    /// Which field of the record holds the key.
    pub key_field: Option<String>,
    /// For a composite key: the field that holds each part, in order.
    pub key_fields: Vec<String>,
    /// `{ builtin = "personal_id" | "enterprise_code" | "parcel_id" }`,
    /// `{ pattern = "REGEX" }` (the whole key must match), or
    /// `{ parts = [{ name, pattern }, …], separator = "-" }` (a composite key).
    pub key: Option<RawKeyRule>,
    pub field: Vec<RawField>,
    pub disabled: bool,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(default)]
pub struct RawKeyRule {
    pub builtin: Option<String>,
    pub pattern: Option<String>,
    pub parts: Vec<RawKeyPart>,
    pub separator: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(default)]
pub struct RawKeyPart {
    pub name: String,
    pub pattern: String,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(default)]
pub struct RawField {
    pub name: String,
    /// string, int32, int64, uint32, double, bool, or record (with `fields`).
    #[serde(rename = "type")]
    pub kind: String,
    /// A record's own fields (`[[dataset.field.field]]`, or `"fields"` in JSON).
    #[serde(alias = "fields")]
    pub field: Vec<RawField>,
    pub repeated: bool,
    pub description: String,
    /// The field holds personal ids (of people other than the record's subject): each
    /// disclosure of it is indexed for those people's access reports. String fields only.
    pub personal_id: bool,
}
