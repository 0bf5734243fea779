//! Tests of the upstream guard, with paused time: capacity, in-flight cap, breaker, retries
//! within their budget, deadlines.

use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32};

/// A provider that counts attempts and fails while `down`.
#[derive(Default)]
struct Provider {
    attempts: AtomicU32,
    down: AtomicBool,
    delay_ms: AtomicU64,
}

impl Provider {
    async fn call(&self) -> Result<u32, UpstreamError> {
        let n = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))).await;
        if self.down.load(Ordering::SeqCst) {
            Err(unavailable("503"))
        } else {
            Ok(n)
        }
    }
}

fn settings() -> GuardSettings {
    GuardSettings {
        retries: 0,
        breaker: BreakerSettings {
            consecutive_failures: 3,
            failure_rate: 0.5,
            min_calls: 10,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(5),
        },
        ..GuardSettings::default()
    }
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_half_opens_and_closes() {
    let guard = Guard::new(settings(), Duration::from_secs(1));
    let provider = Provider::default();
    provider.down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        assert!(guard.call(None, || provider.call()).await.is_err());
    }
    assert_eq!(guard.status().breaker, BreakerState::Open);
    // Open: calls fail fast without reaching the provider.
    let err = guard
        .call(None, || provider.call())
        .await
        .expect_err("open");
    assert_eq!(err, unavailable("circuit breaker open"));
    assert_eq!(provider.attempts.load(Ordering::SeqCst), 3);

    // After open_for, one probe goes through; it fails, so the breaker opens again.
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(guard.call(None, || provider.call()).await.is_err());
    assert_eq!(provider.attempts.load(Ordering::SeqCst), 4);
    assert_eq!(guard.status().breaker, BreakerState::Open);

    // The provider recovers: the next probe succeeds and the breaker closes.
    provider.down.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(5)).await;
    provider.delay_ms.store(100, Ordering::SeqCst);
    let probing = {
        let guard = &guard;
        let provider = &provider;
        async move { guard.call(None, || provider.call()).await }
    };
    let other = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(guard.status().breaker, BreakerState::HalfOpen);
        // While the probe is out, other calls still fail fast.
        guard.call(None, || provider.call()).await
    };
    let (probe, other) = tokio::join!(probing, other);
    assert!(probe.is_ok());
    assert_eq!(other, Err(unavailable("circuit breaker open")));
    assert_eq!(guard.status().breaker, BreakerState::Closed);
    assert!(guard.call(None, || provider.call()).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_high_failure_rate_opens_the_breaker_without_a_run_of_failures() {
    let guard = Guard::new(settings(), Duration::from_secs(1));
    let provider = Provider::default();
    // Alternate failure and success: never three in a row, but half of the calls fail.
    for i in 0..11 {
        provider.down.store(i % 2 == 0, Ordering::SeqCst);
        let _ = guard.call(None, || provider.call()).await;
    }
    assert_eq!(guard.status().breaker, BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn the_retry_budget_caps_amplification_when_every_call_fails() {
    let guard = Guard::new(
        GuardSettings {
            retries: 3,
            retry_budget: 0.1,
            breaker: BreakerSettings {
                consecutive_failures: u32::MAX,
                min_calls: u32::MAX,
                ..BreakerSettings::default()
            },
            ..GuardSettings::default()
        },
        Duration::from_secs(1),
    );
    let provider = Provider::default();
    provider.down.store(true, Ordering::SeqCst);
    for _ in 0..1000 {
        assert!(guard.call(None, || provider.call()).await.is_err());
    }
    let attempts = provider.attempts.load(Ordering::SeqCst);
    // Without a budget this would be 4,000 attempts; with it, about 1,100.
    assert!(
        attempts <= 1000 + 100 + 1,
        "{attempts} attempts for 1,000 calls"
    );
    assert!(attempts > 1000, "some retries happened: {attempts}");
}

#[tokio::test(start_paused = true)]
async fn retries_recover_a_passing_failure() {
    let guard = Guard::new(
        GuardSettings {
            retries: 2,
            ..settings()
        },
        Duration::from_secs(1),
    );
    let provider = Arc::new(Provider::default());
    provider.down.store(true, Ordering::SeqCst);
    let p = provider.clone();
    let flipper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        p.down.store(false, Ordering::SeqCst);
    });
    let n = guard
        .call(None, || provider.call())
        .await
        .expect("recovered");
    flipper.await.expect("task");
    assert_eq!(n, 2, "one retry");
}

#[tokio::test(start_paused = true)]
async fn excess_calls_wait_a_bounded_time_for_an_in_flight_slot_then_fail() {
    let guard = Arc::new(Guard::new(
        GuardSettings {
            max_in_flight: 2,
            max_wait: Duration::from_millis(100),
            ..settings()
        },
        Duration::from_secs(5),
    ));
    let provider = Arc::new(Provider::default());
    provider.delay_ms.store(1000, Ordering::SeqCst);
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let (g, p) = (guard.clone(), provider.clone());
            tokio::spawn(async move { g.call(None, || p.call()).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(guard.status().in_flight, 2);
    assert_eq!(guard.status().waiting, 3);
    let mut outcomes = Vec::new();
    for c in calls {
        outcomes.push(c.await.expect("task").is_ok());
    }
    assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 2);
    assert_eq!(
        provider.attempts.load(Ordering::SeqCst),
        2,
        "the rest never reached it"
    );
    assert_eq!(guard.stats().rejected_busy.load(Ordering::Relaxed), 3);
}

#[tokio::test(start_paused = true)]
async fn capacity_paces_calls_and_the_deadline_bounds_an_attempt() {
    let guard = Arc::new(Guard::new(
        GuardSettings {
            capacity_rps: 10,
            burst: 2,
            max_wait: Duration::from_millis(500),
            ..settings()
        },
        Duration::from_secs(5),
    ));
    let provider = Arc::new(Provider::default());
    let start = Instant::now();
    // Ten at once: 2 go in the burst, then one per 100 ms; those whose slot is more than
    // 500 ms away fail at once instead of queueing.
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let (g, p) = (guard.clone(), provider.clone());
            tokio::spawn(async move {
                let r = g.call(None, || p.call()).await;
                (r.is_ok(), start.elapsed())
            })
        })
        .collect();
    let mut admitted = Vec::new();
    for c in calls {
        let (ok, at) = c.await.expect("task");
        if ok {
            admitted.push(at.as_millis());
        } else {
            assert_eq!(at, Duration::ZERO, "refused without waiting");
        }
    }
    admitted.sort_unstable();
    assert_eq!(admitted, [0, 0, 100, 200, 300, 400, 500]);

    provider.delay_ms.store(3000, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(1)).await;
    let deadline = Instant::now() + Duration::from_millis(800);
    let started = Instant::now();
    let err = guard
        .call(Some(deadline), || provider.call())
        .await
        .expect_err("deadline");
    assert!(matches!(err, UpstreamError::Timeout(_)), "{err:?}");
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(800),
        "the caller's deadline, not the 5 s timeout"
    );
}
