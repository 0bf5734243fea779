//! What the gateway and the simulators talk about: Vietnamese public-administration facts
//! (administrative units, identifier formats, dates), the datasets and their canonical
//! records, the call context, and the error-code table every transport answers with.

pub mod calendar;
pub mod compact;
pub mod context;
pub mod dataset;
pub mod date;
pub mod error;
pub mod ids;
pub mod record;
pub mod signed_header;
pub mod tsp;
pub mod units;
pub mod witness;
pub mod wsse;
pub mod xml;

/// Percent-encodes a URL query value or a form field (RFC 3986 unreserved characters kept,
/// every other byte as `%XX`), as RFC 6749's `application/x-www-form-urlencoded` accepts.
pub fn urlencode(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Decodes %XX escapes into UTF-8 text; `None` for a malformed escape (`%ZZ`, a lone `%`)
/// or bytes that are not UTF-8 (`%C3%28`).
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let hex = |b: u8| (b as char).to_digit(16);
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex)?;
            let lo = bytes.get(i + 2).copied().and_then(hex)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
