//! Datasets: a named record type behind one key, with its key validator and field schema.
//!
//! Three are built in, with record types compiled from `proto/`. Providers register more at
//! run time (the datasets file, or `/admin/v1/datasets`): a flat field schema from which a
//! record type is built into a descriptor pool at load, and a key validator that is either a
//! built-in one or a regular expression.

use crate::config::Errors;
use crate::config::raw::RawDatasets;
use crate::domain::ids::{EnterpriseCode, ParcelId, PersonalId};
use prost_reflect::prost_types::field_descriptor_proto;
use prost_reflect::{DescriptorPool, Kind, MessageDescriptor};
use regex::Regex;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::LazyLock;

mod composite;
mod schema;

pub use composite::Composite;
pub use schema::{FieldSpec, build_record};

static DESCRIPTORS: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)
        .expect("the build's descriptor set decodes")
});

/// Descriptors of every message compiled into the binary (lienthong's and the providers').
pub fn descriptors() -> &'static DescriptorPool {
    &DESCRIPTORS
}

/// The built-in key validators, by the name config uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    PersonalId,
    EnterpriseCode,
    ParcelId,
}

impl KeyKind {
    pub const ALL: [(&'static str, KeyKind); 3] = [
        ("personal_id", KeyKind::PersonalId),
        ("enterprise_code", KeyKind::EnterpriseCode),
        ("parcel_id", KeyKind::ParcelId),
    ];

    pub fn by_name(name: &str) -> Option<KeyKind> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map(|(n, _)| *n)
            .expect("every kind is named")
    }

    /// Validates and normalises a key. `current_year` bounds plausible birth years.
    pub fn normalize(self, key: &str, current_year: i32) -> Result<String, String> {
        match self {
            KeyKind::PersonalId => PersonalId::parse(key, current_year).map(|k| k.to_string()),
            KeyKind::EnterpriseCode => EnterpriseCode::parse(key).map(|k| k.to_string()),
            KeyKind::ParcelId => ParcelId::parse(key).map(|k| k.to_string()),
        }
        .map_err(|e| e.0)
    }
}

/// How a dataset's keys are checked: a built-in validator (structure and check digits) or a
/// regular expression the whole key must match.
#[derive(Debug, Clone)]
pub enum KeyRule {
    Builtin(KeyKind),
    Pattern(Regex),
    /// Several named parts, each with its rule, joined by a separator.
    Composite(Composite),
}

/// A dataset's schema, as registered, that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("is longer than 200 characters")]
    PatternTooLong,
    #[error("is not a regular expression: {0}")]
    Pattern(#[from] regex::Error),
    #[error("the record type does not build: {0}")]
    Descriptor(#[from] prost_reflect::DescriptorError),
    #[error("the record type was not built")]
    NotBuilt,
}

impl KeyRule {
    /// A pattern rule; the expression is anchored at both ends.
    pub fn pattern(expression: &str) -> Result<KeyRule, SchemaError> {
        if expression.len() > 200 {
            return Err(SchemaError::PatternTooLong);
        }
        Ok(KeyRule::Pattern(Regex::new(&format!(
            "^(?:{expression})$"
        ))?))
    }

    /// Validates and normalises a key (a pattern key is only trimmed).
    pub fn normalize(&self, key: &str, current_year: i32) -> Result<String, String> {
        match self {
            KeyRule::Builtin(kind) => kind.normalize(key, current_year),
            KeyRule::Composite(c) => c.normalize(key),
            KeyRule::Pattern(re) => {
                let key = key.trim();
                if re.is_match(key) {
                    Ok(key.to_owned())
                } else {
                    let shown = re.as_str();
                    Err(format!(
                        "does not match the dataset's key pattern {}",
                        &shown[4..shown.len() - 2]
                    ))
                }
            }
        }
    }

    /// The rule as config and the admin API write it.
    pub fn to_json(&self) -> Value {
        match self {
            KeyRule::Builtin(kind) => json!({ "builtin": kind.name() }),
            KeyRule::Composite(c) => c.to_json(),
            KeyRule::Pattern(re) => {
                let shown = re.as_str();
                json!({ "pattern": &shown[4..shown.len() - 2] })
            }
        }
    }

    /// What separates a key's parts: a composite key's separator; `-` for the others
    /// (which request templates split by, for `{key.N}`).
    pub fn separator(&self) -> char {
        match self {
            KeyRule::Composite(c) => c.separator,
            _ => '-',
        }
    }

    /// A composite key's part names, in order; empty for the others.
    pub fn part_names(&self) -> Vec<String> {
        match self {
            KeyRule::Composite(c) => c.names().map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    }

    /// A normalised key's parts: one per part of a composite key; the whole key otherwise.
    pub fn split<'k>(&self, key: &'k str) -> Vec<&'k str> {
        match self {
            KeyRule::Composite(c) => key.split(c.separator).collect(),
            _ => vec![key],
        }
    }
}

/// A dataset the gateway serves.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub key: KeyRule,
    /// The canonical record fields that hold the key: one, or one per part of a composite
    /// key, in order.
    pub key_fields: Vec<String>,
    pub record: MessageDescriptor,
    /// Who owns the data (the provider agency).
    pub owner: String,
    pub description: String,
    /// Compiled in (its schema and key rule do not change).
    pub builtin: bool,
    /// Switched off by its owner: lookups are refused, grants and connector stay.
    pub disabled: bool,
    /// Top-level fields in which people other than the subject appear by personal id
    /// (parents, spouse, representatives, land users): disclosing one is indexed for
    /// those people's access reports.
    pub person_fields: Vec<String>,
}

impl Dataset {
    /// Top-level field names of the canonical record.
    pub fn fields(&self) -> impl Iterator<Item = String> + '_ {
        self.record.fields().map(|f| f.name().to_owned())
    }

    pub fn has_field(&self, name: &str) -> bool {
        self.record.get_field_by_name(name).is_some()
    }

    /// What a connector's records depend on: name, key rule, key field, fields and types
    /// (not the description, not whether it is switched off).
    pub fn schema_fingerprint(&self) -> String {
        let mut v = self.to_json();
        if let Some(o) = v.as_object_mut() {
            o.remove("description");
            o.remove("disabled");
        }
        v.to_string()
    }

    /// The dataset as the admin API shows it: schema, key rule, owner, state.
    pub fn to_json(&self) -> Value {
        let fields: Vec<Value> = self
            .record
            .fields()
            .map(|f| {
                let mut field = field_json(&f);
                if self.person_fields.iter().any(|p| p == f.name()) {
                    field["personal_id"] = json!(true);
                }
                field
            })
            .collect();
        let mut v = json!({
            "name": self.name,
            "owner": self.owner,
            "description": self.description,
            "key": self.key.to_json(),
            "fields": fields,
            "builtin": self.builtin,
            "disabled": self.disabled,
        });
        match self.key_fields.as_slice() {
            [one] => v["key_field"] = json!(one),
            all => v["key_fields"] = json!(all),
        }
        v
    }
}

/// A field as the admin API shows it; a registered dataset's nested record with its fields.
fn field_json(f: &prost_reflect::FieldDescriptor) -> Value {
    let mut field = json!({ "name": f.name(), "type": type_name(&f.kind()) });
    if let Kind::Message(m) = f.kind()
        && m.full_name().starts_with(schema::PACKAGE)
    {
        field["type"] = json!("record");
        field["fields"] = Value::Array(m.fields().map(|f| field_json(&f)).collect());
    }
    if f.is_list() {
        field["repeated"] = json!(true);
    }
    field
}

/// Field types a registered dataset may use, with their proto types.
pub const FIELD_TYPES: [(&str, field_descriptor_proto::Type); 6] = [
    ("string", field_descriptor_proto::Type::String),
    ("int32", field_descriptor_proto::Type::Int32),
    ("int64", field_descriptor_proto::Type::Int64),
    ("uint32", field_descriptor_proto::Type::Uint32),
    ("double", field_descriptor_proto::Type::Double),
    ("bool", field_descriptor_proto::Type::Bool),
];

fn type_name(kind: &Kind) -> String {
    match kind {
        Kind::String => "string".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Uint32 => "uint32".into(),
        Kind::Uint64 => "uint64".into(),
        Kind::Double => "double".into(),
        Kind::Float => "float".into(),
        Kind::Bool => "bool".into(),
        Kind::Message(m) => m.full_name().to_owned(),
        Kind::Enum(e) => e.full_name().to_owned(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The built-in datasets' names, as callers, configs and audit records spell them.
pub const POPULATION_CITIZEN: &str = "population.citizen";
pub const BUSINESS_ENTERPRISE: &str = "business.enterprise";
pub const LAND_PARCEL: &str = "land.parcel";

/// The three built-in datasets.
pub fn builtin() -> Vec<Dataset> {
    let message = |name: &str| {
        descriptors()
            .get_message_by_name(name)
            .expect("built-in record type")
    };
    let dataset = |name: &str, kind, key_field: &str, record: &str, description: &str| Dataset {
        name: name.into(),
        key: KeyRule::Builtin(kind),
        key_fields: vec![key_field.into()],
        record: message(record),
        owner: name.split('.').next().unwrap_or_default().into(),
        description: description.into(),
        builtin: true,
        disabled: false,
        person_fields: match name {
            POPULATION_CITIZEN => vec![
                "household_head_id",
                "father",
                "mother",
                "spouse",
                "legal_representative",
            ],
            BUSINESS_ENTERPRISE => vec!["legal_representatives"],
            _ => vec!["land_users"],
        }
        .into_iter()
        .map(String::from)
        .collect(),
    };
    vec![
        dataset(
            POPULATION_CITIZEN,
            KeyKind::PersonalId,
            "personal_id",
            "lienthong.v1.Citizen",
            "Citizens in the national population database, by 12-digit personal id",
        ),
        dataset(
            BUSINESS_ENTERPRISE,
            KeyKind::EnterpriseCode,
            "enterprise_code",
            "lienthong.v1.Enterprise",
            "Enterprises and branches in the national business registration database",
        ),
        dataset(
            LAND_PARCEL,
            KeyKind::ParcelId,
            "parcel_id",
            "lienthong.v1.LandParcel",
            "Land parcels in the cadastre, by commune, map sheet and parcel number",
        ),
    ]
}

/// The built-in datasets, changed by the datasets file (switched off), and the datasets it
/// registers, each with a record type built from its field schema.
pub fn from_settings(raw: RawDatasets, e: &mut Errors<'_>) -> Vec<Dataset> {
    static NAME: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new("^[a-z][a-z0-9_]{0,39}\\.[a-z][a-z0-9_]{0,39}$").expect("valid")
    });
    let mut all = builtin();
    let mut pool = descriptors().clone();
    let mut seen = HashSet::new();
    for (i, d) in raw.dataset.into_iter().enumerate() {
        let key = format!("dataset[{i}]");
        if !seen.insert(d.name.clone()) {
            e.add(
                format!("{key}.name"),
                format!("{:?} is declared twice", d.name),
            );
            continue;
        }
        if let Some(existing) = all.iter_mut().find(|b| b.builtin && b.name == d.name) {
            // A built-in dataset may only be switched off (its schema is compiled in).
            let changes_more = d.key.is_some()
                || d.key_field.is_some()
                || !d.key_fields.is_empty()
                || !d.field.is_empty()
                || !d.description.is_empty();
            if changes_more {
                e.add(
                    key,
                    format!("{} is built in: only `disabled` may be set for it", d.name),
                );
            }
            existing.disabled = d.disabled;
            continue;
        }
        if !NAME.is_match(&d.name) {
            e.add(
                format!("{key}.name"),
                format!(
                    "{:?} is not a dataset name like \"tax.status\" (owner agency, a dot, the record; lower case, digits, _)",
                    d.name
                ),
            );
            continue;
        }
        let owner = d.name.split('.').next().unwrap_or_default().to_owned();
        let fields = schema::fields(&key, &d.field, 1, e);
        let field_names: HashSet<String> = d.field.iter().map(|f| f.name.clone()).collect();
        let person_fields: Vec<String> = d
            .field
            .iter()
            .filter(|f| {
                f.personal_id
                    && d.key_field.as_deref() != Some(f.name.as_str())
                    && !d.key_fields.contains(&f.name)
            })
            .map(|f| f.name.clone())
            .collect();
        if d.field.is_empty() {
            e.add(format!("{key}.field"), "a dataset needs at least one field");
        }
        let key_fields: Vec<String> = match (&d.key_field, d.key_fields.as_slice()) {
            (Some(one), []) => vec![one.clone()],
            (None, many @ [_, ..]) => many.to_vec(),
            (None, []) => {
                e.add(
                    format!("{key}.key_field"),
                    "missing: name the field that holds the key (key_fields for a composite key)",
                );
                Vec::new()
            }
            (Some(_), _) => {
                e.add(
                    format!("{key}.key_fields"),
                    "give key_field (one field) or key_fields (a composite key's), not both",
                );
                Vec::new()
            }
        };
        for key_field in &key_fields {
            match fields.iter().find(|f| &f.name == key_field) {
                None if field_names.contains(key_field) => {}
                None => e.add(
                    format!("{key}.key_field"),
                    format!("{key_field:?} is not one of the dataset's fields"),
                ),
                Some(f) if f.repeated || f.kind != FIELD_TYPES[0].1 || !f.nested.is_empty() => e
                    .add(
                        format!("{key}.key_field"),
                        format!("{key_field:?} must be a single string field"),
                    ),
                Some(_) => {}
            }
        }
        let rule = match d
            .key
            .as_ref()
            .map(|k| (k.builtin.as_deref(), k.pattern.as_deref(), k))
        {
            Some((None, None, k)) if !k.parts.is_empty() => {
                match Composite::from_settings(&k.parts, k.separator.as_deref()) {
                    Ok(c) if c.parts.len() == key_fields.len() => Some(KeyRule::Composite(c)),
                    Ok(c) => {
                        e.add(
                            format!("{key}.key_fields"),
                            format!(
                                "the key has {} parts ({}): name one field for each, in order",
                                c.parts.len(),
                                c.names().collect::<Vec<_>>().join(", ")
                            ),
                        );
                        None
                    }
                    Err(m) => {
                        e.add(format!("{key}.key.parts"), m);
                        None
                    }
                }
            }
            Some((_, _, k)) if k.separator.is_some() || !k.parts.is_empty() => {
                e.add(
                    format!("{key}.key"),
                    "parts and separator make a composite key, without builtin or pattern",
                );
                None
            }
            _ if key_fields.len() > 1 => {
                e.add(
                    format!("{key}.key_fields"),
                    "several key fields need a composite key: key = { parts = [{ name, pattern }, …] }",
                );
                None
            }
            Some((Some(b), None, _)) => match KeyKind::by_name(b) {
                Some(kind) => Some(KeyRule::Builtin(kind)),
                None => {
                    e.add(
                        format!("{key}.key.builtin"),
                        format!(
                            "{b:?} is not a built-in validator; use one of: {}",
                            KeyKind::ALL
                                .iter()
                                .map(|(n, _)| *n)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                    None
                }
            },
            Some((None, Some(p), _)) => match KeyRule::pattern(p) {
                Ok(rule) => Some(rule),
                Err(m) => {
                    e.add(format!("{key}.key.pattern"), m.to_string());
                    None
                }
            },
            _ => {
                e.add(
                    format!("{key}.key"),
                    "give one of: key = { builtin = \"personal_id\" }, key = { pattern = \"REGEX\" } or key = { parts = [{ name, pattern }, …] }",
                );
                None
            }
        };
        let (Some(rule), true) = (rule, fields.len() == d.field.len() && !fields.is_empty()) else {
            continue;
        };
        match build_record(&mut pool, &d.name, &fields) {
            Ok(record) => all.push(Dataset {
                name: d.name,
                key: rule,
                key_fields,
                record,
                owner,
                description: d.description,
                builtin: false,
                disabled: d.disabled,
                person_fields,
            }),
            Err(m) => e.add(key, format!("its record type cannot be built: {m}")),
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_schema_builds_a_record_type_that_checks_records() {
        let mut pool = descriptors().clone();
        let fields = vec![
            FieldSpec {
                name: "code".into(),
                kind: field_descriptor_proto::Type::String,
                repeated: false,
                nested: Vec::new(),
            },
            FieldSpec {
                name: "employees".into(),
                kind: field_descriptor_proto::Type::Int32,
                repeated: false,
                nested: Vec::new(),
            },
            FieldSpec {
                name: "lines".into(),
                kind: field_descriptor_proto::Type::String,
                repeated: true,
                nested: Vec::new(),
            },
        ];
        let record = build_record(&mut pool, "tax.status", &fields).expect("builds");
        let ok = crate::domain::record::Record::canonical(
            &record,
            json!({"code": "0101234567", "employees": 12, "lines": ["a", "b"]})
                .as_object()
                .cloned()
                .unwrap(),
        )
        .expect("fits");
        assert_eq!(ok.0["employees"], json!(12));
        let wrong = crate::domain::record::Record::canonical(
            &record,
            json!({"employees": "many"}).as_object().cloned().unwrap(),
        );
        assert!(wrong.is_err(), "a string is not an int32");
        let unknown = crate::domain::record::Record::canonical(
            &record,
            json!({"owner": "x"}).as_object().cloned().unwrap(),
        );
        assert!(unknown.is_err(), "a field outside the schema is refused");
    }

    #[test]
    fn pattern_keys_match_whole() {
        let rule = KeyRule::pattern("[0-9]{4}-[A-Z]{2}").expect("valid");
        assert_eq!(rule.normalize(" 1234-AB ", 2026).unwrap(), "1234-AB");
        let refused = rule.normalize("x1234-AB", 2026).unwrap_err();
        assert!(refused.contains("[0-9]{4}-[A-Z]{2}"), "{refused}");
        assert_eq!(rule.to_json(), json!({"pattern": "[0-9]{4}-[A-Z]{2}"}));
        assert!(KeyRule::pattern("(").is_err());
    }

    #[test]
    fn person_fields_are_the_built_ins_and_those_a_schema_marks() {
        let citizen = builtin().into_iter().next().expect("citizen");
        assert!(citizen.person_fields.contains(&"father".to_owned()));
        assert!(!citizen.person_fields.contains(&"personal_id".to_owned()));
        let raw: crate::config::raw::RawDatasets = toml::from_str(
            r#"
            [[dataset]]
            name = "tax.household"
            key_field = "code"
            key = { pattern = "[0-9]{10}" }
            [[dataset.field]]
            name = "code"
            type = "string"
            personal_id = true
            [[dataset.field]]
            name = "owner_id"
            type = "string"
            personal_id = true
            [[dataset.field]]
            name = "members"
            type = "string"
            repeated = true
            personal_id = true
            [[dataset.field]]
            name = "size"
            type = "int32"
            "#,
        )
        .expect("toml");
        let mut all = Vec::new();
        let datasets = from_settings(
            raw,
            &mut Errors {
                file: "datasets.toml".into(),
                all: &mut all,
            },
        );
        assert!(all.is_empty(), "{all:?}");
        let tax = datasets
            .iter()
            .find(|d| d.name == "tax.household")
            .expect("registered");
        // The key field is the subject itself, not a person who appears.
        assert_eq!(tax.person_fields, ["owner_id", "members"]);
        assert_eq!(tax.to_json()["fields"][1]["personal_id"], true);
        let bad: crate::config::raw::RawDatasets = toml::from_str(
            r#"
            [[dataset]]
            name = "tax.other"
            key_field = "code"
            key = { pattern = "[0-9]{10}" }
            [[dataset.field]]
            name = "code"
            type = "string"
            [[dataset.field]]
            name = "size"
            type = "int32"
            personal_id = true
            "#,
        )
        .expect("toml");
        from_settings(
            bad,
            &mut Errors {
                file: "datasets.toml".into(),
                all: &mut all,
            },
        );
        assert_eq!(all.len(), 1);
        assert!(all[0].key.ends_with("personal_id"), "{:?}", all[0]);
    }
}
