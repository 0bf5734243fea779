//! `lienthong.v1.DossierService`: the dossier register's calls, translated to the core's.

use super::{caller, status};
use crate::core::dossiers::{DeclareRequest, DossierChange, SubjectKey};
use crate::proto::lienthong::dossier_service_server::DossierService;
use crate::proto::lienthong::{
    CloseDossierRequest, DeclareDossierRequest, DossierResponse, GetDossierRequest,
    SubjectChangeRequest,
};
use crate::transport::dossier_message;
use std::sync::Arc;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

pub struct DossierApi {
    live: Arc<crate::core::live::Live>,
}

impl DossierApi {
    pub fn new(live: Arc<crate::core::live::Live>) -> DossierApi {
        DossierApi { live }
    }
}

fn subject(s: Option<crate::proto::lienthong::SubjectKey>) -> SubjectKey {
    let s = s.unwrap_or_default();
    SubjectKey {
        dataset: s.dataset,
        key: s.key,
    }
}

fn answer(
    result: Result<(crate::dossiers::Dossier, bool), crate::domain::error::LookupError>,
    request_id: String,
) -> Result<Response<DossierResponse>, Status> {
    match result {
        Ok((d, created)) => {
            let mut response = Response::new(DossierResponse {
                dossier: Some(dossier_message(&d)),
                created,
                request_id: request_id.clone(),
            });
            if let Ok(v) = MetadataValue::try_from(request_id.as_str()) {
                response.metadata_mut().insert("x-request-id", v);
            }
            Ok(response)
        }
        Err(e) => Err(status(&e, &request_id)),
    }
}

impl DossierApi {
    /// One change to a dossier, answered with the dossier as it is after it.
    async fn change(
        &self,
        caller: crate::core::request::Caller,
        dossier_id: &str,
        officer_id: &str,
        change: DossierChange,
    ) -> Result<Response<DossierResponse>, Status> {
        let result = self
            .live
            .current()
            .change_dossier(&caller, dossier_id, officer_id, change)
            .await;
        answer(result.map(|d| (d, false)), caller.request_id)
    }
}

#[tonic::async_trait]
impl DossierService for DossierApi {
    async fn declare(
        &self,
        request: Request<DeclareDossierRequest>,
    ) -> Result<Response<DossierResponse>, Status> {
        let (meta, ext, r) = request.into_parts();
        let caller = caller(&meta, &ext);
        let request = DeclareRequest {
            dossier_id: r.dossier_id,
            procedure_code: r.procedure_code,
            officer_id: r.officer_id,
            received_at: r.received_at,
            subjects: r.subjects.into_iter().map(|s| subject(Some(s))).collect(),
        };
        let result = self.live.current().declare(&caller, request).await;
        answer(result.map(|a| (a.dossier, a.created)), caller.request_id)
    }

    async fn add_subject(
        &self,
        request: Request<SubjectChangeRequest>,
    ) -> Result<Response<DossierResponse>, Status> {
        let (meta, ext, r) = request.into_parts();
        let change = DossierChange::Add {
            subject: subject(r.subject),
            reason: r.reason,
        };
        self.change(caller(&meta, &ext), &r.dossier_id, &r.officer_id, change)
            .await
    }

    async fn remove_subject(
        &self,
        request: Request<SubjectChangeRequest>,
    ) -> Result<Response<DossierResponse>, Status> {
        let (meta, ext, r) = request.into_parts();
        let change = DossierChange::Remove {
            subject: subject(r.subject),
            reason: r.reason,
        };
        self.change(caller(&meta, &ext), &r.dossier_id, &r.officer_id, change)
            .await
    }

    async fn close(
        &self,
        request: Request<CloseDossierRequest>,
    ) -> Result<Response<DossierResponse>, Status> {
        let (meta, ext, r) = request.into_parts();
        let change = DossierChange::Close { result: r.result };
        self.change(caller(&meta, &ext), &r.dossier_id, &r.officer_id, change)
            .await
    }

    async fn get_dossier(
        &self,
        request: Request<GetDossierRequest>,
    ) -> Result<Response<DossierResponse>, Status> {
        let (meta, ext, r) = request.into_parts();
        let caller = caller(&meta, &ext);
        let result = self.live.current().dossier(&caller, &r.dossier_id).await;
        answer(result.map(|d| (d, false)), caller.request_id)
    }
}

/// `lienthong.v1.AccessReportService`: the citizen's own access report, for the portal.
pub struct AccessReportApi {
    live: Arc<crate::core::live::Live>,
}

impl AccessReportApi {
    pub fn new(live: Arc<crate::core::live::Live>) -> AccessReportApi {
        AccessReportApi { live }
    }
}

#[tonic::async_trait]
impl crate::proto::lienthong::access_report_service_server::AccessReportService
    for AccessReportApi
{
    async fn get_my_access_report(
        &self,
        request: Request<crate::proto::lienthong::AccessReportRequest>,
    ) -> Result<Response<crate::proto::lienthong::AccessReport>, Status> {
        let (meta, ext, r) = request.into_parts();
        let caller = caller(&meta, &ext);
        let assertion = if r.assertion.is_empty() {
            meta.get(crate::transport::ASSERTION_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        } else {
            Some(r.assertion)
        };
        let request = crate::core::report::ReportRequest {
            limit: (r.limit > 0).then_some(r.limit as usize),
            page_token: (!r.page_token.is_empty()).then_some(r.page_token),
        };
        let mut report = self
            .live
            .current()
            .my_access_report(&caller, assertion.as_deref(), request)
            .await
            .map_err(|e| status(&e, &caller.request_id))?;
        // proto3 has no null: the last page's token is empty.
        if report["next_page_token"].is_null() {
            report["next_page_token"] = serde_json::Value::String(String::new());
        }
        let message = serde_json::from_value(report).map_err(|e| {
            status(
                &crate::domain::error::LookupError::new(
                    crate::domain::error::ErrorCode::Internal,
                    format!("the report does not fit its message: {e}"),
                ),
                &caller.request_id,
            )
        })?;
        let mut response = Response::new(message);
        if let Ok(v) = MetadataValue::try_from(caller.request_id.as_str()) {
            response.metadata_mut().insert("x-request-id", v);
        }
        Ok(response)
    }
}
