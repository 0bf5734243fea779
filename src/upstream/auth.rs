//! How the gateway proves itself to a provider, as configured: the scheme and its secrets,
//! and TLS toward the provider (its CA and a client certificate). Checked and read once,
//! when a configuration is built; secrets never appear in `Debug` output.

use crate::config::raw::{RawConnectorTls, RawUpstreamAuth};
use crate::config::sealed::{SealKey, is_sealed};
use crate::config::{Errors, Source, secret_of};
use std::collections::BTreeMap;
use std::fmt;

/// How the gateway authenticates to a provider.
#[derive(Clone)]
pub enum UpstreamAuth {
    None,
    /// The population database's scheme: `Timestamp` and
    /// `Authorization: Basic base64(user:sha256(url+user+timestamp+secret))`.
    SignedHeader {
        user: String,
        secret: String,
        client_id: String,
        api_key: Option<String>,
    },
    Bearer {
        token: String,
    },
    /// A fixed key in a header or a query parameter.
    ApiKey {
        place: KeyPlace,
        name: String,
        key: String,
    },
    /// OAuth2 client credentials (RFC 6749 section 4.4): a token fetched from the token
    /// endpoint, cached, refreshed before it expires, sent as a bearer token.
    OAuth2(OAuth2),
    /// WS-Security UsernameToken with PasswordDigest, in the SOAP header.
    WsSecurity {
        user: String,
        password: String,
    },
}

/// Where an API key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPlace {
    Header,
    Query,
}

/// An OAuth2 client of a provider's token endpoint.
#[derive(Clone)]
pub struct OAuth2 {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub client_auth: ClientAuth,
    pub scope: Option<String>,
}

/// How the client authenticates to the token endpoint (RFC 6749 section 2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the form-encoded id and secret.
    Basic,
    /// `client_secret_post`: the id and secret in the form body.
    Post,
}

impl UpstreamAuth {
    /// The scheme's name, as config writes it.
    pub fn scheme(&self) -> &'static str {
        match self {
            UpstreamAuth::None => "none",
            UpstreamAuth::SignedHeader { .. } => "signed-header",
            UpstreamAuth::Bearer { .. } => "bearer",
            UpstreamAuth::ApiKey { .. } => "api-key",
            UpstreamAuth::OAuth2(_) => "oauth2",
            UpstreamAuth::WsSecurity { .. } => "ws-security",
        }
    }
}

impl fmt::Debug for UpstreamAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("UpstreamAuth");
        d.field("scheme", &self.scheme());
        match self {
            UpstreamAuth::SignedHeader { user, .. } | UpstreamAuth::WsSecurity { user, .. } => {
                d.field("user", user);
            }
            UpstreamAuth::ApiKey { place, name, .. } => {
                d.field("place", place).field("name", name);
            }
            UpstreamAuth::OAuth2(o) => {
                d.field("token_url", &o.token_url)
                    .field("client_id", &o.client_id)
                    .field("client_auth", &o.client_auth);
            }
            UpstreamAuth::None | UpstreamAuth::Bearer { .. } => {}
        }
        d.finish_non_exhaustive()
    }
}

/// TLS toward a provider, as PEM read from the configured files.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectorTls {
    pub ca_pem: Vec<u8>,
    /// (certificate chain, private key)
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for ConnectorTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectorTls")
            .field("client_certificate", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl ConnectorTls {
    /// The rustls client configuration: trusts the CA only, presents the certificate.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, crate::certs::TlsError> {
        let identity = self
            .identity
            .as_ref()
            .map(|(c, k)| (c.as_slice(), k.as_slice()));
        crate::certs::client_config(&self.ca_pem, identity)
    }
}

/// What one connector's `auth` section says, for a connector of `kind`.
pub fn from_settings(
    key: &str,
    raw: Option<&RawUpstreamAuth>,
    kind: &str,
    source: &Source,
    env: &BTreeMap<String, String>,
    seal: Option<&SealKey>,
    e: &mut Errors<'_>,
) -> UpstreamAuth {
    let Some(a) = raw else {
        return UpstreamAuth::None;
    };
    let key = format!("{key}.auth");
    // A secret sent through the admin API is sealed under the secrets key (bound to the
    // setting's name); it is opened here, and only here.
    let secret = |e: &mut Errors<'_>, name: &str, given: [&Option<String>; 3]| {
        let value = secret_of(e, source, &format!("{key}.{name}"), given, env);
        if !is_sealed(&value) {
            return value;
        }
        let opened = match seal {
            None => Err("is sealed, and no [admin] secrets_key is set to open it".to_owned()),
            Some(k) => k.open(name, &value),
        };
        opened
            .map_err(|m| e.add(format!("{key}.{name}"), m))
            .unwrap_or_default()
    };
    let required = |e: &mut Errors<'_>, name: &str, v: &Option<String>| {
        let v = v.as_deref().map(str::trim).unwrap_or("");
        if v.is_empty() {
            e.add(format!("{key}.{name}"), "missing");
        }
        v.to_owned()
    };
    match a.scheme.as_str() {
        "none" | "" => UpstreamAuth::None,
        "signed-header" => UpstreamAuth::SignedHeader {
            user: required(e, "user", &a.user),
            secret: secret(e, "secret", [&a.secret, &a.secret_env, &a.secret_file]),
            client_id: a.client_id.clone().unwrap_or_default(),
            api_key: a.api_key.clone(),
        },
        "bearer" => UpstreamAuth::Bearer {
            token: secret(e, "token", [&a.token, &a.token_env, &a.token_file]),
        },
        "api-key" => {
            let (place, name) = match (&a.header, &a.query) {
                (Some(h), None) => {
                    if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                        e.add(
                            format!("{key}.header"),
                            format!("{h:?} is not a header name"),
                        );
                    }
                    (KeyPlace::Header, h.clone())
                }
                (None, Some(q)) if !q.trim().is_empty() => (KeyPlace::Query, q.clone()),
                _ => {
                    e.add(
                        key.clone(),
                        "api-key needs exactly one of `header` (a header name) and `query` (a query parameter)",
                    );
                    (KeyPlace::Header, String::new())
                }
            };
            if place == KeyPlace::Query && kind == "grpc" {
                e.add(
                    format!("{key}.query"),
                    "a gRPC call has no query: send the key in a `header` (metadata)",
                );
            }
            let key_value = secret(e, "api_key", [&a.api_key, &a.api_key_env, &a.api_key_file]);
            if place == KeyPlace::Header && http::HeaderValue::from_str(&key_value).is_err() {
                e.add(
                    format!("{key}.api_key"),
                    "cannot be sent in a header (control characters)",
                );
            }
            UpstreamAuth::ApiKey {
                place,
                name,
                key: key_value,
            }
        }
        "oauth2" => {
            let token_url = required(e, "token_url", &a.token_url);
            let http = token_url.starts_with("http://") || token_url.starts_with("https://");
            if !(token_url.is_empty() || http) {
                e.add(
                    format!("{key}.token_url"),
                    format!("{token_url:?} is not an http:// or https:// URL"),
                );
            }
            let client_auth = match a.client_auth.as_deref().unwrap_or("basic") {
                "basic" | "client_secret_basic" => ClientAuth::Basic,
                "post" | "client_secret_post" => ClientAuth::Post,
                other => {
                    e.add(
                        format!("{key}.client_auth"),
                        format!("{other:?} is not \"basic\" (client_secret_basic) or \"post\" (client_secret_post)"),
                    );
                    ClientAuth::Basic
                }
            };
            UpstreamAuth::OAuth2(OAuth2 {
                token_url,
                client_id: required(e, "client_id", &a.client_id),
                client_secret: secret(
                    e,
                    "client_secret",
                    [
                        &a.client_secret,
                        &a.client_secret_env,
                        &a.client_secret_file,
                    ],
                ),
                client_auth,
                scope: a.scope.clone().filter(|s| !s.trim().is_empty()),
            })
        }
        "ws-security" => {
            if kind != "soap-xml" {
                e.add(
                    format!("{key}.scheme"),
                    "ws-security is a SOAP header: only for soap-xml connectors",
                );
            }
            UpstreamAuth::WsSecurity {
                user: required(e, "user", &a.user),
                password: secret(
                    e,
                    "password",
                    [&a.password, &a.password_env, &a.password_file],
                ),
            }
        }
        other => {
            e.add(
                format!("{key}.scheme"),
                format!(
                    "{other:?} is not \"none\", \"signed-header\", \"bearer\", \"api-key\", \"oauth2\" or \"ws-security\""
                ),
            );
            UpstreamAuth::None
        }
    }
}

/// What one connector's `tls` section says; its files are read now and the client
/// configuration is built once, so that a mistake is named before anything runs.
pub fn tls_from_settings(
    key: &str,
    raw: Option<&RawConnectorTls>,
    endpoint: &str,
    source: &Source,
    e: &mut Errors<'_>,
) -> Option<ConnectorTls> {
    let t = raw?;
    let key = format!("{key}.tls");
    if !endpoint.starts_with("https://") {
        e.add(
            key.clone(),
            format!("the endpoint {endpoint:?} is not https://: TLS settings would not be used"),
        );
    }
    let mut read = |name: &str, path: &Option<String>| -> Option<Vec<u8>> {
        let path = path.as_deref()?;
        let resolved = source.resolve_disk(path);
        std::fs::read(&resolved)
            .map_err(|err| {
                e.add(
                    format!("{key}.{name}"),
                    format!("cannot read {resolved}: {err}"),
                )
            })
            .ok()
    };
    let ca = read("ca_file", &t.ca_file);
    let cert = read("client_cert_file", &t.client_cert_file);
    let private = read("client_key_file", &t.client_key_file);
    let identity = match (cert, private, &t.client_cert_file, &t.client_key_file) {
        (Some(c), Some(k), _, _) => Some((c, k)),
        (_, _, Some(_), None) | (_, _, None, Some(_)) => {
            e.add(
                key.clone(),
                "client_cert_file and client_key_file go together",
            );
            None
        }
        _ => None,
    };
    let Some(ca_pem) = ca else {
        if t.ca_file.is_none() {
            e.add(
                format!("{key}.ca_file"),
                "missing: the CA that issued the provider's certificate",
            );
        }
        return None;
    };
    let tls = ConnectorTls { ca_pem, identity };
    match tls.client_config() {
        Ok(_) => Some(tls),
        Err(err) => {
            e.add(key, err.to_string());
            None
        }
    }
}

/// SHA-256 over everything read for authentication and TLS, so that a reload rebuilds the
/// connector when a secret or a certificate file changed though its config did not.
pub fn material_digest(auth: &UpstreamAuth, tls: Option<&ConnectorTls>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut put = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    put(auth.scheme().as_bytes());
    match auth {
        UpstreamAuth::None => {}
        UpstreamAuth::SignedHeader {
            user,
            secret,
            client_id,
            api_key,
        } => {
            for v in [user, secret, client_id] {
                put(v.as_bytes());
            }
            put(api_key.as_deref().unwrap_or("").as_bytes());
        }
        UpstreamAuth::Bearer { token } => put(token.as_bytes()),
        UpstreamAuth::ApiKey { name, key, .. } => {
            put(name.as_bytes());
            put(key.as_bytes());
        }
        UpstreamAuth::OAuth2(o) => {
            for v in [&o.token_url, &o.client_id, &o.client_secret] {
                put(v.as_bytes());
            }
        }
        UpstreamAuth::WsSecurity { user, password } => {
            put(user.as_bytes());
            put(password.as_bytes());
        }
    }
    if let Some(t) = tls {
        put(&t.ca_pem);
        if let Some((c, k)) = &t.identity {
            put(c);
            put(k);
        }
    }
    hex::encode(h.finalize())
}
