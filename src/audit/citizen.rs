//! One person's access report: every disclosure about them across all datasets, whether
//! they were the subject of the lookup or appear in the disclosed fields (a parent, a
//! spouse, a legal representative, a land user), newest first. Operators and auditors see
//! every entry in full; the citizen's own view (through the public-service portal) counts
//! the entries of grants marked `citizen_report = "withheld"` without detailing them.
//! Records written before format version 2 appear by their own subject.

use super::query::{parse_token, token};
use super::record::Chained;
use super::store::{AuditStore, Query, StoreError};
use crate::domain::date::iso_ms;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// Most entries one page holds.
pub const MAX_PAGE: usize = 200;
/// Records read from the store per step while filling a page.
const STEP: usize = 500;
/// Steps one page may take; past that it ends early, with a token to go on.
const MAX_STEPS: usize = 20;

/// Who is reading: operators and auditors see everything; the citizen does not see the
/// detail of withheld entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Full,
    Citizen,
}

/// The names a report shows beside codes.
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub consumers: HashMap<String, String>,
    pub procedures: BTreeMap<String, String>,
}

/// One page of a person's disclosures.
#[derive(Debug, Clone)]
pub struct ReportPage {
    pub disclosures: Vec<Chained>,
    pub next: Option<String>,
}

/// Whether a record is a disclosure: a served lookup or verify (not a dossier change or a
/// report that names the person).
pub fn disclosure(r: &Chained) -> bool {
    r.entry.outcome == "served" && matches!(r.entry.action.as_str(), "fetch" | "verify")
}

/// Up to `limit` disclosures about a person, after `page_token`. `persons`: the keyed
/// references of their personal id, one under each subject key held.
pub async fn page(
    store: &dyn AuditStore,
    persons: &[String],
    limit: usize,
    page_token: Option<&str>,
) -> Result<ReportPage, PageError> {
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(PageError::Limit);
    }
    let mut after = match page_token {
        None => None,
        Some(t) => Some(parse_token(t).ok_or(PageError::Token)?),
    };
    let mut out = Vec::new();
    for _ in 0..MAX_STEPS {
        let batch = store
            .query(&Query {
                persons: persons.to_vec(),
                outcome: Some("served".into()),
                after: after.clone(),
                limit: STEP,
                ..Query::default()
            })
            .await?;
        let exhausted = batch.len() < STEP;
        for r in batch {
            after = Some((r.entry.time_ms, r.instance.clone(), r.seq));
            if disclosure(&r) {
                out.push(r);
                if out.len() == limit {
                    return Ok(ReportPage {
                        next: out.last().map(token),
                        disclosures: out,
                    });
                }
            }
        }
        if exhausted {
            return Ok(ReportPage {
                disclosures: out,
                next: None,
            });
        }
    }
    Ok(ReportPage {
        disclosures: out,
        next: after.map(|(t, i, s)| format!("{t}.{s}.{i}")),
    })
}

/// A report page that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("limit: between 1 and {MAX_PAGE}")]
    Limit,
    #[error("page_token: not a token this API gave")]
    Token,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The page as JSON for `view`: each entry with names beside codes, the legal basis and
/// report mode recorded at the call, and how the person appears.
pub fn to_json(page: &ReportPage, persons: &[String], names: &Names, view: View) -> Value {
    let mut withheld = 0;
    let mut entries = Vec::new();
    for r in &page.disclosures {
        let e = &r.entry;
        let d = e.disclosure.as_ref();
        let is_withheld = d.is_some_and(|d| d.withheld);
        if is_withheld && view == View::Citizen {
            withheld += 1;
            continue;
        }
        let appears_in: Vec<&str> = d
            .map(|d| {
                d.mentions
                    .iter()
                    .filter(|(_, reference)| persons.contains(reference))
                    .map(|(field, _)| field.as_str())
                    .collect()
            })
            .unwrap_or_default();
        entries.push(json!({
            "time": iso_ms(e.time_ms),
            "consumer": e.actor,
            "consumer_name": names.consumers.get(&e.actor).cloned().unwrap_or_default(),
            "procedure_code": e.procedure_code,
            "procedure_name": names.procedures.get(&e.procedure_code).cloned().unwrap_or_default(),
            "legal_basis": d.map(|d| d.legal_basis.as_str()).unwrap_or_default(),
            "dossier_id": e.dossier_id,
            "officer_id": e.officer_id,
            "agency_code": e.agency_code,
            "dataset": e.dataset,
            "action": e.action,
            "fields": e.fields,
            "role": if persons.contains(&e.subject) { "subject" } else { "appears" },
            "appears_in": appears_in,
            "withheld": is_withheld,
            "format_version": e.version(),
        }));
    }
    let mut body = json!({
        "entries": entries,
        "next_page_token": page.next,
    });
    if view == View::Citizen {
        body["withheld_count"] = json!(withheld);
    }
    body
}
