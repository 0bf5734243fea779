//! The embedded store's commit path. A group commit is one append to a commit file and one
//! `fdatasync`: no B-tree, no index, no WAL frame on the way to the answer. Behind it,
//! committed records move into the SQLite store in large batches (every second, or sooner
//! when many wait), where their query indexes are built once per batch instead of once per
//! commit. Every read moves what waits first, so it sees every committed record.
//!
//! Files sit next to the database: `audit.db.commits.<n>`, one JSON line per group commit,
//! and `audit.db.commits.lock`, which the owning process holds. A crash leaves commit files
//! behind; the next open moves them in before anything else runs (a torn last line was
//! never acknowledged and is dropped). Another process opening the store while the owner
//! runs (the `audit` commands next to a running server) reads SQLite only: it sees records
//! once they have moved, at most [`MOVE_EVERY`] after their commit.

use super::record::{AuditEntry, Chained, Checkpoint, Signer};
use super::sqlite::SqliteStore;
use super::store::{Archive, AuditStore, Query, StoreError};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Committed records wait at most this long before moving into SQLite…
pub const MOVE_EVERY: Duration = Duration::from_secs(1);
/// …or until this many wait.
const MOVE_AT: usize = 8192;
/// Where calls wait for their commits (`durability = "sync"`), moving runs at a lower CPU
/// priority than calls ([`MOVE_NICE`]), so its bursts do not delay answers. When it falls
/// behind (calls keep the CPU busy), each commit first gives it [`YIELD_FOR`] once this many
/// wait…
const SLOW_AT: usize = 2 * MOVE_AT;
const YIELD_FOR: Duration = Duration::from_millis(1);
/// …and waits for the next move once this many wait. Both only while moves succeed.
const HOLD_AT: usize = 8 * MOVE_AT;
/// While SQLite refuses them, records wait in memory and in their files up to this many;
/// beyond, commits fail, so a broken database shows as an audit failure, not as growth.
const MOST_WAITING: usize = 200_000;
/// The nice value of SQLite's worker threads, which run the moves, behind calls: calls come
/// first when the CPU is short, and the hold at [`HOLD_AT`] bounds how far moving can fall
/// behind. Not with `async` durability: nothing there slows calls to let moves catch up, so
/// moves keep an equal share of the CPU.
const MOVE_NICE: i32 = 10;

pub struct JournaledStore {
    inner: SqliteStore,
    base: PathBuf,
    fsync: bool,
    /// The lock file, held while this store owns the commit files; `None`: another process
    /// owns them, and this one reads SQLite only.
    owner: Option<File>,
    log: tokio::sync::Mutex<Log>,
    /// One move at a time.
    moving: tokio::sync::Mutex<()>,
    wake: Arc<tokio::sync::Notify>,
    /// Signalled after each move, whether it succeeded or not.
    moved: tokio::sync::Notify,
    /// Whether the last move succeeded: commits wait for moves only while they do.
    moves_succeed: std::sync::atomic::AtomicBool,
    /// Moves run behind calls (lower priority, commits yield and hold for them).
    behind_calls: bool,
}

/// Commit files not yet moved into SQLite, oldest first; the last is the one appended to.
struct Log {
    segments: Vec<Segment>,
    next: u64,
}

struct Segment {
    path: PathBuf,
    /// Open for appending while this is the current segment.
    file: Option<Arc<File>>,
    /// Bytes of whole frames: a failed append is cut back to this.
    len: u64,
    records: Vec<Chained>,
    checkpoints: Vec<Checkpoint>,
}

/// One group commit as a line of a commit file.
#[derive(Deserialize)]
struct Frame {
    records: Vec<FrameRecord>,
    #[serde(default)]
    checkpoint: Option<FrameCheckpoint>,
}

#[derive(Deserialize)]
struct FrameRecord {
    instance: String,
    seq: i64,
    prev_hash: String,
    hash: String,
    entry: AuditEntry,
}

/// A frame as written: the same shape, borrowing the records instead of copying them.
#[derive(Serialize)]
struct FrameOut<'a> {
    records: Vec<FrameRecordOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<FrameCheckpoint>,
}

#[derive(Serialize)]
struct FrameRecordOut<'a> {
    instance: &'a str,
    seq: i64,
    prev_hash: String,
    hash: String,
    entry: &'a AuditEntry,
}

#[derive(Serialize, Deserialize)]
struct FrameCheckpoint {
    instance: String,
    seq: i64,
    hash: String,
    time_ms: i64,
    key_id: String,
    signature: String,
}

/// A commit-file line that is not a whole commit.
#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("not a 32-byte hex hash: {0:?}")]
    Hash(String),
    #[error("a checkpoint's signature is not hex: {0}")]
    Signature(#[from] hex::FromHexError),
}

fn unhex32(s: &str) -> Result<[u8; 32], FrameError> {
    hex::decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| FrameError::Hash(s.to_owned()))
}

impl Frame {
    fn encode(records: &[Chained], checkpoint: Option<&Checkpoint>) -> Vec<u8> {
        let frame = FrameOut {
            records: records
                .iter()
                .map(|r| FrameRecordOut {
                    instance: &r.instance,
                    seq: r.seq,
                    prev_hash: hex::encode(r.prev_hash),
                    hash: hex::encode(r.hash),
                    entry: &r.entry,
                })
                .collect(),
            checkpoint: checkpoint.map(|c| FrameCheckpoint {
                instance: c.instance.clone(),
                seq: c.seq,
                hash: hex::encode(c.hash),
                time_ms: c.time_ms,
                key_id: c.key_id.clone(),
                signature: hex::encode(&c.signature),
            }),
        };
        let mut line = serde_json::to_vec(&frame).expect("a frame serialises");
        line.push(b'\n');
        line
    }

    fn decode(line: &[u8]) -> Result<(Vec<Chained>, Option<Checkpoint>), FrameError> {
        let frame: Frame = serde_json::from_slice(line)?;
        let records = frame
            .records
            .into_iter()
            .map(|r| {
                Ok(Chained {
                    instance: r.instance,
                    seq: r.seq,
                    prev_hash: unhex32(&r.prev_hash)?,
                    hash: unhex32(&r.hash)?,
                    entry: r.entry,
                })
            })
            .collect::<Result<Vec<_>, FrameError>>()?;
        let checkpoint = frame
            .checkpoint
            .map(|c| {
                Ok::<_, FrameError>(Checkpoint {
                    instance: c.instance,
                    seq: c.seq,
                    hash: unhex32(&c.hash)?,
                    time_ms: c.time_ms,
                    key_id: c.key_id,
                    signature: hex::decode(&c.signature)?,
                })
            })
            .transpose()?;
        Ok((records, checkpoint))
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError(format!("cannot {what} {}: {e}", path.display()))
}

impl JournaledStore {
    /// Opens the SQLite file and its commit files. When no other process owns them, moves
    /// what a previous run left into SQLite, then starts moving new commits in the
    /// background; `behind_calls` when callers wait for their commits (sync durability):
    /// moves then run at a lower CPU priority, and commits make room for them when they fall
    /// behind.
    pub async fn open(
        path: &Path,
        fsync: bool,
        behind_calls: bool,
    ) -> Result<Arc<JournaledStore>, StoreError> {
        let inner = SqliteStore::open(path, fsync).await?;
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
        let store = Arc::new(JournaledStore {
            inner,
            base,
            fsync,
            owner,
            log: tokio::sync::Mutex::new(Log {
                segments: Vec::new(),
                next: 1,
            }),
            moving: tokio::sync::Mutex::new(()),
            wake: Arc::new(tokio::sync::Notify::new()),
            moved: tokio::sync::Notify::new(),
            moves_succeed: std::sync::atomic::AtomicBool::new(true),
            behind_calls,
        });
        if owned {
            store.recover().await?;
            tokio::spawn(mover(Arc::downgrade(&store), store.wake.clone()));
        }
        Ok(store)
    }

    /// Whether this store owns the commit files (and so may commit).
    pub fn owns(&self) -> bool {
        self.owner.is_some()
    }

    /// The SQLite store underneath (tests tamper with it).
    pub fn sqlite(&self) -> &SqliteStore {
        &self.inner
    }

    /// Commit files present, in order.
    fn files(&self) -> Result<Vec<(u64, PathBuf)>, StoreError> {
        let dir = match self.base.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let prefix = format!(
            "{}.commits.",
            self.base
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        );
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| io("list", &dir, e))? {
            let entry = entry.map_err(|e| io("list", &dir, e))?;
            let name = entry.file_name();
            if let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(|n| n.parse::<u64>().ok())
            {
                files.push((n, entry.path()));
            }
        }
        files.sort();
        Ok(files)
    }

    /// Reads the commit files a previous run left and moves their records into SQLite.
    async fn recover(&self) -> Result<(), StoreError> {
        let files = self.files()?;
        let mut log = self.log.lock().await;
        for (i, (number, path)) in files.iter().enumerate() {
            let text = std::fs::read(path).map_err(|e| io("read", path, e))?;
            let mut segment = Segment {
                path: path.clone(),
                file: None,
                len: 0,
                records: Vec::new(),
                checkpoints: Vec::new(),
            };
            let last_file = i + 1 == files.len();
            let mut lines = text.split_inclusive(|b| *b == b'\n').peekable();
            while let Some(line) = lines.next() {
                let whole = line.ends_with(b"\n");
                match Frame::decode(line) {
                    Ok((records, checkpoint)) if whole => {
                        segment.records.extend(records);
                        segment.checkpoints.extend(checkpoint);
                    }
                    // A torn end: that commit never finished, so it was never acknowledged.
                    _ if last_file && lines.peek().is_none() => {
                        tracing::warn!(file = %path.display(), "dropping a torn last commit (never acknowledged)");
                    }
                    _ => {
                        return Err(StoreError(format!(
                            "the audit commit file {} is damaged: a line in its middle does not read; \
                             keep the file for inspection and move it away to start",
                            path.display()
                        )));
                    }
                }
            }
            log.next = log.next.max(number + 1);
            log.segments.push(segment);
        }
        // Records a crash left both in a file and in SQLite (moved, file not yet removed)
        // move once.
        let mut heads = std::collections::HashMap::new();
        for segment in &mut log.segments {
            let mut kept = Vec::with_capacity(segment.records.len());
            for r in std::mem::take(&mut segment.records) {
                if !heads.contains_key(&r.instance) {
                    let head = self.inner.head(&r.instance).await?.map_or(0, |h| h.0);
                    heads.insert(r.instance.clone(), head);
                }
                if r.seq > heads[&r.instance] {
                    kept.push(r);
                }
            }
            segment.records = kept;
        }
        let waiting: usize = log.segments.iter().map(|s| s.records.len()).sum();
        drop(log);
        if waiting > 0 {
            tracing::info!(
                records = waiting,
                "moving audit records committed before the last stop into the store"
            );
        }
        self.move_in().await
    }

    /// Moves every committed record waiting into SQLite, in one transaction, then removes
    /// the files they came from.
    async fn move_in(&self) -> Result<(), StoreError> {
        if self.owner.is_none() {
            return Ok(());
        }
        let _one = self.moving.lock().await;
        // Every segment, the current one too (the next commit opens a new file). A segment
        // open for appending always holds a commit; one without any (its records already in
        // SQLite, or its only append failed) goes too, so its file is removed.
        let mut taken = std::mem::take(&mut self.log.lock().await.segments);
        if taken.is_empty() {
            return Ok(());
        }
        // Moved out, not copied; on failure they go back into the first segment taken.
        let records: Vec<Chained> = taken
            .iter_mut()
            .flat_map(|s| std::mem::take(&mut s.records))
            .collect();
        let checkpoints: Vec<Checkpoint> = taken
            .iter_mut()
            .flat_map(|s| std::mem::take(&mut s.checkpoints))
            .collect();
        let moved = if records.is_empty() && checkpoints.is_empty() {
            Ok(())
        } else {
            self.inner.append_all(&records, &checkpoints).await
        };
        self.moves_succeed
            .store(moved.is_ok(), std::sync::atomic::Ordering::Relaxed);
        // Commits held for this move go on, or, if it failed, stop waiting for moves.
        self.moved.notify_waiters();
        match moved {
            Ok(()) => {
                // Tens of thousands of records: freed on a blocking thread, not between calls.
                tokio::task::spawn_blocking(move || drop(records));
                for segment in taken {
                    drop(segment.file);
                    if let Err(e) = std::fs::remove_file(&segment.path)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::warn!(file = %segment.path.display(), error = %e, "cannot remove a moved audit commit file");
                    }
                }
                Ok(())
            }
            Err(e) => {
                // Still durable in their files: put them back, oldest first, and retry later.
                if let Some(first) = taken.first_mut() {
                    first.records = records;
                    first.checkpoints = checkpoints;
                }
                let mut log = self.log.lock().await;
                let mut back: Vec<Segment> = taken
                    .into_iter()
                    .map(|mut s| {
                        s.file = None;
                        s
                    })
                    .collect();
                back.append(&mut log.segments);
                log.segments = back;
                Err(e)
            }
        }
    }
}

/// `audit.db` → `audit.db.commits.<suffix>`.
fn sibling(base: &Path, suffix: &str) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    name.push(format!(".commits.{suffix}"));
    PathBuf::from(name)
}

/// Moves commits into SQLite every [`MOVE_EVERY`], or sooner when woken, while the store
/// lives.
async fn mover(store: Weak<JournaledStore>, wake: Arc<tokio::sync::Notify>) {
    loop {
        let _ = tokio::time::timeout(MOVE_EVERY, wake.notified()).await;
        let Some(s) = store.upgrade() else { return };
        // SQLite opens connections (each a thread) as it needs them: lower any new one.
        if s.behind_calls {
            lower_sqlite_threads();
        }
        if let Err(e) = s.move_in().await {
            tracing::error!(error = %e, "audit records could not move into the store; they stay in the commit files");
        }
    }
}

/// Lowers the CPU priority of SQLite's worker threads (named `sqlx-sqlite-worker-<n>`) to
/// [`MOVE_NICE`]: the audit store's, and the registry's, whose rare admin writes can wait as
/// well. Best effort: where threads cannot be listed or reniced, moves run at the calls'
/// priority, as everywhere but Linux.
fn lower_sqlite_threads() {
    #[cfg(target_os = "linux")]
    {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return;
        };
        for task in tasks.flatten() {
            let is_sqlite = std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with("sqlx-sqlite"));
            let tid = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<i32>().ok());
            if let (true, Some(pid)) = (is_sqlite, tid.and_then(rustix::process::Pid::from_raw))
                && rustix::process::getpriority_process(Some(pid)) != Ok(MOVE_NICE)
                && let Err(e) = rustix::process::setpriority_process(Some(pid), MOVE_NICE)
            {
                tracing::debug!(error = %e, "cannot lower an audit store thread's priority");
            }
        }
    }
}

#[async_trait]
impl AuditStore for JournaledStore {
    fn owned(&self) -> bool {
        self.owns()
    }

    async fn head(&self, instance: &str) -> Result<Option<(i64, [u8; 32])>, StoreError> {
        self.move_in().await?;
        self.inner.head(instance).await
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
        let line = Frame::encode(&records, checkpoint);
        let mut log = self.log.lock().await;
        let mut waiting: usize = log.segments.iter().map(|s| s.records.len()).sum();
        let mut yielded = false;
        while self.behind_calls
            && waiting >= SLOW_AT
            && !(yielded && waiting < HOLD_AT)
            && self
                .moves_succeed
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            let moved = self.moved.notified();
            drop(log);
            self.wake.notify_one();
            if waiting >= HOLD_AT {
                moved.await;
            } else {
                tokio::time::sleep(YIELD_FOR).await;
                yielded = true;
            }
            log = self.log.lock().await;
            waiting = log.segments.iter().map(|s| s.records.len()).sum();
        }
        if waiting >= MOST_WAITING {
            return Err(StoreError(format!(
                "{waiting} committed audit records cannot move into {}; no more are taken until they do",
                self.base.display()
            )));
        }
        if log.segments.last().is_none_or(|s| s.file.is_none()) {
            let number = log.next;
            let path = sibling(&self.base, &number.to_string());
            let file = File::options()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| io("create", &path, e))?;
            log.next += 1;
            log.segments.push(Segment {
                path,
                file: Some(Arc::new(file)),
                len: 0,
                records: Vec::new(),
                checkpoints: Vec::new(),
            });
        }
        let segment = log.segments.last_mut().expect("a current segment");
        let file = segment.file.clone().expect("the current segment is open");
        let (len, fsync) = (segment.len, self.fsync);
        let written = tokio::task::spawn_blocking(move || {
            let mut f = &*file;
            let result = f
                .write_all(&line)
                .and_then(|()| if fsync { file.sync_data() } else { Ok(()) });
            // Cut a half-written frame off, so the file stays whole frames.
            result
                .map(|()| line.len() as u64)
                .inspect_err(|_| drop(file.set_len(len)))
        })
        .await
        .map_err(|e| StoreError(format!("audit commit: {e}")))?;
        match written {
            Ok(n) => {
                segment.len += n;
                let moving = waiting + records.len() >= MOVE_AT;
                segment.records.extend(records);
                segment.checkpoints.extend(checkpoint.cloned());
                if moving {
                    self.wake.notify_one();
                }
                Ok(())
            }
            Err(e) => {
                // Whether the cut worked is unknown: the next commit starts a new file.
                segment.file = None;
                Err(io("append to", &segment.path, e))
            }
        }
    }

    async fn append_at_head(
        &self,
        instance: &str,
        entry: &AuditEntry,
        signer: Option<&Signer>,
    ) -> Result<Chained, StoreError> {
        self.move_in().await?;
        self.inner.append_at_head(instance, entry, signer).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn instances(&self) -> Result<Vec<String>, StoreError> {
        self.move_in().await?;
        self.inner.instances().await
    }

    async fn count(&self, instance: &str) -> Result<i64, StoreError> {
        self.move_in().await?;
        self.inner.count(instance).await
    }

    async fn scan(
        &self,
        instance: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Chained>, StoreError> {
        self.move_in().await?;
        self.inner.scan(instance, after, limit).await
    }

    async fn checkpoints(&self, instance: &str) -> Result<Vec<Checkpoint>, StoreError> {
        self.move_in().await?;
        self.inner.checkpoints(instance).await
    }

    async fn query(&self, query: &Query) -> Result<Vec<Chained>, StoreError> {
        self.move_in().await?;
        self.inner.query(query).await
    }

    async fn archives(&self, instance: &str) -> Result<Vec<Archive>, StoreError> {
        self.move_in().await?;
        self.inner.archives(instance).await
    }

    async fn expired(
        &self,
        instance: &str,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<Chained>, StoreError> {
        self.move_in().await?;
        self.inner.expired(instance, before_ms, limit).await
    }

    async fn archived(&self, archive: &Archive) -> Result<(), StoreError> {
        self.move_in().await?;
        self.inner.archived(archive).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.move_in().await?;
        self.inner.flush().await
    }
}

#[cfg(test)]
mod tests;
