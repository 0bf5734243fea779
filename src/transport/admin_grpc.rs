//! `lienthong.v1.AdminService` on the admin listener: each method turns its request into the
//! same [`crate::admin::Op`] the REST routes build, so the rules, the audit records and the
//! answers (JSON objects, as `google.protobuf.Struct`) are the same on both.

use crate::admin::{Credential, Op};
use crate::core::live::Live;
use crate::domain::error::{ErrorCode, LookupError};
use crate::layers::authenticate::ClientCertificate;
use crate::proto::lienthong::AdminRequest;
use crate::proto::lienthong::admin_service_server::AdminService;
use pbjson_types::Struct;
use serde_json::Value;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct AdminApi {
    live: Arc<Live>,
}

impl AdminApi {
    pub fn new(live: Arc<Live>) -> AdminApi {
        AdminApi { live }
    }

    async fn run(
        &self,
        request: Request<AdminRequest>,
        op: impl FnOnce(AdminRequest) -> Result<Op, LookupError>,
    ) -> Result<Response<Struct>, Status> {
        let request_id = super::request_id();
        let credential = Credential {
            bearer: super::bearer(
                request
                    .metadata()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok()),
            ),
            certificate: request
                .extensions()
                .get::<Arc<ClientCertificate>>()
                .cloned(),
        };
        let request = request.into_inner();
        let expected = Some(request.expected_version.clone()).filter(|v| !v.is_empty());
        let answer = match op(request) {
            Ok(op) => {
                crate::admin::run(
                    &self.live,
                    &credential,
                    &request_id,
                    op,
                    expected.as_deref(),
                )
                .await
            }
            Err(e) => Err(e),
        };
        let value = answer.map_err(|e| super::grpc::status(&e, &request_id))?;
        let message: Struct = serde_json::from_value(value).map_err(|e| {
            super::grpc::status(
                &LookupError::new(ErrorCode::Internal, e.to_string()),
                &request_id,
            )
        })?;
        Ok(Response::new(message))
    }
}

/// The request's body as JSON (an empty object when absent).
fn body(r: &AdminRequest) -> Value {
    r.body
        .as_ref()
        .and_then(|b| serde_json::to_value(b).ok())
        .unwrap_or_else(|| Value::Object(Default::default()))
}

/// A grant's id, in `name`; the position (`index`) grants were once addressed by is
/// refused with the id form.
#[allow(deprecated)]
fn grant_id(r: &AdminRequest) -> Result<String, LookupError> {
    if r.index != 0 {
        return Err(LookupError::new(
            ErrorCode::InvalidRequest,
            format!(
                "grants are addressed by their id in `name`, like \"g-3f9a2c1b7d\", not by `index` ({}): ListGrants gives each grant's id",
                r.index
            ),
        ));
    }
    if r.name.is_empty() {
        return Err(LookupError::new(
            ErrorCode::InvalidRequest,
            "name the grant by its id in `name`, like \"g-3f9a2c1b7d\" (ListGrants gives each grant's id)",
        ));
    }
    Ok(r.name.clone())
}

fn key_id(r: &AdminRequest) -> Result<String, LookupError> {
    if r.key_id.is_empty() {
        Err(LookupError::new(
            ErrorCode::InvalidRequest,
            "key_id is empty: name the key (k-… or f-…, from GetConsumer)",
        ))
    } else {
        Ok(r.key_id.clone())
    }
}

fn probe_key(r: &AdminRequest) -> Option<String> {
    Some(r.probe_key.clone()).filter(|k| !k.is_empty())
}

fn name(r: &AdminRequest) -> Result<String, LookupError> {
    if r.name.is_empty() {
        Err(LookupError::new(ErrorCode::InvalidRequest, "name is empty"))
    } else {
        Ok(r.name.clone())
    }
}

/// Body fields as typed filters or purge targets.
fn from_body<T: serde::de::DeserializeOwned>(
    r: &AdminRequest,
    what: &str,
) -> Result<T, LookupError> {
    serde_json::from_value(body(r)).map_err(|e| {
        LookupError::new(
            ErrorCode::InvalidRequest,
            format!("body must be {what}: {e}"),
        )
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    dataset: String,
    key: Option<String>,
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn list_datasets(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |_| Ok(Op::ListDatasets)).await
    }

    async fn get_dataset(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| Ok(Op::GetDataset { name: name(&r)? }))
            .await
    }

    async fn create_dataset(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| {
            Ok(Op::CreateDataset {
                body: body(&r),
                dry_run: r.dry_run,
                probe_key: probe_key(&r),
            })
        })
        .await
    }

    async fn update_dataset(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| {
            Ok(Op::UpdateDataset {
                name: name(&r)?,
                body: body(&r),
                dry_run: r.dry_run,
            })
        })
        .await
    }

    async fn list_connectors(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |_| Ok(Op::ListConnectors)).await
    }

    async fn update_connector(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| {
            Ok(Op::UpdateConnector {
                name: name(&r)?,
                body: body(&r),
                dry_run: r.dry_run,
                probe_key: probe_key(&r),
            })
        })
        .await
    }

    async fn list_grants(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |_| Ok(Op::ListGrants)).await
    }

    async fn add_grant(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| {
            Ok(Op::AddGrant {
                body: body(&r),
                dry_run: r.dry_run,
            })
        })
        .await
    }

    async fn update_grant(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| {
            Ok(Op::UpdateGrant {
                id: grant_id(&r)?,
                body: body(&r),
                dry_run: r.dry_run,
            })
        })
        .await
    }

    async fn remove_grant(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| {
            Ok(Op::RemoveGrant {
                id: grant_id(&r)?,
                dry_run: r.dry_run,
            })
        })
        .await
    }

    async fn get_grant(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| Ok(Op::GetGrant { id: grant_id(&r)? }))
            .await
    }

    async fn get_connector(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| Ok(Op::GetConnector { name: name(&r)? }))
            .await
    }

    async fn list_consumers(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |_| Ok(Op::ListConsumers)).await
    }

    async fn get_consumer(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| Ok(Op::GetConsumer { id: name(&r)? })).await
    }

    async fn create_consumer(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| {
            Ok(Op::CreateConsumer {
                body: body(&r),
                dry_run: r.dry_run,
            })
        })
        .await
    }

    async fn update_consumer(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| {
            Ok(Op::UpdateConsumer {
                id: name(&r)?,
                body: body(&r),
                dry_run: r.dry_run,
            })
        })
        .await
    }

    async fn issue_key(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| {
            Ok(Op::IssueKey {
                consumer: name(&r)?,
                body: body(&r),
            })
        })
        .await
    }

    async fn rotate_key(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| {
            Ok(Op::RotateKey {
                consumer: name(&r)?,
                key: key_id(&r)?,
                body: body(&r),
            })
        })
        .await
    }

    async fn revoke_key(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| {
            Ok(Op::RevokeKey {
                consumer: name(&r)?,
                key: key_id(&r)?,
            })
        })
        .await
    }

    async fn list_access_requests(
        &self,
        r: Request<AdminRequest>,
    ) -> Result<Response<Struct>, Status> {
        self.run(r, |r| {
            Ok(Op::ListAccessRequests(from_body(
                &r,
                "filters: state, dataset, consumer, overdue",
            )?))
        })
        .await
    }

    async fn get_access_request(
        &self,
        r: Request<AdminRequest>,
    ) -> Result<Response<Struct>, Status> {
        self.run(r, |r| Ok(Op::GetAccessRequest { id: name(&r)? }))
            .await
    }

    async fn request_access(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| Ok(Op::RequestAccess { body: body(&r) }))
            .await
    }

    async fn approve_access_request(
        &self,
        r: Request<AdminRequest>,
    ) -> Result<Response<Struct>, Status> {
        self.run(r, |r| {
            Ok(Op::ApproveAccessRequest {
                id: name(&r)?,
                body: body(&r),
            })
        })
        .await
    }

    async fn refuse_access_request(
        &self,
        r: Request<AdminRequest>,
    ) -> Result<Response<Struct>, Status> {
        self.run(r, |r| {
            Ok(Op::RefuseAccessRequest {
                id: name(&r)?,
                body: body(&r),
            })
        })
        .await
    }

    async fn withdraw_access_request(
        &self,
        r: Request<AdminRequest>,
    ) -> Result<Response<Struct>, Status> {
        self.run(r, |r| Ok(Op::WithdrawAccessRequest { id: name(&r)? }))
            .await
    }

    async fn list_versions(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |_| Ok(Op::Versions)).await
    }

    async fn rollback(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| Ok(Op::Rollback { version: r.version }))
            .await
    }

    async fn reload(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |_| Ok(Op::Reload)).await
    }

    async fn backup(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| {
            let b: super::admin::BackupBody = from_body(&r, "{\"to\": \"/absolute/dir\"}")?;
            Ok(Op::Backup { to: b.to })
        })
        .await
    }

    async fn purge_cache(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| {
            let b: PurgeBody = from_body(&r, "{\"dataset\": \"...\", \"key\"?: \"...\"}")?;
            Ok(Op::Purge {
                dataset: b.dataset,
                key: b.key,
            })
        })
        .await
    }

    async fn list_breakers(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |_| Ok(Op::Breakers)).await
    }

    async fn audit_records(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| Ok(Op::AuditRecords(from_body(&r, "audit filters")?)))
            .await
    }

    async fn audit_report(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| Ok(Op::AuditReport(from_body(&r, "audit filters")?)))
            .await
    }

    async fn citizen_report(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| {
            Ok(Op::CitizenReport(from_body(
                &r,
                "{\"personal_id\": \"...\", \"limit\"?, \"page_token\"?}",
            )?))
        })
        .await
    }

    async fn list_alerts(&self, r: Request<AdminRequest>) -> Result<Response<Struct>, Status> {
        self.run(r, |r| Ok(Op::Alerts(from_body(&r, "alert filters")?)))
            .await
    }

    async fn acknowledge_alert(
        &self,
        r: Request<AdminRequest>,
    ) -> Result<Response<Struct>, Status> {
        self.run(r, |r| {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Note {
                note: String,
            }
            let b: Note = from_body(&r, "{\"note\": \"...\"}")?;
            Ok(Op::AcknowledgeAlert {
                id: r.name.clone(),
                note: b.note,
            })
        })
        .await
    }
}
