//! One audit record, its place in the chain, and the keys around it: the subject reference
//! (a keyed hash, so nobody reading the store learns whose data it was) and the checkpoint
//! signature.

use ring::hmac;
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use sha2::{Digest, Sha256};

/// The facts of one call, as the request path collects them. No personal data: the subject
/// is a keyed hash, the fields are names, the context is the validated call context.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    /// Unix time in milliseconds.
    pub time_ms: i64,
    pub request_id: String,
    pub trace_id: String,
    /// "rest", "grpc", "cli" or "admin".
    pub transport: String,
    /// The authenticated consumer (or operator); empty when authentication failed.
    pub actor: String,
    /// "api_key", "certificate", "admin_token", "local" (the CLI), or empty.
    pub credential: String,
    pub officer_id: String,
    pub agency_code: String,
    pub procedure_code: String,
    pub dossier_id: String,
    pub purpose: String,
    pub dataset: String,
    /// `key id:hex(HMAC-SHA256(dataset NUL key))`; empty when no valid key was given.
    pub subject: String,
    /// "fetch", "verify", "audit_read", "audit_gap".
    pub action: String,
    /// Fields disclosed (fetch) or checked (verify).
    pub fields: Vec<String>,
    /// "served", or the error code the call ended with.
    pub outcome: String,
    /// hit, miss, stale, coalesced; empty when the cache was not reached.
    pub cache: String,
    /// ok, not_found, unavailable, timeout, bad_response; empty when no provider call.
    pub upstream_status: String,
    /// Provider latency in milliseconds; -1 when no provider call.
    pub upstream_ms: i64,
    /// What else an auditor needs (a query's filters, a gap's extent); never personal data.
    pub detail: String,
    /// What format version 2 adds for a disclosure (a fetch or verify whose grant was
    /// found): the grant's legal basis and report mode at the call, and the people who
    /// appear in the disclosed fields. `None` in records of version 1 and in other records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disclosure: Option<Disclosure>,
}

/// A disclosure's facts beyond version 1 of the entry format.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Disclosure {
    /// The grant's legal basis, as it stood at the call.
    pub legal_basis: String,
    /// The grant's entries are withheld from the citizen's own report (counted, not
    /// detailed), as the grant stood at the call.
    pub withheld: bool,
    /// People other than the subject who appear in the disclosed fields: (field, keyed
    /// reference of their personal id).
    pub mentions: Vec<(String, String)>,
}

/// The first bytes of a version 2 entry: no version 1 entry starts with 0xFF (its first
/// byte is the top byte of a positive time).
const VERSION_2: [u8; 2] = [0xFF, 2];

/// A record in its chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chained {
    pub instance: String,
    pub seq: i64,
    pub entry: AuditEntry,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// The hash before a chain's first record.
pub const GENESIS: [u8; 32] = [0; 32];

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

impl AuditEntry {
    /// The entry format's version: 2 when it carries a disclosure's facts, else 1.
    pub fn version(&self) -> u8 {
        if self.disclosure.is_some() { 2 } else { 1 }
    }

    /// An unambiguous byte form: every field length-prefixed, in a fixed order. Version 1
    /// is the fields of version 1 alone (so records written before version 2 keep their
    /// bytes and hashes); version 2 is a marker, the same, then the disclosure's facts.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        if self.disclosure.is_some() {
            out.extend_from_slice(&VERSION_2);
        }
        out.extend_from_slice(&self.time_ms.to_be_bytes());
        for s in [
            &self.request_id,
            &self.trace_id,
            &self.transport,
            &self.actor,
            &self.credential,
            &self.officer_id,
            &self.agency_code,
            &self.procedure_code,
            &self.dossier_id,
            &self.purpose,
            &self.dataset,
            &self.subject,
            &self.action,
        ] {
            put(&mut out, s.as_bytes());
        }
        out.extend_from_slice(&(self.fields.len() as u32).to_be_bytes());
        for f in &self.fields {
            put(&mut out, f.as_bytes());
        }
        for s in [&self.outcome, &self.cache, &self.upstream_status] {
            put(&mut out, s.as_bytes());
        }
        out.extend_from_slice(&self.upstream_ms.to_be_bytes());
        put(&mut out, self.detail.as_bytes());
        if let Some(d) = &self.disclosure {
            put(&mut out, d.legal_basis.as_bytes());
            out.push(u8::from(d.withheld));
            out.extend_from_slice(&(d.mentions.len() as u32).to_be_bytes());
            for (field, reference) in &d.mentions {
                put(&mut out, field.as_bytes());
                put(&mut out, reference.as_bytes());
            }
        }
        out
    }
}

/// Canonical bytes that are not an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{wanted} bytes wanted, {left} left")]
    Short { wanted: usize, left: usize },
    #[error("text is not UTF-8")]
    Utf8,
    #[error("{count} fields cannot fit in {left} bytes")]
    Fields { count: usize, left: usize },
    #[error("{0} bytes after the entry")]
    Trailing(usize),
    #[error("entry format version {0} is not known to this build")]
    Version(u8),
}

/// Reads [`AuditEntry::canonical`] bytes back.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Short {
                wanted: n,
                left: self.0.len(),
            });
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn text(&mut self) -> Result<String, DecodeError> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| DecodeError::Utf8)
    }
}

impl AuditEntry {
    /// The entry whose [`canonical`](AuditEntry::canonical) bytes these are.
    pub fn from_canonical(bytes: &[u8]) -> Result<AuditEntry, DecodeError> {
        let (version, bytes) = match bytes {
            [0xFF, v, rest @ ..] => (*v, rest),
            _ => (1, bytes),
        };
        if version != 1 && version != 2 {
            return Err(DecodeError::Version(version));
        }
        let mut r = Reader(bytes);
        // Fields are read in the order written here, which is the canonical order.
        let entry = AuditEntry {
            time_ms: r.i64()?,
            request_id: r.text()?,
            trace_id: r.text()?,
            transport: r.text()?,
            actor: r.text()?,
            credential: r.text()?,
            officer_id: r.text()?,
            agency_code: r.text()?,
            procedure_code: r.text()?,
            dossier_id: r.text()?,
            purpose: r.text()?,
            dataset: r.text()?,
            subject: r.text()?,
            action: r.text()?,
            fields: {
                let count = r.u32()? as usize;
                if count > r.0.len() / 4 {
                    return Err(DecodeError::Fields {
                        count,
                        left: r.0.len(),
                    });
                }
                (0..count).map(|_| r.text()).collect::<Result<_, _>>()?
            },
            outcome: r.text()?,
            cache: r.text()?,
            upstream_status: r.text()?,
            upstream_ms: r.i64()?,
            detail: r.text()?,
            disclosure: None,
        };
        let mut entry = entry;
        if version == 2 {
            let legal_basis = r.text()?;
            let withheld = r.take(1)?[0] == 1;
            let count = r.u32()? as usize;
            if count > r.0.len() / 8 {
                return Err(DecodeError::Fields {
                    count,
                    left: r.0.len(),
                });
            }
            let mentions = (0..count)
                .map(|_| Ok((r.text()?, r.text()?)))
                .collect::<Result<_, DecodeError>>()?;
            entry.disclosure = Some(Disclosure {
                legal_basis,
                withheld,
                mentions,
            });
        }
        if !r.0.is_empty() {
            return Err(DecodeError::Trailing(r.0.len()));
        }
        Ok(entry)
    }
}

/// The hash of a record: SHA-256 over the previous hash, the chain, the sequence number and
/// the record's canonical bytes.
pub fn chain_hash(prev: &[u8; 32], instance: &str, seq: i64, entry: &AuditEntry) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"lienthong-audit-v1\0");
    h.update(prev);
    h.update((instance.len() as u32).to_be_bytes());
    h.update(instance.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(entry.canonical());
    h.finalize().into()
}

impl Chained {
    /// Whether the stored hash is the hash of what is stored.
    pub fn hash_holds(&self) -> bool {
        chain_hash(&self.prev_hash, &self.instance, self.seq, &self.entry) == self.hash
    }
}

/// The keyed hash that stands for a subject in the audit store.
pub struct SubjectKey {
    pub id: String,
    key: hmac::Key,
}

impl SubjectKey {
    pub fn new(id: &str, secret: &[u8]) -> SubjectKey {
        SubjectKey {
            id: id.to_owned(),
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// `id:hex` for one dataset's (normalised) key.
    pub fn reference(&self, dataset: &str, key: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(dataset.as_bytes());
        ctx.update(&[0]);
        ctx.update(key.as_bytes());
        format!("{}:{}", self.id, hex::encode(ctx.sign().as_ref()))
    }
}

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SubjectKey({})", self.id)
    }
}

/// A signed statement of a chain's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub instance: String,
    pub seq: i64,
    pub hash: [u8; 32],
    pub time_ms: i64,
    pub key_id: String,
    pub signature: Vec<u8>,
}

/// What a checkpoint signs.
pub fn checkpoint_message(instance: &str, seq: i64, hash: &[u8; 32], time_ms: i64) -> Vec<u8> {
    let mut m = b"lienthong-checkpoint-v1\0".to_vec();
    put(&mut m, instance.as_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&time_ms.to_be_bytes());
    m
}

/// A signing key that is not an ed25519 seed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an ed25519 seed is 32 bytes")]
pub struct SeedError;

/// The ed25519 key that signs checkpoints.
pub struct Signer {
    pub id: String,
    pair: Ed25519KeyPair,
}

impl Signer {
    /// From a 32-byte seed.
    pub fn from_seed(id: &str, seed: &[u8]) -> Result<Signer, SeedError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| SeedError)?;
        Ok(Signer {
            id: id.to_owned(),
            pair,
        })
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    pub fn sign(&self, instance: &str, seq: i64, hash: &[u8; 32], time_ms: i64) -> Checkpoint {
        let signature = self
            .pair
            .sign(&checkpoint_message(instance, seq, hash, time_ms))
            .as_ref()
            .to_vec();
        Checkpoint {
            instance: instance.to_owned(),
            seq,
            hash: *hash,
            time_ms,
            key_id: self.id.clone(),
            signature,
        }
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.id)
    }
}

/// Whether `public_key` signed the checkpoint.
pub fn checkpoint_signed_by(cp: &Checkpoint, public_key: &[u8]) -> bool {
    signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(
            &checkpoint_message(&cp.instance, cp.seq, &cp.hash, cp.time_ms),
            &cp.signature,
        )
        .is_ok()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Chains for tests of the stores.
#[cfg(test)]
pub(crate) mod testing {
    use super::{AuditEntry, Chained, chain_hash};

    /// `n` fetch records of `instance` from `seq` on, linked to `prev`; each has its own
    /// officer and dossier.
    pub(crate) fn chain(instance: &str, from: i64, n: i64, mut prev: [u8; 32]) -> Vec<Chained> {
        (from..from + n)
            .map(|seq| {
                let entry = AuditEntry {
                    time_ms: 1_700_000_000_000 + seq,
                    request_id: format!("r{seq}"),
                    officer_id: format!("canbo{:02}", seq % 3),
                    dossier_id: format!("000.00.53.H48-251128-{seq:04}"),
                    subject: format!("k1:{seq:064x}"),
                    action: "fetch".into(),
                    outcome: "served".into(),
                    fields: vec!["full_name".into()],
                    upstream_ms: -1,
                    ..AuditEntry::default()
                };
                let hash = chain_hash(&prev, instance, seq, &entry);
                let r = Chained {
                    instance: instance.into(),
                    seq,
                    entry,
                    prev_hash: prev,
                    hash,
                };
                prev = hash;
                r
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_bytes_read_back_as_the_entry_and_damage_is_refused() {
        let entry = AuditEntry {
            time_ms: 1_764_300_000_123,
            request_id: "r-1".into(),
            actor: "một-cửa".into(),
            fields: vec!["full_name".into(), "date_of_birth".into()],
            upstream_ms: -1,
            detail: "from=2025".into(),
            ..AuditEntry::default()
        };
        let bytes = entry.canonical();
        assert_eq!(AuditEntry::from_canonical(&bytes), Ok(entry.clone()));
        let empty = AuditEntry::default();
        assert_eq!(AuditEntry::from_canonical(&empty.canonical()), Ok(empty));
        assert!(AuditEntry::from_canonical(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(AuditEntry::from_canonical(&longer).is_err());
        // A field count no body could hold is refused before anything is allocated for it.
        let mut huge = AuditEntry::default().canonical();
        let at = 8 + 13 * 4;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(AuditEntry::from_canonical(&huge).is_err());
    }

    #[test]
    fn version_2_carries_a_disclosure_and_version_1_bytes_are_unchanged() {
        let v1 = AuditEntry {
            time_ms: 1_764_300_000_123,
            actor: "một-cửa".into(),
            fields: vec!["full_name".into()],
            upstream_ms: -1,
            ..AuditEntry::default()
        };
        // Version 1's form is what it always was: a record written before version 2
        // keeps its bytes, so its hash still holds.
        assert_eq!(v1.version(), 1);
        assert_eq!(v1.canonical()[..8], 1_764_300_000_123_i64.to_be_bytes());
        let v2 = AuditEntry {
            disclosure: Some(Disclosure {
                legal_basis: "Luật Căn cước 2023".into(),
                withheld: true,
                mentions: vec![("father".into(), "k1:ab".into())],
            }),
            ..v1.clone()
        };
        let bytes = v2.canonical();
        assert_eq!((v2.version(), &bytes[..2]), (2, &[0xFF, 2][..]));
        assert_eq!(bytes[2..2 + v1.canonical().len()], v1.canonical()[..]);
        assert_eq!(AuditEntry::from_canonical(&bytes), Ok(v2.clone()));
        assert_ne!(
            chain_hash(&GENESIS, "gw", 1, &v1),
            chain_hash(&GENESIS, "gw", 1, &v2)
        );
        // A disclosure's facts are covered by the hash: a mention removed shows.
        let mut stripped = v2.clone();
        if let Some(d) = stripped.disclosure.as_mut() {
            d.mentions.clear();
        }
        assert_ne!(
            chain_hash(&GENESIS, "gw", 1, &stripped),
            chain_hash(&GENESIS, "gw", 1, &v2)
        );
        let mut unknown = bytes.clone();
        unknown[1] = 9;
        assert_eq!(
            AuditEntry::from_canonical(&unknown),
            Err(DecodeError::Version(9))
        );
        assert!(AuditEntry::from_canonical(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn any_change_to_a_record_changes_its_hash() {
        let entry = AuditEntry {
            time_ms: 1,
            fields: vec!["full_name".into()],
            outcome: "served".into(),
            ..AuditEntry::default()
        };
        let h = chain_hash(&GENESIS, "gw1", 1, &entry);
        let mut moved = entry.clone();
        moved.fields = vec!["full_name".into(), "date_of_birth".into()];
        assert_ne!(chain_hash(&GENESIS, "gw1", 1, &moved), h);
        // Field boundaries are part of the form: "ab","c" is not "a","bc".
        let a = AuditEntry {
            actor: "ab".into(),
            credential: "c".into(),
            ..entry.clone()
        };
        let b = AuditEntry {
            actor: "a".into(),
            credential: "bc".into(),
            ..entry.clone()
        };
        assert_ne!(a.canonical(), b.canonical());
        assert_ne!(
            chain_hash(&GENESIS, "gw1", 2, &entry),
            h,
            "the position counts"
        );
        assert_ne!(
            chain_hash(&GENESIS, "gw2", 1, &entry),
            h,
            "the chain counts"
        );
    }

    #[test]
    fn subject_references_hide_the_key_and_depend_on_the_audit_key() {
        let k = SubjectKey::new("k1", b"audit secret");
        let r = k.reference("population.citizen", "001090012345");
        assert!(r.starts_with("k1:") && !r.contains("001090012345"));
        assert_eq!(r, k.reference("population.citizen", "001090012345"));
        assert_ne!(r, k.reference("business.enterprise", "001090012345"));
        assert_ne!(
            r,
            SubjectKey::new("k1", b"another").reference("population.citizen", "001090012345")
        );
    }

    #[test]
    fn checkpoints_verify_with_the_signers_public_key_only() {
        let signer = Signer::from_seed("s1", &[7; 32]).expect("seed");
        let cp = signer.sign("gw1", 10, &[1; 32], 5);
        assert!(checkpoint_signed_by(&cp, &signer.public_key()));
        let other = Signer::from_seed("s2", &[8; 32]).expect("seed");
        assert!(!checkpoint_signed_by(&cp, &other.public_key()));
        let moved = Checkpoint { seq: 11, ..cp };
        assert!(!checkpoint_signed_by(&moved, &signer.public_key()));
    }
}
