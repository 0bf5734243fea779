//! Access requests: a consumer's administrator asks for access to a dataset (fields,
//! procedures, modes, the legal basis and the purpose, in free text); the agency that owns
//! the dataset approves it, which creates the grant (possibly narrower than asked), or
//! refuses it with a reason and a legal ground. A request may be withdrawn while pending.
//!
//! Each request is due a number of working days after it was made (`[access_requests]`);
//! pending ones past that are overdue, and operators list them. Requests live in the
//! registry's accounts file beside consumers and keys: every step is a registry version
//! and an audit record, and neither reload nor rollback undoes one.

use super::grants;
use super::{Change, Cx, invalid, object, random_id, role_table, str_of, tables, to_json};
use crate::domain::calendar::vietnam_date;
use crate::domain::date::{Date, iso_ms, now_ms};
use crate::domain::error::{ErrorCode, LookupError};
use crate::layers::policy::AdminRole;
use serde::Deserialize;
use serde_json::{Value, json};

/// Filters of the request list.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequestFilters {
    /// pending, approved, refused or withdrawn.
    pub state: Option<String>,
    pub dataset: Option<String>,
    pub consumer: Option<String>,
    /// Only pending requests past their deadline.
    pub overdue: Option<bool>,
}

const STATES: &[&str] = &["pending", "approved", "refused", "withdrawn"];

/// Whether a pending request's deadline (a Vietnam date) has passed.
fn overdue(r: &toml::Value, today: Date) -> bool {
    str_of(r, "state") == "pending"
        && Date::parse_iso(str_of(r, "deadline")).is_some_and(|d| d < today)
}

fn shown(r: &toml::Value, today: Date) -> Value {
    let mut v = to_json(r);
    v["overdue"] = json!(overdue(r, today));
    v
}

/// Whether the caller may see a request: operators and auditors all, providers those on
/// their datasets, a consumer's administrator its consumer's.
fn visible(cx: &Cx<'_>, r: &toml::Value) -> bool {
    match &cx.admin.who.role {
        AdminRole::Operator | AdminRole::Auditor => true,
        AdminRole::Provider { .. } => cx.manages(str_of(r, "dataset")),
        AdminRole::ConsumerAdmin { consumer } => str_of(r, "consumer") == consumer,
    }
}

pub(super) fn list(cx: &Cx<'_>, f: RequestFilters) -> Result<Value, LookupError> {
    if let Some(s) = &f.state
        && !STATES.contains(&s.as_str())
    {
        return Err(invalid(format!(
            "state {s:?} is not one of {}",
            STATES.join(", ")
        )));
    }
    let today = vietnam_date(now_ms());
    let mut accounts = role_table(cx.g, "accounts")?;
    let requests: Vec<Value> = tables(&mut accounts, "request")
        .iter()
        .rev()
        .filter(|r| visible(cx, r))
        .filter(|r| f.state.as_deref().is_none_or(|s| str_of(r, "state") == s))
        .filter(|r| {
            f.dataset
                .as_deref()
                .is_none_or(|d| str_of(r, "dataset") == d)
        })
        .filter(|r| {
            f.consumer
                .as_deref()
                .is_none_or(|c| str_of(r, "consumer") == c)
        })
        .filter(|r| f.overdue.is_none_or(|o| overdue(r, today) == o))
        .map(|r| shown(r, today))
        .collect();
    Ok(json!({ "version": cx.live.version(), "today": today.to_string(), "requests": requests }))
}

/// Request `id` and its position among the accounts file's requests.
fn find(cx: &Cx<'_>, accounts: &mut toml::Table, id: &str) -> Result<usize, LookupError> {
    let all = tables(accounts, "request");
    let at = all
        .iter()
        .position(|r| str_of(r, "id") == id)
        .ok_or_else(|| {
            LookupError::new(
                ErrorCode::NotFound,
                format!("there is no access request {id:?}"),
            )
        })?;
    if !visible(cx, &all[at]) {
        return Err(LookupError::new(
            ErrorCode::PermissionDenied,
            format!("access request {id} is not this credential's to see"),
        ));
    }
    Ok(at)
}

pub(super) fn get(cx: &Cx<'_>, id: &str) -> Result<Value, LookupError> {
    let mut accounts = role_table(cx.g, "accounts")?;
    let at = find(cx, &mut accounts, id)?;
    Ok(shown(
        &tables(&mut accounts, "request")[at],
        vietnam_date(now_ms()),
    ))
}

/// What a request asks for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Asked {
    /// Whose access: implied for a consumer's administrator.
    consumer: Option<String>,
    dataset: String,
    fields: Vec<String>,
    procedures: Vec<String>,
    #[serde(default)]
    modes: Vec<String>,
    legal_basis: String,
    purpose: String,
}

fn text(v: &str, what: &str) -> Result<String, LookupError> {
    let v = v.trim();
    if v.is_empty() {
        Err(invalid(format!("{what} must not be empty")))
    } else if v.chars().count() > 2000 {
        Err(invalid(format!("{what} is longer than 2000 characters")))
    } else {
        Ok(v.to_owned())
    }
}

fn strings(v: &[String]) -> toml::Value {
    toml::Value::Array(v.iter().map(|s| toml::Value::String(s.clone())).collect())
}

pub(super) async fn create(cx: &Cx<'_>, body: Value) -> Result<Value, LookupError> {
    let asked: Asked = serde_json::from_value(Value::Object(object(body, "an access request")?))
        .map_err(|e| {
            invalid(format!(
                "an access request has dataset, fields, procedures, legal_basis, purpose and optionally modes (and consumer, for operators): {e}"
            ))
        })?;
    let consumer = match (cx.own_consumer(), asked.consumer) {
        (Some(own), Some(c)) if c != own => {
            return Err(LookupError::new(
                ErrorCode::PermissionDenied,
                format!("this credential asks for consumer {own} only, not {c}"),
            ));
        }
        (Some(own), _) => own.to_owned(),
        (None, Some(c)) => c,
        (None, None) => return Err(invalid("name the consumer the access is for")),
    };
    let config = cx.g.config();
    if !config.consumers.iter().any(|c| c.id == consumer) {
        return Err(invalid(format!("{consumer:?} is not a consumer")));
    }
    let dataset = config
        .dataset(&asked.dataset)
        .ok_or_else(|| invalid(format!("{:?} is not a dataset", asked.dataset)))?;
    if asked.fields.is_empty() {
        return Err(invalid("list the fields asked for, or [\"*\"] for all"));
    }
    for f in asked.fields.iter().filter(|f| *f != "*") {
        if !dataset.has_field(f) {
            return Err(invalid(format!("{f:?} is not a field of {}", dataset.name)));
        }
    }
    if asked.procedures.is_empty() {
        return Err(invalid(
            "list the procedures (codes, or prefixes ending in *) the access is for",
        ));
    }
    for m in &asked.modes {
        if !["fetch", "verify", "report"].contains(&m.as_str()) {
            return Err(invalid(format!(
                "{m:?} is not \"fetch\", \"verify\" or \"report\""
            )));
        }
    }
    let legal_basis = text(&asked.legal_basis, "legal_basis")?;
    let purpose = text(&asked.purpose, "purpose")?;
    let now = now_ms();
    let deadline = config
        .access
        .calendar
        .add_working_days(vietnam_date(now), config.access.deadline_working_days);
    let id = random_id("ar-", 5);
    let mut r = toml::Table::new();
    let s = |v: &str| toml::Value::String(v.to_owned());
    r.insert("id".into(), s(&id));
    r.insert("consumer".into(), s(&consumer));
    r.insert("dataset".into(), s(&dataset.name));
    r.insert("fields".into(), strings(&asked.fields));
    r.insert("procedures".into(), strings(&asked.procedures));
    let modes = if asked.modes.is_empty() {
        vec!["fetch".to_owned()]
    } else {
        asked.modes
    };
    r.insert("modes".into(), strings(&modes));
    r.insert("legal_basis".into(), s(&legal_basis));
    r.insert("purpose".into(), s(&purpose));
    r.insert("state".into(), s("pending"));
    r.insert("requested_by".into(), s(cx.actor()));
    r.insert("requested".into(), s(&iso_ms(now)));
    r.insert("deadline".into(), s(&deadline.to_string()));
    let request = toml::Value::Table(r);
    let mut accounts = role_table(cx.g, "accounts")?;
    tables(&mut accounts, "request").push(request.clone());
    let mut answer = cx
        .change(Change {
            action: "access_requested",
            dataset: &dataset.name,
            summary: format!("access request {id}: {consumer} asks for {}", dataset.name),
            before: Value::Null,
            after: to_json(&request),
            replaced: vec![("accounts", accounts)],
            dry_run: false,
            probe_key: None,
        })
        .await?;
    answer["request"] = shown(&request, vietnam_date(now));
    Ok(answer)
}

/// A pending request `id` the caller may decide on: the accounts file, its position.
fn pending(cx: &Cx<'_>, id: &str) -> Result<(toml::Table, usize), LookupError> {
    let mut accounts = role_table(cx.g, "accounts")?;
    let at = find(cx, &mut accounts, id)?;
    let r = &tables(&mut accounts, "request")[at];
    let state = str_of(r, "state");
    if state != "pending" {
        return Err(LookupError::new(
            ErrorCode::AlreadyExists,
            format!(
                "access request {id} is {state} already: only a pending request is decided or withdrawn"
            ),
        ));
    }
    Ok((accounts, at))
}

/// Records the decision on request `at` and applies it (with the grants file when a grant
/// was made), in one registry version.
async fn decide(
    cx: &Cx<'_>,
    mut accounts: toml::Table,
    at: usize,
    action: &str,
    decision: toml::Table,
    grants: Option<toml::Table>,
) -> Result<Value, LookupError> {
    let requests = tables(&mut accounts, "request");
    let before = to_json(&requests[at]);
    let request = requests[at]
        .as_table_mut()
        .ok_or_else(|| LookupError::new(ErrorCode::Internal, "a request entry is not a table"))?;
    for (k, v) in decision {
        request.insert(k, v);
    }
    request.insert(
        "decided_by".into(),
        toml::Value::String(cx.actor().to_owned()),
    );
    request.insert("decided".into(), toml::Value::String(iso_ms(now_ms())));
    let after = toml::Value::Table(request.clone());
    let id = str_of(&after, "id").to_owned();
    let dataset = str_of(&after, "dataset").to_owned();
    let mut replaced = vec![("accounts", accounts)];
    if let Some(g) = grants {
        replaced.push(("grants", g));
    }
    let mut answer = cx
        .change(Change {
            action,
            dataset: &dataset,
            summary: match str_of(&after, "grant") {
                "" => format!("access request {id} {}", str_of(&after, "state")),
                grant => format!("access request {id} approved: grant {grant}"),
            },
            before,
            after: to_json(&after),
            replaced,
            dry_run: false,
            probe_key: None,
        })
        .await?;
    answer["request"] = shown(&after, vietnam_date(now_ms()));
    Ok(answer)
}

/// What an approval may narrow, and the grant's own settings.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Approval {
    fields: Option<Vec<String>>,
    procedures: Option<Vec<String>>,
    modes: Option<Vec<String>>,
    valid_from: Option<String>,
    valid_until: Option<String>,
    quota: Option<String>,
    binding: Option<String>,
    note: Option<String>,
}

/// Whether `approved` asks no more than `asked` (exact codes, or prefixes ending in `*`).
fn within(approved: &str, asked: &[String]) -> bool {
    asked.iter().any(|a| match a.strip_suffix('*') {
        Some(prefix) => approved
            .strip_suffix('*')
            .unwrap_or(approved)
            .starts_with(prefix),
        None => a == approved,
    })
}

fn list_of(r: &toml::Value, key: &str) -> Vec<String> {
    r.get(key)
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

pub(super) async fn approve(cx: &Cx<'_>, id: &str, body: Value) -> Result<Value, LookupError> {
    let a: Approval = match body {
        Value::Null => Approval::default(),
        other => serde_json::from_value(other).map_err(|e| {
            invalid(format!(
                "an approval may narrow fields, procedures and modes, and set valid_from, valid_until, quota, binding and a note: {e}"
            ))
        })?,
    };
    let (mut accounts, at) = pending(cx, id)?;
    let r = tables(&mut accounts, "request")[at].clone();
    let dataset = str_of(&r, "dataset").to_owned();
    cx.must_manage(&dataset, &format!("dataset {dataset}"))?;
    let asked = |key: &str| list_of(&r, key);
    let narrow = |key: &str, given: Option<Vec<String>>, ok: &dyn Fn(&str) -> bool| {
        let Some(given) = given else {
            return Ok(asked(key));
        };
        if given.is_empty() {
            return Err(invalid(format!("{key}: an approval grants at least one")));
        }
        match given.iter().find(|g| !ok(g)) {
            Some(g) => Err(invalid(format!(
                "{key}: {g:?} was not asked for ({}); an approval may narrow a request, not widen it",
                asked(key).join(", ")
            ))),
            None => Ok(given),
        }
    };
    let asked_fields = asked("fields");
    let fields = narrow("fields", a.fields, &|f| {
        asked_fields.iter().any(|x| x == "*" || x == f)
    })?;
    let asked_procedures = asked("procedures");
    let procedures = narrow("procedures", a.procedures, &|p| {
        within(p, &asked_procedures)
    })?;
    let asked_modes = asked("modes");
    let modes = narrow("modes", a.modes, &|m| asked_modes.iter().any(|x| x == m))?;
    let mut grant = json!({
        "consumer": str_of(&r, "consumer"),
        "dataset": dataset,
        "procedures": procedures,
        "fields": fields,
        "modes": modes,
        "legal_basis": str_of(&r, "legal_basis"),
    });
    for (k, v) in [
        ("valid_from", a.valid_from),
        ("valid_until", a.valid_until),
        ("quota", a.quota),
        ("binding", a.binding),
    ] {
        if let Some(v) = v {
            grant[k] = json!(v);
        }
    }
    let (grants_file, value, _, _) = grants::prepared(cx, grant)?;
    let mut decision = toml::Table::new();
    decision.insert("state".into(), toml::Value::String("approved".into()));
    decision.insert(
        "grant".into(),
        toml::Value::String(str_of(&value, "id").to_owned()),
    );
    if let Some(note) = a.note {
        decision.insert("note".into(), toml::Value::String(text(&note, "note")?));
    }
    let mut answer = decide(
        cx,
        accounts,
        at,
        "access_approved",
        decision,
        Some(grants_file),
    )
    .await?;
    answer["grant"] = grants::shown(&value);
    Ok(answer)
}

/// A refusal: why, and the legal ground it rests on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Refusal {
    reason: String,
    legal_ground: String,
}

pub(super) async fn refuse(cx: &Cx<'_>, id: &str, body: Value) -> Result<Value, LookupError> {
    let refusal: Refusal = serde_json::from_value(body).map_err(|e| {
        invalid(format!(
            "a refusal gives its reason and its legal ground (reason, legal_ground): {e}"
        ))
    })?;
    let (mut accounts, at) = pending(cx, id)?;
    let dataset = str_of(&tables(&mut accounts, "request")[at], "dataset").to_owned();
    cx.must_manage(&dataset, &format!("dataset {dataset}"))?;
    let mut decision = toml::Table::new();
    decision.insert("state".into(), toml::Value::String("refused".into()));
    decision.insert(
        "reason".into(),
        toml::Value::String(text(&refusal.reason, "reason")?),
    );
    decision.insert(
        "legal_ground".into(),
        toml::Value::String(text(&refusal.legal_ground, "legal_ground")?),
    );
    decide(cx, accounts, at, "access_refused", decision, None).await
}

pub(super) async fn withdraw(cx: &Cx<'_>, id: &str) -> Result<Value, LookupError> {
    let (accounts, at) = pending(cx, id)?;
    let mut decision = toml::Table::new();
    decision.insert("state".into(), toml::Value::String("withdrawn".into()));
    decide(cx, accounts, at, "access_withdrawn", decision, None).await
}
