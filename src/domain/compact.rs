//! A compact byte form of JSON values, for records held in the cache. Object keys are
//! numbers into a table shared by every record ([`Keys`]); strings are their UTF-8 bytes,
//! with a mark when JSON needs them escaped; numbers keep their JSON text; arrays and
//! objects carry their length in bytes, so a reader skips what it does not want. Writing a
//! value back as JSON text is mostly copying.
//!
//! A value is a tag byte and its body:
//! - `0` null, `1` false, `2` true;
//! - `3` a number: length, then its JSON text;
//! - `4` a string JSON writes as it is, `5` one it must escape: length, then UTF-8;
//! - `6` an array: length of the rest, then the values;
//! - `7` an object: length of the rest, then (key, value) pairs.
//!
//! Lengths are LEB128 varints. A key is a varint `k`: `k > 0` is entry `k - 1` of the key
//! table; `0` is followed by the key itself (length and UTF-8), for keys beyond the table's
//! bound.

use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

/// Keys the table takes at most; later keys are written out in full. Records' keys are the
/// field names of their types, so the bound is only reached by map fields with data keys.
const MOST_KEYS: usize = 16_384;

/// The keys interned so far: names, and each as JSON writes it before a value
/// (`"name":`). Append-only, so a record keeps the snapshot it was written with.
#[derive(Debug, Default)]
pub struct Keys {
    names: Vec<Arc<str>>,
    json: Vec<Box<str>>,
    ids: HashMap<Box<str>, u32>,
}

static TABLE: LazyLock<RwLock<Arc<Keys>>> = LazyLock::new(RwLock::default);

impl Keys {
    /// The current table, with every key of `values` (at any depth) and every name in
    /// `top` in it, while room allows.
    pub fn covering<'a>(
        values: impl IntoIterator<Item = &'a Value> + Clone,
        top: impl IntoIterator<Item = &'a str>,
    ) -> Arc<Keys> {
        let current = TABLE.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut missing: Vec<String> = top
            .into_iter()
            .filter(|k| !current.ids.contains_key(*k))
            .map(str::to_owned)
            .collect();
        for v in values.clone() {
            collect_missing(v, &current, &mut missing);
        }
        if missing.is_empty() || current.names.len() >= MOST_KEYS {
            return current;
        }
        let mut table = TABLE.write().unwrap_or_else(|p| p.into_inner());
        let mut next = Keys {
            names: table.names.clone(),
            json: table.json.clone(),
            ids: table.ids.clone(),
        };
        for k in missing {
            if next.names.len() >= MOST_KEYS || next.ids.contains_key(k.as_str()) {
                continue;
            }
            let mut json = serde_json::to_string(&k).expect("a string serialises");
            json.push(':');
            next.ids
                .insert(k.clone().into_boxed_str(), next.names.len() as u32);
            next.names.push(k.into());
            next.json.push(json.into_boxed_str());
        }
        let next = Arc::new(next);
        *table = next.clone();
        next
    }
}

fn collect_missing(v: &Value, keys: &Keys, out: &mut Vec<String>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect_missing(i, keys, out)),
        Value::Object(map) => {
            for (k, v) in map {
                if !keys.ids.contains_key(k.as_str()) && !out.contains(k) {
                    out.push(k.clone());
                }
                collect_missing(v, keys, out);
            }
        }
        _ => {}
    }
}

pub fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Writes a key.
pub fn put_key(out: &mut Vec<u8>, keys: &Keys, key: &str) {
    match keys.ids.get(key) {
        Some(id) => put_varint(out, *id as u64 + 1),
        None => {
            put_varint(out, 0);
            put_varint(out, key.len() as u64);
            out.extend_from_slice(key.as_bytes());
        }
    }
}

fn needs_escape(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Writes a value.
pub fn put_value(out: &mut Vec<u8>, keys: &Keys, v: &Value) {
    match v {
        Value::Null => out.push(0),
        Value::Bool(b) => out.push(1 + u8::from(*b)),
        Value::Number(n) => {
            let text = n.to_string();
            out.push(3);
            put_varint(out, text.len() as u64);
            out.extend_from_slice(text.as_bytes());
        }
        Value::String(s) => {
            out.push(if needs_escape(s) { 5 } else { 4 });
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(items) => {
            out.push(6);
            let at = out.len();
            for i in items {
                put_value(out, keys, i);
            }
            insert_len(out, at);
        }
        Value::Object(map) => {
            out.push(7);
            let at = out.len();
            for (k, v) in map {
                put_key(out, keys, k);
                put_value(out, keys, v);
            }
            insert_len(out, at);
        }
    }
}

/// Puts the length of what was written since `at` in front of it.
fn insert_len(out: &mut Vec<u8>, at: usize) {
    let mut len = Vec::with_capacity(5);
    put_varint(&mut len, (out.len() - at) as u64);
    out.splice(at..at, len);
}

/// Bytes that do not read as this form: cached bytes are written by this process, so this
/// is a bug, reported rather than panicking mid-answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("damaged compact value at byte {0}")]
pub struct Damaged(pub usize);

/// Reads the form from a byte slice.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    pub bytes: &'a [u8],
    pub at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    pub fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    pub fn varint(&mut self) -> Result<u64, Damaged> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.bytes.get(self.at).ok_or(Damaged(self.at))?;
            self.at += 1;
            n |= ((b & 0x7F) as u64) << shift;
            if b < 0x80 {
                return Ok(n);
            }
        }
        Err(Damaged(self.at))
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Damaged> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or(Damaged(self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn text(&mut self) -> Result<&'a str, Damaged> {
        let n = self.varint()? as usize;
        let at = self.at;
        std::str::from_utf8(self.take(n)?).map_err(|_| Damaged(at))
    }

    /// A key: its name, and its JSON form (`"name":`) when interned.
    pub fn key(&mut self, keys: &'a Keys) -> Result<(&'a str, Option<&'a str>), Damaged> {
        let at = self.at;
        match self.varint()? {
            0 => Ok((self.text()?, None)),
            k => {
                let i = (k - 1) as usize;
                match (keys.names.get(i), keys.json.get(i)) {
                    (Some(n), Some(j)) => Ok((n, Some(j))),
                    _ => Err(Damaged(at)),
                }
            }
        }
    }

    /// A key's name, shared with the table when interned (copied only when not).
    pub fn shared_key(&mut self, keys: &'a Keys) -> Result<Arc<str>, Damaged> {
        let at = self.at;
        match self.varint()? {
            0 => Ok(self.text()?.into()),
            k => keys.names.get((k - 1) as usize).cloned().ok_or(Damaged(at)),
        }
    }

    /// Skips one value.
    pub fn skip(&mut self) -> Result<(), Damaged> {
        let at = self.at;
        match self.take(1)?[0] {
            0..=2 => Ok(()),
            3..=7 => {
                let n = self.varint()? as usize;
                self.take(n).map(drop)
            }
            _ => Err(Damaged(at)),
        }
    }

    /// Writes one value as JSON text.
    pub fn write_json(&mut self, keys: &'a Keys, out: &mut Vec<u8>) -> Result<(), Damaged> {
        let at = self.at;
        match self.take(1)?[0] {
            0 => out.extend_from_slice(b"null"),
            1 => out.extend_from_slice(b"false"),
            2 => out.extend_from_slice(b"true"),
            3 => {
                let n = self.varint()? as usize;
                out.extend_from_slice(self.take(n)?);
            }
            4 => {
                let n = self.varint()? as usize;
                out.push(b'"');
                out.extend_from_slice(self.take(n)?);
                out.push(b'"');
            }
            5 => {
                let s = self.text()?;
                serde_json::to_writer(&mut *out, s).map_err(|_| Damaged(at))?;
            }
            tag @ (6 | 7) => {
                let n = self.varint()? as usize;
                let mut inner = Reader::new(self.take(n)?);
                out.push(if tag == 6 { b'[' } else { b'{' });
                let mut first = true;
                while !inner.done() {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    if tag == 7 {
                        write_key(&mut inner, keys, out)?;
                    }
                    inner.write_json(keys, out)?;
                }
                out.push(if tag == 6 { b']' } else { b'}' });
            }
            _ => return Err(Damaged(at)),
        }
        Ok(())
    }

    /// Reads one value back.
    pub fn value(&mut self, keys: &'a Keys) -> Result<Value, Damaged> {
        let at = self.at;
        Ok(match self.take(1)?[0] {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => {
                let text = self.text()?;
                Value::Number(text.parse::<Number>().map_err(|_| Damaged(at))?)
            }
            4 | 5 => Value::String(self.text()?.to_owned()),
            tag @ (6 | 7) => {
                let n = self.varint()? as usize;
                let mut inner = Reader::new(self.take(n)?);
                if tag == 6 {
                    let mut items = Vec::new();
                    while !inner.done() {
                        items.push(inner.value(keys)?);
                    }
                    Value::Array(items)
                } else {
                    let mut map = Map::new();
                    while !inner.done() {
                        let (k, _) = inner.key(keys)?;
                        map.insert(k.to_owned(), inner.value(keys)?);
                    }
                    Value::Object(map)
                }
            }
            _ => return Err(Damaged(at)),
        })
    }
}

/// Writes a key as JSON (`"name":`).
pub fn write_key<'a>(r: &mut Reader<'a>, keys: &'a Keys, out: &mut Vec<u8>) -> Result<(), Damaged> {
    match r.key(keys)? {
        (_, Some(json)) => out.extend_from_slice(json.as_bytes()),
        (name, None) => {
            serde_json::to_writer(&mut *out, name).map_err(|_| Damaged(r.at))?;
            out.push(b':');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_read_back_and_write_the_json_serde_writes() {
        let values = [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(-12),
            json!(1.5),
            json!(18446744073709551615u64),
            json!(""),
            json!("Nguyễn Văn An"),
            json!("a \"quoted\" \\ line\nbreak\u{1}"),
            json!([]),
            json!([1, "x", [null], {}]),
            json!({"province_code": "01", "nested": {"deep": [true, {"k": "v"}]}, "e": {}}),
        ];
        let keys = Keys::covering(values.iter(), []);
        for v in &values {
            let mut bytes = Vec::new();
            put_value(&mut bytes, &keys, v);
            assert_eq!(Reader::new(&bytes).value(&keys), Ok(v.clone()), "{v}");
            let mut text = Vec::new();
            let mut r = Reader::new(&bytes);
            r.write_json(&keys, &mut text).expect("writes");
            assert!(r.done());
            assert_eq!(
                String::from_utf8(text).expect("utf-8"),
                serde_json::to_string(v).expect("json")
            );
            let mut r = Reader::new(&bytes);
            r.skip().expect("skips");
            assert!(r.done(), "{v}");
            // Cut short, it is refused, not misread.
            if bytes.len() > 1 {
                assert!(
                    Reader::new(&bytes[..bytes.len() - 1]).value(&keys).is_err(),
                    "{v}"
                );
            }
        }
    }

    #[test]
    fn keys_outside_the_table_are_written_in_full() {
        let keys = Keys::default();
        let v = json!({"not interned": "x", "quote\"key": 1});
        let mut bytes = Vec::new();
        put_value(&mut bytes, &keys, &v);
        assert_eq!(Reader::new(&bytes).value(&keys), Ok(v.clone()));
        let mut text = Vec::new();
        Reader::new(&bytes)
            .write_json(&keys, &mut text)
            .expect("writes");
        assert_eq!(String::from_utf8(text).expect("utf-8"), v.to_string());
    }
}
