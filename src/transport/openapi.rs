//! `GET /openapi.json`: the REST surface described from the code that serves it, so the two
//! cannot drift apart.
//!
//! - Paths come from the handlers' `#[utoipa::path]` annotations, registered together with
//!   the routes themselves (utoipa-axum's `routes!`): a route cannot be served undocumented.
//! - Message schemas (records, capabilities) come from the proto descriptors the handlers
//!   serialise with, by the proto3 JSON mapping with proto field names; descriptions are the
//!   `.proto` comments.
//! - Error responses come from the error-code table: for each operation, the statuses it can
//!   really answer with (the codes its handler and the door can give), naming the codes.

use crate::domain::error::ErrorCode;
use prost_reflect::{Cardinality, FieldDescriptor, Kind, MessageDescriptor};
use std::collections::BTreeMap;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::{
    ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder, security::HttpAuthScheme,
    security::HttpBuilder, security::SecurityScheme,
};

/// Name of the problem-body schema, shared by every error response.
pub const PROBLEM: &str = "Problem";

/// Completes the document the router collected: message schemas, error responses (the codes
/// `errors(method, path)` names for each operation), security.
pub fn complete(
    api: &mut OpenApi,
    pool: &prost_reflect::DescriptorPool,
    messages: &[&str],
    errors: impl Fn(&str, &str) -> Vec<ErrorCode>,
) {
    let components = api.components.get_or_insert_with(Default::default);
    let mut pending: Vec<MessageDescriptor> = messages
        .iter()
        .filter_map(|m| pool.get_message_by_name(m))
        .collect();
    while let Some(message) = pending.pop() {
        let name = message.full_name().to_owned();
        if components.schemas.contains_key(&name) {
            continue;
        }
        let (schema, referenced) = message_schema(&message);
        components.schemas.insert(name, schema.into());
        pending.extend(referenced);
    }
    components.security_schemes.insert(
        "api_key".into(),
        RefOr::T(SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An API key issued to the consumer (stored hashed at the gateway).",
                ))
                .build(),
        )),
    );
    components.security_schemes.insert(
        "client_certificate".into(),
        RefOr::T(SecurityScheme::MutualTls {
            description: Some(
                "A client certificate signed by the configured CA, mapped to a consumer by \
                 its subject CN or an alternative name."
                    .into(),
            ),
            deprecated: None,
            extensions: None,
        }),
    );
    let security = vec![
        utoipa::openapi::security::SecurityRequirement::new("api_key", Vec::<String>::new()),
        utoipa::openapi::security::SecurityRequirement::new(
            "client_certificate",
            Vec::<String>::new(),
        ),
    ];
    api.security = Some(security);

    // The problem body's `code` is one of the table's codes.
    if let Some(RefOr::T(Schema::Object(problem))) = components.schemas.get_mut(PROBLEM)
        && let Some(RefOr::T(Schema::Object(code))) = problem.properties.get_mut("code")
    {
        code.enum_values = Some(ErrorCode::ALL.iter().map(|c| c.as_str().into()).collect());
    }

    for (path, item) in api.paths.paths.iter_mut() {
        for (method, op) in [
            ("get", &mut item.get),
            ("post", &mut item.post),
            ("put", &mut item.put),
            ("delete", &mut item.delete),
            ("patch", &mut item.patch),
        ] {
            let Some(op) = op else { continue };
            let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
            for code in errors(method, path) {
                by_status
                    .entry(code.http_status().as_u16())
                    .or_default()
                    .push(code);
            }
            for (status, codes) in &by_status {
                let described = codes
                    .iter()
                    .map(|c| format!("`{}` ({})", c.as_str(), c.title()))
                    .collect::<Vec<_>>()
                    .join(", ");
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| {
                        ResponseBuilder::new()
                            .description(described)
                            .content(
                                "application/problem+json",
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name(PROBLEM)))
                                    .build(),
                            )
                            .build()
                            .into()
                    });
            }
        }
    }
}

/// The reference to a message's schema, for `body = ref(...)` in annotations.
pub fn message_ref(full_name: &str) -> String {
    format!("#/components/schemas/{full_name}")
}

/// A message as its proto3 JSON form (proto field names), and the messages it refers to.
fn message_schema(message: &MessageDescriptor) -> (Schema, Vec<MessageDescriptor>) {
    let mut referenced = Vec::new();
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(comment(message.parent_file(), message.path()));
    for field in message.fields() {
        let mut schema = field_schema(&field, &mut referenced);
        if let Some(text) = comment(field.parent_file(), field.path()) {
            schema = describe(schema, text);
        }
        object = object.property(field.name(), schema);
    }
    (object.build().into(), referenced)
}

fn describe(schema: RefOr<Schema>, text: String) -> RefOr<Schema> {
    match schema {
        RefOr::T(Schema::Object(mut o)) => {
            o.description = Some(text);
            RefOr::T(Schema::Object(o))
        }
        RefOr::T(Schema::Array(mut a)) => {
            a.description = Some(text);
            RefOr::T(Schema::Array(a))
        }
        RefOr::Ref(mut r) => {
            r.description = text;
            RefOr::Ref(r)
        }
        other => other,
    }
}

fn field_schema(field: &FieldDescriptor, referenced: &mut Vec<MessageDescriptor>) -> RefOr<Schema> {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            return ObjectBuilder::new().build().into();
        };
        let value = entry.map_entry_value_field();
        let values = single(&value.kind(), referenced);
        return ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::RefOr(values)))
            .build()
            .into();
    }
    let one = single(&field.kind(), referenced);
    if field.cardinality() == Cardinality::Repeated {
        ArrayBuilder::new().items(one).build().into()
    } else {
        one
    }
}

fn scalar(ty: Type, format: Option<KnownFormat>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(ty)
        .format(format.map(SchemaFormat::KnownFormat))
        .build()
        .into()
}

fn single(kind: &Kind, referenced: &mut Vec<MessageDescriptor>) -> RefOr<Schema> {
    match kind {
        Kind::Double => scalar(Type::Number, Some(KnownFormat::Double)),
        Kind::Float => scalar(Type::Number, Some(KnownFormat::Float)),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            scalar(Type::Integer, Some(KnownFormat::Int32))
        }
        Kind::Uint32 | Kind::Fixed32 => scalar(Type::Integer, Some(KnownFormat::Int64)),
        // proto3 JSON writes 64-bit integers as strings.
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            scalar(Type::String, Some(KnownFormat::Int64))
        }
        Kind::Uint64 | Kind::Fixed64 => scalar(Type::String, None),
        Kind::Bool => scalar(Type::Boolean, None),
        Kind::String => scalar(Type::String, None),
        Kind::Bytes => scalar(Type::String, Some(KnownFormat::Byte)),
        Kind::Enum(e) => ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(e.values().map(|v| v.name().to_owned())))
            .build()
            .into(),
        Kind::Message(m) => match m.full_name() {
            "google.protobuf.Struct" => ObjectBuilder::new()
                .schema_type(Type::Object)
                .additional_properties(Some(AdditionalProperties::FreeForm(true)))
                .build()
                .into(),
            "google.protobuf.Value" => ObjectBuilder::new().build().into(),
            "google.protobuf.Timestamp" => scalar(Type::String, Some(KnownFormat::DateTime)),
            _ => {
                referenced.push(m.clone());
                Ref::from_schema_name(m.full_name()).into()
            }
        },
    }
}

/// The leading comment of the element at `path` in its `.proto` file, tidied.
fn comment(file: prost_reflect::FileDescriptor, path: &[i32]) -> Option<String> {
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let location = info.location.iter().find(|l| l.path == path)?;
    let text = location.leading_comments.as_deref()?.trim();
    (!text.is_empty()).then(|| {
        text.lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ")
            .trim()
            .to_owned()
    })
}
