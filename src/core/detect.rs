//! Steps 4b and 4c as the core runs them, both before the quota: binding to a declared
//! dossier; then misuse detection, which counts the attempt under every rule, raises the
//! alerts of rules that fired once (kept for `/admin/v1/alerts`, recorded in the audit
//! trail, counted in metrics), and refuses the call while a rule under `refuse` fires.
//! Lookup results feed the not-found rule.

use super::gateway::Gateway;
use crate::audit::record::{AuditEntry, now_ms};
use crate::domain::context::CallContext;
use crate::domain::date::iso_ms;
use crate::domain::error::{ErrorCode, LookupError};
use crate::dossiers::Alert;
use crate::layers::misuse::{Attempt, Firing, serial};
use crate::layers::policy::{Binding, Consumer, Grant};
use std::sync::atomic::Ordering;

/// What a call is, for detection: its caller and grant, its context, and its key (used only
/// to make keyed references).
pub(super) struct Watched<'a> {
    pub(super) consumer: &'a Consumer,
    pub(super) grant: &'a Grant,
    pub(super) context: &'a CallContext,
    pub(super) dataset: &'a str,
    pub(super) key: &'a str,
    pub(super) subject: &'a str,
}

impl Gateway {
    /// Step 4b: under a declared binding, the call's dossier names its key.
    pub(super) async fn bind(&self, w: &Watched<'_>) -> Result<(), LookupError> {
        crate::layers::bind::bind(
            &self.dossiers,
            w.grant,
            &w.consumer.id,
            w.context,
            (w.subject, || {
                self.audit.subjects().older_references(w.dataset, w.key)
            }),
            now_ms(),
        )
        .await
    }

    /// Counts the attempt; refuses it while a rule under `refuse` fires.
    pub(super) async fn detect(&self, w: &Watched<'_>) -> Result<(), LookupError> {
        let settings = &self.config.misuse;
        if !settings.enabled {
            return Ok(());
        }
        let declared = match w.grant.binding {
            Binding::Declared => None,
            Binding::Pattern => Some(matches!(
                self.dossiers.cached(&w.consumer.id, w.context.dossier_id()).await,
                Ok(Some(d)) if d.holds(w.subject)
            )),
        };
        let buckets = serial(w.dataset, w.key).map(|(prefix, n)| {
            let b = n / settings.sequential_step;
            let keyed = self.audit.subjects();
            [b, b.saturating_sub(1), b + 1].map(|b| {
                keyed.current().short(&[
                    b"misuse:sequential",
                    w.dataset.as_bytes(),
                    prefix.as_bytes(),
                    &b.to_le_bytes(),
                ])
            })
        });
        let attempt = Attempt {
            consumer: &w.consumer.id,
            officer: w.context.officer_id(),
            dossier: w.context.dossier_id(),
            subject: w.subject,
            declared,
            buckets,
            now_ms: now_ms(),
        };
        let outcome = self
            .detector
            .check(
                settings,
                (&w.consumer.misuse, &w.grant.misuse),
                &attempt,
                self.shared.as_deref(),
            )
            .await;
        for firing in outcome.alerts {
            self.raise(firing);
        }
        match outcome.refuse {
            None => Ok(()),
            Some(f) => Err(LookupError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "misuse rule {} refuses this call: {} went past {} ({}) in the period from {} to {}",
                    f.rule.as_str(),
                    whose(&f),
                    f.threshold,
                    f.count,
                    iso_ms(f.window_start_ms),
                    iso_ms(f.window_end_ms)
                ),
            )),
        }
    }

    /// Feeds a lookup's result to the not-found rule: in memory at once, or to Redis off
    /// the answer's path.
    pub(super) async fn observed(&self, consumer: &str, context: &CallContext, found: bool) {
        let now = now_ms();
        match &self.shared {
            None => {
                self.detector
                    .outcome(
                        &self.config.misuse,
                        (consumer, context.officer_id()),
                        found,
                        now,
                        None,
                    )
                    .await
            }
            Some(shared) => {
                let (detector, config, shared) =
                    (self.detector.clone(), self.config.clone(), shared.clone());
                let (consumer, officer) = (consumer.to_owned(), context.officer_id().to_owned());
                tokio::spawn(async move {
                    detector
                        .outcome(
                            &config.misuse,
                            (&consumer, &officer),
                            found,
                            now,
                            Some(&shared),
                        )
                        .await
                });
            }
        }
    }

    /// Keeps the alert (once across replicas) and, if this replica raised it, records it in
    /// the audit trail and counts it; off the call's path.
    fn raise(&self, f: Firing) {
        let alert = Alert {
            id: uuid::Uuid::now_v7().to_string(),
            rule: f.rule.as_str().into(),
            consumer: f.consumer.clone(),
            officer_id: f.officer.clone(),
            dossier_id: f.dossier.clone(),
            window_start_ms: f.window_start_ms,
            window_end_ms: f.window_end_ms,
            count: f.count as i64,
            threshold: f.threshold as i64,
            action: f.action.as_str().into(),
            raised_ms: now_ms(),
            instance: self.config.settings.instance_id.clone(),
            acknowledged_ms: None,
            acknowledged_by: String::new(),
            note: String::new(),
        };
        let (register, audit, metrics) = (
            self.dossiers.clone(),
            self.audit.clone(),
            self.metrics.clone(),
        );
        tokio::spawn(async move {
            match register.raise(&alert).await {
                Ok(false) => {}
                Ok(true) => {
                    metrics
                        .misuse_alerts
                        .with(&[&alert.rule, &alert.consumer])
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(rule = %alert.rule, consumer = %alert.consumer, officer = %alert.officer_id, count = alert.count, threshold = alert.threshold, "misuse alert");
                    if let Err(e) = audit.record(alert_entry(&alert)).await {
                        tracing::error!(error = %e, id = %alert.id, "a misuse alert was not recorded in the audit trail");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, rule = %alert.rule, "a misuse alert could not be kept")
                }
            }
        });
    }
}

fn whose(f: &Firing) -> String {
    match (f.officer.is_empty(), f.dossier.is_empty()) {
        (false, _) => format!("officer {}'s count", f.officer),
        (true, false) => format!("dossier {}'s count", f.dossier),
        (true, true) => "this consumer's count".into(),
    }
}

/// The audit record of an alert: the rule, the actor, the period and the count, and no
/// subject.
pub(super) fn alert_entry(a: &Alert) -> AuditEntry {
    AuditEntry {
        time_ms: a.raised_ms,
        request_id: a.id.clone(),
        transport: "system".into(),
        actor: a.consumer.clone(),
        credential: "system".into(),
        officer_id: a.officer_id.clone(),
        dossier_id: a.dossier_id.clone(),
        action: "alert".into(),
        outcome: a.action.clone(),
        upstream_ms: -1,
        detail: serde_json::json!({
            "rule": a.rule,
            "window_start": iso_ms(a.window_start_ms),
            "window_end": iso_ms(a.window_end_ms),
            "count": a.count,
            "threshold": a.threshold,
        })
        .to_string(),
        ..AuditEntry::default()
    }
}
