//! The one wrapper every call goes through, lookup, verify and each batch item alike: the
//! call's span, its in-flight gauge, the facts its steps learn, and its audit record,
//! committed before the answer leaves (so denials, throttles, hits and upstream failures
//! each leave exactly one record), then its metrics.

use super::evidence::{Evident, Statement};
use super::gateway::Gateway;
use super::request::Caller;
use crate::audit::record::{AuditEntry, Disclosure, now_ms};
use crate::audit::writer::{AuditFailure, AuditLog};
use crate::domain::context::CallContext;
use crate::domain::error::{ErrorCode, LookupError};
use crate::layers::authenticate::authenticate;
use crate::telemetry::trace::{TraceContext, call_span};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// What the request path learned about one call, for its audit record.
pub(super) struct Facts {
    pub(super) transport: &'static str,
    pub(super) request_id: String,
    pub(super) trace: TraceContext,
    pub(super) action: &'static str,
    pub(super) actor: String,
    pub(super) credential: &'static str,
    /// Shared with the steps that use it, so that the record takes it without a copy.
    pub(super) context: Option<Arc<CallContext>>,
    pub(super) dataset: String,
    pub(super) subject: String,
    pub(super) fields: Vec<Arc<str>>,
    pub(super) cache: &'static str,
    pub(super) upstream: Option<(&'static str, i64)>,
    pub(super) detail: String,
    /// The admitting grant's legal basis and report mode, once a grant is found: the
    /// record is then a disclosure's, in format version 2.
    pub(super) grant: Option<(String, bool)>,
    /// People who appear in the disclosed fields: (field, keyed reference).
    pub(super) mentions: Vec<(String, String)>,
    pub(super) started: std::time::Instant,
}

/// Facts of a call in progress: if the call is dropped before it ends (the client went
/// away), its record is still written, with the outcome `cancelled`.
struct Pending<'a> {
    audit: &'a AuditLog,
    facts: Option<Facts>,
}

impl Pending<'_> {
    fn facts(&mut self) -> &mut Facts {
        self.facts.as_mut().expect("facts until finished")
    }

    fn finish(mut self) -> Facts {
        self.facts.take().expect("finished once")
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(facts) = self.facts.take()
            && facts.identified()
        {
            self.audit.record_detached(facts.entry("cancelled"));
        }
    }
}

/// `text`'s first `chars` characters.
fn bounded(text: &str, chars: usize) -> &str {
    if text.len() <= chars {
        return text;
    }
    match text.char_indices().nth(chars) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

impl Facts {
    #[inline]
    pub(super) fn new(caller: &Caller, action: &'static str, dataset: &str) -> Facts {
        Facts {
            transport: caller.transport,
            request_id: caller.request_id.clone(),
            trace: caller.trace.clone(),
            action,
            actor: String::new(),
            credential: "",
            context: None,
            // As asked (it may name no dataset), bounded so a caller cannot bloat the trail.
            dataset: bounded(dataset, 100).to_owned(),
            subject: String::new(),
            fields: Vec::new(),
            cache: "",
            upstream: None,
            detail: String::new(),
            grant: None,
            mentions: Vec::new(),
            started: std::time::Instant::now(),
        }
    }

    /// Whether the call's credentials named a consumer. Calls of callers never identified
    /// leave no record of their own: the door sums them per source (see
    /// `transport::door`), so a flood of them cannot grow the trail call by call.
    fn identified(&self) -> bool {
        !self.actor.is_empty()
    }

    fn entry(self, outcome: &str) -> AuditEntry {
        // The steps are over: the record is the context's only holder, and takes its text.
        let [procedure_code, dossier_id, officer_id, agency_code, purpose] = self
            .context
            .map(|c| Arc::unwrap_or_clone(c).into_parts())
            .unwrap_or_default();
        AuditEntry {
            time_ms: now_ms(),
            request_id: self.request_id,
            trace_id: self.trace.trace_id,
            transport: self.transport.into(),
            actor: self.actor,
            credential: self.credential.into(),
            officer_id,
            agency_code,
            procedure_code,
            dossier_id,
            purpose,
            dataset: self.dataset,
            subject: self.subject,
            action: self.action.into(),
            fields: self.fields,
            outcome: outcome.into(),
            cache: self.cache.into(),
            upstream_status: self.upstream.map(|u| u.0).unwrap_or_default().into(),
            upstream_ms: self.upstream.map(|u| u.1).unwrap_or(-1),
            detail: self.detail,
            disclosure: self.grant.map(|(legal_basis, withheld)| Disclosure {
                legal_basis,
                withheld,
                mentions: self.mentions,
            }),
        }
    }
}

impl Gateway {
    /// Runs `steps` as one audited call, whose record starts from `facts` (the action and
    /// the dataset as asked). `describe` adds what a successful answer disclosed to the
    /// record. If the call is dropped before it ends (the client went away), its record is
    /// still written, with the outcome `cancelled`.
    pub(super) async fn call<T>(
        &self,
        facts: Facts,
        steps: impl AsyncFnOnce(&mut Facts) -> Result<T, LookupError>,
        describe: impl FnOnce(&T, &mut Facts),
    ) -> Result<T, LookupError> {
        let _in_flight = self.metrics.enter();
        let (facts, result) = self.run(facts, steps, describe).await;
        self.audited(facts, result).await
    }

    /// As [`Gateway::call`]; with `evidence`, a served answer carries a JWS citing its
    /// committed record.
    pub(super) async fn call_evident<T: Evident>(
        &self,
        facts: Facts,
        evidence: bool,
        steps: impl AsyncFnOnce(&mut Facts) -> Result<T, LookupError>,
        describe: impl FnOnce(&T, &mut Facts),
    ) -> Result<T, LookupError> {
        let _in_flight = self.metrics.enter();
        let (facts, result) = self.run(facts, steps, describe).await;
        let statement = match (&result, evidence) {
            (Ok(answer), true) => Some(Statement::of(&facts, answer)),
            _ => None,
        };
        let (mut answer, committed) = self
            .audited_numbered(facts, result, statement.is_some())
            .await?;
        if let (Some(statement), Some((seq, time_ms))) = (statement, committed) {
            answer.attach(self.sign_evidence(statement, seq, time_ms)?);
        }
        Ok(answer)
    }

    /// Runs `steps` in the call's span; a call dropped before they end leaves its record.
    async fn run<T>(
        &self,
        facts: Facts,
        steps: impl AsyncFnOnce(&mut Facts) -> Result<T, LookupError>,
        describe: impl FnOnce(&T, &mut Facts),
    ) -> (Facts, Result<T, LookupError>) {
        let mut pending = Pending {
            audit: &self.audit,
            facts: Some(facts),
        };
        let facts = pending.facts();
        let span = call_span(&facts.request_id, facts.transport, &mut facts.trace);
        let result = steps(pending.facts()).instrument(span).await;
        let mut facts = pending.finish();
        if let Ok(answer) = &result {
            describe(answer, &mut facts);
        }
        (facts, result)
    }

    /// Audit: records the call's facts and outcome, and lets the result leave only
    /// once the record is committed (in sync durability). When the record cannot be kept the
    /// caller gets an error and no data.
    pub(super) async fn audited<T>(
        &self,
        facts: Facts,
        result: Result<T, LookupError>,
    ) -> Result<T, LookupError> {
        self.audited_numbered(facts, result, false)
            .await
            .map(|(answer, _)| answer)
    }

    /// As [`Gateway::audited`]; when `numbered`, waits for the record whatever the
    /// durability and returns its (sequence number, time).
    async fn audited_numbered<T>(
        &self,
        facts: Facts,
        result: Result<T, LookupError>,
        numbered: bool,
    ) -> Result<(T, Option<(i64, i64)>), LookupError> {
        let outcome = match &result {
            Ok(_) => "served",
            Err(e) => e.code.as_str(),
        };
        // Metric labels stay bounded: a dataset from config (else "unknown"), a consumer
        // from config (else "anonymous").
        let dataset = match self.routes.get(facts.dataset.as_str()) {
            Some(r) => r.dataset.name.as_str(),
            None if facts.dataset.is_empty() => "none",
            None => "unknown",
        };
        let consumer = if facts.actor.is_empty() {
            "anonymous".to_owned()
        } else {
            facts.actor.clone()
        };
        let (transport, started) = (facts.transport, facts.started);
        let answer = if facts.identified() {
            let entry = facts.entry(outcome);
            let time_ms = entry.time_ms;
            self.commit_audit(entry, result, numbered)
                .await
                .map(|(answer, seq)| (answer, seq.map(|s| (s, time_ms))))
        } else {
            result.map(|answer| (answer, None))
        };
        let outcome = match &answer {
            Ok(_) => "served",
            Err(e) => e.code.as_str(),
        };
        let labels = [dataset, consumer.as_str(), transport, outcome];
        self.metrics
            .requests
            .with(&labels)
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.metrics
            .request_seconds
            .with(&labels)
            .observe_duration(started.elapsed());
        answer
    }

    async fn commit_audit<T>(
        &self,
        entry: AuditEntry,
        result: Result<T, LookupError>,
        numbered: bool,
    ) -> Result<(T, Option<i64>), LookupError> {
        let committed = if numbered {
            self.audit.record_numbered(entry).await.map(Some)
        } else {
            self.audit.record(entry).await.map(|()| None)
        };
        match committed {
            Ok(seq) => result.map(|answer| (answer, seq)),
            Err(AuditFailure::Full) => Err(LookupError {
                retry_after: Some(Duration::from_secs(1)),
                ..LookupError::new(
                    ErrorCode::Overloaded,
                    "the audit trail is saturated, so no data was released; retry shortly",
                )
            }),
            // Evidence cites its record: without one there is no evidence to give.
            Err(_) if self.audit.fail_open() && !numbered => result.map(|answer| (answer, None)),
            Err(e) => {
                tracing::error!(error = %e, "audit record not kept; call refused");
                Err(LookupError::new(
                    ErrorCode::AuditUnavailable,
                    "the audit trail cannot record this call, so no data was released",
                ))
            }
        }
    }

    /// Records a call refused before the core could run it (a malformed body, an unknown
    /// route), and returns the error to send (or the audit's own error when the record
    /// cannot be kept). A caller whose credentials name no consumer hears `unauthenticated`
    /// instead, and leaves no record of its own (the door counts it).
    pub async fn refuse(
        &self,
        caller: &Caller,
        action: &'static str,
        error: LookupError,
    ) -> LookupError {
        let mut facts = Facts::new(caller, action, "");
        let error = match authenticate(
            &self.config.consumers,
            caller.api_key.as_deref(),
            caller.certificate.as_deref(),
        ) {
            Ok((consumer, credential)) => {
                facts.actor = consumer.id.clone();
                facts.credential = credential;
                error
            }
            Err(unknown) => unknown,
        };
        match self.audited::<()>(facts, Err(error)).await {
            Err(e) => e,
            Ok(()) => unreachable!("an error stays an error"),
        }
    }
}
