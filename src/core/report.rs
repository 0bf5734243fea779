//! One citizen's access report from the core: for operators and auditors (in full), and
//! for the citizen through the public-service portal, on the portal's signed assertion of
//! who the citizen is (withheld grants counted, not detailed). Each report served is
//! itself audited.

use super::call::Facts;
use super::gateway::Gateway;
use super::request::Caller;
use crate::audit::citizen::{self, PageError, View};
use crate::audit::record::now_ms;
use crate::domain::dataset::POPULATION_CITIZEN;
use crate::domain::date::Date;
use crate::domain::error::{ErrorCode, LookupError};
use crate::layers::policy::Mode;
use serde_json::Value;

/// A page of a citizen's report as asked: how many entries, and where to go on.
#[derive(Debug, Clone, Default)]
pub struct ReportRequest {
    pub limit: Option<usize>,
    pub page_token: Option<String>,
}

impl Gateway {
    /// The keyed references of a personal id, validated as a lookup key is: one under each
    /// subject key held, the current one first.
    pub fn person(&self, personal_id: &str) -> Result<Vec<String>, LookupError> {
        let route = self.route(POPULATION_CITIZEN)?;
        let key = route
            .dataset
            .key
            .normalize(personal_id, Date::today().year)
            .map_err(|rule| LookupError::new(ErrorCode::InvalidKey, rule))?;
        Ok(self.audit.subjects().references(POPULATION_CITIZEN, &key))
    }

    /// A page of the report about a person (their references, [`Gateway::person`]), as
    /// `view` shows it.
    pub async fn citizen_report(
        &self,
        person: &[String],
        request: &ReportRequest,
        view: View,
    ) -> Result<Value, LookupError> {
        let page = citizen::page(
            self.audit.store(),
            person,
            request.limit.unwrap_or(100),
            request.page_token.as_deref(),
        )
        .await
        .map_err(|e| match e {
            PageError::Store(e) => {
                tracing::error!(error = %e, "the audit store cannot be read for a report");
                LookupError::new(
                    ErrorCode::AuditUnavailable,
                    "the audit store cannot be read",
                )
            }
            other => LookupError::new(ErrorCode::InvalidRequest, other.to_string()),
        })?;
        Ok(citizen::to_json(
            &page,
            person,
            &self.config.report_names(),
            view,
        ))
    }

    /// The citizen's own report, for the portal that asserts who the citizen is: the
    /// portal's grant in `report` mode on `population.citizen`, its assertion checked
    /// (signature, issuer, audience, times, a first use of its `jti`), and only the
    /// asserted citizen's report.
    pub async fn my_access_report(
        &self,
        caller: &Caller,
        assertion: Option<&str>,
        request: ReportRequest,
    ) -> Result<Value, LookupError> {
        self.call(
            Facts::new(caller, "citizen_report", POPULATION_CITIZEN),
            async |facts: &mut Facts| {
                self.my_report_steps(caller, assertion, request, facts)
                    .await
            },
            |_, _| {},
        )
        .await
    }

    async fn my_report_steps(
        &self,
        caller: &Caller,
        assertion: Option<&str>,
        request: ReportRequest,
        facts: &mut Facts,
    ) -> Result<Value, LookupError> {
        let consumer = self.authenticate(caller, facts)?;
        let today = Date::today();
        let (grant_index, _) = self
            .config
            .grants
            .iter()
            .enumerate()
            .find(|(_, g)| {
                g.consumer == consumer.id
                    && g.dataset == POPULATION_CITIZEN
                    && !g.disabled
                    && g.in_force(today)
                    && g.modes.contains(&Mode::Report)
            })
            .ok_or_else(|| {
                LookupError::new(
                    ErrorCode::PermissionDenied,
                    "no grant in report mode on population.citizen for this consumer",
                )
            })?;
        let policy = consumer.assertion.as_ref().ok_or_else(|| {
            LookupError::new(
                ErrorCode::PermissionDenied,
                "this consumer has no assertion keys registered (consumer.assertion)",
            )
        })?;
        let token = assertion.ok_or_else(|| {
            LookupError::new(
                ErrorCode::InvalidRequest,
                "the citizen's signed assertion is missing (X-Citizen-Assertion)",
            )
        })?;
        let refused = |why: String| {
            LookupError::new(
                ErrorCode::PermissionDenied,
                format!("the citizen's assertion is refused: {why}"),
            )
        };
        let now_s = now_ms() / 1000;
        let claims = policy.check(token.trim(), now_s).map_err(refused)?;
        let person = self
            .person(&claims.sub)
            .map_err(|e| refused(format!("its sub is not a personal id ({})", e.message)))?;
        facts.subject = person[0].clone();
        let first = self
            .assertions
            .first_use(self.shared.as_deref(), &claims, now_s)
            .await
            .map_err(refused)?;
        if !first {
            return Err(refused("it was used before (jti)".into()));
        }
        self.admit(consumer, grant_index, POPULATION_CITIZEN)
            .await?;
        let report = self
            .citizen_report(&person, &request, View::Citizen)
            .await?;
        facts.detail = format!(
            "{} entries, {} withheld",
            report["entries"].as_array().map(Vec::len).unwrap_or(0),
            report["withheld_count"]
        );
        Ok(report)
    }
}
