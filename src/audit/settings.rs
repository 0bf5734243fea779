//! The audit trail's settings and keys, checked and decoded from `[audit]`.

use super::evidence::{EvidenceKey, EvidenceKeys};
use super::record::{Signer, SubjectKey, SubjectKeys};
use super::writer::{Durability, WriterSettings};
use crate::config::raw::RawAudit;
use crate::config::{Errors, Source, secret};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The audit trail's settings and keys.
#[derive(Clone)]
pub struct AuditConfig {
    pub path: PathBuf,
    pub fsync: bool,
    pub writer: WriterSettings,
    pub retention: Option<Duration>,
    pub archive_dir: PathBuf,
    /// The current subject key's id.
    pub subject_key_id: String,
    /// Every subject key held, (id, secret), the current one first.
    pub subject_keys: Vec<(String, Vec<u8>)>,
    pub signing_key_id: String,
    pub signing_seed: Vec<u8>,
    /// Public keys checkpoints may be signed with, by key id (the signing key's included).
    pub verify_keys: HashMap<String, Vec<u8>>,
    /// The keys evidence is signed with, the signing one first (none: evidence is refused).
    pub evidence: Arc<EvidenceKeys>,
    /// The witnesses checkpoints are anchored with.
    pub anchoring: super::anchor::Anchoring,
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
    pub fn subjects(&self) -> SubjectKeys {
        SubjectKeys::new(
            self.subject_keys
                .iter()
                .map(|(id, secret)| SubjectKey::new(id, secret))
                .collect(),
        )
    }

    pub fn signer(&self) -> Signer {
        Signer::from_seed(&self.signing_key_id, &self.signing_seed)
            .expect("the seed was checked when the config loaded")
    }
}

pub fn from_settings(
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
    fn key_bytes(
        e: &mut Errors<'_>,
        env: &BTreeMap<String, String>,
        name: &str,
        value: &Option<String>,
        var: &Option<String>,
        len: Option<usize>,
    ) -> Vec<u8> {
        use base64::Engine;
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
    }
    let subject_keys = if raw.subject_keys.is_empty() {
        let key = key_bytes(
            e,
            env,
            "subject_key",
            &raw.subject_key,
            &raw.subject_key_env,
            None,
        );
        vec![(raw.subject_key_id.clone(), key)]
    } else {
        if raw.subject_key.is_some() || raw.subject_key_env.is_some() {
            e.add(
                "audit.subject_keys",
                "set either subject_keys (a list, the current key first) or subject_key, not both",
            );
        }
        let mut keys: Vec<(String, Vec<u8>)> = Vec::new();
        for (i, k) in raw.subject_keys.iter().enumerate() {
            let at = format!("subject_keys[{i}]");
            if k.id.is_empty() || k.id.contains(':') {
                e.add(
                    format!("audit.{at}.id"),
                    "must be a short name without ':' (e.g. \"k2\")",
                );
            } else if keys.iter().any(|(id, _)| *id == k.id) {
                e.add(
                    format!("audit.{at}.id"),
                    format!("{:?} is listed twice", k.id),
                );
            }
            let secret = key_bytes(e, env, &format!("{at}.key"), &k.key, &k.key_env, None);
            keys.push((k.id.clone(), secret));
        }
        keys
    };
    let subject_key_id = subject_keys[0].0.clone();
    let signing_seed = key_bytes(
        e,
        env,
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
        ("audit.subject_key_id", &subject_key_id),
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
        subject_key_id,
        subject_keys,
        signing_key_id: raw.signing_key_id.clone(),
        signing_seed,
        verify_keys,
        evidence: Arc::new(evidence_keys(raw, env, e)),
        anchoring: anchoring(source, raw, e),
    }
}

/// `[[audit.witnesses]]`: each named once, with its URL and what checks its receipts.
fn anchoring(source: &Source, raw: &RawAudit, e: &mut Errors<'_>) -> super::anchor::Anchoring {
    use super::anchor::{Anchoring, Witness, WitnessKind};
    use base64::Engine;
    let mut witnesses: Vec<Witness> = Vec::new();
    for (i, w) in raw.witnesses.iter().enumerate() {
        let at = format!("audit.witnesses[{i}]");
        if w.name.is_empty() || w.name.len() > 64 {
            e.add(
                format!("{at}.name"),
                "must be a short name (e.g. \"tsa-1\")",
            );
            continue;
        }
        if witnesses.iter().any(|o| o.name == w.name) {
            e.add(
                format!("{at}.name"),
                format!("{:?} is listed twice", w.name),
            );
            continue;
        }
        if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
            e.add(
                format!("{at}.url"),
                format!("{:?} is not an http(s) URL", w.url),
            );
            continue;
        }
        let kind = match (w.kind.as_str(), &w.certificate, &w.public_key) {
            ("rfc3161", Some(path), None) => {
                let file = source.resolve_disk(path);
                let pem = match std::fs::read(&file) {
                    Ok(p) => p,
                    Err(err) => {
                        e.add(
                            format!("{at}.certificate"),
                            format!("cannot read {file}: {err}"),
                        );
                        continue;
                    }
                };
                match first_certificate(&pem) {
                    Some(der) => WitnessKind::Rfc3161 { certificate: der },
                    None => {
                        e.add(
                            format!("{at}.certificate"),
                            format!("{file} holds no PEM certificate"),
                        );
                        continue;
                    }
                }
            }
            ("countersign", None, Some(key)) => {
                match base64::engine::general_purpose::STANDARD.decode(key.trim()) {
                    Ok(b) if b.len() == 32 => WitnessKind::Countersign { public_key: b },
                    _ => {
                        e.add(
                            format!("{at}.public_key"),
                            "must be an Ed25519 public key: 32 bytes, base64",
                        );
                        continue;
                    }
                }
            }
            ("rfc3161", ..) => {
                e.add(
                    at,
                    "an rfc3161 witness needs its certificate (PEM file), and no public_key",
                );
                continue;
            }
            ("countersign", ..) => {
                e.add(
                    at,
                    "a countersign witness needs its public_key, and no certificate",
                );
                continue;
            }
            (other, ..) => {
                e.add(
                    format!("{at}.kind"),
                    format!("{other:?} is not \"rfc3161\" or \"countersign\""),
                );
                continue;
            }
        };
        witnesses.push(Witness {
            name: w.name.clone(),
            url: w.url.clone(),
            kind,
        });
    }
    if raw.anchor_lag_s == 0 {
        e.add("audit.anchor_lag_s", "must be at least 1");
    }
    Anchoring {
        witnesses,
        lag: Duration::from_secs(raw.anchor_lag_s),
    }
}

/// The first certificate of a PEM file, as DER.
fn first_certificate(pem: &[u8]) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .next()?
        .ok()
        .map(|c| c.to_vec())
}

/// `[[audit.evidence_keys]]`: the first signs and holds a seed; later ones are kept for
/// verifiers, by seed or public key; ids are unique.
fn evidence_keys(
    raw: &RawAudit,
    env: &BTreeMap<String, String>,
    e: &mut Errors<'_>,
) -> EvidenceKeys {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut keys = EvidenceKeys::default();
    for (i, k) in raw.evidence_keys.iter().enumerate() {
        let at = format!("audit.evidence_keys[{i}]");
        if k.id.is_empty() || k.id.len() > 64 || k.id.contains(['.', ':', '"']) {
            e.add(
                format!("{at}.id"),
                "must be a short name without '.', ':' or quotes (e.g. \"e1\")",
            );
            continue;
        }
        if keys.keys.iter().any(|o| o.id == k.id) {
            e.add(format!("{at}.id"), format!("{:?} is listed twice", k.id));
            continue;
        }
        let key = if k.seed.is_some() || k.seed_env.is_some() {
            let text = secret(e, &format!("{at}.seed"), &k.seed, &k.seed_env, env);
            match b64
                .decode(text.trim())
                .ok()
                .and_then(|b| EvidenceKey::from_seed(&k.id, &b).filter(|_| b.len() == 32))
            {
                Some(key) => key,
                None => {
                    if !text.is_empty() {
                        e.add(
                            format!("{at}.seed"),
                            "must be an ed25519 seed: 32 bytes, base64",
                        );
                    }
                    continue;
                }
            }
        } else if let Some(public) = &k.public {
            if i == 0 {
                e.add(format!("{at}.seed"), "the first evidence key signs, so it needs its seed (seed or seed_env); list retired keys after it");
                continue;
            }
            match b64.decode(public.trim()) {
                Ok(b) if b.len() == 32 => EvidenceKey::public_only(&k.id, b),
                _ => {
                    e.add(
                        format!("{at}.public"),
                        "must be an ed25519 public key: 32 bytes, base64",
                    );
                    continue;
                }
            }
        } else {
            e.add(at, "needs seed, seed_env or (for a retired key) public");
            continue;
        };
        let mut key = key;
        for (name, given, slot) in [
            ("valid_from", &k.valid_from, &mut key.valid_from),
            ("valid_until", &k.valid_until, &mut key.valid_until),
        ] {
            if let Some(text) = given {
                match crate::domain::date::parse_rfc3339_ms(text) {
                    Some(ms) => *slot = Some(ms),
                    None => e.add(
                        format!("{at}.{name}"),
                        format!("{text:?} is not an RFC 3339 time"),
                    ),
                }
            }
        }
        keys.keys.push(key);
    }
    keys
}
