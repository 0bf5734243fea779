//! A registered dataset's field schema: checked from config, and built into a record type
//! (a protobuf message in a copy of the compiled descriptor pool). Fields may be nested
//! records, and any field may be repeated.

use super::FIELD_TYPES;
use crate::config::Errors;
use crate::config::raw::RawField;
use prost_reflect::prost_types::{
    DescriptorProto, FieldDescriptorProto, FileDescriptorProto, field_descriptor_proto,
};
use prost_reflect::{DescriptorPool, MessageDescriptor};
use regex::Regex;
use std::collections::HashSet;
use std::sync::LazyLock;

/// Where registered datasets' record types live in the pool.
pub(super) const PACKAGE: &str = "lienthong.datasets.";
/// How deep records may nest (a record in a record in a record...).
pub(super) const MAX_DEPTH: usize = 4;

/// One field of a registered dataset's schema.
#[derive(Debug, Clone)]
pub struct FieldSpec {
    pub name: String,
    /// The scalar type; `Message` for a nested record (with `nested`).
    pub kind: field_descriptor_proto::Type,
    pub repeated: bool,
    /// A nested record's fields (empty for a scalar).
    pub nested: Vec<FieldSpec>,
}

/// The fields of one level of a schema, checked; every mistake named under `key`.
pub(super) fn fields(
    key: &str,
    raw: &[RawField],
    depth: usize,
    e: &mut Errors<'_>,
) -> Vec<FieldSpec> {
    static FIELD: LazyLock<Regex> =
        LazyLock::new(|| Regex::new("^[a-z][a-z0-9_]{0,63}$").expect("valid"));
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (j, f) in raw.iter().enumerate() {
        let fkey = format!("{key}.field[{j}]");
        if !FIELD.is_match(&f.name) {
            e.add(
                format!("{fkey}.name"),
                format!("{:?} is not a field name (lower case, digits, _)", f.name),
            );
            continue;
        }
        if !names.insert(f.name.clone()) {
            e.add(
                format!("{fkey}.name"),
                format!("{:?} is declared twice", f.name),
            );
            continue;
        }
        if f.kind == "record" {
            if f.personal_id {
                e.add(
                    format!("{fkey}.personal_id"),
                    "only a string field can hold personal ids",
                );
            }
            if depth >= MAX_DEPTH {
                e.add(
                    format!("{fkey}.type"),
                    format!("records nest at most {MAX_DEPTH} deep"),
                );
                continue;
            }
            if f.field.is_empty() {
                e.add(
                    format!("{fkey}.fields"),
                    "a record needs its fields: \"fields\": [{\"name\": …, \"type\": …}]",
                );
                continue;
            }
            let nested = fields(&fkey, &f.field, depth + 1, e);
            if nested.len() != f.field.len() {
                continue;
            }
            out.push(FieldSpec {
                name: f.name.clone(),
                kind: field_descriptor_proto::Type::Message,
                repeated: f.repeated,
                nested,
            });
            continue;
        }
        if !f.field.is_empty() {
            e.add(
                format!("{fkey}.fields"),
                format!(
                    "only a field of type \"record\" has fields; this one is {:?}",
                    f.kind
                ),
            );
            continue;
        }
        let Some((_, kind)) = FIELD_TYPES.iter().find(|(n, _)| *n == f.kind) else {
            e.add(
                format!("{fkey}.type"),
                format!(
                    "{:?} is not a field type; use one of: {}, record",
                    f.kind,
                    FIELD_TYPES
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            continue;
        };
        if f.personal_id && *kind != FIELD_TYPES[0].1 {
            e.add(
                format!("{fkey}.personal_id"),
                "only a string field can hold personal ids",
            );
        }
        out.push(FieldSpec {
            name: f.name.clone(),
            kind: *kind,
            repeated: f.repeated,
            nested: Vec::new(),
        });
    }
    out
}

/// `ho_so_dong` -> `HoSoDong`: a nested record's message name.
fn message_name(field: &str) -> String {
    field
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A message for `fields`, named `name`, its nested records as nested messages;
/// `scope` is the message's full name.
fn message(name: &str, scope: &str, fields: &[FieldSpec]) -> DescriptorProto {
    let mut nested_type = Vec::new();
    let field = fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let type_name = (!f.nested.is_empty()).then(|| {
                let inner = message_name(&f.name);
                nested_type.push(message(&inner, &format!("{scope}.{inner}"), &f.nested));
                format!(".{scope}.{inner}")
            });
            FieldDescriptorProto {
                name: Some(f.name.clone()),
                json_name: Some(f.name.clone()),
                number: Some(i as i32 + 1),
                label: Some(if f.repeated {
                    field_descriptor_proto::Label::Repeated
                } else {
                    field_descriptor_proto::Label::Optional
                } as i32),
                r#type: Some(f.kind as i32),
                type_name,
                ..Default::default()
            }
        })
        .collect();
    DescriptorProto {
        name: Some(name.into()),
        field,
        nested_type,
        ..Default::default()
    }
}

/// Builds the record type of a registered dataset into `pool` (a copy of the compiled
/// descriptors) and returns it. Field names and types were checked by [`fields`].
pub fn build_record(
    pool: &mut DescriptorPool,
    dataset: &str,
    fields: &[FieldSpec],
) -> Result<MessageDescriptor, super::SchemaError> {
    let package = format!("{PACKAGE}{dataset}");
    let record = message("Record", &format!("{package}.Record"), fields);
    let file = FileDescriptorProto {
        name: Some(format!("lienthong/datasets/{dataset}.proto")),
        package: Some(package.clone()),
        message_type: vec![record],
        syntax: Some("proto3".into()),
        ..Default::default()
    };
    pool.add_file_descriptor_proto(file)?;
    pool.get_message_by_name(&format!("{package}.Record"))
        .ok_or(super::SchemaError::NotBuilt)
}
