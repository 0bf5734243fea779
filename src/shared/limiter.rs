//! Quotas: a consumer's overall quota and each grant's quota (consumer × dataset), written
//! `"600/min"`, enforced by GCRA (governor). A refusal says when to retry; every answer
//! carries the tightest quota's state for the `RateLimit-*` headers.

pub use crate::domain::error::QuotaState;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

/// A quota as configured: `count` calls per `per`, all of which may come at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaSpec {
    pub count: NonZeroU32,
    pub per: Duration,
}

/// A quota that does not read as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    #[error("{0:?} is not a quota like \"600/min\" (units: s, min, h, day)")]
    Form(String),
    #[error("{0:?}: the count must be above 0")]
    Zero(String),
}

impl QuotaSpec {
    /// `"600/min"`; units `s`, `min`, `h`, `day` (and their long forms).
    pub fn parse(s: &str) -> Result<QuotaSpec, QuotaError> {
        let bad = || QuotaError::Form(s.to_owned());
        let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let count = NonZeroU32::new(count).ok_or_else(|| QuotaError::Zero(s.to_owned()))?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "day" => Duration::from_secs(86_400),
            _ => return Err(bad()),
        };
        Ok(QuotaSpec { count, per })
    }

    fn quota(&self) -> Quota {
        let interval = (self.per / self.count.get()).max(Duration::from_nanos(1));
        Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(self.count))
            .allow_burst(self.count)
    }
}

impl fmt::Display for QuotaSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "h",
            _ => "day",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// A refusal: the quota's state and how long until one call would be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverQuota {
    pub state: QuotaState,
    pub retry_after: Duration,
}

/// One quota's limiter.
pub struct Limiter<C: Clock = DefaultClock> {
    spec: QuotaSpec,
    clock: C,
    inner: RateLimiter<NotKeyed, InMemoryState, C, StateInformationMiddleware>,
}

impl Limiter<DefaultClock> {
    pub fn new(spec: QuotaSpec) -> Limiter {
        Limiter::with_clock(spec, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limiter<C> {
    pub fn with_clock(spec: QuotaSpec, clock: C) -> Limiter<C> {
        let inner = RateLimiter::direct_with_clock(spec.quota(), clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        Limiter { spec, clock, inner }
    }

    pub fn spec(&self) -> QuotaSpec {
        self.spec
    }

    fn state(&self, remaining: u32) -> QuotaState {
        let limit = self.spec.count.get();
        let interval = self.spec.per / limit;
        QuotaState {
            limit,
            remaining,
            reset: interval * limit.saturating_sub(remaining),
        }
    }

    /// Admits one call, or says when one would be admitted.
    pub fn check(&self) -> Result<QuotaState, OverQuota> {
        match self.inner.check() {
            Ok(snapshot) => Ok(self.state(snapshot.remaining_burst_capacity())),
            Err(not_until) => Err(OverQuota {
                state: self.state(0),
                retry_after: not_until.wait_time_from(self.clock.now()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn quotas_parse_and_print() {
        let q = QuotaSpec::parse("600/min").expect("valid");
        assert_eq!((q.count.get(), q.per), (600, Duration::from_secs(60)));
        assert_eq!(q.to_string(), "600/min");
        assert_eq!(
            QuotaSpec::parse(" 5 / s ").expect("valid").to_string(),
            "5/s"
        );
        let zero = QuotaSpec::parse("0/min").unwrap_err();
        assert_eq!(zero, QuotaError::Zero("0/min".into()));
        assert!(zero.to_string().contains("above 0"));
        assert!(QuotaSpec::parse("600 per minute").is_err());
        assert!(QuotaSpec::parse("600/fortnight").is_err());
    }

    #[test]
    fn a_quota_admits_its_count_then_refuses_until_it_refills() {
        let clock = FakeRelativeClock::default();
        let limiter =
            Limiter::with_clock(QuotaSpec::parse("60/min").expect("valid"), clock.clone());
        let mut admitted = 0;
        let mut last = None;
        for _ in 0..100 {
            match limiter.check() {
                Ok(state) => {
                    admitted += 1;
                    last = Some(state);
                }
                Err(over) => {
                    assert_eq!(over.state.remaining, 0);
                    assert_eq!(over.retry_after, Duration::from_secs(1));
                }
            }
        }
        assert_eq!(admitted, 60, "the burst is the whole quota, no more");
        let last = last.expect("admitted");
        assert_eq!((last.limit, last.remaining), (60, 0));
        assert_eq!(last.reset, Duration::from_secs(60));

        // One interval later exactly one more call fits; a full period refills it.
        clock.advance(Duration::from_secs(1));
        assert!(limiter.check().is_ok());
        assert!(limiter.check().is_err());
        clock.advance(Duration::from_secs(60));
        let state = limiter.check().expect("refilled");
        assert_eq!(state.remaining, 59);
        assert_eq!(state.reset, Duration::from_secs(1));
    }

    #[test]
    fn the_tighter_state_is_the_one_with_fewer_calls_left() {
        let a = QuotaState {
            limit: 100,
            remaining: 50,
            reset: Duration::from_secs(5),
        };
        let b = QuotaState {
            limit: 10,
            remaining: 2,
            reset: Duration::from_secs(8),
        };
        assert_eq!(QuotaState::tighter(Some(a), Some(b)), Some(b));
        assert_eq!(QuotaState::tighter(Some(a), None), Some(a));
        assert_eq!(QuotaState::tighter(None, None), None);
    }
}
