//! The record cache of one dataset: full canonical records (projection to a caller's grant
//! happens after, on every response), negative entries for absent keys, single-flight
//! fetching, and stale-if-error.
//!
//! - Concurrent misses on one key share one upstream call: the first caller fetches, the
//!   others wait on the same cell and are answered `coalesced`. If the fetching caller goes
//!   away (its client disconnected), a waiting one takes the fetch over. Misses on different
//!   keys never wait for each other: the flight map is locked only to find or add a cell.
//! - An entry is fresh for `ttl` (absent keys: `negative_ttl`). After that a lookup fetches
//!   again; when that fails, a record stored less than `ttl + stale_if_error` ago is served
//!   and marked `stale`.
//! - Freshness is judged on tokio's clock, so tests can drive it with paused time; moka
//!   only bounds memory (capacity, and dropping entries no longer servable even stale).

use crate::domain::record::{Record, StoredRecord};
use crate::upstream::connector::{Provided, UpstreamError};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// Where the answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
    Stale,
    Coalesced,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Stale => "stale",
            CacheStatus::Coalesced => "coalesced",
        }
    }
}

pub use crate::upstream::spec::CacheSettings;

#[derive(Clone)]
struct Entry {
    /// `None`: the provider said there is no such record.
    record: Option<Arc<StoredRecord>>,
    stored: Instant,
}

type Fetched = Result<Option<Arc<StoredRecord>>, UpstreamError>;

/// What the cache answered: the record (`None` when it does not exist) and how.
pub type Served = (Option<Arc<StoredRecord>>, CacheStatus);

struct Lifetime(CacheSettings);

impl moka::Expiry<String, Entry> for Lifetime {
    fn expire_after_create(
        &self,
        _: &String,
        entry: &Entry,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(match entry.record {
            Some(_) => self.0.ttl + self.0.stale_if_error,
            None => self.0.negative_ttl,
        })
    }

    fn expire_after_update(
        &self,
        key: &String,
        entry: &Entry,
        now: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, entry, now)
    }
}

pub struct RecordCache {
    settings: CacheSettings,
    entries: moka::future::Cache<String, Entry>,
    flights: Mutex<HashMap<String, Arc<OnceCell<Fetched>>>>,
    /// Finds the people a record names, once, as it enters the cache.
    indexer: Option<Indexer>,
}

/// The people a record names other than its subject: (field, keyed reference).
pub type Indexer = Box<dyn Fn(&Record) -> Vec<(String, String)> + Send + Sync>;

impl RecordCache {
    pub fn new(settings: CacheSettings) -> RecordCache {
        let entries = moka::future::Cache::builder()
            .max_capacity(settings.capacity)
            .expire_after(Lifetime(settings))
            .build();
        RecordCache {
            settings,
            entries,
            flights: Mutex::new(HashMap::new()),
            indexer: None,
        }
    }

    /// The cache with an indexer run on each record as it enters.
    pub fn with_indexer(mut self, indexer: Indexer) -> RecordCache {
        self.indexer = Some(indexer);
        self
    }

    fn enabled(&self) -> bool {
        !self.settings.ttl.is_zero()
    }

    /// The record for `key` from the cache when fresh (unless `bypass`), else from `fetch`
    /// (shared with concurrent callers), else stale when `fetch` fails and a stale record
    /// is at hand.
    pub async fn get_or_fetch<F, Fut>(
        &self,
        key: &str,
        bypass: bool,
        fetch: F,
    ) -> Result<Served, UpstreamError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Provided>, UpstreamError>>,
    {
        let cached = if self.enabled() {
            self.entries.get(key).await
        } else {
            None
        };
        if let Some(entry) = &cached
            && !bypass
        {
            let fresh_for = match entry.record {
                Some(_) => self.settings.ttl,
                None => self.settings.negative_ttl,
            };
            if entry.stored.elapsed() < fresh_for {
                return Ok((entry.record.clone(), CacheStatus::Hit));
            }
        }
        let (result, fetched_here) = self.flight(key, fetch).await;
        match result {
            Ok(record) => {
                let status = if fetched_here {
                    CacheStatus::Miss
                } else {
                    CacheStatus::Coalesced
                };
                Ok((record, status))
            }
            Err(e) => match cached {
                Some(Entry {
                    record: Some(record),
                    stored,
                }) if stored.elapsed() < self.settings.ttl + self.settings.stale_if_error => {
                    Ok((Some(record), CacheStatus::Stale))
                }
                _ => Err(e),
            },
        }
    }

    /// One upstream call per key at a time; true when this caller made it.
    async fn flight<F, Fut>(&self, key: &str, fetch: F) -> (Fetched, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Provided>, UpstreamError>>,
    {
        let cell = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            flights.entry(key.to_owned()).or_default().clone()
        };
        let mut fetched_here = false;
        let result = cell
            .get_or_init(|| async {
                fetched_here = true;
                let fetched: Fetched = fetch().await.map(|p| {
                    p.map(|p| {
                        let stored = StoredRecord::new(&p.record).with_data_time(p.data_time_ms);
                        Arc::new(match &self.indexer {
                            Some(index) => stored.with_mentions(index(&p.record)),
                            None => stored,
                        })
                    })
                });
                if let Ok(record) = &fetched
                    && self.enabled()
                {
                    // Stored before the cell settles, so a caller arriving next finds it.
                    let entry = Entry {
                        record: record.clone(),
                        stored: Instant::now(),
                    };
                    self.entries.insert(key.to_owned(), entry).await;
                }
                fetched
            })
            .await
            .clone();
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if flights.get(key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            flights.remove(key);
        }
        (result, fetched_here)
    }

    /// Forgets one key.
    pub async fn purge_key(&self, key: &str) {
        self.entries.invalidate(key).await;
    }

    /// Forgets everything.
    pub fn purge_all(&self) {
        self.entries.invalidate_all();
    }

    /// Lets moka finish its pending bookkeeping, so `len` is exact.
    pub async fn settle(&self) {
        self.entries.run_pending_tasks().await;
    }

    /// Records held (approximate until moka's pending work runs: see `settle`).
    pub fn len(&self) -> u64 {
        self.entries.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn record(n: u32) -> Record {
        Record(json!({ "n": n }).as_object().cloned().unwrap_or_default())
    }

    fn settings() -> CacheSettings {
        CacheSettings {
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(10),
            stale_if_error: Duration::from_secs(600),
            capacity: 1000,
        }
    }

    /// An upstream that counts calls and answers record(call number) after `delay`.
    struct Upstream {
        calls: AtomicU32,
        delay: Duration,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Upstream {
        fn new(delay: Duration) -> Upstream {
            Upstream {
                calls: AtomicU32::new(0),
                delay,
                fail: Default::default(),
            }
        }
        async fn call(&self) -> Result<Option<Provided>, UpstreamError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.delay).await;
            if self.fail.load(Ordering::SeqCst) {
                return Err(UpstreamError::Unavailable("down".into()));
            }
            Ok(Some(Provided {
                record: record(n),
                data_time_ms: None,
            }))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_misses_on_one_key_make_one_call_and_other_keys_do_not_wait() {
        let cache = Arc::new(RecordCache::new(settings()));
        let upstream = Arc::new(Upstream::new(Duration::from_millis(100)));
        let mut tasks = Vec::new();
        for _ in 0..1000 {
            let (cache, upstream) = (cache.clone(), upstream.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch("001090012345", false, || upstream.call())
                    .await
            }));
        }
        // While that key's call is in flight, another key is fetched on its own.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let other = Upstream::new(Duration::from_millis(5));
        let started = Instant::now();
        let (_, status) = cache
            .get_or_fetch("079200000001", false, || other.call())
            .await
            .expect("served");
        assert_eq!(status, CacheStatus::Miss);
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(5),
            "did not wait for the other key"
        );

        let mut statuses = HashMap::new();
        for t in tasks {
            let (record, status) = t.await.expect("task").expect("served");
            assert_eq!(record.expect("found").get("n"), Some(serde_json::json!(1)));
            *statuses.entry(status.as_str()).or_insert(0) += 1;
        }
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 1);
        assert_eq!(statuses.get("miss"), Some(&1));
        assert_eq!(statuses.get("coalesced"), Some(&999));
        let (_, status) = cache
            .get_or_fetch("001090012345", false, || upstream.call())
            .await
            .expect("served");
        assert_eq!(status, CacheStatus::Hit);
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_expiry_refetches_and_a_failed_refetch_serves_stale_within_the_window() {
        let cache = RecordCache::new(settings());
        let upstream = Upstream::new(Duration::from_millis(1));
        let get = || cache.get_or_fetch("k", false, || upstream.call());
        assert_eq!(get().await.expect("ok").1, CacheStatus::Miss);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(get().await.expect("ok").1, CacheStatus::Hit);
        tokio::time::advance(Duration::from_secs(2)).await;
        let (record, status) = get().await.expect("ok");
        assert_eq!(status, CacheStatus::Miss, "expired after the TTL");
        assert_eq!(record.expect("found").get("n"), Some(serde_json::json!(2)));

        upstream.fail.store(true, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(61)).await;
        let (record, status) = get().await.expect("stale served");
        assert_eq!(status, CacheStatus::Stale);
        assert_eq!(record.expect("found").get("n"), Some(serde_json::json!(2)));
        // Past ttl + stale_if_error the failure shows.
        tokio::time::advance(Duration::from_secs(600)).await;
        assert!(get().await.is_err());
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn absent_keys_are_remembered_for_the_negative_ttl_and_bypass_refetches() {
        let cache = RecordCache::new(settings());
        let calls = AtomicU32::new(0);
        let absent = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(None)
        };
        assert_eq!(
            cache.get_or_fetch("k", false, absent).await.expect("ok"),
            (None, CacheStatus::Miss)
        );
        assert_eq!(
            cache.get_or_fetch("k", false, absent).await.expect("ok"),
            (None, CacheStatus::Hit)
        );
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(
            cache.get_or_fetch("k", false, absent).await.expect("ok").1,
            CacheStatus::Miss
        );
        assert_eq!(
            cache.get_or_fetch("k", true, absent).await.expect("ok").1,
            CacheStatus::Miss
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        cache.purge_key("k").await;
        assert_eq!(
            cache.get_or_fetch("k", false, absent).await.expect("ok").1,
            CacheStatus::Miss
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_fetch_is_taken_over_by_a_waiting_caller() {
        let cache = Arc::new(RecordCache::new(settings()));
        let upstream = Arc::new(Upstream::new(Duration::from_millis(100)));
        let first = {
            let (cache, upstream) = (cache.clone(), upstream.clone());
            tokio::spawn(async move { cache.get_or_fetch("k", false, || upstream.call()).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let second = {
            let (cache, upstream) = (cache.clone(), upstream.clone());
            tokio::spawn(async move { cache.get_or_fetch("k", false, || upstream.call()).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        first.abort();
        let (record, status) = second.await.expect("task").expect("served");
        assert_eq!(
            status,
            CacheStatus::Miss,
            "the waiting caller fetched itself"
        );
        assert_eq!(record.expect("found").get("n"), Some(serde_json::json!(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_ttl_stores_nothing_but_still_coalesces() {
        let cache = Arc::new(RecordCache::new(CacheSettings {
            ttl: Duration::ZERO,
            ..settings()
        }));
        let upstream = Arc::new(Upstream::new(Duration::from_millis(50)));
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (cache, upstream) = (cache.clone(), upstream.clone());
                tokio::spawn(
                    async move { cache.get_or_fetch("k", false, || upstream.call()).await },
                )
            })
            .collect();
        for t in tasks {
            t.await.expect("task").expect("served");
        }
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 1);
        let (_, status) = cache
            .get_or_fetch("k", false, || upstream.call())
            .await
            .expect("ok");
        assert_eq!(status, CacheStatus::Miss);
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 2);
    }
}
