//! The admin operations, shared by `/admin/v1` (REST) and `lienthong.v1.AdminService`
//! (gRPC): each transport turns a request into an [`Op`], and [`run`] authenticates the
//! caller, checks their role, does it and answers JSON.
//!
//! Roles: an operator may do everything; a provider manages only the datasets its agency
//! owns (their connectors, the grants on them, their cache); an auditor reads the audit
//! trail and the registry's history. Callers present an admin token or, when the admin
//! listener speaks TLS, a client certificate.
//!
//! Every change is validated as a whole configuration, applied at once as a new registry
//! version (or only checked, with `dry_run`), and recorded in the audit chain with who did
//! it and what was before and after.

mod accounts;
mod alerts;
mod changes;
mod grants;
mod ops;
mod requests;

use crate::core::gateway::Gateway;
use crate::core::live::{Live, ReloadError};
use crate::core::request::ClientCertificate;
use crate::domain::error::{ErrorCode, LookupError};
use crate::layers::authenticate::{by_certificate, by_key};
use crate::layers::policy::{AdminCredential, AdminRole};
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub use alerts::AlertQuery;
pub use ops::{AuditFilters, CitizenReportQuery};
pub use requests::RequestFilters;

/// What an admin caller presented.
#[derive(Debug, Clone, Default)]
pub struct Credential {
    /// The token from `Authorization: Bearer …`.
    pub bearer: Option<String>,
    /// The verified client certificate of the connection.
    pub certificate: Option<Arc<ClientCertificate>>,
}

/// An authenticated admin caller.
#[derive(Debug, Clone)]
pub struct Admin {
    pub who: AdminCredential,
    /// "admin_token" or "admin_certificate", as the audit trail records it.
    pub kind: &'static str,
}

/// One admin operation, as either transport asks for it.
#[derive(Debug, Clone)]
pub enum Op {
    ListDatasets,
    GetDataset {
        name: String,
    },
    CreateDataset {
        body: Value,
        dry_run: bool,
        probe_key: Option<String>,
    },
    UpdateDataset {
        name: String,
        body: Value,
        dry_run: bool,
    },
    ListConnectors,
    GetConnector {
        name: String,
    },
    UpdateConnector {
        name: String,
        body: Value,
        dry_run: bool,
        probe_key: Option<String>,
    },
    ListGrants,
    AddGrant {
        body: Value,
        dry_run: bool,
    },
    GetGrant {
        id: String,
    },
    UpdateGrant {
        id: String,
        body: Value,
        dry_run: bool,
    },
    RemoveGrant {
        id: String,
        dry_run: bool,
    },
    ListConsumers,
    GetConsumer {
        id: String,
    },
    CreateConsumer {
        body: Value,
        dry_run: bool,
    },
    UpdateConsumer {
        id: String,
        body: Value,
        dry_run: bool,
    },
    IssueKey {
        consumer: String,
        body: Value,
    },
    RotateKey {
        consumer: String,
        key: String,
        body: Value,
    },
    RevokeKey {
        consumer: String,
        key: String,
    },
    ListAccessRequests(RequestFilters),
    GetAccessRequest {
        id: String,
    },
    RequestAccess {
        body: Value,
    },
    ApproveAccessRequest {
        id: String,
        body: Value,
    },
    RefuseAccessRequest {
        id: String,
        body: Value,
    },
    WithdrawAccessRequest {
        id: String,
    },
    Versions,
    Rollback {
        version: i64,
    },
    Reload,
    /// A backup of the embedded store into `to`, an absolute directory on the gateway's
    /// host that is new or empty.
    Backup {
        to: String,
    },
    Purge {
        dataset: String,
        key: Option<String>,
    },
    Breakers,
    AuditRecords(AuditFilters),
    AuditReport(AuditFilters),
    CitizenReport(CitizenReportQuery),
    Alerts(AlertQuery),
    AcknowledgeAlert {
        id: String,
        note: String,
    },
}

impl Op {
    /// The roles that may run it.
    fn roles(&self) -> &'static [&'static str] {
        match self {
            Op::ListDatasets | Op::GetDataset { .. } => &["operator", "provider", "auditor"],
            Op::ListGrants | Op::GetGrant { .. } | Op::ListConsumers | Op::GetConsumer { .. } => {
                &["operator", "provider", "auditor", "consumer_admin"]
            }
            Op::CreateConsumer { .. } | Op::UpdateConsumer { .. } => &["operator"],
            Op::IssueKey { .. }
            | Op::RotateKey { .. }
            | Op::RevokeKey { .. }
            | Op::RequestAccess { .. }
            | Op::WithdrawAccessRequest { .. } => &["operator", "consumer_admin"],
            Op::ListAccessRequests(_) | Op::GetAccessRequest { .. } => {
                &["operator", "provider", "auditor", "consumer_admin"]
            }
            Op::Versions
            | Op::AuditRecords(_)
            | Op::AuditReport(_)
            | Op::CitizenReport(_)
            | Op::Alerts(_)
            | Op::AcknowledgeAlert { .. } => &["operator", "auditor"],
            Op::Rollback { .. } | Op::Reload | Op::Backup { .. } => &["operator"],
            _ => &["operator", "provider"],
        }
    }
}

/// Runs one admin operation for the caller behind `credential`. `if_match`: the object
/// versions (entity tags, as `If-Match` lists them, or gRPC's `expected_version`) the
/// change was made against; a change to an object at another version is refused.
pub async fn run(
    live: &Arc<Live>,
    credential: &Credential,
    request_id: &str,
    op: Op,
    if_match: Option<&str>,
) -> Result<Value, LookupError> {
    let g = live.current();
    let admin = authenticate(&g, credential, op.roles())?;
    let cx = Cx {
        live,
        g: &g,
        admin: &admin,
        request_id,
        if_match,
    };
    match op {
        Op::ListDatasets => changes::list_datasets(&cx),
        Op::GetDataset { name } => changes::get_dataset(&cx, &name),
        Op::CreateDataset {
            body,
            dry_run,
            probe_key,
        } => changes::create_dataset(&cx, body, dry_run, probe_key).await,
        Op::UpdateDataset {
            name,
            body,
            dry_run,
        } => changes::update_dataset(&cx, &name, body, dry_run).await,
        Op::ListConnectors => changes::list_connectors(&cx),
        Op::GetConnector { name } => changes::get_connector(&cx, &name),
        Op::UpdateConnector {
            name,
            body,
            dry_run,
            probe_key,
        } => changes::update_connector(&cx, &name, body, dry_run, probe_key).await,
        Op::ListGrants => grants::list(&cx),
        Op::GetGrant { id } => grants::get(&cx, &id),
        Op::AddGrant { body, dry_run } => grants::add(&cx, body, dry_run).await,
        Op::UpdateGrant { id, body, dry_run } => grants::update(&cx, &id, body, dry_run).await,
        Op::RemoveGrant { id, dry_run } => grants::remove(&cx, &id, dry_run).await,
        Op::ListConsumers => accounts::list(&cx),
        Op::GetConsumer { id } => accounts::get(&cx, &id),
        Op::CreateConsumer { body, dry_run } => accounts::create(&cx, body, dry_run).await,
        Op::UpdateConsumer { id, body, dry_run } => accounts::update(&cx, &id, body, dry_run).await,
        Op::IssueKey { consumer, body } => accounts::issue_key(&cx, &consumer, body).await,
        Op::RotateKey {
            consumer,
            key,
            body,
        } => accounts::rotate_key(&cx, &consumer, &key, body).await,
        Op::RevokeKey { consumer, key } => accounts::revoke_key(&cx, &consumer, &key).await,
        Op::ListAccessRequests(f) => requests::list(&cx, f),
        Op::GetAccessRequest { id } => requests::get(&cx, &id),
        Op::RequestAccess { body } => requests::create(&cx, body).await,
        Op::ApproveAccessRequest { id, body } => requests::approve(&cx, &id, body).await,
        Op::RefuseAccessRequest { id, body } => requests::refuse(&cx, &id, body).await,
        Op::WithdrawAccessRequest { id } => requests::withdraw(&cx, &id).await,
        Op::Versions => ops::versions(&cx).await,
        Op::Rollback { version } => ops::rollback(&cx, version).await,
        Op::Reload => ops::reload(&cx).await,
        Op::Backup { to } => ops::backup(&cx, &to).await,
        Op::Purge { dataset, key } => ops::purge(&cx, &dataset, key.as_deref()).await,
        Op::Breakers => Ok(ops::breakers(&cx)),
        Op::AuditRecords(f) => ops::audit_read(&cx, f, false).await,
        Op::AuditReport(f) => ops::audit_read(&cx, f, true).await,
        Op::CitizenReport(q) => ops::citizen_report(&cx, q).await,
        Op::Alerts(q) => alerts::list(&cx, q).await,
        Op::AcknowledgeAlert { id, note } => alerts::acknowledge(&cx, &id, &note).await,
    }
}

/// What an operation runs with.
struct Cx<'a> {
    live: &'a Arc<Live>,
    g: &'a Gateway,
    admin: &'a Admin,
    request_id: &'a str,
    if_match: Option<&'a str>,
}

impl Cx<'_> {
    /// Refuses a change to `what` when the caller named versions it was made against and
    /// `current` is not among them (412 `precondition_failed`, naming the current one).
    fn expect(&self, what: &str, current: &str) -> Result<(), LookupError> {
        let Some(listed) = self.if_match else {
            return Ok(());
        };
        let matches = listed.split(',').map(str::trim).any(|tag| {
            let tag = tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"');
            tag == "*" || tag == current
        });
        if matches {
            Ok(())
        } else {
            Err(LookupError::new(
                ErrorCode::PreconditionFailed,
                format!(
                    "{what} has changed since version {listed}: its current version is \"{current}\"; read it again and send the change against that version"
                ),
            ))
        }
    }

    /// The consumer a consumer_admin is bound to; `None` for every other role.
    fn own_consumer(&self) -> Option<&str> {
        match &self.admin.who.role {
            AdminRole::ConsumerAdmin { consumer } => Some(consumer),
            _ => None,
        }
    }

    fn actor(&self) -> &str {
        &self.admin.who.name
    }

    /// Whether the caller may manage `dataset` (operators all; providers those their
    /// agency owns, including ones not yet registered under its name).
    fn manages(&self, dataset: &str) -> bool {
        manages(self.g, &self.admin.who, dataset)
    }

    fn must_manage(&self, dataset: &str, what: &str) -> Result<(), LookupError> {
        if self.manages(dataset) {
            Ok(())
        } else {
            Err(LookupError::new(
                ErrorCode::PermissionDenied,
                format!("{what} belongs to another agency: not this credential's to manage"),
            ))
        }
    }

    /// Records an admin action in the audit chain (committed before the answer leaves).
    async fn record(&self, a: Action<'_>) -> Result<(), LookupError> {
        let entry = crate::audit::record::AuditEntry {
            time_ms: crate::audit::record::now_ms(),
            request_id: self.request_id.to_owned(),
            transport: "admin".into(),
            actor: self.actor().to_owned(),
            credential: self.admin.kind.into(),
            dataset: a.dataset.to_owned(),
            subject: a.subject,
            action: a.action.to_owned(),
            outcome: if a.ok { "served" } else { "invalid_request" }.into(),
            upstream_ms: -1,
            detail: a.detail,
            ..Default::default()
        };
        self.g.audit().record(entry).await.map_err(|e| {
            tracing::error!(error = %e, action = a.action, "admin action not recorded");
            LookupError::new(
                ErrorCode::AuditUnavailable,
                "the action could not be recorded in the audit trail",
            )
        })
    }

    /// Applies (or, with `dry_run`, checks) the registry's files with `replaced` roles
    /// swapped in, records the change with `before` and `after`, and answers with the new
    /// version. `probe` = (dataset, key) tries the new version's provider first.
    async fn change(&self, c: Change<'_>) -> Result<Value, LookupError> {
        let mut files = self.g.config().settings.files.clone();
        for (role, table) in &c.replaced {
            let text = toml::to_string(table)
                .map_err(|e| LookupError::new(ErrorCode::Internal, e.to_string()))?;
            files.retain(|(r, _)| r != role);
            files.push(((*role).to_owned(), text));
        }
        let probe = c.probe_key.map(|key| (c.dataset, key));
        let outcome = self
            .live
            .apply(self.actor(), &c.summary, files, c.dry_run, probe)
            .await;
        if !c.dry_run {
            self.record(Action {
                action: c.action,
                dataset: c.dataset,
                subject: String::new(),
                ok: outcome.is_ok(),
                detail: json!({ "change": c.summary, "before": c.before, "after": c.after })
                    .to_string(),
            })
            .await?;
        }
        match outcome {
            Ok(None) => Ok(json!({
                "dry_run": true,
                "valid": true,
                "change": c.summary,
                "after": c.after,
            })),
            Ok(Some(r)) => Ok(json!({
                "version": r.version,
                "change": c.summary,
                "connectors_rebuilt": r.rebuilt,
                "after": c.after,
            })),
            Err(e) => Err(refusal(e)),
        }
    }
}

/// One configuration change, as [`Cx::change`] applies it.
struct Change<'a> {
    action: &'a str,
    dataset: &'a str,
    summary: String,
    before: Value,
    after: Value,
    replaced: Vec<(&'a str, toml::Table)>,
    dry_run: bool,
    probe_key: Option<&'a str>,
}

/// An admin action as the audit trail records it.
struct Action<'a> {
    action: &'a str,
    dataset: &'a str,
    subject: String,
    ok: bool,
    detail: String,
}

/// The admin credential behind a bearer token (compared by SHA-256 without an early exit)
/// or a client certificate, if its role is among `allowed`; the refusal names the roles
/// that may.
pub fn authenticate(
    g: &Gateway,
    credential: &Credential,
    allowed: &[&str],
) -> Result<Admin, LookupError> {
    let all = &g.config().admin_credentials;
    let admin = if let Some(token) = &credential.bearer {
        // Every token is compared: the time taken does not say which one was close.
        let who = by_key(all, token).cloned().ok_or_else(|| {
            LookupError::new(
                ErrorCode::Unauthenticated,
                "the admin token is not recognised",
            )
        })?;
        Admin {
            who,
            kind: "admin_token",
        }
    } else if let Some(cert) = &credential.certificate {
        let who = by_certificate(all, cert).cloned().ok_or_else(|| {
            LookupError::new(
                ErrorCode::Unauthenticated,
                format!(
                    "no admin client is named by this certificate ({})",
                    cert.names.join(", ")
                ),
            )
        })?;
        Admin {
            who,
            kind: "admin_certificate",
        }
    } else {
        return Err(LookupError::new(
            ErrorCode::Unauthenticated,
            "send Authorization: Bearer <admin token>, or an admin client certificate",
        ));
    };
    let role = role_name(&admin.who.role);
    if allowed.contains(&role) {
        Ok(admin)
    } else {
        Err(LookupError::new(
            ErrorCode::PermissionDenied,
            format!(
                "{role} credentials cannot do this; it needs: {}",
                allowed.join(" or ")
            ),
        ))
    }
}

pub fn role_name(role: &AdminRole) -> &'static str {
    match role {
        AdminRole::Operator => "operator",
        AdminRole::Auditor => "auditor",
        AdminRole::Provider { .. } => "provider",
        AdminRole::ConsumerAdmin { .. } => "consumer_admin",
    }
}

/// Whether `who` may manage `dataset`: operators all; a provider the datasets its agency
/// owns, and new ones named under it (`agency.record`).
pub fn manages(g: &Gateway, who: &AdminCredential, dataset: &str) -> bool {
    match &who.role {
        AdminRole::Operator => true,
        AdminRole::Auditor | AdminRole::ConsumerAdmin { .. } => false,
        AdminRole::Provider { agency } => match g.config().dataset(dataset) {
            Some(d) => &d.owner == agency,
            None => dataset.split('.').next() == Some(agency.as_str()),
        },
    }
}

/// The current text of one of the registry's files ("datasets", "connectors",
/// "consumers", "grants"), parsed; empty when there is none yet.
fn role_table(g: &Gateway, role: &str) -> Result<toml::Table, LookupError> {
    let text = g
        .config()
        .settings
        .files
        .iter()
        .find(|(r, _)| r == role)
        .map(|(_, t)| t.as_str())
        .unwrap_or_default();
    toml::from_str(text).map_err(|e| LookupError::new(ErrorCode::Internal, e.to_string()))
}

/// The array of tables `key` (`[[key]]`) in `table`, created if missing.
fn tables<'t>(table: &'t mut toml::Table, key: &str) -> &'t mut Vec<toml::Value> {
    let entry = table
        .entry(key)
        .or_insert_with(|| toml::Value::Array(Vec::new()));
    if !entry.is_array() {
        *entry = toml::Value::Array(Vec::new());
    }
    entry.as_array_mut().expect("an array")
}

/// An object's version: a digest of its settings as the registry holds them, so that it
/// changes with every change, whoever made it (the API, a reload, a rollback), and is the
/// same on every replica.
fn etag(v: &Value) -> String {
    fn canonical(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for k in keys {
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    canonical(&m[k], out);
                    out.push(',');
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for x in a {
                    canonical(x, out);
                    out.push(',');
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut text = String::new();
    canonical(v, &mut text);
    let digest = <sha2::Sha256 as sha2::Digest>::digest(text.as_bytes());
    hex::encode(&digest[..8])
}

/// A string setting of a table (empty when absent).
fn str_of<'v>(v: &'v toml::Value, key: &str) -> &'v str {
    v.get(key).and_then(|d| d.as_str()).unwrap_or("")
}

/// `n` bytes from the system's secure random source.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut raw = vec![0u8; n];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw);
    raw
}

/// A fresh id: `prefix`, then `bytes` random bytes in hex.
fn random_id(prefix: &str, bytes: usize) -> String {
    format!("{prefix}{}", hex::encode(random_bytes(bytes)))
}

fn to_json(v: &toml::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// A JSON body that must be an object.
fn object(body: Value, what: &str) -> Result<Map<String, Value>, LookupError> {
    match body {
        Value::Object(m) => Ok(m),
        _ => Err(invalid(format!("the body must be a JSON object: {what}"))),
    }
}

fn invalid(message: impl Into<String>) -> LookupError {
    LookupError::new(ErrorCode::InvalidRequest, message)
}

/// Merges `patch` into `table`: tables merge one level deep, other values replace.
fn merge(table: &mut toml::Table, patch: &Map<String, Value>) -> Result<(), LookupError> {
    for (k, v) in patch {
        let value = toml::Value::try_from(v).map_err(|e| invalid(format!("{k}: {e}")))?;
        match (table.get_mut(k), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(new)) => {
                for (nk, nv) in new {
                    existing.insert(nk, nv);
                }
            }
            (_, value) => {
                table.insert(k.clone(), value);
            }
        }
    }
    Ok(())
}

/// Why a configuration change was refused, as the admin API answers it.
fn refusal(e: ReloadError) -> LookupError {
    let message = match e {
        ReloadError::Invalid(errors) => {
            format!("the change is refused, nothing was applied:\n{errors}")
        }
        other => other.to_string(),
    };
    invalid(message)
}
