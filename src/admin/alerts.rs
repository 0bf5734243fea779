//! Misuse alerts for operators and auditors: the list, filtered and paged, newest first,
//! and an acknowledgement with a note, itself recorded in the audit trail.

use super::{Action, Cx, invalid};
use crate::domain::date::{iso_ms, parse_instant_ms};
use crate::domain::error::{ErrorCode, LookupError};
use crate::dossiers::{Alert, AlertFilter};
use serde_json::{Value, json};

/// Most alerts one page holds.
const MAX_PAGE: usize = 500;

/// What an operator or auditor asked for (`GET /admin/v1/alerts`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertQuery {
    pub rule: Option<String>,
    pub consumer: Option<String>,
    pub officer: Option<String>,
    /// `true` for acknowledged alerts only, `false` for open ones.
    pub acknowledged: Option<bool>,
    /// `yyyy-mm-dd` or `yyyy-mm-ddThh:mm:ssZ`, inclusive, on when the alert was raised.
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<usize>,
    pub page_token: Option<String>,
}

fn instant(name: &str, v: &Option<String>) -> Result<Option<i64>, LookupError> {
    v.as_deref()
        .map(|s| {
            parse_instant_ms(s).ok_or_else(|| {
                invalid(format!(
                    "{name}: {s:?} is not yyyy-mm-dd or yyyy-mm-ddThh:mm:ssZ"
                ))
            })
        })
        .transpose()
}

fn to_json(a: &Alert) -> Value {
    json!({
        "id": a.id,
        "rule": a.rule,
        "consumer": a.consumer,
        "officer_id": a.officer_id,
        "dossier_id": a.dossier_id,
        "window_start": iso_ms(a.window_start_ms),
        "window_end": iso_ms(a.window_end_ms),
        "count": a.count,
        "threshold": a.threshold,
        "action": a.action,
        "raised_at": iso_ms(a.raised_ms),
        "instance": a.instance,
        "acknowledged": a.acknowledged_ms.is_some(),
        "acknowledged_at": a.acknowledged_ms.map(iso_ms),
        "acknowledged_by": a.acknowledged_by,
        "note": a.note,
    })
}

fn register_down(e: crate::dossiers::RegisterError) -> LookupError {
    tracing::error!(error = %e, "misuse alerts cannot be read");
    LookupError::new(
        ErrorCode::RegisterUnavailable,
        "the alerts cannot be read or written now",
    )
}

/// One page of alerts.
pub(super) async fn list(cx: &Cx<'_>, q: AlertQuery) -> Result<Value, LookupError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(invalid(format!("limit: between 1 and {MAX_PAGE}")));
    }
    if let Some(rule) = &q.rule
        && !crate::layers::misuse::Rule::ALL
            .iter()
            .any(|r| r.as_str() == rule)
    {
        return Err(invalid(format!("rule: {rule:?} is not a misuse rule")));
    }
    let after = match &q.page_token {
        None => None,
        Some(t) => Some(
            t.split_once('.')
                .and_then(|(ms, id)| Some((ms.parse().ok()?, id.to_owned())))
                .ok_or_else(|| invalid("page_token: not a token this API gave"))?,
        ),
    };
    let filter = AlertFilter {
        rule: q.rule,
        consumer: q.consumer,
        officer_id: q.officer,
        acknowledged: q.acknowledged,
        from_ms: instant("from", &q.from)?,
        to_ms: instant("to", &q.to)?.map(|ms| {
            if q.to.as_deref().is_some_and(|s| !s.contains('T')) {
                ms + 86_400_000 - 1
            } else {
                ms
            }
        }),
        after,
        limit,
    };
    let page =
        cx.g.dossiers()
            .alerts(&filter)
            .await
            .map_err(register_down)?;
    Ok(json!({
        "alerts": page.alerts.iter().map(to_json).collect::<Vec<_>>(),
        "next_page_token": page.next.map(|(ms, id)| format!("{ms}.{id}")),
    }))
}

/// Acknowledges an alert with a note; the acknowledgement is recorded in the audit trail.
pub(super) async fn acknowledge(cx: &Cx<'_>, id: &str, note: &str) -> Result<Value, LookupError> {
    let note = note.trim();
    if note.is_empty() || note.chars().count() > 1000 || note.chars().any(char::is_control) {
        return Err(invalid(
            "note: say what was found or done, in at most 1000 characters of text",
        ));
    }
    let alert =
        cx.g.dossiers()
            .acknowledge(id, cx.actor(), note, crate::audit::record::now_ms())
            .await
            .map_err(register_down)?
            .ok_or_else(|| LookupError::new(ErrorCode::NotFound, format!("no alert {id:?}")))?;
    cx.record(Action {
        action: "alert_acknowledge",
        dataset: "",
        subject: String::new(),
        ok: true,
        detail: json!({
            "alert": alert.id,
            "rule": alert.rule,
            "consumer": alert.consumer,
            "officer_id": alert.officer_id,
            "note": note,
        })
        .to_string(),
    })
    .await?;
    Ok(to_json(&alert))
}
