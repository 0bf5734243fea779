//! Where audit records are kept. The writer, `audit verify` and the queries see only this
//! trait; SQLite is the embedded default and PostgreSQL drops in beside it.

use super::record::{AuditEntry, Chained, Checkpoint, Receipt, Signer};
use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit store: {0}")]
pub struct StoreError(pub String);

impl StoreError {
    pub fn from(e: impl std::fmt::Display) -> StoreError {
        StoreError(e.to_string())
    }
}

/// Filters of an audit query; all that are set must hold. Newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Subject references, any of which a record's subject may be (one subject under each
    /// subject key held); empty: any subject.
    pub subjects: Vec<String>,
    /// A person's keyed references (one under each key held): records whose subject one
    /// is, or in whose disclosed fields one appears (format version 2); empty: anyone.
    pub persons: Vec<String>,
    pub dataset: Option<String>,
    pub actor: Option<String>,
    pub dossier_id: Option<String>,
    pub officer_id: Option<String>,
    pub outcome: Option<String>,
    /// Inclusive bounds, Unix milliseconds.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Continue after this record (time, instance, seq) of a previous page.
    pub after: Option<(i64, String, i64)>,
    pub limit: usize,
}

/// The last archive of a chain: records up to `seq` were moved out; `hash` was the hash of
/// record `seq`, so the first remaining record must link to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub instance: String,
    pub first_seq: i64,
    pub last_seq: i64,
    pub last_hash: [u8; 32],
    /// Where the archive file was written, and its SHA-256.
    pub file: String,
    pub file_hash: [u8; 32],
    pub time_ms: i64,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// The last record of a chain, as (seq, hash); `None` when the chain is empty (or was
    /// archived whole: then the last archive's end).
    async fn head(&self, instance: &str) -> Result<Option<(i64, [u8; 32])>, StoreError>;

    /// Appends records (already chained to the head) and a checkpoint, all or nothing. The
    /// records are handed over: a store that keeps them (the commit log) need not copy them.
    async fn append(
        &self,
        records: Vec<Chained>,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), StoreError>;

    /// Appends one record at the chain's head as read inside the same transaction, for
    /// writers that share a chain with others (each `audit` command run), and signs the new
    /// head when a signer is given.
    async fn append_at_head(
        &self,
        instance: &str,
        entry: &AuditEntry,
        signer: Option<&Signer>,
    ) -> Result<Chained, StoreError>;

    /// Whether the store can take a write now (for readiness).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Whether this process owns the store's commit path; `false` for a SQLite store that a
    /// running gateway serves, which this process then reads up to a second late.
    fn owned(&self) -> bool {
        true
    }

    /// Chains present.
    async fn instances(&self) -> Result<Vec<String>, StoreError>;

    /// Records held for a chain.
    async fn count(&self, instance: &str) -> Result<i64, StoreError>;

    /// Up to `limit` records of a chain with `seq > after`, in order.
    async fn scan(
        &self,
        instance: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Chained>, StoreError>;

    /// A chain's checkpoints, in order.
    async fn checkpoints(&self, instance: &str) -> Result<Vec<Checkpoint>, StoreError>;

    async fn query(&self, query: &Query) -> Result<Vec<Chained>, StoreError>;

    /// The chain's archives, oldest first.
    async fn archives(&self, instance: &str) -> Result<Vec<Archive>, StoreError>;

    /// Records of a chain older than `before_ms`, in order, up to `limit`.
    async fn expired(
        &self,
        instance: &str,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<Chained>, StoreError>;

    /// Notes an archive and removes the records it holds (and their checkpoints), at once.
    async fn archived(&self, archive: &Archive) -> Result<(), StoreError>;

    /// The witnesses' receipts for a chain's checkpoints.
    async fn receipts(&self, instance: &str) -> Result<Vec<Receipt>, StoreError> {
        let _ = instance;
        Ok(Vec::new())
    }

    /// Keeps a witness's receipt beside its checkpoint (a second one for the same
    /// checkpoint and witness replaces nothing: the first stays).
    async fn add_receipt(&self, receipt: &Receipt) -> Result<(), StoreError> {
        let _ = receipt;
        Err(StoreError("this store keeps no receipts".into()))
    }

    /// Indexes built from the records that no longer match them (rebuilt and compared):
    /// one line each. A store whose indexes are its database's own has none.
    async fn indexes_differ(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    /// Moves everything committed to its final place (the commit log's records into
    /// SQLite, SQLite's write-ahead log into the database file), at a graceful stop; a store
    /// that writes in place has nothing to do.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
