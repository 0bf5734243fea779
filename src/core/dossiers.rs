//! The dossier calls a one-stop system makes: declare a dossier it received, add or remove a
//! subject, close it with its result, read it back. Each runs in the one call wrapper, so
//! each leaves exactly one audit record (its dossier, procedure and officer, and for a
//! subject change the subject's keyed reference), whatever its outcome. Keys are validated
//! as lookup keys are, and reach the register only as keyed references.

use super::call::Facts;
use super::gateway::Gateway;
use super::request::Caller;
use crate::audit::record::{AuditEntry, now_ms};
use crate::domain::context::CallContext;
use crate::domain::date::{Date, parse_rfc3339_ms};
use crate::domain::error::{ErrorCode, LookupError};
use crate::dossiers::{Declared, Dossier, NewDossier, RESULTS, RegisterError};
use crate::layers::policy::Consumer;
use crate::shared::Event;

/// Longest reason accepted for a subject change, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// How far in the future a receipt time may lie (clocks differ).
const CLOCK_SKEW_MS: i64 = 5 * 60_000;

/// A subject as a caller names it: a dataset and its key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectKey {
    pub dataset: String,
    pub key: String,
}

/// A declaration as a transport received it.
#[derive(Debug, Clone, Default)]
pub struct DeclareRequest {
    pub dossier_id: String,
    pub procedure_code: String,
    /// The officer who received the dossier, optional.
    pub officer_id: String,
    /// RFC 3339, or `yyyy-mm-dd`.
    pub received_at: String,
    pub subjects: Vec<SubjectKey>,
}

/// A change to one dossier: a subject added or removed (with a reason), or the dossier
/// closed (with its result).
#[derive(Debug, Clone)]
pub enum DossierChange {
    Add { subject: SubjectKey, reason: String },
    Remove { subject: SubjectKey, reason: String },
    Close { result: String },
}

impl DossierChange {
    fn action(&self) -> &'static str {
        match self {
            DossierChange::Add { .. } => "dossier_add_subject",
            DossierChange::Remove { .. } => "dossier_remove_subject",
            DossierChange::Close { .. } => "dossier_close",
        }
    }
}

/// A dossier as answered, and whether this call created it.
#[derive(Debug, Clone)]
pub struct DossierAnswer {
    pub dossier: Dossier,
    pub created: bool,
}

fn invalid(message: impl Into<String>) -> LookupError {
    LookupError::new(ErrorCode::InvalidRequest, message)
}

/// The caller's view of a register refusal (never a key: references only).
fn refusal(e: RegisterError) -> LookupError {
    let code = match &e {
        RegisterError::Unknown(_) | RegisterError::NotSubject(_) => ErrorCode::NotFound,
        RegisterError::Ended { .. } => ErrorCode::DossierEnded,
        RegisterError::Declared(_) | RegisterError::AlreadySubject(_) => ErrorCode::AlreadyExists,
        RegisterError::TooManySubjects { .. } => ErrorCode::InvalidRequest,
        RegisterError::Store(detail) => {
            tracing::error!(error = %detail, "the dossier register failed");
            return LookupError::new(
                ErrorCode::RegisterUnavailable,
                "the dossier register cannot be read or written; nothing was changed",
            );
        }
    };
    LookupError::new(code, e.to_string())
}

fn reason(text: &str, required: bool) -> Result<String, LookupError> {
    let text = text.trim();
    if required && text.is_empty() {
        return Err(invalid("reason is required: say why the subject changes"));
    }
    if text.chars().count() > MAX_REASON_CHARS || text.chars().any(char::is_control) {
        return Err(invalid(format!(
            "reason must be at most {MAX_REASON_CHARS} characters of text"
        )));
    }
    Ok(text.to_owned())
}

impl Gateway {
    /// Declares a dossier the consumer received, with its subjects; the same declaration
    /// again is answered with the dossier as it stands (a retry changes nothing).
    pub async fn declare(
        &self,
        caller: &Caller,
        request: DeclareRequest,
    ) -> Result<DossierAnswer, LookupError> {
        self.call(
            Facts::new(caller, "dossier_declare", ""),
            async |facts: &mut Facts| self.declare_steps(caller, request, facts).await,
            |answer, facts| {
                if !answer.created {
                    facts.detail = format!("unchanged; {}", facts.detail);
                }
            },
        )
        .await
    }

    async fn declare_steps(
        &self,
        caller: &Caller,
        request: DeclareRequest,
        facts: &mut Facts,
    ) -> Result<DossierAnswer, LookupError> {
        let consumer = self.authenticate(caller, facts)?;
        let context = self.dossier_context(
            &request.dossier_id,
            &request.procedure_code,
            &request.officer_id,
        )?;
        facts.context = Some(context.into());
        let now = now_ms();
        let received_ms = parse_rfc3339_ms(request.received_at.trim()).ok_or_else(|| {
            invalid("received_at must be an RFC 3339 time (2026-11-30T08:15:00+07:00) or a date")
        })?;
        if received_ms > now + CLOCK_SKEW_MS {
            return Err(invalid("received_at lies in the future"));
        }
        let expire_after = self.dossiers.settings().expire_after.as_millis() as i64;
        if received_ms.saturating_add(expire_after) <= now {
            return Err(invalid(format!(
                "received_at is more than {} days ago: the dossier would already have expired",
                expire_after / 86_400_000
            )));
        }
        if request.subjects.is_empty() {
            return Err(invalid(
                "subjects must name at least one {dataset, key}: whom the dossier concerns",
            ));
        }
        let mut subjects: Vec<(String, String)> = Vec::with_capacity(request.subjects.len());
        for (i, s) in request.subjects.iter().enumerate() {
            let reference = self
                .subject_reference(s)
                .map_err(|e| LookupError::new(e.code, format!("subjects[{i}]: {}", e.message)))?;
            if subjects.iter().any(|(_, r)| *r == reference) {
                return Err(invalid(format!(
                    "subjects[{i}] names a subject given before"
                )));
            }
            subjects.push((s.dataset.clone(), reference));
        }
        facts.detail = serde_json::json!({
            "received_at": crate::domain::date::iso_ms(received_ms),
            "subjects": subjects.iter().map(|(d, r)| serde_json::json!({"dataset": d, "reference": r})).collect::<Vec<_>>(),
        })
        .to_string();
        // The consumer's overall quota bounds dossier calls too (they have no grant).
        self.admit_consumer(consumer).await?;
        let new = NewDossier {
            consumer: consumer.id.clone(),
            dossier_id: request.dossier_id.trim().to_owned(),
            procedure_code: request.procedure_code.trim().to_owned(),
            officer_id: request.officer_id.trim().to_owned(),
            received_ms,
            subjects,
        };
        let answer = match self.dossiers.declare(new, now).await.map_err(refusal)? {
            Declared::Created(dossier) => DossierAnswer {
                dossier,
                created: true,
            },
            Declared::Unchanged(dossier) => DossierAnswer {
                dossier,
                created: false,
            },
        };
        self.announce(&answer.dossier).await;
        Ok(answer)
    }

    /// Adds or removes a subject of an open dossier, or closes it.
    pub async fn change_dossier(
        &self,
        caller: &Caller,
        dossier_id: &str,
        officer_id: &str,
        change: DossierChange,
    ) -> Result<Dossier, LookupError> {
        self.call(
            Facts::new(caller, change.action(), ""),
            async |facts: &mut Facts| {
                self.change_steps(caller, dossier_id, officer_id, change, facts)
                    .await
            },
            |_, _| {},
        )
        .await
    }

    async fn change_steps(
        &self,
        caller: &Caller,
        dossier_id: &str,
        officer_id: &str,
        change: DossierChange,
        facts: &mut Facts,
    ) -> Result<Dossier, LookupError> {
        let consumer = self.authenticate(caller, facts)?;
        self.admit_consumer(consumer).await?;
        let consumer = consumer.id.clone();
        let id = dossier_id.trim();
        let current = self.owned_dossier(&consumer, id).await?;
        facts.context = Some(
            self.dossier_context(id, &current.procedure_code, officer_id)?
                .into(),
        );
        let now = now_ms();
        let changed = match change {
            DossierChange::Add { subject, reason: r } => {
                let r = reason(&r, true)?;
                let reference = self.subject_reference(&subject)?;
                facts.dataset = subject.dataset.clone();
                facts.subject = reference.clone();
                facts.detail = r.clone();
                self.dossiers
                    .add_subject(&consumer, id, (&subject.dataset, &reference), &r, now)
                    .await
            }
            DossierChange::Remove { subject, reason: r } => {
                let r = reason(&r, true)?;
                // Declared before a subject-key rotation, it is held under an older key.
                let reference = self
                    .subject_references(&subject)?
                    .into_iter()
                    .find(|r| current.holds(r))
                    .map_or_else(|| self.subject_reference(&subject), Ok)?;
                facts.dataset = subject.dataset.clone();
                facts.subject = reference.clone();
                facts.detail = r.clone();
                self.dossiers
                    .remove_subject(&consumer, id, &reference, &r, now)
                    .await
            }
            DossierChange::Close { result } => {
                let result = result.trim();
                if !RESULTS.contains(&result) {
                    return Err(invalid(format!(
                        "result must be one of {}",
                        RESULTS.join(", ")
                    )));
                }
                facts.detail = result.to_owned();
                self.dossiers.close(&consumer, id, result, now).await
            }
        }
        .map_err(refusal)?;
        self.announce(&changed).await;
        Ok(changed)
    }

    /// A dossier of the caller's, as stored now.
    pub async fn dossier(&self, caller: &Caller, dossier_id: &str) -> Result<Dossier, LookupError> {
        self.call(
            Facts::new(caller, "dossier_read", ""),
            async |facts: &mut Facts| {
                let consumer = self.authenticate(caller, facts)?.id.clone();
                let d = self.owned_dossier(&consumer, dossier_id.trim()).await?;
                facts.context = Some(
                    self.dossier_context(&d.dossier_id, &d.procedure_code, "")?
                        .into(),
                );
                Ok(d)
            },
            |_, _| {},
        )
        .await
    }

    /// Counts a dossier call against the consumer's overall quota (no grant applies).
    async fn admit_consumer(&self, consumer: &Consumer) -> Result<(), LookupError> {
        self.admit(consumer, usize::MAX, "dossiers")
            .await
            .map(|_| ())
    }

    /// The caller's dossier, or `not_found` naming it (another consumer's dossier of the
    /// same id is not the caller's).
    async fn owned_dossier(&self, consumer: &str, id: &str) -> Result<Dossier, LookupError> {
        if id.is_empty() || !self.config.context_rules.dossier_id_matches(id) {
            return Err(LookupError::new(
                ErrorCode::InvalidContext,
                "dossier_id does not match the deployment's dossier id pattern",
            ));
        }
        self.dossiers
            .get(consumer, id)
            .await
            .map_err(refusal)?
            .ok_or_else(|| refusal(RegisterError::Unknown(id.to_owned())))
    }

    /// The context a dossier call is recorded with: its dossier, procedure and officer, in
    /// the deployment's formats.
    fn dossier_context(
        &self,
        dossier_id: &str,
        procedure_code: &str,
        officer_id: &str,
    ) -> Result<CallContext, LookupError> {
        self.config
            .context_rules
            .dossier(dossier_id, procedure_code, officer_id)
            .map_err(|rule| LookupError::new(ErrorCode::InvalidContext, rule))
    }

    /// A subject's keyed reference, its dataset existing and its key well formed.
    fn subject_reference(&self, subject: &SubjectKey) -> Result<String, LookupError> {
        Ok(self.subject_references(subject)?.swap_remove(0))
    }

    /// A subject's references under every subject key held, the current one first.
    fn subject_references(&self, subject: &SubjectKey) -> Result<Vec<String>, LookupError> {
        let route = self.route(subject.dataset.trim())?;
        let key = route
            .dataset
            .key
            .normalize(&subject.key, Date::today().year)
            .map_err(|rule| LookupError::new(ErrorCode::InvalidKey, rule))?;
        Ok(self.audit.subjects().references(&route.dataset.name, &key))
    }

    /// Tells the other replicas to forget their copy of a changed dossier.
    async fn announce(&self, d: &Dossier) {
        if let Some(shared) = &self.shared {
            shared
                .publish(&Event::Dossier {
                    consumer: d.consumer.clone(),
                    dossier_id: d.dossier_id.clone(),
                    origin: self.config.settings.instance_id.clone(),
                })
                .await;
        }
    }

    /// The register this version shares with every other.
    pub fn dossiers(&self) -> &crate::dossiers::Register {
        &self.dossiers
    }

    /// Marks dossiers past their expiry as expired, each with its audit record, and purges
    /// ended dossiers older than the audit retention. Returns how many expired.
    pub async fn sweep_dossiers(&self) -> Result<usize, crate::dossiers::RegisterError> {
        let now = now_ms();
        let expired = self.dossiers.expire_due(now).await?;
        for d in &expired {
            let entry = AuditEntry {
                time_ms: now,
                transport: "system".into(),
                actor: d.consumer.clone(),
                credential: "system".into(),
                officer_id: d.officer_id.clone(),
                procedure_code: d.procedure_code.clone(),
                dossier_id: d.dossier_id.clone(),
                action: "dossier_expire".into(),
                outcome: "served".into(),
                upstream_ms: -1,
                detail: format!(
                    "received {}, never closed",
                    crate::domain::date::iso_ms(d.received_ms)
                ),
                ..AuditEntry::default()
            };
            if let Err(e) = self.audit.record(entry).await {
                tracing::error!(error = %e, dossier = %d.dossier_id, "a dossier's expiry was not recorded");
            }
            self.announce(d).await;
        }
        if let Some(retention) = self.config.audit.retention {
            let purged = self
                .dossiers
                .purge_ended_before(now - retention.as_millis() as i64)
                .await?;
            if purged > 0 {
                tracing::info!(purged, "dossiers ended before the audit retention purged");
            }
        }
        Ok(expired.len())
    }
}
