use super::*;
use serde_json::json;

fn claims(answer: &Value) -> Claims {
    Claims {
        v: 1,
        action: "fetch".into(),
        answer_sha256: answer_digest(answer),
        dataset: "population.citizen".into(),
        subject: "k1:ab".into(),
        consumer: "demo-onestop".into(),
        procedure: "1.001612".into(),
        dossier: "000.00.53.H48-251128-0001".into(),
        answered_at: "2026-12-01T03:00:00.000Z".into(),
        fetched_at: "2026-12-01T02:59:00.000Z".into(),
        data_time: None,
        cache: "hit".into(),
        audit_instance: "gw-1".into(),
        audit_seq: 42,
    }
}

fn keys(ids: &[(&str, u8)]) -> EvidenceKeys {
    EvidenceKeys {
        keys: ids
            .iter()
            .map(|(id, b)| EvidenceKey::from_seed(id, &[*b; 32]).expect("seed"))
            .collect(),
    }
}

fn jwks(k: &EvidenceKeys) -> Jwks {
    serde_json::from_value(k.jwks()).expect("jwks reads back")
}

#[test]
fn canonical_json_sorts_members_and_drops_spacing_at_every_depth() {
    let a: Value = serde_json::from_str(r#"{ "b": [ {"y": 1, "x": "é\n"} ], "a": null }"#).unwrap();
    assert_eq!(canonical_json(&a), r#"{"a":null,"b":[{"x":"é\n","y":1}]}"#);
    // 1.0 is how a protobuf Struct (doubles) carries the 1 REST delivers.
    let b: Value = serde_json::from_str(r#"{"a":null,"b":[{"x":"é\n","y":1.0}]}"#).unwrap();
    assert_eq!(answer_digest(&a), answer_digest(&b));
    let c: Value = serde_json::from_str(r#"{"a":null,"b":[{"x":"é\n","y":1.5}]}"#).unwrap();
    assert_ne!(answer_digest(&a), answer_digest(&c));
}

#[test]
fn evidence_verifies_and_one_changed_byte_of_the_answer_is_caught() {
    let k = keys(&[("e1", 7)]);
    let answer = json!({"full_name": "Nguyễn Văn An", "date_of_birth": "1990-05-17"});
    let jws = k.sign(&claims(&answer)).expect("signs");
    let stated = verify(&jws, Some("e1"), &jwks(&k), &answer).expect("verifies");
    assert_eq!(stated.audit_seq, 42);
    let changed = json!({"full_name": "Nguyễn Văn Am", "date_of_birth": "1990-05-17"});
    assert!(matches!(
        verify(&jws, None, &jwks(&k), &changed),
        Err(EvidenceError::DigestMismatch { .. })
    ));
}

#[test]
fn an_altered_statement_a_foreign_key_and_a_wrong_key_id_are_refused() {
    let k = keys(&[("e1", 7)]);
    let answer = json!({"a": "1"});
    let jws = k.sign(&claims(&answer)).expect("signs");
    // The payload re-encoded with another sequence number, the signature kept.
    let parts: Vec<&str> = jws.split('.').collect();
    let mut c = claims(&answer);
    c.audit_seq = 43;
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        B64URL.encode(serde_json::to_vec(&c).unwrap()),
        parts[2]
    );
    assert_eq!(
        verify(&forged, None, &jwks(&k), &answer),
        Err(EvidenceError::BadSignature("e1".into()))
    );
    // Signed by a key of the same id the verifier does not hold.
    let other = keys(&[("e1", 8)]).sign(&claims(&answer)).unwrap();
    assert_eq!(
        verify(&other, None, &jwks(&k), &answer),
        Err(EvidenceError::BadSignature("e1".into()))
    );
    assert_eq!(
        verify(&jws, None, &jwks(&keys(&[("e2", 7)])), &answer),
        Err(EvidenceError::UnknownKey("e1".into()))
    );
    assert!(matches!(
        verify(&jws, Some("e2"), &jwks(&k), &answer),
        Err(EvidenceError::KeyMismatch { .. })
    ));
    assert!(matches!(
        verify("abc.def", None, &jwks(&k), &answer),
        Err(EvidenceError::Malformed(_))
    ));
}

#[test]
fn a_retired_key_still_verifies_within_its_validity_and_not_after_it() {
    let old = keys(&[("e1", 7)]);
    let answer = json!({"a": "1"});
    let jws = old.sign(&claims(&answer)).expect("signs");
    let mut retired = EvidenceKey::public_only("e1", old.keys[0].public.clone());
    retired.valid_until = crate::domain::date::parse_rfc3339_ms("2026-12-02T00:00:00Z");
    let mut current = keys(&[("e2", 9)]);
    current.keys.push(retired);
    assert!(current.signer().is_some_and(|s| s.id == "e2"));
    verify(&jws, None, &jwks(&current), &answer).expect("old evidence verifies after rotation");
    current.keys[1].valid_until = crate::domain::date::parse_rfc3339_ms("2026-11-30T00:00:00Z");
    assert!(matches!(
        verify(&jws, None, &jwks(&current), &answer),
        Err(EvidenceError::OutsideValidity { .. })
    ));
    // A set whose first key holds no seed cannot sign.
    current.keys.remove(0);
    assert_eq!(current.sign(&claims(&answer)), None);
}
