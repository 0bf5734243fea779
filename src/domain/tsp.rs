//! RFC 3161 time-stamping, as much as anchoring needs: a request for a SHA-256 digest, the
//! reply's token, and checking a token against the authority's certificate (its message
//! imprint, the signed attributes' digest of the token info, and the signature: ECDSA
//! P-256 or RSA with SHA-256). And issuing tokens, for the simulated authority.
//!
//! A few lines of DER, written and read by hand: the structures are small and fixed.

use ring::digest::{SHA256, digest};

// Object identifiers, as their DER contents.
const SHA256_OID: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
const TST_INFO: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x04,
];
const CONTENT_TYPE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03];
const MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
/// The simulated authority's policy (the one OpenSSL's examples use).
const SIM_POLICY: &[u8] = &[0x2a, 0x03, 0x04, 0x01];

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OCTETS: u8 = 0x04;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const GENERALIZED_TIME: u8 = 0x18;
const CONTEXT_0: u8 = 0xa0;

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(SEQUENCE, &parts.concat())
}

fn uint(n: u64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut content = bytes[skip..].to_vec();
    if content[0] & 0x80 != 0 {
        content.insert(0, 0);
    }
    tlv(INTEGER, &content)
}

fn sha256_algorithm() -> Vec<u8> {
    seq(&[&tlv(OID, SHA256_OID)])
}

/// A time-stamp request for `hash` (SHA-256), asking for the authority's certificate in
/// the token; `nonce` ties the reply to it.
pub fn request(hash: &[u8; 32], nonce: u64) -> Vec<u8> {
    let imprint = seq(&[&sha256_algorithm(), &tlv(OCTETS, hash)]);
    seq(&[&uint(1), &imprint, &uint(nonce), &tlv(BOOLEAN, &[0xff])])
}

/// One DER element: its tag, contents, and whole encoding.
#[derive(Debug, Clone, Copy)]
struct Der<'a> {
    tag: u8,
    content: &'a [u8],
    raw: &'a [u8],
}

fn read(input: &[u8]) -> Result<(Der<'_>, &[u8]), String> {
    let short = || "DER: cut short".to_owned();
    let (&tag, rest) = input.split_first().ok_or_else(short)?;
    let (&first, rest) = rest.split_first().ok_or_else(short)?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err("DER: a length it cannot read".into());
        }
        let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(short());
    }
    let header = input.len() - rest.len();
    Ok((
        Der {
            tag,
            content: &rest[..len],
            raw: &input[..header + len],
        },
        &rest[len..],
    ))
}

fn one(input: &[u8]) -> Result<Der<'_>, String> {
    read(input).map(|(d, _)| d)
}

fn children(content: &[u8]) -> Result<Vec<Der<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        let (d, r) = read(rest)?;
        out.push(d);
        rest = r;
    }
    Ok(out)
}

fn expect<'a>(d: Option<&Der<'a>>, tag: u8, what: &str) -> Result<Der<'a>, String> {
    match d {
        Some(d) if d.tag == tag => Ok(*d),
        _ => Err(format!("not a time-stamp token: {what}")),
    }
}

/// The token a time-stamp reply carries (a CMS `ContentInfo`), or why there is none.
pub fn token_of_reply(reply: &[u8]) -> Result<Vec<u8>, String> {
    let resp = one(reply)?;
    let parts = children(resp.content)?;
    let status = children(expect(parts.first(), SEQUENCE, "no status")?.content)?;
    let granted = expect(status.first(), INTEGER, "no status value")?.content;
    if !matches!(granted, [0] | [1]) {
        return Err(format!(
            "the authority refused the request (status {granted:?})"
        ));
    }
    Ok(expect(parts.get(1), SEQUENCE, "no token")?.raw.to_vec())
}

/// What a checked token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped {
    /// The authority's time, as its token states it (GeneralizedTime, UTC).
    pub gen_time: String,
}

/// Checks `token` (a `ContentInfo`) against the authority's certificate `cert` (DER) and
/// the digest it must stamp.
pub fn check_token(token: &[u8], cert: &[u8], hash: &[u8; 32]) -> Result<Stamped, String> {
    let info = children(one(token)?.content)?;
    if expect(info.first(), OID, "no content type")?.content != SIGNED_DATA {
        return Err("not a time-stamp token: not CMS signed data".into());
    }
    let explicit = expect(info.get(1), CONTEXT_0, "no content")?;
    let signed = children(one(explicit.content)?.content)?;
    let encap = children(expect(signed.get(2), SEQUENCE, "no encapsulated content")?.content)?;
    if expect(encap.first(), OID, "no content type")?.content != TST_INFO {
        return Err("not a time-stamp token: its content is not TSTInfo".into());
    }
    let e_content = expect(
        Some(&one(expect(encap.get(1), CONTEXT_0, "no TSTInfo")?.content)?),
        OCTETS,
        "TSTInfo is not an octet string",
    )?
    .content;
    let tst = children(one(e_content)?.content)?;
    let imprint = children(expect(tst.get(2), SEQUENCE, "no message imprint")?.content)?;
    let algorithm = children(expect(imprint.first(), SEQUENCE, "no imprint algorithm")?.content)?;
    if expect(algorithm.first(), OID, "no imprint algorithm")?.content != SHA256_OID {
        return Err("the token stamps a digest other than SHA-256".into());
    }
    if expect(imprint.get(1), OCTETS, "no imprint")?.content != hash {
        return Err("the token stamps another digest than this checkpoint's".into());
    }
    let gen_time = expect(tst.get(4), GENERALIZED_TIME, "no time")?.content;
    let signer_infos = expect(signed.last(), SET, "no signer")?;
    let signer = children(one(signer_infos.content)?.content)?;
    let digest_algorithm =
        children(expect(signer.get(2), SEQUENCE, "no digest algorithm")?.content)?;
    if expect(digest_algorithm.first(), OID, "no digest algorithm")?.content != SHA256_OID {
        return Err("the token's signature uses a digest other than SHA-256".into());
    }
    let attrs = expect(signer.get(3), CONTEXT_0, "no signed attributes")?;
    let wanted = digest(&SHA256, e_content);
    let mut digest_found = false;
    for attr in children(attrs.content)? {
        let parts = children(attr.content)?;
        if expect(parts.first(), OID, "an attribute without a type")?.content == MESSAGE_DIGEST {
            let values =
                children(expect(parts.get(1), SET, "an attribute without values")?.content)?;
            digest_found = expect(values.first(), OCTETS, "a digest that is not octets")?.content
                == wanted.as_ref();
        }
    }
    if !digest_found {
        return Err("the signed attributes' digest is not that of the token's content".into());
    }
    // What was signed: the attributes as a SET (their [0] tag put back).
    let mut signed_bytes = attrs.raw.to_vec();
    signed_bytes[0] = SET;
    let signature_algorithm =
        children(expect(signer.get(4), SEQUENCE, "no signature algorithm")?.content)?;
    let signature = expect(signer.get(5), OCTETS, "no signature")?.content;
    let (_, certificate) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| format!("the authority's certificate does not read: {e}"))?;
    let public = certificate
        .tbs_certificate
        .subject_pki
        .subject_public_key
        .data
        .as_ref();
    let algorithm: &dyn ring::signature::VerificationAlgorithm =
        match expect(signature_algorithm.first(), OID, "no signature algorithm")?.content {
            ECDSA_SHA256 => &ring::signature::ECDSA_P256_SHA256_ASN1,
            RSA | RSA_SHA256 => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            _ => {
                return Err(
                    "the token is signed with an algorithm this gateway does not check".into(),
                );
            }
        };
    ring::signature::UnparsedPublicKey::new(algorithm, public)
        .verify(&signed_bytes, signature)
        .map_err(|_| {
            "the token's signature does not verify under the authority's certificate".to_owned()
        })?;
    Ok(Stamped {
        gen_time: String::from_utf8_lossy(gen_time).into_owned(),
    })
}

/// A time-stamping authority (the simulated one): its certificate and ECDSA P-256 key.
pub struct Authority {
    pub certificate: Vec<u8>,
    key: ring::signature::EcdsaKeyPair,
    serial: std::sync::atomic::AtomicU64,
}

impl Authority {
    /// From its certificate (DER) and PKCS#8 key (DER).
    pub fn new(certificate: Vec<u8>, pkcs8: &[u8]) -> Result<Authority, String> {
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            pkcs8,
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|e| format!("the authority's key: {e}"))?;
        Ok(Authority {
            certificate,
            key,
            serial: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// A new authority with a self-signed certificate (subject CN `name`), for the
    /// simulator and tests.
    pub fn generate(name: &str) -> Result<Authority, String> {
        Authority::generate_keyed(name).map(|(a, _)| a)
    }

    /// As [`Authority::generate`], with its key (PKCS#8 DER) to keep.
    pub fn generate_keyed(name: &str) -> Result<(Authority, Vec<u8>), String> {
        let fail = |e: rcgen::Error| e.to_string();
        let key = rcgen::KeyPair::generate().map_err(fail)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::TimeStamping];
        let cert = params.self_signed(&key).map_err(fail)?;
        let pkcs8 = key.serialize_der();
        Ok((Authority::new(cert.der().to_vec(), &pkcs8)?, pkcs8))
    }

    /// The reply to a request: a granted token over its imprint, at `now` (UTC
    /// `YYYYMMDDHHMMSSZ`).
    pub fn reply(&self, request: &[u8], now: &str) -> Result<Vec<u8>, String> {
        let req = children(one(request)?.content)?;
        let imprint = expect(req.get(1), SEQUENCE, "a request without an imprint")?;
        // After the version and the imprint (and an optional policy): the nonce.
        let nonce = req.iter().skip(2).find(|d| d.tag == INTEGER);
        let serial = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut tst = vec![
            uint(1),
            tlv(OID, SIM_POLICY),
            imprint.raw.to_vec(),
            uint(serial),
            tlv(GENERALIZED_TIME, now.as_bytes()),
        ];
        if let Some(n) = nonce {
            tst.push(n.raw.to_vec());
        }
        let tst: Vec<&[u8]> = tst.iter().map(Vec::as_slice).collect();
        let e_content = seq(&tst);
        let mut attrs = [
            seq(&[&tlv(OID, CONTENT_TYPE), &tlv(SET, &tlv(OID, TST_INFO))]),
            seq(&[
                &tlv(OID, MESSAGE_DIGEST),
                &tlv(SET, &tlv(OCTETS, digest(&SHA256, &e_content).as_ref())),
            ]),
        ];
        attrs.sort();
        let attrs = attrs.concat();
        let signature = self
            .key
            .sign(&ring::rand::SystemRandom::new(), &tlv(SET, &attrs))
            .map_err(|e| format!("signing: {e}"))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&self.certificate)
            .map_err(|e| format!("the authority's certificate: {e}"))?;
        let sid = seq(&[
            cert.tbs_certificate.issuer.as_raw(),
            &tlv(INTEGER, cert.tbs_certificate.raw_serial()),
        ]);
        let signer = seq(&[
            &uint(1),
            &sid,
            &sha256_algorithm(),
            &tlv(CONTEXT_0, &attrs),
            &seq(&[&tlv(OID, ECDSA_SHA256)]),
            &tlv(OCTETS, signature.as_ref()),
        ]);
        let signed_data = seq(&[
            &uint(3),
            &tlv(SET, &sha256_algorithm()),
            &seq(&[
                &tlv(OID, TST_INFO),
                &tlv(CONTEXT_0, &tlv(OCTETS, &e_content)),
            ]),
            &tlv(CONTEXT_0, &self.certificate),
            &tlv(SET, &signer),
        ]);
        let token = seq(&[&tlv(OID, SIGNED_DATA), &tlv(CONTEXT_0, &signed_data)]);
        Ok(seq(&[&seq(&[&uint(0)]), &token]))
    }
}

#[cfg(test)]
mod tests;
