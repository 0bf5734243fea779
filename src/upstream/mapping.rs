//! The declared mapping from an upstream payload to a dataset's canonical fields.
//!
//! Payloads of every connector kind are first turned into a JSON tree (XML elements become
//! objects, repeated elements arrays, text strings). A mapping is a table from canonical field
//! name to a rule:
//! - `"A.B.C"` — the value at that path;
//! - `{ path = "...", date = "yyyyMMdd" }` — a date in that layout, served as ISO 8601;
//! - `{ path = "...", values = { "1" = "male" } }` — a code translated through a table
//!   (an unlisted code is an unexpected payload, unless `keep_unlisted = true` passes it on);
//! - `{ path = "...", type = "bool" | "number" | "string" }` — a scalar coerced to that type;
//! - `{ join = ["A", "B"], sep = " " }` — present parts joined;
//! - `{ path = "...", fields = { ... } }` — a nested record (`path` optional);
//! - `{ each = "...", fields = { ... } }` — a list of nested records;
//! - `{ each = "..." }` — a list of scalars;
//! - `{ const = ... }` — a fixed value;
//! - `{ path = "...", template = "name" }` — a nested record mapped by a named template of
//!   the connector (for example one `address` template used for every address).

use serde_json::{Map, Value};
use std::collections::HashMap;

/// A mapping rule, compiled from config.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    Path(Path),
    Date {
        path: Path,
        layout: DateLayout,
    },
    Values {
        path: Path,
        table: HashMap<String, Value>,
        keep_unlisted: bool,
    },
    Coerce {
        path: Path,
        to: Scalar,
    },
    Join {
        paths: Vec<Path>,
        sep: String,
    },
    Object {
        path: Option<Path>,
        fields: Mapping,
    },
    Each {
        path: Path,
        fields: Option<Mapping>,
    },
    Const(Value),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    Bool,
    Number,
    String,
}

/// A dotted path into the payload tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Path(Vec<String>);

impl Path {
    pub fn parse(s: &str) -> Result<Path, SpecError> {
        let segments: Vec<String> = s.split('.').map(str::to_owned).collect();
        if s.is_empty() || segments.iter().any(String::is_empty) {
            return Err(SpecError::EmptySegment(s.to_owned()));
        }
        Ok(Path(segments))
    }

    /// The value at this path; an array met on the way yields its first element when the
    /// next segment is a name (XML gives one element as an object, several as an array).
    pub fn get<'a>(&self, mut v: &'a Value) -> Option<&'a Value> {
        for seg in &self.0 {
            if let Value::Array(items) = v {
                v = items.first()?;
            }
            v = v.as_object()?.get(seg)?;
        }
        (!v.is_null()).then_some(v)
    }
}

/// A date layout made of `yyyy`, `MM`, `dd` and literal separators.
#[derive(Debug, Clone, PartialEq)]
pub struct DateLayout {
    year: usize,
    month: usize,
    day: usize,
    len: usize,
}

impl DateLayout {
    fn parse(s: &str) -> Result<DateLayout, SpecError> {
        let find = |token: &'static str| {
            s.find(token).ok_or_else(|| SpecError::DateLayout {
                layout: s.to_owned(),
                lacks: token,
            })
        };
        Ok(DateLayout {
            year: find("yyyy")?,
            month: find("MM")?,
            day: find("dd")?,
            len: s.len(),
        })
    }

    fn to_iso(&self, text: &str) -> Option<String> {
        if text.len() != self.len || !text.is_ascii() {
            return None;
        }
        let (y, m, d) = (
            &text[self.year..self.year + 4],
            &text[self.month..self.month + 2],
            &text[self.day..self.day + 2],
        );
        let ok = [y, m, d]
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_digit()));
        let (mn, dn): (u32, u32) = (m.parse().ok()?, d.parse().ok()?);
        (ok && (1..=12).contains(&mn) && (1..=31).contains(&dn)).then(|| format!("{y}-{m}-{d}"))
    }
}

/// Canonical field name → rule, in declaration order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mapping(pub Vec<(String, Rule)>);

/// A payload that does not fit the mapping.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct MappingError(pub String);

/// The keys a rule table may use.
const RULE_KEYS: [&str; 11] = [
    "path",
    "date",
    "values",
    "type",
    "join",
    "sep",
    "fields",
    "each",
    "const",
    "template",
    "keep_unlisted",
];

/// A mapping, as configured, that does not compile. Each error names where it is.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("path {0:?} has an empty segment")]
    EmptySegment(String),
    #[error("date layout {layout:?} lacks {lacks}")]
    DateLayout { layout: String, lacks: &'static str },
    #[error("a rule is a path string or a table")]
    RuleShape,
    #[error("`{0}` must be a string")]
    NotString(String),
    #[error("unknown rule key `{0}`; a rule uses {keys}", keys = RULE_KEYS.join(", "))]
    UnknownKey(String),
    #[error("`{0}` needs `path`")]
    NeedsPath(&'static str),
    #[error("`fields` must be a table")]
    FieldsShape,
    #[error("{0}")]
    Value(#[from] serde_json::Error),
    #[error("`values` must be a table")]
    ValuesShape,
    #[error("`keep_unlisted` must be true or false")]
    KeepUnlisted,
    #[error("type {0:?} is not bool, number or string")]
    Type(String),
    #[error("`join` must be a list of paths")]
    JoinShape,
    #[error("no template named {0:?}")]
    NoTemplate(String),
    #[error("a rule table needs `path`, `join`, `each` or `const`")]
    NoRule,
    #[error("{field}: {source}")]
    In {
        field: String,
        source: Box<SpecError>,
    },
    #[error("template {name}: must be a table")]
    TemplateShape { name: String },
    #[error("template {name}: {source}")]
    Template {
        name: String,
        source: Box<SpecError>,
    },
}

fn compile_rule(v: &toml::Value, templates: &HashMap<String, Mapping>) -> Result<Rule, SpecError> {
    let table = match v {
        toml::Value::String(s) => return Ok(Rule::Path(Path::parse(s)?)),
        toml::Value::Table(t) => t,
        _ => return Err(SpecError::RuleShape),
    };
    let str_of = |k: &str| -> Result<Option<&str>, SpecError> {
        match table.get(k) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(SpecError::NotString(k.to_owned())),
        }
    };
    if let Some(k) = table.keys().find(|k| !RULE_KEYS.contains(&k.as_str())) {
        return Err(SpecError::UnknownKey(k.clone()));
    }
    let path = str_of("path")?.map(Path::parse).transpose()?;
    let need_path = |what: &'static str| path.clone().ok_or(SpecError::NeedsPath(what));
    let nested = |t: &toml::Value| -> Result<Mapping, SpecError> {
        match t {
            toml::Value::Table(t) => compile_table(t, templates),
            _ => Err(SpecError::FieldsShape),
        }
    };
    if let Some(c) = table.get("const") {
        return Ok(Rule::Const(serde_json::to_value(c)?));
    }
    if let Some(layout) = str_of("date")? {
        return Ok(Rule::Date {
            path: need_path("date")?,
            layout: DateLayout::parse(layout)?,
        });
    }
    if let Some(values) = table.get("values") {
        let toml::Value::Table(values) = values else {
            return Err(SpecError::ValuesShape);
        };
        let codes: HashMap<String, Value> = values
            .iter()
            .map(|(k, v)| Ok((k.clone(), serde_json::to_value(v)?)))
            .collect::<Result<_, SpecError>>()?;
        let keep_unlisted = match table.get("keep_unlisted") {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(_) => return Err(SpecError::KeepUnlisted),
        };
        return Ok(Rule::Values {
            path: need_path("values")?,
            table: codes,
            keep_unlisted,
        });
    }
    if let Some(to) = str_of("type")? {
        let to = match to {
            "bool" => Scalar::Bool,
            "number" => Scalar::Number,
            "string" => Scalar::String,
            other => return Err(SpecError::Type(other.to_owned())),
        };
        return Ok(Rule::Coerce {
            path: need_path("type")?,
            to,
        });
    }
    if let Some(join) = table.get("join") {
        let toml::Value::Array(items) = join else {
            return Err(SpecError::JoinShape);
        };
        let paths = items
            .iter()
            .map(|i| i.as_str().ok_or(SpecError::JoinShape).and_then(Path::parse))
            .collect::<Result<_, _>>()?;
        return Ok(Rule::Join {
            paths,
            sep: str_of("sep")?.unwrap_or(" ").to_owned(),
        });
    }
    if let Some(each) = str_of("each")? {
        let fields = table.get("fields").map(nested).transpose()?;
        return Ok(Rule::Each {
            path: Path::parse(each)?,
            fields,
        });
    }
    if let Some(name) = str_of("template")? {
        let fields = templates
            .get(name)
            .cloned()
            .ok_or_else(|| SpecError::NoTemplate(name.to_owned()))?;
        return Ok(Rule::Object { path, fields });
    }
    if let Some(fields) = table.get("fields") {
        return Ok(Rule::Object {
            path,
            fields: nested(fields)?,
        });
    }
    path.map(Rule::Path).ok_or(SpecError::NoRule)
}

fn compile_table(
    t: &toml::Table,
    templates: &HashMap<String, Mapping>,
) -> Result<Mapping, SpecError> {
    t.iter()
        .map(|(k, v)| {
            compile_rule(v, templates)
                .map(|r| (k.clone(), r))
                .map_err(|e| SpecError::In {
                    field: k.clone(),
                    source: Box::new(e),
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Mapping)
}

impl Mapping {
    /// Compiles a mapping table, with the connector's named templates. Errors name the field.
    pub fn compile(table: &toml::Table, templates: &toml::Table) -> Result<Mapping, SpecError> {
        let mut compiled = HashMap::new();
        for (name, t) in templates {
            let toml::Value::Table(t) = t else {
                return Err(SpecError::TemplateShape { name: name.clone() });
            };
            let m = compile_table(t, &compiled).map_err(|e| SpecError::Template {
                name: name.clone(),
                source: Box::new(e),
            })?;
            compiled.insert(name.clone(), m);
        }
        compile_table(table, &compiled)
    }

    /// Applies the mapping to a payload. Absent source values leave the field out; present
    /// values of the wrong shape are an error.
    pub fn apply(&self, source: &Value) -> Result<Map<String, Value>, MappingError> {
        let mut out = Map::new();
        for (field, rule) in &self.0 {
            if let Some(v) =
                apply_rule(rule, source).map_err(|e| MappingError(format!("{field}: {e}")))?
            {
                out.insert(field.clone(), v);
            }
        }
        Ok(out)
    }

    /// Canonical field names this mapping writes at the top level.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(f, _)| f.as_str())
    }

    /// Nested mappings, for schema checks: (field, nested mapping).
    pub fn nested(&self) -> impl Iterator<Item = (&str, &Mapping)> {
        self.0.iter().filter_map(|(f, r)| match r {
            Rule::Object { fields, .. }
            | Rule::Each {
                fields: Some(fields),
                ..
            } => Some((f.as_str(), fields)),
            _ => None,
        })
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn apply_rule(rule: &Rule, source: &Value) -> Result<Option<Value>, String> {
    Ok(match rule {
        Rule::Const(v) => Some(v.clone()),
        Rule::Path(p) => match p.get(source) {
            Some(v @ (Value::Object(_) | Value::Array(_))) => {
                return Err(format!(
                    "expected a value, found {}",
                    if v.is_array() { "a list" } else { "a record" }
                ));
            }
            other => other.cloned(),
        },
        Rule::Date { path, layout } => match path.get(source) {
            None => None,
            Some(v) => {
                let text = scalar_text(v).ok_or("date is not text")?;
                if text.is_empty() {
                    None
                } else {
                    Some(Value::String(
                        layout
                            .to_iso(&text)
                            .ok_or("date does not match the declared layout")?,
                    ))
                }
            }
        },
        Rule::Values {
            path,
            table,
            keep_unlisted,
        } => match path.get(source) {
            None => None,
            Some(v) => {
                let code = scalar_text(v).ok_or("code is not a scalar")?;
                match table.get(&code) {
                    Some(mapped) => Some(mapped.clone()),
                    None if *keep_unlisted => Some(v.clone()),
                    None => return Err(format!("code {code:?} is not in the declared table")),
                }
            }
        },
        Rule::Coerce { path, to } => match path.get(source) {
            None => None,
            Some(v) => Some(coerce(v, *to).ok_or_else(|| format!("value is not a {to:?}"))?),
        },
        Rule::Join { paths, sep } => {
            let parts: Vec<String> = paths
                .iter()
                .filter_map(|p| p.get(source))
                .filter_map(scalar_text)
                .filter(|s| !s.is_empty())
                .collect();
            (!parts.is_empty()).then(|| Value::String(parts.join(sep)))
        }
        Rule::Object { path, fields } => {
            let base = match path {
                None => Some(source),
                Some(p) => p.get(source),
            };
            match base {
                None => None,
                Some(b @ Value::Object(_)) => {
                    let m = fields.apply(b).map_err(|e| e.0)?;
                    (!m.is_empty()).then_some(Value::Object(m))
                }
                Some(_) => return Err("expected a record".into()),
            }
        }
        Rule::Each { path, fields } => {
            // The last segment may hold one item (an object or scalar) or several (an array).
            let items: Vec<&Value> = match path.get(source) {
                None => Vec::new(),
                Some(Value::Array(a)) => a.iter().collect(),
                Some(v) => vec![v],
            };
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(match fields {
                    Some(f) if item.is_object() => Value::Object(f.apply(item).map_err(|e| e.0)?),
                    Some(_) => return Err("expected a list of records".into()),
                    None => Value::String(scalar_text(item).ok_or("expected a list of values")?),
                });
            }
            Some(Value::Array(out))
        }
    })
}

fn coerce(v: &Value, to: Scalar) -> Option<Value> {
    match (to, v) {
        (Scalar::Bool, Value::Bool(_))
        | (Scalar::Number, Value::Number(_))
        | (Scalar::String, Value::String(_)) => Some(v.clone()),
        (Scalar::Bool, Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" => Some(Value::Bool(true)),
            "false" | "0" => Some(Value::Bool(false)),
            _ => None,
        },
        (Scalar::Number, Value::String(s)) => serde_json::from_str::<serde_json::Number>(s.trim())
            .ok()
            .map(Value::Number),
        (Scalar::String, other) => scalar_text(other).map(Value::String),
        _ => None,
    }
}

/// Turns an XML document into the JSON tree mappings read: elements by local name (namespace
/// prefixes dropped), leaf text as strings, repeated siblings as arrays.
pub fn xml_to_json(xml: &str) -> Result<Value, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("not well-formed XML: {e}"))?;
    let root = doc.root_element();
    let mut top = Map::new();
    top.insert(root.tag_name().name().to_owned(), element(root));
    Ok(Value::Object(top))
}

fn element(node: roxmltree::Node<'_, '_>) -> Value {
    let children: Vec<_> = node.children().filter(|c| c.is_element()).collect();
    if children.is_empty() {
        return Value::String(node.text().unwrap_or_default().trim().to_owned());
    }
    let mut map = Map::new();
    for child in children {
        let name = child.tag_name().name().to_owned();
        let value = element(child);
        match map.get_mut(&name) {
            None => {
                map.insert(name, value);
            }
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
        }
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping(toml_src: &str) -> Mapping {
        let t: toml::Table = toml::from_str(toml_src).expect("toml");
        let empty = toml::Table::new();
        let templates = t
            .get("templates")
            .and_then(|v| v.as_table())
            .unwrap_or(&empty);
        Mapping::compile(t["mapping"].as_table().expect("mapping"), templates).expect("compiles")
    }

    #[test]
    fn maps_paths_dates_codes_joins_lists_and_templates() {
        let m = mapping(
            r#"
            [templates.address]
            code = "Ma"
            [mapping]
            id = "A.Id"
            name = { join = ["N.Ho", "N.ChuDem", "N.Ten"] }
            born = { path = "D", date = "yyyyMMdd" }
            sex = { path = "G", values = { "1" = "male", "2" = "female" } }
            flag = { path = "F", type = "bool" }
            home = { path = "Addr", template = "address" }
            lines = { each = "L.Item", fields = { code = "C" } }
            tags = { each = "T" }
            country = { const = "VN" }
            "#,
        );
        let src = json!({
            "A": {"Id": "1"}, "N": {"Ho": "Nguyễn", "ChuDem": "Văn", "Ten": "An"}, "D": "19900102",
            "G": "1", "F": "true", "Addr": {"Ma": "00004"},
            "L": {"Item": [{"C": "4101"}, {"C": "6201"}]}, "T": "ONT"
        });
        let out = m.apply(&src).expect("maps");
        assert_eq!(
            Value::Object(out),
            json!({"id": "1", "name": "Nguyễn Văn An", "born": "1990-01-02", "sex": "male", "flag": true,
                   "home": {"code": "00004"}, "lines": [{"code": "4101"}, {"code": "6201"}], "tags": ["ONT"],
                   "country": "VN"})
        );
        let missing = m.apply(&json!({})).expect("absent values are left out");
        assert_eq!(
            Value::Object(missing),
            json!({"lines": [], "tags": [], "country": "VN"})
        );
    }

    #[test]
    fn unexpected_payloads_are_errors_not_panics() {
        let m = mapping(
            "[mapping]\nsex = { path = \"G\", values = { \"1\" = \"male\" } }\nborn = { path = \"D\", date = \"dd/MM/yyyy\" }\nid = \"A\"",
        );
        assert!(m.apply(&json!({"G": "9"})).unwrap_err().0.contains("sex"));
        assert!(
            m.apply(&json!({"D": "1990-01-02"}))
                .unwrap_err()
                .0
                .contains("born")
        );
        assert!(
            m.apply(&json!({"A": {"x": 1}}))
                .unwrap_err()
                .0
                .contains("id")
        );
        assert_eq!(
            m.apply(&json!({"D": "02/01/1990"})).expect("ok")["born"],
            "1990-01-02"
        );
    }

    #[test]
    fn bad_rules_are_named() {
        let t: toml::Table = toml::from_str("x = { paht = \"A\" }").expect("toml");
        let e = Mapping::compile(&t, &toml::Table::new()).unwrap_err();
        assert!(
            matches!(&e, SpecError::In { field, source } if field == "x"
                && matches!(**source, SpecError::UnknownKey(ref k) if k == "paht")),
            "{e:?}"
        );
        assert!(
            e.to_string().starts_with(
                "x: unknown rule key `paht`; a rule uses path, date, values, type, join"
            ),
            "{e}"
        );
    }

    #[test]
    fn xml_becomes_a_tree() {
        let v =
            xml_to_json("<s:E xmlns:s=\"u\"><s:B><C><D>1</D><D>2</D></C><X> y </X></s:B></s:E>")
                .expect("xml");
        assert_eq!(v, json!({"E": {"B": {"C": {"D": ["1", "2"]}, "X": "y"}}}));
        assert!(xml_to_json("<a><b></a>").is_err());
    }
}
