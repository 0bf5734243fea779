//! Reading TOML: unknown keys (every one, not just the first) and type errors with their
//! key paths, and `LIENTHONG_<SECTION>__<KEY>` environment overrides.

use super::{ENV_PREFIX, Errors};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// Parses TOML into `T`, reporting unknown keys (all of them) and the first type error with
/// its key path.
pub(super) fn parse_toml<T: DeserializeOwned + Default>(
    text: &str,
    errors: &mut Errors<'_>,
    overrides: &BTreeMap<String, (String, toml::Value)>,
) -> T {
    let mut table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            let where_ = e
                .span()
                .map(|s| format!("line {}", text[..s.start].lines().count().max(1)));
            errors.add(where_.unwrap_or_default(), e.message().to_owned());
            return T::default();
        }
    };
    for (path, (var, value)) in overrides {
        let segments: Vec<&str> = path.split('.').collect();
        if !set_path(&mut table, &segments, value.clone()) {
            errors.add(
                path.clone(),
                format!("{var} overrides a value that is not a section"),
            );
        }
    }
    let mut unknown = Vec::new();
    let mut track = |p: serde_ignored::Path<'_>| unknown.push(p.to_string());
    let de = serde_ignored::Deserializer::new(toml::Value::Table(table), &mut track);
    let parsed = serde_path_to_error::deserialize::<_, T>(de);
    for key in unknown.iter().map(|k| bracket_indices(k)) {
        let from_env = overrides
            .get(&key)
            .map(|(var, _)| format!(" (set by {var})"))
            .unwrap_or_default();
        errors.add(key, format!("unknown key{from_env}"));
    }
    match parsed {
        Ok(v) => v,
        Err(e) => {
            errors.add(e.path().to_string(), e.inner().message().to_owned());
            T::default()
        }
    }
}

/// `connector.1.name` → `connector[1].name`, the form validation errors use.
fn bracket_indices(path: &str) -> String {
    let mut out = String::new();
    for seg in path.split('.') {
        if !out.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// Sets `value` at `path`, creating sections; false when a segment is not a section.
fn set_path(table: &mut toml::Table, path: &[&str], value: toml::Value) -> bool {
    match path {
        [] => false,
        [last] => {
            table.insert((*last).to_owned(), value);
            true
        }
        [first, rest @ ..] => match table
            .entry((*first).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(t) => set_path(t, rest, value),
            _ => false,
        },
    }
}

/// `LIENTHONG_A__B=v` → ("a.b", value). Variables without `__` (like `LIENTHONG_CONFIG`) are
/// not overrides.
pub(super) fn env_overrides(
    env: &BTreeMap<String, String>,
) -> BTreeMap<String, (String, toml::Value)> {
    env.iter()
        .filter_map(|(name, raw)| {
            let rest = name.strip_prefix(ENV_PREFIX)?;
            if !rest.contains("__") || rest.starts_with("TEST_") {
                return None;
            }
            let path = rest
                .split("__")
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
                .join(".");
            let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.clone()));
            Some((path, (name.clone(), value)))
        })
        .collect()
}
