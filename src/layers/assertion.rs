//! A portal's signed assertion of a citizen's identity: a JWT with `sub` (the citizen's
//! personal id), `iss` (the portal), `aud` (this gateway), `iat`, `exp` (at most five
//! minutes after `iat`) and `jti`, signed EdDSA (Ed25519) or ES256 with a key registered on
//! the portal's consumer. Each `jti` is accepted once: it is remembered until the assertion
//! expires (in Redis when `[redis]` is set, so a replay to another replica is refused too).

use crate::config::Errors;
use crate::config::raw::RawAssertion;
use crate::shared::Shared;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::collections::HashMap;
use std::sync::Mutex;

/// The longest an assertion may live: `exp` at most this long after `iat`.
pub const MAX_LIFETIME_S: i64 = 300;
/// Clock difference tolerated between the portal and the gateway.
const LEEWAY_S: i64 = 30;
/// Most `jti`s remembered in memory at once (past that, new assertions are refused until
/// some expire: a flood cannot make the gateway forget one).
const MAX_SEEN: usize = 100_000;

/// How one portal's assertions are checked.
#[derive(Clone)]
pub struct AssertionPolicy {
    pub issuer: String,
    pub audience: String,
    keys: Vec<(String, Algorithm, DecodingKey)>,
}

impl std::fmt::Debug for AssertionPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionPolicy")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field(
                "keys",
                &self.keys.iter().map(|(k, a, _)| (k, a)).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// What a valid assertion says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Asserted {
    /// The citizen's personal id, as asserted (validated by the caller).
    pub sub: String,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

impl AssertionPolicy {
    /// From a consumer's `assertion` table, mistakes named under `key`.
    pub fn from_settings(raw: &RawAssertion, key: &str, e: &mut Errors<'_>) -> Option<Self> {
        if raw.issuer.trim().is_empty() {
            e.add(format!("{key}.issuer"), "name the portal's `iss`");
        }
        if raw.keys.is_empty() {
            e.add(format!("{key}.keys"), "register at least one public key");
        }
        let mut keys = Vec::new();
        for (i, k) in raw.keys.iter().enumerate() {
            let at = format!("{key}.keys[{i}]");
            if k.kid.trim().is_empty() {
                e.add(format!("{at}.kid"), "name the key (the assertions' `kid`)");
            }
            let parsed = match k.alg.as_str() {
                "EdDSA" => DecodingKey::from_ed_pem(k.public_key_pem.as_bytes())
                    .map(|d| (Algorithm::EdDSA, d)),
                "ES256" => DecodingKey::from_ec_pem(k.public_key_pem.as_bytes())
                    .map(|d| (Algorithm::ES256, d)),
                other => {
                    e.add(
                        format!("{at}.alg"),
                        format!("{other:?} is not \"EdDSA\" or \"ES256\""),
                    );
                    continue;
                }
            };
            match parsed {
                Ok((alg, key)) => keys.push((k.kid.trim().to_owned(), alg, key)),
                Err(err) => e.add(
                    format!("{at}.public_key_pem"),
                    format!("not a {} public key in PEM: {err}", k.alg),
                ),
            }
        }
        (!raw.issuer.trim().is_empty() && !keys.is_empty()).then(|| AssertionPolicy {
            issuer: raw.issuer.trim().to_owned(),
            audience: raw.audience.clone().unwrap_or_else(|| "lienthong".into()),
            keys,
        })
    }

    /// The assertion's claims if its signature, issuer, audience and times hold; what is
    /// wrong otherwise (never the personal id).
    pub fn check(&self, token: &str, now_s: i64) -> Result<Asserted, String> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| format!("the assertion is not a JWT: {e}"))?;
        let (_, alg, key) = match &header.kid {
            Some(kid) => self.keys.iter().find(|(k, _, _)| k == kid),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
        .ok_or("the assertion's kid names no key registered for this portal")?;
        if header.alg != *alg {
            return Err(format!(
                "the assertion is signed {:?}, its key is for {alg:?}",
                header.alg
            ));
        }
        let mut v = Validation::new(*alg);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = LEEWAY_S as u64;
        let claims = jsonwebtoken::decode::<Asserted>(token, key, &v)
            .map_err(|e| format!("the assertion does not hold: {e}"))?
            .claims;
        if claims.exp - claims.iat > MAX_LIFETIME_S {
            return Err(format!(
                "the assertion lives more than {MAX_LIFETIME_S} s (exp - iat)"
            ));
        }
        if claims.iat > now_s + LEEWAY_S {
            return Err("the assertion was issued in the future (iat)".into());
        }
        if claims.exp <= now_s - LEEWAY_S {
            return Err("the assertion has expired".into());
        }
        if claims.jti.trim().is_empty() || claims.jti.len() > 200 {
            return Err("the assertion's jti is empty or too long".into());
        }
        Ok(claims)
    }
}

/// Assertions already used, until they expire.
#[derive(Default)]
pub struct SeenAssertions {
    seen: Mutex<HashMap<String, i64>>,
}

impl SeenAssertions {
    /// Whether this is the assertion's first use: remembers (issuer, jti) until `exp`. In
    /// Redis when `shared` is given and answers; in memory otherwise.
    pub async fn first_use(
        &self,
        shared: Option<&Shared>,
        claims: &Asserted,
        now_s: i64,
    ) -> Result<bool, String> {
        let ttl_ms = ((claims.exp - now_s + LEEWAY_S).max(1) * 1000).to_string();
        let key = format!("{}\0{}", claims.iss, claims.jti);
        if let Some(s) = shared {
            let redis_key = s.prefixed(&format!(
                "jti:{}",
                hex::encode(ring::digest::digest(&ring::digest::SHA256, key.as_bytes()))
            ));
            if let Some(answer) = s.eval(&REMEMBER, &[redis_key], &[ttl_ms]).await {
                return Ok(answer.first() == Some(&1));
            }
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|_, exp| *exp + LEEWAY_S > now_s);
        if seen.contains_key(&key) {
            return Ok(false);
        }
        if seen.len() >= MAX_SEEN {
            return Err("too many assertions in flight: retry shortly".into());
        }
        seen.insert(key, claims.exp);
        Ok(true)
    }
}

/// SET NX with a lifetime: 1 when the key was not there.
static REMEMBER: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', tonumber(ARGV[1])) then
  return {1}
end
return {0}
",
    )
});
