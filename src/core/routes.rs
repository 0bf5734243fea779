//! Building the core from a model: a route per dataset (its cache, guard and connector),
//! kept across a reload while its connector's configuration is unchanged; and what the
//! admin listener reads and does to them (guards, purges, the drain flag).

use super::gateway::Gateway;
use super::model::Model;
use crate::audit::writer::AuditLog;
use crate::domain::dataset::Dataset;
use crate::domain::date::Date;
use crate::domain::error::{ErrorCode, LookupError};
use crate::dossiers::Register;
use crate::layers::cache::RecordCache;
use crate::layers::fetch::Route;
use crate::layers::misuse::Detector;
use crate::layers::quota::Quotas;
use crate::shared::Shared;
use crate::telemetry::metrics::Metrics;
use crate::upstream::connector::{Connector, EndpointError};
use crate::upstream::guard::{Guard, GuardStatus};
use crate::upstream::probe::ProbeState;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a core could not be built from a valid model.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("connector {connector}: {source}")]
    Connector {
        connector: String,
        source: EndpointError,
    },
    #[error("connector {connector} serves {dataset}, which is not a dataset")]
    UnknownDataset { connector: String, dataset: String },
}

/// What every version of the core shares with the next.
struct Lasting {
    audit: Arc<AuditLog>,
    metrics: Arc<Metrics>,
    draining: Arc<AtomicBool>,
    http: reqwest::Client,
    shared: Option<Arc<Shared>>,
    dossiers: Arc<Register>,
    detector: Arc<Detector>,
    assertions: Arc<crate::layers::assertion::SeenAssertions>,
}

impl Gateway {
    /// Builds the core from validated config, its audit writer and its dossier register.
    pub fn new(
        config: Arc<Model>,
        audit: AuditLog,
        dossiers: Arc<Register>,
    ) -> Result<Gateway, BuildError> {
        crate::certs::install_crypto();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?;
        let shared = match &config.settings.redis {
            Some(settings) => Some(Arc::new(Shared::new(settings.clone())?)),
            None => None,
        };
        let lasting = Lasting {
            audit: Arc::new(audit),
            metrics: Arc::default(),
            draining: Arc::default(),
            http,
            shared,
            dossiers,
            detector: Arc::default(),
            assertions: Arc::default(),
        };
        Gateway::build(config, lasting, &HashMap::new())
    }

    /// The core for a new configuration, sharing this one's audit writer, metrics, drain
    /// flag and dossier register, and keeping each connector whose configuration did not
    /// change (its cache, guard and probe state go on). Quotas start afresh.
    pub fn next(&self, config: Arc<Model>) -> Result<Gateway, BuildError> {
        let lasting = Lasting {
            audit: self.audit.clone(),
            metrics: self.metrics.clone(),
            draining: self.draining.clone(),
            http: self.http.clone(),
            shared: self.shared.clone(),
            dossiers: self.dossiers.clone(),
            detector: self.detector.clone(),
            assertions: self.assertions.clone(),
        };
        Gateway::build(config, lasting, &self.routes)
    }

    /// Which connectors `next` would keep and which it would build anew.
    pub fn connector_changes(&self, config: &Model) -> (Vec<String>, Vec<String>) {
        let mut kept = Vec::new();
        let mut rebuilt = Vec::new();
        for c in &config.connectors {
            let same = self
                .routes
                .get(c.dataset.as_str())
                .is_some_and(|r| r.fingerprint == c.fingerprint);
            if same {
                kept.push(c.name.clone())
            } else {
                rebuilt.push(c.name.clone())
            }
        }
        (kept, rebuilt)
    }

    fn build(
        config: Arc<Model>,
        lasting: Lasting,
        previous: &HashMap<String, Arc<Route>>,
    ) -> Result<Gateway, BuildError> {
        let Lasting {
            audit,
            metrics,
            draining,
            http,
            shared,
            dossiers,
            detector,
            assertions,
        } = lasting;
        let mut routes = HashMap::new();
        for c in &config.connectors {
            let dataset = config
                .dataset(&c.dataset)
                .ok_or_else(|| BuildError::UnknownDataset {
                    connector: c.name.clone(),
                    dataset: c.dataset.clone(),
                })?
                .clone();
            if let Some(kept) = previous
                .get(&dataset.name)
                .filter(|r| r.fingerprint == c.fingerprint)
            {
                routes.insert(dataset.name.clone(), kept.clone());
                continue;
            }
            let connector =
                Connector::new(c.clone(), dataset.clone(), http.clone()).map_err(|source| {
                    BuildError::Connector {
                        connector: c.name.clone(),
                        source,
                    }
                })?;
            let cache = RecordCache::new(c.cache).with_indexer(indexer(&dataset, &audit));
            let guard = match &shared {
                Some(shared) => {
                    Guard::new(c.guard.clone(), c.timeout).share_capacity(shared.clone(), &c.name)
                }
                None => Guard::new(c.guard.clone(), c.timeout),
            };
            routes.insert(
                dataset.name.clone(),
                Arc::new(Route {
                    fingerprint: c.fingerprint.clone(),
                    dataset,
                    connector,
                    cache,
                    guard,
                    probe: std::sync::Mutex::new(ProbeState::default()),
                }),
            );
        }
        let quotas = Quotas::new(&config.consumers, &config.grants, shared.clone());
        Ok(Gateway {
            config,
            routes,
            quotas,
            shared,
            audit,
            metrics,
            draining,
            http,
            dossiers,
            detector,
            assertions,
        })
    }

    /// The route of a dataset that exists and is switched on.
    #[inline]
    pub(super) fn route(&self, dataset: &str) -> Result<&Route, LookupError> {
        let route = self.routes.get(dataset).ok_or_else(|| {
            let message = if self.config.dataset(dataset).is_some() {
                format!("dataset {dataset} is not served here: no connector is configured for it")
            } else {
                format!("no dataset named {dataset:?}")
            };
            LookupError::new(ErrorCode::UnknownDataset, message)
        })?;
        // Whether it is switched off comes from this version's model: a route (and its
        // cache) outlives a switch.
        if self.config.dataset(dataset).is_some_and(|d| d.disabled) {
            return Err(LookupError::new(
                ErrorCode::UnknownDataset,
                format!("dataset {dataset} is switched off by its owner"),
            ));
        }
        Ok(route)
    }

    /// What this replica shares with the others through Redis, when configured.
    pub fn shared(&self) -> Option<&Arc<Shared>> {
        self.shared.as_ref()
    }

    pub fn config(&self) -> &Model {
        &self.config
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The audit writer's handle, shared by every version of the core.
    pub fn audit_handle(&self) -> Arc<AuditLog> {
        self.audit.clone()
    }

    /// Each connector's guard: (connector, dataset, status, calls, attempts, retries).
    pub fn guards(&self) -> Vec<(String, String, GuardStatus, [u64; 5])> {
        let mut out: Vec<_> = self
            .routes
            .values()
            .map(|r| {
                let s = r.guard.stats();
                let n =
                    |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
                (
                    r.connector.name().to_owned(),
                    r.dataset.name.clone(),
                    r.guard.status(),
                    [
                        n(&s.calls),
                        n(&s.attempts),
                        n(&s.retries),
                        n(&s.rejected_open),
                        n(&s.rejected_busy),
                    ],
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// From now on readiness is false: the gateway is shutting down.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Forgets cached records: one key of a dataset, or all of it. Returns how many records
    /// the dataset held before.
    pub async fn purge(&self, dataset: &str, key: Option<&str>) -> Result<u64, LookupError> {
        let route = self.routes.get(dataset).ok_or_else(|| {
            LookupError::new(ErrorCode::UnknownDataset, format!("no dataset {dataset:?}"))
        })?;
        route.cache.settle().await;
        let before = route.cache.len();
        match key {
            None => route.cache.purge_all(),
            Some(key) => {
                let key = route
                    .dataset
                    .key
                    .normalize(key, Date::today().year)
                    .map_err(|rule| LookupError::new(ErrorCode::InvalidKey, rule))?;
                route.cache.purge_key(&key).await;
            }
        }
        Ok(before)
    }
}

/// Finds, in a record entering the cache, the personal ids in the dataset's person fields
/// (other than the record's own key), as keyed references of `population.citizen`: the
/// references a citizen's access report looks for.
fn indexer(dataset: &Dataset, audit: &Arc<AuditLog>) -> crate::layers::cache::Indexer {
    let fields = dataset.person_fields.clone();
    let key_fields = dataset.key_fields.clone();
    let audit = audit.clone();
    Box::new(move |record| {
        let own: Vec<&str> = key_fields
            .iter()
            .filter_map(|f| record.0.get(f).and_then(|v| v.as_str()))
            .collect();
        let mut out = Vec::new();
        for field in &fields {
            let Some(value) = record.0.get(field) else {
                continue;
            };
            let mut ids = Vec::new();
            crate::domain::record::personal_ids(value, &mut ids);
            ids.sort_unstable();
            ids.dedup();
            for id in ids.iter().filter(|id| !own.contains(&id.as_str())) {
                out.push((
                    field.clone(),
                    audit.subject(crate::domain::dataset::POPULATION_CITIZEN, id),
                ));
            }
        }
        out
    })
}
