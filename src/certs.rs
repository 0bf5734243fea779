//! The process's TLS crypto provider (rustls with ring), and `lienthong certs`: a private CA,
//! a server certificate and client certificates, enough to turn on mTLS for a pilot or a test
//! in minutes. A production deployment uses the certificates its PKI issues; the gateway
//! only needs PEM files.

use crate::domain::date::Date;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Installs the process-wide rustls provider (ring). Safe to call more than once.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The portal's assertions (JWTs) are checked with the pure-Rust RustCrypto backend.
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

/// Why certificates, keys or a TLS configuration are not usable. The messages say what is
/// wrong with the file; the caller names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("not a PEM certificate file: {0}")]
    Pem(rustls::pki_types::pem::Error),
    #[error("holds no CERTIFICATE block")]
    NoCertificate,
    #[error("holds no usable private key: {0}")]
    NoKey(rustls::pki_types::pem::Error),
    #[error("{what}: {source}")]
    Rustls {
        what: &'static str,
        source: rustls::Error,
    },
    #[error("client_ca: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// A TLS client that trusts `ca_pem` only and, given (certificate, key) PEM, presents that
/// client certificate: how `lienthong admin` reaches an admin listener that speaks TLS, and how a connector
/// reaches a provider over mTLS.
pub fn client_config(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<rustls::ClientConfig, TlsError> {
    let rustls = |what| move |source| TlsError::Rustls { what, source };
    let mut roots = RootCertStore::empty();
    for c in certs_from_pem(ca_pem)? {
        roots.add(c).map_err(rustls("CA certificate"))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(rustls("protocol versions"))?
    .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => builder
            .with_client_auth_cert(certs_from_pem(cert)?, key_from_pem(key)?)
            .map_err(rustls("client certificate")),
    }
}

/// Every certificate in a PEM file, in order.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::Pem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
/// A certificate the gateway holds and when it expires, for
/// `lienthong_certificate_expiry_seconds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateExpiry {
    /// "server", "client_ca" or "upstream_client".
    pub role: &'static str,
    /// The subject's common name (empty when it has none).
    pub subject: String,
    /// Its `notAfter`, Unix seconds.
    pub not_after_s: i64,
}

/// The certificates in `pem` with `role`: all of them, or with `leaf_only` the first (a
/// chain's own certificate).
pub fn expiries(pem: &[u8], role: &'static str, leaf_only: bool) -> Vec<CertificateExpiry> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Ok(ders) = certs_from_pem(pem) else {
        return Vec::new();
    };
    let take = if leaf_only { 1 } else { ders.len() };
    ders.iter()
        .take(take)
        .filter_map(|der| {
            let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
            let subject = cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .unwrap_or_default()
                .to_owned();
            Some(CertificateExpiry {
                role,
                subject,
                not_after_s: cert.validity().not_after.timestamp(),
            })
        })
        .collect()
}

pub fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(TlsError::NoKey)
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate authority that signs server and client certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pem: Issued,
}

fn validity(params: &mut CertificateParams, days: u32) {
    let at = |d: Date| rcgen::date_time_ymd(d.year, d.month as u8, d.day as u8);
    // A day of slack for clocks that run behind.
    params.not_before = at(Date::in_days(-1));
    params.not_after = at(Date::in_days(i64::from(days)));
}

/// Why a certificate could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{what}: {source}")]
    Rcgen { what: String, source: rcgen::Error },
    #[error("cannot {doing} {}: {source}", path.display())]
    Io {
        doing: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("client name {0:?}: use letters, digits, '-', '_' and '.' (it names the files)")]
    ClientName(String),
    #[error("{} has only one of ca.pem and ca-key.pem: restore the other or remove both", .0.display())]
    HalfCa(PathBuf),
}

fn err(what: &str) -> impl Fn(rcgen::Error) -> CertError + '_ {
    move |source| CertError::Rcgen {
        what: what.to_owned(),
        source,
    }
}

fn io<'a>(doing: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CertError + 'a {
    move |source| CertError::Io {
        doing,
        path: path.to_owned(),
        source,
    }
}

impl Authority {
    /// A new self-signed CA named `name`, valid for `days`.
    pub fn new(name: &str, days: u32) -> Result<Authority, CertError> {
        let key = KeyPair::generate().map_err(err("CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, days);
        let cert = params.self_signed(&key).map_err(err("CA certificate"))?;
        let pem = Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(Authority {
            issuer: Issuer::new(params, key),
            pem,
        })
    }

    /// An existing CA from its PEM certificate and key.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Authority, CertError> {
        let key = KeyPair::from_pem(key_pem).map_err(err("CA key"))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(err("CA certificate"))?;
        let key_pem = issuer.key().serialize_pem();
        Ok(Authority {
            issuer,
            pem: Issued {
                cert_pem: cert_pem.to_owned(),
                key_pem,
            },
        })
    }

    /// The CA's own certificate and key.
    pub fn pem(&self) -> &Issued {
        &self.pem
    }

    /// A revocation list (PEM) of this CA naming the certificates `revoked` (PEM), issued
    /// now and due again in `days`.
    pub fn revocation_list(&self, revoked: &[&str], days: u32) -> Result<String, CertError> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let at = |d: Date| rcgen::date_time_ymd(d.year, d.month as u8, d.day as u8);
        let mut revoked_certs = Vec::new();
        for pem in revoked {
            let ders = certs_from_pem(pem.as_bytes()).map_err(|e| CertError::Rcgen {
                what: format!("a revoked certificate: {e}"),
                source: rcgen::Error::CouldNotParseCertificate,
            })?;
            for der in ders {
                let (_, cert) =
                    X509Certificate::from_der(der.as_ref()).map_err(|_| CertError::Rcgen {
                        what: "a revoked certificate".into(),
                        source: rcgen::Error::CouldNotParseCertificate,
                    })?;
                revoked_certs.push(rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from_slice(cert.raw_serial()),
                    revocation_time: at(Date::in_days(-1)),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                });
            }
        }
        let params = rcgen::CertificateRevocationListParams {
            this_update: at(Date::in_days(-1)),
            next_update: at(Date::in_days(i64::from(days.max(1)))),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.issuer)
            .map_err(err("revocation list"))?;
        crl.pem().map_err(err("revocation list"))
    }

    /// A server certificate for `names` (DNS names or IP addresses; the first is also the CN).
    pub fn server(&self, names: &[String], days: u32) -> Result<Issued, CertError> {
        let mut params =
            CertificateParams::new(names.to_vec()).map_err(err("server certificate names"))?;
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, days, "server certificate")
    }

    /// A client certificate with subject CN `name` and the given alternative names.
    pub fn client(&self, name: &str, alt_names: &[String], days: u32) -> Result<Issued, CertError> {
        let mut params =
            CertificateParams::new(alt_names.to_vec()).map_err(err("client certificate names"))?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, days, "client certificate")
    }

    fn sign(
        &self,
        mut params: CertificateParams,
        days: u32,
        what: &str,
    ) -> Result<Issued, CertError> {
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, days);
        let key = KeyPair::generate().map_err(err(what))?;
        let cert = params.signed_by(&key, &self.issuer).map_err(err(what))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// What `lienthong certs` was asked to make.
#[derive(Debug, Clone)]
pub struct Plan {
    pub out: PathBuf,
    /// Names the server certificate is valid for.
    pub server_names: Vec<String>,
    /// One client certificate per name (its subject CN).
    pub clients: Vec<String>,
    /// Client certificates (by name) to revoke: `ca.crl` is written anew naming these and
    /// every one revoked before (kept in `revoked.txt`).
    pub revoke: Vec<String>,
    pub days: u32,
}

/// What was written and what was kept, as paths.
#[derive(Debug, Default)]
pub struct Report {
    pub written: Vec<PathBuf>,
    pub kept: Vec<PathBuf>,
}

/// Creates the CA (or reuses the one in `out`), the server certificate and the client
/// certificates. Existing files are never overwritten: running it again with a new client
/// name adds that client under the same CA.
pub fn make(plan: &Plan) -> Result<Report, CertError> {
    for c in &plan.clients {
        if c.is_empty()
            || !c
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
        {
            return Err(CertError::ClientName(c.clone()));
        }
    }
    std::fs::create_dir_all(&plan.out).map_err(io("create", &plan.out))?;
    let mut report = Report::default();
    let path = |name: &str| plan.out.join(name);
    let (ca_cert, ca_key) = (path("ca.pem"), path("ca-key.pem"));
    let ca = if ca_cert.exists() && ca_key.exists() {
        report.kept.extend([ca_cert.clone(), ca_key.clone()]);
        Authority::load(&read(&ca_cert)?, &read(&ca_key)?)?
    } else if ca_cert.exists() || ca_key.exists() {
        return Err(CertError::HalfCa(plan.out.clone()));
    } else {
        let ca = Authority::new("lienthong pilot CA", plan.days.max(3650))?;
        write_pair(&ca_cert, &ca_key, ca.pem(), &mut report)?;
        ca
    };
    let (server_cert, server_key) = (path("server.pem"), path("server-key.pem"));
    if server_cert.exists() {
        report.kept.extend([server_cert, server_key]);
    } else {
        let issued = ca.server(&plan.server_names, plan.days)?;
        write_pair(&server_cert, &server_key, &issued, &mut report)?;
    }
    for client in &plan.clients {
        let cert = path(&format!("client-{client}.pem"));
        let key = path(&format!("client-{client}-key.pem"));
        if cert.exists() {
            report.kept.extend([cert, key]);
            continue;
        }
        let issued = ca.client(client, &[], plan.days)?;
        write_pair(&cert, &key, &issued, &mut report)?;
    }
    if !plan.revoke.is_empty() {
        revoke(&ca, plan, &mut report)?;
    }
    Ok(report)
}

/// Writes `ca.crl` anew: every client certificate revoked so far (`revoked.txt`) and those
/// of `plan.revoke`, each of which must have been issued here.
fn revoke(ca: &Authority, plan: &Plan, report: &mut Report) -> Result<(), CertError> {
    let listed = plan.out.join("revoked.txt");
    let mut names: Vec<String> = match std::fs::read_to_string(&listed) {
        Ok(text) => text
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect(),
        Err(_) => Vec::new(),
    };
    for name in &plan.revoke {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let mut pems = Vec::new();
    for name in &names {
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
        {
            return Err(CertError::ClientName(name.clone()));
        }
        pems.push(read(&plan.out.join(format!("client-{name}.pem")))?);
    }
    let refs: Vec<&str> = pems.iter().map(String::as_str).collect();
    let crl = ca.revocation_list(&refs, plan.days.clamp(1, 30))?;
    for (path, text) in [
        (plan.out.join("ca.crl"), crl),
        (listed, names.join("\n") + "\n"),
    ] {
        std::fs::write(&path, text).map_err(io("write", &path))?;
        report.written.push(path);
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(io("read", path))
}

fn write_pair(
    cert: &Path,
    key: &Path,
    issued: &Issued,
    report: &mut Report,
) -> Result<(), CertError> {
    write(cert, &issued.cert_pem, 0o644)?;
    write(key, &issued.key_pem, 0o600)?;
    report.written.extend([cert.to_owned(), key.to_owned()]);
    Ok(())
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), CertError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(io("create", path))?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_run_adds_a_client_under_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = Plan {
            out: dir.path().join("tls"),
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            clients: vec!["motcua-hanoi".into()],
            revoke: Vec::new(),
            days: 30,
        };
        let first = make(&plan).unwrap();
        assert_eq!(first.written.len(), 6);
        let ca_before = std::fs::read_to_string(plan.out.join("ca.pem")).unwrap();
        plan.clients.push("motcua-hue".into());
        let second = make(&plan).unwrap();
        assert_eq!(
            second.written,
            [
                plan.out.join("client-motcua-hue.pem"),
                plan.out.join("client-motcua-hue-key.pem")
            ]
        );
        assert_eq!(
            std::fs::read_to_string(plan.out.join("ca.pem")).unwrap(),
            ca_before
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(plan.out.join("client-motcua-hue-key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "private keys are readable by the owner only"
            );
        }
        plan.clients = vec!["../escape".into()];
        let refusal = make(&plan).unwrap_err();
        assert!(matches!(refusal, CertError::ClientName(_)), "{refusal:?}");
        assert!(refusal.to_string().contains("client name"));
    }
}
