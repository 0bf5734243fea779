//! Wires config → core → transports, and runs them until shutdown.

mod build;

use crate::audit::journal::JournaledStore;
use crate::audit::store::AuditStore;
use crate::audit::writer::AuditLog;
use crate::core::gateway::Gateway;
use crate::core::live::Live;
use crate::core::model::Model;
use crate::proto::lienthong::access_report_service_server::AccessReportServiceServer;
use crate::proto::lienthong::admin_service_server::AdminServiceServer;
use crate::proto::lienthong::dossier_service_server::DossierServiceServer;
use crate::proto::lienthong::lookup_service_server::LookupServiceServer;
use crate::registry::Registry;
use crate::transport::admin_grpc::AdminApi;
use crate::transport::door::{self, Door, Listener};
use crate::transport::grpc::{AccessReportApi, DossierApi, LookupApi};
use crate::transport::{admin, rest};
pub use build::{Built, build};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why the gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} for the {what} listener: {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("audit store: {0}")]
    Store(#[from] crate::audit::store::StoreError),
    #[error(
        "another process is already serving with the audit store {}: one gateway per SQLite \
         audit store (replicas share PostgreSQL, see [storage])",
        .0.display()
    )]
    StoreHeld(std::path::PathBuf),
    #[error("audit trail: {0}")]
    Audit(#[from] crate::audit::writer::AuditFailure),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error(transparent)]
    Dossiers(#[from] crate::dossiers::RegisterError),
    #[error("registry version {version} does not load with the current main file:\n{errors}")]
    Resume {
        version: i64,
        errors: crate::config::ConfigErrors,
    },
    #[error(transparent)]
    Build(#[from] crate::core::routes::BuildError),
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// A running gateway. Dropping it does not stop it; call [`Running::shutdown`].
pub struct Running {
    pub lookup_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub live: Arc<Live>,
    stop_lookup: watch::Sender<bool>,
    stop_rest: watch::Sender<bool>,
    lookup_task: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
    stop_door: watch::Sender<bool>,
    door_summaries: JoinHandle<()>,
    audit_writer: JoinHandle<()>,
    store: Arc<dyn AuditStore>,
    health: tonic_health::server::HealthReporter,
    drain_delay: std::time::Duration,
}

impl Running {
    /// The core version serving now.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.live.current()
    }

    /// Drains: readiness turns false and gRPC health says NOT_SERVING; after the drain delay
    /// the lookup listener stops accepting and its in-flight calls finish; then the admin
    /// listener closes and the audit writer commits what is queued and signs the head.
    /// Returns when all of that is done.
    pub async fn shutdown(self) {
        self.live.current().start_draining();
        self.health
            .set_not_serving::<LookupServiceServer<LookupApi>>()
            .await;
        self.health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        tokio::time::sleep(self.drain_delay).await;
        let _ = self.stop_lookup.send(true);
        let _ = self.lookup_task.await;
        let _ = self.stop_rest.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        // The listeners are closed: the door's last window goes into the trail.
        let _ = self.stop_door.send(true);
        let _ = self.door_summaries.await;
        // The last handle on the core: dropping it closes the audit queue.
        drop(self.live);
        if tokio::time::timeout(std::time::Duration::from_secs(30), self.audit_writer)
            .await
            .is_err()
        {
            tracing::error!("the audit writer did not finish within 30 s");
        }
        // The newest segment is indexed now, so a reader after the stop (or an `audit
        // verify`) finds every record through an index.
        if let Err(e) = self.store.flush().await {
            tracing::error!(error = %e, "the newest audit segment could not be indexed; the next start indexes it");
        }
    }

    /// Runs until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) {
        shutdown_signal().await;
        tracing::info!(
            drain_delay_ms = self.drain_delay.as_millis() as u64,
            "draining, then shutting down"
        );
        self.shutdown().await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Connections the kernel holds for the accept loop. Deep enough that a burst of
/// connections from one source (closed at accept by the door) does not fill it and make
/// other sources' connections wait for a SYN retry; the kernel caps it at `somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, StartError> {
    let failed = |source| StartError::Bind { addr, what, source };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(failed)?;
    socket.set_reuseaddr(true).map_err(failed)?;
    socket.bind(addr).map_err(failed)?;
    socket.listen(LISTEN_BACKLOG).map_err(failed)
}

fn local_addr(listener: &TcpListener, what: &'static str) -> Result<SocketAddr, StartError> {
    listener.local_addr().map_err(|source| StartError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        what,
        source,
    })
}

/// How often a replica on a shared registry reads it for versions another replica made
/// (announcements over Redis are the fast path).
const REGISTRY_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// How often the `[tls]` files are looked at for a change.
const TLS_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Loads the `[tls]` files again when they change on disk, or when a reload or rollback
/// names other ones, until `stop` turns true: new connections get the new certificate, CA
/// and revocation lists, connections made before keep theirs. Files that do not load (a
/// certificate written before its key, say) leave the running ones in place, and are tried
/// again at their next change.
async fn watch_tls(
    live: Arc<Live>,
    slot: Arc<crate::transport::tls::TlsSlot>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use crate::transport::tls;
    let state = |g: &crate::core::gateway::Gateway| {
        let s = &g.config().settings;
        s.tls.as_ref().map(|raw| tls::files_state(&s.origin, raw))
    };
    let mut seen = state(&live.current());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TLS_POLL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let g = live.current();
        let now = state(&g);
        if now == seen {
            continue;
        }
        seen = now;
        let settings = &g.config().settings;
        // TLS switched off or on waits for a restart (the reload says so).
        let Some(raw) = &settings.tls else { continue };
        let mut all = Vec::new();
        let loaded = tls::from_settings(
            &settings.origin,
            raw,
            &mut crate::config::Errors {
                file: settings.source.clone(),
                all: &mut all,
            },
        );
        match loaded {
            Some(t) if all.is_empty() => {
                // The expiry gauge follows the certificates served, not only a reload.
                *g.metrics()
                    .served_certificates
                    .write()
                    .unwrap_or_else(|p| p.into_inner()) = Some(
                    t.certificates
                        .iter()
                        .map(|c| (c.role, c.subject.clone(), c.not_after_s))
                        .collect(),
                );
                slot.set(t.server);
                tracing::info!("TLS files changed: new connections get the new certificate");
            }
            _ => tracing::error!(
                errors = %crate::config::ConfigErrors(all),
                "TLS files changed but do not load; the running certificate stays"
            ),
        }
    }
}

/// The audit store the config names: PostgreSQL (`storage.postgres_url`) or the embedded
/// store, and whether a running gateway holds the embedded store. Beside a running gateway
/// it reads the same files and sees each record once committed (see [`JournaledStore`]).
pub async fn open_store(config: &Model) -> Result<(Arc<dyn AuditStore>, bool), StartError> {
    let store = open_audit_store(config, false).await?;
    let held_elsewhere = !store.owned();
    Ok((store, held_elsewhere))
}

/// As [`open_store`]; `serving` refuses a SQLite store another process already writes.
async fn open_audit_store(
    config: &Model,
    serving: bool,
) -> Result<Arc<dyn AuditStore>, StartError> {
    Ok(match &config.settings.postgres {
        Some(pg) => Arc::new(
            crate::audit::postgres::PostgresStore::open(&pg.url, &pg.schema, config.audit.fsync)
                .await?,
        ),
        None => {
            let sync = config.audit.writer.durability == crate::audit::writer::Durability::Sync;
            let store = JournaledStore::open(&config.audit.path, config.audit.fsync, sync).await?;
            if serving && !store.owns() {
                return Err(StartError::StoreHeld(config.audit.path.clone()));
            }
            store
        }
    })
}

/// The configuration to run: the registry's latest version, which the config files seed on
/// the first start. The embedded demo configuration keeps no registry.
async fn resume(config: Arc<Model>) -> Result<(Arc<Model>, Option<Registry>, u64), StartError> {
    if matches!(config.settings.origin, crate::config::Source::Inline(_)) {
        return Ok((config, None, 1));
    }
    let registry = match &config.settings.postgres {
        Some(pg) => Registry::postgres(&pg.url, &pg.schema).await?,
        None => Registry::open(&config.settings.registry_path).await?,
    };
    let Some(latest) = registry.latest().await? else {
        let v = registry
            .record(
                "seed",
                &format!("seeded from {}", config.settings.source),
                &config.settings.files,
                None,
            )
            .await?;
        return Ok((config, Some(registry), v as u64));
    };
    if latest.files == config.settings.files {
        return Ok((config, Some(registry), latest.version as u64));
    }
    tracing::warn!(
        version = latest.version,
        "the config files differ from the registry's latest version, which runs; POST /admin/v1/reload applies the files"
    );
    let source = config.settings.origin.with_files(latest.files.clone());
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let resumed = build(&source, &env)
        .map(|b| b.model)
        .map_err(|errors| StartError::Resume {
            version: latest.version,
            errors,
        })?;
    Ok((Arc::new(resumed), Some(registry), latest.version as u64))
}

/// The dossier register the config names: in PostgreSQL beside the registry
/// (`storage.postgres_url`), else its SQLite file.
pub async fn open_register(
    config: &Model,
) -> Result<crate::dossiers::Register, crate::dossiers::RegisterError> {
    let store = match &config.settings.postgres {
        Some(pg) => crate::dossiers::Store::postgres(&pg.url, &pg.schema).await?,
        None => crate::dossiers::Store::open(&config.dossiers.path).await?,
    };
    Ok(crate::dossiers::Register::new(
        store,
        config.dossiers.clone(),
    ))
}

/// Expires dossiers never closed (each expiry audited) and purges ended ones past the
/// audit retention, every `dossiers.sweep_interval_ms` (and once at start-up) until `stop`.
async fn sweep_dossiers(
    live: Arc<Live>,
    every: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match live.current().sweep_dossiers().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "dossiers never closed expired"),
            Err(e) => tracing::error!(error = %e, "the dossier sweep failed; it runs again later"),
        }
    }
}

/// Archives expired audit records every hour (and once at start-up) until `stop`.
async fn retain(
    store: Arc<dyn AuditStore>,
    config: Arc<Model>,
    retention: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let before = crate::audit::record::now_ms() - retention.as_millis() as i64;
        let instances = store.instances().await.unwrap_or_default();
        for instance in instances {
            if let Err(e) = crate::audit::retention::archive_expired(
                store.as_ref(),
                &instance,
                before,
                &config.audit.archive_dir,
                &config.audit.signer(),
            )
            .await
            {
                tracing::error!(error = %e, instance, "audit archiving failed");
            }
        }
    }
}

/// Starts the lookup listener (REST + gRPC on one port) and the admin listener.
pub async fn start(built: Built) -> Result<Running, StartError> {
    let Built { model, tls, door } = built;
    // Before anything opens a file: room for every connection the door admits.
    let descriptors = crate::transport::door::raise_descriptor_limit();
    let config = Arc::new(model);
    crate::certs::install_crypto();
    let store = open_audit_store(&config, true).await?;
    let (audit, audit_writer) = AuditLog::start(
        store.clone(),
        &config.settings.instance_id,
        config.audit.subjects(),
        config.audit.signer(),
        config.audit.writer.clone(),
    )
    .await?;
    // Each committed checkpoint goes to the witnesses, beside the chain.
    let checkpoints = audit.checkpoint_feed();
    let anchor_stats = audit.anchoring().clone();
    let (config, registry, version) = resume(config).await?;
    let rebuild: crate::core::live::Builder = Arc::new(|source: &crate::config::Source| {
        let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
        build(source, &env).map(|b| b.model)
    });
    let live = Live::new(
        Gateway::new(
            config.clone(),
            audit,
            Arc::new(open_register(&config).await?),
        )?,
        registry,
        version,
        rebuild,
    );

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<LookupServiceServer<LookupApi>>()
        .await;
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    // Reflection v1, and v1alpha for older clients (grpcurl before 1.8.8, many libraries).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::LOOKUP_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let max_message = door.max_body_bytes;
    let lookup_service = crate::transport::grpc::Refusals::new(
        LookupServiceServer::new(LookupApi::new(live.clone()))
            .max_decoding_message_size(max_message),
        live.clone(),
        max_message,
    );
    let dossier_service = crate::transport::grpc::Refusals::new(
        DossierServiceServer::new(DossierApi::new(live.clone()))
            .max_decoding_message_size(max_message),
        live.clone(),
        max_message,
    );
    let report_service = crate::transport::grpc::Refusals::new(
        AccessReportServiceServer::new(AccessReportApi::new(live.clone()))
            .max_decoding_message_size(max_message),
        live.clone(),
        max_message,
    );
    let grpc = tonic::service::Routes::new(lookup_service)
        .add_service(dossier_service)
        .add_service(report_service)
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .into_axum_router();
    let lookup_router = rest::answer_unrouted(rest::router(live.clone()).merge(grpc), live.clone());

    let lookup = bind(config.settings.lookup_addr, "lookup").await?;
    let admin_listener = bind(config.settings.admin_addr, "admin").await?;
    let lookup_addr = local_addr(&lookup, "lookup")?;
    let admin_addr = local_addr(&admin_listener, "admin")?;
    let door = Door::new(door, live.current().metrics(), descriptors);
    let [lookup_cap, admin_cap] = door.caps();
    if lookup_cap < door.config().lookup.max_connections {
        tracing::warn!(
            descriptors = descriptors.limit,
            lookup_cap,
            admin_cap,
            "the descriptor limit lowers the door's connection caps"
        );
    }
    let (stop_lookup, lookup_stopped) = watch::channel(false);
    let (stop_rest, stopped) = watch::channel(false);
    let (stop_door, door_stopped) = watch::channel(false);
    let tls_slot = tls
        .as_ref()
        .map(|t| crate::transport::tls::TlsSlot::new(t.server.clone()));
    let lookup_task = door::serve(
        door.clone(),
        Listener::Lookup,
        lookup,
        tls_slot.clone(),
        lookup_router,
        lookup_stopped,
    );
    let admin_reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::ADMIN_DESCRIPTOR_SET)
        .build_v1()?;
    let admin_router = admin::answer_unrouted(
        admin::router(live.clone()).merge(
            tonic::service::Routes::new(AdminServiceServer::new(AdminApi::new(live.clone())))
                .add_service(admin_reflection)
                .into_axum_router(),
        ),
    );
    let admin_tls = tls_slot.clone().filter(|_| config.settings.admin_tls);
    let mut tasks = vec![door::serve(
        door.clone(),
        Listener::Admin,
        admin_listener,
        admin_tls,
        admin_router,
        stopped.clone(),
    )];
    let door_summaries = tokio::spawn(door.summarise(live.current().audit_handle(), door_stopped));
    tasks.push(tokio::spawn(
        live.clone().run_health_checks(stopped.clone()),
    ));
    if config.settings.redis.is_some() || config.settings.postgres.is_some() {
        tasks.push(tokio::spawn(
            live.clone().follow_replicas(REGISTRY_POLL, stopped.clone()),
        ));
    }
    tasks.push(tokio::spawn(sweep_dossiers(
        live.clone(),
        config.dossiers.sweep_every,
        stopped.clone(),
    )));
    if let Some(slot) = tls_slot {
        tasks.push(tokio::spawn(watch_tls(live.clone(), slot, stopped.clone())));
    }
    tasks.push(tokio::spawn(crate::audit::anchor::run(
        store.clone(),
        config.settings.instance_id.clone(),
        config.audit.anchoring.clone(),
        checkpoints,
        anchor_stats,
        stopped.clone(),
    )));
    if let Some(retention) = config.audit.retention {
        tasks.push(tokio::spawn(retain(
            store.clone(),
            config.clone(),
            retention,
            stopped,
        )));
    }
    let security = match &tls {
        None => "plaintext",
        Some(t) => match t.client_auth {
            None => "tls",
            Some(crate::transport::tls::ClientAuth::Optional) => {
                "tls, client certificates optional"
            }
            Some(crate::transport::tls::ClientAuth::Required) => {
                "tls, client certificates required"
            }
        },
    };
    tracing::info!(lookup = %lookup_addr, admin = %admin_addr, lookup_security = security, instance = %config.settings.instance_id, "gateway listening");
    Ok(Running {
        lookup_addr,
        admin_addr,
        live,
        stop_lookup,
        stop_rest,
        lookup_task,
        tasks,
        stop_door,
        door_summaries,
        audit_writer,
        store,
        health: health_reporter,
        drain_delay: config.settings.drain_delay,
    })
}
