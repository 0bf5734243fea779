//! Canonical records: a JSON object in the proto3 JSON form of the dataset's record type,
//! checked against that type, and projected to a caller's fields after any cache.

use prost_reflect::{DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::{Map, Value};
use std::sync::Arc;

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

    pub fn get_str(&self, field: &str) -> Option<&str> {
        self.0.get(field).and_then(Value::as_str)
    }
}

/// A full record as the cache keeps it: each top-level field's canonical JSON text, in
/// record order. About the size of the JSON itself (a parsed map costs several times more),
/// and projection parses only the fields a caller may see.
#[derive(Debug)]
pub struct StoredRecord {
    fields: Box<[(Box<str>, Box<serde_json::value::RawValue>)]>,
}

impl PartialEq for StoredRecord {
    fn eq(&self, other: &StoredRecord) -> bool {
        self.fields.len() == other.fields.len()
            && self
                .fields
                .iter()
                .zip(other.fields.iter())
                .all(|((a, x), (b, y))| a == b && x.get() == y.get())
    }
}

impl StoredRecord {
    pub fn new(record: &Record) -> StoredRecord {
        StoredRecord {
            fields: record
                .0
                .iter()
                .filter_map(|(k, v)| {
                    let raw = serde_json::value::to_raw_value(v).ok()?;
                    Some((k.as_str().into(), raw))
                })
                .collect(),
        }
    }

    /// Only the named top-level fields: a view of this record, nothing parsed or copied.
    pub fn project(self: &Arc<Self>, fields: &[String]) -> Projected {
        Projected {
            keep: (0..self.fields.len())
                .filter(|&i| fields.iter().any(|f| *f == *self.fields[i].0))
                .collect(),
            record: Arc::clone(self),
        }
    }

    /// One field's value, parsed.
    pub fn get(&self, field: &str) -> Option<Value> {
        self.fields
            .iter()
            .find(|(k, _)| &**k == field)
            .and_then(|(_, raw)| serde_json::from_str(raw.get()).ok())
    }

    /// The whole record, parsed.
    #[cfg(test)]
    pub fn to_record(&self) -> Record {
        Record(
            self.fields
                .iter()
                .filter_map(|(k, raw)| Some((k.to_string(), serde_json::from_str(raw.get()).ok()?)))
                .collect(),
        )
    }
}

/// A cached record narrowed to the fields one caller may see. Written out as JSON straight
/// from the cached text of each field, so a cache hit neither parses nor re-serialises.
#[derive(Debug, Clone)]
pub struct Projected {
    record: Arc<StoredRecord>,
    keep: Vec<usize>,
}

impl Projected {
    /// The fields that leave, in record order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.keep.iter().map(|&i| &*self.record.fields[i].0)
    }

    /// The record as a JSON object's text.
    pub fn to_json(&self) -> Vec<u8> {
        let size: usize = self
            .keep
            .iter()
            .map(|&i| self.record.fields[i].0.len() + self.record.fields[i].1.get().len() + 4)
            .sum();
        let mut out = Vec::with_capacity(size + 2);
        out.push(b'{');
        for (n, &i) in self.keep.iter().enumerate() {
            let (name, raw) = &self.record.fields[i];
            if n > 0 {
                out.push(b',');
            }
            // Field names are proto identifiers, but escape them all the same.
            serde_json::to_writer(&mut out, &**name).expect("a string serialises");
            out.push(b':');
            out.extend_from_slice(raw.get().as_bytes());
        }
        out.push(b'}');
        out
    }

    /// The record as a typed message (proto3 JSON form), without going through a map.
    pub fn deserialize<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_slice(&self.to_json())
    }

    /// The record, parsed.
    pub fn to_record(&self) -> Record {
        Record(
            self.keep
                .iter()
                .filter_map(|&i| {
                    let (name, raw) = &self.record.fields[i];
                    Some((name.to_string(), serde_json::from_str(raw.get()).ok()?))
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_record_projects_and_reads_back_what_it_was_given() {
        let record = Record(
            serde_json::json!({
                "personal_id": "001094000001",
                "full_name": "Nguyễn Văn An",
                "permanent_residence": {"province_code": "01", "detail": "Số 12"},
                "aliases": ["An", "Bé"]
            })
            .as_object()
            .cloned()
            .expect("object"),
        );
        let stored = Arc::new(StoredRecord::new(&record));
        assert_eq!(stored.to_record(), record);
        let narrow = stored.project(&["full_name".into(), "aliases".into(), "nope".into()]);
        let expected = serde_json::json!({"full_name": "Nguyễn Văn An", "aliases": ["An", "Bé"]});
        assert_eq!(Value::Object(narrow.to_record().0), expected);
        // The text written straight from the cached fields is the same object, in record
        // (alphabetical) order.
        assert_eq!(
            String::from_utf8(narrow.to_json()).expect("utf-8"),
            r#"{"aliases":["An","Bé"],"full_name":"Nguyễn Văn An"}"#
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&narrow.to_json()).expect("json"),
            expected
        );
        assert_eq!(narrow.names().collect::<Vec<_>>(), ["aliases", "full_name"]);
        let none = stored.project(&[]);
        assert_eq!(none.to_json(), b"{}");
        assert_eq!(
            stored.get("permanent_residence"),
            Some(serde_json::json!({"province_code": "01", "detail": "Số 12"}))
        );
        assert_eq!(stored.get("date_of_birth"), None);
    }
}
