//! Quotas: a consumer's overall quota and each grant's quota, counted before the cache so
//! that a runaway client is throttled even on cached answers. Shared through Redis when
//! configured (the local limiters then hold this replica's share, the fallback while Redis
//! is unreachable).

use super::policy::{Consumer, Grant};
use crate::domain::error::{ErrorCode, LookupError, QuotaState};
use crate::shared::limiter::{Limiter, QuotaSpec};
use crate::shared::{Refusal, Shared};
use crate::telemetry::metrics::Metrics;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The limiters of one configuration version; quotas start afresh with each version.
pub struct Quotas {
    /// Each consumer's overall quota, by consumer id.
    consumer_limits: HashMap<String, Limiter, foldhash::fast::RandomState>,
    /// Each grant's quota, by the grant's position in the config.
    grant_limits: HashMap<usize, Limiter, foldhash::fast::RandomState>,
    shared: Option<Arc<Shared>>,
}

impl Quotas {
    pub fn new(consumers: &[Consumer], grants: &[Grant], shared: Option<Arc<Shared>>) -> Quotas {
        // With shared quotas, the local limiters hold this replica's share.
        let local = |q: QuotaSpec| match &shared {
            Some(s) => Limiter::new(crate::shared::share(q, s.settings().replicas)),
            None => Limiter::new(q),
        };
        let consumer_limits = consumers
            .iter()
            .filter_map(|c| Some((c.id.clone(), local(c.quota?))))
            .collect();
        let grant_limits = grants
            .iter()
            .enumerate()
            .filter_map(|(i, g)| Some((i, local(g.quota?))))
            .collect();
        Quotas {
            consumer_limits,
            grant_limits,
            shared,
        }
    }

    /// Counts the call against the grant's quota, then the consumer's; the state of the
    /// tighter one goes with the answer. A refusal by the grant's quota does not use up the
    /// consumer's.
    pub async fn admit(
        &self,
        consumer: &Consumer,
        grants: &[Grant],
        grant_index: usize,
        dataset: &str,
        metrics: &Metrics,
    ) -> Result<Option<QuotaState>, LookupError> {
        let refused = |refusal: Refusal, whose: String| match refusal {
            Refusal::Over(over) => {
                metrics
                    .rate_limited
                    .with(&[consumer.id.as_str(), dataset])
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let retry = over.retry_after.max(Duration::from_millis(1));
                LookupError {
                    retry_after: Some(retry),
                    quota: Some(over.state),
                    ..LookupError::new(
                        ErrorCode::RateLimited,
                        format!("{whose} is used up; retry in {} ms", retry.as_millis()),
                    )
                }
            }
            Refusal::Unavailable => LookupError {
                retry_after: Some(Duration::from_secs(1)),
                ..LookupError::new(
                    ErrorCode::Overloaded,
                    format!("{whose} cannot be checked: the shared quota store is unreachable"),
                )
            },
        };
        let grant = grants
            .get(grant_index)
            .and_then(|g| Some((g.quota?, self.grant_limits.get(&grant_index)?)));
        let by_grant = match grant {
            None => None,
            Some((spec, local)) => {
                let name = format!("grant:{}:{dataset}:{grant_index}", consumer.id);
                Some(
                    self.check_quota(&name, spec, local)
                        .await
                        .map_err(|r| refused(r, format!("the quota of {spec} on {dataset}")))?,
                )
            }
        };
        let by_consumer = match consumer
            .quota
            .and_then(|q| Some((q, self.consumer_limits.get(&consumer.id)?)))
        {
            None => None,
            Some((spec, local)) => {
                let name = format!("consumer:{}", consumer.id);
                Some(
                    self.check_quota(&name, spec, local)
                        .await
                        .map_err(|r| refused(r, format!("the consumer's quota of {spec}")))?,
                )
            }
        };
        Ok(QuotaState::tighter(by_grant, by_consumer))
    }

    /// One quota: shared through Redis when configured, else this process's limiter.
    async fn check_quota(
        &self,
        name: &str,
        spec: QuotaSpec,
        local: &Limiter,
    ) -> Result<QuotaState, Refusal> {
        match &self.shared {
            Some(shared) => shared.check(&shared.key(name, spec), spec, local).await,
            None => local.check().map_err(Refusal::Over),
        }
    }
}
