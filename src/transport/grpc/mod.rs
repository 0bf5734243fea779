//! The gRPC adapter: `lienthong.v1.LookupService`, translated to core calls; errors through
//! the error-code table with `google.rpc.ErrorInfo` (reason = the stable code) in details.

mod dossiers;
mod refusals;

pub use dossiers::{AccessReportApi, DossierApi};
pub use refusals::Refusals;

use super::{context_from, rate_limit_headers, wants_fresh};
use crate::core::request::{self as core, Caller, ClientCertificate, Lookup, LookupRequest};
use crate::domain::context::RawContext;
use crate::domain::dataset::{BUSINESS_ENTERPRISE, LAND_PARCEL, POPULATION_CITIZEN};
use crate::domain::error::LookupError;
use crate::proto::lienthong::lookup_service_server::LookupService;
use crate::proto::lienthong::*;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Extensions, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Domain of `ErrorInfo` details.
pub const ERROR_DOMAIN: &str = "lienthong.v1";

pub struct LookupApi {
    gateway: Arc<crate::core::live::Live>,
}

impl LookupApi {
    pub fn new(gateway: Arc<crate::core::live::Live>) -> LookupApi {
        LookupApi { gateway }
    }
}

/// A core error as a gRPC status.
pub fn status(e: &LookupError, request_id: &str) -> Status {
    let mut details = ErrorDetails::with_error_info(
        e.code.as_str(),
        ERROR_DOMAIN,
        [("request_id".to_owned(), request_id.to_owned())],
    );
    if let Some(after) = e.retry_after {
        details.set_retry_info(Some(after));
    }
    let mut status = Status::with_error_details(e.code.grpc_code(), e.message.clone(), details);
    if let Ok(v) = MetadataValue::try_from(request_id) {
        status.metadata_mut().insert("x-request-id", v);
    }
    if let Some(q) = &e.quota {
        insert_rate_limit(status.metadata_mut(), q);
    }
    status
}

fn insert_rate_limit(metadata: &mut MetadataMap, q: &crate::shared::limiter::QuotaState) {
    for (name, value) in rate_limit_headers(q) {
        if let Ok(v) = MetadataValue::try_from(value.as_str()) {
            metadata.insert(name, v);
        }
    }
}

fn caller(metadata: &MetadataMap, extensions: &Extensions) -> Caller {
    let text = |name| metadata.get(name).and_then(|v| v.to_str().ok());
    super::caller(
        text("authorization"),
        text("traceparent"),
        extensions.get::<Arc<ClientCertificate>>().cloned(),
        "grpc",
    )
}

/// The caller's deadline, a little early: a tenth of the time left (at most 100 ms) is kept
/// back so the answer reaches the caller before its own clock runs out, as a
/// DEADLINE_EXCEEDED it can act on rather than a local timeout.
fn deadline(metadata: &MetadataMap) -> Option<tokio::time::Instant> {
    let t = metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(grpc_timeout)?;
    let margin = (t / 10).min(std::time::Duration::from_millis(100));
    Some(tokio::time::Instant::now() + (t - margin))
}

/// The caller's deadline from `grpc-timeout` (`<digits><unit>`, unit H, M, S, m, u or n).
fn grpc_timeout(v: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn context(message: Option<RequestContext>, metadata: &MetadataMap) -> RawContext {
    // The context message wins; metadata with the REST header names is accepted too.
    let from_meta = context_from(|name| metadata.get(name).map(|v| v.as_encoded_bytes()));
    let Some(c) = message else { return from_meta };
    // A malformed metadata value counts only where the message leaves its field empty.
    let malformed = from_meta.malformed.filter(|(field, _)| {
        match *field {
            "procedure_code" => &c.procedure_code,
            "dossier_id" => &c.dossier_id,
            "officer_id" => &c.officer_id,
            "agency_code" => &c.agency_code,
            _ => &c.purpose,
        }
        .is_empty()
    });
    let pick = |v: String, fallback: Option<String>| if v.is_empty() { fallback } else { Some(v) };
    RawContext {
        procedure_code: pick(c.procedure_code, from_meta.procedure_code),
        dossier_id: pick(c.dossier_id, from_meta.dossier_id),
        officer_id: pick(c.officer_id, from_meta.officer_id),
        agency_code: pick(c.agency_code, from_meta.agency_code),
        purpose: pick(c.purpose, from_meta.purpose),
        malformed,
    }
}

fn info(lookup: &Lookup, request_id: &str) -> ResponseInfo {
    ResponseInfo {
        request_id: request_id.to_owned(),
        cache: lookup.cache.as_str().into(),
        dataset: lookup.dataset.name.clone(),
        fetched_at: lookup.freshness.fetched_at.clone(),
        data_time: lookup.freshness.data_time.clone().unwrap_or_default(),
        evidence: lookup.evidence.clone().unwrap_or_default(),
    }
}

/// Whether the request's context asks for evidence.
fn wants_evidence(ctx: &Option<RequestContext>) -> bool {
    ctx.as_ref().is_some_and(|c| c.evidence)
}

fn typed<T: DeserializeOwned>(lookup: &Lookup, request_id: &str) -> Result<T, Status> {
    lookup.record.deserialize().map_err(|e| {
        let e = LookupError::new(
            crate::domain::error::ErrorCode::Internal,
            format!("record does not fit its message: {e}"),
        );
        status(&e, request_id)
    })
}

fn respond<T>(message: T, lookup: &Lookup, request_id: &str) -> Response<T> {
    let mut response = Response::new(message);
    response
        .metadata_mut()
        .insert("x-cache", MetadataValue::from_static(lookup.cache.as_str()));
    if let Ok(v) = MetadataValue::try_from(request_id) {
        response.metadata_mut().insert("x-request-id", v);
    }
    if let Some(q) = &lookup.quota {
        insert_rate_limit(response.metadata_mut(), q);
    }
    response
}

impl LookupApi {
    async fn run(
        &self,
        (metadata, extensions): (&MetadataMap, &Extensions),
        dataset: &str,
        key: String,
        fields: Vec<String>,
        ctx: Option<RequestContext>,
    ) -> Result<(Lookup, String), Status> {
        let caller = caller(metadata, extensions);
        let request = LookupRequest {
            evidence: wants_evidence(&ctx),
            dataset: dataset.to_owned(),
            key,
            fields,
            context: context(ctx, metadata),
            bypass_cache: wants_fresh(metadata.get("cache-control").and_then(|v| v.to_str().ok())),
            deadline: deadline(metadata),
        };
        match self.gateway.current().lookup(&caller, request).await {
            Ok(found) => Ok((found, caller.request_id)),
            Err(e) => Err(status(&e, &caller.request_id)),
        }
    }
}

fn to_struct(record: &crate::domain::record::Projected) -> Option<pbjson_types::Struct> {
    record.deserialize().ok()
}

#[tonic::async_trait]
impl LookupService for LookupApi {
    async fn get_citizen(
        &self,
        request: Request<GetCitizenRequest>,
    ) -> Result<Response<CitizenResponse>, Status> {
        let (meta, ext, r) = request.into_parts();
        let (found, id) = self
            .run(
                (&meta, &ext),
                POPULATION_CITIZEN,
                r.personal_id,
                r.fields,
                r.context,
            )
            .await?;
        Ok(respond(
            CitizenResponse {
                record: Some(typed(&found, &id)?),
                info: Some(info(&found, &id)),
            },
            &found,
            &id,
        ))
    }

    async fn get_enterprise(
        &self,
        request: Request<GetEnterpriseRequest>,
    ) -> Result<Response<EnterpriseResponse>, Status> {
        let (meta, ext, r) = request.into_parts();
        let (found, id) = self
            .run(
                (&meta, &ext),
                BUSINESS_ENTERPRISE,
                r.enterprise_code,
                r.fields,
                r.context,
            )
            .await?;
        Ok(respond(
            EnterpriseResponse {
                record: Some(typed(&found, &id)?),
                info: Some(info(&found, &id)),
            },
            &found,
            &id,
        ))
    }

    async fn get_land_parcel(
        &self,
        request: Request<GetLandParcelRequest>,
    ) -> Result<Response<LandParcelResponse>, Status> {
        let (meta, ext, r) = request.into_parts();
        let (found, id) = self
            .run((&meta, &ext), LAND_PARCEL, r.parcel_id, r.fields, r.context)
            .await?;
        Ok(respond(
            LandParcelResponse {
                record: Some(typed(&found, &id)?),
                info: Some(info(&found, &id)),
            },
            &found,
            &id,
        ))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<RecordResponse>, Status> {
        let (meta, ext, r) = request.into_parts();
        let (found, id) = self
            .run((&meta, &ext), &r.dataset, r.key, r.fields, r.context)
            .await?;
        let info = info(&found, &id);
        let message = RecordResponse {
            dataset: found.dataset.name.clone(),
            record: to_struct(&found.record),
            info: Some(info),
        };
        Ok(respond(message, &found, &id))
    }

    async fn verify(
        &self,
        request: Request<VerifyRequest>,
    ) -> Result<Response<VerifyResponse>, Status> {
        let (meta, ext, r) = request.into_parts();
        let caller = caller(&meta, &ext);
        let gateway = self.gateway.current();
        let claims = match r
            .claims
            .into_iter()
            .map(|(k, v)| Ok((k, serde_json::to_value(v)?)))
            .collect::<Result<_, serde_json::Error>>()
        {
            Ok(claims) => claims,
            Err(e) => {
                let e = LookupError::new(
                    crate::domain::error::ErrorCode::InvalidRequest,
                    format!("a claim is not a JSON value: {e}"),
                );
                let e = gateway.refuse(&caller, "verify", e).await;
                return Err(status(&e, &caller.request_id));
            }
        };
        let request = core::VerifyRequest {
            evidence: wants_evidence(&r.context),
            dataset: r.dataset.clone(),
            key: r.key,
            claims,
            context: context(r.context, &meta),
        };
        let verdict = gateway
            .verify(&caller, request)
            .await
            .map_err(|e| status(&e, &caller.request_id))?;
        Ok(Response::new(VerifyResponse {
            r#match: verdict.matched,
            fields: verdict.fields.into_iter().collect(),
            info: Some(ResponseInfo {
                request_id: caller.request_id,
                cache: String::new(),
                dataset: r.dataset,
                fetched_at: verdict.freshness.fetched_at.clone(),
                data_time: verdict.freshness.data_time.clone().unwrap_or_default(),
                evidence: verdict.evidence.unwrap_or_default(),
            }),
        }))
    }

    async fn list_capabilities(
        &self,
        request: Request<ListCapabilitiesRequest>,
    ) -> Result<Response<Capabilities>, Status> {
        let caller = caller(request.metadata(), request.extensions());
        let gateway = self.gateway.current();
        let (consumer, grants) = gateway
            .capabilities(&caller)
            .map_err(|e| status(&e, &caller.request_id))?;
        Ok(Response::new(super::capabilities(consumer, &grants)))
    }

    type BatchGetStream = ReceiverStream<Result<BatchGetItem, Status>>;

    async fn batch_get(
        &self,
        request: Request<BatchGetRequest>,
    ) -> Result<Response<Self::BatchGetStream>, Status> {
        use futures::StreamExt;
        let (meta, ext, r) = request.into_parts();
        let caller = caller(&meta, &ext);
        let evidence = wants_evidence(&r.context);
        let ctx = context(r.context, &meta);
        let items: Vec<core::BatchItem> = r
            .items
            .into_iter()
            .map(|i| core::BatchItem {
                dataset: i.dataset,
                key: i.key,
                fields: i.fields,
            })
            .collect();
        let request_id = caller.request_id.clone();
        let mut stream = self
            .gateway
            .current()
            .batch(caller, ctx, items, evidence)
            .await
            .map_err(|e| status(&e, &request_id))?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(outcome) = stream.next().await {
                let (i, dataset, key) = (outcome.index, outcome.dataset, outcome.key);
                let item = match outcome.result {
                    Ok(found) => BatchGetItem {
                        index: i as u32,
                        dataset,
                        key,
                        outcome: "ok".into(),
                        cache: found.cache.as_str().into(),
                        fetched_at: found.freshness.fetched_at.clone(),
                        data_time: found.freshness.data_time.clone().unwrap_or_default(),
                        record: to_struct(&found.record),
                        evidence: found.evidence.unwrap_or_default(),
                        error: None,
                    },
                    Err(e) => BatchGetItem {
                        index: i as u32,
                        dataset,
                        key,
                        outcome: e.code.as_str().into(),
                        cache: String::new(),
                        fetched_at: String::new(),
                        data_time: String::new(),
                        evidence: String::new(),
                        record: None,
                        error: Some(Problem {
                            code: e.code.as_str().into(),
                            message: e.message,
                        }),
                    },
                };
                if tx.send(Ok(item)).await.is_err() {
                    break; // the caller went away
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(
            super::grpc_timeout("100m"),
            Some(Duration::from_millis(100))
        );
        assert_eq!(super::grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(super::grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(super::grpc_timeout("5x"), None);
        assert_eq!(super::grpc_timeout(""), None);
    }
}
