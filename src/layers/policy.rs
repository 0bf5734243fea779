//! Who may do what: consumers and their credentials, grants (dataset, procedures, fields,
//! modes, validity, quota), and admin credentials with their roles; each built and checked
//! from its file.

use super::authenticate::{Holder, normalize_name};
use super::misuse::Overrides;
use crate::config::Errors;
use crate::config::raw::*;
use crate::domain::dataset::Dataset;
use crate::domain::date::Date;
use crate::shared::limiter::QuotaSpec;
use std::collections::HashSet;
use std::sync::Arc;

/// A consumer (a one-stop system) and its credentials.
#[derive(Debug, Clone)]
pub struct Consumer {
    pub id: String,
    pub name: String,
    pub key_hashes: Vec<[u8; 32]>,
    /// When each key (by position in `key_hashes`) stops working, Unix ms: expired or
    /// revoked; `None` for never.
    pub key_ends: Vec<Option<i64>>,
    /// Ids of the keys, by the same position: `k-…` for keys issued through the admin
    /// API, `f-…` for the consumers file's.
    pub key_ids: Vec<String>,
    /// Switched off: its credentials are refused.
    pub disabled: bool,
    /// Client certificate names (`CN=…`, `DNS:…`, …) that identify this consumer.
    pub certificate_names: Vec<String>,
    /// The consumer's overall quota, across its grants.
    pub quota: Option<QuotaSpec>,
    /// Misuse rules for its calls, over the main file's.
    pub misuse: Overrides,
    /// How it asserts a citizen's identity (the public-service portal): the issuer and the
    /// keys its signed assertions are checked with.
    pub assertion: Option<super::assertion::AssertionPolicy>,
}

impl Holder for Consumer {
    fn key_hashes(&self) -> &[[u8; 32]] {
        &self.key_hashes
    }
    fn key_ends(&self) -> &[Option<i64>] {
        &self.key_ends
    }
    fn certificate_names(&self) -> &[String] {
        &self.certificate_names
    }
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
    /// One consumer's keys and access requests (a one-stop system's administrator).
    ConsumerAdmin { consumer: String },
}

/// A named admin caller: a token (stored as SHA-256) or a client certificate's names.
#[derive(Debug, Clone)]
pub struct AdminCredential {
    pub name: String,
    pub hash: Option<[u8; 32]>,
    pub certificate_names: Vec<String>,
    pub role: AdminRole,
}

impl Holder for AdminCredential {
    fn key_hashes(&self) -> &[[u8; 32]] {
        self.hash.as_slice()
    }
    fn certificate_names(&self) -> &[String] {
        &self.certificate_names
    }
}

/// Access granted to one consumer on one dataset.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Its stable id: what the admin API addresses it by.
    pub id: String,
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
    /// How a call under this grant is bound to its purpose.
    pub binding: Binding,
    /// Misuse rules for calls under it, over its consumer's.
    pub misuse: Overrides,
    /// Its disclosures are counted, not detailed, in a citizen's own access report.
    pub withheld: bool,
}

/// How a call is bound to its purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Binding {
    /// The context's formats only: any dossier id that fits the pattern.
    #[default]
    Pattern,
    /// An open dossier the consumer declared, of the call's procedure, naming the key.
    Declared,
}

impl Binding {
    pub fn as_str(self) -> &'static str {
        match self {
            Binding::Pattern => "pattern",
            Binding::Declared => "declared",
        }
    }
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
    /// Serve a citizen their own access report (the public-service portal), on the
    /// citizen's signed assertion.
    Report,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Fetch => "fetch",
            Mode::Verify => "verify",
            Mode::Report => "report",
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

/// The id of a key listed in the consumers file: `f-` and the first 12 hex digits of its
/// SHA-256 (what the admin API revokes it by).
pub fn file_key_id(hash: &[u8; 32]) -> String {
    format!("f-{}", &hex::encode(hash)[..12])
}

/// A SHA-256 written as 64 hex digits.
pub fn sha256_hex(s: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(s.trim()).ok()?;
    bytes.try_into().ok()
}

/// Admin credentials: operator token hashes, named tokens and client certificates, each
/// with its role. `tls_client_ca`: a CA is configured to verify client certificates.
pub fn admin_credentials(
    admin: &RawAdmin,
    tls_configured: bool,
    tls_client_ca: bool,
    e: &mut Errors<'_>,
) -> Vec<AdminCredential> {
    let mut operator_token_hashes = Vec::new();
    for (i, h) in admin.operator_token_sha256.iter().enumerate() {
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
    let admin_role = |e: &mut Errors<'_>,
                      key: &str,
                      role: &str,
                      agency: &Option<String>,
                      consumer: &Option<String>| {
        fn named(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        match (role, named(agency), named(consumer)) {
            ("operator", None, None) => Some(AdminRole::Operator),
            ("auditor", None, None) => Some(AdminRole::Auditor),
            ("provider", Some(agency), None) => Some(AdminRole::Provider {
                agency: agency.to_owned(),
            }),
            ("consumer_admin", None, Some(consumer)) => Some(AdminRole::ConsumerAdmin {
                consumer: consumer.to_owned(),
            }),
            ("provider", None, _) => {
                e.add(
                    format!("{key}.agency"),
                    "a provider credential names its agency",
                );
                None
            }
            ("consumer_admin", _, None) => {
                e.add(
                    format!("{key}.consumer"),
                    "a consumer_admin credential names its consumer",
                );
                None
            }
            ("operator" | "auditor" | "consumer_admin", Some(_), _) => {
                e.add(
                    format!("{key}.agency"),
                    "only provider credentials name an agency",
                );
                None
            }
            ("operator" | "auditor" | "provider", _, Some(_)) => {
                e.add(
                    format!("{key}.consumer"),
                    "only consumer_admin credentials name a consumer",
                );
                None
            }
            (other, _, _) => {
                e.add(
                    format!("{key}.role"),
                    format!(
                        "{other:?} is not \"operator\", \"auditor\", \"provider\" or \"consumer_admin\""
                    ),
                );
                None
            }
        }
    };
    for (i, t) in admin.token.iter().enumerate() {
        let key = format!("admin.token[{i}]");
        let Some(hash) = sha256_hex(&t.sha256) else {
            e.add(format!("{key}.sha256"), "must be 64 hex digits (a SHA-256)");
            continue;
        };
        if t.name.trim().is_empty() {
            e.add(format!("{key}.name"), "must name who holds the token");
        }
        let Some(role) = admin_role(e, &key, &t.role, &t.agency, &t.consumer) else {
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
    for (i, c) in admin.client.iter().enumerate() {
        let key = format!("admin.client[{i}]");
        if c.name.trim().is_empty() {
            e.add(format!("{key}.name"), "must name who holds the certificate");
        }
        if !admin.tls {
            e.add(
                format!("{key}.certificate_names"),
                "admin client certificates need admin.tls = true",
            );
        }
        let mut names = Vec::new();
        for (j, n) in c.certificate_names.iter().enumerate() {
            match normalize_name(n) {
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
                Err(m) => e.add(format!("{key}.certificate_names[{j}]"), m.to_string()),
            }
        }
        if c.certificate_names.is_empty() {
            e.add(
                format!("{key}.certificate_names"),
                "name at least one, e.g. \"CN=ops-alice\"",
            );
        }
        let Some(role) = admin_role(e, &key, &c.role, &c.agency, &c.consumer) else {
            continue;
        };
        admin_credentials.push(AdminCredential {
            name: c.name.trim().to_owned(),
            hash: None,
            certificate_names: names,
            role,
        });
    }
    if !admin.client.is_empty() && !tls_client_ca {
        e.add(
            "admin.client",
            "admin client certificates need tls.client_ca to verify them",
        );
    }
    if admin.tls && !tls_configured {
        e.add(
            "admin.tls",
            "needs a [tls] section (the admin listener uses its certificate)",
        );
    }
    admin_credentials
}

/// The consumers file. `tls_client_ca`: a CA is configured to verify client certificates.
pub fn consumers(raw: RawConsumers, tls_client_ca: bool, e: &mut Errors<'_>) -> Vec<Consumer> {
    let mut consumer_ids = HashSet::new();
    let mut cert_owners = std::collections::HashMap::new();

    let consumers: Vec<Consumer> = raw
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
                match normalize_name(n) {
                    Err(m) => e.add(at, m.to_string()),
                    Ok(n) => {
                        if !tls_client_ca {
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
                    .map_err(|m| e.add(format!("{key}.quota"), m.to_string()))
                    .ok()
            });
            let misuse = Overrides::from_settings(&c.misuse, &format!("{key}.misuse"), e);
            let assertion = c.assertion.as_ref().and_then(|a| {
                super::assertion::AssertionPolicy::from_settings(a, &format!("{key}.assertion"), e)
            });
            Consumer {
                assertion,
                id: c.id,
                name: c.name,
                key_ends: vec![None; key_hashes.len()],
                key_ids: key_hashes.iter().map(file_key_id).collect(),
                disabled: c.disabled,
                key_hashes,
                certificate_names,
                quota,
                misuse,
            }
        })
        .collect();
    consumers
}

/// The grants file, checked against the consumers and datasets.
pub fn grants(
    raw: RawGrants,
    consumers: &[Consumer],
    datasets: &[Arc<Dataset>],
    e: &mut Errors<'_>,
) -> Vec<Grant> {
    let consumer_ids: HashSet<&str> = consumers
        .iter()
        .map(|c| c.id.as_str())
        .filter(|id| !id.trim().is_empty())
        .collect();
    let ids = grant_ids(
        raw.grant
            .iter()
            .map(|g| (g.id.as_deref(), g.consumer.as_str(), g.dataset.as_str())),
    );
    let mut seen = HashSet::new();
    raw.grant
        .into_iter()
        .zip(ids)
        .enumerate()
        .map(|(i, (g, id))| {
            let key = format!("grant[{i}]");
            if let Err(why) = check_grant_id(&id) {
                e.add(format!("{key}.id"), why);
            } else if !seen.insert(id.clone()) {
                e.add(
                    format!("{key}.id"),
                    format!("grant {id:?} is declared twice"),
                );
            }
            if !consumer_ids.contains(g.consumer.as_str()) {
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
                        "report" => Some(Mode::Report),
                        other => {
                            e.add(
                                format!("{key}.modes"),
                                format!("{other:?} is not \"fetch\", \"verify\" or \"report\""),
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
                    .map_err(|m| e.add(format!("{key}.quota"), m.to_string()))
                    .ok()
            });
            let binding = match g.binding.as_deref() {
                None | Some("pattern") => Binding::Pattern,
                Some("declared") => Binding::Declared,
                Some(other) => {
                    e.add(
                        format!("{key}.binding"),
                        format!("{other:?} is not \"pattern\" or \"declared\""),
                    );
                    Binding::Pattern
                }
            };
            let misuse = Overrides::from_settings(&g.misuse, &format!("{key}.misuse"), e);
            let withheld = match g.citizen_report.as_deref() {
                None | Some("detailed") => false,
                Some("withheld") => true,
                Some(other) => {
                    e.add(
                        format!("{key}.citizen_report"),
                        format!("{other:?} is not \"detailed\" or \"withheld\""),
                    );
                    false
                }
            };
            Grant {
                id,
                withheld,
                quota,
                binding,
                misuse,
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
        .collect()
}

/// Each grant's id: its own, or one derived from its consumer, its dataset and how many
/// grants of that pair come before it, so that it stays put when others are added,
/// changed or removed.
pub fn grant_ids<'a>(
    grants: impl Iterator<Item = (Option<&'a str>, &'a str, &'a str)>,
) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let mut seen: std::collections::HashMap<(&str, &str), u32> = Default::default();
    grants
        .map(|(id, consumer, dataset)| {
            let n = seen.entry((consumer, dataset)).or_default();
            *n += 1;
            match id {
                Some(id) => id.trim().to_owned(),
                None => {
                    let digest = Sha256::digest(format!("{consumer}\n{dataset}\n{n}"));
                    format!("g-{}", &hex::encode(digest)[..10])
                }
            }
        })
        .collect()
}

/// A grant id as set: lower case letters, digits, `-` and `_`, not only digits (those were
/// list positions once, and are refused as addresses).
pub fn check_grant_id(id: &str) -> Result<(), String> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !id.bytes().all(|b| b.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not a grant id: up to 64 of a-z, 0-9, - and _, not only digits (e.g. \"g-3f9a2c1b7d\")"
        ))
    }
}
