//! Typed configuration: TOML files → `LIENTHONG_*` environment overrides → validation →
//! an immutable [`Config`]. Every problem is reported with its file and key, all at once.

pub mod raw;

use crate::audit::record::{Signer, SubjectKey};
use crate::audit::writer::{Durability, WriterSettings};
use crate::domain::context::ContextRules;
use crate::domain::dataset::{Dataset, builtin, descriptors};
use crate::domain::date::Date;
use crate::layers::cache::CacheSettings;
use crate::shared::limiter::QuotaSpec;
use crate::transport::tls::{self, ClientAuth};
use crate::upstream::guard::{BreakerSettings, GuardSettings};
use crate::upstream::mapping::{Mapping, Path};
use crate::upstream::template::{JsonTemplate, Template};
use raw::*;
use regex::Regex;
use serde::de::DeserializeOwned;
#[cfg(test)]
use sha2::Digest;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Prefix of environment overrides: `LIENTHONG_<SECTION>__<KEY>`.
pub const ENV_PREFIX: &str = "LIENTHONG_";

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.message)
        }
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A main file on disk; the files it names are read relative to it.
    File(PathBuf),
    /// Files held in memory: (name, contents), main file first. The demo's defaults are
    /// compiled into the binary ([`DEMO_FILES`]).
    Inline(Vec<(String, String)>),
    /// Another source whose datasets, connectors, consumers and grants files are replaced
    /// by the texts given, by role ("datasets", "connectors", "consumers", "grants"): a
    /// version from the registry, or a change made at run time.
    Versioned {
        base: Box<Source>,
        files: Vec<(String, String)>,
    },
}

/// The demo's configuration, compiled in so `lienthong demo` needs no files.
pub const DEMO_FILES: [(&str, &str); 4] = [
    (
        "config/demo/gateway.toml",
        include_str!("../../config/demo/gateway.toml"),
    ),
    (
        "config/demo/connectors.toml",
        include_str!("../../config/demo/connectors.toml"),
    ),
    (
        "config/demo/consumers.toml",
        include_str!("../../config/demo/consumers.toml"),
    ),
    (
        "config/demo/grants.toml",
        include_str!("../../config/demo/grants.toml"),
    ),
];

impl Source {
    /// The embedded demo configuration, with `edit` applied to each file's text.
    pub fn demo_with(edit: impl Fn(&str) -> String) -> Source {
        Source::Inline(
            DEMO_FILES
                .iter()
                .map(|(n, t)| ((*n).to_owned(), edit(t)))
                .collect(),
        )
    }

    /// The embedded demo configuration as shipped.
    pub fn demo() -> Source {
        Source::demo_with(str::to_owned)
    }

    fn main_name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Inline(files) => files[0].0.clone(),
            Source::Versioned { base, .. } => base.main_name(),
        }
    }

    fn resolve(&self, relative: &str) -> String {
        match self {
            Source::Versioned { base, .. } => base.resolve(relative),
            Source::File(p) => p
                .parent()
                .unwrap_or(FsPath::new("."))
                .join(relative)
                .display()
                .to_string(),
            Source::Inline(files) => {
                let dir = FsPath::new(&files[0].0).parent().unwrap_or(FsPath::new(""));
                dir.join(relative).display().to_string()
            }
        }
    }

    /// A path on disk named in config: relative to the main file, or to the working
    /// directory for the embedded configuration.
    fn resolve_disk(&self, relative: &str) -> String {
        match self {
            Source::File(_) => self.resolve(relative),
            Source::Inline(_) => relative.to_owned(),
            Source::Versioned { base, .. } => base.resolve_disk(relative),
        }
    }

    fn read(&self, name: &str) -> Result<String, String> {
        match self {
            // A version's files are taken by role before this is asked.
            Source::Versioned { base, .. } => base.read(name),
            Source::File(_) => {
                std::fs::read_to_string(name).map_err(|e| format!("cannot read: {e}"))
            }
            Source::Inline(files) => files
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| c.clone())
                .ok_or_else(|| "not among the embedded files".into()),
        }
    }

    /// The same main file with the sub-files replaced by `files`.
    pub fn with_files(&self, files: Vec<(String, String)>) -> Source {
        Source::Versioned {
            base: Box::new(self.base().clone()),
            files,
        }
    }

    /// The source the files came from before any version replaced them.
    pub fn base(&self) -> &Source {
        match self {
            Source::Versioned { base, .. } => base.base(),
            other => other,
        }
    }
}

/// How the gateway authenticates to a provider.
#[derive(Debug, Clone)]
pub enum UpstreamAuth {
    None,
    /// The population database's scheme: `Timestamp` and
    /// `Authorization: Basic base64(user:sha256(url+user+timestamp+secret))`.
    SignedHeader {
        user: String,
        secret: String,
        client_id: String,
        api_key: Option<String>,
    },
    Bearer {
        token: String,
    },
}

/// Protocol-specific connector settings.
#[derive(Debug, Clone)]
pub enum ConnectorKind {
    SoapXml {
        namespace: String,
        operation: String,
        fields: Vec<(String, Template)>,
    },
    RestJson {
        post: bool,
        url: Template,
        body: Option<JsonTemplate>,
    },
    Grpc {
        method: String,
        request: JsonTemplate,
        input: prost_reflect::MessageDescriptor,
        output: prost_reflect::MessageDescriptor,
    },
}

/// One validated connector.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    pub name: String,
    pub dataset: String,
    pub kind: ConnectorKind,
    pub endpoint: String,
    pub timeout: Duration,
    pub record_path: Option<Path>,
    pub auth: UpstreamAuth,
    pub mapping: Mapping,
    pub cache: CacheSettings,
    pub guard: GuardSettings,
    /// Readiness depends on this connector's breaker being shut (and its probe passing).
    pub critical: bool,
    /// SHA-256 of everything configured for this connector: a reload keeps the running
    /// connector (its cache, guard and probe state) when this is unchanged.
    pub fingerprint: String,
    /// Active health checks: (probe key, interval).
    pub health: Option<(String, Duration)>,
}

/// A consumer (a one-stop system) and its credentials.
#[derive(Debug, Clone)]
pub struct Consumer {
    pub id: String,
    pub name: String,
    pub key_hashes: Vec<[u8; 32]>,
    /// Client certificate names (`CN=…`, `DNS:…`, …) that identify this consumer.
    pub certificate_names: Vec<String>,
    /// The consumer's overall quota, across its grants.
    pub quota: Option<QuotaSpec>,
}

/// What an admin credential may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRole {
    /// Everything.
    Operator,
    /// Audit queries only.
    Auditor,
    /// Only the datasets this agency owns: their cache and their providers' state.
    Provider { agency: String },
}

/// A named admin caller: a token (stored as SHA-256) or a client certificate's names.
#[derive(Debug, Clone)]
pub struct AdminCredential {
    pub name: String,
    pub hash: Option<[u8; 32]>,
    pub certificate_names: Vec<String>,
    pub role: AdminRole,
}

/// The audit trail's settings and keys.
#[derive(Clone)]
pub struct AuditConfig {
    pub path: PathBuf,
    pub fsync: bool,
    pub writer: WriterSettings,
    pub retention: Option<Duration>,
    pub archive_dir: PathBuf,
    pub subject_key_id: String,
    pub subject_key: Vec<u8>,
    pub signing_key_id: String,
    pub signing_seed: Vec<u8>,
    /// Public keys checkpoints may be signed with, by key id (the signing key's included).
    pub verify_keys: HashMap<String, Vec<u8>>,
}

impl fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditConfig")
            .field("path", &self.path)
            .field("writer", &self.writer)
            .field("subject_key_id", &self.subject_key_id)
            .field("signing_key_id", &self.signing_key_id)
            .finish_non_exhaustive()
    }
}

impl AuditConfig {
    pub fn subjects(&self) -> SubjectKey {
        SubjectKey::new(&self.subject_key_id, &self.subject_key)
    }

    pub fn signer(&self) -> Signer {
        Signer::from_seed(&self.signing_key_id, &self.signing_seed)
            .expect("the seed was checked when the config loaded")
    }
}

/// TLS on the lookup listener, loaded and checked.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub server: Arc<rustls::ServerConfig>,
    /// Set when client certificates are verified (a `client_ca` is configured).
    pub client_auth: Option<ClientAuth>,
}

/// Access granted to one consumer on one dataset.
#[derive(Debug, Clone)]
pub struct Grant {
    pub consumer: String,
    pub dataset: String,
    /// Exact codes, or prefixes (written with a trailing `*`).
    pub procedures: Vec<ProcedurePattern>,
    /// Allowed fields, in record order.
    pub fields: Vec<String>,
    pub modes: Vec<Mode>,
    pub legal_basis: String,
    /// First and last day in force (inclusive); `None` is open-ended.
    pub valid_from: Option<Date>,
    pub valid_until: Option<Date>,
    /// May ask for a fresh read (`Cache-Control: no-cache`).
    pub allow_cache_bypass: bool,
    /// Calls this grant admits; unlimited when `None`.
    pub quota: Option<QuotaSpec>,
    /// Switched off by its owner: admits nothing.
    pub disabled: bool,
}

impl Grant {
    /// Whether the grant is in force on `day`.
    pub fn in_force(&self, day: Date) -> bool {
        self.valid_from.is_none_or(|from| from <= day)
            && self.valid_until.is_none_or(|until| day <= until)
    }
}

/// What a grant lets its holder do with the granted fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Receive the fields.
    Fetch,
    /// Only learn whether claimed values match them.
    Verify,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Fetch => "fetch",
            Mode::Verify => "verify",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcedurePattern {
    Exact(String),
    Prefix(String),
}

impl ProcedurePattern {
    /// As written in config: the code, or the prefix followed by `*`.
    pub fn as_config(&self) -> String {
        match self {
            ProcedurePattern::Exact(c) => c.clone(),
            ProcedurePattern::Prefix(p) => format!("{p}*"),
        }
    }

    pub fn matches(&self, code: &str) -> bool {
        match self {
            ProcedurePattern::Exact(c) => c == code,
            ProcedurePattern::Prefix(p) => code.starts_with(p.as_str()),
        }
    }
}

/// PostgreSQL for the audit trail and the registry.
#[derive(Clone)]
pub struct PgStorage {
    pub url: String,
    pub schema: String,
}

impl fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password.
        write!(f, "PgStorage {{ schema: {:?} }}", self.schema)
    }
}

/// What a replica does while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisFallback {
    /// Each replica enforces its share of every quota (quota ÷ replicas).
    LocalShare,
    /// Calls with a quota are refused (`overloaded`) until Redis returns.
    FailClosed,
}

/// Redis for shared quotas and broadcasts.
#[derive(Clone)]
pub struct RedisSettings {
    pub url: String,
    pub key_prefix: String,
    pub replicas: u32,
    pub fallback: RedisFallback,
    pub timeout: Duration,
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("key_prefix", &self.key_prefix)
            .field("replicas", &self.replicas)
            .field("fallback", &self.fallback)
            .finish()
    }
}

/// The validated, immutable configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: String,
    /// Where the config was read from, so it can be read again (a reload).
    pub origin: Source,
    /// The connectors, consumers and grants files as read, by role: ("connectors", text).
    pub files: Vec<(String, String)>,
    /// Where the registry of configuration versions is kept.
    pub registry_path: PathBuf,
    /// The audit trail and registry in PostgreSQL instead of SQLite files.
    pub postgres: Option<PgStorage>,
    /// Quotas shared through Redis, and change broadcasts.
    pub redis: Option<RedisSettings>,
    pub instance_id: String,
    pub lookup_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// TLS on the lookup listener; `None` serves plaintext.
    pub tls: Option<TlsConfig>,
    pub audit: AuditConfig,
    /// On SIGTERM, how long to stay up, not ready, before closing the lookup listener.
    pub drain_delay: Duration,
    /// Span export, when configured.
    pub otel: Option<crate::telemetry::OtelSettings>,
    pub log_json: bool,
    pub log_level: String,
    pub max_batch_items: usize,
    pub batch_concurrency: usize,
    pub context_rules: ContextRules,
    /// Admin credentials with roles (operator tokens included, unnamed).
    pub admin_credentials: Vec<AdminCredential>,
    /// The admin listener speaks TLS (with the `[tls]` certificate).
    pub admin_tls: bool,
    pub datasets: Vec<Arc<Dataset>>,
    pub connectors: Vec<ConnectorConfig>,
    pub consumers: Vec<Consumer>,
    pub grants: Vec<Grant>,
}

/// Collects errors for one file.
struct Errors<'a> {
    file: String,
    all: &'a mut Vec<ConfigError>,
}

impl Errors<'_> {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.all.push(ConfigError {
            file: self.file.clone(),
            key: key.into(),
            message: message.into(),
        });
    }
}

/// Parses TOML into `T`, reporting unknown keys (all of them) and the first type error with
/// its key path.
fn parse_toml<T: DeserializeOwned + Default>(
    text: &str,
    errors: &mut Errors<'_>,
    overrides: &BTreeMap<String, (String, toml::Value)>,
) -> T {
    let mut table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            let where_ = e
                .span()
                .map(|s| format!("line {}", text[..s.start].lines().count().max(1)));
            errors.add(where_.unwrap_or_default(), e.message().to_owned());
            return T::default();
        }
    };
    for (path, (var, value)) in overrides {
        let segments: Vec<&str> = path.split('.').collect();
        if !set_path(&mut table, &segments, value.clone()) {
            errors.add(
                path.clone(),
                format!("{var} overrides a value that is not a section"),
            );
        }
    }
    let mut unknown = Vec::new();
    let mut track = |p: serde_ignored::Path<'_>| unknown.push(p.to_string());
    let de = serde_ignored::Deserializer::new(toml::Value::Table(table), &mut track);
    let parsed = serde_path_to_error::deserialize::<_, T>(de);
    for key in unknown.iter().map(|k| bracket_indices(k)) {
        let from_env = overrides
            .get(&key)
            .map(|(var, _)| format!(" (set by {var})"))
            .unwrap_or_default();
        errors.add(key, format!("unknown key{from_env}"));
    }
    match parsed {
        Ok(v) => v,
        Err(e) => {
            errors.add(e.path().to_string(), e.inner().message().to_owned());
            T::default()
        }
    }
}

/// `connector.1.name` → `connector[1].name`, the form validation errors use.
fn bracket_indices(path: &str) -> String {
    let mut out = String::new();
    for seg in path.split('.') {
        if !out.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// Sets `value` at `path`, creating sections; false when a segment is not a section.
fn set_path(table: &mut toml::Table, path: &[&str], value: toml::Value) -> bool {
    match path {
        [] => false,
        [last] => {
            table.insert((*last).to_owned(), value);
            true
        }
        [first, rest @ ..] => match table
            .entry((*first).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(t) => set_path(t, rest, value),
            _ => false,
        },
    }
}

/// `LIENTHONG_A__B=v` → ("a.b", value). Variables without `__` (like `LIENTHONG_CONFIG`) are
/// not overrides.
fn env_overrides(env: &BTreeMap<String, String>) -> BTreeMap<String, (String, toml::Value)> {
    env.iter()
        .filter_map(|(name, raw)| {
            let rest = name.strip_prefix(ENV_PREFIX)?;
            if !rest.contains("__") || rest.starts_with("TEST_") {
                return None;
            }
            let path = rest
                .split("__")
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
                .join(".");
            let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.clone()));
            Some((path, (name.clone(), value)))
        })
        .collect()
}

fn sha256_hex(s: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(s.trim()).ok()?;
    bytes.try_into().ok()
}

impl Config {
    /// Loads, overrides from `env` (pass `std::env::vars()` collected, or a map in tests),
    /// and validates.
    pub fn load(source: &Source, env: &BTreeMap<String, String>) -> Result<Config, ConfigErrors> {
        let mut all = Vec::new();
        let main_name = source.main_name();
        let mut errors = Errors {
            file: main_name.clone(),
            all: &mut all,
        };
        let main: RawGateway = match source.read(&main_name) {
            Ok(text) => parse_toml(&text, &mut errors, &env_overrides(env)),
            Err(e) => {
                errors.add("", e);
                return Err(ConfigErrors(all));
            }
        };
        let none = BTreeMap::new();
        let mut sub = |key: &str, path: &Option<String>| -> Option<(String, String)> {
            let Some(rel) = path else {
                all.push(ConfigError {
                    file: main_name.clone(),
                    key: key.into(),
                    message: "missing: name the file".into(),
                });
                return None;
            };
            let name = source.resolve(rel);
            let text = match source {
                Source::Versioned { files, .. } => files
                    .iter()
                    .find(|(role, _)| role == key)
                    .map(|(_, t)| Ok(t.clone()))
                    .unwrap_or_else(|| source.read(&name)),
                _ => source.read(&name),
            };
            match text {
                Ok(text) => Some((name, text)),
                Err(e) => {
                    all.push(ConfigError {
                        file: name,
                        key: String::new(),
                        message: e,
                    });
                    None
                }
            }
        };
        // The datasets file is optional; a registry version may hold one the main file does
        // not name (datasets registered over the admin API).
        let datasets_file = match (&main.datasets, source) {
            (None, Source::Versioned { files, .. }) => files
                .iter()
                .find(|(role, _)| role == "datasets")
                .map(|(_, t)| (source.resolve("datasets.toml (registry)"), t.clone())),
            (None, _) => None,
            (Some(_), _) => sub("datasets", &main.datasets),
        };
        let connectors_file = sub("connectors", &main.connectors);
        let consumers_file = sub("consumers", &main.consumers);
        let grants_file = sub("grants", &main.grants);
        let mut parsed_connectors = RawConnectors::default();
        let mut parsed_consumers = RawConsumers::default();
        let mut parsed_grants = RawGrants::default();
        let mut parsed_datasets = RawDatasets::default();
        if let Some((name, text)) = &datasets_file {
            parsed_datasets = parse_toml(
                text,
                &mut Errors {
                    file: name.clone(),
                    all: &mut all,
                },
                &none,
            );
        }
        let mut names = (String::new(), String::new(), String::new());
        if let Some((name, text)) = &connectors_file {
            parsed_connectors = parse_toml(
                text,
                &mut Errors {
                    file: name.clone(),
                    all: &mut all,
                },
                &none,
            );
            names.0 = name.clone();
        }
        if let Some((name, text)) = &consumers_file {
            parsed_consumers = parse_toml(
                text,
                &mut Errors {
                    file: name.clone(),
                    all: &mut all,
                },
                &none,
            );
            names.1 = name.clone();
        }
        if let Some((name, text)) = &grants_file {
            parsed_grants = parse_toml(
                text,
                &mut Errors {
                    file: name.clone(),
                    all: &mut all,
                },
                &none,
            );
            names.2 = name.clone();
        }
        let datasets_name = datasets_file
            .as_ref()
            .map(|(n, _)| n.clone())
            .unwrap_or_default();
        let config = validate(
            source,
            main_name,
            main,
            (parsed_datasets, datasets_name),
            parsed_connectors,
            parsed_consumers,
            parsed_grants,
            &names,
            env,
            &mut all,
        );
        if all.is_empty() {
            let files = [
                ("datasets", datasets_file),
                ("connectors", connectors_file),
                ("consumers", consumers_file),
                ("grants", grants_file),
            ]
            .into_iter()
            .filter_map(|(role, f)| Some((role.to_owned(), f?.1)))
            .collect();
            Ok(Config { files, ..config })
        } else {
            Err(ConfigErrors(all))
        }
    }

    pub fn dataset(&self, name: &str) -> Option<&Arc<Dataset>> {
        self.datasets.iter().find(|d| d.name == name)
    }
}

#[allow(clippy::too_many_arguments)]
fn validate(
    source: &Source,
    main_name: String,
    main: RawGateway,
    (raw_datasets, datasets_name): (RawDatasets, String),
    connectors: RawConnectors,
    consumers: RawConsumers,
    grants: RawGrants,
    (connectors_name, consumers_name, grants_name): &(String, String, String),
    env: &BTreeMap<String, String>,
    all: &mut Vec<ConfigError>,
) -> Config {
    let mut e = Errors {
        file: main_name.clone(),
        all,
    };
    let addr = |e: &mut Errors<'_>, key: &str, v: &str| {
        v.parse::<SocketAddr>().unwrap_or_else(|_| {
            e.add(key, format!("{v:?} is not an address like 127.0.0.1:8080"));
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    };
    let lookup_addr = addr(&mut e, "listen.lookup", &main.listen.lookup);
    let admin_addr = addr(&mut e, "listen.admin", &main.listen.admin);
    let tls = main
        .tls
        .as_ref()
        .and_then(|t| tls_config(source, t, &mut e));
    let tls_has_client_ca = main.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    let audit = audit_config(source, &main.audit, env, &mut e);
    let t = &main.telemetry;
    if !(0.0..=1.0).contains(&t.sampling_ratio) {
        e.add("telemetry.sampling_ratio", "must be between 0 and 1");
    }
    let url_like = t.otlp_endpoint.is_empty()
        || t.otlp_endpoint.starts_with("http://")
        || t.otlp_endpoint.starts_with("https://");
    if !url_like {
        e.add(
            "telemetry.otlp_endpoint",
            format!(
                "{:?} is not a URL like http://127.0.0.1:4317",
                t.otlp_endpoint
            ),
        );
    }
    let otel = (!t.otlp_endpoint.is_empty()).then(|| crate::telemetry::OtelSettings {
        endpoint: t.otlp_endpoint.clone(),
        sampling_ratio: t.sampling_ratio,
        service_name: t.service_name.clone(),
    });
    if tls.is_none()
        && main.tls.is_none()
        && !lookup_addr.ip().is_loopback()
        && !main.listen.allow_plaintext
    {
        e.add(
            "listen.lookup",
            format!(
                "{lookup_addr} is reachable from other hosts but [tls] is not configured: \
                 configure [tls], or set listen.allow_plaintext = true when a proxy in front \
                 terminates TLS"
            ),
        );
    }
    let log_json = match main.log.format.as_str() {
        "json" => true,
        "text" => false,
        other => {
            e.add(
                "log.format",
                format!("{other:?} is not \"text\" or \"json\""),
            );
            false
        }
    };
    if tracing_subscriber::EnvFilter::try_new(&main.log.level).is_err() {
        e.add(
            "log.level",
            format!("{:?} is not a log filter (e.g. \"info\")", main.log.level),
        );
    }
    if main.limits.max_batch_items == 0 {
        e.add("limits.max_batch_items", "must be at least 1");
    }
    if main.limits.batch_concurrency == 0 {
        e.add("limits.batch_concurrency", "must be at least 1");
    }
    let mut rules = ContextRules::default();
    for (key, slot, value) in [
        (
            "context.procedure_code_pattern",
            &mut rules.procedure_code,
            &main.context.procedure_code_pattern,
        ),
        (
            "context.dossier_id_pattern",
            &mut rules.dossier_id,
            &main.context.dossier_id_pattern,
        ),
        (
            "context.officer_id_pattern",
            &mut rules.officer_id,
            &main.context.officer_id_pattern,
        ),
        (
            "context.agency_code_pattern",
            &mut rules.agency_code,
            &main.context.agency_code_pattern,
        ),
    ] {
        if let Some(p) = value {
            match Regex::new(p) {
                Ok(re) => *slot = re,
                Err(err) => e.add(key, format!("not a regular expression: {err}")),
            }
        }
    }
    let mut operator_token_hashes = Vec::new();
    for (i, h) in main.admin.operator_token_sha256.iter().enumerate() {
        match sha256_hex(h) {
            Some(b) => operator_token_hashes.push(b),
            None => e.add(
                format!("admin.operator_token_sha256[{i}]"),
                "must be 64 hex digits (a SHA-256)",
            ),
        }
    }
    let mut admin_credentials: Vec<AdminCredential> = operator_token_hashes
        .iter()
        .map(|hash| AdminCredential {
            name: format!("operator:{}", hex::encode(&hash[..4])),
            hash: Some(*hash),
            certificate_names: Vec::new(),
            role: AdminRole::Operator,
        })
        .collect();
    let admin_role =
        |e: &mut Errors<'_>, key: &str, role: &str, agency: &Option<String>| match (role, agency) {
            ("operator", None) => Some(AdminRole::Operator),
            ("auditor", None) => Some(AdminRole::Auditor),
            ("provider", Some(agency)) if !agency.trim().is_empty() => Some(AdminRole::Provider {
                agency: agency.trim().to_owned(),
            }),
            ("provider", _) => {
                e.add(
                    format!("{key}.agency"),
                    "a provider credential names its agency",
                );
                None
            }
            ("operator" | "auditor", Some(_)) => {
                e.add(
                    format!("{key}.agency"),
                    "only provider credentials name an agency",
                );
                None
            }
            (other, _) => {
                e.add(
                    format!("{key}.role"),
                    format!("{other:?} is not \"operator\", \"auditor\" or \"provider\""),
                );
                None
            }
        };
    for (i, t) in main.admin.token.iter().enumerate() {
        let key = format!("admin.token[{i}]");
        let Some(hash) = sha256_hex(&t.sha256) else {
            e.add(format!("{key}.sha256"), "must be 64 hex digits (a SHA-256)");
            continue;
        };
        if t.name.trim().is_empty() {
            e.add(format!("{key}.name"), "must name who holds the token");
        }
        let Some(role) = admin_role(&mut e, &key, &t.role, &t.agency) else {
            continue;
        };
        if admin_credentials.iter().any(|a| a.hash == Some(hash)) {
            e.add(format!("{key}.sha256"), "this token is already configured");
            continue;
        }
        admin_credentials.push(AdminCredential {
            name: t.name.trim().to_owned(),
            hash: Some(hash),
            certificate_names: Vec::new(),
            role,
        });
    }
    for (i, c) in main.admin.client.iter().enumerate() {
        let key = format!("admin.client[{i}]");
        if c.name.trim().is_empty() {
            e.add(format!("{key}.name"), "must name who holds the certificate");
        }
        if !main.admin.tls {
            e.add(
                format!("{key}.certificate_names"),
                "admin client certificates need admin.tls = true",
            );
        }
        let mut names = Vec::new();
        for (j, n) in c.certificate_names.iter().enumerate() {
            match tls::normalize_name(n) {
                Ok(n)
                    if admin_credentials
                        .iter()
                        .any(|a| a.certificate_names.contains(&n)) =>
                {
                    e.add(
                        format!("{key}.certificate_names[{j}]"),
                        format!("{n:?} already names another admin client"),
                    )
                }
                Ok(n) => names.push(n),
                Err(m) => e.add(format!("{key}.certificate_names[{j}]"), m),
            }
        }
        if c.certificate_names.is_empty() {
            e.add(
                format!("{key}.certificate_names"),
                "name at least one, e.g. \"CN=ops-alice\"",
            );
        }
        let Some(role) = admin_role(&mut e, &key, &c.role, &c.agency) else {
            continue;
        };
        admin_credentials.push(AdminCredential {
            name: c.name.trim().to_owned(),
            hash: None,
            certificate_names: names,
            role,
        });
    }
    if !main.admin.client.is_empty() && !tls_has_client_ca {
        e.add(
            "admin.client",
            "admin client certificates need tls.client_ca to verify them",
        );
    }
    if main.admin.tls && main.tls.is_none() {
        e.add(
            "admin.tls",
            "needs a [tls] section (the admin listener uses its certificate)",
        );
    }
    let postgres = match (&main.storage.postgres_url, &main.storage.postgres_url_env) {
        (None, None) => None,
        (url, var) => {
            let url = secret(&mut e, "storage.postgres_url", url, var, env);
            if !url.is_empty()
                && !url.starts_with("postgres://")
                && !url.starts_with("postgresql://")
            {
                e.add(
                    "storage.postgres_url",
                    "must be a URL like postgres://user@host:5432/db",
                );
            }
            if !crate::audit::postgres::valid_schema(&main.storage.schema) {
                e.add(
                    "storage.schema",
                    format!(
                        "{:?} is not a schema name (lower case, digits, _)",
                        main.storage.schema
                    ),
                );
            }
            Some(PgStorage {
                url,
                schema: main.storage.schema.clone(),
            })
        }
    };
    let r = &main.redis;
    let redis = match (&r.url, &r.url_env) {
        (None, None) => None,
        (url, var) => {
            let url = secret(&mut e, "redis.url", url, var, env);
            if !url.is_empty() && !url.starts_with("redis://") && !url.starts_with("rediss://") {
                e.add("redis.url", "must be a URL like redis://host:6379/0");
            }
            if r.replicas == 0 {
                e.add("redis.replicas", "must be at least 1");
            }
            let fallback = match r.on_unavailable.as_str() {
                "local-share" => RedisFallback::LocalShare,
                "fail-closed" => RedisFallback::FailClosed,
                other => {
                    e.add(
                        "redis.on_unavailable",
                        format!("{other:?} is not \"local-share\" or \"fail-closed\""),
                    );
                    RedisFallback::LocalShare
                }
            };
            if r.timeout_ms == 0 {
                e.add("redis.timeout_ms", "must be above 0");
            }
            Some(RedisSettings {
                url,
                key_prefix: r.key_prefix.clone(),
                replicas: r.replicas.max(1),
                fallback,
                timeout: Duration::from_millis(r.timeout_ms.max(1)),
            })
        }
    };
    let instance_id = main
        .instance_id
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "lienthong".into());

    let mut e = Errors {
        file: datasets_name,
        all: e.all,
    };
    let datasets: Vec<Arc<Dataset>> = datasets(raw_datasets, &mut e)
        .into_iter()
        .map(Arc::new)
        .collect();
    let mut e = Errors {
        file: connectors_name.clone(),
        all: e.all,
    };
    let mut seen_datasets = HashSet::new();
    let mut seen_names = HashSet::new();
    let connectors: Vec<ConnectorConfig> = connectors
        .connector
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let key = format!("connector[{i}]");
            if !seen_names.insert(c.name.clone()) {
                e.add(
                    format!("{key}.name"),
                    format!("connector {:?} is declared twice", c.name),
                );
            }
            let dataset = datasets.iter().find(|d| d.name == c.dataset);
            match dataset {
                None => e.add(
                    format!("{key}.dataset"),
                    format!(
                        "{:?} is not a dataset; known: {}",
                        c.dataset,
                        datasets
                            .iter()
                            .map(|d| d.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
                Some(d) if !seen_datasets.insert(d.name.clone()) => {
                    e.add(
                        format!("{key}.dataset"),
                        format!("{} already has a connector", d.name),
                    );
                }
                Some(_) => {}
            }
            let mut connector = connector(&key, c, env, &mut e);
            if let (Some(c), Some(d)) = (&mut connector, dataset) {
                // A connector is rebuilt when its dataset's schema or key rule changes.
                c.fingerprint = format!("{}|{}", c.fingerprint, d.schema_fingerprint());
                check_mapping_fields(&format!("{key}.mapping"), &c.mapping, &d.record, &mut e);
                if !c.mapping.fields().any(|f| f == d.key_field) {
                    e.add(
                        format!("{key}.mapping"),
                        format!("must map the key field {:?}", d.key_field),
                    );
                }
            }
            connector
        })
        .collect();
    for d in &datasets {
        if !seen_datasets.contains(&d.name) {
            e.add(
                "connector",
                format!("no connector serves dataset {}", d.name),
            );
        }
    }

    let mut e = Errors {
        file: consumers_name.clone(),
        all: e.all,
    };
    let mut consumer_ids = HashSet::new();
    let mut cert_owners = std::collections::HashMap::new();
    let client_cas = tls_has_client_ca;
    let consumers: Vec<Consumer> = consumers
        .consumer
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let key = format!("consumer[{i}]");
            if c.id.trim().is_empty() {
                e.add(format!("{key}.id"), "must not be empty");
            } else if !consumer_ids.insert(c.id.clone()) {
                e.add(
                    format!("{key}.id"),
                    format!("consumer {:?} is declared twice", c.id),
                );
            }
            let mut key_hashes = Vec::new();
            for (j, h) in c.api_key_sha256.iter().enumerate() {
                match sha256_hex(h) {
                    Some(b) => key_hashes.push(b),
                    None => e.add(
                        format!("{key}.api_key_sha256[{j}]"),
                        "must be 64 hex digits (a SHA-256 of the key)",
                    ),
                }
            }
            let mut certificate_names = Vec::new();
            for (j, n) in c.certificate_names.iter().enumerate() {
                let at = format!("{key}.certificate_names[{j}]");
                match tls::normalize_name(n) {
                    Err(m) => e.add(at, m),
                    Ok(n) => {
                        if !client_cas {
                            e.add(
                                at.clone(),
                                "no client certificate can be presented: [tls] client_ca is not configured",
                            );
                        }
                        if let Some(other) = cert_owners.insert(n.clone(), c.id.clone())
                            && other != c.id
                        {
                            e.add(at, format!("{n} already identifies consumer {other:?}"));
                        }
                        certificate_names.push(n);
                    }
                }
            }
            let quota = c.quota.as_deref().and_then(|q| {
                QuotaSpec::parse(q)
                    .map_err(|m| e.add(format!("{key}.quota"), m))
                    .ok()
            });
            Consumer {
                id: c.id,
                name: c.name,
                key_hashes,
                certificate_names,
                quota,
            }
        })
        .collect();

    let mut e = Errors {
        file: grants_name.clone(),
        all: e.all,
    };
    let grants = grants
        .grant
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            let key = format!("grant[{i}]");
            if !consumer_ids.contains(&g.consumer) {
                e.add(
                    format!("{key}.consumer"),
                    format!("{:?} is not a declared consumer", g.consumer),
                );
            }
            let dataset = datasets.iter().find(|d| d.name == g.dataset);
            if dataset.is_none() {
                e.add(
                    format!("{key}.dataset"),
                    format!("{:?} is not a dataset", g.dataset),
                );
            }
            if g.procedures.is_empty() {
                e.add(
                    format!("{key}.procedures"),
                    "list at least one procedure code (or prefix ending in *)",
                );
            }
            let procedures = g
                .procedures
                .iter()
                .map(|p| match p.strip_suffix('*') {
                    Some(prefix) => ProcedurePattern::Prefix(prefix.to_owned()),
                    None => ProcedurePattern::Exact(p.clone()),
                })
                .collect();
            let fields = match dataset {
                None => Vec::new(),
                Some(d) if g.fields.iter().any(|f| f == "*") => d.fields().collect(),
                Some(d) => {
                    for f in &g.fields {
                        if !d.has_field(f) {
                            e.add(
                                format!("{key}.fields"),
                                format!("{f:?} is not a field of {}", d.name),
                            );
                        }
                    }
                    if g.fields.is_empty() {
                        e.add(
                            format!("{key}.fields"),
                            "list the fields granted, or [\"*\"] for all",
                        );
                    }
                    d.fields().filter(|f| g.fields.contains(f)).collect()
                }
            };
            let modes = if g.modes.is_empty() {
                vec![Mode::Fetch]
            } else {
                g.modes
                    .iter()
                    .filter_map(|m| match m.as_str() {
                        "fetch" => Some(Mode::Fetch),
                        "verify" => Some(Mode::Verify),
                        other => {
                            e.add(
                                format!("{key}.modes"),
                                format!("{other:?} is not \"fetch\" or \"verify\""),
                            );
                            None
                        }
                    })
                    .collect()
            };
            let mut date = |field: &str, value: &Option<String>| {
                value.as_deref().and_then(|v| {
                    let parsed = Date::parse_iso(v);
                    if parsed.is_none() {
                        e.add(
                            format!("{key}.{field}"),
                            format!("{v:?} is not a date (yyyy-mm-dd)"),
                        );
                    }
                    parsed
                })
            };
            let valid_from = date("valid_from", &g.valid_from);
            let valid_until = date("valid_until", &g.valid_until);
            if let (Some(from), Some(until)) = (valid_from, valid_until)
                && until < from
            {
                e.add(format!("{key}.valid_until"), "is before valid_from");
            }
            let quota = g.quota.as_deref().and_then(|q| {
                QuotaSpec::parse(q)
                    .map_err(|m| e.add(format!("{key}.quota"), m))
                    .ok()
            });
            Grant {
                quota,
                allow_cache_bypass: g.allow_cache_bypass,
                disabled: g.disabled,
                valid_from,
                valid_until,
                modes,
                consumer: g.consumer,
                dataset: g.dataset,
                procedures,
                fields,
                legal_basis: g.legal_basis,
            }
        })
        .collect();

    Config {
        files: Vec::new(),
        registry_path: PathBuf::from(source.resolve_disk(&main.registry.path)),
        postgres,
        redis,
        origin: source.clone(),
        source: main_name,
        instance_id,
        lookup_addr,
        admin_addr,
        tls,
        audit,
        drain_delay: Duration::from_millis(main.listen.drain_delay_ms),
        otel,
        log_json,
        log_level: main.log.level,
        max_batch_items: main.limits.max_batch_items,
        batch_concurrency: main.limits.batch_concurrency,
        context_rules: rules,
        admin_credentials,
        admin_tls: main.admin.tls,
        datasets,
        connectors,
        consumers,
        grants,
    }
}

fn audit_config(
    source: &Source,
    raw: &RawAudit,
    env: &BTreeMap<String, String>,
    e: &mut Errors<'_>,
) -> AuditConfig {
    use base64::Engine;
    let durability = match raw.durability.as_str() {
        "sync" => Durability::Sync,
        "async" => Durability::Async,
        other => {
            e.add(
                "audit.durability",
                format!("{other:?} is not \"sync\" or \"async\""),
            );
            Durability::Sync
        }
    };
    let fail_open = match raw.on_store_failure.as_str() {
        "fail-closed" => false,
        "fail-open" => true,
        other => {
            e.add(
                "audit.on_store_failure",
                format!("{other:?} is not \"fail-closed\" or \"fail-open\""),
            );
            false
        }
    };
    for (key, value) in [
        ("audit.queue_capacity", raw.queue_capacity as u64),
        ("audit.max_batch", raw.max_batch as u64),
        ("audit.checkpoint_every", raw.checkpoint_every),
        ("audit.checkpoint_interval_s", raw.checkpoint_interval_s),
    ] {
        if value == 0 {
            e.add(key, "must be at least 1");
        }
    }
    let mut key_bytes =
        |name: &str, value: &Option<String>, var: &Option<String>, len: Option<usize>| {
            if value.is_none() && var.is_none() {
                e.add(
                    format!("audit.{name}"),
                    format!("missing: set audit.{name} (base64) or audit.{name}_env"),
                );
                return Vec::new();
            }
            let text = secret(e, &format!("audit.{name}"), value, var, env);
            match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
                Ok(b) if len.is_none_or(|n| b.len() == n) && b.len() >= 16 => b,
                Ok(b) => {
                    e.add(
                        format!("audit.{name}"),
                        format!(
                            "decodes to {} bytes; {}",
                            b.len(),
                            len.map(|n| format!("it must be {n}"))
                                .unwrap_or_else(|| "use at least 16 (32 recommended)".into())
                        ),
                    );
                    Vec::new()
                }
                Err(_) if text.is_empty() => Vec::new(),
                Err(err) => {
                    e.add(format!("audit.{name}"), format!("not base64: {err}"));
                    Vec::new()
                }
            }
        };
    let subject_key = key_bytes("subject_key", &raw.subject_key, &raw.subject_key_env, None);
    let signing_seed = key_bytes(
        "signing_key",
        &raw.signing_key,
        &raw.signing_key_env,
        Some(32),
    );
    let mut verify_keys = HashMap::new();
    for (id, public) in &raw.verify_keys {
        match base64::engine::general_purpose::STANDARD.decode(public.trim()) {
            Ok(b) if b.len() == 32 => {
                verify_keys.insert(id.clone(), b);
            }
            _ => e.add(
                format!("audit.verify_keys.{id}"),
                "must be an ed25519 public key: 32 bytes, base64",
            ),
        }
    }
    if let Ok(signer) = Signer::from_seed(&raw.signing_key_id, &signing_seed) {
        verify_keys.insert(raw.signing_key_id.clone(), signer.public_key());
    }
    for (key, id) in [
        ("audit.subject_key_id", &raw.subject_key_id),
        ("audit.signing_key_id", &raw.signing_key_id),
    ] {
        if id.is_empty() || id.contains(':') {
            e.add(key, "must be a short name without ':' (e.g. \"k1\")");
        }
    }
    AuditConfig {
        path: PathBuf::from(source.resolve_disk(&raw.path)),
        fsync: raw.fsync,
        writer: WriterSettings {
            durability,
            fail_open,
            queue_capacity: raw.queue_capacity,
            max_batch: raw.max_batch,
            checkpoint_every: raw.checkpoint_every,
            checkpoint_interval: Duration::from_secs(raw.checkpoint_interval_s),
        },
        retention: (raw.retention_days > 0)
            .then(|| Duration::from_secs(raw.retention_days * 86_400)),
        archive_dir: PathBuf::from(source.resolve_disk(&raw.archive_dir)),
        subject_key_id: raw.subject_key_id.clone(),
        subject_key,
        signing_key_id: raw.signing_key_id.clone(),
        signing_seed,
        verify_keys,
    }
}

/// A connector's settings, hashed so that writing the same settings differently (keys in
/// another order, as a file rewritten by the admin API has them) gives the same print.
/// The built-in datasets, changed by the datasets file (switched off), and the datasets it
/// registers, each with a record type built from its field schema.
fn datasets(raw: RawDatasets, e: &mut Errors<'_>) -> Vec<Dataset> {
    use crate::domain::dataset::{FIELD_TYPES, FieldSpec, KeyKind, KeyRule, build_record};
    static NAME: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new("^[a-z][a-z0-9_]{0,39}\\.[a-z][a-z0-9_]{0,39}$").expect("valid")
    });
    static FIELD: LazyLock<Regex> =
        LazyLock::new(|| Regex::new("^[a-z][a-z0-9_]{0,63}$").expect("valid"));
    let mut all = builtin();
    let mut pool = descriptors().clone();
    let mut seen = HashSet::new();
    for (i, d) in raw.dataset.into_iter().enumerate() {
        let key = format!("dataset[{i}]");
        if !seen.insert(d.name.clone()) {
            e.add(
                format!("{key}.name"),
                format!("{:?} is declared twice", d.name),
            );
            continue;
        }
        if let Some(existing) = all.iter_mut().find(|b| b.builtin && b.name == d.name) {
            // A built-in dataset may only be switched off (its schema is compiled in).
            let changes_more = d.key.is_some()
                || d.key_field.is_some()
                || !d.field.is_empty()
                || !d.description.is_empty();
            if changes_more {
                e.add(
                    key,
                    format!("{} is built in: only `disabled` may be set for it", d.name),
                );
            }
            existing.disabled = d.disabled;
            continue;
        }
        if !NAME.is_match(&d.name) {
            e.add(
                format!("{key}.name"),
                format!(
                    "{:?} is not a dataset name like \"tax.status\" (owner agency, a dot, the record; lower case, digits, _)",
                    d.name
                ),
            );
            continue;
        }
        let owner = d.name.split('.').next().unwrap_or_default().to_owned();
        let mut fields = Vec::new();
        let mut field_names = HashSet::new();
        for (j, f) in d.field.iter().enumerate() {
            let fkey = format!("{key}.field[{j}]");
            if !FIELD.is_match(&f.name) {
                e.add(
                    format!("{fkey}.name"),
                    format!("{:?} is not a field name (lower case, digits, _)", f.name),
                );
                continue;
            }
            if !field_names.insert(f.name.clone()) {
                e.add(
                    format!("{fkey}.name"),
                    format!("{:?} is declared twice", f.name),
                );
                continue;
            }
            let Some((_, kind)) = FIELD_TYPES.iter().find(|(n, _)| *n == f.kind) else {
                e.add(
                    format!("{fkey}.type"),
                    format!(
                        "{:?} is not a field type; use one of: {}",
                        f.kind,
                        FIELD_TYPES
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                continue;
            };
            fields.push(FieldSpec {
                name: f.name.clone(),
                kind: *kind,
                repeated: f.repeated,
            });
        }
        if d.field.is_empty() {
            e.add(format!("{key}.field"), "a dataset needs at least one field");
        }
        let key_field = d.key_field.clone().unwrap_or_default();
        match fields.iter().find(|f| f.name == key_field) {
            _ if key_field.is_empty() => e.add(
                format!("{key}.key_field"),
                "missing: name the field that holds the key",
            ),
            None if field_names.contains(&key_field) => {}
            None => e.add(
                format!("{key}.key_field"),
                format!("{key_field:?} is not one of the dataset's fields"),
            ),
            Some(f) if f.repeated || f.kind != FIELD_TYPES[0].1 => e.add(
                format!("{key}.key_field"),
                format!("{key_field:?} must be a single string field"),
            ),
            Some(_) => {}
        }
        let rule = match d
            .key
            .as_ref()
            .map(|k| (k.builtin.as_deref(), k.pattern.as_deref()))
        {
            Some((Some(b), None)) => match KeyKind::by_name(b) {
                Some(kind) => Some(KeyRule::Builtin(kind)),
                None => {
                    e.add(
                        format!("{key}.key.builtin"),
                        format!(
                            "{b:?} is not a built-in validator; use one of: {}",
                            KeyKind::ALL
                                .iter()
                                .map(|(n, _)| *n)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                    None
                }
            },
            Some((None, Some(p))) => match KeyRule::pattern(p) {
                Ok(rule) => Some(rule),
                Err(m) => {
                    e.add(format!("{key}.key.pattern"), m);
                    None
                }
            },
            _ => {
                e.add(
                    format!("{key}.key"),
                    "give one of: key = { builtin = \"personal_id\" } or key = { pattern = \"REGEX\" }",
                );
                None
            }
        };
        let (Some(rule), true) = (rule, fields.len() == d.field.len() && !fields.is_empty()) else {
            continue;
        };
        match build_record(&mut pool, &d.name, &fields) {
            Ok(record) => all.push(Dataset {
                name: d.name,
                key: rule,
                key_field,
                record,
                owner,
                description: d.description,
                builtin: false,
                disabled: d.disabled,
            }),
            Err(m) => e.add(key, format!("its record type cannot be built: {m}")),
        }
    }
    all
}

fn fingerprint(c: &RawConnector) -> String {
    fn sorted(v: &toml::Value) -> String {
        match v {
            toml::Value::Table(t) => {
                let inner: BTreeMap<&String, String> =
                    t.iter().map(|(k, v)| (k, sorted(v))).collect();
                format!("{inner:?}")
            }
            toml::Value::Array(a) => {
                format!("{:?}", a.iter().map(sorted).collect::<Vec<_>>())
            }
            other => format!("{other:?}"),
        }
    }
    let mapping = sorted(&toml::Value::Table(c.mapping.clone()));
    let templates = sorted(&toml::Value::Table(c.templates.clone()));
    let body = c.rest.as_ref().and_then(|r| r.body.as_ref()).map(sorted);
    let request = c
        .grpc
        .as_ref()
        .map(|g| sorted(&toml::Value::Table(g.request.clone())));
    let mut rest = RawConnector {
        mapping: toml::Table::new(),
        templates: toml::Table::new(),
        ..c.clone()
    };
    if let Some(r) = rest.rest.as_mut() {
        r.body = None;
    }
    if let Some(g) = rest.grpc.as_mut() {
        g.request = toml::Table::new();
    }
    let text = format!("{rest:?}|{mapping}|{templates}|{body:?}|{request:?}");
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()))
}

/// Reads and checks the `[tls]` files; `None` (with errors recorded) when they do not load.
fn tls_config(source: &Source, raw: &RawTls, e: &mut Errors<'_>) -> Option<TlsConfig> {
    let mut read = |key: &str, rel: &str| -> Option<Vec<u8>> {
        if rel.trim().is_empty() {
            e.add(format!("tls.{key}"), "missing: name a PEM file");
            return None;
        }
        let path = source.resolve_disk(rel);
        std::fs::read(&path)
            .map_err(|err| e.add(format!("tls.{key}"), format!("cannot read {path}: {err}")))
            .ok()
    };
    let cert = read("cert", &raw.cert);
    let key = read("key", &raw.key);
    let ca = raw.client_ca.as_deref().map(|p| read("client_ca", p));
    let client_auth = match raw.client_auth.as_deref() {
        None | Some("optional") => ClientAuth::Optional,
        Some("required") => ClientAuth::Required,
        Some(other) => {
            e.add(
                "tls.client_auth",
                format!("{other:?} is not \"optional\" or \"required\""),
            );
            ClientAuth::Optional
        }
    };
    if raw.client_auth.is_some() && raw.client_ca.is_none() {
        e.add(
            "tls.client_auth",
            "client certificates need tls.client_ca, the CA that signs them",
        );
    }
    let chain = tls::certs_from_pem(&cert?)
        .map_err(|m| e.add("tls.cert", m))
        .ok()?;
    let key = tls::key_from_pem(&key?)
        .map_err(|m| e.add("tls.key", m))
        .ok()?;
    let cas = match ca {
        None => None,
        Some(pem) => Some(
            tls::certs_from_pem(&pem?)
                .map_err(|m| e.add("tls.client_ca", m))
                .ok()?,
        ),
    };
    let client_auth = cas.as_ref().map(|_| client_auth);
    let server = tls::server_config(chain, key, cas, client_auth)
        .map_err(|m| e.add("tls", m))
        .ok()?;
    Some(TlsConfig {
        server,
        client_auth,
    })
}

/// Mapped fields must exist in the record type, at every level.
fn check_mapping_fields(
    key: &str,
    mapping: &Mapping,
    desc: &prost_reflect::MessageDescriptor,
    e: &mut Errors<'_>,
) {
    for field in mapping.fields() {
        if desc.get_field_by_name(field).is_none() {
            e.add(
                format!("{key}.{field}"),
                format!("{} has no field {field:?}", desc.full_name()),
            );
        }
    }
    for (field, nested) in mapping.nested() {
        if let Some(prost_reflect::Kind::Message(inner)) =
            desc.get_field_by_name(field).map(|f| f.kind())
        {
            check_mapping_fields(&format!("{key}.{field}"), nested, &inner, e);
        }
    }
}

fn secret(
    e: &mut Errors<'_>,
    key: &str,
    value: &Option<String>,
    var: &Option<String>,
    env: &BTreeMap<String, String>,
) -> String {
    match (value, var) {
        (Some(v), None) => v.clone(),
        (None, Some(var)) => env.get(var).cloned().unwrap_or_else(|| {
            e.add(
                format!("{key}_env"),
                format!("environment variable {var} is not set"),
            );
            String::new()
        }),
        (Some(_), Some(_)) => {
            e.add(key, format!("set either {key} or {key}_env, not both"));
            String::new()
        }
        (None, None) => {
            e.add(key, "missing");
            String::new()
        }
    }
}

fn connector(
    key: &str,
    c: RawConnector,
    env: &BTreeMap<String, String>,
    e: &mut Errors<'_>,
) -> Option<ConnectorConfig> {
    let before = e.all.len();
    let fingerprint = fingerprint(&c);
    if c.name.trim().is_empty() {
        e.add(format!("{key}.name"), "must not be empty");
    }
    let timeout = Duration::from_millis(c.timeout_ms.unwrap_or(DEFAULT_UPSTREAM_TIMEOUT_MS));
    if timeout.is_zero() {
        e.add(format!("{key}.timeout_ms"), "must be above 0");
    }
    let record_path = c.record_path.as_deref().and_then(|p| {
        Path::parse(p)
            .map_err(|m| e.add(format!("{key}.record_path"), m))
            .ok()
    });
    if c.cache.ttl_s > 0 && c.cache.capacity == 0 {
        e.add(
            format!("{key}.cache.capacity"),
            "must be at least 1 while cache.ttl_s is above 0",
        );
    }
    let health = c.health.as_ref().and_then(|h| {
        if h.probe_key.trim().is_empty() {
            e.add(
                format!("{key}.health.probe_key"),
                "missing: a key to probe with",
            );
            return None;
        }
        if h.interval_ms < 100 {
            e.add(format!("{key}.health.interval_ms"), "must be at least 100");
            return None;
        }
        Some((
            h.probe_key.trim().to_owned(),
            Duration::from_millis(h.interval_ms),
        ))
    });
    let g = &c.guard;
    if g.max_in_flight == 0 {
        e.add(format!("{key}.guard.max_in_flight"), "must be at least 1");
    }
    if g.capacity_rps > 0 && g.burst == 0 {
        e.add(
            format!("{key}.guard.burst"),
            "must be at least 1 when capacity_rps is set",
        );
    }
    for (name, v) in [
        ("retry_budget", g.retry_budget),
        ("breaker_failure_rate", g.breaker_failure_rate),
    ] {
        if !(0.0..=1.0).contains(&v) {
            e.add(format!("{key}.guard.{name}"), "must be between 0 and 1");
        }
    }
    if g.breaker_consecutive_failures == 0 || g.breaker_min_calls == 0 {
        e.add(
            format!("{key}.guard"),
            "breaker_consecutive_failures and breaker_min_calls must be at least 1",
        );
    }
    let guard = GuardSettings {
        capacity_rps: g.capacity_rps,
        burst: g.burst,
        max_in_flight: g.max_in_flight,
        max_wait: Duration::from_millis(g.max_wait_ms),
        retries: g.retries,
        retry_budget: g.retry_budget,
        backoff: Duration::from_millis(g.backoff_ms),
        breaker: BreakerSettings {
            consecutive_failures: g.breaker_consecutive_failures,
            failure_rate: g.breaker_failure_rate,
            min_calls: g.breaker_min_calls,
            window: Duration::from_secs(g.breaker_window_s.max(1)),
            open_for: Duration::from_secs(g.breaker_open_s),
        },
    };
    let cache = CacheSettings {
        ttl: Duration::from_secs(c.cache.ttl_s),
        negative_ttl: Duration::from_secs(c.cache.negative_ttl_s),
        stale_if_error: Duration::from_secs(c.cache.stale_if_error_s),
        capacity: c.cache.capacity,
    };
    let mapping = Mapping::compile(&c.mapping, &c.templates).unwrap_or_else(|m| {
        e.add(format!("{key}.mapping"), m);
        Mapping::default()
    });
    let auth = match &c.auth {
        None => UpstreamAuth::None,
        Some(a) => match a.scheme.as_str() {
            "none" => UpstreamAuth::None,
            "signed-header" => UpstreamAuth::SignedHeader {
                user: a.user.clone().unwrap_or_else(|| {
                    e.add(format!("{key}.auth.user"), "missing");
                    String::new()
                }),
                secret: secret(
                    e,
                    &format!("{key}.auth.secret"),
                    &a.secret,
                    &a.secret_env,
                    env,
                ),
                client_id: a.client_id.clone().unwrap_or_default(),
                api_key: a.api_key.clone(),
            },
            "bearer" => UpstreamAuth::Bearer {
                token: secret(e, &format!("{key}.auth.token"), &a.token, &a.token_env, env),
            },
            other => {
                e.add(
                    format!("{key}.auth.scheme"),
                    format!("{other:?} is not \"signed-header\", \"bearer\" or \"none\""),
                );
                UpstreamAuth::None
            }
        },
    };
    let http_endpoint = |e: &mut Errors<'_>| {
        if !(c.endpoint.starts_with("http://") || c.endpoint.starts_with("https://")) {
            e.add(
                format!("{key}.endpoint"),
                format!("{:?} is not an http:// or https:// URL", c.endpoint),
            );
        }
    };
    let kind = match c.kind.as_str() {
        "soap-xml" => {
            http_endpoint(e);
            let soap = c.soap.unwrap_or_default();
            if soap.operation.is_empty() || soap.namespace.is_empty() {
                e.add(format!("{key}.soap"), "needs `namespace` and `operation`");
            }
            let fields = soap
                .fields
                .iter()
                .filter_map(|(name, v)| {
                    let t = v
                        .as_str()
                        .ok_or("must be a string".to_owned())
                        .and_then(Template::parse);
                    t.map_err(|m| e.add(format!("{key}.soap.fields.{name}"), m))
                        .ok()
                        .map(|t| (name.clone(), t))
                })
                .collect();
            ConnectorKind::SoapXml {
                namespace: soap.namespace,
                operation: soap.operation,
                fields,
            }
        }
        "rest-json" => {
            http_endpoint(e);
            let rest = c.rest.unwrap_or_default();
            let post = match rest.method.as_deref().unwrap_or("GET") {
                "GET" => false,
                "POST" => true,
                other => {
                    e.add(
                        format!("{key}.rest.method"),
                        format!("{other:?} is not GET or POST"),
                    );
                    false
                }
            };
            let url = Template::parse(&c.endpoint).unwrap_or_else(|m| {
                e.add(format!("{key}.endpoint"), m);
                Template::default()
            });
            let body = rest.body.as_ref().and_then(|b| {
                let json = serde_json::to_value(b).map_err(|err| err.to_string());
                json.and_then(|j| JsonTemplate::parse(&j))
                    .map_err(|m| e.add(format!("{key}.rest.body"), m))
                    .ok()
            });
            ConnectorKind::RestJson { post, url, body }
        }
        "grpc" => {
            http_endpoint(e);
            let grpc = c.grpc.unwrap_or_default();
            let method = grpc.method.split_once('/').and_then(|(service, method)| {
                descriptors()
                    .get_service_by_name(service)?
                    .methods()
                    .find(|m| m.name() == method)
            });
            let request = serde_json::to_value(&grpc.request)
                .map_err(|err| err.to_string())
                .and_then(|j| JsonTemplate::parse(&j))
                .map_err(|m| e.add(format!("{key}.grpc.request"), m))
                .ok();
            match (method, request) {
                (Some(m), Some(request)) => ConnectorKind::Grpc {
                    method: format!("/{}", grpc.method),
                    request,
                    input: m.input(),
                    output: m.output(),
                },
                (None, _) => {
                    e.add(
                        format!("{key}.grpc.method"),
                        format!(
                            "{:?} is not a known method (package.Service/Method)",
                            grpc.method
                        ),
                    );
                    return None;
                }
                _ => return None,
            }
        }
        other => {
            e.add(
                format!("{key}.kind"),
                format!("{other:?} is not \"soap-xml\", \"rest-json\" or \"grpc\""),
            );
            return None;
        }
    };
    (e.all.len() == before).then_some(ConnectorConfig {
        name: c.name,
        dataset: c.dataset,
        kind,
        endpoint: c.endpoint,
        timeout,
        record_path,
        auth,
        mapping,
        cache,
        guard,
        critical: c.critical,
        health,
        fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &std::path::Path, files: &[(&str, &str)]) -> PathBuf {
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("write");
        }
        dir.join(files[0].0)
    }

    fn demo_files() -> Vec<(&'static str, String)> {
        DEMO_FILES
            .iter()
            .map(|(n, t)| (n.rsplit('/').next().unwrap_or(n), (*t).to_owned()))
            .collect()
    }

    #[test]
    fn the_embedded_demo_config_is_valid() {
        let config = Config::load(&Source::demo(), &BTreeMap::new()).expect("demo config");
        assert_eq!(config.connectors.len(), 3);
        assert_eq!(config.lookup_addr.port(), 8080);
        assert_eq!(config.admin_addr.port(), 9090);
        let demo = &config.consumers[0];
        assert_eq!(demo.id, "demo-onestop");
        assert_eq!(
            demo.key_hashes[0],
            <[u8; 32]>::from(sha2::Sha256::digest(b"demo-onestop-key"))
        );
    }

    #[test]
    fn env_overrides_apply_and_unknown_ones_are_named() {
        let env: BTreeMap<String, String> = [
            ("LIENTHONG_LISTEN__LOOKUP", "127.0.0.1:18080"),
            ("LIENTHONG_LIMITS__MAX_BATCH_ITEMS", "7"),
            ("LIENTHONG_CONFIG", "ignored.toml"),
            ("LIENTHONG_TEST_POSTGRES_URL", "ignored"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config = Config::load(&Source::demo(), &env).expect("valid");
        assert_eq!(config.lookup_addr.port(), 18080);
        assert_eq!(config.max_batch_items, 7);

        let bad: BTreeMap<String, String> =
            [("LIENTHONG_LISTEN__LOOKPU".to_owned(), "x".to_owned())]
                .into_iter()
                .collect();
        let errors = Config::load(&Source::demo(), &bad).expect_err("unknown key");
        assert_eq!(errors.0.len(), 1);
        assert_eq!(errors.0[0].key, "listen.lookpu");
        assert!(
            errors.0[0].message.contains("LIENTHONG_LISTEN__LOOKPU"),
            "{}",
            errors
        );
    }

    #[test]
    fn tls_settings_are_checked_and_plaintext_stays_on_loopback() {
        let dir = tempfile::tempdir().expect("dir");
        let mut files = demo_files();
        files[0].1 = files[0].1.replace("127.0.0.1:8080", "0.0.0.0:8080");
        files[2].1 += "certificate_names = [\"motcua-hanoi\", \"CN=motcua-hanoi\"]\n";
        let main = write(
            dir.path(),
            &files
                .iter()
                .map(|(n, t)| (*n, t.as_str()))
                .collect::<Vec<_>>(),
        );
        let errors = Config::load(&Source::File(main.clone()), &BTreeMap::new())
            .expect_err("plaintext on 0.0.0.0, bad names");
        let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "listen.lookup",
                "consumer[0].certificate_names[0]",
                "consumer[0].certificate_names[1]"
            ],
            "{errors}"
        );
        assert!(errors.0[0].message.contains("[tls]"), "{errors}");
        assert!(errors.0[2].message.contains("client_ca"), "{errors}");

        // With TLS the same address is fine; files are read relative to the main file.
        let ca = crate::certs::Authority::new("test", 1).expect("ca");
        let server = ca.server(&["localhost".into()], 1).expect("server");
        std::fs::create_dir(dir.path().join("tls")).expect("dir");
        for (name, text) in [
            ("tls/ca.pem", &ca.pem().cert_pem),
            ("tls/server.pem", &server.cert_pem),
            ("tls/server-key.pem", &server.key_pem),
        ] {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        let with_tls = |tls: &str| {
            let mut f = files.clone();
            f[0].1 += tls;
            f[2].1 = f[2].1.replace("\"motcua-hanoi\", ", "");
            let main = write(
                dir.path(),
                &f.iter().map(|(n, t)| (*n, t.as_str())).collect::<Vec<_>>(),
            );
            Config::load(&Source::File(main), &BTreeMap::new())
        };
        let config = with_tls(
            "[tls]\ncert = \"tls/server.pem\"\nkey = \"tls/server-key.pem\"\nclient_ca = \"tls/ca.pem\"\n",
        )
        .expect("valid");
        let tls = config.tls.expect("tls");
        assert_eq!(tls.client_auth, Some(ClientAuth::Optional));
        assert_eq!(config.consumers[0].certificate_names, ["CN=motcua-hanoi"]);

        // The key of another certificate, a missing file, an unknown client_auth.
        let other = ca.server(&["other".into()], 1).expect("server");
        std::fs::write(dir.path().join("tls/other-key.pem"), &other.key_pem).expect("write");
        let errors = with_tls(
            "[tls]\ncert = \"tls/server.pem\"\nkey = \"tls/other-key.pem\"\nclient_ca = \"tls/ca.pem\"\n",
        )
        .expect_err("mismatched key");
        assert_eq!(errors.0[0].key, "tls", "{errors}");
        let errors = with_tls(
            "[tls]\ncert = \"tls/missing.pem\"\nkey = \"tls/server-key.pem\"\nclient_ca = \"tls/ca.pem\"\nclient_auth = \"always\"\n",
        )
        .expect_err("missing file");
        let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
        assert!(
            keys.contains(&"tls.cert") && keys.contains(&"tls.client_auth"),
            "{errors}"
        );
    }

    #[test]
    fn every_error_is_named_with_its_file_and_key() {
        let dir = tempfile::tempdir().expect("dir");
        let mut files = demo_files();
        files[0].1 = files[0]
            .1
            .replace("[listen]", "colour = \"blue\"\n[listen]")
            .replace("lookup = \"127.0.0.1:8080\"", "lookup = \"localhost\"");
        files[1].1 = files[1]
            .1
            .replace(
                "timeout_ms = 3000\nrecord_path = \"Data\"",
                "timeout_ms = 3000\nrecord_path = \"Data\"\ntimeuot_ms = 1",
            )
            .replace(
                "short_name = \"MainInformation.SHORT_NAME\"",
                "short_nam = \"MainInformation.SHORT_NAME\"",
            )
            .replace("kind = \"grpc\"", "kind = \"corba\"");
        files[3].1 = files[3]
            .1
            .replacen(
                "fields = [\"*\"]",
                "fields = [\"full_name\", \"shoe_size\"]",
                1,
            )
            .replacen(
                "legal_basis",
                "valid_until = \"2024-02-30\"\nlegal_basis",
                1,
            );
        let refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
        let main = write(dir.path(), &refs);
        let errors = Config::load(&Source::File(main), &BTreeMap::new()).expect_err("invalid");
        let text = errors.to_string();
        for (file, key) in [
            ("gateway.toml", "colour"),
            ("gateway.toml", "listen.lookup"),
            ("connectors.toml", "connector[1].timeuot_ms"),
            ("connectors.toml", "connector[1].mapping.short_nam"),
            ("connectors.toml", "connector[2].kind"),
            ("grants.toml", "grant[0].fields"),
            ("grants.toml", "grant[0].valid_until"),
        ] {
            assert!(
                errors
                    .0
                    .iter()
                    .any(|e| e.file.ends_with(file) && e.key == key),
                "missing {file}: {key} in\n{text}"
            );
        }
    }

    #[test]
    fn a_datasets_file_registers_datasets_and_names_each_mistake() {
        let dir = tempfile::tempdir().expect("dir");
        let mut files = demo_files();
        files[0].1 = files[0]
            .1
            .replace("grants = ", "datasets = \"datasets.toml\"\ngrants = ");
        let good = r#"
[[dataset]]
name = "tax.status"
key = { pattern = "[0-9]{10}" }
key_field = "tax_code"
[[dataset.field]]
name = "tax_code"
type = "string"
[[dataset.field]]
name = "debts"
type = "int64"
repeated = true

[[dataset]]
name = "land.parcel"
disabled = true
"#;
        let connector = r#"
[[connector]]
name = "tax"
dataset = "tax.status"
kind = "rest-json"
endpoint = "http://127.0.0.1:7099/tax"
[connector.mapping]
tax_code = "code"
debts = "debts"
"#;
        files[1].1.push_str(connector);
        files.push(("datasets.toml", good.to_owned()));
        let refs: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
        let main = write(dir.path(), &refs);
        let config = Config::load(&Source::File(main.clone()), &BTreeMap::new()).expect("valid");
        let tax = config.dataset("tax.status").expect("registered");
        assert_eq!((tax.owner.as_str(), tax.builtin), ("tax", false));
        assert!(tax.key.normalize("0101234567", 2026).is_ok());
        assert!(tax.key.normalize("01012345", 2026).is_err());
        assert!(config.dataset("land.parcel").expect("built in").disabled);
        assert!(config.files.iter().any(|(role, _)| role == "datasets"));

        let bad = r#"
[[dataset]]
name = "Tax Status"
key = { pattern = "[0-9]{10}" }
key_field = "tax_code"
[[dataset.field]]
name = "tax_code"
type = "string"

[[dataset]]
name = "tax.status"
key = { pattern = "(" }
key_field = "debts"
[[dataset.field]]
name = "tax_code"
type = "text"
[[dataset.field]]
name = "debts"
type = "int64"

[[dataset]]
name = "land.parcel"
key_field = "parcel_id"

[[dataset]]
name = "tax.other"
key_field = "code"
[[dataset.field]]
name = "code"
type = "string"
"#;
        std::fs::write(dir.path().join("datasets.toml"), bad).expect("write");
        let errors = Config::load(&Source::File(main), &BTreeMap::new()).expect_err("invalid");
        let text = errors.to_string();
        for key in [
            "dataset[0].name",
            "dataset[1].key.pattern",
            "dataset[1].field[0].type",
            "dataset[1].key_field",
            "dataset[2]",
            "dataset[3].key",
        ] {
            assert!(
                errors
                    .0
                    .iter()
                    .any(|e| e.file.ends_with("datasets.toml") && e.key == key),
                "missing datasets.toml: {key} in\n{text}"
            );
        }
    }
}
