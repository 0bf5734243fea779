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
    /// Fields disclosed (fetch) or checked (verify). Shared with the cache's table of
    /// names, so that a call's record copies none of them.
    pub fields: Vec<std::sync::Arc<str>>,
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
        self.write_canonical(&mut out);
        out
    }

    /// Appends the [`canonical`](AuditEntry::canonical) bytes to `out`, without a buffer of
    /// their own (the segment store writes them straight into a commit's frame).
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
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
            put(out, s.as_bytes());
        }
        out.extend_from_slice(&(self.fields.len() as u32).to_be_bytes());
        for f in &self.fields {
            put(out, f.as_bytes());
        }
        for s in [&self.outcome, &self.cache, &self.upstream_status] {
            put(out, s.as_bytes());
        }
        out.extend_from_slice(&self.upstream_ms.to_be_bytes());
        put(out, self.detail.as_bytes());
        if let Some(d) = &self.disclosure {
            put(out, d.legal_basis.as_bytes());
            out.push(u8::from(d.withheld));
            out.extend_from_slice(&(d.mentions.len() as u32).to_be_bytes());
            for (field, reference) in &d.mentions {
                put(out, field.as_bytes());
                put(out, reference.as_bytes());
            }
        }
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

/// Walks canonical bytes without copying them.
struct Walk<'a>(&'a [u8]);

impl<'a> Walk<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
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

    fn text(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.text()?.to_vec()).map_err(|_| DecodeError::Utf8)
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
        let mut r = Walk(bytes);
        // Fields are read in the order written here, which is the canonical order.
        let entry = AuditEntry {
            time_ms: r.i64()?,
            request_id: r.string()?,
            trace_id: r.string()?,
            transport: r.string()?,
            actor: r.string()?,
            credential: r.string()?,
            officer_id: r.string()?,
            agency_code: r.string()?,
            procedure_code: r.string()?,
            dossier_id: r.string()?,
            purpose: r.string()?,
            dataset: r.string()?,
            subject: r.string()?,
            action: r.string()?,
            fields: {
                let count = r.u32()? as usize;
                if count > r.0.len() / 4 {
                    return Err(DecodeError::Fields {
                        count,
                        left: r.0.len(),
                    });
                }
                (0..count)
                    .map(|_| r.string().map(Into::into))
                    .collect::<Result<_, _>>()?
            },
            outcome: r.string()?,
            cache: r.string()?,
            upstream_status: r.string()?,
            upstream_ms: r.i64()?,
            detail: r.string()?,
            disclosure: None,
        };
        let mut entry = entry;
        if version == 2 {
            let legal_basis = r.string()?;
            let withheld = r.take(1)?[0] == 1;
            let count = r.u32()? as usize;
            if count > r.0.len() / 8 {
                return Err(DecodeError::Fields {
                    count,
                    left: r.0.len(),
                });
            }
            let mentions = (0..count)
                .map(|_| Ok((r.string()?, r.string()?)))
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

/// The fields of canonical bytes that queries filter on, borrowed, without decoding the
/// entry: the segment store indexes and filters records with this, and decodes only the
/// ones it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryView<'a> {
    pub time_ms: i64,
    pub actor: &'a [u8],
    pub officer_id: &'a [u8],
    pub dossier_id: &'a [u8],
    pub dataset: &'a [u8],
    pub subject: &'a [u8],
    pub outcome: &'a [u8],
    /// The mentions of a version 2 entry, still encoded: (field, reference) pairs.
    mentions: &'a [u8],
    mention_count: u32,
}

impl<'a> EntryView<'a> {
    /// The view of canonical bytes; an error where [`AuditEntry::from_canonical`] would
    /// fail on their framing (text is not checked to be UTF-8 here).
    pub fn parse(bytes: &'a [u8]) -> Result<EntryView<'a>, DecodeError> {
        let (version, bytes) = match bytes {
            [0xFF, v, rest @ ..] => (*v, rest),
            _ => (1, bytes),
        };
        if version != 1 && version != 2 {
            return Err(DecodeError::Version(version));
        }
        let mut w = Walk(bytes);
        let time_ms = w.i64()?;
        let mut texts = [&[][..]; 13];
        for t in &mut texts {
            *t = w.text()?;
        }
        let [
            _,
            _,
            _,
            actor,
            _,
            officer_id,
            _,
            _,
            dossier_id,
            _,
            dataset,
            subject,
            _,
        ] = texts;
        for _ in 0..w.u32()? {
            w.text()?;
        }
        let outcome = w.text()?;
        w.text()?;
        w.text()?;
        w.take(8)?;
        w.text()?;
        let (mentions, mention_count) = if version == 2 {
            w.text()?;
            w.take(1)?;
            let count = w.u32()?;
            let start = w.0;
            for _ in 0..count {
                w.text()?;
                w.text()?;
            }
            (&start[..start.len() - w.0.len()], count)
        } else {
            (&[][..], 0)
        };
        if !w.0.is_empty() {
            return Err(DecodeError::Trailing(w.0.len()));
        }
        Ok(EntryView {
            time_ms,
            actor,
            officer_id,
            dossier_id,
            dataset,
            subject,
            outcome,
            mentions,
            mention_count,
        })
    }

    /// The references of the people the disclosed fields name.
    pub fn mentions(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut w = Walk(self.mentions);
        (0..self.mention_count).filter_map(move |_| {
            w.text().ok()?;
            w.text().ok()
        })
    }
}

/// The hash of a record: SHA-256 over the previous hash, the chain, the sequence number and
/// the record's canonical bytes.
pub fn chain_hash(prev: &[u8; 32], instance: &str, seq: i64, entry: &AuditEntry) -> [u8; 32] {
    thread_local! {
        /// The canonical bytes being hashed, in a buffer the thread keeps (the writer
        /// hashes every record: no allocation, nor growth, per record).
        static CANONICAL: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(1024));
    }
    let mut h = Sha256::new();
    h.update(b"lienthong-audit-v1\0");
    h.update(prev);
    h.update((instance.len() as u32).to_be_bytes());
    h.update(instance.as_bytes());
    h.update(seq.to_be_bytes());
    CANONICAL.with_borrow_mut(|bytes| {
        bytes.clear();
        entry.write_canonical(bytes);
        h.update(&bytes[..]);
        // A record far larger than most leaves no large buffer behind.
        if bytes.capacity() > 64 << 10 {
            *bytes = Vec::with_capacity(1024);
        }
    });
    h.finalize().into()
}

/// `entries` as a chain of `instance` after `prev`: sequence numbers from `first_seq`, each
/// record linked to the one before (tools, benchmarks and tests that write records
/// themselves).
pub fn link(
    instance: &str,
    first_seq: i64,
    mut prev: [u8; 32],
    entries: impl IntoIterator<Item = AuditEntry>,
) -> Vec<Chained> {
    entries
        .into_iter()
        .zip(first_seq..)
        .map(|(entry, seq)| {
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
    /// The key of [`SubjectKey::short`], derived from the secret.
    short: [u8; 16],
}

impl SubjectKey {
    pub fn new(id: &str, secret: &[u8]) -> SubjectKey {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derived = hmac::sign(&key, b"lienthong short references");
        let mut short = [0; 16];
        short.copy_from_slice(&derived.as_ref()[..16]);
        SubjectKey {
            id: id.to_owned(),
            key,
            short,
        }
    }

    /// A 64-bit keyed reference (SipHash-2-4 under a key derived from the audit key): for
    /// state that needs many references per call and only tells them apart, such as the
    /// sequential rule's buckets. Like [`SubjectKey::reference`], it reveals nothing of the
    /// value without the key.
    pub fn short(&self, parts: &[&[u8]]) -> u64 {
        use std::hash::Hasher;
        let mut h = siphasher::sip::SipHasher24::new_with_key(&self.short);
        for part in parts {
            h.write(&(part.len() as u32).to_le_bytes());
            h.write(part);
        }
        h.finish()
    }

    /// `id:hex` for one dataset's (normalised) key.
    pub fn reference(&self, dataset: &str, key: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(dataset.as_bytes());
        ctx.update(&[0]);
        ctx.update(key.as_bytes());
        let tag = ctx.sign();
        let tag = tag.as_ref();
        // Written straight into its one allocation: this runs on every call.
        let mut hex = [0u8; 2 * ring::digest::MAX_OUTPUT_LEN];
        let hex = &mut hex[..2 * tag.len()];
        let mut out = String::with_capacity(self.id.len() + 1 + hex.len());
        out.push_str(&self.id);
        out.push(':');
        if hex::encode_to_slice(tag, hex).is_ok() {
            out.push_str(std::str::from_utf8(hex).unwrap_or_default());
        }
        out
    }
}

/// The subject keys held: the current one, which makes every new reference, then older
/// ones still held after a rotation, under which earlier records and dossiers are found.
#[derive(Debug)]
pub struct SubjectKeys {
    keys: Vec<SubjectKey>,
}

impl SubjectKeys {
    /// `keys`, the current one first (at least one).
    pub fn new(keys: Vec<SubjectKey>) -> SubjectKeys {
        assert!(!keys.is_empty(), "a current subject key");
        SubjectKeys { keys }
    }

    pub fn current(&self) -> &SubjectKey {
        &self.keys[0]
    }

    /// The reference new records use: under the current key.
    pub fn reference(&self, dataset: &str, key: &str) -> String {
        self.current().reference(dataset, key)
    }

    /// The references under every key held, the current one first: what a report or a
    /// dossier looks a subject up by.
    pub fn references(&self, dataset: &str, key: &str) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.reference(dataset, key))
            .collect()
    }

    /// References under the older keys only (none before a rotation).
    pub fn older_references(&self, dataset: &str, key: &str) -> Vec<String> {
        self.keys[1..]
            .iter()
            .map(|k| k.reference(dataset, key))
            .collect()
    }

    /// The ids of the keys held, the current one first.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
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

/// A witness's signed receipt for a checkpoint: an RFC 3161 time-stamp token, or a
/// countersignature (JSON), kept beside the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub instance: String,
    pub seq: i64,
    /// The witness's configured name.
    pub witness: String,
    /// When the gateway received it.
    pub time_ms: i64,
    pub body: Vec<u8>,
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

pub use crate::domain::date::now_ms;

/// Chains for tests of the stores.
#[cfg(test)]
pub(crate) mod testing {
    use super::{AuditEntry, Chained, link};

    /// `n` fetch records of `instance` from `seq` on, linked to `prev`; each has its own
    /// officer and dossier.
    pub(crate) fn chain(instance: &str, from: i64, n: i64, prev: [u8; 32]) -> Vec<Chained> {
        let entries = (from..from + n).map(|seq| AuditEntry {
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
        });
        link(instance, from, prev, entries)
    }
}

#[cfg(test)]
mod tests;
