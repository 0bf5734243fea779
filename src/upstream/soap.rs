//! The `soap-xml` connector: a SOAP 1.1 or 1.2 envelope over HTTP POST, its request
//! elements nested as configured, with the connector's credentials (the population
//! database's signed header, a WS-Security UsernameToken, or any HTTP scheme).

use super::connector::{Call, Payload, UpstreamError, http_error};
use super::credentials::Credentials;
use super::mapping::xml_to_json;
use super::spec::{ConnectorConfig, ConnectorKind, UpstreamAuth};
use super::template::{Template, Vars};
use crate::domain::wsse::{BASE64_BINARY, PASSWORD_DIGEST, WSSE, WSU};
use crate::domain::xml::xml_escape as escape;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::fmt::Write;

/// The envelope's version: namespace, content type and where the action goes differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapVersion {
    V11,
    V12,
}

impl SoapVersion {
    fn envelope_ns(self) -> &'static str {
        match self {
            SoapVersion::V11 => "http://schemas.xmlsoap.org/soap/envelope/",
            SoapVersion::V12 => "http://www.w3.org/2003/05/soap-envelope",
        }
    }
}

/// One request element: text from a template, or elements nested in it, in order.
#[derive(Debug, Clone)]
pub enum Element {
    Text(String, Template),
    Nested(String, Vec<Element>),
}

impl Element {
    /// The key parts its templates name.
    pub fn key_names(&self, out: &mut Vec<String>) {
        match self {
            Element::Text(_, t) => t.key_names(out),
            Element::Nested(_, children) => children.iter().for_each(|c| c.key_names(out)),
        }
    }

    /// The elements of `soap.fields`: a table, or a list of one-element tables that keeps
    /// their order; a mistake as (its dotted path, what is wrong).
    pub fn parse(v: &toml::Value) -> Result<Vec<Element>, (String, String)> {
        match v {
            toml::Value::Table(t) => Element::parse_all(t),
            toml::Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    toml::Value::Table(t) if t.len() == 1 => Element::parse_all(t)
                        .map(|mut one| one.remove(0))
                        .map_err(|(p, m)| (format!("[{i}].{p}"), m)),
                    _ => Err((
                        format!("[{i}]"),
                        "each item of an ordered list is a table of one element, e.g. {\"Nam\" = \"{key.1}\"}".into(),
                    )),
                })
                .collect(),
            _ => Err((
                String::new(),
                "must be a table of elements, or a list of one-element tables to keep their order"
                    .into(),
            )),
        }
    }

    /// The elements of a table of them, in the table's order.
    pub fn parse_all(table: &toml::Table) -> Result<Vec<Element>, (String, String)> {
        table
            .iter()
            .map(|(name, v)| {
                if !is_xml_name(name) {
                    return Err((name.clone(), format!("{name:?} is not an XML element name")));
                }
                match v {
                    toml::Value::String(t) => Template::parse(t)
                        .map(|t| Element::Text(name.clone(), t))
                        .map_err(|m| (name.clone(), m.to_string())),
                    toml::Value::Table(_) | toml::Value::Array(_) => Element::parse(v)
                        .map(|e| Element::Nested(name.clone(), e))
                        .map_err(|(p, m)| (format!("{name}.{p}"), m)),
                    _ => Err((
                        name.clone(),
                        "must be a string (a template), a table of nested elements, or a list of one-element tables".into(),
                    )),
                }
            })
            .collect()
    }

    fn write(&self, out: &mut String, vars: &Vars<'_>) {
        match self {
            Element::Text(name, t) => {
                let _ = write!(out, "<ns:{name}>{}</ns:{name}>", escape(&t.render(vars)));
            }
            Element::Nested(name, inner) => {
                let _ = write!(out, "<ns:{name}>");
                for e in inner {
                    e.write(out, vars);
                }
                let _ = write!(out, "</ns:{name}>");
            }
        }
    }
}

fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A `wsse:Security` header with a fresh nonce and the current time.
fn ws_security_header(user: &str, password: &str) -> String {
    let mut nonce = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce);
    let created = crate::domain::date::iso_ms(crate::domain::date::now_ms());
    format!(
        "<wsse:Security xmlns:wsse=\"{WSSE}\" xmlns:wsu=\"{WSU}\"><wsse:UsernameToken><wsse:Username>{}</wsse:Username><wsse:Password Type=\"{PASSWORD_DIGEST}\">{}</wsse:Password><wsse:Nonce EncodingType=\"{BASE64_BINARY}\">{}</wsse:Nonce><wsu:Created>{created}</wsu:Created></wsse:UsernameToken></wsse:Security>",
        escape(user),
        crate::domain::wsse::password_digest(&nonce, &created, password),
        BASE64.encode(nonce),
    )
}

pub async fn call(
    client: &reqwest::Client,
    credentials: &Credentials,
    config: &ConnectorConfig,
    call: &Call<'_>,
) -> Result<Payload, UpstreamError> {
    let ConnectorKind::SoapXml {
        version,
        namespace,
        operation,
        fields,
    } = &config.kind
    else {
        return Err(UpstreamError::Unavailable("not a soap connector".into()));
    };
    let user = match &config.auth {
        UpstreamAuth::SignedHeader { user, .. } | UpstreamAuth::WsSecurity { user, .. } => {
            user.as_str()
        }
        _ => "",
    };
    let vars = Vars {
        key: call.key,
        request_id: call.request_id,
        context: call.context,
        auth_user: user,
        separator: config.key_separator,
        part_names: &config.key_parts,
    };
    let header = match &config.auth {
        UpstreamAuth::WsSecurity { user, password } => ws_security_header(user, password),
        _ => String::new(),
    };
    let mut body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soapenv:Envelope xmlns:soapenv=\"{}\" xmlns:ns=\"{}\"><soapenv:Header>{header}</soapenv:Header><soapenv:Body><ns:{operation}>",
        version.envelope_ns(),
        escape(namespace)
    );
    for element in fields {
        element.write(&mut body, &vars);
    }
    let _ = write!(body, "</ns:{operation}></soapenv:Body></soapenv:Envelope>");

    let action = format!("{namespace}/{operation}");
    let request = client
        .post(credentials.url(config.endpoint.clone()))
        .header("traceparent", call.traceparent);
    let request = match version {
        SoapVersion::V11 => request
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", action),
        SoapVersion::V12 => request.header(
            "Content-Type",
            format!("application/soap+xml; charset=utf-8; action=\"{action}\""),
        ),
    };
    let response = credentials.send(request.body(body)).await?;
    let status = response.status();
    let text = response.text().await.map_err(http_error)?;
    let tree = xml_to_json(&text);
    if !status.is_success() {
        let fault = tree.ok().and_then(|t| fault_text(&t)).unwrap_or_default();
        return Err(super::connector::http_status_error(
            status,
            format!("http {status}; soap fault: {fault}"),
        ));
    }
    tree.map(Some).map_err(UpstreamError::BadResponse)
}

/// A fault's text: `faultstring` in SOAP 1.1, `Reason.Text` in SOAP 1.2.
fn fault_text(tree: &serde_json::Value) -> Option<String> {
    [
        "Envelope.Body.Fault.faultstring",
        "Envelope.Body.Fault.Reason.Text",
    ]
    .iter()
    .find_map(|p| {
        let path = super::mapping::Path::parse(p).ok()?;
        path.get(tree).and_then(|v| v.as_str()).map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_elements_keep_their_order_and_bad_names_are_named() {
        let table: toml::Table = toml::from_str(
            "SoDinhDanh = \"{key}\"\n[NgayThangNamSinh]\nNam = \"1990\"\nThang = \"{request_id}\"",
        )
        .unwrap();
        let elements = Element::parse_all(&table).unwrap();
        let ctx = crate::domain::context::CallContext::for_tests("1.001612", "d", "o");
        let vars = Vars {
            key: "001090000001",
            request_id: "05",
            context: &ctx,
            auth_user: "",
            separator: '-',
            part_names: &[],
        };
        let mut out = String::new();
        for e in &elements {
            e.write(&mut out, &vars);
        }
        assert_eq!(
            out,
            "<ns:SoDinhDanh>001090000001</ns:SoDinhDanh><ns:NgayThangNamSinh><ns:Nam>1990</ns:Nam><ns:Thang>05</ns:Thang></ns:NgayThangNamSinh>"
        );
        let bad: toml::Table = toml::from_str("[A]\n\"1x\" = \"v\"").unwrap();
        let (path, message) = Element::parse_all(&bad).unwrap_err();
        assert_eq!(path, "A.1x");
        assert!(message.contains("not an XML element name"), "{message}");
        let wrong: toml::Table = toml::from_str("A = 3").unwrap();
        assert!(Element::parse_all(&wrong).is_err());
    }

    /// Elements sent as JSON through the admin API as a list keep the order they were
    /// written in (an XML schema's sequence), through the registry's TOML.
    #[test]
    fn elements_sent_as_json_keep_their_order() {
        let json: serde_json::Value = serde_json::from_str(
            r#"{"fields": [{"So": [{"Quyen": "01"}, {"Nam": "{key.1}"}]}, {"MaCoQuan": "{key.0}"}]}"#,
        )
        .unwrap();
        let toml = toml::Value::try_from(&json).unwrap();
        let text = toml::to_string(&toml).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        let elements = Element::parse(&table["fields"]).unwrap();
        // A list item that is not one element is named.
        let two = toml::Value::try_from(serde_json::json!([{"A": "x", "B": "y"}])).unwrap();
        assert_eq!(Element::parse(&two).unwrap_err().0, "[0]");
        let ctx = crate::domain::context::CallContext::for_tests("1.001612", "d", "o");
        let vars = Vars {
            key: "00004-2025",
            request_id: "r",
            context: &ctx,
            auth_user: "",
            separator: '-',
            part_names: &[],
        };
        let mut out = String::new();
        for e in &elements {
            e.write(&mut out, &vars);
        }
        assert_eq!(
            out,
            "<ns:So><ns:Quyen>01</ns:Quyen><ns:Nam>2025</ns:Nam></ns:So><ns:MaCoQuan>00004</ns:MaCoQuan>"
        );
    }
}
