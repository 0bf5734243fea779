//! Evidence for an answer, on request: once the call's audit record is committed, a JWS
//! (see [`crate::audit::evidence`]) stating the answer's digest, who asked under which
//! procedure and dossier, the data's times and the record's place in the audit chain.

use super::call::Facts;
use super::gateway::Gateway;
use crate::audit::evidence::{Claims, answer_digest};
use crate::domain::error::{ErrorCode, LookupError};
use crate::domain::record::Freshness;
use crate::layers::claims::Verification;
use std::sync::Arc;

/// An answer evidence can be given for.
pub(super) trait Evident {
    /// The answer as the caller receives it (REST's body), whose digest the evidence states.
    fn answer(&self) -> serde_json::Value;
    fn freshness(&self) -> &Arc<Freshness>;
    fn attach(&mut self, jws: String);
}

impl Evident for super::request::Lookup {
    fn answer(&self) -> serde_json::Value {
        serde_json::from_slice(&self.record.to_json()).unwrap_or_default()
    }
    fn freshness(&self) -> &Arc<Freshness> {
        &self.freshness
    }
    fn attach(&mut self, jws: String) {
        self.evidence = Some(jws);
    }
}

impl Evident for Verification {
    fn answer(&self) -> serde_json::Value {
        verification_answer(self)
    }
    fn freshness(&self) -> &Arc<Freshness> {
        &self.freshness
    }
    fn attach(&mut self, jws: String) {
        self.evidence = Some(jws);
    }
}

/// A verify answer as REST's body carries it: `{"match": …, "fields": {name: bool}}`.
pub fn verification_answer(v: &Verification) -> serde_json::Value {
    let fields: serde_json::Map<String, serde_json::Value> = v
        .fields
        .iter()
        .map(|(f, m)| (f.clone(), serde_json::Value::Bool(*m)))
        .collect();
    serde_json::json!({ "match": v.matched, "fields": fields })
}

/// What the evidence will state, read from the call's facts and its answer before the
/// audit record takes them; the record's sequence number and time come after the commit.
pub(super) struct Statement(Claims);

impl Statement {
    pub(super) fn of(facts: &Facts, answer: &impl Evident) -> Statement {
        let (procedure, dossier) = facts
            .context
            .as_ref()
            .map(|c| (c.procedure_code().to_owned(), c.dossier_id().to_owned()))
            .unwrap_or_default();
        let freshness = answer.freshness();
        Statement(Claims {
            v: 1,
            action: facts.action.into(),
            answer_sha256: answer_digest(&answer.answer()),
            dataset: facts.dataset.clone(),
            subject: facts.subject.clone(),
            consumer: facts.actor.clone(),
            procedure,
            dossier,
            answered_at: String::new(),
            fetched_at: freshness.fetched_at.clone(),
            data_time: freshness.data_time.clone(),
            cache: facts.cache.into(),
            audit_instance: String::new(),
            audit_seq: 0,
        })
    }
}

impl Gateway {
    /// Refuses a call asking for evidence when no key can sign it: before anything is
    /// looked up, so no data leaves without the evidence asked for.
    pub(super) fn evidence_possible(&self, wanted: bool) -> Result<(), LookupError> {
        if wanted && self.config.audit.evidence.signer().is_none() {
            return Err(LookupError::new(
                ErrorCode::InvalidRequest,
                "evidence was asked for, but this gateway has no evidence key ([[audit.evidence_keys]]); ask without it",
            ));
        }
        Ok(())
    }

    /// Signs `statement` for the record committed as `seq` at `time_ms`.
    pub(super) fn sign_evidence(
        &self,
        Statement(mut claims): Statement,
        seq: i64,
        time_ms: i64,
    ) -> Result<String, LookupError> {
        claims.audit_seq = seq;
        claims.audit_instance = self.audit.instance().to_owned();
        claims.answered_at = crate::domain::date::iso_ms(time_ms);
        self.config
            .audit
            .evidence
            .sign(&claims)
            .ok_or_else(|| LookupError::new(ErrorCode::Internal, "the evidence key could not sign"))
    }
}
