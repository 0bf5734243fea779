//! Secrets sent through the admin API are stored sealed: ChaCha20-Poly1305 under the
//! deployment's secrets key (`[admin] secrets_key`, `_env` or `_file`: 32 bytes, Base64),
//! written in place of the value as `sealed:v1:` and Base64 of the nonce and the
//! ciphertext. The name of the setting is bound in as associated data, so a sealed value
//! cannot be moved to another setting. Opened only when a configuration is built.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;

const PREFIX: &str = "sealed:v1:";

/// The key secrets are sealed under, and earlier keys what was sealed before a rotation
/// still opens with.
#[derive(Clone, PartialEq, Eq)]
pub struct SealKey([u8; 32], Vec<[u8; 32]>);

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl SealKey {
    /// A key from its Base64 form (32 bytes).
    pub fn from_base64(text: &str) -> Result<SealKey, String> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|_| "is not Base64".to_owned())?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(|k| SealKey(k, Vec::new()))
            .map_err(|_| format!("is {} bytes; it must be 32", bytes.len()))
    }

    /// This key, opening also what was sealed under `earlier` (the rotation's overlap).
    pub fn with_previous(mut self, earlier: Vec<SealKey>) -> SealKey {
        self.1 = earlier.into_iter().map(|k| k.0).collect();
        self
    }

    fn aead(key: &[u8; 32]) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).expect("a 32-byte key"))
    }

    /// `value` sealed for the setting `name`.
    pub fn seal(&self, name: &str, value: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system's random source");
        let mut data = value.as_bytes().to_vec();
        SealKey::aead(&self.0)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut data,
            )
            .expect("sealing a short value");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        format!("{PREFIX}{}", BASE64.encode(out))
    }

    /// The value of a sealed setting `name`.
    pub fn open(&self, name: &str, sealed: &str) -> Result<String, String> {
        let text = sealed.strip_prefix(PREFIX).ok_or("is not sealed")?;
        let bytes = BASE64
            .decode(text)
            .map_err(|_| "is a damaged sealed value".to_owned())?;
        if bytes.len() < NONCE_LEN {
            return Err("is a damaged sealed value".into());
        }
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        for key in std::iter::once(&self.0).chain(&self.1) {
            let nonce =
                Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce".to_owned())?;
            let mut body = body.to_vec();
            if let Ok(plain) =
                SealKey::aead(key).open_in_place(nonce, Aad::from(name.as_bytes()), &mut body)
            {
                return String::from_utf8(plain.to_vec()).map_err(|_| "is not text".to_owned());
            }
        }
        Err("was sealed under another secrets key (not this one nor a previous one), for another setting, or altered".to_owned())
    }
}

/// The secrets key of `[admin]`, when one is set.
pub fn from_settings(
    source: &super::Source,
    raw: &super::raw::RawAdmin,
    env: &std::collections::BTreeMap<String, String>,
    e: &mut super::Errors<'_>,
) -> Option<SealKey> {
    let given = [
        &raw.secrets_key,
        &raw.secrets_key_env,
        &raw.secrets_key_file,
    ];
    if given.iter().all(|g| g.is_none()) {
        return None;
    }
    let text = super::secret_of(e, source, "admin.secrets_key", given, env);
    if text.is_empty() {
        return None;
    }
    let current = SealKey::from_base64(&text)
        .map_err(|m| e.add("admin.secrets_key", m))
        .ok()?;
    let mut previous = Vec::new();
    for (i, var) in raw.previous_secrets_keys_env.iter().enumerate() {
        let at = format!("admin.previous_secrets_keys_env[{i}]");
        match env.get(var) {
            None => e.add(at, format!("environment variable {var} is not set")),
            Some(text) => match SealKey::from_base64(text) {
                Ok(k) => previous.push(k),
                Err(m) => e.add(at, format!("{var} {m}")),
            },
        }
    }
    Some(current.with_previous(previous))
}

/// Whether a setting's value is sealed.
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SealKey {
        SealKey::from_base64(&BASE64.encode([b; 32])).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_for_its_setting_and_unaltered() {
        let k = key(7);
        let sealed = k.seal("client_secret", "s3cret");
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("s3cret"));
        assert_ne!(
            sealed,
            k.seal("client_secret", "s3cret"),
            "a fresh nonce each time"
        );
        assert_eq!(k.open("client_secret", &sealed).unwrap(), "s3cret");
        assert!(
            key(8).open("client_secret", &sealed).is_err(),
            "another key"
        );
        assert!(k.open("password", &sealed).is_err(), "another setting");
        let mut bytes = BASE64.decode(&sealed[PREFIX.len()..]).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let altered = format!("{PREFIX}{}", BASE64.encode(bytes));
        assert!(k.open("client_secret", &altered).is_err(), "altered");
        assert!(k.open("client_secret", "plain").is_err());
    }

    #[test]
    fn after_a_rotation_old_seals_open_and_new_ones_use_the_new_key() {
        let old = key(7);
        let sealed_before = old.seal("client_secret", "s3cret");
        let rotated = key(9).with_previous(vec![key(7)]);
        assert_eq!(
            rotated.open("client_secret", &sealed_before).unwrap(),
            "s3cret"
        );
        let sealed_after = rotated.seal("client_secret", "n3w");
        assert!(
            old.open("client_secret", &sealed_after).is_err(),
            "sealed under the new key"
        );
        assert_eq!(key(9).open("client_secret", &sealed_after).unwrap(), "n3w");
        // With the previous key dropped, what it sealed no longer opens.
        let err = key(9).open("client_secret", &sealed_before).unwrap_err();
        assert!(err.contains("another secrets key"), "{err}");
    }

    #[test]
    fn a_key_must_be_32_bytes_of_base64() {
        assert!(SealKey::from_base64("not base64!").is_err());
        let short = SealKey::from_base64(&BASE64.encode([1u8; 16])).unwrap_err();
        assert!(short.contains("16 bytes"), "{short}");
        assert!(format!("{:?}", key(1)) == "SealKey(..)");
    }
}
