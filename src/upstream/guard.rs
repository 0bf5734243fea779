//! The upstream guard of one connector: what protects a national database from the gateway,
//! and the gateway from a failing provider. Every provider call passes it, after the cache,
//! so cache hits never spend provider capacity.
//!
//! In order, for each call:
//! 1. **circuit breaker** — after consecutive failures or a high failure rate in a window it
//!    opens and calls fail fast; after a pause one probe at a time is let through (half
//!    open); a successful probe closes it.
//! 2. **in-flight cap** — at most `max_in_flight` calls at the provider at once; excess waits
//!    at most `max_wait`, then fails. Never an unbounded queue.
//! 3. **capacity** — at most `capacity_rps` calls per second toward the provider (with a
//!    small burst); a call that would wait longer than `max_wait` fails instead.
//! 4. **attempt** — bounded by the connector's timeout and by the caller's deadline.
//! 5. **retry** — only for failures worth retrying (unavailable, timed out), with jittered
//!    exponential backoff, within the retry budget: retries are at most `retry_budget` of the
//!    calls, so a failing provider is never hit with a multiple of the load.
//!
//! Time is tokio's, so tests drive it with paused time.

use super::connector::UpstreamError;
use crate::config::raw;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Settings of one connector's guard.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardSettings {
    /// Calls per second toward the provider; 0 is unlimited.
    pub capacity_rps: u32,
    /// Calls that may go at once above the steady rate.
    pub burst: u32,
    pub max_in_flight: usize,
    /// Longest a call waits for capacity or an in-flight slot.
    pub max_wait: Duration,
    /// Retries after the first attempt, at most.
    pub retries: u32,
    /// Retries allowed as a fraction of calls (0.1: one retry per ten calls).
    pub retry_budget: f64,
    /// First backoff; doubled per retry, with jitter.
    pub backoff: Duration,
    pub breaker: BreakerSettings,
}

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings {
            capacity_rps: raw::DEFAULT_GUARD_CAPACITY_RPS,
            burst: raw::DEFAULT_GUARD_BURST,
            max_in_flight: raw::DEFAULT_GUARD_MAX_IN_FLIGHT,
            max_wait: Duration::from_millis(raw::DEFAULT_GUARD_MAX_WAIT_MS),
            retries: raw::DEFAULT_GUARD_RETRIES,
            retry_budget: raw::DEFAULT_GUARD_RETRY_BUDGET,
            backoff: Duration::from_millis(raw::DEFAULT_GUARD_BACKOFF_MS),
            breaker: BreakerSettings::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    /// Opens after this many failures in a row…
    pub consecutive_failures: u32,
    /// …or when this fraction of the calls in a window failed…
    pub failure_rate: f64,
    /// …once the window holds at least this many calls.
    pub min_calls: u32,
    pub window: Duration,
    /// How long it stays open before letting a probe through.
    pub open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            consecutive_failures: raw::DEFAULT_BREAKER_CONSECUTIVE_FAILURES,
            failure_rate: raw::DEFAULT_BREAKER_FAILURE_RATE,
            min_calls: raw::DEFAULT_BREAKER_MIN_CALLS,
            window: Duration::from_secs(raw::DEFAULT_BREAKER_WINDOW_S),
            open_for: Duration::from_secs(raw::DEFAULT_BREAKER_OPEN_S),
        }
    }
}

/// The breaker's state, as the admin listener shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct Breaker {
    state: BreakerState,
    consecutive: u32,
    window_start: Instant,
    window_calls: u32,
    window_failures: u32,
    opened_at: Option<Instant>,
    /// When the half-open probe in flight started.
    probe: Option<Instant>,
}

/// Whether this call is the half-open probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Normal,
    Probe,
}

impl Breaker {
    fn new(now: Instant) -> Breaker {
        Breaker {
            state: BreakerState::Closed,
            consecutive: 0,
            window_start: now,
            window_calls: 0,
            window_failures: 0,
            opened_at: None,
            probe: None,
        }
    }

    fn admit(
        &mut self,
        s: &BreakerSettings,
        now: Instant,
        attempt_limit: Duration,
    ) -> Option<Admission> {
        match self.state {
            BreakerState::Closed => Some(Admission::Normal),
            BreakerState::Open => {
                let opened = self.opened_at.unwrap_or(now);
                if now.duration_since(opened) >= s.open_for {
                    self.state = BreakerState::HalfOpen;
                    self.probe = Some(now);
                    Some(Admission::Probe)
                } else {
                    None
                }
            }
            BreakerState::HalfOpen => match self.probe {
                // One probe at a time; a probe that never reported back (its caller went
                // away) is replaced once it could no longer be running.
                Some(started) if now.duration_since(started) < attempt_limit => None,
                _ => {
                    self.probe = Some(now);
                    Some(Admission::Probe)
                }
            },
        }
    }

    fn roll_window(&mut self, s: &BreakerSettings, now: Instant) {
        if now.duration_since(self.window_start) >= s.window {
            self.window_start = now;
            self.window_calls = 0;
            self.window_failures = 0;
        }
    }

    fn success(&mut self, s: &BreakerSettings, now: Instant, admission: Admission) {
        self.roll_window(s, now);
        self.window_calls += 1;
        self.consecutive = 0;
        if admission == Admission::Probe || self.state == BreakerState::HalfOpen {
            *self = Breaker::new(now);
        }
    }

    fn failure(&mut self, s: &BreakerSettings, now: Instant, admission: Admission) {
        self.roll_window(s, now);
        self.window_calls += 1;
        self.window_failures += 1;
        self.consecutive += 1;
        let rate_tripped = self.window_calls >= s.min_calls
            && f64::from(self.window_failures) >= s.failure_rate * f64::from(self.window_calls);
        if admission == Admission::Probe
            || self.state == BreakerState::HalfOpen
            || self.consecutive >= s.consecutive_failures
            || rate_tripped
        {
            self.state = BreakerState::Open;
            self.opened_at = Some(now);
            self.probe = None;
        }
    }
}

/// Paces calls to a steady rate with a burst allowance (a virtual schedule: each call takes
/// the next free slot, `1/rate` apart; idle time saves up at most `burst` slots, so at most
/// `burst` calls go at once).
#[derive(Debug)]
struct Pacer {
    interval: Duration,
    burst: u32,
    next: Instant,
}

impl Pacer {
    /// The instant this call may go, or `None` if that is further than `max_wait` away (the
    /// slot is then not taken).
    fn reserve(&mut self, now: Instant, max_wait: Duration) -> Option<Instant> {
        let earliest = now
            .checked_sub(self.interval * self.burst.saturating_sub(1))
            .unwrap_or(now);
        let at = self.next.max(earliest);
        if at.saturating_duration_since(now) > max_wait {
            return None;
        }
        self.next = at + self.interval;
        Some(at.max(now))
    }
}

/// Retries allowed: each call deposits `ratio` of a retry, each retry spends one; the
/// balance is capped so a quiet spell does not save up a storm.
#[derive(Debug)]
struct RetryBudget {
    ratio: f64,
    balance: f64,
    cap: f64,
}

impl RetryBudget {
    fn deposit(&mut self) {
        self.balance = (self.balance + self.ratio).min(self.cap);
    }

    fn withdraw(&mut self) -> bool {
        if self.balance >= 1.0 {
            self.balance -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Counters for the admin listener and metrics.
#[derive(Debug, Default)]
pub struct GuardStats {
    pub calls: AtomicU64,
    pub attempts: AtomicU64,
    pub retries: AtomicU64,
    pub failures: AtomicU64,
    pub rejected_open: AtomicU64,
    pub rejected_busy: AtomicU64,
    /// Calls waiting for an in-flight slot or capacity now.
    pub waiting: AtomicU64,
}

/// A provider's capacity shared by every replica through Redis (one call per `interval`,
/// `burst` at once), with this replica's share as the fallback.
pub struct SharedCapacity {
    pub shared: std::sync::Arc<crate::shared::Shared>,
    pub key: String,
    pub interval: Duration,
    pub burst: u32,
    pub local: crate::shared::limiter::Limiter,
}

impl SharedCapacity {
    /// Waits for a slot, at most `limit`; false if none comes in time.
    async fn slot(&self, limit: Duration) -> bool {
        let started = Instant::now();
        loop {
            match self
                .shared
                .check_rate(&self.key, self.interval, self.burst, &self.local)
                .await
            {
                Ok(_) => return true,
                Err(crate::shared::Refusal::Over(o))
                    if started.elapsed() + o.retry_after <= limit =>
                {
                    tokio::time::sleep(o.retry_after.max(Duration::from_micros(100))).await;
                }
                Err(_) => return false,
            }
        }
    }
}

pub struct Guard {
    settings: GuardSettings,
    /// With Redis: the capacity shared by all replicas, instead of `pacer`.
    shared_capacity: Option<SharedCapacity>,
    /// The connector's per-attempt timeout.
    attempt_timeout: Duration,
    in_flight: Semaphore,
    pacer: Option<Mutex<Pacer>>,
    breaker: Mutex<Breaker>,
    budget: Mutex<RetryBudget>,
    stats: GuardStats,
    jitter: AtomicU64,
}

/// A snapshot for the admin listener.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardStatus {
    pub breaker: BreakerState,
    pub consecutive_failures: u32,
    pub window_calls: u32,
    pub window_failures: u32,
    pub in_flight: usize,
    pub waiting: u64,
    pub retry_balance: f64,
}

fn unavailable(why: &str) -> UpstreamError {
    UpstreamError::Unavailable(why.to_owned())
}

impl Guard {
    /// Shares the provider's capacity (`capacity_rps`, `burst`) with the other replicas
    /// through Redis; while Redis is unreachable this replica paces at its share.
    pub fn share_capacity(
        mut self,
        shared: std::sync::Arc<crate::shared::Shared>,
        connector: &str,
    ) -> Guard {
        let rps = self.settings.capacity_rps;
        if rps == 0 {
            return self;
        }
        let replicas = shared.settings().replicas.max(1);
        let share = rps.div_ceil(replicas).max(1);
        let spec = crate::shared::limiter::QuotaSpec {
            count: std::num::NonZeroU32::new(share).expect("at least one"),
            per: Duration::from_secs(1),
        };
        self.shared_capacity = Some(SharedCapacity {
            key: shared.key(
                &format!("capacity:{connector}"),
                format_args!("{rps}/s+{}", self.settings.burst),
            ),
            interval: Duration::from_secs(1) / rps,
            burst: self.settings.burst.max(1),
            local: crate::shared::limiter::Limiter::new(spec),
            shared,
        });
        self
    }

    pub fn new(settings: GuardSettings, attempt_timeout: Duration) -> Guard {
        let now = Instant::now();
        let pacer = (settings.capacity_rps > 0).then(|| {
            Mutex::new(Pacer {
                interval: Duration::from_secs(1) / settings.capacity_rps,
                burst: settings.burst,
                next: now
                    .checked_sub(Duration::from_secs(1) / settings.capacity_rps * settings.burst)
                    .unwrap_or(now),
            })
        });
        Guard {
            shared_capacity: None,
            in_flight: Semaphore::new(settings.max_in_flight.max(1)),
            pacer,
            breaker: Mutex::new(Breaker::new(now)),
            budget: Mutex::new(RetryBudget {
                ratio: settings.retry_budget,
                // A little to start with, so the first failures of a fresh gateway can retry.
                balance: 1.0,
                cap: 10.0_f64.max(settings.retry_budget * 100.0),
            }),
            stats: GuardStats::default(),
            jitter: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            attempt_timeout,
            settings,
        }
    }

    pub fn stats(&self) -> &GuardStats {
        &self.stats
    }

    pub fn status(&self) -> GuardStatus {
        let b = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        GuardStatus {
            breaker: b.state,
            consecutive_failures: b.consecutive,
            window_calls: b.window_calls,
            window_failures: b.window_failures,
            in_flight: self.settings.max_in_flight.max(1) - self.in_flight.available_permits(),
            waiting: self.stats.waiting.load(Ordering::Relaxed),
            retry_balance: self
                .budget
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .balance,
        }
    }

    /// A pseudo-random fraction in [0.5, 1.0) for backoff jitter (xorshift; not for secrets).
    fn jitter(&self) -> f64 {
        let mut x = self.jitter.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter.store(x, Ordering::Relaxed);
        0.5 + (x >> 11) as f64 / (1u64 << 53) as f64 / 2.0
    }

    /// Runs `attempt` under the guard; `deadline` is the caller's, if it set one.
    pub async fn call<T, F, Fut>(
        &self,
        deadline: Option<Instant>,
        mut attempt: F,
    ) -> Result<T, UpstreamError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, UpstreamError>>,
    {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        self.budget
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .deposit();
        let mut retry = 0;
        loop {
            let now = Instant::now();
            let admission = self
                .breaker
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .admit(&self.settings.breaker, now, self.attempt_timeout * 2);
            let Some(admission) = admission else {
                self.stats.rejected_open.fetch_add(1, Ordering::Relaxed);
                return Err(unavailable("circuit breaker open"));
            };
            let remaining = |now: Instant| deadline.map(|d| d.saturating_duration_since(now));
            if remaining(now).is_some_and(|r| r.is_zero()) {
                return Err(UpstreamError::Timeout(Duration::ZERO));
            }
            let wait_limit =
                remaining(now).map_or(self.settings.max_wait, |r| r.min(self.settings.max_wait));
            self.stats.waiting.fetch_add(1, Ordering::Relaxed);
            let permit = tokio::time::timeout(wait_limit, self.in_flight.acquire()).await;
            let paced = match (&permit, &self.shared_capacity, &self.pacer) {
                (Ok(_), Some(shared), _) => shared.slot(wait_limit).await,
                (Ok(_), None, Some(pacer)) => {
                    let slot = pacer
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .reserve(Instant::now(), wait_limit);
                    match slot {
                        Some(at) => {
                            tokio::time::sleep_until(at).await;
                            true
                        }
                        None => false,
                    }
                }
                _ => true,
            };
            self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
            let _permit = match (permit, paced) {
                (Ok(Ok(p)), true) => p,
                _ => {
                    self.stats.rejected_busy.fetch_add(1, Ordering::Relaxed);
                    self.release_probe(admission);
                    return Err(unavailable("provider capacity exhausted"));
                }
            };
            let limit = remaining(Instant::now())
                .map_or(self.attempt_timeout, |r| r.min(self.attempt_timeout));
            self.stats.attempts.fetch_add(1, Ordering::Relaxed);
            let result = match tokio::time::timeout(limit, attempt()).await {
                Ok(r) => r,
                Err(_) => Err(UpstreamError::Timeout(limit)),
            };
            drop(_permit);
            let now = Instant::now();
            match result {
                Ok(v) => {
                    self.breaker
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .success(&self.settings.breaker, now, admission);
                    return Ok(v);
                }
                Err(e) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    self.breaker
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .failure(&self.settings.breaker, now, admission);
                    let worth_retrying =
                        matches!(e, UpstreamError::Unavailable(_) | UpstreamError::Timeout(_));
                    if !worth_retrying || retry >= self.settings.retries {
                        return Err(e);
                    }
                    let backoff = self
                        .settings
                        .backoff
                        .mul_f64(f64::from(1u32 << retry.min(10)) * self.jitter());
                    if remaining(now).is_some_and(|r| r <= backoff) {
                        return Err(e);
                    }
                    if !self
                        .budget
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .withdraw()
                    {
                        return Err(e);
                    }
                    retry += 1;
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    /// A probe that did not reach the provider frees the half-open slot.
    fn release_probe(&self, admission: Admission) {
        if admission == Admission::Probe {
            self.breaker.lock().unwrap_or_else(|p| p.into_inner()).probe = None;
        }
    }
}

#[cfg(test)]
mod tests;
