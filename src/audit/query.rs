//! Reading the audit trail, shared by the admin listener and the `audit` commands: a query
//! by subject (the access report a citizen would see) or by consumer, dossier, officer and
//! time, one page at a time. Every read is itself recorded.

use super::record::{AuditEntry, Chained, SubjectKeys, now_ms};
use super::store::{AuditStore, Query, StoreError};
use crate::domain::date::{iso_ms, parse_instant_ms};
use serde_json::{Value, json};

/// Most records one page holds.
pub const MAX_PAGE: usize = 500;
pub const DEFAULT_PAGE: usize = 100;

/// What an auditor asked for, as given (keys in clear: the subject is hashed before the
/// store sees it).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filters {
    pub dataset: Option<String>,
    /// The subject's key (e.g. a personal id); needs `dataset`.
    pub subject: Option<String>,
    pub consumer: Option<String>,
    pub dossier: Option<String>,
    pub officer: Option<String>,
    /// `yyyy-mm-dd` or `yyyy-mm-ddThh:mm:ssZ`, inclusive.
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<usize>,
    pub page_token: Option<String>,
}

/// One page of results, newest first, and the token of the next page.
#[derive(Debug, Clone)]
pub struct Page {
    pub records: Vec<Chained>,
    pub next: Option<String>,
}

pub(crate) fn token(r: &Chained) -> String {
    format!("{}.{}.{}", r.entry.time_ms, r.seq, r.instance)
}

pub(crate) fn parse_token(t: &str) -> Option<(i64, String, i64)> {
    let mut parts = t.splitn(3, '.');
    let time = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let instance = parts.next()?.to_owned();
    Some((time, instance, seq))
}

/// Filters that make no query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("{name}: {value:?} is not yyyy-mm-dd or yyyy-mm-ddThh:mm:ssZ")]
    Instant { name: &'static str, value: String },
    #[error("subject: name its dataset too")]
    SubjectWithoutDataset,
    #[error("limit: between 1 and {MAX_PAGE}")]
    Limit,
    #[error("page_token: not a token this API gave")]
    PageToken,
}

impl Filters {
    /// The store query these filters make, or what is wrong with them.
    pub fn to_query(&self, subjects: &SubjectKeys) -> Result<Query, FilterError> {
        let instant = |name: &'static str,
                       v: &Option<String>,
                       end_of_day: bool|
         -> Result<Option<i64>, FilterError> {
            v.as_deref()
                .map(|s| {
                    let ms = parse_instant_ms(s).ok_or_else(|| FilterError::Instant {
                        name,
                        value: s.to_owned(),
                    })?;
                    // A bare date as the upper bound means the whole of that day.
                    Ok(if end_of_day && !s.contains('T') {
                        ms + 86_400_000 - 1
                    } else {
                        ms
                    })
                })
                .transpose()
        };
        // Under every subject key held: records written before a rotation are found too.
        let subjects = match (&self.subject, &self.dataset) {
            (Some(_), None) => return Err(FilterError::SubjectWithoutDataset),
            (Some(key), Some(dataset)) => subjects.references(dataset, key.trim()),
            (None, _) => Vec::new(),
        };
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(FilterError::Limit);
        }
        let after = match &self.page_token {
            None => None,
            Some(t) => Some(parse_token(t).ok_or(FilterError::PageToken)?),
        };
        Ok(Query {
            subjects,
            persons: Vec::new(),
            dataset: self.dataset.clone(),
            actor: self.consumer.clone(),
            dossier_id: self.dossier.clone(),
            officer_id: self.officer.clone(),
            outcome: None,
            from_ms: instant("from", &self.from, false)?,
            to_ms: instant("to", &self.to, true)?,
            after,
            limit,
        })
    }

    /// What was asked, for the read's own audit record: never the subject's key.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, v) in [
            ("dataset", &self.dataset),
            ("consumer", &self.consumer),
            ("dossier", &self.dossier),
            ("officer", &self.officer),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if let Some(v) = v {
                parts.push(format!("{name}={v}"));
            }
        }
        if self.subject.is_some() {
            parts.push("subject=(given)".into());
        }
        parts.join(" ")
    }
}

/// Runs one page of a query.
pub async fn page(store: &dyn AuditStore, query: &Query) -> Result<Page, StoreError> {
    let mut q = query.clone();
    q.limit = query.limit + 1;
    let mut records = store.query(&q).await?;
    let next = (records.len() > query.limit).then(|| {
        records.truncate(query.limit);
        records.last().map(token).unwrap_or_default()
    });
    Ok(Page { records, next })
}

/// The record of a read: who read, what they asked, how many records it returned.
pub fn read_entry(
    actor: &str,
    transport: &str,
    filters: &Filters,
    page: &Page,
    subject: Option<String>,
) -> AuditEntry {
    AuditEntry {
        time_ms: now_ms(),
        transport: transport.into(),
        actor: actor.into(),
        credential: if transport == "cli" {
            "local"
        } else {
            "admin_token"
        }
        .into(),
        dataset: filters.dataset.clone().unwrap_or_default(),
        subject: subject.unwrap_or_default(),
        action: "audit_read".into(),
        outcome: "served".into(),
        upstream_ms: -1,
        detail: format!("{} -> {} records", filters.describe(), page.records.len()),
        ..AuditEntry::default()
    }
}

/// A record as the query answers show it.
pub fn to_json(r: &Chained) -> Value {
    let e = &r.entry;
    json!({
        "time": iso_ms(e.time_ms),
        "instance": r.instance,
        "seq": r.seq,
        "request_id": e.request_id,
        "transport": e.transport,
        "consumer": e.actor,
        "credential": e.credential,
        "agency_code": e.agency_code,
        "procedure_code": e.procedure_code,
        "dossier_id": e.dossier_id,
        "officer_id": e.officer_id,
        "purpose": e.purpose,
        "dataset": e.dataset,
        "subject": e.subject,
        "action": e.action,
        "fields": e.fields,
        "outcome": e.outcome,
        "cache": e.cache,
        "upstream_status": e.upstream_status,
        "upstream_ms": e.upstream_ms,
        "detail": e.detail,
    })
}

/// The access report a citizen would see: which agency's system, for which procedure and
/// dossier, which officer, when, which fields — served disclosures only.
pub fn report_line(r: &Chained) -> String {
    let e = &r.entry;
    format!(
        "{}  {}  agency {}  procedure {}  dossier {}  officer {}  {} [{}]",
        iso_ms(e.time_ms),
        e.actor,
        if e.agency_code.is_empty() {
            "-"
        } else {
            &e.agency_code
        },
        e.procedure_code,
        e.dossier_id,
        e.officer_id,
        e.action,
        e.fields.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_and_the_subject_is_hashed() {
        let old = crate::audit::record::SubjectKey::new("k0", b"fedcba9876543210");
        let new = crate::audit::record::SubjectKey::new("k1", b"0123456789abcdef");
        let key = SubjectKeys::new(vec![new, old]);
        let f = Filters {
            dataset: Some("population.citizen".into()),
            subject: Some("001090012345".into()),
            from: Some("2026-11-01".into()),
            to: Some("2026-11-28".into()),
            ..Filters::default()
        };
        let q = f.to_query(&key).expect("valid");
        // Under both keys held, the current one first.
        assert_eq!(
            q.subjects,
            key.references("population.citizen", "001090012345")
        );
        assert_eq!(q.subjects.len(), 2);
        assert!(q.subjects[0].starts_with("k1:") && q.subjects[1].starts_with("k0:"));
        assert_eq!(
            q.to_ms.expect("to") - q.from_ms.expect("from"),
            28 * 86_400_000 - 1
        );
        assert!(!f.describe().contains("001090012345"));
        let bad = Filters {
            subject: Some("x".into()),
            ..Filters::default()
        };
        let refusal = bad.to_query(&key).unwrap_err();
        assert_eq!(refusal, FilterError::SubjectWithoutDataset);
        assert!(refusal.to_string().contains("dataset"));
        let bad = Filters {
            from: Some("last week".into()),
            ..Filters::default()
        };
        let refusal = bad.to_query(&key).unwrap_err();
        assert!(matches!(refusal, FilterError::Instant { name: "from", .. }));
        assert!(refusal.to_string().contains("from"));
        let bad = Filters {
            page_token: Some("nonsense".into()),
            ..Filters::default()
        };
        assert!(bad.to_query(&key).is_err());
        assert_eq!(parse_token("5.7.gw.1"), Some((5, "gw.1".into(), 7)));
    }
}
