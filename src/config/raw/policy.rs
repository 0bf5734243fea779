//! The consumers and grants files, and the misuse rules they and the main file set.

use serde::Deserialize;

/// The consumers file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawConsumers {
    pub consumer: Vec<RawConsumer>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawConsumer {
    pub id: String,
    pub name: String,
    /// SHA-256 (hex) of each API key the consumer may present.
    pub api_key_sha256: Vec<String>,
    /// Client certificate names that identify the consumer: `CN=…`, `DNS:…`, `URI:…`,
    /// `email:…` or `IP:…`.
    pub certificate_names: Vec<String>,
    /// The consumer's overall quota across datasets, e.g. "6000/min".
    pub quota: Option<String>,
    /// Misuse rules for this consumer's calls, over the main file's.
    pub misuse: RawMisuseRules,
    /// A portal that asserts citizens' identities: how its assertions are checked.
    pub assertion: Option<RawAssertion>,
    /// Switched off: its credentials are refused, its grants stay.
    pub disabled: bool,
}

/// The registry's accounts file, written only through the admin API: consumers created
/// there, and the API keys issued (and revoked) there, for any consumer. It is carried
/// forward across `admin reload` and `admin rollback`, so that neither brings back a
/// revoked key nor drops an issued one.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawAccounts {
    pub consumer: Vec<RawConsumer>,
    pub key: Vec<RawKey>,
    /// Access requests and their decisions (read by the admin API, not by the model).
    pub request: Vec<toml::Table>,
}

/// An API key issued through the admin API, or a revocation of a consumers-file key (its
/// id is then `f-` and the first 12 hex digits of its SHA-256).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawKey {
    pub id: String,
    pub consumer: String,
    /// SHA-256 (hex) of the key: the key itself is shown once, when issued, and kept nowhere.
    pub sha256: String,
    pub label: String,
    /// RFC 3339 instants: when it was issued, when it stops working (unset: never), and
    /// when it was revoked.
    pub created: String,
    pub expires: Option<String>,
    pub revoked: Option<String>,
    /// Who issued it, as the audit trail names them.
    pub created_by: String,
}

/// How a portal's signed assertions (JWTs) of a citizen's identity are checked.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawAssertion {
    /// The `iss` its assertions carry, e.g. "https://dichvucong.gov.vn".
    pub issuer: String,
    /// The `aud` they must carry: this gateway (default "lienthong").
    pub audience: Option<String>,
    /// Its public keys; a key is picked by the assertion's `kid`.
    pub keys: Vec<RawAssertionKey>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawAssertionKey {
    pub kid: String,
    /// "EdDSA" (Ed25519) or "ES256" (P-256).
    pub alg: String,
    /// The public key, PEM (SubjectPublicKeyInfo).
    pub public_key_pem: String,
}

/// The grants file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawGrants {
    pub grant: Vec<RawGrant>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawGrant {
    /// Its stable id (`g-…`, lower case, digits, `-`, `_`): what the admin API addresses it
    /// by. Derived from its consumer and dataset when unset.
    pub id: Option<String>,
    pub consumer: String,
    pub dataset: String,
    /// Procedure codes allowed: exact codes, or prefixes ending in `*`.
    pub procedures: Vec<String>,
    /// Fields allowed; `["*"]` for every field of the record.
    pub fields: Vec<String>,
    /// "fetch" (read the fields) and/or "verify" (check claims against them); default fetch.
    pub modes: Vec<String>,
    /// The legal text the grant rests on.
    pub legal_basis: String,
    /// First and last day (inclusive, `yyyy-mm-dd`, UTC) the grant is in force; open if unset.
    pub valid_from: Option<String>,
    pub valid_until: Option<String>,
    /// Whether the consumer may ask for a fresh read (`Cache-Control: no-cache`).
    pub allow_cache_bypass: bool,
    /// Calls this grant admits, e.g. "600/min"; unlimited when unset.
    pub quota: Option<String>,
    /// Switched off: kept (and listed), but it admits nothing.
    pub disabled: bool,
    /// How a call is bound to its purpose: "pattern" (the context's formats only, the
    /// default) or "declared" (an open dossier declared by the consumer, naming the key).
    pub binding: Option<String>,
    /// How the grant's disclosures show in a citizen's own access report: "detailed" (the
    /// default) or "withheld" (counted, not detailed; operators still see them in full).
    pub citizen_report: Option<String>,
    /// Misuse rules for calls under this grant, over its consumer's.
    pub misuse: RawMisuseRules,
}

/// Misuse detection (`[misuse]` in the main file).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RawMisuse {
    /// Detection on (the default) or off.
    pub enabled: bool,
    /// Office hours, Asia/Ho_Chi_Minh time: "hh:mm-hh:mm".
    pub office_hours: String,
    /// Working days: "mon" … "sun".
    pub office_days: Vec<String>,
    /// Days off besides the weekend, `yyyy-mm-dd`.
    pub holidays: Vec<String>,
    /// Keys whose serial parts lie within this many steps count as near-sequential.
    pub sequential_step: u64,
    /// Calls an officer or consumer makes in the hour before its not-found ratio counts.
    pub not_found_min_calls: u64,
    /// Most windows (actor × rule × period) a replica tracks at once.
    pub max_tracked: usize,
    /// Every caller's rules; consumers and grants override them.
    pub rules: RawMisuseRules,
}

impl Default for RawMisuse {
    fn default() -> Self {
        RawMisuse {
            enabled: true,
            office_hours: "07:00-17:30".into(),
            office_days: ["mon", "tue", "wed", "thu", "fri"]
                .map(String::from)
                .to_vec(),
            holidays: Vec::new(),
            sequential_step: 5,
            not_found_min_calls: 20,
            max_tracked: 100_000,
            rules: RawMisuseRules::default(),
        }
    }
}

/// A threshold and an action for each rule; what is unset comes from the next scope out.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawMisuseRules {
    pub officer_subjects_hour: Option<RawRule>,
    pub officer_subjects_day: Option<RawRule>,
    pub dossier_undeclared_subjects: Option<RawRule>,
    pub off_hours: Option<RawRule>,
    pub not_found_ratio: Option<RawRule>,
    pub sequential_keys: Option<RawRule>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawRule {
    /// Fires when the count goes past this (a percentage for `not_found_ratio`).
    pub threshold: Option<u64>,
    /// "alert" (record and count) or "refuse" (and refuse the calls past the threshold).
    pub action: Option<String>,
}

/// The procedures catalogue: administrative procedures (thủ tục hành chính) by code.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawProcedures {
    pub procedure: Vec<RawProcedure>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RawProcedure {
    /// The procedure code (mã TTHC), e.g. "1.001612".
    pub code: String,
    /// Its name, e.g. "Đăng ký thường trú".
    pub name: String,
}
