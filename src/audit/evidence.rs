//! Evidence: a detached JWS (RFC 7515, EdDSA over Ed25519) a one-stop system files with
//! the dossier, so that a later step, an inspector or a court can check offline what data a
//! decision was made on. It signs a statement of the answer: the SHA-256 of the record as
//! delivered (its canonical JSON, so a saved answer recomputes it), the dataset, the
//! subject's keyed reference, the consumer, procedure and dossier, when it was answered,
//! the provider's time of the data, the cache status, and the audit record's instance and
//! sequence number. The record itself is detached: the evidence carries nothing personal
//! beyond what the answer holds (the keyed reference reveals no identifier).
//!
//! Keys rotate with overlap: the first configured key signs, the others stay published in
//! the JWKS (`GET /v1/keys`) with their validity, so evidence filed years ago still verifies.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The JWS header's `typ`.
pub const TYP: &str = "lienthong-evidence+jws";

/// What the evidence states about one answer (the JWS payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Statement format, 1.
    pub v: u32,
    /// "fetch" (a record) or "verify" (match or no match per claim).
    pub action: String,
    /// Lowercase hex SHA-256 of the answer's canonical JSON (see [`canonical_json`]).
    pub answer_sha256: String,
    pub dataset: String,
    /// The subject's keyed reference, as the audit record holds it (`keyid:hex`).
    pub subject: String,
    pub consumer: String,
    pub procedure: String,
    pub dossier: String,
    /// When the gateway answered (RFC 3339, the audit record's time).
    pub answered_at: String,
    /// When the gateway fetched the record from the provider.
    pub fetched_at: String,
    /// The provider's own time of the data, where it stated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_time: Option<String>,
    /// "hit", "miss", "stale" or "coalesced".
    pub cache: String,
    /// The audit record: the gateway instance's chain and the record's place in it.
    pub audit_instance: String,
    pub audit_seq: i64,
}

/// `value` as canonical JSON: object members sorted by their names' UTF-8 bytes, no
/// insignificant whitespace, strings escaped as serde_json writes them, whole numbers
/// without a fraction. Two answers with
/// the same content have the same canonical JSON whatever their member order or spacing;
/// one changed byte of a value changes it.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (name, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(name.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        Value::Number(n) => out.push_str(&canonical_number(n)),
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A number as JavaScript writes it (RFC 8785): a whole number without a fraction, so that
/// `5` as REST delivers it and `5.0` as a protobuf `Struct` (whose numbers are doubles)
/// delivers it digest alike.
fn canonical_number(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => n.to_string(),
    }
}

/// The hex SHA-256 of `answer`'s canonical JSON.
pub fn answer_digest(answer: &Value) -> String {
    hex::encode(
        ring::digest::digest(&ring::digest::SHA256, canonical_json(answer).as_bytes()).as_ref(),
    )
}

/// One evidence key: a signing one (with its seed) or a retired one kept for verifiers.
pub struct EvidenceKey {
    pub id: String,
    pair: Option<Ed25519KeyPair>,
    pub public: Vec<u8>,
    /// First and last instant (ms since the epoch) the key signs; None is open.
    pub valid_from: Option<i64>,
    pub valid_until: Option<i64>,
}

impl EvidenceKey {
    /// A key that can sign, from its 32-byte seed.
    pub fn from_seed(id: &str, seed: &[u8]) -> Option<EvidenceKey> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).ok()?;
        Some(EvidenceKey {
            id: id.to_owned(),
            public: pair.public_key().as_ref().to_vec(),
            pair: Some(pair),
            valid_from: None,
            valid_until: None,
        })
    }

    /// A key kept only so that what it signed still verifies.
    pub fn public_only(id: &str, public: Vec<u8>) -> EvidenceKey {
        EvidenceKey {
            id: id.to_owned(),
            pair: None,
            public,
            valid_from: None,
            valid_until: None,
        }
    }

    pub fn can_sign(&self) -> bool {
        self.pair.is_some()
    }

    /// The key as a JWK (RFC 8037), with its validity as `valid_from` / `valid_until`.
    pub fn jwk(&self) -> Value {
        let mut jwk = serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
            "kid": self.id, "x": B64URL.encode(&self.public),
        });
        for (name, at) in [
            ("valid_from", self.valid_from),
            ("valid_until", self.valid_until),
        ] {
            if let Some(ms) = at {
                jwk[name] = Value::String(crate::domain::date::iso_ms(ms));
            }
        }
        jwk
    }
}

impl std::fmt::Debug for EvidenceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EvidenceKey({}, signs: {})", self.id, self.can_sign())
    }
}

/// The gateway's evidence keys, the signing one first.
#[derive(Debug, Default)]
pub struct EvidenceKeys {
    pub keys: Vec<EvidenceKey>,
}

impl EvidenceKeys {
    /// The key that signs now: the first, when it holds a seed.
    pub fn signer(&self) -> Option<&EvidenceKey> {
        self.keys.first().filter(|k| k.can_sign())
    }

    /// Every key, old ones included, as a JWKS.
    pub fn jwks(&self) -> Value {
        serde_json::json!({ "keys": self.keys.iter().map(EvidenceKey::jwk).collect::<Vec<_>>() })
    }

    /// The compact JWS of `claims` under the signing key; None when no key can sign.
    pub fn sign(&self, claims: &Claims) -> Option<String> {
        let key = self.signer()?;
        let pair = key.pair.as_ref()?;
        let header = serde_json::json!({ "alg": "EdDSA", "kid": key.id, "typ": TYP });
        let payload = serde_json::to_vec(claims).ok()?;
        let input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(payload)
        );
        let signature = pair.sign(input.as_bytes());
        Some(format!("{input}.{}", B64URL.encode(signature.as_ref())))
    }
}

/// The key id a JWS's header names, when it reads.
pub fn key_id_of(jws: &str) -> Option<String> {
    let header = B64URL.decode(jws.split('.').next()?).ok()?;
    let header: Value = serde_json::from_slice(&header).ok()?;
    header["kid"].as_str().map(str::to_owned)
}

/// The document to file with a dossier, which `lienthong evidence verify` reads: the
/// answer as delivered, its evidence, and the key id the evidence names.
pub fn bundle(answer: Value, jws: &str) -> Value {
    serde_json::json!({ "answer": answer, "evidence": jws, "key_id": key_id_of(jws) })
}

/// Why evidence does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("the evidence is not a compact JWS (three base64url parts): {0}")]
    Malformed(String),
    #[error("the evidence names key {0:?}, which the key set does not hold")]
    UnknownKey(String),
    #[error("the key id given beside the evidence ({given:?}) is not the one it names ({named:?})")]
    KeyMismatch { given: String, named: String },
    #[error(
        "the signature does not verify under key {0:?}: the evidence was altered or another key signed it"
    )]
    BadSignature(String),
    #[error("key {key:?} was not valid at {at} (valid {from} to {until})")]
    OutsideValidity {
        key: String,
        at: String,
        from: String,
        until: String,
    },
    #[error(
        "the answer's digest is {found}, the evidence states {stated}: the answer is not the one the evidence was given for"
    )]
    DigestMismatch { stated: String, found: String },
}

/// A public key from a JWKS entry.
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    pub kid: String,
    #[serde(default)]
    pub kty: String,
    #[serde(default)]
    pub crv: String,
    pub x: String,
    #[serde(default)]
    pub valid_from: Option<String>,
    #[serde(default)]
    pub valid_until: Option<String>,
}

/// A JWKS as `GET /v1/keys` publishes it.
#[derive(Debug, Clone, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// Checks `jws` against `keys` and the saved `answer`: the signature, the key's validity
/// at the answer's time, and the answer's digest. Returns what the evidence states.
pub fn verify(
    jws: &str,
    key_id: Option<&str>,
    keys: &Jwks,
    answer: &Value,
) -> Result<Claims, EvidenceError> {
    let parts: Vec<&str> = jws.trim().split('.').collect();
    let [header, payload, sig] = parts[..] else {
        return Err(EvidenceError::Malformed(format!("{} parts", parts.len())));
    };
    let decode = |what: &str, part: &str| {
        B64URL
            .decode(part)
            .map_err(|e| EvidenceError::Malformed(format!("{what}: {e}")))
    };
    let head: Value = serde_json::from_slice(&decode("header", header)?)
        .map_err(|e| EvidenceError::Malformed(format!("header: {e}")))?;
    if head["alg"] != "EdDSA" {
        return Err(EvidenceError::Malformed(format!(
            "alg is {}, not \"EdDSA\"",
            head["alg"]
        )));
    }
    let named = head["kid"].as_str().unwrap_or_default().to_owned();
    if let Some(given) = key_id.filter(|g| !g.is_empty() && *g != named) {
        return Err(EvidenceError::KeyMismatch {
            given: given.to_owned(),
            named,
        });
    }
    let jwk = keys
        .keys
        .iter()
        .find(|k| k.kid == named)
        .ok_or_else(|| EvidenceError::UnknownKey(named.clone()))?;
    let public = B64URL
        .decode(&jwk.x)
        .map_err(|e| EvidenceError::Malformed(format!("key {named}: x: {e}")))?;
    let signature = decode("signature", sig)?;
    signature::UnparsedPublicKey::new(&signature::ED25519, &public)
        .verify(format!("{header}.{payload}").as_bytes(), &signature)
        .map_err(|_| EvidenceError::BadSignature(named.clone()))?;
    let claims: Claims = serde_json::from_slice(&decode("payload", payload)?)
        .map_err(|e| EvidenceError::Malformed(format!("payload: {e}")))?;
    let at = crate::domain::date::parse_rfc3339_ms(&claims.answered_at)
        .ok_or_else(|| EvidenceError::Malformed(format!("answered_at {:?}", claims.answered_at)))?;
    let bound = |t: &Option<String>| t.as_deref().and_then(crate::domain::date::parse_rfc3339_ms);
    if bound(&jwk.valid_from).is_some_and(|from| at < from)
        || bound(&jwk.valid_until).is_some_and(|until| at > until)
    {
        return Err(EvidenceError::OutsideValidity {
            key: named,
            at: claims.answered_at.clone(),
            from: jwk.valid_from.clone().unwrap_or_else(|| "the start".into()),
            until: jwk.valid_until.clone().unwrap_or_else(|| "now".into()),
        });
    }
    let found = answer_digest(answer);
    if found != claims.answer_sha256 {
        return Err(EvidenceError::DigestMismatch {
            stated: claims.answer_sha256,
            found,
        });
    }
    Ok(claims)
}

#[cfg(test)]
mod tests;
