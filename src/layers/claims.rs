//! Verify mode: which claimed values match the record, and nothing else about it.

use crate::domain::record::StoredRecord;
use serde_json::{Map, Value};

/// Which claims match; nothing else about the record.
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    pub matched: bool,
    pub fields: Vec<(String, bool)>,
    /// When the record checked was fetched from the provider, and the provider's own
    /// time of its data, where stated.
    pub freshness: std::sync::Arc<crate::domain::record::Freshness>,
    /// The evidence (a compact JWS), when it was asked for.
    pub evidence: Option<String>,
}

/// Compares each claim with the record's field.
#[inline]
pub fn verify(record: &StoredRecord, claims: &Map<String, Value>) -> Verification {
    let fields: Vec<(String, bool)> = claims
        .iter()
        .map(|(f, claimed)| (f.clone(), same_value(record.get(f).as_ref(), claimed)))
        .collect();
    Verification {
        matched: fields.iter().all(|(_, m)| *m),
        fields,
        freshness: record.freshness().clone(),
        evidence: None,
    }
}

/// Claims about text match regardless of case and surrounding space ("nguyễn văn an" matches
/// "Nguyễn Văn An"); other values must be equal. A field the record lacks matches nothing.
fn same_value(actual: Option<&Value>, claimed: &Value) -> bool {
    match (actual, claimed) {
        (None, _) => false,
        (Some(Value::String(a)), Value::String(c)) => {
            a.trim().to_lowercase() == c.trim().to_lowercase()
        }
        // Numbers arrive as JSON numbers or, for 64-bit fields, strings.
        (Some(Value::String(a)), Value::Number(n)) => *a == n.to_string(),
        (Some(a), c) => a == c,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn claims_match_text_loosely_and_other_values_exactly() {
        let same = |a: serde_json::Value, c: serde_json::Value| super::same_value(Some(&a), &c);
        assert!(same(json!("Nguyễn Văn An"), json!("  nguyễn văn an ")));
        assert!(
            !same(json!("Nguyễn Văn An"), json!("Nguyen Van An")),
            "diacritics matter"
        );
        assert!(
            same(json!("12500000000"), json!(12_500_000_000u64)),
            "int64 fields are strings"
        );
        assert!(!same(json!("12500000000"), json!(12_500_000_001u64)));
        assert!(same(json!(true), json!(true)) && !same(json!(true), json!("true")));
        assert!(
            !super::same_value(None, &json!("x")),
            "an absent field matches nothing"
        );
    }
}
