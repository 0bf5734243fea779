//! Plain settings, a leaf of the module map: the TOML files as written (`raw`), with
//! `LIENTHONG_<SECTION>__<KEY>` environment overrides applied and unknown keys reported, and
//! the values that need no runtime type checked for shape. Each owner builds its runtime
//! form from its own section (connectors in `upstream::spec`, consumers and grants in
//! `layers::policy`, TLS in `transport::tls`, the audit keys in `audit::settings`), adding
//! its mistakes to the same [`Errors`], so that one run names every error with its file and
//! key; `app::build` calls them in turn.

mod parse;
pub mod raw;
pub mod sealed;
mod source;

use parse::{env_overrides, parse_toml};
use raw::*;
pub use source::{DEMO_FILES, ReadError, Source};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
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

/// Collects errors for one file.
pub struct Errors<'a> {
    pub file: String,
    pub all: &'a mut Vec<ConfigError>,
}

impl Errors<'_> {
    pub fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.all.push(ConfigError {
            file: self.file.clone(),
            key: key.into(),
            message: message.into(),
        });
    }
}

pub fn secret(
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

/// A secret given inline, by the name of an environment variable (`{key}_env`) or in a
/// file (`{key}_file`, relative to the main config file, its last line break dropped):
/// exactly one of the three.
pub fn secret_of(
    e: &mut Errors<'_>,
    source: &Source,
    key: &str,
    given: [&Option<String>; 3],
    env: &BTreeMap<String, String>,
) -> String {
    let [value, var, file] = given;
    match file {
        None => secret(e, key, value, var, env),
        Some(_) if value.is_some() || var.is_some() => {
            e.add(
                key,
                format!("set one of {key}, {key}_env and {key}_file, not more"),
            );
            String::new()
        }
        Some(path) => {
            let path = source.resolve_disk(path);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let text = text.strip_suffix('\n').unwrap_or(&text);
                    let text = text.strip_suffix('\r').unwrap_or(text);
                    if text.is_empty() {
                        e.add(format!("{key}_file"), format!("{path} is empty"));
                    }
                    text.to_owned()
                }
                Err(err) => {
                    e.add(format!("{key}_file"), format!("cannot read {path}: {err}"));
                    String::new()
                }
            }
        }
    }
}

/// Where spans go (OTLP over gRPC) and how many traces started here are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct OtelSettings {
    pub endpoint: String,
    /// Fraction of traces started here that are sampled; a caller's decision is followed.
    pub sampling_ratio: f64,
    pub service_name: String,
}

/// Whether a PostgreSQL schema name is safe to splice into statements: lower case, digits
/// and `_`, not starting with a digit, at most 63 bytes.
pub fn valid_schema(schema: &str) -> bool {
    !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The settings files as parsed, for their owners to build from, each with its file name
/// (empty when the file is absent).
#[derive(Debug, Default)]
pub struct Sections {
    pub gateway: RawGateway,
    pub datasets: (String, RawDatasets),
    pub connectors: (String, RawConnectors),
    pub consumers: (String, RawConsumers),
    pub grants: (String, RawGrants),
    /// The procedures catalogue (optional).
    pub procedures: (String, RawProcedures),
    /// Consumers and keys made through the admin API (the registry's accounts file).
    pub accounts: (String, RawAccounts),
}

/// The settings that need no runtime type, checked for shape.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The main file's name, for messages.
    pub source: String,
    /// Where the config was read from, so it can be read again (a reload).
    pub origin: Source,
    /// The datasets, connectors, consumers and grants files as read, by role: ("connectors", text).
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
    /// The `[tls]` section as written; `transport::tls` loads it.
    pub tls: Option<RawTls>,
    /// On SIGTERM, how long to stay up, not ready, before closing the lookup listener.
    pub drain_delay: Duration,
    /// Span export, when configured.
    pub otel: Option<OtelSettings>,
    pub log_json: bool,
    pub log_level: String,
    pub max_batch_items: usize,
    pub batch_concurrency: usize,
    /// The admin listener speaks TLS (with the `[tls]` certificate).
    pub admin_tls: bool,
}

impl Settings {
    /// Reads every file of `source`, with `env`'s overrides (pass `std::env::vars()`
    /// collected, or a map in tests), and checks the plain settings. The errors found so far
    /// come back beside the settings, so that the owners' checks can add theirs; only a main
    /// file that cannot be read at all is an error by itself.
    pub fn read(
        source: &Source,
        env: &BTreeMap<String, String>,
    ) -> Result<(Settings, Sections, Vec<ConfigError>), ConfigErrors> {
        let mut all = Vec::new();
        let main_name = source.main_name();
        let mut errors = Errors {
            file: main_name.clone(),
            all: &mut all,
        };
        let main: RawGateway = match source.read(&main_name) {
            Ok(text) => parse_toml(&text, &mut errors, &env_overrides(env)),
            Err(e) => {
                errors.add("", e.to_string());
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
                        message: e.to_string(),
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
        // The procedures catalogue is optional too.
        let procedures_file = match (&main.procedures, source) {
            (None, Source::Versioned { files, .. }) => files
                .iter()
                .find(|(role, _)| role == "procedures")
                .map(|(_, t)| (source.resolve("procedures.toml (registry)"), t.clone())),
            (None, _) => None,
            (Some(_), _) => sub("procedures", &main.procedures),
        };
        let connectors_file = sub("connectors", &main.connectors);
        let consumers_file = sub("consumers", &main.consumers);
        let grants_file = sub("grants", &main.grants);
        // The accounts file exists only in the registry (consumers and keys made through
        // the admin API).
        let accounts_file = match source {
            Source::Versioned { files, .. } => files
                .iter()
                .find(|(role, _)| role == "accounts")
                .map(|(_, t)| (source.resolve("accounts.toml (registry)"), t.clone())),
            _ => None,
        };
        let mut parsed_accounts = RawAccounts::default();
        if let Some((name, text)) = &accounts_file {
            parsed_accounts = parse_toml(
                text,
                &mut Errors {
                    file: name.clone(),
                    all: &mut all,
                },
                &none,
            );
        }
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
        let mut parsed_procedures = RawProcedures::default();
        if let Some((name, text)) = &procedures_file {
            parsed_procedures = parse_toml(
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
        let mut e = Errors {
            file: main_name.clone(),
            all: &mut all,
        };
        let addr = |e: &mut Errors<'_>, key: &str, v: &str| {
            v.parse::<SocketAddr>().unwrap_or_else(|_| {
                e.add(key, format!("{v:?} is not an address like 127.0.0.1:8080"));
                SocketAddr::from(([127, 0, 0, 1], 0))
            })
        };
        let lookup_addr = addr(&mut e, "listen.lookup", &main.listen.lookup);
        let admin_addr = addr(&mut e, "listen.admin", &main.listen.admin);
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
        let otel = (!t.otlp_endpoint.is_empty()).then(|| OtelSettings {
            endpoint: t.otlp_endpoint.clone(),
            sampling_ratio: t.sampling_ratio,
            service_name: t.service_name.clone(),
        });
        if main.tls.is_none() && !lookup_addr.ip().is_loopback() && !main.listen.allow_plaintext {
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
                if !valid_schema(&main.storage.schema) {
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
                if !url.is_empty() && !url.starts_with("redis://") && !url.starts_with("rediss://")
                {
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
            .clone()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "lienthong".into());

        let files = [
            ("datasets", &datasets_file),
            ("connectors", &connectors_file),
            ("consumers", &consumers_file),
            ("grants", &grants_file),
            ("procedures", &procedures_file),
            ("accounts", &accounts_file),
        ]
        .into_iter()
        .filter_map(|(role, f)| Some((role.to_owned(), f.as_ref()?.1.clone())))
        .collect();
        let datasets_name = datasets_file
            .as_ref()
            .map(|(n, _)| n.clone())
            .unwrap_or_default();
        let settings = Settings {
            source: main_name,
            origin: source.clone(),
            files,
            registry_path: PathBuf::from(source.resolve_disk(&main.registry.path)),
            postgres,
            redis,
            instance_id,
            lookup_addr,
            admin_addr,
            tls: main.tls.clone(),
            drain_delay: Duration::from_millis(main.listen.drain_delay_ms),
            otel,
            log_json,
            log_level: main.log.level.clone(),
            max_batch_items: main.limits.max_batch_items,
            batch_concurrency: main.limits.batch_concurrency,
            admin_tls: main.admin.tls,
        };
        let sections = Sections {
            gateway: main,
            datasets: (datasets_name, parsed_datasets),
            connectors: (names.0, parsed_connectors),
            consumers: (names.1, parsed_consumers),
            grants: (names.2, parsed_grants),
            procedures: (
                procedures_file.map(|(n, _)| n).unwrap_or_default(),
                parsed_procedures,
            ),
            accounts: (
                accounts_file.map(|(n, _)| n).unwrap_or_default(),
                parsed_accounts,
            ),
        };
        Ok((settings, sections, all))
    }
}
