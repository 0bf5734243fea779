//! Datasets, connectors and grants: list, inspect and change them at run time.
//!
//! - A dataset is created together with the connector that serves it (a dataset cannot be
//!   served without one), optionally tried with one probe lookup before it goes live.
//!   Registered datasets may change their schema, key rule and description; any dataset,
//!   built-in ones included, may be switched off and on.
//! - A connector's settings change by merging a JSON object into its `[[connector]]` table;
//!   credentials never leave (shown as "(set)").
//! - Each dataset and connector has a version (a digest of its settings, served as its
//!   `ETag`); a change made against another version is refused.

use super::{Change, Cx, etag, invalid, merge, object, role_table, str_of, tables, to_json};
use crate::domain::error::{ErrorCode, LookupError};
use serde_json::{Map, Value, json};

/// Keys whose values are credentials: shown as "(set)".
const SECRET_KEYS: &[&str] = &["secret", "token", "api_key", "client_secret", "password"];

fn redacted(connector: &toml::Value) -> Value {
    redact(connector, false)
}

/// A connector's version: its settings with secrets in the clear left out (a sealed one
/// is kept: it changes each time it is sent).
fn connector_etag(connector: &toml::Value) -> String {
    etag(&redact(connector, true))
}

fn redact(connector: &toml::Value, keep_sealed: bool) -> Value {
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
            let sealed = auth
                .get(*k)
                .and_then(Value::as_str)
                .is_some_and(crate::config::sealed::is_sealed);
            if auth.contains_key(*k) && !(keep_sealed && sealed) {
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
            v["etag"] = json!(etag(&d.to_json()));
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
    v["etag"] = json!(etag(&v));
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
        v["grants"] = json!(
            super::grants::list(cx)?["grants"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|g| g["grant"]["dataset"] == name)
                .collect::<Vec<_>>()
        );
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
    "key_fields",
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
    .map(|answer| with_dataset_etag(cx, &name, answer))
}

/// A dataset change's answer with the dataset's new version.
fn with_dataset_etag(cx: &Cx<'_>, name: &str, mut answer: Value) -> Value {
    if answer.get("dry_run").is_some() {
        return answer;
    }
    if let Some(d) = cx.live.current().config().dataset(name) {
        answer["etag"] = json!(etag(&d.to_json()));
    }
    answer
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
    cx.expect(&format!("dataset {name}"), &etag(&dataset.to_json()))?;
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
    .map(|answer| with_dataset_etag(cx, name, answer))
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
        .map(|c| {
            let mut v = redacted(c);
            v["etag"] = json!(connector_etag(c));
            v
        })
        .collect();
    Ok(json!({ "version": cx.live.version(), "connectors": connectors }))
}

/// One connector of a dataset the caller manages, with its version.
pub(super) fn get_connector(cx: &Cx<'_>, name: &str) -> Result<Value, LookupError> {
    let mut table = role_table(cx.g, "connectors")?;
    let connector = tables(&mut table, "connector")
        .iter()
        .find(|c| str_of(c, "name") == name)
        .ok_or_else(|| not_found(format!("there is no connector {name:?}")))?;
    cx.must_manage(str_of(connector, "dataset"), &format!("connector {name}"))?;
    let mut v = redacted(connector);
    v["etag"] = json!(connector_etag(connector));
    Ok(v)
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
    cx.expect(
        &format!("connector {name}"),
        &connector_etag(&toml::Value::Table(connector.clone())),
    )?;
    seal_secrets(cx, &mut patch)?;
    let before = redacted(&toml::Value::Table(connector.clone()));
    merge(connector, &patch)?;
    reflect(connector).await?;
    let after = redacted(&toml::Value::Table(connector.clone()));
    let new_etag = connector_etag(&toml::Value::Table(connector.clone()));
    let mut answer = cx
        .change(Change {
            action: "connector_updated",
            dataset: &dataset,
            summary: format!("connector {name} updated"),
            before,
            after,
            replaced: vec![("connectors", table)],
            dry_run,
            probe_key: probe_key.as_deref(),
        })
        .await?;
    answer["etag"] = json!(new_etag);
    Ok(answer)
}
