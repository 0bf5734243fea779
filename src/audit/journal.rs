//! The embedded audit store. What the gateway commits goes to the segment store
//! ([`crate::audit::segments`]): a group commit is one append and one `fdatasync`, and each
//! segment is indexed once, when it is sealed, behind the calls. The SQLite file beside it
//! keeps the rest: records written before segments existed (a chain continues from them
//! into the segments), the chains the `audit` commands write for their own reads (rare,
//! and from other processes), and the archives' list. Reads see both, as one store.
//!
//! `audit.db.commits.lock`, next to the SQLite file, is held by the process that owns the
//! segments. Another process (the `audit` commands beside a running gateway) reads the same
//! files and sees each commit once it is acknowledged, but does not append to them.

mod legacy;

use super::record::{AuditEntry, Chained, Checkpoint, Signer};
use super::segments::{Archived, Segments};
use super::sqlite::SqliteStore;
use super::store::{Archive, AuditStore, Query, StoreError};
use async_trait::async_trait;
use std::cmp::Reverse;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub struct JournaledStore {
    sqlite: SqliteStore,
    segments: Arc<Segments>,
    base: PathBuf,
    /// The lock file, held while this store owns the segments; `None`: another process
    /// owns them, and this one reads.
    owner: Option<File>,
    /// The highest archived sequence number per chain (from the archives' list).
    archived: RwLock<Archived>,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError(format!("cannot {what} {}: {e}", path.display()))
}

impl JournaledStore {
    /// Opens the SQLite file and the segments beside it. When no other process owns them:
    /// moves what an earlier version's commit files hold into SQLite, cuts a torn commit
    /// off the newest segment, indexes what a crash left unindexed, and starts sealing;
    /// `behind_calls` (callers wait for their commits) lowers the sealing thread's
    /// priority.
    pub async fn open(
        path: &Path,
        fsync: bool,
        behind_calls: bool,
    ) -> Result<Arc<JournaledStore>, StoreError> {
        let sqlite = SqliteStore::open(path, fsync).await?;
        let base = path.to_path_buf();
        let lock_path = sibling(&base, "lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("open", &lock_path, e))?;
        let owner = match lock.try_lock() {
            Ok(()) => Some(lock),
            Err(std::fs::TryLockError::WouldBlock) => None,
            Err(std::fs::TryLockError::Error(e)) => return Err(io("lock", &lock_path, e)),
        };
        let owned = owner.is_some();
        if owned {
            legacy::recover(&sqlite, &base).await?;
        }
        let dir = Segments::dir_of(&base);
        let segments =
            tokio::task::spawn_blocking(move || Segments::open(&dir, fsync, owned, behind_calls))
                .await
                .map_err(|e| StoreError(format!("audit store: {e}")))??;
        let archived = sqlite.archived_through().await?;
        Ok(Arc::new(JournaledStore {
            sqlite,
            segments: Arc::new(segments),
            base,
            owner,
            archived: RwLock::new(archived),
        }))
    }

    /// Whether this store owns the segments (and so may commit).
    pub fn owns(&self) -> bool {
        self.owner.is_some()
    }

    /// The SQLite store beside the segments (tests tamper with it).
    pub fn sqlite(&self) -> &SqliteStore {
        &self.sqlite
    }

    /// Runs a read of the segments on a blocking thread (they read files).
    async fn segments<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Segments, &Archived) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let segments = self.segments.clone();
        let archived = self.archived.read().expect("archived").clone();
        tokio::task::spawn_blocking(move || read(&segments, &archived))
            .await
            .map_err(|e| StoreError(format!("audit store: {e}")))?
    }
}

/// The highest archived sequence number of a chain (0: nothing archived).
fn through(archived: &Archived, instance: &str) -> i64 {
    archived.get(instance).copied().unwrap_or(0)
}

/// `audit.db` → `audit.db.commits.<suffix>`.
/// The lock a process serving the store at `base` holds (`<base>.commits.lock`).
pub fn lock_path(base: &Path) -> PathBuf {
    sibling(base, "lock")
}

fn sibling(base: &Path, suffix: &str) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    name.push(format!(".commits.{suffix}"));
    PathBuf::from(name)
}

#[async_trait]
impl AuditStore for JournaledStore {
    fn owned(&self) -> bool {
        self.owns()
    }

    async fn head(&self, instance: &str) -> Result<Option<(i64, [u8; 32])>, StoreError> {
        let name = instance.to_owned();
        match self.segments(move |s, _| s.head(&name)).await? {
            Some(head) => Ok(Some(head)),
            None => self.sqlite.head(instance).await,
        }
    }

    async fn append(
        &self,
        records: Vec<Chained>,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), StoreError> {
        if self.owner.is_none() {
            return Err(StoreError(format!(
                "another process owns the audit store {} (it holds {})",
                self.base.display(),
                sibling(&self.base, "lock").display()
            )));
        }
        self.segments.append(&records, checkpoint).await
    }

    async fn append_at_head(
        &self,
        instance: &str,
        entry: &AuditEntry,
        signer: Option<&Signer>,
    ) -> Result<Chained, StoreError> {
        let name = instance.to_owned();
        if self.segments(move |s, _| s.head(&name)).await?.is_some() {
            return Err(StoreError(format!(
                "the chain {instance} continues in the audit segments; only their owner appends to it"
            )));
        }
        self.sqlite.append_at_head(instance, entry, signer).await
    }

    /// Whether commits can be taken: the segments' directory takes a new file. SQLite
    /// (archives, the commands' chains) is not on the commit path.
    async fn ping(&self) -> Result<(), StoreError> {
        self.segments(|s, _| s.probe()).await
    }

    async fn instances(&self) -> Result<Vec<String>, StoreError> {
        let mut all = self.segments(|s, _| s.instances()).await?;
        all.extend(self.sqlite.instances().await?);
        Ok(all.into_iter().collect())
    }

    async fn count(&self, instance: &str) -> Result<i64, StoreError> {
        let name = instance.to_owned();
        let here = self
            .segments(move |s, a| s.count(&name, through(a, &name)))
            .await?;
        Ok(here + self.sqlite.count(instance).await?)
    }

    async fn scan(
        &self,
        instance: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Chained>, StoreError> {
        // A chain's older part may be in SQLite (written before segments), its newer part
        // in the segments.
        let mut out = self.sqlite.scan(instance, after, limit).await?;
        if out.len() < limit {
            let from = out.last().map_or(after, |r| r.seq);
            let (name, rest) = (instance.to_owned(), limit - out.len());
            out.extend(
                self.segments(move |s, a| s.scan(&name, from.max(through(a, &name)), rest))
                    .await?,
            );
        }
        Ok(out)
    }

    async fn checkpoints(&self, instance: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let mut all = self.sqlite.checkpoints(instance).await?;
        let name = instance.to_owned();
        all.extend(
            self.segments(move |s, a| s.checkpoints(&name, through(a, &name)))
                .await?,
        );
        all.sort_by_key(|c| c.seq);
        all.dedup_by_key(|c| c.seq);
        Ok(all)
    }

    async fn query(&self, query: &Query) -> Result<Vec<Chained>, StoreError> {
        let mut all = self.sqlite.query(query).await?;
        let q = query.clone();
        all.extend(
            self.segments(move |s, archived| s.query(&q, archived))
                .await?,
        );
        all.sort_by_cached_key(|r| (Reverse(r.entry.time_ms), r.instance.clone(), Reverse(r.seq)));
        all.truncate(query.limit);
        Ok(all)
    }

    async fn archives(&self, instance: &str) -> Result<Vec<Archive>, StoreError> {
        self.sqlite.archives(instance).await
    }

    async fn receipts(&self, instance: &str) -> Result<Vec<super::record::Receipt>, StoreError> {
        self.sqlite.receipts(instance).await
    }

    async fn add_receipt(&self, receipt: &super::record::Receipt) -> Result<(), StoreError> {
        self.sqlite.add_receipt(receipt).await
    }

    async fn expired(
        &self,
        instance: &str,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<Chained>, StoreError> {
        // From the chain's start, up to the first record still in retention: a chain is
        // archived from its start, never with holes.
        let mut records = self.scan(instance, 0, limit).await?;
        if let Some(kept) = records.iter().position(|r| r.entry.time_ms >= before_ms) {
            records.truncate(kept);
        }
        Ok(records)
    }

    async fn archived(&self, archive: &Archive) -> Result<(), StoreError> {
        self.sqlite.archived(archive).await?;
        {
            let mut archived = self.archived.write().expect("archived");
            let through = archived.entry(archive.instance.clone()).or_insert(0);
            *through = (*through).max(archive.last_seq);
        }
        if self.owns() {
            let removed = self
                .segments(|s, archived| s.remove_archived(archived))
                .await?;
            if removed > 0 {
                tracing::info!(
                    segments = removed,
                    "removed audit segments holding only archived records"
                );
            }
        }
        Ok(())
    }

    async fn indexes_differ(&self) -> Result<Vec<String>, StoreError> {
        self.segments(|s, _| s.indexes_differ()).await
    }

    /// Seals the current segment (indexed before the stop ends; the next commit starts a
    /// new one) and folds SQLite's write-ahead log into its file.
    async fn flush(&self) -> Result<(), StoreError> {
        self.segments.seal_current().await?;
        self.sqlite.flush().await
    }
}

#[cfg(test)]
mod tests;
