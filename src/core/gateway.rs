//! The lookup service both transports call. `lookup`, `verify` and `batch` each read as the
//! documented order of the request path, one step per line, each step a function of
//! `layers` with the reason it sits where it does. Every call runs inside the one wrapper
//! of [`super::call`]: its audit record (step 1) is outermost.

use super::call::Facts;
use super::detect::Watched;
use super::model::Model;
use super::request::{
    BatchItem, BatchOutcome, Caller, Lookup, LookupRequest, Verification, VerifyRequest,
};
use crate::audit::writer::AuditLog;
use crate::domain::context::{CallContext, RawContext};
use crate::domain::error::{ErrorCode, LookupError, QuotaState};
use crate::domain::record::StoredRecord;
use crate::layers::authenticate::authenticate;
use crate::layers::authorize::{allow_cache_bypass, authorize};
use crate::layers::fetch::{Fetched, Route, fetch};
use crate::layers::policy::{Consumer, Grant, Mode};
use crate::layers::quota::Quotas;
use crate::layers::validate::validate;
use crate::layers::{cache::CacheStatus, claims};
use crate::shared::Shared;
use crate::telemetry::metrics::Metrics;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// The gateway core: one version of the model, its routes to the providers and its quotas,
/// with the audit writer, metrics and drain flag every version shares.
pub struct Gateway {
    pub(super) config: Arc<Model>,
    pub(super) routes: HashMap<String, Arc<Route>>,
    pub(super) quotas: Quotas,
    /// Quotas and provider capacity shared with other replicas through Redis.
    pub(super) shared: Option<Arc<Shared>>,
    pub(super) audit: Arc<AuditLog>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) draining: Arc<AtomicBool>,
    pub(super) http: reqwest::Client,
    /// The dossiers consumers declared, for purpose binding.
    pub(super) dossiers: Arc<crate::dossiers::Register>,
    /// Misuse detection's memory on this replica.
    pub(super) detector: Arc<crate::layers::misuse::Detector>,
    /// Citizens' assertions already used (when Redis is not shared).
    pub(super) assertions: Arc<crate::layers::assertion::SeenAssertions>,
}

impl Gateway {
    /// The metrics every version shares (the door counts into them too).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Whether the caller's credentials name exactly one consumer: what a transport asks
    /// before it reads a body, so that an unknown caller hears only that.
    pub fn identify(&self, caller: &Caller) -> Result<(), LookupError> {
        self.consumer(caller).map(|_| ())
    }

    /// Looks up one record and returns the fields the caller's grant lets leave.
    pub async fn lookup(
        &self,
        caller: &Caller,
        request: LookupRequest,
    ) -> Result<Lookup, LookupError> {
        // 1. audit — outermost (the wrapper), so every outcome leaves exactly one record,
        //    committed before the answer leaves.
        self.call_evident(
            Facts::new(caller, "fetch", &request.dataset),
            request.evidence,
            async |facts: &mut Facts| self.lookup_steps(caller, request, facts).await,
            |found, facts| {
                facts.fields = found.record.shared_names();
                facts.mentions = found
                    .record
                    .mentions(&facts.fields)
                    .map(|(f, r)| (f.to_owned(), r.to_owned()))
                    .collect();
            },
        )
        .await
    }

    async fn lookup_steps(
        &self,
        caller: &Caller,
        request: LookupRequest,
        facts: &mut Facts,
    ) -> Result<Lookup, LookupError> {
        // 2. authenticate — nothing is validated or looked up for an unknown caller.
        let consumer = self.authenticate(caller, facts)?;
        // 3. validate — dataset, key, context and fields, before any upstream call.
        self.evidence_possible(request.evidence)?;
        let route = self.route(&request.dataset)?;
        let (key, context) = validate(
            &route.dataset,
            &request.key,
            &request.context,
            &self.config.context_rules,
            &request.fields,
        )?;
        facts.subject = self.audit.subject(&route.dataset.name, &key);
        let context = std::sync::Arc::new(context);
        facts.context = Some(context.clone());
        // 4. authorize — the grant decides which fields may leave, and whether the cache
        //    may be bypassed.
        let (grant_index, grant, fields) = authorize(
            &self.config.grants,
            consumer,
            &route.dataset.name,
            Mode::Fetch,
            &context,
            &request.fields,
        )?;
        facts.grant = Some((grant.legal_basis.clone(), grant.withheld));
        allow_cache_bypass(grant, request.bypass_cache, &route.dataset.name)?;
        let call = Watched {
            consumer,
            grant,
            context: &context,
            dataset: &route.dataset.name,
            key: &key,
            subject: &facts.subject,
        };
        // 4b. bind — under a declared binding, an open dossier of this consumer and
        //     procedure names the key; before the quota, so a refused call reaches neither
        //     the cache nor the provider.
        self.bind(&call).await?;
        // 4c. detect — misuse rules count the attempt (those the quota then refuses too),
        //     and refuse it while a rule under `refuse` fires.
        self.detect(&call).await?;
        // 5. quota — before the cache, so cached answers count against the quota too.
        let quota = self
            .admit(consumer, grant_index, &route.dataset.name)
            .await?;
        // 6-8. cache, upstream guard, connector. The cache holds full records, so the
        //      projection to this caller's grant happens after it, on every answer.
        let fetched = self
            .fetch(
                route,
                &key,
                &context,
                caller,
                (request.bypass_cache, request.deadline),
                facts,
            )
            .await
            .map_err(|e| past_deadline(e, request.deadline));
        self.observe(consumer, &context, &fetched).await;
        let (record, cache) = fetched?;
        Ok(Lookup {
            dataset: route.dataset.clone(),
            key,
            freshness: record.freshness().clone(),
            record: record.project(fields),
            cache,
            quota,
            evidence: None,
        })
    }

    /// Checks claimed values against a record and says which match, disclosing nothing
    /// else: the lookup's path under the grant's `verify` mode, the claims naming granted
    /// fields.
    pub async fn verify(
        &self,
        caller: &Caller,
        request: VerifyRequest,
    ) -> Result<Verification, LookupError> {
        // 1. audit — as for a lookup; the record says whether the claims matched.
        self.call_evident(
            Facts::new(caller, "verify", &request.dataset),
            request.evidence,
            async |facts: &mut Facts| self.verify_steps(caller, request, facts).await,
            |v, facts| facts.detail = if v.matched { "match" } else { "no match" }.into(),
        )
        .await
    }

    async fn verify_steps(
        &self,
        caller: &Caller,
        request: VerifyRequest,
        facts: &mut Facts,
    ) -> Result<Verification, LookupError> {
        // 2. authenticate — as for a lookup.
        let consumer = self.authenticate(caller, facts)?;
        self.evidence_possible(request.evidence)?;
        // 3. validate — the claims name fields of the dataset, one value each.
        if request.claims.is_empty() {
            return Err(LookupError::new(
                ErrorCode::InvalidRequest,
                "claims must name at least one field",
            ));
        }
        let fields: Vec<String> = request.claims.keys().cloned().collect();
        let route = self.route(&request.dataset)?;
        let (key, context) = validate(
            &route.dataset,
            &request.key,
            &request.context,
            &self.config.context_rules,
            &fields,
        )?;
        facts.subject = self.audit.subject(&route.dataset.name, &key);
        let context = std::sync::Arc::new(context);
        facts.context = Some(context.clone());
        facts.fields = fields.iter().map(|f| f.as_str().into()).collect();
        if let Some((f, _)) = request
            .claims
            .iter()
            .find(|(_, v)| v.is_object() || v.is_array())
        {
            return Err(LookupError::new(
                ErrorCode::InvalidRequest,
                format!("claim {f:?} must be a single value, not a structure"),
            ));
        }
        // 4. authorize — under the verify mode, for the fields claimed.
        let (grant_index, grant, _) = authorize(
            &self.config.grants,
            consumer,
            &route.dataset.name,
            Mode::Verify,
            &context,
            &fields,
        )?;
        facts.grant = Some((grant.legal_basis.clone(), grant.withheld));
        // 4b. bind, 4c. detect — as for a lookup.
        let call = Watched {
            consumer,
            grant,
            context: &context,
            dataset: &route.dataset.name,
            key: &key,
            subject: &facts.subject,
        };
        self.bind(&call).await?;
        self.detect(&call).await?;
        // 5. quota — as for a lookup.
        self.admit(consumer, grant_index, &route.dataset.name)
            .await?;
        // 6-8. cache, upstream guard, connector; then only the comparison leaves.
        let fetched = self
            .fetch(route, &key, &context, caller, (false, None), facts)
            .await;
        self.observe(consumer, &context, &fetched).await;
        let (record, _) = fetched?;
        Ok(claims::verify(&record, &request.claims))
    }

    /// Looks up many items under one context, yielding their outcomes in request order,
    /// each a lookup with its own audit record. The batch as a whole is checked first (an
    /// unknown caller, too many items): that refusal fails the call, with one record.
    pub async fn batch(
        self: Arc<Self>,
        caller: Caller,
        context: RawContext,
        items: Vec<BatchItem>,
        evidence: bool,
    ) -> Result<BoxStream<'static, BatchOutcome>, LookupError> {
        // 1-2. audit and authenticate the batch itself, and bound it.
        self.admit_batch(&caller, items.len()).await?;
        let concurrency = self.config.settings.batch_concurrency;
        let caller = Arc::new(caller);
        let outcomes = futures::stream::iter(items.into_iter().enumerate())
            .map(move |(index, item)| {
                let (gateway, caller, context) = (self.clone(), caller.clone(), context.clone());
                async move {
                    let request = LookupRequest {
                        dataset: item.dataset.clone(),
                        key: item.key.clone(),
                        fields: item.fields,
                        context,
                        bypass_cache: false,
                        deadline: None,
                        evidence,
                    };
                    // Each item takes the whole path, its own record included.
                    let result = gateway.lookup(&caller, request).await;
                    BatchOutcome {
                        index,
                        dataset: item.dataset,
                        key: item.key,
                        result,
                    }
                }
            })
            .buffered(concurrency);
        Ok(outcomes.boxed())
    }

    async fn admit_batch(&self, caller: &Caller, len: usize) -> Result<(), LookupError> {
        let max = self.config.settings.max_batch_items;
        let mut facts = Facts::new(caller, "batch", "");
        facts.detail = format!("{len} items");
        // An unknown caller hears only that; the size is checked for a known one.
        let admitted = self.authenticate(caller, &mut facts).and_then(|_| {
            if len > max {
                Err(LookupError::new(
                    ErrorCode::InvalidRequest,
                    format!("a batch holds at most {max} items, this one {len}"),
                ))
            } else {
                Ok(())
            }
        });
        match admitted {
            Ok(_) => Ok(()),
            Err(e) => self.audited(facts, Err(e)).await,
        }
    }

    /// The caller's grants, as discovery shows them: (consumer, grants).
    pub fn capabilities(&self, caller: &Caller) -> Result<(&Consumer, Vec<&Grant>), LookupError> {
        let consumer = self.consumer(caller)?.0;
        let grants = self
            .config
            .grants
            .iter()
            .filter(|g| g.consumer == consumer.id && !g.disabled)
            .filter(|g| self.config.dataset(&g.dataset).is_some_and(|d| !d.disabled))
            .collect();
        Ok((consumer, grants))
    }

    /// Step 2, with what it learned written into the call's facts.
    pub(super) fn authenticate(
        &self,
        caller: &Caller,
        facts: &mut Facts,
    ) -> Result<&Consumer, LookupError> {
        let (consumer, credential) = self.consumer(caller)?;
        facts.actor = consumer.id.clone();
        facts.credential = credential;
        Ok(consumer)
    }

    pub(super) fn consumer(
        &self,
        caller: &Caller,
    ) -> Result<(&Consumer, &'static str), LookupError> {
        authenticate(
            &self.config.consumers,
            caller.api_key.as_deref(),
            caller.certificate.as_deref(),
        )
    }

    /// Step 5 over this version's quotas.
    pub(super) async fn admit(
        &self,
        consumer: &Consumer,
        grant_index: usize,
        dataset: &str,
    ) -> Result<Option<QuotaState>, LookupError> {
        self.quotas
            .admit(
                consumer,
                &self.config.grants,
                grant_index,
                dataset,
                &self.metrics,
            )
            .await
    }

    /// A lookup's result, for the not-found rule: found, or `not_found`.
    async fn observe<T>(
        &self,
        consumer: &Consumer,
        context: &CallContext,
        r: &Result<T, LookupError>,
    ) {
        match r {
            Ok(_) => self.observed(&consumer.id, context, true).await,
            Err(e) if e.code == ErrorCode::NotFound => {
                self.observed(&consumer.id, context, false).await
            }
            Err(_) => {}
        }
    }

    /// Steps 6-8, with what the provider answered written into the call's facts.
    async fn fetch(
        &self,
        route: &Route,
        key: &str,
        context: &CallContext,
        caller: &Caller,
        options: (bool, Option<tokio::time::Instant>),
        facts: &mut Facts,
    ) -> Result<(Arc<StoredRecord>, CacheStatus), LookupError> {
        let Fetched { result, upstream } = fetch(
            route,
            key,
            context,
            (&caller.request_id, &facts.trace),
            options,
            &self.metrics,
        )
        .await;
        facts.upstream = upstream;
        if let Ok((_, status)) = &result {
            facts.cache = status.as_str();
        }
        result
    }
}

/// A provider call cut off by the caller's own deadline is the caller's `deadline_exceeded`,
/// not the provider's `upstream_timeout`.
fn past_deadline(e: LookupError, deadline: Option<tokio::time::Instant>) -> LookupError {
    match deadline {
        Some(d) if e.code == ErrorCode::UpstreamTimeout && tokio::time::Instant::now() >= d => {
            LookupError::new(
                ErrorCode::DeadlineExceeded,
                "the caller's deadline (X-Request-Timeout-Ms, grpc-timeout) passed before the \
                 provider answered",
            )
        }
        _ => e,
    }
}

#[cfg(test)]
mod tests;
