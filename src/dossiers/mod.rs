//! The dossier register: the dossiers a one-stop system declared when it received them, with
//! the subjects (citizens, enterprises, parcels) each concerns, so that a lookup under a grant
//! with `binding = "declared"` can be held to a real, open dossier and its subjects.
//!
//! A dossier is keyed by (consumer, dossier id): only the consumer that declared it sees or
//! changes it. Subjects are kept as the audit trail keeps them, as keyed references
//! (`key id:HMAC(dataset NUL key)`), never the raw key, so the register holds no personal
//! data in the clear. A dossier is closed once, with its result; one never closed expires
//! after `dossiers.expire_days`. Closed and expired dossiers stay readable for the audit
//! retention period, then are purged.
//!
//! Storage sits beside the registry: a SQLite file (the embedded default and the demo) or
//! the PostgreSQL schema every replica shares. Each replica caches open dossiers for
//! `dossiers.cache_ms`; a change made on one replica is forgotten at once there and
//! announced to the others over Redis (when `[redis]` is set), so the cache bounds how long a
//! closure can go unseen only when an announcement is lost.

/// Runs the same code on either pool (the SQL is written for both).
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            Store::Sqlite($pool) => $body,
            Store::Postgres($pool) => $body,
        }
    };
}

mod alerts;
mod store;

pub use alerts::{Alert, AlertFilter, AlertPage};
use std::sync::Arc;
use std::time::Duration;
pub use store::Store;

/// Settings of the register (`[dossiers]`).
#[derive(Debug, Clone, PartialEq)]
pub struct DossierSettings {
    /// The SQLite file (unused when the storage is PostgreSQL).
    pub path: std::path::PathBuf,
    /// A dossier never closed expires this long after it was received.
    pub expire_after: Duration,
    /// Most subjects a dossier holds at once.
    pub max_subjects: usize,
    /// How long a replica trusts its cached copy of a dossier (an absence included).
    pub cache_ttl: Duration,
    /// How often expired dossiers are marked and old closed ones purged.
    pub sweep_every: Duration,
}

impl Default for DossierSettings {
    fn default() -> Self {
        DossierSettings {
            path: "data/dossiers.db".into(),
            expire_after: Duration::from_secs(90 * 86_400),
            max_subjects: 50,
            cache_ttl: Duration::from_secs(2),
            sweep_every: Duration::from_secs(60),
        }
    }
}

/// The register's settings from `[dossiers]`, every mistake named.
pub fn from_settings(
    source: &crate::config::Source,
    raw: &crate::config::raw::RawDossiers,
    e: &mut crate::config::Errors<'_>,
) -> DossierSettings {
    for (key, value) in [
        ("dossiers.expire_days", raw.expire_days),
        ("dossiers.max_subjects", raw.max_subjects as u64),
        ("dossiers.sweep_interval_ms", raw.sweep_interval_ms),
    ] {
        if value == 0 {
            e.add(key, "must be at least 1");
        }
    }
    if raw.expire_days > 36_500 {
        e.add("dossiers.expire_days", "at most 36500 (a century)");
    }
    if raw.max_subjects > 10_000 {
        e.add("dossiers.max_subjects", "at most 10000");
    }
    if raw.cache_ms > 600_000 {
        e.add(
            "dossiers.cache_ms",
            "at most 600000: a closure must reach every replica within it",
        );
    }
    DossierSettings {
        path: source.resolve_disk(&raw.path).into(),
        expire_after: Duration::from_secs(raw.expire_days.saturating_mul(86_400)),
        max_subjects: raw.max_subjects,
        cache_ttl: Duration::from_millis(raw.cache_ms),
        sweep_every: Duration::from_millis(raw.sweep_interval_ms.max(1)),
    }
}

/// Where a dossier stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open,
    Closed,
    /// Never closed, and past its expiry.
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Closed => "closed",
            Status::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Status {
        match s {
            "open" => Status::Open,
            "closed" => Status::Closed,
            _ => Status::Expired,
        }
    }
}

/// How a dossier ended.
pub const RESULTS: [&str; 4] = ["approved", "refused", "withdrawn", "transferred"];

/// One subject of a dossier, current or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub dataset: String,
    /// The keyed reference (as in the audit trail), never the key.
    pub reference: String,
    pub added_ms: i64,
    pub added_reason: String,
    /// When it was removed as declared by mistake; `None` while it is a subject.
    pub removed_ms: Option<i64>,
    pub removed_reason: String,
}

/// A dossier as the register holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dossier {
    pub consumer: String,
    pub dossier_id: String,
    pub procedure_code: String,
    /// The officer who received it; empty when not given.
    pub officer_id: String,
    pub received_ms: i64,
    pub declared_ms: i64,
    pub expires_ms: i64,
    pub status: Status,
    /// approved, refused, withdrawn, transferred; `expired`; empty while open.
    pub result: String,
    /// When it was closed or expired; `None` while open.
    pub closed_ms: Option<i64>,
    /// Every subject ever declared, in order, removed ones included.
    pub subjects: Vec<Subject>,
}

impl Dossier {
    /// Open at `now_ms`: not closed, and not past its expiry (whether or not the sweep has
    /// marked it yet).
    pub fn open_at(&self, now_ms: i64) -> bool {
        self.status == Status::Open && now_ms < self.expires_ms
    }

    /// The status at `now_ms`, counting an unswept expiry.
    pub fn status_at(&self, now_ms: i64) -> Status {
        match self.status {
            Status::Open if now_ms >= self.expires_ms => Status::Expired,
            s => s,
        }
    }

    /// Whether `reference` is among the current subjects.
    pub fn holds(&self, reference: &str) -> bool {
        self.current().any(|s| s.reference == reference)
    }

    /// The subjects not removed.
    pub fn current(&self) -> impl Iterator<Item = &Subject> {
        self.subjects.iter().filter(|s| s.removed_ms.is_none())
    }
}

/// A declaration, checked by the core (ids, procedure, keys turned into references).
#[derive(Debug, Clone)]
pub struct NewDossier {
    pub consumer: String,
    pub dossier_id: String,
    pub procedure_code: String,
    pub officer_id: String,
    pub received_ms: i64,
    /// (dataset, reference), distinct.
    pub subjects: Vec<(String, String)>,
}

/// What a declaration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Declared {
    /// A new dossier.
    Created(Dossier),
    /// The same declaration again (a retry): nothing changed.
    Unchanged(Dossier),
}

/// Why the register refused a change or could not answer.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("dossier {0:?} was not declared by this consumer")]
    Unknown(String),
    #[error("dossier {id:?} is {status} and can no longer change")]
    Ended { id: String, status: &'static str },
    #[error(
        "dossier {0:?} is already declared by this consumer with another procedure, receipt time or subjects; change it with its subject calls"
    )]
    Declared(String),
    #[error("dossier {id:?} would hold more than {max} subjects")]
    TooManySubjects { id: String, max: usize },
    #[error("this subject is already among the subjects of dossier {0:?}")]
    AlreadySubject(String),
    #[error("this subject is not among the subjects of dossier {0:?}")]
    NotSubject(String),
    #[error("dossier register: {0}")]
    Store(String),
}

impl From<sqlx::Error> for RegisterError {
    fn from(e: sqlx::Error) -> Self {
        RegisterError::Store(e.to_string())
    }
}

/// The register: its store and this replica's cache of dossiers asked about.
pub struct Register {
    store: Store,
    settings: DossierSettings,
    /// By a seeded hash of (consumer, dossier id), so a lookup builds no key; each entry
    /// names its dossier, and one that names another is not used.
    cache: moka::future::Cache<u64, Arc<CachedDossier>>,
    seed: u64,
}

/// A dossier as this replica read it (or its absence), and whose it is.
struct CachedDossier {
    consumer: Box<str>,
    id: Box<str>,
    dossier: Option<Arc<Dossier>>,
}

impl Register {
    pub fn new(store: Store, settings: DossierSettings) -> Register {
        let cache = moka::future::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(settings.cache_ttl.max(Duration::from_millis(1)))
            .build();
        Register {
            store,
            settings,
            cache,
            seed: uuid::Uuid::new_v4().as_u64_pair().0,
        }
    }

    fn cache_key(&self, consumer: &str, id: &str) -> u64 {
        use xxhash_rust::xxh3::xxh3_64_with_seed as h;
        h(id.as_bytes(), h(consumer.as_bytes(), self.seed))
    }

    /// A register in a private in-memory SQLite database (tests, benchmarks).
    pub async fn in_memory(settings: DossierSettings) -> Result<Register, RegisterError> {
        Ok(Register::new(Store::in_memory().await?, settings))
    }

    pub fn settings(&self) -> &DossierSettings {
        &self.settings
    }

    /// Closes the store's connections: every later read or write fails (tests of an
    /// unreachable register).
    #[cfg(test)]
    pub(crate) async fn shut(&self) {
        on_pool!(&self.store, pool => pool.close().await)
    }

    /// Declares a dossier, or finds the same declaration made before.
    pub async fn declare(&self, new: NewDossier, now_ms: i64) -> Result<Declared, RegisterError> {
        if new.subjects.len() > self.settings.max_subjects {
            return Err(RegisterError::TooManySubjects {
                id: new.dossier_id,
                max: self.settings.max_subjects,
            });
        }
        let expires_ms = new
            .received_ms
            .saturating_add(self.settings.expire_after.as_millis() as i64);
        let declared = self.store.declare(&new, now_ms, expires_ms).await?;
        self.forget(&new.consumer, &new.dossier_id).await;
        Ok(declared)
    }

    /// Adds a subject to an open dossier.
    pub async fn add_subject(
        &self,
        consumer: &str,
        id: &str,
        subject: (&str, &str),
        reason: &str,
        now_ms: i64,
    ) -> Result<Dossier, RegisterError> {
        let d = self
            .store
            .add_subject(
                consumer,
                id,
                subject,
                reason,
                now_ms,
                self.settings.max_subjects,
            )
            .await?;
        self.forget(consumer, id).await;
        Ok(d)
    }

    /// Removes a subject declared by mistake from an open dossier.
    pub async fn remove_subject(
        &self,
        consumer: &str,
        id: &str,
        reference: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<Dossier, RegisterError> {
        let d = self
            .store
            .remove_subject(consumer, id, reference, reason, now_ms)
            .await?;
        self.forget(consumer, id).await;
        Ok(d)
    }

    /// Closes an open dossier with its result (one of [`RESULTS`]).
    pub async fn close(
        &self,
        consumer: &str,
        id: &str,
        result: &str,
        now_ms: i64,
    ) -> Result<Dossier, RegisterError> {
        let d = self.store.close(consumer, id, result, now_ms).await?;
        self.forget(consumer, id).await;
        Ok(d)
    }

    /// The dossier as stored now (a read-back), whatever its status.
    pub async fn get(&self, consumer: &str, id: &str) -> Result<Option<Dossier>, RegisterError> {
        self.store.get(consumer, id).await
    }

    /// The dossier as this replica last read it, within `cache_ms` (for binding); concurrent
    /// askers of one dossier share one read.
    pub async fn cached(
        &self,
        consumer: &str,
        id: &str,
    ) -> Result<Option<Arc<Dossier>>, RegisterError> {
        // The store's read is boxed where it is awaited: its future (a database
        // driver's) is large, and inline it would make every caller's future as large,
        // though a cached dossier never reads the store.
        if self.settings.cache_ttl.is_zero() {
            return Ok(Box::pin(self.store.get(consumer, id)).await?.map(Arc::new));
        }
        let cached = self
            .cache
            .try_get_with(self.cache_key(consumer, id), async {
                Ok::<_, RegisterError>(Arc::new(CachedDossier {
                    consumer: consumer.into(),
                    id: id.into(),
                    dossier: Box::pin(self.store.get(consumer, id)).await?.map(Arc::new),
                }))
            })
            .await
            .map_err(|e| RegisterError::Store(e.to_string()))?;
        if *cached.consumer == *consumer && *cached.id == *id {
            return Ok(cached.dossier.clone());
        }
        // Another dossier with the same hash (a 2^-64 chance): read this one directly.
        Ok(Box::pin(self.store.get(consumer, id)).await?.map(Arc::new))
    }

    /// Drops this replica's copy of a dossier (changed here, or announced by another).
    pub async fn forget(&self, consumer: &str, id: &str) {
        self.cache.invalidate(&self.cache_key(consumer, id)).await;
    }

    /// Marks open dossiers past their expiry as expired, and returns them; on shared
    /// storage each expiry is made (and so reported) by one replica only.
    pub async fn expire_due(&self, now_ms: i64) -> Result<Vec<Dossier>, RegisterError> {
        let expired = self.store.expire_due(now_ms).await?;
        for d in &expired {
            self.forget(&d.consumer, &d.dossier_id).await;
        }
        Ok(expired)
    }

    /// Deletes dossiers closed or expired before `before_ms` (past the audit retention).
    pub async fn purge_ended_before(&self, before_ms: i64) -> Result<u64, RegisterError> {
        self.store.purge_ended_before(before_ms).await
    }
}

#[cfg(test)]
mod tests;
