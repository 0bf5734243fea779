//! One version of what the gateway runs: its settings and the runtime forms their owners
//! built from them (datasets, connectors, consumers, grants, context rules, admin
//! credentials, audit keys). `app::build` makes one; every reload makes another.

use crate::audit::settings::AuditConfig;
use crate::config::Settings;
use crate::domain::context::ContextRules;
use crate::domain::dataset::Dataset;
use crate::layers::policy::{AdminCredential, Consumer, Grant};
use crate::upstream::spec::ConnectorConfig;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Model {
    pub settings: Settings,
    pub audit: AuditConfig,
    pub context_rules: ContextRules,
    /// Admin credentials with roles (operator tokens included, unnamed).
    pub admin_credentials: Vec<AdminCredential>,
    /// What secrets sent through the admin API are sealed under (`[admin] secrets_key`).
    pub secrets_key: Option<crate::config::sealed::SealKey>,
    pub datasets: Vec<Arc<Dataset>>,
    pub connectors: Vec<ConnectorConfig>,
    pub consumers: Vec<Consumer>,
    pub grants: Vec<Grant>,
    /// The dossier register's settings (read at start).
    pub dossiers: crate::dossiers::DossierSettings,
    /// Misuse detection's settings and every caller's rules.
    pub misuse: crate::layers::misuse::MisuseSettings,
    /// The procedures catalogue: names by code, for access reports.
    pub procedures: std::collections::BTreeMap<String, String>,
    /// How access requests are answered: their deadline in working days.
    pub access: crate::domain::calendar::AccessSettings,
    /// The certificates the gateway holds (server, client CA, toward providers), for the
    /// expiry gauge.
    pub certificates: Vec<crate::certs::CertificateExpiry>,
}

impl Model {
    /// What `check-config` and the start report without refusing: built-in datasets that
    /// no connector serves (lookups of them answer `unknown_dataset`).
    pub fn warnings(&self) -> Vec<String> {
        self.datasets
            .iter()
            .filter(|d| !self.connectors.iter().any(|c| c.dataset == d.name))
            .map(|d| {
                format!(
                    "dataset {} is not served: no connector is configured for it",
                    d.name
                )
            })
            .collect()
    }

    /// The names an access report shows beside codes: consumers' and procedures'.
    pub fn report_names(&self) -> crate::audit::citizen::Names {
        crate::audit::citizen::Names {
            consumers: self
                .consumers
                .iter()
                .map(|c| (c.id.clone(), c.name.clone()))
                .collect(),
            procedures: self.procedures.clone(),
        }
    }

    /// Where the embedded store keeps its parts, for backups and restores; `None` when the
    /// state is in PostgreSQL (back that up with its own tools: docs/operations.md).
    pub fn backup_layout(&self) -> Option<crate::audit::backup::Layout> {
        if self.settings.postgres.is_some() {
            return None;
        }
        let audit = &self.audit.path;
        Some(crate::audit::backup::Layout {
            databases: vec![
                ("audit.db".into(), audit.clone()),
                ("registry.db".into(), self.settings.registry_path.clone()),
                ("dossiers.db".into(), self.dossiers.path.clone()),
            ],
            segments: crate::audit::segments::Segments::dir_of(audit),
            archives: self.audit.archive_dir.clone(),
            lock: crate::audit::journal::lock_path(audit),
        })
    }

    pub fn dataset(&self, name: &str) -> Option<&Arc<Dataset>> {
        self.datasets.iter().find(|d| d.name == name)
    }
}
