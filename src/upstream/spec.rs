//! A connector as configured: its protocol, endpoint, credentials, mapping, cache policy and
//! guard, each checked and compiled from its `[[connector]]` section, with every mistake
//! named by file and key.

use super::guard::{BreakerSettings, GuardSettings};
use super::mapping::{Mapping, Path};
pub use super::soap::{Element, SoapVersion};
use super::template::{JsonTemplate, Template};
use crate::config::raw::*;
use crate::config::sealed::SealKey;
use crate::config::{Errors, Source};
use crate::domain::dataset::Dataset;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

pub use super::auth::{ConnectorTls, UpstreamAuth};

/// Protocol-specific connector settings.
#[derive(Debug, Clone)]
pub enum ConnectorKind {
    SoapXml {
        version: SoapVersion,
        namespace: String,
        operation: String,
        fields: Vec<Element>,
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

impl ConnectorKind {
    /// The key parts its request templates name (`{key.NAME}`).
    pub fn key_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self {
            ConnectorKind::SoapXml { fields, .. } => {
                for f in fields {
                    f.key_names(&mut out);
                }
            }
            ConnectorKind::RestJson { url, body, .. } => {
                url.key_names(&mut out);
                if let Some(b) = body {
                    b.key_names(&mut out);
                }
            }
            ConnectorKind::Grpc { request, .. } => request.key_names(&mut out),
        }
        out
    }
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
    /// Where, from the record, the provider states its own time of the data.
    pub data_time: Option<Path>,
    pub auth: UpstreamAuth,
    /// TLS toward the provider, when its endpoint is https:// and a CA is configured.
    pub tls: Option<ConnectorTls>,
    pub mapping: Mapping,
    pub cache: CacheSettings,
    pub guard: GuardSettings,
    /// Readiness depends on this connector's breaker being shut (and its probe passing).
    pub critical: bool,
    /// What separates its dataset's key parts, and a composite key's part names: what
    /// `{key.N}` and `{key.NAME}` in its templates draw on.
    pub key_separator: char,
    pub key_parts: Vec<String>,
    /// SHA-256 of everything configured for this connector: a reload keeps the running
    /// connector (its cache, guard and probe state) when this is unchanged.
    pub fingerprint: String,
    /// Active health checks: (probe key, interval).
    pub health: Option<(String, Duration)>,
}

/// Cache settings of one connector's dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// How long a record is served without asking the provider; zero turns caching off
    /// (concurrent misses are still coalesced).
    pub ttl: Duration,
    /// How long "no such record" is remembered.
    pub negative_ttl: Duration,
    /// How long past `ttl` a record may still be served when the provider fails.
    pub stale_if_error: Duration,
    /// Most records held.
    pub capacity: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            ttl: Duration::from_secs(DEFAULT_CACHE_TTL_S),
            negative_ttl: Duration::from_secs(DEFAULT_CACHE_NEGATIVE_TTL_S),
            stale_if_error: Duration::from_secs(DEFAULT_CACHE_STALE_IF_ERROR_S),
            capacity: DEFAULT_CACHE_CAPACITY,
        }
    }
}

/// Builds every connector of the connectors file, checked against the datasets they serve:
/// at most one connector per dataset, and one for each registered dataset.
pub fn connectors(
    raw: RawConnectors,
    datasets: &[Arc<Dataset>],
    source: &Source,
    env: &BTreeMap<String, String>,
    seal: Option<&SealKey>,
    e: &mut Errors<'_>,
) -> Vec<ConnectorConfig> {
    let mut seen_datasets = HashSet::new();
    let mut seen_names = HashSet::new();
    let connectors: Vec<ConnectorConfig> = raw
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
            let mut connector = connector(&key, c, source, env, seal, e);
            if let (Some(c), Some(d)) = (&mut connector, dataset) {
                // A connector is rebuilt when its dataset's schema or key rule changes.
                c.fingerprint = format!("{}|{}", c.fingerprint, d.schema_fingerprint());
                check_mapping_fields(&format!("{key}.mapping"), &c.mapping, &d.record, e);
                for key_field in &d.key_fields {
                    if !c.mapping.fields().any(|f| f == *key_field) {
                        e.add(
                            format!("{key}.mapping"),
                            format!("must map the key field {key_field:?}"),
                        );
                    }
                }
                c.key_separator = d.key.separator();
                c.key_parts = d.key.part_names();
                for name in c.kind.key_names() {
                    if !c.key_parts.contains(&name) {
                        e.add(
                            key.clone(),
                            format!(
                                "{{key.{name}}}: the key of {} has no part {name:?}{}",
                                d.name,
                                if c.key_parts.is_empty() {
                                    " (only a composite key has named parts; {key.N} counts hyphen-separated parts from 0)".to_owned()
                                } else {
                                    format!(" (its parts: {})", c.key_parts.join(", "))
                                }
                            ),
                        );
                    }
                }
            }
            connector
        })
        .collect();
    // A built-in dataset with no connector is not served (a deployment serves what it
    // has); `Model::warnings` says so. A registered dataset comes with its connector.
    for d in datasets {
        if !d.builtin && !seen_datasets.contains(&d.name) {
            e.add(
                "connector",
                format!("no connector serves dataset {}", d.name),
            );
        }
    }
    connectors
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

fn connector(
    key: &str,
    c: RawConnector,
    source: &Source,
    env: &BTreeMap<String, String>,
    seal: Option<&SealKey>,
    e: &mut Errors<'_>,
) -> Option<ConnectorConfig> {
    let before = e.all.len();
    let mut fingerprint = fingerprint(&c);
    if c.name.trim().is_empty() {
        e.add(format!("{key}.name"), "must not be empty");
    }
    let timeout = Duration::from_millis(c.timeout_ms.unwrap_or(DEFAULT_UPSTREAM_TIMEOUT_MS));
    if timeout.is_zero() {
        e.add(format!("{key}.timeout_ms"), "must be above 0");
    }
    let record_path = c.record_path.as_deref().and_then(|p| {
        Path::parse(p)
            .map_err(|m| e.add(format!("{key}.record_path"), m.to_string()))
            .ok()
    });
    let data_time = c.data_time.as_deref().and_then(|p| {
        Path::parse(p)
            .map_err(|m| e.add(format!("{key}.data_time"), m.to_string()))
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
        e.add(format!("{key}.mapping"), m.to_string());
        Mapping::default()
    });
    let auth = super::auth::from_settings(key, c.auth.as_ref(), &c.kind, source, env, seal, e);
    let tls = super::auth::tls_from_settings(key, c.tls.as_ref(), &c.endpoint, source, e);
    fingerprint = format!(
        "{fingerprint}|{}",
        super::auth::material_digest(&auth, tls.as_ref())
    );
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
            let version = match soap.version.as_deref().unwrap_or("1.1") {
                "1.1" => SoapVersion::V11,
                "1.2" => SoapVersion::V12,
                other => {
                    e.add(
                        format!("{key}.soap.version"),
                        format!("{other:?} is not \"1.1\" or \"1.2\""),
                    );
                    SoapVersion::V11
                }
            };
            let fields = soap
                .fields
                .as_ref()
                .map_or(Ok(Vec::new()), Element::parse)
                .map_err(|(path, m)| e.add(format!("{key}.soap.fields.{path}"), m))
                .unwrap_or_default();
            ConnectorKind::SoapXml {
                version,
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
                e.add(format!("{key}.endpoint"), m.to_string());
                Template::default()
            });
            let body = rest.body.as_ref().and_then(|b| {
                let json = serde_json::to_value(b).map_err(|err| err.to_string());
                json.and_then(|j| JsonTemplate::parse(&j).map_err(|m| m.to_string()))
                    .map_err(|m| e.add(format!("{key}.rest.body"), m))
                    .ok()
            });
            ConnectorKind::RestJson { post, url, body }
        }
        "grpc" => {
            http_endpoint(e);
            super::grpc::kind_from_settings(key, c.grpc.unwrap_or_default(), e)?
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
        data_time,
        auth,
        tls,
        mapping,
        cache,
        guard,
        critical: c.critical,
        key_separator: '-',
        key_parts: Vec::new(),
        health,
        fingerprint,
    })
}
