//! Authentication: which consumer a call's credentials (an API key, a client certificate)
//! name.

/// The names a client certificate carries, once the TLS layer has verified it against the
/// configured CA: `CN=…` for the subject's common names, `DNS:…`, `URI:…`, `email:…` and
/// `IP:…` for its subject alternative names (DNS names in lower case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCertificate {
    pub names: Vec<String>,
}

/// `CN=x`, `DNS:x`, `URI:x`, `email:x` or `IP:x` as configured, in the form
/// `transport::tls::identity` produces (DNS names in lower case); an error says what is accepted.
pub fn normalize_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    let kinds = ["CN=", "DNS:", "URI:", "email:", "IP:"];
    let Some(kind) = kinds.iter().find(|k| name.starts_with(**k)) else {
        return Err(format!(
            "{name:?} must start with one of {} (e.g. \"CN=motcua-hanoi\")",
            kinds.join(" ")
        ));
    };
    let value = &name[kind.len()..];
    if value.is_empty() {
        return Err(format!("{name:?} names nothing after {kind}"));
    }
    Ok(match *kind {
        "DNS:" => format!("DNS:{}", value.to_ascii_lowercase()),
        "IP:" => {
            let ip: std::net::IpAddr = value
                .parse()
                .map_err(|_| format!("{value:?} is not an IP address"))?;
            format!("IP:{ip}")
        }
        _ => name.to_owned(),
    })
}
