//! Builds one version of the gateway from its settings. Each owner builds its runtime form
//! from its own section; every mistake in every file is collected here, so one run names
//! them all, each with its file and key.

use crate::audit;
use crate::config::{ConfigErrors, Errors, Sections, Settings, Source};
use crate::core::model::Model;
use crate::domain::context::ContextRules;
use crate::domain::dataset::{self, Dataset};
use crate::layers::policy;
use crate::transport::door::{self, DoorConfig};
use crate::transport::tls::{self, TlsConfig};
use crate::upstream::spec;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A configuration ready to start: the model the core runs on, and what the listeners
/// read once, at start: the lookup listener's TLS and the door's limits.
#[derive(Debug, Clone)]
pub struct Built {
    pub model: Model,
    pub tls: Option<TlsConfig>,
    pub door: DoorConfig,
}

/// Reads `source` with `env`'s overrides (pass `std::env::vars()` collected, or a map in
/// tests) and builds every part, or names every error.
pub fn build(source: &Source, env: &BTreeMap<String, String>) -> Result<Built, ConfigErrors> {
    let (settings, sections, mut all) = Settings::read(source, env)?;
    let Sections {
        gateway,
        datasets,
        connectors,
        consumers,
        grants,
        procedures,
        accounts,
    } = sections;
    let mut e = Errors {
        file: settings.source.clone(),
        all: &mut all,
    };
    let tls = gateway
        .tls
        .as_ref()
        .and_then(|t| tls::from_settings(source, t, &mut e));
    let tls_client_ca = gateway.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    let door = door::from_settings(&gateway.door, &mut e);
    let audit = audit::settings::from_settings(source, &gateway.audit, env, &mut e);
    let context_rules = ContextRules::from_settings(&gateway.context, &mut e);
    let dossiers = crate::dossiers::from_settings(source, &gateway.dossiers, &mut e);
    let misuse = crate::layers::misuse::from_settings(&gateway.misuse, &mut e);
    let access = crate::domain::calendar::from_settings(
        &gateway.access_requests,
        misuse.office.calendar(),
        &mut e,
    );
    let admin_credentials =
        policy::admin_credentials(&gateway.admin, gateway.tls.is_some(), tls_client_ca, &mut e);
    let secrets_key = crate::config::sealed::from_settings(source, &gateway.admin, env, &mut e);
    let mut e = Errors {
        file: datasets.0,
        all: e.all,
    };
    let datasets: Vec<Arc<Dataset>> = dataset::from_settings(datasets.1, &mut e)
        .into_iter()
        .map(Arc::new)
        .collect();
    let mut e = Errors {
        file: connectors.0,
        all: e.all,
    };
    let connectors = spec::connectors(
        connectors.1,
        &datasets,
        source,
        env,
        secrets_key.as_ref(),
        &mut e,
    );
    let mut e = Errors {
        file: consumers.0,
        all: e.all,
    };
    let consumers = policy::consumers(consumers.1, tls_client_ca, &mut e);
    let mut e = Errors {
        file: accounts.0,
        all: e.all,
    };
    let consumers = crate::layers::accounts::join(consumers, accounts.1, tls_client_ca, &mut e);
    for a in &admin_credentials {
        if let policy::AdminRole::ConsumerAdmin { consumer } = &a.role
            && !consumers.iter().any(|c| &c.id == consumer)
        {
            e.add(
                format!("admin ({})", a.name),
                format!("consumer_admin names consumer {consumer:?}, which is not a consumer"),
            );
        }
    }
    let mut e = Errors {
        file: grants.0,
        all: e.all,
    };
    let grants = policy::grants(grants.1, &consumers, &datasets, &mut e);
    let mut e = Errors {
        file: procedures.0,
        all: e.all,
    };
    let procedures = crate::domain::context::procedures(&procedures.1, &context_rules, &mut e);
    if !all.is_empty() {
        return Err(ConfigErrors(all));
    }
    let mut certificates: Vec<_> = tls
        .as_ref()
        .map(|t| t.certificates.clone())
        .unwrap_or_default();
    for c in &connectors {
        if let Some((chain, _)) = c.tls.as_ref().and_then(|t| t.identity.as_ref()) {
            certificates.extend(crate::certs::expiries(chain, "upstream_client", true));
        }
    }
    Ok(Built {
        model: Model {
            settings,
            audit,
            context_rules,
            admin_credentials,
            secrets_key,
            datasets,
            connectors,
            consumers,
            grants,
            dossiers,
            misuse,
            procedures,
            access,
            certificates,
        },
        tls,
        door,
    })
}

#[cfg(test)]
mod tests;
