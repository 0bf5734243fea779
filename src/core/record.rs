//! Canonical records: a JSON object in the proto3 JSON form of the dataset's record type,
//! checked against that type, and projected to a caller's fields after any cache.

use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, SerializeOptions};
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
        // Most providers' records, once mapped, are canonical already: checking that is a
        // walk over the fields, against a round trip through a dynamic message.
        if already_canonical(desc, &fields) {
            return Ok(Record(fields));
        }
        round_trip(desc, fields)
    }

    pub fn get_str(&self, field: &str) -> Option<&str> {
        self.0.get(field).and_then(Value::as_str)
    }
}

/// `fields` through a dynamic message of the record type and back to proto3 JSON.
fn round_trip(desc: &MessageDescriptor, fields: Map<String, Value>) -> Result<Record, String> {
    {
        let message = DynamicMessage::deserialize(desc.clone(), Value::Object(fields))
            .map_err(|e| format!("does not fit {}: {e}", desc.full_name()))?;
        match proto_json(&message)? {
            Value::Object(map) => Ok(Record(map)),
            _ => Err("record did not serialise to an object".into()),
        }
    }
}

/// Whether [`Record::canonical`] would return `fields` unchanged: every key a field's proto
/// name, every value in its type's canonical proto3 JSON form, no default value present.
/// Conservative: a form it does not check (maps, bytes, floats, optional fields, well-known
/// types, enum numbers) answers no, and the round trip decides.
fn already_canonical(desc: &MessageDescriptor, fields: &Map<String, Value>) -> bool {
    fields.iter().all(|(name, value)| {
        desc.get_field_by_name(name).is_some_and(|f| {
            if f.is_map() || (f.supports_presence() && f.kind().as_message().is_none()) {
                false
            } else if f.is_list() {
                matches!(value, Value::Array(items)
                    if !items.is_empty() && items.iter().all(|v| canonical_value(&f.kind(), v, true)))
            } else {
                canonical_value(&f.kind(), value, false)
            }
        })
    })
}

/// One value of a field of `kind`; in a list, defaults are values like any other.
fn canonical_value(kind: &Kind, value: &Value, in_list: bool) -> bool {
    let set = |is_default: bool| in_list || !is_default;
    match (kind, value) {
        (Kind::String, Value::String(s)) => set(s.is_empty()),
        (Kind::Bool, Value::Bool(b)) => set(!b),
        (Kind::Int32 | Kind::Sint32 | Kind::Sfixed32, Value::Number(n)) => n
            .as_i64()
            .is_some_and(|i| i32::try_from(i).is_ok() && set(i == 0)),
        (Kind::Uint32 | Kind::Fixed32, Value::Number(n)) => n
            .as_u64()
            .is_some_and(|i| u32::try_from(i).is_ok() && set(i == 0)),
        // 64-bit integers are strings in proto3 JSON, in their plain decimal form.
        (Kind::Int64 | Kind::Sint64 | Kind::Sfixed64, Value::String(s)) => s
            .parse::<i64>()
            .is_ok_and(|i| i.to_string() == *s && set(i == 0)),
        (Kind::Uint64 | Kind::Fixed64, Value::String(s)) => s
            .parse::<u64>()
            .is_ok_and(|i| i.to_string() == *s && set(i == 0)),
        // A double is written back as a float, so an integer-looking number is not canonical.
        (Kind::Double, Value::Number(n)) => n
            .as_f64()
            .is_some_and(|f| n.is_f64() && f.is_finite() && set(f == 0.0)),
        (Kind::Enum(e), Value::String(s)) => {
            e.get_value_by_name(s).is_some_and(|v| set(v.number() == 0))
        }
        (Kind::Message(m), Value::Object(o)) => {
            !m.full_name().starts_with("google.protobuf.") && already_canonical(m, o)
        }
        _ => false,
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
    use serde_json::json;

    #[test]
    fn records_already_canonical_skip_the_round_trip_and_it_would_not_change_them() {
        let pool = crate::core::dataset::descriptors();
        let desc = |name: &str| pool.get_message_by_name(name).expect("record type");
        let (enterprise, parcel) = (
            desc("lienthong.v1.Enterprise"),
            desc("lienthong.v1.LandParcel"),
        );
        let canonical = [
            (
                &enterprise,
                json!({
                    "enterprise_code": "0101234567", "name": "CÔNG TY TNHH AN BÌNH",
                    "charter_capital": "5000000000", "status": "operating",
                    "head_office": {"province_code": "01", "detail": "Số 1"},
                    "legal_representatives": [{"full_name": "Trần Thị Bình", "title": "Giám đốc"}],
                    "business_lines": [{"vsic_code": "6201", "name": "Lập trình", "main": true},
                                       {"vsic_code": "6202", "name": "Tư vấn"}]
                }),
            ),
            (
                &parcel,
                json!({
                    "parcel_id": "00004-12-345", "commune_code": "00004", "map_sheet": 12,
                    "parcel_number": 345, "area_m2": 152.5, "land_use_purposes": ["ONT", ""],
                    "mortgaged": true, "address": {}
                }),
            ),
        ];
        for (d, v) in &canonical {
            let fields = v.as_object().cloned().expect("object");
            assert!(already_canonical(d, &fields), "{v}");
            assert_eq!(round_trip(d, fields.clone()).expect("fits"), Record(fields));
        }
        // Forms the round trip changes (or refuses) are never taken as canonical.
        let changed = [
            (&enterprise, json!({"charter_capital": 5000000000u64})),
            (&enterprise, json!({"charter_capital": "05"})),
            (&enterprise, json!({"charter_capital": "0"})),
            (&enterprise, json!({"name": ""})),
            (&enterprise, json!({"legal_representatives": []})),
            (&enterprise, json!({"business_lines": [{"main": false}]})),
            (
                &enterprise,
                json!({"business_lines": [{"vsic_code": "6202", "name": ""}]}),
            ),
            (&enterprise, json!({"enterpriseCode": "0101234567"})),
            (&enterprise, json!({"nope": "x"})),
            (&parcel, json!({"map_sheet": 0})),
            (&parcel, json!({"map_sheet": -1})),
            (&parcel, json!({"map_sheet": 4294967296u64})),
            (&parcel, json!({"area_m2": 152})),
            (&parcel, json!({"area_m2": 0.0})),
            (&parcel, json!({"mortgaged": false})),
            (&parcel, json!({"mortgaged": "true"})),
        ];
        for (d, v) in &changed {
            let fields = v.as_object().cloned().expect("object");
            assert!(!already_canonical(d, &fields), "{v}");
            if let Ok(r) = round_trip(d, fields.clone()) {
                assert_ne!(r, Record(fields), "{v} is canonical after all");
            }
        }
    }

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
