//! The running core, swappable at run time: a new configuration replaces the old one at
//! once, calls in flight finish on the version they started with, and new calls see the
//! new one. A configuration that does not validate is refused whole; the old one keeps
//! serving.

use super::gateway::Gateway;
use super::model::Model;
use crate::config::{ConfigErrors, Source};
use crate::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub struct Live {
    current: RwLock<Arc<Gateway>>,
    version: AtomicU64,
    reloading: tokio::sync::Mutex<()>,
    registry: Option<Registry>,
    build: Builder,
}

/// Builds the model of a configuration read again (a reload, a change, a rollback, another
/// replica's version). `app` provides it: it alone knows every owner of a section.
pub type Builder = Arc<dyn Fn(&Source) -> Result<Model, ConfigErrors> + Send + Sync>;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub version: u64,
    /// Connectors kept running (cache, guard and probe state intact), and built anew.
    pub kept: Vec<String>,
    pub rebuilt: Vec<String>,
    /// Settings that changed but take effect only at the next start.
    pub needs_restart: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new configuration is invalid; the running one stays:\n{0}")]
    Invalid(ConfigErrors),
    #[error("{0}")]
    Unsupported(String),
    #[error("the new configuration could not be started: {0}")]
    Build(#[from] super::routes::BuildError),
    #[error("the new configuration could not be started: {0}")]
    Registry(#[from] crate::registry::RegistryError),
    #[error(
        "the new configuration could not be started: the probe of {dataset} failed ({why}: {detail}); nothing was applied"
    )]
    ProbeFailed {
        dataset: String,
        why: &'static str,
        detail: String,
    },
    #[error("the new configuration could not be started: the registry is empty")]
    RegistryEmpty,
}

impl Live {
    /// `version` is the registry version the gateway runs (1 without a registry).
    pub fn new(
        gateway: Gateway,
        registry: Option<Registry>,
        version: u64,
        build: Builder,
    ) -> Arc<Live> {
        Arc::new(Live {
            current: RwLock::new(Arc::new(gateway)),
            version: AtomicU64::new(version),
            reloading: tokio::sync::Mutex::new(()),
            registry,
            build,
        })
    }

    pub fn registry(&self) -> Option<&Registry> {
        self.registry.as_ref()
    }

    /// The version new calls use.
    pub fn current(&self) -> Arc<Gateway> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The registry version running (or a count of swaps without a registry).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// Reads the configuration files again (with `env` for overrides) and swaps them in if
    /// they validate; recorded as a new registry version.
    pub async fn reload(&self, actor: &str) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let old = self.current();
        let source = match old.config().settings.origin.base() {
            Source::File(main) => Source::File(main.clone()),
            _ => {
                return Err(ReloadError::Unsupported(
                    "the embedded demo configuration has no files to read again; run serve --config FILE"
                        .into(),
                ));
            }
        };
        // Consumers and keys made through the admin API are not in the files: they stay.
        let source = source.with_files(carried(&old, Vec::new()));
        let config = (self.build)(&source).map_err(ReloadError::Invalid)?;
        self.swap(old, config, actor, "reloaded from the config files", None)
            .await
    }

    /// Applies new files (by role: connectors, consumers, grants), or only checks them when
    /// `dry_run`; with `probe` = (dataset, key), only if the new version's provider answers
    /// that key first (a connector is tried before it goes live). Recorded as a new registry
    /// version with `change`; `None` for a dry run.
    pub async fn apply(
        &self,
        actor: &str,
        change: &str,
        files: Vec<(String, String)>,
        dry_run: bool,
        probe: Option<(&str, &str)>,
    ) -> Result<Option<Reloaded>, ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let old = self.current();
        let source = old.config().settings.origin.with_files(files);
        let config = (self.build)(&source).map_err(ReloadError::Invalid)?;
        if dry_run {
            return Ok(None);
        }
        self.swap(old, config, actor, change, probe).await.map(Some)
    }

    /// Runs an earlier registry version again (recorded as a new version).
    pub async fn rollback(&self, actor: &str, to: i64) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let registry = self.registry.as_ref().ok_or_else(|| {
            ReloadError::Unsupported("no registry: nothing to roll back to".into())
        })?;
        let earlier = registry
            .get(to)
            .await?
            .ok_or_else(|| ReloadError::Unsupported(format!("there is no version {to}")))?;
        let old = self.current();
        // Consumers and keys are never rolled back: a revoked key stays revoked, an
        // issued one stays issued.
        let files = carried(&old, earlier.files);
        let source = old.config().settings.origin.with_files(files);
        let config = (self.build)(&source).map_err(ReloadError::Invalid)?;
        self.swap(
            old,
            config,
            actor,
            &format!("rolled back to version {to}"),
            None,
        )
        .await
    }

    /// Swaps in `config`; with `probe` = (dataset, key), only if the new version's provider
    /// answers that key first.
    async fn swap(
        &self,
        old: Arc<Gateway>,
        config: Model,
        actor: &str,
        change: &str,
        probe: Option<(&str, &str)>,
    ) -> Result<Reloaded, ReloadError> {
        let needs_restart = restart_only(old.config(), &config);
        let (kept, rebuilt) = old.connector_changes(&config);
        let files = config.settings.files.clone();
        let next = old.next(Arc::new(config))?;
        if let Some((dataset, key)) = probe {
            let answer = next.probe(dataset, key).await;
            if answer.up != Some(true) {
                return Err(ReloadError::ProbeFailed {
                    dataset: dataset.to_owned(),
                    why: if answer.error.is_empty() {
                        "no answer"
                    } else {
                        answer.error
                    },
                    detail: answer.detail,
                });
            }
        }
        let version = match &self.registry {
            Some(r) => {
                r.record(
                    actor,
                    change,
                    &files,
                    Some(self.version.load(Ordering::SeqCst) as i64),
                )
                .await? as u64
            }
            None => self.version.load(Ordering::SeqCst) + 1,
        };
        let shared = next.shared().cloned();
        let origin = next.config().settings.instance_id.clone();
        rotate_keys(old.config(), &next, actor).await;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        self.version.store(version, Ordering::SeqCst);
        // The other replicas run it too.
        if let (Some(shared), Some(_)) = (shared, &self.registry) {
            shared
                .publish(&crate::shared::Event::Registry { version, origin })
                .await;
        }
        Ok(Reloaded {
            version,
            kept,
            rebuilt,
            needs_restart,
        })
    }
}

/// Puts the keys a new version names to work — the checkpoint signing key goes to the
/// audit writer; the evidence and subject keys live in the version itself — and records
/// each rotation in the trail (key ids only), with the actor who applied it.
async fn rotate_keys(old: &Model, next: &Gateway, actor: &str) {
    let (was, now) = (&old.audit, &next.config().audit);
    let mut rotations = Vec::new();
    if next.audit().rotate_signer(now.signer()) {
        rotations.push(format!(
            "the checkpoint signing key rotated from {} to {}",
            was.signing_key_id, now.signing_key_id
        ));
    }
    let evidence = |a: &crate::audit::settings::AuditConfig| {
        a.evidence
            .signer()
            .map(|k| (k.id.clone(), k.public.clone()))
    };
    if evidence(was) != evidence(now) {
        let id = |k: Option<(String, Vec<u8>)>| k.map(|k| k.0).unwrap_or_else(|| "none".into());
        rotations.push(format!(
            "the evidence signing key rotated from {} to {}",
            id(evidence(was)),
            id(evidence(now))
        ));
    }
    let held = now.subjects();
    let ids = held.ids().join(", ");
    if next.audit().rotate_subjects(held) {
        rotations.push(format!(
            "the subject keys are now {ids} (current first; was {}): new records use {}, reports and dossiers find subjects under each",
            was.subjects().ids().join(", "),
            now.subject_key_id
        ));
    }
    for detail in rotations {
        tracing::info!(%actor, "{detail}");
        let entry = crate::audit::record::AuditEntry {
            time_ms: crate::audit::record::now_ms(),
            actor: actor.to_owned(),
            action: "gateway_key_rotated".into(),
            outcome: "applied".into(),
            upstream_ms: -1,
            detail,
            ..Default::default()
        };
        if let Err(e) = next.audit().record(entry).await {
            tracing::error!(error = %e, "a key rotation could not be recorded");
        }
    }
}

/// `files` with the running version's accounts file (consumers and keys made through the
/// admin API) in place of theirs.
fn carried(running: &Gateway, mut files: Vec<(String, String)>) -> Vec<(String, String)> {
    files.retain(|(role, _)| role != "accounts");
    files.extend(
        running
            .config()
            .settings
            .files
            .iter()
            .filter(|(role, _)| role == "accounts")
            .cloned(),
    );
    files
}

impl Live {
    /// Runs the registry's latest version if it is newer than the one running: another
    /// replica changed the configuration. Nothing is recorded (the version is there).
    pub async fn follow(&self) -> Result<Option<u64>, ReloadError> {
        let Some(registry) = &self.registry else {
            return Ok(None);
        };
        let _one_at_a_time = self.reloading.lock().await;
        let running = self.version.load(Ordering::SeqCst);
        let latest = registry.latest_number().await?;
        if latest.is_none_or(|v| v as u64 <= running) {
            return Ok(None);
        }
        let version = registry.latest().await?.ok_or(ReloadError::RegistryEmpty)?;
        let old = self.current();
        let source = old.config().settings.origin.with_files(version.files);
        let config = (self.build)(&source).map_err(ReloadError::Invalid)?;
        let next = old.next(Arc::new(config))?;
        rotate_keys(old.config(), &next, &version.actor).await;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        self.version.store(version.version as u64, Ordering::SeqCst);
        tracing::info!(
            version = version.version,
            actor = %version.actor,
            change = %version.change,
            "running the registry's latest version"
        );
        Ok(Some(version.version as u64))
    }

    /// Keeps this replica in step with the others until `stop` turns true: purges and
    /// registry changes announced over Redis are applied as they arrive, and the registry is
    /// also read every `poll` in case an announcement was missed.
    pub async fn follow_replicas(
        self: Arc<Self>,
        poll: std::time::Duration,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        use crate::shared::Event;
        let me = self.current().config().settings.instance_id.clone();
        let shared = self.current().shared().cloned();
        let events = {
            let live = self.clone();
            let stop = stop.clone();
            async move {
                let Some(shared) = shared else { return };
                shared
                    .subscribe(stop, |event| {
                        let live = live.clone();
                        let me = me.clone();
                        async move {
                            match event {
                                Event::Purge {
                                    dataset,
                                    key,
                                    origin,
                                } if origin != me => {
                                    match live.current().purge(&dataset, key.as_deref()).await {
                                        Ok(_) => tracing::info!(%dataset, from = %origin, "purged, as another replica did"),
                                        Err(e) => tracing::warn!(%dataset, error = %e.message, "a replica's purge could not be applied"),
                                    }
                                }
                                Event::Dossier {
                                    consumer,
                                    dossier_id,
                                    origin,
                                } if origin != me => {
                                    live.current().dossiers().forget(&consumer, &dossier_id).await;
                                }
                                Event::Registry { origin, .. } if origin != me => {
                                    if let Err(e) = live.follow().await {
                                        tracing::error!(error = %e, "a replica's configuration change could not be applied");
                                    }
                                }
                                _ => {}
                            }
                        }
                    })
                    .await;
            }
        };
        let polling = {
            let live = self.clone();
            let mut stop = stop.clone();
            async move {
                if live.registry.is_none() {
                    return;
                }
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    if let Err(e) = live.follow().await {
                        tracing::warn!(error = %e, "the registry could not be read");
                    }
                }
            }
        };
        tokio::join!(events, polling);
    }

    /// Probes every connector that has `[connector.health]`, each at its own interval,
    /// through whatever version is current (connectors added or changed at run time
    /// included), until `stop` turns true. A slow provider delays only its own probes.
    pub async fn run_health_checks(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        use std::collections::HashMap;
        use tokio::time::{Duration, Instant};
        // Connector name → (settings it was scheduled with, when it is next due).
        let mut due: HashMap<String, ((String, Duration), Instant)> = HashMap::new();
        let mut running = tokio::task::JoinSet::new();
        loop {
            let now = Instant::now();
            let current = self.current();
            let checked: Vec<_> = current
                .config()
                .connectors
                .iter()
                .filter_map(|c| Some((c.name.clone(), c.dataset.clone(), c.health.clone()?)))
                .collect();
            due.retain(|name, _| checked.iter().any(|(n, _, _)| n == name));
            for (name, dataset, settings) in checked {
                let slot = due.entry(name).or_insert((settings.clone(), now));
                if slot.0 != settings {
                    *slot = (settings.clone(), now);
                }
                if slot.1 <= now {
                    slot.1 = now + settings.1;
                    let live = self.clone();
                    running.spawn(async move {
                        live.current().probe(&dataset, &settings.0).await;
                    });
                }
            }
            while running.try_join_next().is_some() {}
            let next = due
                .values()
                .map(|(_, at)| *at)
                .min()
                .unwrap_or(now + Duration::from_secs(1))
                .min(now + Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        running.shutdown().await;
    }
}

/// Settings a running gateway cannot change: listeners, TLS, the audit store, identity.
fn restart_only(old: &Model, new: &Model) -> Vec<String> {
    let mut changed = Vec::new();
    if old.settings.lookup_addr != new.settings.lookup_addr {
        changed.push("listen.lookup".into());
    }
    if old.settings.admin_addr != new.settings.admin_addr {
        changed.push("listen.admin".into());
    }
    if old.settings.tls.is_some() != new.settings.tls.is_some() {
        changed.push("tls".into());
    }
    if old.audit.path != new.audit.path || old.audit.writer != new.audit.writer {
        changed.push("audit".into());
    }
    if old.audit.anchoring != new.audit.anchoring {
        changed.push("audit.witnesses".into());
    }
    let redis = |c: &Model| c.settings.redis.as_ref().map(|r| format!("{r:?}{}", r.url));
    if redis(old) != redis(new) {
        changed.push("redis".into());
    }
    let pg = |c: &Model| {
        c.settings
            .postgres
            .as_ref()
            .map(|p| format!("{}{}", p.url, p.schema))
    };
    if pg(old) != pg(new) {
        changed.push("storage".into());
    }
    if old.settings.instance_id != new.settings.instance_id {
        changed.push("instance_id".into());
    }
    if old.settings.log_json != new.settings.log_json
        || old.settings.log_level != new.settings.log_level
    {
        changed.push("log".into());
    }
    changed
}
