//! Authentication: which consumer a call's credentials (an API key, a client certificate)
//! name. The same matcher serves the admin listener's credentials: keys are compared by
//! SHA-256, every one of them, so the time taken does not say which one was close.

use super::policy::Consumer;
use crate::domain::error::{ErrorCode, LookupError};
use sha2::{Digest, Sha256};

/// Something credentials can name: a consumer, an admin.
pub trait Holder {
    /// SHA-256 digests of the API keys or tokens that identify it.
    fn key_hashes(&self) -> &[[u8; 32]];
    /// When each key (by position) stops working, Unix ms; empty or `None`: never.
    fn key_ends(&self) -> &[Option<i64>] {
        &[]
    }
    /// Client certificate names (`CN=…`, `DNS:…`, …) that identify it.
    fn certificate_names(&self) -> &[String];
}

/// The holder of `key`, checking every key of every holder.
#[inline]
pub fn by_key<'a, H: Holder>(holders: &'a [H], key: &str) -> Option<&'a H> {
    by_key_with_end(holders, key).map(|(h, _)| h)
}

/// The holder of `key` and when that key stops working (`None`: never).
#[inline]
pub fn by_key_with_end<'a, H: Holder>(holders: &'a [H], key: &str) -> Option<(&'a H, Option<i64>)> {
    let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    let mut found = None;
    for holder in holders {
        for (i, hash) in holder.key_hashes().iter().enumerate() {
            if same_digest(hash, &digest) {
                found = Some((holder, holder.key_ends().get(i).copied().flatten()));
            }
        }
    }
    found
}

/// The holder one of the certificate's names identifies.
#[inline]
pub fn by_certificate<'a, H: Holder>(holders: &'a [H], cert: &ClientCertificate) -> Option<&'a H> {
    holders.iter().find(|h| {
        h.certificate_names()
            .iter()
            .any(|n| cert.names.iter().any(|m| m == n))
    })
}

/// Compares digests without an early exit, so timing does not reveal how much matched.
#[inline]
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Certificate or API key → consumer, and which credential said so (`certificate`,
/// `api_key`). A certificate the CA signed but no consumer claims does not authenticate by
/// itself; with both credentials they must name the same consumer.
#[inline]
pub fn authenticate<'a>(
    consumers: &'a [Consumer],
    api_key: Option<&str>,
    certificate: Option<&ClientCertificate>,
) -> Result<(&'a Consumer, &'static str), LookupError> {
    let unauthenticated = |m: String| LookupError::new(ErrorCode::Unauthenticated, m);
    let by_certificate = certificate.map(|cert| (cert, by_certificate(consumers, cert)));
    let by_key = match api_key.map(|key| by_key_with_end(consumers, key)) {
        Some(Some((_, Some(end)))) if end <= crate::domain::date::now_ms() => {
            return Err(unauthenticated(format!(
                "the API key is no longer valid: it expired or was revoked at {}",
                crate::domain::date::iso_ms(end)
            )));
        }
        other => other.map(|found| found.map(|(c, _)| c)),
    };
    let found = match (by_certificate, by_key) {
        (None, None) => Err(unauthenticated(
            "no credentials: present a client certificate or send Authorization: Bearer <api key>"
                .into(),
        )),
        (_, Some(None)) => Err(unauthenticated("the API key is not recognised".into())),
        (Some((_, Some(a))), Some(Some(b))) if a.id != b.id => Err(unauthenticated(
            "the client certificate and the API key belong to different consumers".into(),
        )),
        (Some((_, Some(consumer))), _) => Ok((consumer, "certificate")),
        (_, Some(Some(consumer))) => Ok((consumer, "api_key")),
        (Some((cert, None)), None) => Err(unauthenticated(format!(
            "the client certificate ({}) is not registered to any consumer",
            cert.names.join(", ")
        ))),
    }?;
    if found.0.disabled {
        return Err(LookupError::new(
            ErrorCode::PermissionDenied,
            format!(
                "consumer {} is switched off by the gateway's operators",
                found.0.id
            ),
        ));
    }
    Ok(found)
}

/// The names a client certificate carries, once the TLS layer has verified it against the
/// configured CA: `CN=…` for the subject's common names, `DNS:…`, `URI:…`, `email:…` and
/// `IP:…` for its subject alternative names (DNS names in lower case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCertificate {
    pub names: Vec<String>,
}

/// The kinds of certificate name a credential may name.
const NAME_KINDS: [&str; 5] = ["CN=", "DNS:", "URI:", "email:", "IP:"];

/// A certificate name, as configured, that names nothing a certificate can carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{0:?} must start with one of CN= DNS: URI: email: IP: (e.g. \"CN=motcua-hanoi\")")]
    Kind(String),
    #[error("{0:?} names nothing after {1}")]
    Empty(String, &'static str),
    #[error("{0:?} is not an IP address")]
    Ip(String),
}

/// `CN=x`, `DNS:x`, `URI:x`, `email:x` or `IP:x` as configured, in the form
/// `transport::tls::identity` produces (DNS names in lower case); an error says what is accepted.
pub fn normalize_name(name: &str) -> Result<String, NameError> {
    let name = name.trim();
    let Some(kind) = NAME_KINDS.iter().find(|k| name.starts_with(**k)) else {
        return Err(NameError::Kind(name.to_owned()));
    };
    let value = &name[kind.len()..];
    if value.is_empty() {
        return Err(NameError::Empty(name.to_owned(), kind));
    }
    Ok(match *kind {
        "DNS:" => format!("DNS:{}", value.to_ascii_lowercase()),
        "IP:" => {
            let ip: std::net::IpAddr =
                value.parse().map_err(|_| NameError::Ip(value.to_owned()))?;
            format!("IP:{ip}")
        }
        _ => name.to_owned(),
    })
}
