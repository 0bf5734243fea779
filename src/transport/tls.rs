//! TLS on the lookup listener: a rustls server config from PEM files, client certificates
//! verified against a configured CA (mTLS), and the names a verified certificate carries,
//! which the door's accept loop hands to the core as the caller's identity.
//!
//! REST and gRPC share the port, so the server offers ALPN `h2` and `http/1.1`.

pub use crate::certs::{TlsError, certs_from_pem, client_config, key_from_pem};
use crate::config::raw::RawTls;
use crate::config::{Errors, Source};
use crate::layers::authenticate::ClientCertificate;
pub use crate::layers::authenticate::normalize_name;
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::sync::Arc;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Whether a client must present a certificate, or may use an API key instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Optional,
    Required,
}

/// The server side of TLS: `client_auth` is `Some` exactly when `client_cas` is; client
/// certificates the `crls` revoke are refused.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_cas: Option<Vec<CertificateDer<'static>>>,
    client_auth: Option<ClientAuth>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let rustls = |what| move |source| TlsError::Rustls { what, source };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(rustls("protocol versions"))?;
    let builder = match client_cas {
        None => builder.with_no_client_auth(),
        Some(cas) => {
            let mut roots = RootCertStore::empty();
            for ca in cas {
                roots
                    .add(ca)
                    .map_err(rustls("client_ca: not a usable CA certificate"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .with_crls(crls);
            let verifier = match client_auth {
                Some(ClientAuth::Required) => verifier,
                _ => verifier.allow_unauthenticated(),
            };
            builder.with_client_cert_verifier(verifier.build()?)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(rustls(
        "the certificate and key do not make a server identity",
    ))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The names a (verified) client certificate carries.
pub fn identity(cert: &CertificateDer<'_>) -> ClientCertificate {
    let mut names = Vec::new();
    let Ok((_, cert)) = X509Certificate::from_der(cert.as_ref()) else {
        return ClientCertificate { names };
    };
    for cn in cert.subject().iter_common_name() {
        if let Ok(cn) = cn.as_str() {
            names.push(format!("CN={cn}"));
        }
    }
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => names.push(format!("DNS:{}", d.to_ascii_lowercase())),
                GeneralName::URI(u) => names.push(format!("URI:{u}")),
                GeneralName::RFC822Name(m) => names.push(format!("email:{m}")),
                GeneralName::IPAddress(ip) => {
                    let ip = match ip.len() {
                        4 => <[u8; 4]>::try_from(*ip).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(*ip).ok().map(std::net::IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        names.push(format!("IP:{ip}"));
                    }
                }
                _ => {}
            }
        }
    }
    ClientCertificate { names }
}

/// The server TLS configuration the listeners use for each new connection, replaced
/// whole when the certificate, key, client CA or revocation lists change: connections made
/// before keep the session they have.
pub struct TlsSlot(std::sync::RwLock<Arc<ServerConfig>>);

impl TlsSlot {
    pub fn new(config: Arc<ServerConfig>) -> Arc<TlsSlot> {
        Arc::new(TlsSlot(std::sync::RwLock::new(config)))
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, config: Arc<ServerConfig>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = config;
    }
}

/// What the `[tls]` files are now: their paths, sizes and modification times (a change of
/// any is a reason to load them again).
pub fn files_state(
    source: &Source,
    raw: &RawTls,
) -> Vec<(String, Option<(u64, std::time::SystemTime)>)> {
    std::iter::once(&raw.cert)
        .chain(std::iter::once(&raw.key))
        .chain(raw.client_ca.iter())
        .chain(raw.crl_files.iter())
        .map(|rel| {
            let path = source.resolve_disk(rel);
            let meta = std::fs::metadata(&path)
                .ok()
                .and_then(|m| Some((m.len(), m.modified().ok()?)));
            (path, meta)
        })
        .collect()
}

/// TLS on the lookup listener, loaded and checked.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub server: Arc<rustls::ServerConfig>,
    /// Set when client certificates are verified (a `client_ca` is configured).
    pub client_auth: Option<ClientAuth>,
    /// The server certificate's and the client CA's expiry.
    pub certificates: Vec<crate::certs::CertificateExpiry>,
}

/// Reads and checks the `[tls]` files; `None` (with errors recorded) when they do not load.
pub fn from_settings(source: &Source, raw: &RawTls, e: &mut Errors<'_>) -> Option<TlsConfig> {
    let mut read = |key: &str, rel: &str| -> Option<Vec<u8>> {
        if rel.trim().is_empty() {
            e.add(format!("tls.{key}"), "missing: name a PEM file");
            return None;
        }
        let path = source.resolve_disk(rel);
        std::fs::read(&path)
            .map_err(|err| e.add(format!("tls.{key}"), format!("cannot read {path}: {err}")))
            .ok()
    };
    let cert = read("cert", &raw.cert);
    let key = read("key", &raw.key);
    let ca = raw.client_ca.as_deref().map(|p| read("client_ca", p));
    let crl_pems: Vec<(String, &String, Option<Vec<u8>>)> = raw
        .crl_files
        .iter()
        .enumerate()
        .map(|(i, rel)| {
            let key = format!("crl_files[{i}]");
            let pem = read(&key, rel);
            (key, rel, pem)
        })
        .collect();
    let client_auth = match raw.client_auth.as_deref() {
        None | Some("optional") => ClientAuth::Optional,
        Some("required") => ClientAuth::Required,
        Some(other) => {
            e.add(
                "tls.client_auth",
                format!("{other:?} is not \"optional\" or \"required\""),
            );
            ClientAuth::Optional
        }
    };
    if raw.client_auth.is_some() && raw.client_ca.is_none() {
        e.add(
            "tls.client_auth",
            "client certificates need tls.client_ca, the CA that signs them",
        );
    }
    let cert = cert?;
    let mut certificates = crate::certs::expiries(&cert, "server", true);
    if let Some(Some(pem)) = &ca {
        certificates.extend(crate::certs::expiries(pem, "client_ca", false));
    }
    let chain = certs_from_pem(&cert)
        .map_err(|m| e.add("tls.cert", m.to_string()))
        .ok()?;
    let key = key_from_pem(&key?)
        .map_err(|m| e.add("tls.key", m.to_string()))
        .ok()?;
    let cas = match ca {
        None => None,
        Some(pem) => Some(
            certs_from_pem(&pem?)
                .map_err(|m| e.add("tls.client_ca", m.to_string()))
                .ok()?,
        ),
    };
    let mut crls = Vec::new();
    for (key, rel, pem) in crl_pems {
        if raw.client_ca.is_none() {
            e.add(format!("tls.{key}"), "revocation lists need tls.client_ca");
        }
        let Some(pem) = pem else { continue };
        let found: Result<Vec<_>, _> = CertificateRevocationListDer::pem_slice_iter(&pem).collect();
        match found {
            Ok(list) if !list.is_empty() => crls.extend(list),
            _ => e.add(
                format!("tls.{key}"),
                format!(
                    "{rel}: no PEM certificate revocation list (-----BEGIN X509 CRL-----) in it"
                ),
            ),
        }
    }
    let client_auth = cas.as_ref().map(|_| client_auth);
    let server = server_config(chain, key, cas, client_auth, crls)
        .map_err(|m| e.add("tls", m.to_string()))
        .ok()?;
    Some(TlsConfig {
        server,
        client_auth,
        certificates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_checked() {
        assert_eq!(
            normalize_name("DNS:MotCua.HaNoi.gov.vn").unwrap(),
            "DNS:motcua.hanoi.gov.vn"
        );
        assert_eq!(
            normalize_name("CN=motcua-hanoi").unwrap(),
            "CN=motcua-hanoi"
        );
        assert_eq!(normalize_name("IP:::1").unwrap(), "IP:::1");
        let refusal = normalize_name("motcua-hanoi").unwrap_err();
        assert!(matches!(
            refusal,
            crate::layers::authenticate::NameError::Kind(_)
        ));
        assert!(refusal.to_string().contains("CN="));
        assert!(normalize_name("CN=").is_err());
        assert!(normalize_name("IP:not-an-ip").is_err());
    }

    #[test]
    fn identity_reads_common_name_and_alternative_names() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![
            "MotCua.example.vn".to_owned(),
            "10.0.0.7".to_owned(),
        ])
        .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "motcua-hanoi");
        let cert = params.self_signed(&key).unwrap();
        let id = identity(cert.der());
        assert_eq!(
            id.names,
            ["CN=motcua-hanoi", "DNS:motcua.example.vn", "IP:10.0.0.7"]
        );
    }
}
