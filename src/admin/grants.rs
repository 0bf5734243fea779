//! Grants: listed, added, changed by merging (`{"disabled": true}` switches one off) and
//! removed, each by its stable id. A grant's id is its own (`id` in the grants file), or
//! one derived from its consumer and dataset; the first change through the API writes
//! every grant's id into the registry's grants file, so none moves afterwards.
//!
//! Who sees and changes what: operators every grant; providers the grants on their
//! agency's datasets; auditors read all; a consumer's administrator reads its consumer's.

use super::{Change, Cx, etag, invalid, object, random_id, role_table, str_of, tables, to_json};
use crate::domain::error::{ErrorCode, LookupError};
use crate::layers::policy::{AdminRole, check_grant_id, grant_ids};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A grant as the API takes it (the grants file's keys).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    consumer: String,
    dataset: String,
    procedures: Vec<String>,
    fields: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    modes: Vec<String>,
    legal_basis: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    valid_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    valid_until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quota: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    allow_cache_bypass: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    disabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    binding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    citizen_report: Option<String>,
}

fn grant_value(body: Value) -> Result<(GrantBody, toml::Value), LookupError> {
    let grant: GrantBody = serde_json::from_value(body).map_err(|e| {
        invalid(format!(
            "a grant has consumer, dataset, procedures, fields, legal_basis and optionally id, modes, valid_from, valid_until, quota, allow_cache_bypass, disabled, binding, citizen_report: {e}"
        ))
    })?;
    let value = toml::Value::try_from(&grant).map_err(|e| invalid(e.to_string()))?;
    Ok((grant, value))
}

/// The grants file with every grant's id written into it (derived ones included).
fn with_ids(cx: &Cx<'_>) -> Result<toml::Table, LookupError> {
    let mut table = role_table(cx.g, "grants")?;
    let all = tables(&mut table, "grant");
    let ids = grant_ids(all.iter().map(|g| {
        (
            g.get("id").and_then(|i| i.as_str()),
            str_of(g, "consumer"),
            str_of(g, "dataset"),
        )
    }));
    for (g, id) in all.iter_mut().zip(ids) {
        if let Some(t) = g.as_table_mut() {
            t.insert("id".into(), toml::Value::String(id));
        }
    }
    Ok(table)
}

/// Whether the caller may see a grant: auditors all, a consumer's administrator its
/// consumer's, the others those on datasets they manage.
fn visible(cx: &Cx<'_>, grant: &toml::Value) -> bool {
    match &cx.admin.who.role {
        AdminRole::Auditor => true,
        AdminRole::ConsumerAdmin { consumer } => str_of(grant, "consumer") == consumer,
        _ => cx.manages(str_of(grant, "dataset")),
    }
}

pub(super) fn shown(grant: &toml::Value) -> Value {
    let v = to_json(grant);
    json!({ "id": v["id"], "etag": etag(&v), "grant": v })
}

/// Every grant the caller may see, with its id and version.
pub(super) fn list(cx: &Cx<'_>) -> Result<Value, LookupError> {
    let mut table = with_ids(cx)?;
    let grants: Vec<Value> = tables(&mut table, "grant")
        .iter()
        .filter(|g| visible(cx, g))
        .map(shown)
        .collect();
    Ok(json!({ "version": cx.live.version(), "grants": grants }))
}

/// The position of grant `id` in `grants`; a number is refused with the id form, since
/// grants were once addressed by their (moving) position.
fn position(grants: &[toml::Value], id: &str) -> Result<usize, LookupError> {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!(
            "grants are addressed by their id, like \"g-3f9a2c1b7d\", not by a position ({id}): `GET /admin/v1/grants` (`lienthong admin grants`) lists each grant's id"
        )));
    }
    grants
        .iter()
        .position(|g| str_of(g, "id") == id)
        .ok_or_else(|| LookupError::new(ErrorCode::NotFound, format!("there is no grant {id:?}")))
}

/// One grant, with its version (served as its `ETag`).
pub(super) fn get(cx: &Cx<'_>, id: &str) -> Result<Value, LookupError> {
    let mut table = with_ids(cx)?;
    let grants = tables(&mut table, "grant");
    let grant = &grants[position(grants, id)?];
    if !visible(cx, grant) {
        return Err(LookupError::new(
            ErrorCode::PermissionDenied,
            format!("grant {id} is on another agency's dataset: not this credential's to see"),
        ));
    }
    Ok(shown(grant))
}

/// The answer to a change, with the grant's id and its new version.
fn answered(mut answer: Value, grant: Option<&toml::Value>) -> Value {
    if let Some(g) = grant {
        let v = to_json(g);
        answer["id"] = v["id"].clone();
        answer["etag"] = json!(etag(&v));
    }
    answer
}

/// A new grant from `body`, checked and given its id: the grants file with it added, the
/// grant, and its consumer and dataset.
pub(super) fn prepared(
    cx: &Cx<'_>,
    body: Value,
) -> Result<(toml::Table, toml::Value, String, String), LookupError> {
    let (mut grant, _) = grant_value(body)?;
    cx.must_manage(&grant.dataset, &format!("dataset {}", grant.dataset))?;
    let mut table = with_ids(cx)?;
    let grants = tables(&mut table, "grant");
    let id = match grant.id.take() {
        Some(id) => {
            check_grant_id(&id).map_err(invalid)?;
            if grants.iter().any(|g| str_of(g, "id") == id) {
                return Err(LookupError::new(
                    ErrorCode::AlreadyExists,
                    format!("grant {id} exists already"),
                ));
            }
            id
        }
        None => random_id("g-", 5),
    };
    grant.id = Some(id);
    let value = toml::Value::try_from(&grant).map_err(|e| invalid(e.to_string()))?;
    grants.push(value.clone());
    Ok((table, value, grant.consumer, grant.dataset))
}

pub(super) async fn add(cx: &Cx<'_>, body: Value, dry_run: bool) -> Result<Value, LookupError> {
    let (table, value, consumer, dataset) = prepared(cx, body)?;
    let id = str_of(&value, "id").to_owned();
    let answer = cx
        .change(Change {
            action: "grant_added",
            dataset: &dataset,
            summary: format!("grant {id} added: {consumer} on {dataset}"),
            before: Value::Null,
            after: to_json(&value),
            replaced: vec![("grants", table)],
            dry_run,
            probe_key: None,
        })
        .await?;
    Ok(answered(answer, Some(&value)))
}

/// Changes grant `id` by merging `body` into it (`{"disabled": true}` switches it off).
pub(super) async fn update(
    cx: &Cx<'_>,
    id: &str,
    body: Value,
    dry_run: bool,
) -> Result<Value, LookupError> {
    let patch = object(body, "grant settings to change")?;
    let mut table = with_ids(cx)?;
    let grants = tables(&mut table, "grant");
    let at = position(grants, id)?;
    let old = grants[at].clone();
    cx.must_manage(str_of(&old, "dataset"), "this grant's dataset")?;
    cx.expect(&format!("grant {id}"), &etag(&to_json(&old)))?;
    if patch.get("id").is_some_and(|new| new != id) {
        return Err(invalid("a grant's id does not change"));
    }
    let mut merged = to_json(&old);
    for (k, v) in patch {
        merged[k] = v;
    }
    let (grant, value) = grant_value(merged)?;
    cx.must_manage(&grant.dataset, &format!("dataset {}", grant.dataset))?;
    grants[at] = value.clone();
    let summary = match (
        grant.disabled,
        old.get("disabled").and_then(|d| d.as_bool()),
    ) {
        (true, None | Some(false)) => "switched off",
        (false, Some(true)) => "switched on",
        _ => "changed",
    };
    let answer = cx
        .change(Change {
            action: "grant_updated",
            dataset: &grant.dataset,
            summary: format!(
                "grant {id} {summary}: {} on {}",
                grant.consumer, grant.dataset
            ),
            before: to_json(&old),
            after: to_json(&value),
            replaced: vec![("grants", table)],
            dry_run,
            probe_key: None,
        })
        .await?;
    Ok(answered(answer, Some(&value)))
}

pub(super) async fn remove(cx: &Cx<'_>, id: &str, dry_run: bool) -> Result<Value, LookupError> {
    let mut table = with_ids(cx)?;
    let grants = tables(&mut table, "grant");
    let at = position(grants, id)?;
    let dataset = str_of(&grants[at], "dataset").to_owned();
    cx.must_manage(&dataset, "this grant's dataset")?;
    cx.expect(&format!("grant {id}"), &etag(&to_json(&grants[at])))?;
    let removed = grants.remove(at);
    let answer = cx
        .change(Change {
            action: "grant_removed",
            dataset: &dataset,
            summary: format!(
                "grant {id} removed: {} on {dataset}",
                str_of(&removed, "consumer")
            ),
            before: to_json(&removed),
            after: Value::Null,
            replaced: vec![("grants", table)],
            dry_run,
            probe_key: None,
        })
        .await?;
    Ok(answered(answer, None))
}
