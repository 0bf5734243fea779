//! The audit writer: one task per gateway instance owns the chain's head. Requests hand it
//! their records through a bounded queue; it takes every record waiting (up to a batch),
//! chains them, commits them in one transaction (group commit), and only then tells each
//! request its record is durable. The queue is bounded: when it is full the caller is told
//! at once, so memory never grows with a backlog.

use super::record::{AuditEntry, Chained, GENESIS, Signer, SubjectKeys, chain_hash, now_ms};
use super::store::AuditStore;
use crate::config::raw;
use crate::telemetry::metrics::{COUNT_BUCKETS, Histogram, SECONDS_BUCKETS};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long an async commit waits for its group to fill.
const ASYNC_LINGER: Duration = Duration::from_millis(5);
/// How many times a commit lets the runtime's other tasks run before it starts, while each
/// time brings more records: gathering costs a task switch, an fsync saved is worth many.
const GATHER_ROUNDS: usize = 8;

/// Moves the records waiting in the queue into `batch`, up to `max`.
fn drain(rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>, max: usize) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// When a response may leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// After its record is committed (the default).
    Sync,
    /// As soon as its record is queued; a crash can lose what was queued.
    Async,
}

/// How the writer runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterSettings {
    pub durability: Durability,
    /// Serve when the store fails (the gap is recorded when it returns) instead of refusing.
    pub fail_open: bool,
    /// Records that may wait for the writer.
    pub queue_capacity: usize,
    /// Most records in one transaction.
    pub max_batch: usize,
    /// Sign the head at least every this many records…
    pub checkpoint_every: u64,
    /// …and every this long while records keep coming.
    pub checkpoint_interval: Duration,
}

impl Default for WriterSettings {
    fn default() -> Self {
        WriterSettings {
            durability: Durability::Sync,
            fail_open: false,
            queue_capacity: raw::DEFAULT_AUDIT_QUEUE_CAPACITY,
            max_batch: raw::DEFAULT_AUDIT_MAX_BATCH,
            checkpoint_every: raw::DEFAULT_AUDIT_CHECKPOINT_EVERY,
            checkpoint_interval: Duration::from_secs(raw::DEFAULT_AUDIT_CHECKPOINT_INTERVAL_S),
        }
    }
}

/// Why a record was not (yet) committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditFailure {
    #[error("the audit queue is full")]
    Full,
    #[error("the audit store failed: {0}")]
    Store(String),
    #[error("the audit writer has stopped")]
    Stopped,
}

struct Job {
    entry: AuditEntry,
    /// Told the record's sequence number once it is committed.
    ack: Option<oneshot::Sender<Result<i64, AuditFailure>>>,
}

/// Counters of the writer's work (for metrics and tests).
#[derive(Debug)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub records: AtomicU64,
    pub largest_batch: AtomicU64,
    pub failures: AtomicU64,
    pub checkpoints: AtomicU64,
    /// Records waiting in the queue.
    pub backlog: AtomicU64,
    /// Records per commit.
    pub batch_sizes: Histogram,
    /// Time a commit takes.
    pub commit_seconds: Histogram,
}

impl Default for WriterStats {
    fn default() -> Self {
        WriterStats {
            commits: AtomicU64::new(0),
            records: AtomicU64::new(0),
            largest_batch: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            backlog: AtomicU64::new(0),
            batch_sizes: Histogram::new(COUNT_BUCKETS),
            commit_seconds: Histogram::new(SECONDS_BUCKETS),
        }
    }
}

/// The handle requests use.
pub struct AuditLog {
    tx: mpsc::Sender<Job>,
    store: Arc<dyn AuditStore>,
    settings: WriterSettings,
    instance: String,
    /// The subject keys: a reload swaps them (a rotation).
    subjects: std::sync::RwLock<Arc<SubjectKeys>>,
    stats: Arc<WriterStats>,
    /// The key the writer signs its next checkpoint with: a reload swaps it.
    signer: Arc<std::sync::Mutex<Arc<Signer>>>,
    /// Where the writer hands each committed checkpoint, for anchoring.
    feed: Feed,
    /// How far behind anchoring is, per witness.
    anchoring: Arc<super::anchor::AnchorStats>,
}

type Feed = Arc<std::sync::Mutex<Option<mpsc::UnboundedSender<super::record::Checkpoint>>>>;

impl AuditLog {
    /// Reads the chain's head and starts the writer task.
    pub async fn start(
        store: Arc<dyn AuditStore>,
        instance: &str,
        subjects: SubjectKeys,
        signer: Signer,
        settings: WriterSettings,
    ) -> Result<(AuditLog, JoinHandle<()>), AuditFailure> {
        let head = store
            .head(instance)
            .await
            .map_err(|e| AuditFailure::Store(e.0))?
            .unwrap_or((0, GENESIS));
        let (tx, rx) = mpsc::channel(settings.queue_capacity.max(1));
        let store_handle = store.clone();
        let stats = Arc::new(WriterStats::default());
        let signer = Arc::new(std::sync::Mutex::new(Arc::new(signer)));
        let feed: Feed = Arc::default();
        let writer = Writer {
            feed: feed.clone(),
            store,
            instance: instance.to_owned(),
            signer: signer.clone(),
            settings: settings.clone(),
            head,
            since_checkpoint: 0,
            gap: None,
            resync: false,
            stats: stats.clone(),
        };
        let task = tokio::spawn(writer.run(rx));
        Ok((
            AuditLog {
                tx,
                store: store_handle,
                settings,
                instance: instance.to_owned(),
                subjects: std::sync::RwLock::new(Arc::new(subjects)),
                stats,
                signer,
                feed,
                anchoring: Arc::default(),
            },
            task,
        ))
    }

    /// Hands over one record; in `sync` durability, returns once it is committed.
    pub async fn record(&self, entry: AuditEntry) -> Result<(), AuditFailure> {
        self.submit(entry, self.settings.durability == Durability::Sync)
            .await
            .map(|_| ())
    }

    /// Hands over one record and returns its sequence number once it is committed,
    /// whatever the durability (evidence cites the record, so it waits for it).
    pub async fn record_numbered(&self, entry: AuditEntry) -> Result<i64, AuditFailure> {
        self.submit(entry, true).await?.ok_or(AuditFailure::Stopped)
    }

    async fn submit(&self, entry: AuditEntry, wait: bool) -> Result<Option<i64>, AuditFailure> {
        let (ack, committed) = if wait {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.tx.try_send(Job { entry, ack }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => AuditFailure::Full,
            mpsc::error::TrySendError::Closed(_) => AuditFailure::Stopped,
        })?;
        self.stats.backlog.fetch_add(1, Ordering::Relaxed);
        match committed {
            None => Ok(None),
            Some(rx) => rx.await.unwrap_or(Err(AuditFailure::Stopped)).map(Some),
        }
    }

    /// The checkpoints the writer commits from now on, each as it is committed (for
    /// anchoring; one receiver at a time).
    pub fn checkpoint_feed(&self) -> mpsc::UnboundedReceiver<super::record::Checkpoint> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.feed.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        rx
    }

    /// How far behind anchoring is.
    pub fn anchoring(&self) -> &Arc<super::anchor::AnchorStats> {
        &self.anchoring
    }

    /// Signs the checkpoints from now on with `signer` (a rotated signing key, applied by a
    /// reload). Checkpoints already signed keep their key id; the old key's public half
    /// stays in `audit.verify_keys` so that they still verify.
    pub fn rotate_signer(&self, signer: Signer) -> bool {
        let mut current = self.signer.lock().unwrap_or_else(|p| p.into_inner());
        if current.id == signer.id && current.public_key() == signer.public_key() {
            return false;
        }
        tracing::info!(from = %current.id, to = %signer.id, "the audit signing key rotated");
        *current = Arc::new(signer);
        true
    }

    /// Queues a record without waiting for it (for calls cancelled mid-way: nothing was
    /// released, and their record must not be lost with them). Dropped only if the queue is
    /// full.
    pub fn record_detached(&self, entry: AuditEntry) {
        if self.tx.try_send(Job { entry, ack: None }).is_ok() {
            self.stats.backlog.fetch_add(1, Ordering::Relaxed);
        } else {
            tracing::warn!("audit queue full: a cancelled call's record was dropped");
        }
    }

    /// The keyed hash standing for a subject, under the current subject key.
    pub fn subject(&self, dataset: &str, key: &str) -> String {
        // Under the read lock: no count taken on the shared keys on every call.
        self.subjects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .reference(dataset, key)
    }

    /// The store, for queries.
    pub fn store(&self) -> &dyn AuditStore {
        self.store.as_ref()
    }

    /// The subject keys held now, the current one first.
    pub fn subjects(&self) -> Arc<SubjectKeys> {
        self.subjects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Takes the subject keys a new configuration holds; true when they changed.
    pub fn rotate_subjects(&self, keys: SubjectKeys) -> bool {
        let mut current = self.subjects.write().unwrap_or_else(|p| p.into_inner());
        // Same ids and the same secrets (told apart by a reference of a fixed value).
        let probe = |k: &SubjectKeys| (k.ids().join(","), k.references("", "probe"));
        if probe(&current) == probe(&keys) {
            return false;
        }
        *current = Arc::new(keys);
        true
    }

    pub fn fail_open(&self) -> bool {
        self.settings.fail_open
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }
}

struct Writer {
    feed: Feed,
    store: Arc<dyn AuditStore>,
    instance: String,
    signer: Arc<std::sync::Mutex<Arc<Signer>>>,
    settings: WriterSettings,
    /// The last committed record: (seq, hash).
    head: (i64, [u8; 32]),
    since_checkpoint: u64,
    /// Records not committed while failing open: (count, first time, last time).
    gap: Option<(u64, i64, i64)>,
    /// A commit failed: whether it landed is unknown (a connection can drop after the
    /// server committed), so the head is read back from the store before the next one.
    resync: bool,
    stats: Arc<WriterStats>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut ticker = tokio::time::interval(self.settings.checkpoint_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_checkpoint = Instant::now();
        loop {
            let first = tokio::select! {
                job = rx.recv() => match job {
                    Some(job) => job,
                    None => break,
                },
                _ = ticker.tick() => {
                    if self.since_checkpoint > 0
                        && last_checkpoint.elapsed() >= self.settings.checkpoint_interval
                        && self.checkpoint_alone().await
                    {
                        last_checkpoint = Instant::now();
                    }
                    continue;
                }
            };
            let mut batch = vec![first];
            drain(&mut rx, &mut batch, self.settings.max_batch);
            // The calls already running on this runtime are queued behind this task, a few
            // microseconds from their records: let them reach the queue, so that one commit
            // (one fsync) carries them all, as long as each round brings more.
            for _ in 0..GATHER_ROUNDS {
                let before = batch.len();
                if before >= self.settings.max_batch {
                    break;
                }
                tokio::task::yield_now().await;
                drain(&mut rx, &mut batch, self.settings.max_batch);
                if batch.len() == before {
                    break;
                }
            }
            // Nobody waits on an async commit: let the group fill for a moment instead of
            // paying an fsync for every few records.
            if self.settings.durability == Durability::Async {
                let until = Instant::now() + ASYNC_LINGER;
                while batch.len() < self.settings.max_batch {
                    match tokio::time::timeout_at(until, rx.recv()).await {
                        Ok(Some(job)) => batch.push(job),
                        _ => break,
                    }
                }
            }
            self.stats
                .backlog
                .fetch_sub(batch.len() as u64, Ordering::Relaxed);
            if self.commit(batch).await {
                last_checkpoint = Instant::now();
            }
        }
        // Queue closed (shutdown): sign the head so verification sees nothing unsigned.
        if self.since_checkpoint > 0 {
            self.checkpoint_alone().await;
        }
    }

    /// Hands a committed checkpoint to anchoring, if it listens.
    fn anchor(&self, cp: &super::record::Checkpoint) {
        if let Some(tx) = self.feed.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = tx.send(cp.clone());
        }
    }

    fn signer(&self) -> Arc<Signer> {
        self.signer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn chain(&self, seq: i64, prev: [u8; 32], entry: AuditEntry) -> Chained {
        Chained {
            instance: self.instance.clone(),
            seq,
            hash: chain_hash(&prev, &self.instance, seq, &entry),
            prev_hash: prev,
            entry,
        }
    }

    /// Commits a batch; true when it carried a checkpoint.
    async fn commit(&mut self, batch: Vec<Job>) -> bool {
        if self.resync {
            match self.store.head(&self.instance).await {
                Ok(head) => {
                    let head = head.unwrap_or((0, GENESIS));
                    if head != self.head {
                        tracing::warn!(
                            seq = head.0,
                            "a commit reported as failed had landed; continuing from the stored head"
                        );
                    }
                    self.head = head;
                    self.resync = false;
                }
                Err(e) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    self.refuse(batch, e);
                    return false;
                }
            }
        }
        let (mut seq, mut prev) = self.head;
        let mut records = Vec::with_capacity(batch.len() + 1);
        if let Some((count, first, last)) = self.gap {
            seq += 1;
            let gap = AuditEntry {
                time_ms: now_ms(),
                action: "audit_gap".into(),
                outcome: "unrecorded".into(),
                upstream_ms: -1,
                detail: format!(
                    "{count} call(s) served without a record between {first} and {last} (ms since epoch) while the audit store failed"
                ),
                ..AuditEntry::default()
            };
            let r = self.chain(seq, prev, gap);
            prev = r.hash;
            records.push(r);
        }
        let mut acks = Vec::with_capacity(batch.len());
        for job in batch {
            seq += 1;
            let r = self.chain(seq, prev, job.entry);
            prev = r.hash;
            records.push(r);
            acks.push(job.ack.map(|ack| (ack, seq)));
        }
        let due = self.since_checkpoint + records.len() as u64 >= self.settings.checkpoint_every;
        let checkpoint = due.then(|| self.signer().sign(&self.instance, seq, &prev, now_ms()));
        let count = records.len();
        let span = (
            records.first().map(|r| r.entry.time_ms).unwrap_or(0),
            records.last().map(|r| r.entry.time_ms).unwrap_or(0),
        );
        let started = Instant::now();
        let appended = self.store.append(records, checkpoint.as_ref()).await;
        self.stats
            .commit_seconds
            .observe_duration(started.elapsed());
        match appended {
            Ok(()) => {
                self.stats.batch_sizes.observe(count as f64);
                self.head = (seq, prev);
                self.gap = None;
                self.since_checkpoint = if due {
                    0
                } else {
                    self.since_checkpoint + count as u64
                };
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .records
                    .fetch_add(count as u64, Ordering::Relaxed);
                self.stats
                    .largest_batch
                    .fetch_max(count as u64, Ordering::Relaxed);
                if due {
                    self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(cp) = &checkpoint {
                    self.anchor(cp);
                }
                for (ack, seq) in acks.into_iter().flatten() {
                    let _ = ack.send(Ok(seq));
                }
                due
            }
            Err(e) => {
                tracing::error!(error = %e, records = acks.len(), "audit commit failed");
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                self.resync = true;
                self.note_gap(acks.len() as u64, span.0, span.1);
                for (ack, _) in acks.into_iter().flatten() {
                    let _ = ack.send(Err(AuditFailure::Store(e.0.clone())));
                }
                false
            }
        }
    }

    /// Fails a batch that could not be attempted.
    fn refuse(&mut self, batch: Vec<Job>, e: crate::audit::store::StoreError) {
        tracing::error!(error = %e, records = batch.len(), "audit store unreachable");
        let now = now_ms();
        self.note_gap(batch.len() as u64, now, now);
        for job in batch {
            if let Some(ack) = job.ack {
                let _ = ack.send(Err(AuditFailure::Store(e.0.clone())));
            }
        }
    }

    /// When failing open, remembers calls served without a record.
    fn note_gap(&mut self, n: u64, first: i64, last: i64) {
        if self.settings.fail_open {
            self.gap = Some(match self.gap {
                Some((c, f, _)) => (c + n, f, last),
                None => (n, first, last),
            });
        }
    }

    async fn checkpoint_alone(&mut self) -> bool {
        let (seq, hash) = self.head;
        let cp = self.signer().sign(&self.instance, seq, &hash, now_ms());
        match self.store.append(Vec::new(), Some(&cp)).await {
            Ok(()) => {
                self.since_checkpoint = 0;
                self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                self.anchor(&cp);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "audit checkpoint failed");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests;
