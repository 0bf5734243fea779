//! Authentication: which consumer a call's credentials (an API key, a client certificate)
//! name.

/// The names a client certificate carries, once the TLS layer has verified it against the
/// configured CA: `CN=…` for the subject's common names, `DNS:…`, `URI:…`, `email:…` and
/// `IP:…` for its subject alternative names (DNS names in lower case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCertificate {
    pub names: Vec<String>,
}
