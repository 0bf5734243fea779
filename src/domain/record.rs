//! Canonical records: a JSON object in the proto3 JSON form of the dataset's record type,
//! checked against that type, and projected to a caller's fields after any cache.

use super::compact::{self, Keys, Reader};
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
        // Providers' mapped records take a few simple forms: putting those in canonical form
        // is one walk over the fields, against a round trip through a dynamic message.
        if let Some(canonical) = canonical_form(desc, &fields) {
            return Ok(Record(canonical));
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

/// What [`Record::canonical`]'s round trip makes of `fields`, worked out directly for the
/// forms providers' mapped records take: proto field names; strings, booleans, 32-bit
/// integers, enum names and nested messages as they are; 64-bit integers as decimal strings
/// (from a number or a string); doubles as floats; default values (empty, zero, false, an
/// empty list) dropped. `None` for any other form (maps, bytes, floats, optional fields,
/// well-known types, enum numbers, nulls): the round trip decides those.
fn canonical_form(
    desc: &MessageDescriptor,
    fields: &Map<String, Value>,
) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    for (name, value) in fields {
        let f = desc.get_field_by_name(name)?;
        if f.is_map() || (f.supports_presence() && f.kind().as_message().is_none()) {
            return None;
        }
        let kind = f.kind();
        let value = if f.is_list() {
            let Value::Array(items) = value else {
                return None;
            };
            if items.is_empty() {
                continue;
            }
            let items = items
                .iter()
                .map(|v| canonical_value(&kind, v, true)?)
                .collect::<Option<Vec<_>>>()?;
            Value::Array(items)
        } else {
            match canonical_value(&kind, value, false)? {
                Some(v) => v,
                None => continue,
            }
        };
        out.insert(name.clone(), value);
    }
    Some(out)
}

/// One value of a field of `kind`: `None`, a form left to the round trip; `Some(None)`, a
/// default, omitted; in a list, defaults are values like any other.
fn canonical_value(kind: &Kind, value: &Value, in_list: bool) -> Option<Option<Value>> {
    let keep = |is_default: bool, v: Value| Some((in_list || !is_default).then_some(v));
    match (kind, value) {
        (Kind::String, Value::String(s)) => keep(s.is_empty(), value.clone()),
        (Kind::Bool, Value::Bool(b)) => keep(!b, value.clone()),
        (Kind::Int32 | Kind::Sint32 | Kind::Sfixed32, Value::Number(n)) => {
            let i = i32::try_from(n.as_i64()?).ok()?;
            keep(i == 0, Value::from(i))
        }
        (Kind::Uint32 | Kind::Fixed32, Value::Number(n)) => {
            let i = u32::try_from(n.as_u64()?).ok()?;
            keep(i == 0, Value::from(i))
        }
        // 64-bit integers are decimal strings in proto3 JSON.
        (Kind::Int64 | Kind::Sint64 | Kind::Sfixed64, _) => {
            let i = match value {
                Value::Number(n) => n.as_i64()?,
                Value::String(s) => s.parse::<i64>().ok().filter(|i| i.to_string() == *s)?,
                _ => return None,
            };
            keep(i == 0, Value::String(i.to_string()))
        }
        (Kind::Uint64 | Kind::Fixed64, _) => {
            let i = match value {
                Value::Number(n) => n.as_u64()?,
                Value::String(s) => s.parse::<u64>().ok().filter(|i| i.to_string() == *s)?,
                _ => return None,
            };
            keep(i == 0, Value::String(i.to_string()))
        }
        // A double is written back as a float; integers up to 2^53 convert exactly.
        (Kind::Double, Value::Number(n)) => {
            let f = if n.is_f64() {
                n.as_f64()?
            } else {
                let i = n.as_i64()?;
                if i.unsigned_abs() > 1 << 53 {
                    return None;
                }
                i as f64
            };
            if !f.is_finite() || (f == 0.0 && f.is_sign_negative()) {
                return None;
            }
            keep(
                f == 0.0,
                serde_json::Number::from_f64(f).map(Value::Number)?,
            )
        }
        (Kind::Enum(e), Value::String(s)) => {
            keep(e.get_value_by_name(s)?.number() == 0, value.clone())
        }
        (Kind::Message(m), Value::Object(o)) if !m.full_name().starts_with("google.protobuf.") => {
            Some(Some(Value::Object(canonical_form(m, o)?)))
        }
        _ => None,
    }
}

/// The personal ids in a value: every string, at any depth, that is a valid 12-digit
/// personal id (an enterprise code or a name never is).
pub fn personal_ids(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s)
            if s.len() == 12
                && crate::domain::ids::PersonalId::parse(
                    s,
                    crate::domain::date::Date::today().year,
                )
                .is_ok() =>
        {
            out.push(s.clone())
        }
        Value::Array(items) => items.iter().for_each(|v| personal_ids(v, out)),
        Value::Object(map) => map.values().for_each(|v| personal_ids(v, out)),
        _ => {}
    }
}

/// A full record as the cache keeps it: one buffer in the [`compact`] form, its keys numbers
/// into a shared table. Its top-level fields in record order, then the people other than
/// the subject who appear in it (field, keyed reference of their personal id), made once
/// when the record entered the cache. Projection reads only the fields a caller may see,
/// and writes them as JSON mostly by copying.
/// When a record was fetched from its provider (Unix ms, and as answers write it, RFC 3339),
/// and the provider's own time of its data where its answer states one: written once, when
/// the record is stored, so that an answer from the cache formats nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freshness {
    pub fetched_ms: i64,
    pub fetched_at: String,
    pub data_time: Option<String>,
}

impl Freshness {
    fn new(fetched_ms: i64, data_ms: Option<i64>) -> Freshness {
        use crate::domain::date::iso_ms;
        Freshness {
            fetched_ms,
            fetched_at: iso_ms(fetched_ms),
            data_time: data_ms.map(iso_ms),
        }
    }
}

pub struct StoredRecord {
    /// When the gateway fetched it, and the provider's own time of the data.
    freshness: Arc<Freshness>,
    keys: Arc<Keys>,
    /// The length of the whole record as JSON text (every answer fits in it, so an answer
    /// is written into one allocation), the length of the fields, the fields as (key,
    /// value) pairs, then the mentions: a count and (field key, reference) pairs.
    bytes: Box<[u8]>,
}

/// One top-level field of a stored record: its name, and where it starts (its key) in the
/// record's bytes.
struct Field<'a> {
    name: &'a str,
    at: usize,
}

impl std::fmt::Debug for StoredRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredRecord")
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl PartialEq for StoredRecord {
    fn eq(&self, other: &StoredRecord) -> bool {
        self.whole_json() == other.whole_json() && self.mention_pairs().eq(other.mention_pairs())
    }
}

/// A writer that only counts the bytes written to it.
struct Counted(usize);

impl std::io::Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl StoredRecord {
    pub fn new(record: &Record) -> StoredRecord {
        let keys = Keys::covering(record.0.values(), record.0.keys().map(String::as_str));
        let mut fields = Vec::with_capacity(512);
        for (k, v) in &record.0 {
            compact::put_key(&mut fields, &keys, k);
            compact::put_value(&mut fields, &keys, v);
        }
        // The JSON's length, counted as it is written, not kept.
        let mut json_len = Counted(0);
        let _ = serde_json::to_writer(&mut json_len, &record.0);
        let json_len = json_len.0;
        let mut bytes = Vec::with_capacity(fields.len() + 8);
        compact::put_varint(&mut bytes, json_len as u64);
        compact::put_varint(&mut bytes, fields.len() as u64);
        bytes.extend_from_slice(&fields);
        compact::put_varint(&mut bytes, 0);
        StoredRecord {
            freshness: Arc::new(Freshness::new(crate::domain::date::now_ms(), None)),
            keys,
            bytes: bytes.into_boxed_slice(),
        }
    }

    /// The record with the provider's own time of its data (Unix ms).
    pub fn with_data_time(mut self, data_ms: Option<i64>) -> StoredRecord {
        self.freshness = Arc::new(Freshness::new(self.freshness.fetched_ms, data_ms));
        self
    }

    /// When the gateway fetched it, and the provider's own time of the data.
    pub fn freshness(&self) -> &Arc<Freshness> {
        &self.freshness
    }

    /// The record with the people who appear in it: (field, keyed reference).
    pub fn with_mentions(self, mentions: Vec<(String, String)>) -> StoredRecord {
        let mut bytes = self.bytes[..self.fields_end()].to_vec();
        compact::put_varint(&mut bytes, mentions.len() as u64);
        for (field, reference) in &mentions {
            compact::put_key(&mut bytes, &self.keys, field);
            compact::put_varint(&mut bytes, reference.len() as u64);
            bytes.extend_from_slice(reference.as_bytes());
        }
        StoredRecord {
            freshness: self.freshness,
            keys: self.keys,
            bytes: bytes.into_boxed_slice(),
        }
    }

    /// The length of the whole record as JSON text.
    fn json_len(&self) -> usize {
        Reader::new(&self.bytes).varint().unwrap_or(0) as usize
    }

    /// Where the fields start and end (the mentions start there).
    fn fields_span(&self) -> (usize, usize) {
        let mut r = Reader::new(&self.bytes);
        let _json_len = r.varint();
        let len = r.varint().unwrap_or(0) as usize;
        (r.at, (r.at + len).min(self.bytes.len()))
    }

    fn fields_end(&self) -> usize {
        self.fields_span().1
    }

    /// The top-level fields, in record order.
    fn fields(&self) -> impl Iterator<Item = Field<'_>> {
        let (start, end) = self.fields_span();
        let mut r = Reader::new(&self.bytes[..end]);
        r.at = start;
        std::iter::from_fn(move || {
            if r.done() {
                return None;
            }
            let at = r.at;
            let (name, _) = r.key(&self.keys).ok()?;
            r.skip().ok()?;
            Some(Field { name, at })
        })
    }

    /// (field, reference) pairs.
    fn mention_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut r = Reader::new(&self.bytes);
        r.at = self.fields_end();
        let count = r.varint().unwrap_or(0);
        (0..count).map_while(move |_| {
            let (field, _) = r.key(&self.keys).ok()?;
            let n = r.varint().ok()? as usize;
            let reference = std::str::from_utf8(r.take(n).ok()?).ok()?;
            Some((field, reference))
        })
    }

    /// Writes the field that starts at `at` as `"name":value`.
    fn write_field(&self, at: usize, out: &mut Vec<u8>) -> Result<(), compact::Damaged> {
        let mut r = Reader::new(&self.bytes);
        r.at = at;
        compact::write_key(&mut r, &self.keys, out)?;
        r.write_json(&self.keys, out)
    }

    /// Only the named top-level fields: a view of this record, nothing decoded or copied.
    pub fn project(self: &Arc<Self>, fields: &[String]) -> Projected {
        Projected {
            keep: self
                .fields()
                .filter(|f| fields.iter().any(|name| name == f.name))
                .map(|f| f.at)
                .collect(),
            record: Arc::clone(self),
        }
    }

    /// One field's value, parsed.
    pub fn get(&self, field: &str) -> Option<Value> {
        let f = self.fields().find(|f| f.name == field)?;
        let mut r = Reader::new(&self.bytes);
        r.at = f.at;
        r.key(&self.keys).ok()?;
        r.value(&self.keys).ok()
    }

    /// The whole record as JSON text.
    fn whole_json(&self) -> Vec<u8> {
        let all: Vec<usize> = self.fields().map(|f| f.at).collect();
        self.json_of(&all)
    }

    /// The fields starting at `keep` as a JSON object's text.
    fn json_of(&self, keep: &[usize]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.json_len() + 2);
        out.push(b'{');
        for (n, &at) in keep.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            if let Err(e) = self.write_field(at, &mut out) {
                tracing::error!(error = %e, "a cached record cannot be read; it is answered without the field");
                // Keep the text well formed: drop the half-written field.
                let cut = out
                    .iter()
                    .rposition(|b| *b == b',' || *b == b'{')
                    .unwrap_or(0);
                out.truncate(cut + 1);
            }
        }
        if out.last() == Some(&b',') {
            out.pop();
        }
        out.push(b'}');
        out
    }

    /// The whole record, parsed.
    #[cfg(test)]
    pub fn to_record(&self) -> Record {
        match serde_json::from_slice(&self.whole_json()) {
            Ok(Value::Object(map)) => Record(map),
            _ => Record(Map::new()),
        }
    }
}

/// A cached record narrowed to the fields one caller may see. Written out as JSON straight
/// from the cached bytes of each field, so a cache hit neither parses nor builds a map.
#[derive(Debug, Clone)]
pub struct Projected {
    record: Arc<StoredRecord>,
    /// Where each field that leaves starts, in record order.
    keep: Vec<usize>,
}

impl Projected {
    /// The names of the fields that leave, in record order, shared with the cache's table
    /// of names (a call's audit record holds them without copying).
    pub fn shared_names(&self) -> Vec<Arc<str>> {
        let mut names = Vec::with_capacity(self.keep.len());
        for &at in &self.keep {
            let mut r = Reader::new(&self.record.bytes);
            r.at = at;
            names.extend(r.shared_key(&self.record.keys).ok());
        }
        names
    }

    /// The people who appear in the fields that leave: (field, keyed reference), as the
    /// cache made them (nothing is hashed here). `leaving` is [`Projected::shared_names`],
    /// which the caller has already (so no field's name is read again per mention).
    pub fn mentions<'s>(
        &'s self,
        leaving: &'s [Arc<str>],
    ) -> impl Iterator<Item = (&'s str, &'s str)> + 's {
        self.record
            .mention_pairs()
            .filter(move |(f, _)| leaving.iter().any(|n| &**n == *f))
    }

    /// The record as a JSON object's text.
    pub fn to_json(&self) -> Vec<u8> {
        self.record.json_of(&self.keep)
    }

    /// The record as a typed message (proto3 JSON form), without going through a map.
    pub fn deserialize<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_slice(&self.to_json())
    }

    /// The record, parsed.
    pub fn to_record(&self) -> Record {
        match serde_json::from_slice(&self.to_json()) {
            Ok(Value::Object(map)) => Record(map),
            _ => Record(Map::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stored_record_knows_its_whole_json_length_so_answers_are_written_in_one_allocation() {
        let Value::Object(map) = json!({
            "ten": "Công ty \"Hòa Bình\"\n\t",
            "so": 12.5,
            "dia_chi": {"tinh": "01", "cac_lop": [1, null, true, "x"]},
            "rong": {},
        }) else {
            unreachable!("an object")
        };
        let record = Record(map);
        let stored = StoredRecord::new(&record);
        assert_eq!(stored.json_len(), stored.whole_json().len());
        let answer = Arc::new(stored.with_mentions(vec![("dia_chi".into(), "k:ab".into())]));
        let all: Vec<String> = record.0.keys().cloned().collect();
        let json = answer.project(&all).to_json();
        assert_eq!(json.len(), answer.json_len());
        assert!(
            json.capacity() <= answer.json_len() + 2,
            "one allocation, not grown"
        );
        let fewer = answer.project(&["so".to_owned()]).to_json();
        assert_eq!(fewer, br#"{"so":12.5}"#);
    }

    #[test]
    fn only_people_in_the_fields_that_leave_are_mentioned() {
        let Value::Object(map) = json!({"ten": "A", "cha": "B", "me": "C"}) else {
            unreachable!("an object")
        };
        let stored = Arc::new(StoredRecord::new(&Record(map)).with_mentions(vec![
            ("cha".into(), "k:cha".into()),
            ("me".into(), "k:me".into()),
        ]));
        let mentioned = |fields: &[&str]| {
            let fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
            let projected = stored.project(&fields);
            let leaving = projected.shared_names();
            projected
                .mentions(&leaving)
                .map(|(f, r)| format!("{f}={r}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(mentioned(&["ten", "cha", "me"]), ["cha=k:cha", "me=k:me"]);
        assert_eq!(mentioned(&["me", "ten"]), ["me=k:me"]);
        assert!(mentioned(&["ten"]).is_empty());
    }

    #[test]
    fn the_direct_canonical_form_is_what_the_round_trip_makes() {
        let pool = crate::domain::dataset::descriptors();
        let desc = |name: &str| pool.get_message_by_name(name).expect("record type");
        let (enterprise, parcel) = (
            desc("lienthong.v1.Enterprise"),
            desc("lienthong.v1.LandParcel"),
        );
        // Forms the walk handles: as a provider's mapping gives them, and already canonical.
        let handled = [
            (
                &enterprise,
                json!({
                    "enterprise_code": "0101234567", "name": "CÔNG TY TNHH AN BÌNH",
                    "foreign_name": "", "charter_capital": 5000000000u64, "status": "operating",
                    "head_office": {"province_code": "01", "detail": "Số 1", "country": ""},
                    "legal_representatives": [{"full_name": "Trần Thị Bình", "title": "Giám đốc"}],
                    "business_lines": [{"vsic_code": "6201", "name": "Lập trình", "main": true},
                                       {"vsic_code": "6202", "name": "", "main": false}, {}]
                }),
            ),
            (
                &enterprise,
                json!({"charter_capital": "-12", "legal_representatives": []}),
            ),
            (
                &enterprise,
                json!({"charter_capital": 0, "parent_code": ""}),
            ),
            (&enterprise, json!({})),
            (
                &parcel,
                json!({
                    "parcel_id": "00004-12-345", "commune_code": "00004", "map_sheet": 12,
                    "parcel_number": 0, "area_m2": 152, "land_use_purposes": ["ONT", ""],
                    "mortgaged": true, "disputed": false, "address": {}
                }),
            ),
            (
                &parcel,
                json!({"area_m2": 152.5, "land_users": [{"full_name": "A", "id": ""}]}),
            ),
            (&parcel, json!({"area_m2": 0.0, "map_sheet": 4294967295u64})),
        ];
        for (d, v) in &handled {
            let fields = v.as_object().cloned().expect("object");
            let direct = canonical_form(d, &fields).unwrap_or_else(|| panic!("not handled: {v}"));
            assert_eq!(Ok(Record(direct)), round_trip(d, fields), "{v}");
        }
        // Forms it leaves to the round trip, which decides (converting or refusing).
        let left = [
            (&enterprise, json!({"charter_capital": "05"})),
            (&enterprise, json!({"charter_capital": 5.0})),
            (&enterprise, json!({"name": null})),
            (&enterprise, json!({"name": 5})),
            (&enterprise, json!({"enterpriseCode": "0101234567"})),
            (&enterprise, json!({"nope": "x"})),
            (&enterprise, json!({"legal_representatives": {}})),
            (&parcel, json!({"map_sheet": -1})),
            (&parcel, json!({"map_sheet": 4294967296u64})),
            (&parcel, json!({"map_sheet": 3.0})),
            (&parcel, json!({"area_m2": "152"})),
            (&parcel, json!({"area_m2": -0.0})),
            (&parcel, json!({"area_m2": 9007199254740993u64})),
            (&parcel, json!({"mortgaged": "true"})),
        ];
        for (d, v) in &left {
            let fields = v.as_object().cloned().expect("object");
            assert_eq!(canonical_form(d, &fields), None, "{v}");
        }
        // And through the public door, a form neither accepts is still refused.
        let refused = Record::canonical(
            &parcel,
            json!({"map_sheet": -1}).as_object().cloned().unwrap(),
        );
        assert!(
            refused
                .unwrap_err()
                .contains("does not fit lienthong.v1.LandParcel")
        );
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
        assert_eq!(
            narrow
                .shared_names()
                .iter()
                .map(|n| &**n)
                .collect::<Vec<_>>(),
            ["aliases", "full_name"]
        );
        let none = stored.project(&[]);
        assert_eq!(none.to_json(), b"{}");
        assert_eq!(
            stored.get("permanent_residence"),
            Some(serde_json::json!({"province_code": "01", "detail": "Số 12"}))
        );
        assert_eq!(stored.get("date_of_birth"), None);
    }
}
