//! Request templates in connector config: strings with placeholders filled per call.
//!
//! Placeholders: `{key}` (the normalised key), `{key.N}` (its N-th part from 0, parts
//! separated by hyphens or by a composite key's separator), `{key.NAME}` (a composite key's
//! part by name),
//! `{request_id}`, `{context.procedure_code|dossier_id|officer_id|agency_code|purpose}`,
//! `{auth.user}`. A string that is exactly one placeholder keeps the value's place in JSON.

use serde_json::Value;

/// A request template that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed placeholder in {0:?}")]
    Unclosed(String),
    #[error(
        "placeholder {{{0}}}: context has procedure_code, dossier_id, officer_id, agency_code, purpose"
    )]
    ContextField(String),
    #[error(
        "unknown placeholder {{{0}}}; use key, key.N, key.PART, request_id, context.FIELD or auth.user"
    )]
    Unknown(String),
}
/// The values a template can draw on for one call.
pub struct Vars<'a> {
    pub key: &'a str,
    pub request_id: &'a str,
    pub context: &'a crate::domain::context::CallContext,
    pub auth_user: &'a str,
    /// What separates the key's parts, and a composite key's part names in order.
    pub separator: char,
    pub part_names: &'a [String],
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Key,
    KeySegment(usize),
    KeyNamed(String),
    RequestId,
    Context(&'static str),
    AuthUser,
}

/// A parsed template string.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Template(Vec<Part>);

const CONTEXT_FIELDS: &[&str] = &[
    "procedure_code",
    "dossier_id",
    "officer_id",
    "agency_code",
    "purpose",
];

impl Template {
    pub fn parse(s: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find('{') {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| TemplateError::Unclosed(s.to_owned()))?
                + start;
            let name = &rest[start + 1..end];
            parts.push(match name {
                "key" => Part::Key,
                "request_id" => Part::RequestId,
                "auth.user" => Part::AuthUser,
                _ => {
                    if let Some(n) = name.strip_prefix("key.") {
                        match n.parse() {
                            Ok(n) => Part::KeySegment(n),
                            Err(_) if is_part_name(n) => Part::KeyNamed(n.to_owned()),
                            Err(_) => return Err(TemplateError::Unknown(name.to_owned())),
                        }
                    } else if let Some(field) = name.strip_prefix("context.") {
                        Part::Context(
                            CONTEXT_FIELDS
                                .iter()
                                .find(|f| **f == field)
                                .ok_or_else(|| TemplateError::ContextField(name.to_owned()))?,
                        )
                    } else {
                        return Err(TemplateError::Unknown(name.to_owned()));
                    }
                }
            });
            rest = &rest[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Template(parts))
    }

    pub fn render(&self, vars: &Vars<'_>) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Key => out.push_str(vars.key),
                Part::KeySegment(n) => {
                    out.push_str(vars.key.split(vars.separator).nth(*n).unwrap_or_default())
                }
                Part::KeyNamed(name) => {
                    let at = vars.part_names.iter().position(|p| p == name);
                    let part = at.and_then(|n| vars.key.split(vars.separator).nth(n));
                    out.push_str(part.unwrap_or_default())
                }
                Part::RequestId => out.push_str(vars.request_id),
                Part::Context(field) => out.push_str(vars.context.field(field)),
                Part::AuthUser => out.push_str(vars.auth_user),
            }
        }
        out
    }
}

impl Template {
    /// The key parts it names (`{key.NAME}`), added to `out`.
    pub fn key_names(&self, out: &mut Vec<String>) {
        for p in &self.0 {
            if let Part::KeyNamed(n) = p {
                out.push(n.clone());
            }
        }
    }
}

fn is_part_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A JSON value whose strings are templates.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonTemplate {
    Plain(Value),
    String(Template),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    /// The key parts its strings name (`{key.NAME}`), added to `out`.
    pub fn key_names(&self, out: &mut Vec<String>) {
        match self {
            JsonTemplate::Plain(_) => {}
            JsonTemplate::String(t) => t.key_names(out),
            JsonTemplate::Array(items) => items.iter().for_each(|i| i.key_names(out)),
            JsonTemplate::Object(fields) => fields.iter().for_each(|(_, v)| v.key_names(out)),
        }
    }

    pub fn parse(value: &Value) -> Result<JsonTemplate, TemplateError> {
        Ok(match value {
            Value::String(s) => JsonTemplate::String(Template::parse(s)?),
            Value::Array(items) => JsonTemplate::Array(
                items
                    .iter()
                    .map(JsonTemplate::parse)
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => JsonTemplate::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), JsonTemplate::parse(v)?)))
                    .collect::<Result<_, TemplateError>>()?,
            ),
            other => JsonTemplate::Plain(other.clone()),
        })
    }

    pub fn render(&self, vars: &Vars<'_>) -> Value {
        match self {
            JsonTemplate::Plain(v) => v.clone(),
            JsonTemplate::String(t) => Value::String(t.render(vars)),
            JsonTemplate::Array(items) => {
                Value::Array(items.iter().map(|i| i.render(vars)).collect())
            }
            JsonTemplate::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.render(vars)))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::context::CallContext;

    #[test]
    fn renders_placeholders() {
        let ctx = CallContext::for_tests("1.001612", "000.00.53.H48-220921-0099", "cb01");
        let vars = Vars {
            key: "00004-12-345",
            request_id: "r1",
            context: &ctx,
            auth_user: "u",
            separator: '-',
            part_names: &[],
        };
        let t = Template::parse("x{key.1}/{context.procedure_code}/{request_id}{auth.user}")
            .expect("parses");
        assert_eq!(t.render(&vars), "x12/1.001612/r1u");
        // A composite key's parts, by name or by number, split by its own separator.
        let names = ["book".to_owned(), "page".to_owned()];
        let composite = Vars {
            key: "01.0042",
            separator: '.',
            part_names: &names,
            ..vars
        };
        let t = Template::parse("{key.page}/{key.book}/{key.0}/{key.2}").expect("parses");
        assert_eq!(t.render(&composite), "0042/01/01/");
        let mut named = Vec::new();
        t.key_names(&mut named);
        assert_eq!(named, ["page", "book"]);
        assert!(Template::parse("{key.Page}").is_err());
        assert!(Template::parse("{nope}").is_err());
        assert!(Template::parse("{context.secret}").is_err());
        assert!(Template::parse("{key").is_err());
    }
}
