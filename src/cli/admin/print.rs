//! `lienthong admin …` answers for people (`--json` prints them whole).

use super::super::CliError;
use super::{AdminCommand, ConsumerAction, DatasetAction, GrantAction, RequestAction};

/// An admin answer for people (`--json` prints it whole).
pub(crate) fn print_admin(
    command: &AdminCommand,
    body: &serde_json::Value,
) -> Result<(), CliError> {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    if body["dry_run"] == true {
        out!("valid, nothing applied: {}", s(&body["change"]));
        return Ok(());
    }
    if let Some(key) = body["key"].as_str() {
        out!("version {}: {}", body["version"], s(&body["change"]));
        out!(
            "key {} for {} (shown this once; the gateway keeps only its hash):",
            s(&body["issued"]["id"]),
            s(&body["issued"]["consumer"])
        );
        out!("{key}");
        return Ok(());
    }
    if body.get("change").is_some() && body.get("version").is_some() {
        let etag = body["etag"]
            .as_str()
            .map(|t| format!(" (etag {t})"))
            .unwrap_or_default();
        out!("version {}: {}{etag}", body["version"], s(&body["change"]));
        return Ok(());
    }
    match command {
        AdminCommand::Breakers => {
            out!(
                "{:<14} {:<20} {:<10} {:>8} {:>8} {:>9} {:>8}  probe",
                "connector",
                "dataset",
                "breaker",
                "calls",
                "retries",
                "in flight",
                "refused"
            );
            for c in body["connectors"].as_array().into_iter().flatten() {
                let n = |k: &str| c[k].as_u64().unwrap_or(0);
                let probe = match c["health_probe"]["up"].as_bool() {
                    Some(true) => "up",
                    Some(false) => "down",
                    None => "-",
                };
                out!(
                    "{:<14} {:<20} {:<10} {:>8} {:>8} {:>9} {:>8}  {probe}",
                    s(&c["connector"]),
                    s(&c["dataset"]),
                    s(&c["breaker"]),
                    n("calls"),
                    n("retries"),
                    n("in_flight"),
                    n("rejected_breaker_open") + n("rejected_capacity"),
                );
            }
        }
        AdminCommand::Backup { .. } => super::super::backup::print_taken(body)?,
        AdminCommand::Reload | AdminCommand::Rollback { .. } => {
            out!(
                "running version {}; connectors rebuilt: {}",
                body["version"],
                body["connectors_rebuilt"]
            );
            if let Some(later) = body["needs_restart"].as_array().filter(|a| !a.is_empty()) {
                out!("take effect at the next start: {later:?}");
            }
        }
        AdminCommand::Versions => {
            if body["versions"].as_array().is_none_or(|v| v.is_empty()) {
                out!(
                    "running version {}; this gateway keeps no history (the embedded demo has no registry)",
                    body["running"]
                );
            }
            for v in body["versions"].as_array().into_iter().flatten() {
                let running = if v["version"] == body["running"] {
                    " (running)"
                } else {
                    ""
                };
                out!(
                    "{:>4}  {}  {:<24} {}{running}",
                    v["version"],
                    s(&v["time"]),
                    s(&v["actor"]),
                    s(&v["change"])
                );
            }
        }
        AdminCommand::Grants {
            action: Some(GrantAction::Show { .. }),
        }
        | AdminCommand::Consumers {
            action: Some(ConsumerAction::Show { .. }),
        } => out!("{body:#}"),
        AdminCommand::Consumers { .. } => {
            for c in body["consumers"].as_array().into_iter().flatten() {
                let keys = c["keys"]
                    .as_array()
                    .map_or(0, |k| k.iter().filter(|k| k["state"] == "active").count());
                let off = if c["disabled"] == true { "  (off)" } else { "" };
                out!(
                    "{:<22} {:<5} {:>2} active keys  {}  {}{off}",
                    s(&c["id"]),
                    s(&c["source"]),
                    keys,
                    s(&c["etag"]),
                    s(&c["name"])
                );
            }
        }
        AdminCommand::Keys { .. }
        | AdminCommand::Requests {
            action: Some(RequestAction::Show { .. }),
        } => out!("{body:#}"),
        AdminCommand::Requests { .. } => {
            for r in body["requests"].as_array().into_iter().flatten() {
                let late = if r["overdue"] == true {
                    "  OVERDUE"
                } else {
                    ""
                };
                out!(
                    "{:<14} {:<10} {:<16} {:<24} due {}{late}",
                    s(&r["id"]),
                    s(&r["state"]),
                    s(&r["consumer"]),
                    s(&r["dataset"]),
                    s(&r["deadline"])
                );
            }
        }
        AdminCommand::Grants { .. } => {
            for g in body["grants"].as_array().into_iter().flatten() {
                let grant = &g["grant"];
                let off = if grant["disabled"] == true {
                    "  (off)"
                } else {
                    ""
                };
                out!(
                    "{:<14} {:<16} {:<24} procedures {}  fields {}{off}",
                    s(&g["id"]),
                    s(&grant["consumer"]),
                    s(&grant["dataset"]),
                    grant["procedures"],
                    grant["fields"]
                );
            }
        }
        AdminCommand::Datasets { action } => match action {
            Some(DatasetAction::Show { .. }) => out!("{body:#}"),
            _ => {
                for d in body["datasets"].as_array().into_iter().flatten() {
                    let state = if d["disabled"] == true { "off" } else { "on" };
                    let fields: Vec<String> = d["fields"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|f| s(&f["name"]))
                        .collect();
                    out!(
                        "{:<26} {:<12} {:<4} key {:<18} fields {}",
                        s(&d["name"]),
                        s(&d["owner"]),
                        state,
                        s(&d["key_field"]),
                        fields.join(",")
                    );
                }
            }
        },
        AdminCommand::Connectors { .. } => {
            for c in body["connectors"].as_array().into_iter().flatten() {
                out!(
                    "{:<20} {:<26} {:<10} {}",
                    s(&c["name"]),
                    s(&c["dataset"]),
                    s(&c["kind"]),
                    s(&c["endpoint"])
                );
            }
        }
        AdminCommand::Purge { dataset, key } => match key {
            Some(_) => out!("purged one key of {dataset}"),
            None => out!(
                "purged {dataset} ({} records were held)",
                body["records_held_before"]
            ),
        },
    }
    Ok(())
}
