//! Canonical records: a JSON object in the proto3 JSON form of the dataset's record type,
//! checked against that type, and projected to a caller's fields after any cache.

use prost_reflect::{DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::{Map, Value};

/// A canonical record (full, as the provider gave it, or projected).
#[derive(Debug, Clone, PartialEq)]
pub struct Record(pub Map<String, Value>);

/// A dynamic message in proto3 JSON form with proto field names and defaults omitted: the
/// form of canonical records and of gRPC payloads before mapping.
pub fn proto_json(message: &DynamicMessage) -> Result<Value, String> {
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(true);
    message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| e.to_string())
}

impl Record {
    /// Checks mapped fields against the record type and returns them in canonical proto3
    /// JSON form (proto field names, defaults omitted). A mismatch names the field.
    pub fn canonical(
        desc: &MessageDescriptor,
        fields: Map<String, Value>,
    ) -> Result<Record, String> {
        let message = DynamicMessage::deserialize(desc.clone(), Value::Object(fields))
            .map_err(|e| format!("does not fit {}: {e}", desc.full_name()))?;
        match proto_json(&message)? {
            Value::Object(map) => Ok(Record(map)),
            _ => Err("record did not serialise to an object".into()),
        }
    }

    /// Only the named top-level fields.
    pub fn project(&self, fields: &[String]) -> Record {
        Record(
            self.0
                .iter()
                .filter(|(k, _)| fields.iter().any(|f| f == *k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    pub fn get_str(&self, field: &str) -> Option<&str> {
        self.0.get(field).and_then(Value::as_str)
    }
}
