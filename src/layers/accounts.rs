//! Consumers and API keys made through the admin API (the registry's accounts file), joined
//! to the consumers file's: consumers created there, keys issued there (for any consumer),
//! and revocations of the consumers file's own keys.

use super::policy::{Consumer, file_key_id, sha256_hex};
use crate::config::Errors;
use crate::config::raw::{RawAccounts, RawConsumers};
use crate::domain::date::parse_rfc3339_ms;

/// The consumers of the consumers file and of the accounts file, each with its keys and
/// the instants they stop working.
pub fn join(
    mut consumers: Vec<Consumer>,
    raw: RawAccounts,
    tls_client_ca: bool,
    e: &mut Errors<'_>,
) -> Vec<Consumer> {
    let created = super::policy::consumers(
        RawConsumers {
            consumer: raw.consumer,
        },
        tls_client_ca,
        e,
    );
    for (i, c) in created.into_iter().enumerate() {
        if consumers.iter().any(|f| f.id == c.id) {
            e.add(
                format!("consumer[{i}].id"),
                format!(
                    "consumer {:?} is defined in the consumers file already",
                    c.id
                ),
            );
            continue;
        }
        consumers.push(c);
    }
    for (i, k) in raw.key.iter().enumerate() {
        let at = format!("key[{i}]");
        let Some(hash) = sha256_hex(&k.sha256) else {
            e.add(format!("{at}.sha256"), "must be 64 hex digits (a SHA-256)");
            continue;
        };
        let mut instant = |field: &str, value: Option<&str>| match value {
            None => None,
            Some(v) => {
                let parsed = parse_rfc3339_ms(v);
                if parsed.is_none() {
                    e.add(
                        format!("{at}.{field}"),
                        format!("{v:?} is not an RFC 3339 instant"),
                    );
                }
                parsed
            }
        };
        let expires = instant("expires", k.expires.as_deref());
        let revoked = instant("revoked", k.revoked.as_deref());
        instant("created", Some(&k.created));
        let end = match (expires, revoked) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // A key of a consumer no longer defined (removed from the file) opens nothing.
        let Some(consumer) = consumers.iter_mut().find(|c| c.id == k.consumer) else {
            continue;
        };
        if k.id.starts_with("f-") {
            // A revocation of a key the consumers file lists.
            if let Some(at) = consumer.key_hashes.iter().position(|h| *h == hash) {
                consumer.key_ends[at] = end;
            }
            continue;
        }
        if !k.id.starts_with("k-") {
            e.add(
                format!("{at}.id"),
                format!("{:?} is not a key id (k-…)", k.id),
            );
            continue;
        }
        consumer.key_hashes.push(hash);
        consumer.key_ends.push(end);
        consumer.key_ids.push(k.id.clone());
    }
    let mut owners = std::collections::HashMap::new();
    for c in &consumers {
        for h in &c.key_hashes {
            if let Some(other) = owners.insert(*h, c.id.clone())
                && other != c.id
            {
                e.add(
                    "key",
                    format!(
                        "key {} is held by both {other:?} and {:?}",
                        file_key_id(h),
                        c.id
                    ),
                );
            }
        }
    }
    consumers
}
