//! `lienthong audit …`: verify the trail, a subject's access report, records by consumer,
//! dossier, officer and time, and archiving. They read the store named in config; every read
//! is recorded on the chain `<instance>.cli`, signed at once.

use super::CliError;
use super::admin::PageArgs;
use super::load;
use crate::audit::query::{self, Filters};
use crate::audit::store::AuditStore;
use crate::audit::verify::VerifyError;
use crate::core::model::Model;
use clap::Subcommand;
use std::io::Write;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Recompute every chain and check every checkpoint signature; exits non-zero naming the
    /// first bad record.
    Verify {
        #[arg(long, env = "LIENTHONG_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Who looked at one subject's data: agency system, procedure, dossier, officer, when,
    /// which fields (disclosures only). With --personal-id: every disclosure about one
    /// person across all datasets, as the subject or named in the record (a parent, a
    /// representative, a land user), with the procedure's name and the legal basis.
    Report {
        #[arg(long, env = "LIENTHONG_CONFIG")]
        config: Option<PathBuf>,
        /// e.g. population.citizen
        #[arg(long, required_unless_present = "personal_id", requires = "subject")]
        dataset: Option<String>,
        /// The subject's key, e.g. a personal identification number.
        #[arg(long, requires = "dataset")]
        subject: Option<String>,
        /// A person's 12-digit personal id: their report across every dataset.
        #[arg(long, conflicts_with_all = ["dataset", "subject"])]
        personal_id: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Move records older than the retention period to signed archive files now (the
    /// gateway also does it hourly when audit.retention_days is set).
    Archive {
        #[arg(long, env = "LIENTHONG_CONFIG")]
        config: Option<PathBuf>,
        /// Instead of audit.retention_days.
        #[arg(long)]
        older_than_days: Option<u64>,
    },
    /// Records by consumer, dossier, officer, dataset and time (every outcome).
    Records {
        #[arg(long, env = "LIENTHONG_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        dataset: Option<String>,
        #[arg(long)]
        consumer: Option<String>,
        #[arg(long)]
        dossier: Option<String>,
        #[arg(long)]
        officer: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
}

pub(crate) async fn audit(command: AuditCommand) -> Result<(), CliError> {
    use crate::audit::query::Filters;
    let filters = |page: PageArgs| {
        (
            Filters {
                from: page.from,
                to: page.to,
                limit: Some(page.limit),
                page_token: page.page_token,
                ..Filters::default()
            },
            page.json,
        )
    };
    match command {
        AuditCommand::Verify { config } => run_verify(&load(config)?.model).await,
        AuditCommand::Archive {
            config,
            older_than_days,
        } => run_archive(&load(config)?.model, older_than_days).await,
        AuditCommand::Report {
            config,
            personal_id: Some(id),
            page,
            ..
        } => run_citizen_report(&load(config)?.model, &id, page).await,
        AuditCommand::Report {
            config,
            dataset,
            subject,
            page,
            ..
        } => {
            let (f, json) = filters(page);
            let f = Filters {
                dataset,
                subject,
                ..f
            };
            run_query(&load(config)?.model, f, json, true).await
        }
        AuditCommand::Records {
            config,
            dataset,
            consumer,
            dossier,
            officer,
            page,
        } => {
            let (f, json) = filters(page);
            let f = Filters {
                dataset,
                consumer,
                dossier,
                officer,
                ..f
            };
            run_query(&load(config)?.model, f, json, false).await
        }
    }
}

/// The store, with a note on stderr when a running gateway serves it: what it committed in
/// the last second may not show yet, and the live view is its admin API.
async fn open(config: &Model) -> Result<std::sync::Arc<dyn AuditStore>, CliError> {
    let path = &config.audit.path;
    if config.settings.postgres.is_none() && !path.exists() {
        return Err(CliError::NoTrail(path.clone()));
    }
    let (store, held_elsewhere) = crate::app::open_store(config)
        .await
        .map_err(|e| e.to_string())?;
    if held_elsewhere {
        let _ = writeln!(
            std::io::stderr(),
            "note: a running gateway serves {}; records it committed in the last second may not \
             show here yet. The live view is its admin listener: GET /admin/v1/audit/records \
             and /admin/v1/audit/report, with an auditor or operator token.",
            store_name(config)
        );
    }
    Ok(store)
}

/// Where the trail is, for people: the SQLite file or the PostgreSQL schema.
/// Who runs a command, as its records name them: `cli:<login>`.
fn command_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "cli".into())
    )
}

/// Appends a command's own record to the commands' chain (`<instance>.cli`), signed at
/// once.
async fn record_command(
    store: &dyn AuditStore,
    config: &Model,
    entry: &crate::audit::record::AuditEntry,
) -> Result<(), crate::audit::store::StoreError> {
    store
        .append_at_head(
            &format!("{}.cli", config.settings.instance_id),
            entry,
            Some(&config.audit.signer()),
        )
        .await
        .map(drop)
}

fn store_name(config: &Model) -> String {
    match &config.settings.postgres {
        Some(pg) => format!("PostgreSQL schema {}", pg.schema),
        None => config.audit.path.display().to_string(),
    }
}

/// `audit verify`: every chain, every checkpoint; a summary, or the first bad record.
pub(crate) async fn run_verify(config: &Model) -> Result<(), CliError> {
    let store = open(config).await?;
    let mut stderr = std::io::stderr();
    let mut last_shown = 0;
    let result = crate::audit::verify::verify_anchored(
        store.as_ref(),
        &config.audit.verify_keys,
        &config.audit.anchoring,
        |instance, done, total| {
            // Long logs only: a progress line every 10,000 records, and at the end.
            if total >= 10_000 && (done - last_shown >= 10_000 || done == total) {
                last_shown = done;
                let _ = write!(
                    stderr,
                    "\rverifying {instance}: {done}/{total} ({}%)",
                    done * 100 / total.max(1)
                );
                if done == total {
                    let _ = writeln!(stderr);
                }
            }
        },
    )
    .await;
    match result {
        Ok(chains) => {
            out!("{}: the audit trail verifies", store_name(config));
            for c in chains.iter().filter(|c| c.records == 0) {
                out!(
                    "  chain {}: no records in the store, archived through {} ({} archive files checked, {} not found)",
                    c.instance,
                    c.archived_through,
                    c.archives_checked,
                    c.archives_missing
                );
            }
            for c in chains.iter().filter(|c| c.records > 0) {
                out!(
                    "  chain {}: {} records ({}..{}), {} checkpoints, last at {}, {} records after it{}",
                    c.instance,
                    c.records,
                    c.first_seq,
                    c.last_seq,
                    c.checkpoints,
                    c.last_checkpoint,
                    c.after_last_checkpoint,
                    if c.archived_through > 0 {
                        format!(
                            ", archived through {} ({} archive files checked, {} not found)",
                            c.archived_through, c.archives_checked, c.archives_missing
                        )
                    } else {
                        String::new()
                    }
                );
                if !config.audit.anchoring.witnesses.is_empty() {
                    let a = &c.anchoring;
                    out!(
                        "    anchored: {} checkpoints with every witness's receipt, {} within the lag still waiting{}",
                        a.anchored,
                        a.waiting,
                        match &a.anchored_through {
                            Some((seq, times)) => format!(
                                "; through {seq} ({})",
                                times
                                    .iter()
                                    .map(|(w, t)| format!("{w} at {t}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            None => String::new(),
                        }
                    );
                }
            }
            if chains.is_empty() {
                out!("  (no records yet)");
            }
            Ok(())
        }
        Err(VerifyError::Broken(b)) => Err(format!("the audit trail does not verify: {b}").into()),
        Err(VerifyError::Index(wrong)) => {
            Err(format!("the audit trail's chains verify, but {wrong}").into())
        }
        Err(VerifyError::Store(e)) => Err(e.to_string().into()),
    }
}

/// `audit report` / `audit records`: one page, printed as lines or JSON.
pub(crate) async fn run_query(
    config: &Model,
    filters: Filters,
    json: bool,
    report: bool,
) -> Result<(), CliError> {
    let store = open(config).await?;
    let subjects = config.audit.subjects();
    let mut q = filters.to_query(&subjects).map_err(|e| e.to_string())?;
    if report {
        // The access report: what was disclosed, not what was refused.
        q.outcome = Some("served".into());
    }
    let mut page = query::page(store.as_ref(), &q)
        .await
        .map_err(|e| e.to_string())?;
    if report {
        // What was disclosed: not the dossier changes or reports that name the subject.
        page.records.retain(crate::audit::citizen::disclosure);
    }
    let entry = query::read_entry(
        &command_actor(),
        "cli",
        &filters,
        &page,
        q.subjects.first().cloned(),
    );
    record_command(store.as_ref(), config, &entry)
        .await
        .map_err(|e| format!("the read could not be recorded, so nothing is shown: {e}"))?;
    if json {
        let body = serde_json::json!({
            "records": page.records.iter().map(query::to_json).collect::<Vec<_>>(),
            "next_page_token": page.next,
        });
        out!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
        return Ok(());
    }
    if page.records.is_empty() {
        out!("no records");
    }
    for r in &page.records {
        if report {
            out!("{}", query::report_line(r));
        } else {
            out!(
                "{}  {}#{}  {}  {}  {}  {}",
                crate::domain::date::iso_ms(r.entry.time_ms),
                r.instance,
                r.seq,
                if r.entry.actor.is_empty() {
                    "-"
                } else {
                    &r.entry.actor
                },
                r.entry.action,
                r.entry.dataset,
                r.entry.outcome
            );
        }
    }
    if let Some(next) = page.next {
        out!("more: --page-token {next}");
    }
    Ok(())
}

/// `audit report --personal-id`: one person's disclosures across every dataset, in full,
/// the read itself recorded.
pub(crate) async fn run_citizen_report(
    config: &Model,
    personal_id: &str,
    page: PageArgs,
) -> Result<(), CliError> {
    use crate::audit::citizen::{self, View};
    use crate::domain::dataset::POPULATION_CITIZEN;
    let id = crate::domain::ids::PersonalId::parse(
        personal_id.trim(),
        crate::domain::date::Date::today().year,
    )
    .map_err(|e| format!("--personal-id: {e}"))?;
    let store = open(config).await?;
    let person = config
        .audit
        .subjects()
        .references(POPULATION_CITIZEN, id.as_str());
    let report = citizen::page(
        store.as_ref(),
        &person,
        page.limit.min(citizen::MAX_PAGE),
        page.page_token.as_deref(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let body = citizen::to_json(&report, &person, &config.report_names(), View::Full);
    let entry = crate::audit::record::AuditEntry {
        time_ms: crate::audit::record::now_ms(),
        transport: "cli".into(),
        actor: command_actor(),
        credential: "local".into(),
        dataset: POPULATION_CITIZEN.into(),
        subject: person[0].clone(),
        action: "audit_read".into(),
        outcome: "served".into(),
        upstream_ms: -1,
        detail: format!("citizen report -> {} entries", report.disclosures.len()),
        ..Default::default()
    };
    record_command(store.as_ref(), config, &entry)
        .await
        .map_err(|e| format!("the read could not be recorded, so nothing is shown: {e}"))?;
    if page.json {
        out!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
        return Ok(());
    }
    let entries = body["entries"].as_array().cloned().unwrap_or_default();
    if entries.is_empty() {
        out!("no disclosures");
    }
    for e in entries {
        let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
        let how = if s("role") == "subject" {
            "as the subject".to_owned()
        } else {
            format!(
                "named in {}",
                e["appears_in"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default()
            )
        };
        out!(
            "{}  {} ({})  procedure {} {}  dossier {}  officer {}  {} {} {}  [{}]  basis: {}{}",
            s("time"),
            s("consumer"),
            s("consumer_name"),
            s("procedure_code"),
            s("procedure_name"),
            s("dossier_id"),
            s("officer_id"),
            s("action"),
            s("dataset"),
            how,
            e["fields"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
            if s("legal_basis").is_empty() {
                "(not recorded)".to_owned()
            } else {
                s("legal_basis")
            },
            if e["withheld"] == true {
                "  (withheld from the citizen's own view)"
            } else {
                ""
            },
        );
    }
    if let Some(next) = report.next {
        out!("more: --page-token {next}");
    }
    Ok(())
}

/// `audit archive`: moves records older than the retention period (or `older_than_days`)
/// to archive files now.
pub(crate) async fn run_archive(
    config: &Model,
    older_than_days: Option<u64>,
) -> Result<(), CliError> {
    let days = match (older_than_days, config.audit.retention) {
        (Some(d), _) => d,
        (None, Some(r)) => r.as_secs() / 86_400,
        (None, None) => {
            return Err(
                "audit.retention_days is 0 (keep everything): pass --older-than-days N".into(),
            );
        }
    };
    let store = open(config).await?;
    let before = crate::audit::record::now_ms() - (days as i64) * 86_400_000;
    let signer = config.audit.signer();
    let mut total = 0;
    for instance in store.instances().await.map_err(|e| e.to_string())? {
        for a in crate::audit::retention::archive_expired(
            store.as_ref(),
            &instance,
            before,
            &config.audit.archive_dir,
            &signer,
        )
        .await
        .map_err(|e| e.to_string())?
        {
            out!(
                "archived {} records {}..{} to {}",
                a.instance,
                a.first_seq,
                a.last_seq,
                a.file
            );
            total += a.last_seq - a.first_seq + 1;
        }
    }
    out!("{total} records archived (older than {days} days)");
    // Archiving changes the trail, so it is recorded on it too.
    let entry = crate::audit::record::AuditEntry {
        time_ms: crate::audit::record::now_ms(),
        transport: "cli".into(),
        actor: command_actor(),
        credential: "local".into(),
        action: "audit_archive".into(),
        outcome: "served".into(),
        upstream_ms: -1,
        detail: format!(
            "{total} records older than {days} days archived to {}",
            config.audit.archive_dir.display()
        ),
        ..Default::default()
    };
    record_command(store.as_ref(), config, &entry)
        .await
        .map_err(|e| format!("archived, but the archiving could not be recorded: {e}"))?;
    Ok(())
}
