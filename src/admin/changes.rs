//! Datasets, connectors and grants: list, inspect and change them at run time.
//!
//! - A dataset is created together with the connector that serves it (a dataset cannot be
//!   served without one), optionally tried with one probe lookup before it goes live.
//!   Registered datasets may change their schema, key rule and description; any dataset,
//!   built-in ones included, may be switched off and on.
//! - A connector's settings change by merging a JSON object into its `[[connector]]` table;
//!   credentials never leave (shown as "(set)").
//! - Grants are added, changed by merging (`{"disabled": true}` switches one off), and
//!   removed, by their position in the list.

use super::{Change, Cx, invalid, merge, object, role_table, tables, to_json};
use crate::domain::error::{ErrorCode, LookupError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Keys whose values are credentials: shown as "(set)".
const SECRET_KEYS: &[&str] = &["secret", "token", "api_key", "client_secret", "password"];

fn redacted(connector: &toml::Value) -> Value {
    let mut v = to_json(connector);
    // Uploaded or reflected descriptors are shown (and audited) by their digest.
    if let Some(set) = v.pointer_mut("/grpc/descriptor_set")
        && let Some(text) = set.as_str()
    {
        let digest = <sha2::Sha256 as sha2::Digest>::digest(text.as_bytes());
        *set = json!(format!("sha256:{}", hex::encode(digest)));
    }
    if let Some(auth) = v.get_mut("auth").and_then(Value::as_object_mut) {
        for k in SECRET_KEYS {
            if auth.contains_key(*k) {
                auth.insert((*k).to_owned(), json!("(set)"));
            }
        }
    }
    v
}

/// Seals every credential in a connector's `auth` as sent through the API, so that the
/// registry never holds one in the clear; refused when no secrets key is set.
fn seal_secrets(cx: &Cx<'_>, connector: &mut Map<String, Value>) -> Result<(), LookupError> {
    let Some(auth) = connector.get_mut("auth").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let config = cx.g.config();
    for k in SECRET_KEYS {
        let Some(Value::String(value)) = auth.get_mut(*k) else {
            continue;
        };
        if crate::config::sealed::is_sealed(value) {
            continue;
        }
        let Some(key) = &config.secrets_key else {
            return Err(invalid(format!(
                "auth.{k}: a secret sent through the admin API is stored sealed, and this gateway has no [admin] secrets_key; set one, or name an environment variable (auth.{k}_env) or a file (auth.{k}_file) on the gateway's host instead"
            )));
        };
        *value = key.seal(k, value);
    }
    Ok(())
}

/// A gRPC connector asking for `grpc.reflection`: its provider's descriptors are read now,
/// by server reflection, and stored as `grpc.descriptor_set`, so that every version of the
/// registry builds without asking the provider again.
async fn reflect(connector: &mut toml::Table) -> Result<(), LookupError> {
    let Some(grpc) = connector.get_mut("grpc").and_then(|g| g.as_table_mut()) else {
        return Ok(());
    };
    if grpc.remove("reflection").and_then(|r| r.as_bool()) != Some(true) {
        return Ok(());
    }
    let method = grpc.get("method").and_then(|m| m.as_str()).unwrap_or("");
    let Some((service, _)) = method.split_once('/') else {
        return Err(invalid(format!(
            "grpc.method {method:?}: reflection needs the method as package.Service/Method"
        )));
    };
    let service = service.to_owned();
    let endpoint = connector
        .get("endpoint")
        .and_then(|e| e.as_str())
        .unwrap_or("")
        .to_owned();
    let timeout = std::time::Duration::from_millis(
        connector
            .get("timeout_ms")
            .and_then(|t| t.as_integer())
            .map_or(crate::config::raw::DEFAULT_UPSTREAM_TIMEOUT_MS, |t| {
                t.max(1) as u64
            }),
    );
    let set = crate::upstream::reflection::descriptor_set(&endpoint, &service, timeout)
        .await
        .map_err(|why| {
            invalid(format!(
                "grpc.reflection: the descriptors of {service} could not be read from {endpoint}: {why}; nothing was applied"
            ))
        })?;
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(set);
    if let Some(grpc) = connector.get_mut("grpc").and_then(|g| g.as_table_mut()) {
        grpc.insert("descriptor_set".into(), toml::Value::String(encoded));
    }
    Ok(())
}

fn str_of<'v>(v: &'v toml::Value, key: &str) -> &'v str {
    v.get(key).and_then(|d| d.as_str()).unwrap_or("")
}

fn not_found(message: String) -> LookupError {
    LookupError::new(ErrorCode::NotFound, message)
}

// ---- datasets ----

/// Every dataset (built-in and registered) with its schema, owner, key rule and state.
pub(super) fn list_datasets(cx: &Cx<'_>) -> Result<Value, LookupError> {
    let config = cx.g.config();
    let datasets: Vec<Value> = config
        .datasets
        .iter()
        .map(|d| {
            let mut v = d.to_json();
            v["connector"] = json!(
                config
                    .connectors
                    .iter()
                    .find(|c| c.dataset == d.name)
                    .map(|c| c.name.as_str())
            );
            v["manageable"] = json!(cx.manages(&d.name));
            v
        })
        .collect();
    Ok(json!({ "version": cx.live.version(), "datasets": datasets }))
}

/// One dataset, with (for those who manage it, or audit) its connector, its provider's
/// health and the grants on it.
pub(super) fn get_dataset(cx: &Cx<'_>, name: &str) -> Result<Value, LookupError> {
    let config = cx.g.config();
    let d = config
        .dataset(name)
        .ok_or_else(|| not_found(format!("there is no dataset {name:?}")))?;
    let mut v = d.to_json();
    v["manageable"] = json!(cx.manages(name));
    let auditor = matches!(cx.admin.who.role, crate::layers::policy::AdminRole::Auditor);
    if cx.manages(name) || auditor {
        let connectors = role_table(cx.g, "connectors")?;
        v["connector"] = connectors
            .get("connector")
            .and_then(|c| c.as_array())
            .into_iter()
            .flatten()
            .find(|c| str_of(c, "dataset") == name)
            .map(redacted)
            .unwrap_or(Value::Null);
        let mut grants = role_table(cx.g, "grants")?;
        v["grants"] = tables(&mut grants, "grant")
            .iter()
            .enumerate()
            .filter(|(_, g)| str_of(g, "dataset") == name)
            .map(|(i, g)| json!({ "index": i, "grant": to_json(g) }))
            .collect();
        v["health"] = cx
            .g
            .probes()
            .into_iter()
            .find(|(c, _)| config.connectors.iter().any(|k| &k.name == c && k.dataset == name))
            .map(|(_, p)| json!({ "up": p.up, "probes": p.probes, "failures": p.failures, "error": p.error, "detail": p.detail }))
            .unwrap_or(Value::Null);
    }
    Ok(v)
}

/// The keys a dataset takes over the API, and the datasets file's names for them.
const DATASET_KEYS: &[&str] = &[
    "name",
    "description",
    "key",
    "key_field",
    "fields",
    "disabled",
];

/// A dataset as the API gives it → its `[[dataset]]` table ("fields" becomes "field").
fn dataset_table(body: &Map<String, Value>) -> Result<Map<String, Value>, LookupError> {
    let mut out = Map::new();
    for (k, v) in body {
        if !DATASET_KEYS.contains(&k.as_str()) {
            return Err(invalid(format!(
                "{k:?} is not a dataset setting; use: {}",
                DATASET_KEYS.join(", ")
            )));
        }
        let k = if k == "fields" { "field" } else { k.as_str() };
        out.insert(k.to_owned(), v.clone());
    }
    Ok(out)
}

/// Registers a dataset and the connector that serves it, in one change.
pub(super) async fn create_dataset(
    cx: &Cx<'_>,
    body: Value,
    dry_run: bool,
    probe_key: Option<String>,
) -> Result<Value, LookupError> {
    let mut body = object(
        body,
        "a dataset (name, key, key_field, fields, …) with its connector",
    )?;
    let connector = match body.remove("connector") {
        Some(Value::Object(c)) => c,
        _ => {
            return Err(invalid(
                "a new dataset needs \"connector\": the connector that serves it",
            ));
        }
    };
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("a new dataset needs a \"name\", e.g. \"tax.status\""))?
        .to_owned();
    if cx.g.config().dataset(&name).is_some() {
        return Err(invalid(format!(
            "dataset {name} exists already; change it with an update"
        )));
    }
    cx.must_manage(&name, &format!("dataset {name}"))?;
    let entry = dataset_table(&body)?;
    let mut connector = connector;
    seal_secrets(cx, &mut connector)?;
    match connector.get("dataset").and_then(Value::as_str) {
        Some(d) if d != name => {
            return Err(invalid(format!(
                "the connector serves {d}, not the new dataset {name}"
            )));
        }
        _ => {
            connector.insert("dataset".into(), json!(name));
        }
    }
    let to_toml = |m: &Map<String, Value>| {
        toml::Value::try_from(Value::Object(m.clone())).map_err(|e| invalid(e.to_string()))
    };
    let (entry, mut connector) = (to_toml(&entry)?, to_toml(&connector)?);
    if let Some(table) = connector.as_table_mut() {
        reflect(table).await?;
    }
    let mut datasets = role_table(cx.g, "datasets")?;
    tables(&mut datasets, "dataset").push(entry.clone());
    let mut connectors = role_table(cx.g, "connectors")?;
    tables(&mut connectors, "connector").push(connector.clone());
    cx.change(Change {
        action: "dataset_created",
        dataset: &name,
        summary: format!("dataset {name} registered"),
        before: Value::Null,
        after: json!({ "dataset": to_json(&entry), "connector": redacted(&connector) }),
        replaced: vec![("datasets", datasets), ("connectors", connectors)],
        dry_run,
        probe_key: probe_key.as_deref(),
    })
    .await
}

/// Changes a dataset: a registered one's description, fields, key rule and state; a
/// built-in one's state only (`{"disabled": true}` switches it off).
pub(super) async fn update_dataset(
    cx: &Cx<'_>,
    name: &str,
    body: Value,
    dry_run: bool,
) -> Result<Value, LookupError> {
    let patch = object(body, "dataset settings to change")?;
    let dataset =
        cx.g.config()
            .dataset(name)
            .ok_or_else(|| not_found(format!("there is no dataset {name:?}")))?
            .clone();
    cx.must_manage(name, &format!("dataset {name}"))?;
    if patch.contains_key("name") {
        return Err(invalid("a dataset's name does not change"));
    }
    if dataset.builtin && patch.keys().any(|k| k != "disabled") {
        return Err(invalid(format!(
            "{name} is built in: only \"disabled\" may change"
        )));
    }
    let patch = dataset_table(&patch)?;
    let mut datasets = role_table(cx.g, "datasets")?;
    let all = tables(&mut datasets, "dataset");
    let at = match all.iter().position(|d| str_of(d, "name") == name) {
        Some(i) => i,
        None => {
            let mut fresh = toml::Table::new();
            fresh.insert("name".into(), toml::Value::String(name.to_owned()));
            all.push(toml::Value::Table(fresh));
            all.len() - 1
        }
    };
    let before = dataset.to_json();
    let entry = all[at]
        .as_table_mut()
        .ok_or_else(|| LookupError::new(ErrorCode::Internal, "a dataset entry is not a table"))?;
    merge(entry, &patch)?;
    let after = to_json(&toml::Value::Table(entry.clone()));
    let summary = match patch.get("disabled") {
        Some(Value::Bool(true)) if patch.len() == 1 => format!("dataset {name} switched off"),
        Some(Value::Bool(false)) if patch.len() == 1 => format!("dataset {name} switched on"),
        _ => format!("dataset {name} changed"),
    };
    cx.change(Change {
        action: "dataset_updated",
        dataset: name,
        summary,
        before,
        after,
        replaced: vec![("datasets", datasets)],
        dry_run,
        probe_key: None,
    })
    .await
}

// ---- connectors ----

/// The connectors of the datasets the caller manages, credentials redacted.
pub(super) fn list_connectors(cx: &Cx<'_>) -> Result<Value, LookupError> {
    let table = role_table(cx.g, "connectors")?;
    let connectors: Vec<Value> = table
        .get("connector")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
        .filter(|c| cx.manages(str_of(c, "dataset")))
        .map(redacted)
        .collect();
    Ok(json!({ "version": cx.live.version(), "connectors": connectors }))
}

/// Changes one connector's settings by merging `body` into them; with `probe_key`, the
/// changed connector must answer that key before it goes live.
pub(super) async fn update_connector(
    cx: &Cx<'_>,
    name: &str,
    body: Value,
    dry_run: bool,
    probe_key: Option<String>,
) -> Result<Value, LookupError> {
    let mut patch = object(body, "connector settings to change")?;
    if patch.contains_key("name") || patch.contains_key("dataset") {
        return Err(invalid("a connector's name and dataset do not change"));
    }
    let mut table = role_table(cx.g, "connectors")?;
    let connector = tables(&mut table, "connector")
        .iter_mut()
        .find(|c| str_of(c, "name") == name)
        .and_then(|c| c.as_table_mut())
        .ok_or_else(|| not_found(format!("there is no connector {name:?}")))?;
    let dataset = connector
        .get("dataset")
        .and_then(|d| d.as_str())
        .unwrap_or("")
        .to_owned();
    cx.must_manage(&dataset, &format!("connector {name}"))?;
    seal_secrets(cx, &mut patch)?;
    let before = redacted(&toml::Value::Table(connector.clone()));
    merge(connector, &patch)?;
    reflect(connector).await?;
    let after = redacted(&toml::Value::Table(connector.clone()));
    cx.change(Change {
        action: "connector_updated",
        dataset: &dataset,
        summary: format!("connector {name} updated"),
        before,
        after,
        replaced: vec![("connectors", table)],
        dry_run,
        probe_key: probe_key.as_deref(),
    })
    .await
}

// ---- grants ----

/// A grant as the API takes it (the grants file's keys).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
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
}

fn grant_value(body: Value) -> Result<(GrantBody, toml::Value), LookupError> {
    let grant: GrantBody = serde_json::from_value(body).map_err(|e| {
        invalid(format!(
            "a grant has consumer, dataset, procedures, fields, legal_basis and optionally modes, valid_from, valid_until, quota, allow_cache_bypass, disabled: {e}"
        ))
    })?;
    let value = toml::Value::try_from(&grant).map_err(|e| invalid(e.to_string()))?;
    Ok((grant, value))
}

/// Every grant the caller may see, with its position (the index to change it by).
pub(super) fn list_grants(cx: &Cx<'_>) -> Result<Value, LookupError> {
    let auditor = matches!(cx.admin.who.role, crate::layers::policy::AdminRole::Auditor);
    let mut table = role_table(cx.g, "grants")?;
    let grants: Vec<Value> = tables(&mut table, "grant")
        .iter()
        .enumerate()
        .filter(|(_, v)| auditor || cx.manages(str_of(v, "dataset")))
        .map(|(i, v)| json!({ "index": i, "grant": to_json(v) }))
        .collect();
    Ok(json!({ "version": cx.live.version(), "grants": grants }))
}

pub(super) async fn add_grant(
    cx: &Cx<'_>,
    body: Value,
    dry_run: bool,
) -> Result<Value, LookupError> {
    let (grant, value) = grant_value(body)?;
    cx.must_manage(&grant.dataset, &format!("dataset {}", grant.dataset))?;
    let mut table = role_table(cx.g, "grants")?;
    tables(&mut table, "grant").push(value.clone());
    cx.change(Change {
        action: "grant_added",
        dataset: &grant.dataset,
        summary: format!("grant added: {} on {}", grant.consumer, grant.dataset),
        before: Value::Null,
        after: to_json(&value),
        replaced: vec![("grants", table)],
        dry_run,
        probe_key: None,
    })
    .await
}

fn grant_at(grants: &[toml::Value], index: usize) -> Result<&toml::Value, LookupError> {
    grants.get(index).ok_or_else(|| {
        not_found(format!(
            "there is no grant {index} (there are {})",
            grants.len()
        ))
    })
}

/// Changes grant `index` by merging `body` into it (`{"disabled": true}` switches it off).
pub(super) async fn update_grant(
    cx: &Cx<'_>,
    index: usize,
    body: Value,
    dry_run: bool,
) -> Result<Value, LookupError> {
    let patch = object(body, "grant settings to change")?;
    let mut table = role_table(cx.g, "grants")?;
    let grants = tables(&mut table, "grant");
    let old = grant_at(grants, index)?.clone();
    cx.must_manage(str_of(&old, "dataset"), "this grant's dataset")?;
    let mut merged = to_json(&old);
    for (k, v) in patch {
        merged[k] = v;
    }
    let (grant, value) = grant_value(merged)?;
    cx.must_manage(&grant.dataset, &format!("dataset {}", grant.dataset))?;
    grants[index] = value.clone();
    let summary = match (
        grant.disabled,
        old.get("disabled").and_then(|d| d.as_bool()),
    ) {
        (true, None | Some(false)) => "switched off",
        (false, Some(true)) => "switched on",
        _ => "changed",
    };
    cx.change(Change {
        action: "grant_updated",
        dataset: &grant.dataset,
        summary: format!(
            "grant {index} {summary}: {} on {}",
            grant.consumer, grant.dataset
        ),
        before: to_json(&old),
        after: to_json(&value),
        replaced: vec![("grants", table)],
        dry_run,
        probe_key: None,
    })
    .await
}

pub(super) async fn remove_grant(
    cx: &Cx<'_>,
    index: usize,
    dry_run: bool,
) -> Result<Value, LookupError> {
    let mut table = role_table(cx.g, "grants")?;
    let grants = tables(&mut table, "grant");
    let dataset = str_of(grant_at(grants, index)?, "dataset").to_owned();
    cx.must_manage(&dataset, "this grant's dataset")?;
    let removed = grants.remove(index);
    cx.change(Change {
        action: "grant_removed",
        dataset: &dataset,
        summary: format!(
            "grant removed: {} on {dataset}",
            str_of(&removed, "consumer")
        ),
        before: to_json(&removed),
        after: Value::Null,
        replaced: vec![("grants", table)],
        dry_run,
        probe_key: None,
    })
    .await
}
