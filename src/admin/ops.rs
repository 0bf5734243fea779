//! Operations on the running gateway: the registry's history, rollback and reload, cache
//! purges, the providers' guards and probes, and audit queries.

use super::{Action, Cx, invalid};
use crate::audit::query;
use crate::domain::error::{ErrorCode, LookupError};
use serde_json::{Value, json};

/// Audit query filters (dataset, subject, consumer, dossier, officer, from, to, limit,
/// page_token).
pub type AuditFilters = query::Filters;

/// Every configuration version the gateway ran, newest first, with who changed it and why.
pub(super) async fn versions(cx: &Cx<'_>) -> Result<Value, LookupError> {
    let Some(registry) = cx.live.registry() else {
        return Ok(json!({ "running": cx.live.version(), "versions": [] }));
    };
    let all = registry
        .history()
        .await
        .map_err(|e| LookupError::new(ErrorCode::Internal, e.to_string()))?;
    Ok(json!({
        "running": cx.live.version(),
        "versions": all.iter().map(|v| json!({
            "version": v.version,
            "time": crate::domain::date::iso_ms(v.time_ms),
            "actor": v.actor,
            "change": v.change,
        })).collect::<Vec<_>>(),
    }))
}

/// Runs an earlier configuration version again, as a new version.
pub(super) async fn rollback(cx: &Cx<'_>, to: i64) -> Result<Value, LookupError> {
    let outcome = cx.live.rollback(cx.actor(), to).await;
    cx.record(Action {
        action: "config_rollback",
        dataset: "",
        subject: String::new(),
        ok: outcome.is_ok(),
        detail: match &outcome {
            Ok(r) => format!("to version {to}, running as version {}", r.version),
            Err(e) => format!("to version {to} refused: {e}"),
        },
    })
    .await?;
    let r = outcome.map_err(|e| invalid(e.to_string()))?;
    Ok(json!({
        "version": r.version,
        "connectors_kept": r.kept,
        "connectors_rebuilt": r.rebuilt,
    }))
}

/// Reads the configuration files again and, if they validate, swaps them in.
pub(super) async fn reload(cx: &Cx<'_>) -> Result<Value, LookupError> {
    let outcome = cx.live.reload(cx.actor()).await;
    cx.record(Action {
        action: "config_reload",
        dataset: "",
        subject: String::new(),
        ok: outcome.is_ok(),
        detail: match &outcome {
            Ok(r) => format!(
                "version {}: kept {:?}, rebuilt {:?}, needs restart {:?}",
                r.version, r.kept, r.rebuilt, r.needs_restart
            ),
            Err(_) => "refused: the running configuration stays".to_owned(),
        },
    })
    .await?;
    let r = outcome.map_err(|e| invalid(e.to_string()))?;
    Ok(json!({
        "version": r.version,
        "connectors_kept": r.kept,
        "connectors_rebuilt": r.rebuilt,
        "needs_restart": r.needs_restart,
    }))
}

/// Takes a backup of the embedded store into `to` while the gateway serves (it holds the
/// store's lock, so a backup of a running gateway goes through here).
pub(super) async fn backup(cx: &Cx<'_>, to: &str) -> Result<Value, LookupError> {
    let Some(layout) = cx.g.config().backup_layout() else {
        return Err(invalid(
            "the state is in PostgreSQL: back it up with pg_dump (docs/operations.md#backup-and-restore)",
        ));
    };
    let dir = std::path::Path::new(to);
    if !dir.is_absolute() {
        return Err(invalid(format!(
            "to: {to:?} is not an absolute path (the gateway writes it on its own host)"
        )));
    }
    let store = cx.g.audit().store();
    let mut heads = std::collections::BTreeMap::new();
    let internal = |e: crate::audit::store::StoreError| LookupError::new(ErrorCode::Internal, e.0);
    for instance in store.instances().await.map_err(internal)? {
        if let Some((seq, _)) = store.head(&instance).await.map_err(internal)? {
            heads.insert(instance, seq);
        }
    }
    let taken = crate::audit::backup::take(&layout, dir, heads).await;
    cx.record(Action {
        action: "backup",
        dataset: "",
        subject: String::new(),
        ok: taken.is_ok(),
        detail: match &taken {
            Ok(m) => format!("to {to}: {} files", m.files.len()),
            Err(e) => format!("to {to} failed: {e}"),
        },
    })
    .await?;
    let manifest = taken.map_err(|e| match e {
        crate::audit::backup::BackupError::NotEmpty(_) => invalid(e.to_string()),
        e => LookupError::new(ErrorCode::Internal, e.to_string()),
    })?;
    Ok(json!({
        "to": to,
        "taken_at": manifest.taken_at,
        "heads": manifest.heads,
        "files": manifest.files.len(),
        "bytes": manifest.files.iter().map(|f| f.bytes).sum::<u64>(),
    }))
}

/// Forgets cached records of a dataset, or of one key.
pub(super) async fn purge(
    cx: &Cx<'_>,
    dataset: &str,
    key: Option<&str>,
) -> Result<Value, LookupError> {
    if cx.g.config().dataset(dataset).is_some() {
        cx.must_manage(dataset, dataset)?;
    }
    let held = cx.g.purge(dataset, key).await?;
    // Every replica forgets it too.
    if let Some(shared) = cx.g.shared() {
        shared
            .publish(&crate::shared::Event::Purge {
                dataset: dataset.to_owned(),
                key: key.map(str::to_owned),
                origin: cx.g.config().settings.instance_id.clone(),
            })
            .await;
    }
    cx.record(Action {
        action: "cache_purge",
        dataset,
        subject: key
            .map(|k| cx.g.audit().subject(dataset, k))
            .unwrap_or_default(),
        ok: true,
        detail: if key.is_some() {
            "one key"
        } else {
            "whole dataset"
        }
        .into(),
    })
    .await?;
    Ok(json!({
        "dataset": dataset,
        "purged": if key.is_some() { "key" } else { "dataset" },
        "records_held_before": held,
    }))
}

/// Each connector's guard (breaker state, load, refusals) and active health probe, for the
/// datasets the caller manages.
pub(super) fn breakers(cx: &Cx<'_>) -> Value {
    let probes = cx.g.probes();
    let connectors: Vec<_> =
        cx.g.guards()
            .into_iter()
            .filter(|(_, dataset, _, _)| cx.manages(dataset))
            .map(
                |(name, dataset, s, [calls, attempts, retries, open, busy])| {
                    let probe = probes.iter().find(|(n, _)| *n == name).map(|(_, p)| {
                        json!({
                            "up": p.up,
                            "probes": p.probes,
                            "failures": p.failures,
                            "last": crate::domain::date::iso_ms(p.last_ms),
                            "latency_ms": p.latency_ms,
                            "error": p.error,
                        })
                    });
                    json!({
                        "connector": name,
                        "dataset": dataset,
                        "breaker": s.breaker.as_str(),
                        "consecutive_failures": s.consecutive_failures,
                        "window_calls": s.window_calls,
                        "window_failures": s.window_failures,
                        "in_flight": s.in_flight,
                        "waiting": s.waiting,
                        "retry_balance": s.retry_balance,
                        "calls": calls,
                        "attempts": attempts,
                        "retries": retries,
                        "rejected_breaker_open": open,
                        "rejected_capacity": busy,
                        "health_probe": probe,
                    })
                },
            )
            .collect();
    json!({ "connectors": connectors })
}

/// A page of audit records (newest first), or a subject's access report (the disclosures
/// of their data; needs dataset and subject). Reading is itself recorded, and committed
/// before the answer leaves.
pub(super) async fn audit_read(
    cx: &Cx<'_>,
    filters: AuditFilters,
    report: bool,
) -> Result<Value, LookupError> {
    if report && (filters.dataset.is_none() || filters.subject.is_none()) {
        return Err(invalid("a report needs dataset and subject"));
    }
    let audit = cx.g.audit();
    let mut q = filters
        .to_query(&audit.subjects())
        .map_err(|e| invalid(e.to_string()))?;
    if report {
        q.outcome = Some("served".into());
    }
    let mut page = query::page(audit.store(), &q).await.map_err(|e| {
        tracing::error!(error = %e, "audit query failed");
        LookupError::new(
            ErrorCode::AuditUnavailable,
            "the audit store cannot be read",
        )
    })?;
    if report {
        // What was disclosed: not the dossier changes or reports that name the subject.
        page.records.retain(crate::audit::citizen::disclosure);
    }
    let mut entry = query::read_entry(
        cx.actor(),
        "admin",
        &filters,
        &page,
        q.subjects.first().cloned(),
    );
    entry.request_id = cx.request_id.to_owned();
    entry.credential = cx.admin.kind.into();
    audit.record(entry).await.map_err(|e| {
        tracing::error!(error = %e, "audit read not recorded; refused");
        LookupError::new(
            ErrorCode::AuditUnavailable,
            "the read could not be recorded, so nothing is shown",
        )
    })?;
    Ok(json!({
        "records": page.records.iter().map(query::to_json).collect::<Vec<_>>(),
        "next_page_token": page.next,
    }))
}

/// What `GET /admin/v1/audit/citizen-report` asks.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CitizenReportQuery {
    pub personal_id: String,
    pub limit: Option<usize>,
    pub page_token: Option<String>,
}

/// Every disclosure about one person, across datasets, in full (withheld grants included);
/// the read is itself recorded, with the person's reference as its subject.
pub(super) async fn citizen_report(
    cx: &Cx<'_>,
    q: CitizenReportQuery,
) -> Result<Value, LookupError> {
    let person = cx.g.person(q.personal_id.trim())?;
    let request = crate::core::report::ReportRequest {
        limit: q.limit,
        page_token: q.page_token,
    };
    let report =
        cx.g.citizen_report(&person, &request, crate::audit::citizen::View::Full)
            .await?;
    cx.record(Action {
        action: "audit_read",
        dataset: crate::domain::dataset::POPULATION_CITIZEN,
        subject: person[0].clone(),
        ok: true,
        detail: format!(
            "citizen report -> {} entries",
            report["entries"].as_array().map(Vec::len).unwrap_or(0)
        ),
    })
    .await?;
    Ok(report)
}
