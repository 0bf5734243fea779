//! The countersigning witness's protocol: a gateway sends each signed checkpoint (its
//! chain's head); the witness appends it to its own log for that chain, refusing a head
//! that contradicts one it already holds (the same position with another hash, or an
//! earlier position than its last), and answers with its Ed25519 signature over the head
//! and the time it saw it.

use serde::{Deserialize, Serialize};

/// What a gateway sends: one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub instance: String,
    pub seq: i64,
    /// Lowercase hex of the chain hash at `seq`.
    pub hash: String,
    pub time_ms: i64,
}

/// What the witness answers, and the gateway keeps as the receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Countersignature {
    pub witness: String,
    pub head: Head,
    /// When the witness logged the head (ms since the epoch, its clock).
    pub witnessed_ms: i64,
    /// Base64 Ed25519 signature over [`message`].
    pub signature: String,
}

/// What the witness signs.
pub fn message(witness: &str, head: &Head, witnessed_ms: i64) -> Vec<u8> {
    let mut m = b"lienthong-witness-v1\0".to_vec();
    for part in [
        witness.as_bytes(),
        head.instance.as_bytes(),
        head.hash.as_bytes(),
    ] {
        m.extend_from_slice(&(part.len() as u32).to_be_bytes());
        m.extend_from_slice(part);
    }
    m.extend_from_slice(&head.seq.to_be_bytes());
    m.extend_from_slice(&head.time_ms.to_be_bytes());
    m.extend_from_slice(&witnessed_ms.to_be_bytes());
    m
}

/// Checks a countersignature (`receipt`, JSON) against the witness's Ed25519 public key
/// and the head it must be for.
pub fn check(receipt: &[u8], public_key: &[u8], head: &Head) -> Result<Countersignature, String> {
    use base64::Engine;
    let c: Countersignature =
        serde_json::from_slice(receipt).map_err(|e| format!("not a countersignature: {e}"))?;
    if &c.head != head {
        return Err(format!(
            "it countersigns position {} with hash {}, not this checkpoint's {}",
            c.head.seq, c.head.hash, head.hash
        ));
    }
    let signature = base64::engine::general_purpose::STANDARD
        .decode(&c.signature)
        .map_err(|e| format!("its signature is not base64: {e}"))?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
        .verify(&message(&c.witness, &c.head, c.witnessed_ms), &signature)
        .map_err(|_| "its signature does not verify under the witness's key".to_owned())?;
    Ok(c)
}
