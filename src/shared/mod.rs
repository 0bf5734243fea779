//! What replicas share through Redis: quotas, enforced by one atomic GCRA (a Lua script run
//! on Redis's own clock), so N replicas admit what one would; and a channel on which purges
//! and registry changes are announced to every replica.
//!
//! While Redis is unreachable (an error, or no answer within `redis.timeout_ms`) each quota
//! check falls back at once: with `local-share`, every replica enforces its share of the
//! quota (quota ÷ `redis.replicas`) in memory; with `fail-closed`, calls that carry a quota
//! are refused as `overloaded`. Redis is tried again a second later, and used as soon as it
//! answers. The check's own latency is measured.

pub mod limiter;

use crate::config::{RedisFallback, RedisSettings};
use crate::shared::limiter::{OverQuota, QuotaSpec, QuotaState};
use crate::telemetry::metrics::Histogram;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// GCRA on Redis's clock. KEYS[1]: the quota's theoretical arrival time (ms). ARGV: the
/// emission interval (µs) and the burst (calls). Returns {admitted, remaining, retry µs,
/// reset µs}.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tau = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tau
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
local remaining = math.floor((now + tau - new_tat) / interval)
return {1, remaining, 0, new_tat - now}
";

/// How long Redis is left alone after it failed, before a quota check tries it again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Why a shared quota check did not admit a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The quota is used up (across all replicas, or this replica's share).
    Over(OverQuota),
    /// Redis is unreachable and the configuration fails closed.
    Unavailable,
}

/// An event every replica acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// Forget cached records of a dataset (or one key of it).
    Purge {
        dataset: String,
        key: Option<String>,
        origin: String,
    },
    /// A new registry version: run it.
    Registry { version: u64, origin: String },
    /// A dossier changed (declared, a subject added or removed, closed, expired): forget
    /// the cached copy.
    Dossier {
        consumer: String,
        dossier_id: String,
        origin: String,
    },
}

pub struct Shared {
    settings: RedisSettings,
    client: redis::Client,
    conn: ConnectionManager,
    script: redis::Script,
    /// Until when Redis is not asked (µs since `epoch`), after a failure.
    skip_until: AtomicU64,
    epoch: Instant,
    pub stats: SharedStats,
    /// Last failure, for logs: logged once per outage.
    last_error: Mutex<Option<String>>,
}

#[derive(Debug)]
pub struct SharedStats {
    /// Time of each quota check against Redis (answered or not).
    pub check_seconds: Histogram,
    /// Quota checks answered by the fallback.
    pub fallbacks: AtomicU64,
    /// 1 while Redis answers, 0 while the fallback is in force.
    pub up: AtomicU64,
    /// Events received from other replicas, and applied.
    pub events: AtomicU64,
}

impl Shared {
    /// A handle on Redis; nothing is contacted until the first quota check.
    pub fn new(settings: RedisSettings) -> Result<Shared, redis::RedisError> {
        let client = redis::Client::open(settings.url.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Shared {
            settings,
            client,
            conn,
            script: redis::Script::new(GCRA),
            skip_until: AtomicU64::new(0),
            epoch: Instant::now(),
            stats: SharedStats {
                check_seconds: Histogram::new(crate::telemetry::metrics::SECONDS_BUCKETS),
                fallbacks: AtomicU64::new(0),
                up: AtomicU64::new(1),
                events: AtomicU64::new(0),
            },
            last_error: Mutex::new(None),
        })
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// The key of a quota, shared by every replica: `name` says whose quota it is, and the
    /// spec is part of it, so a changed quota starts afresh.
    pub fn key(&self, name: &str, spec: impl std::fmt::Display) -> String {
        format!("{}quota:{name}:{spec}", self.settings.key_prefix)
    }

    /// Admits one call against the shared quota `key`; while Redis is unreachable, against
    /// `share` (this replica's share, checked in memory) or not at all, as configured.
    pub async fn check(
        &self,
        key: &str,
        spec: QuotaSpec,
        share: &crate::shared::limiter::Limiter,
    ) -> Result<QuotaState, Refusal> {
        let interval = spec.per / spec.count.get();
        self.check_rate(key, interval, spec.count.get(), share)
            .await
    }

    /// As [`Shared::check`], for a rate: one call per `interval`, `burst` at once.
    pub async fn check_rate(
        &self,
        key: &str,
        interval: Duration,
        burst: u32,
        share: &crate::shared::limiter::Limiter,
    ) -> Result<QuotaState, Refusal> {
        if self.now_us() >= self.skip_until.load(Ordering::Relaxed) {
            let started = Instant::now();
            let answer = self.gcra(key, interval, burst).await;
            self.stats.check_seconds.observe_duration(started.elapsed());
            match answer {
                Ok(decision) => {
                    self.answered();
                    return decision;
                }
                Err(e) => self.failed(e),
            }
        }
        self.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
        match self.settings.fallback {
            RedisFallback::LocalShare => share.check().map_err(Refusal::Over),
            RedisFallback::FailClosed => Err(Refusal::Unavailable),
        }
    }

    /// Redis answered: if it had not, say that it does again.
    fn answered(&self) {
        if self.stats.up.swap(1, Ordering::Relaxed) == 0 {
            tracing::info!("redis answers again: quotas and detection are shared");
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// Redis failed: leave it alone for a second, and say so once per outage.
    fn failed(&self, e: String) {
        self.skip_until.store(
            self.now_us() + RETRY_AFTER_FAILURE.as_micros() as u64,
            Ordering::Relaxed,
        );
        self.stats.up.store(0, Ordering::Relaxed);
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none() {
            tracing::warn!(error = %e, fallback = ?self.settings.fallback, "redis unreachable: quotas and detection fall back");
        }
        *last = Some(e);
    }

    /// A key under this deployment's prefix.
    pub fn prefixed(&self, name: &str) -> String {
        format!("{}{name}", self.settings.key_prefix)
    }

    /// Runs `script` on Redis within the timeout, unless Redis failed within the last
    /// second; `None` when it did not answer (the caller falls back to memory).
    pub async fn eval(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Option<Vec<i64>> {
        if self.now_us() < self.skip_until.load(Ordering::Relaxed) {
            return None;
        }
        let mut conn = self.conn.clone();
        let mut invocation = script.prepare_invoke();
        for k in keys {
            invocation.key(k);
        }
        for a in args {
            invocation.arg(a);
        }
        let call = invocation.invoke_async::<Vec<i64>>(&mut conn);
        match tokio::time::timeout(self.settings.timeout, call).await {
            Ok(Ok(answer)) => {
                self.answered();
                Some(answer)
            }
            Ok(Err(e)) => {
                self.failed(e.to_string());
                None
            }
            Err(_) => {
                self.failed(format!(
                    "no answer within {} ms",
                    self.settings.timeout.as_millis()
                ));
                None
            }
        }
    }

    async fn gcra(
        &self,
        key: &str,
        interval: Duration,
        count: u32,
    ) -> Result<Result<QuotaState, Refusal>, String> {
        let interval_us = (interval.as_micros() as u64).max(1);
        let mut conn = self.conn.clone();
        let mut invocation = self.script.key(key);
        invocation.arg(interval_us).arg(count);
        let call = invocation.invoke_async::<(i64, i64, i64, i64)>(&mut conn);
        let (admitted, remaining, retry_us, reset_us) =
            match tokio::time::timeout(self.settings.timeout, call).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => {
                    return Err(format!(
                        "no answer within {} ms",
                        self.settings.timeout.as_millis()
                    ));
                }
            };
        let micros = |v: i64| Duration::from_micros(v.max(0) as u64);
        let state = QuotaState {
            limit: count,
            remaining: remaining.clamp(0, i64::from(count)) as u32,
            reset: micros(reset_us),
        };
        Ok(if admitted == 1 {
            Ok(state)
        } else {
            Err(Refusal::Over(OverQuota {
                state,
                retry_after: micros(retry_us),
            }))
        })
    }

    fn channel(&self) -> String {
        format!("{}events", self.settings.key_prefix)
    }

    /// Announces an event to every replica (best effort: a replica that misses it catches up
    /// from the registry, and cached records expire).
    pub async fn publish(&self, event: &Event) {
        let Ok(payload) = serde_json::to_string(event) else {
            return;
        };
        let mut conn = self.conn.clone();
        let sent = tokio::time::timeout(
            Duration::from_secs(2),
            redis::cmd("PUBLISH")
                .arg(self.channel())
                .arg(payload)
                .query_async::<i64>(&mut conn),
        )
        .await;
        match sent {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, ?event, "event not broadcast"),
            Err(_) => tracing::warn!(?event, "event not broadcast: redis did not answer"),
        }
    }

    /// Receives events until `stop` turns true, reconnecting as needed, and hands each to
    /// `apply`.
    pub async fn subscribe<F, Fut>(&self, mut stop: tokio::sync::watch::Receiver<bool>, apply: F)
    where
        F: Fn(Event) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        use futures::StreamExt;
        loop {
            let connected = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(self.channel()).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let pubsub = tokio::select! {
                c = tokio::time::timeout(Duration::from_secs(2), connected) => c,
                _ = stop.wait_for(|s| *s) => return,
            };
            match pubsub {
                Ok(Ok(pubsub)) => {
                    tracing::debug!("subscribed to replica events");
                    let mut messages = pubsub.into_on_message();
                    loop {
                        let message = tokio::select! {
                            m = messages.next() => m,
                            _ = stop.wait_for(|s| *s) => return,
                        };
                        let Some(message) = message else { break };
                        let Ok(payload) = message.get_payload::<String>() else {
                            continue;
                        };
                        match serde_json::from_str::<Event>(&payload) {
                            Ok(event) => {
                                self.stats.events.fetch_add(1, Ordering::Relaxed);
                                apply(event).await;
                            }
                            Err(e) => tracing::warn!(error = %e, "an unreadable replica event"),
                        }
                    }
                    tracing::warn!("replica events: subscription lost; reconnecting");
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "replica events: cannot subscribe"),
                Err(_) => tracing::debug!("replica events: redis did not answer"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// The Prometheus series of the shared limiter and the event channel.
    pub fn render(&self, out: &mut String) {
        use crate::telemetry::metrics::{render_counter, render_gauge};
        out.push_str(
            "# HELP lienthong_quota_store_seconds Time of each shared quota check against Redis.\n\
             # TYPE lienthong_quota_store_seconds histogram\n",
        );
        self.stats
            .check_seconds
            .render(out, "lienthong_quota_store_seconds", "");
        render_gauge(
            out,
            "lienthong_quota_store_up",
            "1 while Redis answers quota checks, 0 while the fallback is in force.",
            &[(String::new(), self.stats.up.load(Ordering::Relaxed) as f64)],
        );
        render_counter(
            out,
            "lienthong_quota_fallback_total",
            "Quota checks answered by the fallback while Redis was unreachable.",
            &[(String::new(), self.stats.fallbacks.load(Ordering::Relaxed))],
        );
        render_counter(
            out,
            "lienthong_replica_events_total",
            "Purges and registry changes received from replicas.",
            &[(String::new(), self.stats.events.load(Ordering::Relaxed))],
        );
    }
}

/// This replica's share of a quota while Redis is unreachable: the count divided by the
/// replicas, rounded up (a replica may always admit one call per period).
pub fn share(spec: QuotaSpec, replicas: u32) -> QuotaSpec {
    let count = spec.count.get().div_ceil(replicas.max(1)).max(1);
    QuotaSpec {
        count: std::num::NonZeroU32::new(count).expect("at least one"),
        per: spec.per,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replicas_share_is_the_quota_divided_rounded_up() {
        let q = QuotaSpec::parse("10/min").expect("valid");
        assert_eq!(share(q, 3).to_string(), "4/min");
        assert_eq!(share(q, 1), q);
        assert_eq!(share(q, 40).to_string(), "1/min");
    }

    #[test]
    fn events_read_back_as_written() {
        let e = Event::Purge {
            dataset: "population.citizen".into(),
            key: Some("001094000001".into()),
            origin: "a".into(),
        };
        let text = serde_json::to_string(&e).expect("json");
        assert!(text.contains("\"kind\":\"purge\""), "{text}");
        assert_eq!(serde_json::from_str::<Event>(&text).expect("reads"), e);
    }
}
