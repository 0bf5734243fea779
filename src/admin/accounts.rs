//! Consumers and their API keys, through the admin API.
//!
//! - Operators create consumers and change them (`{"disabled": true}` switches one off:
//!   its credentials are refused, its grants stay). Consumers of the consumers file are
//!   changed in that file.
//! - Operators, and a consumer's own administrator (`consumer_admin`), issue, rotate and
//!   revoke its keys. A key is shown once, when issued; the registry keeps its SHA-256.
//! - All of it lives in the registry's accounts file, which reload and rollback carry
//!   forward: neither brings back a revoked key nor drops an issued one.

use super::{
    Change, Cx, etag, invalid, merge, object, random_bytes, random_id, role_table, str_of, tables,
    to_json,
};
use crate::domain::date::{iso_ms, now_ms, parse_rfc3339_ms};
use crate::domain::error::{ErrorCode, LookupError};
use crate::layers::policy::{file_key_id, sha256_hex};
use serde_json::{Map, Value, json};

/// The settings a consumer takes over the API (its keys are issued, not set).
const CONSUMER_KEYS: &[&str] = &[
    "id",
    "name",
    "certificate_names",
    "quota",
    "misuse",
    "assertion",
    "disabled",
];

/// Without `old_valid_until`, a rotated key keeps working this long.
const DEFAULT_OVERLAP_MS: i64 = 24 * 3_600_000;

fn not_found(id: &str) -> LookupError {
    LookupError::new(ErrorCode::NotFound, format!("there is no consumer {id:?}"))
}

/// A consumer as found: its table, and whether it comes from the consumers file.
struct Found {
    table: toml::Value,
    from_file: bool,
}

/// Every consumer as defined (the consumers file's, then the accounts file's), and the
/// accounts file's keys, each file read once.
fn everything(cx: &Cx<'_>) -> Result<(Vec<Found>, Vec<toml::Value>), LookupError> {
    let mut file = role_table(cx.g, "consumers")?;
    let mut accounts = role_table(cx.g, "accounts")?;
    let mut found: Vec<Found> = tables(&mut file, "consumer")
        .iter()
        .map(|c| Found {
            table: c.clone(),
            from_file: true,
        })
        .collect();
    found.extend(tables(&mut accounts, "consumer").iter().map(|c| Found {
        table: c.clone(),
        from_file: false,
    }));
    Ok((found, tables(&mut accounts, "key").clone()))
}

fn find(cx: &Cx<'_>, id: &str) -> Result<Found, LookupError> {
    everything(cx)?
        .0
        .into_iter()
        .find(|c| str_of(&c.table, "id") == id)
        .ok_or_else(|| not_found(id))
}

/// Refuses a consumer_admin acting on a consumer other than its own.
fn must_own(cx: &Cx<'_>, consumer: &str) -> Result<(), LookupError> {
    match cx.own_consumer() {
        Some(own) if own != consumer => Err(LookupError::new(
            ErrorCode::PermissionDenied,
            format!("this credential manages consumer {own} only, not {consumer}"),
        )),
        _ => Ok(()),
    }
}

/// A key as shown: never the key, nor its hash.
fn key_json(k: &toml::Value, now: i64) -> Value {
    let at = |f: &str| k.get(f).and_then(|v| v.as_str()).and_then(parse_rfc3339_ms);
    let state = match (at("revoked"), at("expires")) {
        (Some(r), _) if r <= now => "revoked",
        (_, Some(e)) if e <= now => "expired",
        _ => "active",
    };
    let mut v = to_json(k);
    if let Some(m) = v.as_object_mut() {
        m.remove("sha256");
        m.insert("state".into(), json!(state));
    }
    v
}

/// A consumer as shown: its settings (key hashes left out), where it is defined, its
/// keys and its version.
fn consumer_json(found: &Found, all_keys: &[toml::Value]) -> Value {
    let id = str_of(&found.table, "id").to_owned();
    let now = now_ms();
    let issued: Vec<&toml::Value> = all_keys
        .iter()
        .filter(|k| str_of(k, "consumer") == id)
        .collect();
    let mut keys: Vec<Value> = Vec::new();
    for h in found
        .table
        .get("api_key_sha256")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|h| h.as_str())
    {
        let Some(hash) = sha256_hex(h) else {
            continue;
        };
        let kid = file_key_id(&hash);
        let mut v = match issued.iter().find(|k| str_of(k, "id") == kid) {
            Some(k) => key_json(k, now),
            None => json!({ "id": kid, "consumer": id, "state": "active" }),
        };
        v["source"] = json!("file");
        keys.push(v);
    }
    for k in issued.iter().filter(|k| str_of(k, "id").starts_with("k-")) {
        let mut v = key_json(k, now);
        v["source"] = json!("api");
        keys.push(v);
    }
    let settings = to_json(&found.table);
    let mut shown = settings.clone();
    if let Some(m) = shown.as_object_mut() {
        m.remove("api_key_sha256");
        m.insert(
            "source".into(),
            json!(if found.from_file { "file" } else { "api" }),
        );
        m.insert("keys".into(), json!(keys));
        m.insert("etag".into(), json!(etag(&settings)));
    }
    shown
}

/// Every consumer the caller may see (a consumer's administrator: its own).
pub(super) fn list(cx: &Cx<'_>) -> Result<Value, LookupError> {
    let (all, keys) = everything(cx)?;
    let out: Vec<Value> = all
        .iter()
        .filter(|c| {
            cx.own_consumer()
                .is_none_or(|own| own == str_of(&c.table, "id"))
        })
        .map(|c| consumer_json(c, &keys))
        .collect();
    Ok(json!({ "version": cx.live.version(), "consumers": out }))
}

pub(super) fn get(cx: &Cx<'_>, id: &str) -> Result<Value, LookupError> {
    must_own(cx, id)?;
    let (all, keys) = everything(cx)?;
    let found = all
        .iter()
        .find(|c| str_of(&c.table, "id") == id)
        .ok_or_else(|| not_found(id))?;
    Ok(consumer_json(found, &keys))
}

/// A consumer's settings as sent, checked for keys the API takes.
fn consumer_body(body: &Map<String, Value>) -> Result<(), LookupError> {
    for k in body.keys() {
        if k == "api_key_sha256" {
            return Err(invalid(
                "keys are issued, not set: POST /admin/v1/consumers/{id}/keys (`lienthong admin keys issue`)",
            ));
        }
        if !CONSUMER_KEYS.contains(&k.as_str()) {
            return Err(invalid(format!(
                "{k:?} is not a consumer setting; use: {}",
                CONSUMER_KEYS.join(", ")
            )));
        }
    }
    Ok(())
}

fn check_id(id: &str) -> Result<(), LookupError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && b"-_.".contains(&b))
        });
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "{id:?} is not a consumer id: up to 64 of a-z, 0-9, -, _ and ., starting with a letter or digit (e.g. \"motcua-hanoi\")"
        )))
    }
}

pub(super) async fn create(cx: &Cx<'_>, body: Value, dry_run: bool) -> Result<Value, LookupError> {
    let body = object(
        body,
        "a consumer: id, name and optionally certificate_names, quota, misuse, assertion, disabled",
    )?;
    consumer_body(&body)?;
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("a new consumer needs an \"id\", e.g. \"motcua-hanoi\""))?
        .to_owned();
    check_id(&id)?;
    if body
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(|n| n.trim().is_empty())
    {
        return Err(invalid(
            "a new consumer needs a \"name\": the system, as people know it",
        ));
    }
    if find(cx, &id).is_ok() {
        return Err(LookupError::new(
            ErrorCode::AlreadyExists,
            format!("consumer {id} exists already; change it with an update"),
        ));
    }
    let entry = toml::Value::try_from(Value::Object(body)).map_err(|e| invalid(e.to_string()))?;
    let mut accounts = role_table(cx.g, "accounts")?;
    tables(&mut accounts, "consumer").push(entry.clone());
    let after = to_json(&entry);
    let mut answer = cx
        .change(Change {
            action: "consumer_created",
            dataset: "",
            summary: format!("consumer {id} created"),
            before: Value::Null,
            after: after.clone(),
            replaced: vec![("accounts", accounts)],
            dry_run,
            probe_key: None,
        })
        .await?;
    answer["id"] = json!(id);
    answer["etag"] = json!(etag(&after));
    Ok(answer)
}

pub(super) async fn update(
    cx: &Cx<'_>,
    id: &str,
    body: Value,
    dry_run: bool,
) -> Result<Value, LookupError> {
    let patch = object(body, "consumer settings to change")?;
    consumer_body(&patch)?;
    if patch.get("id").is_some_and(|new| new != id) {
        return Err(invalid("a consumer's id does not change"));
    }
    let found = find(cx, id)?;
    if found.from_file {
        return Err(invalid(format!(
            "consumer {id} is defined in the consumers file: change it there, then `lienthong admin reload` (its keys can be issued and revoked here)"
        )));
    }
    cx.expect(&format!("consumer {id}"), &etag(&to_json(&found.table)))?;
    let mut accounts = role_table(cx.g, "accounts")?;
    let entry = tables(&mut accounts, "consumer")
        .iter_mut()
        .find(|c| str_of(c, "id") == id)
        .and_then(|c| c.as_table_mut())
        .ok_or_else(|| not_found(id))?;
    merge(entry, &patch)?;
    let after = to_json(&toml::Value::Table(entry.clone()));
    let summary = match patch.get("disabled") {
        Some(Value::Bool(true)) if patch.len() == 1 => format!("consumer {id} switched off"),
        Some(Value::Bool(false)) if patch.len() == 1 => format!("consumer {id} switched on"),
        _ => format!("consumer {id} changed"),
    };
    let mut answer = cx
        .change(Change {
            action: "consumer_updated",
            dataset: "",
            summary,
            before: to_json(&found.table),
            after: after.clone(),
            replaced: vec![("accounts", accounts)],
            dry_run,
            probe_key: None,
        })
        .await?;
    answer["id"] = json!(id);
    answer["etag"] = json!(etag(&after));
    Ok(answer)
}

/// What issuing or rotating a key takes.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct KeyBody {
    /// What the key is for, e.g. "production, server 2".
    label: String,
    /// When it stops working (RFC 3339); never when unset.
    expires: Option<String>,
    /// Rotation: until when the old key keeps working (RFC 3339); 24 hours when unset.
    old_valid_until: Option<String>,
}

fn key_body(body: Value) -> Result<KeyBody, LookupError> {
    match body {
        Value::Null => Ok(KeyBody::default()),
        Value::Object(m) if m.is_empty() => Ok(KeyBody::default()),
        other => serde_json::from_value(other).map_err(|e| {
            invalid(format!(
                "a key takes label, expires (and, rotating, old_valid_until): {e}"
            ))
        }),
    }
}

/// An instant the caller set, which must lie ahead.
fn future(field: &str, value: &str, now: i64) -> Result<i64, LookupError> {
    let at = parse_rfc3339_ms(value).ok_or_else(|| {
        invalid(format!(
            "{field}: {value:?} is not an RFC 3339 instant like 2027-01-31T17:00:00+07:00"
        ))
    })?;
    if at <= now {
        return Err(invalid(format!("{field}: {value} has passed")));
    }
    Ok(at)
}

/// A new key for `consumer`: the key (to show once) and its accounts entry.
fn new_key(
    cx: &Cx<'_>,
    consumer: &str,
    b: &KeyBody,
    now: i64,
) -> Result<(String, toml::Value), LookupError> {
    use base64::Engine;
    let expires = b
        .expires
        .as_deref()
        .map(|e| future("expires", e, now).map(iso_ms))
        .transpose()?;
    let key = format!(
        "lt_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(32))
    );
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(key.as_bytes()));
    let mut entry = toml::Table::new();
    let s = |v: &str| toml::Value::String(v.to_owned());
    entry.insert("id".into(), s(&random_id("k-", 5)));
    entry.insert("consumer".into(), s(consumer));
    entry.insert("sha256".into(), s(&sha));
    entry.insert("label".into(), s(&b.label));
    entry.insert("created".into(), s(&iso_ms(now)));
    if let Some(e) = expires {
        entry.insert("expires".into(), s(&e));
    }
    entry.insert("created_by".into(), s(cx.actor()));
    Ok((key, toml::Value::Table(entry)))
}

/// Applies a key change to the accounts file and answers it.
async fn key_change(
    cx: &Cx<'_>,
    action: &str,
    summary: String,
    accounts: toml::Table,
    before: Value,
    after: Value,
) -> Result<Value, LookupError> {
    cx.change(Change {
        action,
        dataset: "",
        summary,
        before,
        after,
        replaced: vec![("accounts", accounts)],
        dry_run: false,
        probe_key: None,
    })
    .await
}

pub(super) async fn issue_key(
    cx: &Cx<'_>,
    consumer: &str,
    body: Value,
) -> Result<Value, LookupError> {
    must_own(cx, consumer)?;
    find(cx, consumer)?;
    let b = key_body(body)?;
    if b.old_valid_until.is_some() {
        return Err(invalid("old_valid_until is for rotating a key"));
    }
    let now = now_ms();
    let (key, entry) = new_key(cx, consumer, &b, now)?;
    let mut accounts = role_table(cx.g, "accounts")?;
    tables(&mut accounts, "key").push(entry.clone());
    let shown = key_json(&entry, now);
    let mut answer = key_change(
        cx,
        "key_issued",
        format!("key {} issued to {consumer}", str_of(&entry, "id")),
        accounts,
        Value::Null,
        shown.clone(),
    )
    .await?;
    answer["key"] = json!(key);
    answer["issued"] = shown;
    answer["note"] = json!("the key is shown this once; the gateway keeps only its SHA-256");
    Ok(answer)
}

/// The key `key_id` of `consumer`: its position among the accounts file's keys, if it has
/// an entry there, and its hash (for a consumers-file key, from that file).
fn key_of(
    cx: &Cx<'_>,
    accounts: &mut toml::Table,
    consumer: &str,
    key_id: &str,
) -> Result<(Option<usize>, String), LookupError> {
    let keys = tables(accounts, "key");
    let at = keys
        .iter()
        .position(|k| str_of(k, "id") == key_id && str_of(k, "consumer") == consumer);
    if let Some(at) = at {
        return Ok((Some(at), str_of(&keys[at], "sha256").to_owned()));
    }
    let missing = || {
        LookupError::new(
            ErrorCode::NotFound,
            format!(
                "consumer {consumer} has no key {key_id:?} (`lienthong admin consumers show {consumer}` lists its keys)"
            ),
        )
    };
    if !key_id.starts_with("f-") {
        return Err(missing());
    }
    let found = find(cx, consumer)?;
    found
        .table
        .get("api_key_sha256")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|h| h.as_str())
        .find(|h| sha256_hex(h).is_some_and(|b| file_key_id(&b) == key_id))
        .map(|h| (None, h.trim().to_owned()))
        .ok_or_else(missing)
}

/// Sets `field` of key `key_id` to `at` (the earlier of it and any set already), adding an
/// entry for a consumers-file key; answers the entry before and after.
fn end_key(
    cx: &Cx<'_>,
    accounts: &mut toml::Table,
    consumer: &str,
    key_id: &str,
    field: &str,
    at: i64,
) -> Result<(Value, Value), LookupError> {
    let now = now_ms();
    let (position, sha) = key_of(cx, accounts, consumer, key_id)?;
    let keys = tables(accounts, "key");
    let at_index = match position {
        Some(i) => i,
        None => {
            let mut entry = toml::Table::new();
            entry.insert("id".into(), toml::Value::String(key_id.to_owned()));
            entry.insert("consumer".into(), toml::Value::String(consumer.to_owned()));
            entry.insert("sha256".into(), toml::Value::String(sha));
            entry.insert("created".into(), toml::Value::String(iso_ms(now)));
            entry.insert(
                "created_by".into(),
                toml::Value::String(cx.actor().to_owned()),
            );
            keys.push(toml::Value::Table(entry));
            keys.len() - 1
        }
    };
    let before = key_json(&keys[at_index], now);
    if before["state"] != "active" {
        return Err(LookupError::new(
            ErrorCode::AlreadyExists,
            format!(
                "key {key_id} of {consumer} is {} already",
                before["state"].as_str().unwrap_or("")
            ),
        ));
    }
    let table = keys[at_index]
        .as_table_mut()
        .ok_or_else(|| LookupError::new(ErrorCode::Internal, "a key entry is not a table"))?;
    let earlier = table
        .get(field)
        .and_then(|v| v.as_str())
        .and_then(parse_rfc3339_ms)
        .map_or(at, |set| set.min(at));
    table.insert(field.into(), toml::Value::String(iso_ms(earlier)));
    Ok((before, key_json(&keys[at_index], now)))
}

pub(super) async fn rotate_key(
    cx: &Cx<'_>,
    consumer: &str,
    key_id: &str,
    body: Value,
) -> Result<Value, LookupError> {
    must_own(cx, consumer)?;
    let b = key_body(body)?;
    let now = now_ms();
    let until = match &b.old_valid_until {
        Some(v) => future("old_valid_until", v, now)?,
        None => now + DEFAULT_OVERLAP_MS,
    };
    let mut accounts = role_table(cx.g, "accounts")?;
    let (before, after) = end_key(cx, &mut accounts, consumer, key_id, "expires", until)?;
    let (key, entry) = new_key(cx, consumer, &b, now)?;
    tables(&mut accounts, "key").push(entry.clone());
    let issued = key_json(&entry, now);
    let mut answer = key_change(
        cx,
        "key_rotated",
        format!(
            "key {key_id} of {consumer} rotated to {}, the old one working until {}",
            str_of(&entry, "id"),
            iso_ms(until)
        ),
        accounts,
        before,
        json!({ "old": after, "new": issued }),
    )
    .await?;
    answer["key"] = json!(key);
    answer["issued"] = issued;
    answer["old"] = after;
    answer["note"] = json!("the key is shown this once; the gateway keeps only its SHA-256");
    Ok(answer)
}

pub(super) async fn revoke_key(
    cx: &Cx<'_>,
    consumer: &str,
    key_id: &str,
) -> Result<Value, LookupError> {
    must_own(cx, consumer)?;
    let mut accounts = role_table(cx.g, "accounts")?;
    let (before, after) = end_key(cx, &mut accounts, consumer, key_id, "revoked", now_ms())?;
    let mut answer = key_change(
        cx,
        "key_revoked",
        format!("key {key_id} of {consumer} revoked"),
        accounts,
        before,
        after.clone(),
    )
    .await?;
    answer["revoked"] = after;
    Ok(answer)
}
