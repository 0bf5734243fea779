//! The call context every lookup carries: which procedure, which dossier, which officer.

use crate::config::Errors;
use crate::config::raw::RawContextRules;
use regex::Regex;

/// Default patterns, per ../docs: national procedure codes with an optional local suffix,
/// dossier codes `<agency>-<yyMMdd>-<sequence>`, agency-assigned officer ids.
pub const DEFAULT_PROCEDURE_CODE_PATTERN: &str =
    r"^[1-3]\.\d{6}(\.\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2})?$";
pub const DEFAULT_DOSSIER_ID_PATTERN: &str = r"^[0-9A-Za-z.]{3,40}-\d{6}-\d{4,6}$";
pub const DEFAULT_OFFICER_ID_PATTERN: &str = r"^[\p{L}\p{N}._@-]{1,64}$";
pub const DEFAULT_AGENCY_CODE_PATTERN: &str = r"^[0-9A-Za-z.]{1,40}$";
/// Longest free-text purpose accepted, in characters.
pub const MAX_PURPOSE_CHARS: usize = 500;

/// The context fields as a transport received them, before validation.
#[derive(Debug, Clone, Default)]
pub struct RawContext {
    pub procedure_code: Option<String>,
    pub dossier_id: Option<String>,
    pub officer_id: Option<String>,
    pub agency_code: Option<String>,
    pub purpose: Option<String>,
    /// A field whose value could not be read as text (its name, and why): the transport
    /// found it malformed, and the call is refused naming it.
    pub malformed: Option<(&'static str, &'static str)>,
}

/// A validated call context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallContext {
    procedure_code: String,
    dossier_id: String,
    officer_id: String,
    agency_code: String,
    purpose: String,
}

impl CallContext {
    pub fn procedure_code(&self) -> &str {
        &self.procedure_code
    }
    pub fn dossier_id(&self) -> &str {
        &self.dossier_id
    }
    pub fn officer_id(&self) -> &str {
        &self.officer_id
    }
    pub fn agency_code(&self) -> &str {
        &self.agency_code
    }
    pub fn purpose(&self) -> &str {
        &self.purpose
    }

    /// The context's text: procedure code, dossier id, officer id, agency code, purpose.
    pub fn into_parts(self) -> [String; 5] {
        [
            self.procedure_code,
            self.dossier_id,
            self.officer_id,
            self.agency_code,
            self.purpose,
        ]
    }

    /// A field by its name in templates and config.
    pub fn field(&self, name: &str) -> &str {
        match name {
            "procedure_code" => &self.procedure_code,
            "dossier_id" => &self.dossier_id,
            "officer_id" => &self.officer_id,
            "agency_code" => &self.agency_code,
            "purpose" => &self.purpose,
            _ => "",
        }
    }

    /// The context of the gateway's own health probes: no procedure, dossier or officer of
    /// a citizen's case, and saying so to the provider.
    pub fn health_probe() -> CallContext {
        CallContext {
            procedure_code: "0.000000".into(),
            dossier_id: "lienthong-health-probe".into(),
            officer_id: "lienthong".into(),
            agency_code: String::new(),
            purpose: "health probe".into(),
        }
    }

    #[doc(hidden)]
    pub fn for_tests(procedure: &str, dossier: &str, officer: &str) -> CallContext {
        CallContext {
            procedure_code: procedure.into(),
            dossier_id: dossier.into(),
            officer_id: officer.into(),
            agency_code: String::new(),
            purpose: String::new(),
        }
    }
}

/// A context format: a regular expression, and a memo of values it recently accepted. A
/// one-stop system sends the same procedure, dossier and officer on call after call, so
/// most checks are one hash and one comparison instead of a regex run. The memo holds
/// hashes of accepted values only (seeded per process): a value is accepted from it only if
/// its 64-bit hash equals one the regex accepted.
pub struct Pattern {
    re: Regex,
    seed: u64,
    memo: Box<[std::sync::atomic::AtomicU64]>,
}

/// Values a pattern's memo holds (one slot each, by hash).
const MEMO_SLOTS: usize = 256;

impl Pattern {
    pub fn new(pattern: &str) -> Result<Pattern, regex::Error> {
        Ok(Pattern::of(Regex::new(pattern)?))
    }

    fn of(re: Regex) -> Pattern {
        Pattern {
            re,
            seed: uuid::Uuid::new_v4().as_u64_pair().0,
            memo: (0..MEMO_SLOTS)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
        }
    }

    pub fn is_match(&self, value: &str) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(value.as_bytes(), self.seed) | 1;
        let slot = &self.memo[h as usize % MEMO_SLOTS];
        if slot.load(Relaxed) == h {
            return true;
        }
        let matched = self.re.is_match(value);
        if matched {
            slot.store(h, Relaxed);
        }
        matched
    }

    pub fn as_str(&self) -> &str {
        self.re.as_str()
    }
}

impl Clone for Pattern {
    fn clone(&self) -> Pattern {
        Pattern::of(self.re.clone())
    }
}

impl std::fmt::Debug for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Pattern").field(&self.re.as_str()).finish()
    }
}

/// The deployment's context formats.
#[derive(Debug, Clone)]
pub struct ContextRules {
    pub procedure_code: Pattern,
    pub dossier_id: Pattern,
    pub officer_id: Pattern,
    pub agency_code: Pattern,
}

impl Default for ContextRules {
    fn default() -> Self {
        let re = |p: &str| Pattern::new(p).expect("default pattern compiles");
        ContextRules {
            procedure_code: re(DEFAULT_PROCEDURE_CODE_PATTERN),
            dossier_id: re(DEFAULT_DOSSIER_ID_PATTERN),
            officer_id: re(DEFAULT_OFFICER_ID_PATTERN),
            agency_code: re(DEFAULT_AGENCY_CODE_PATTERN),
        }
    }
}

impl ContextRules {
    /// The deployment's formats from `[context]`: each pattern set replaces its default.
    pub fn from_settings(raw: &RawContextRules, e: &mut Errors<'_>) -> ContextRules {
        let mut rules = ContextRules::default();
        for (key, slot, value) in [
            (
                "context.procedure_code_pattern",
                &mut rules.procedure_code,
                &raw.procedure_code_pattern,
            ),
            (
                "context.dossier_id_pattern",
                &mut rules.dossier_id,
                &raw.dossier_id_pattern,
            ),
            (
                "context.officer_id_pattern",
                &mut rules.officer_id,
                &raw.officer_id_pattern,
            ),
            (
                "context.agency_code_pattern",
                &mut rules.agency_code,
                &raw.agency_code_pattern,
            ),
        ] {
            if let Some(p) = value {
                match Pattern::new(p) {
                    Ok(re) => *slot = re,
                    Err(err) => e.add(key, format!("not a regular expression: {err}")),
                }
            }
        }
        rules
    }

    /// Whether a dossier id is in the deployment's format.
    pub fn dossier_id_matches(&self, id: &str) -> bool {
        self.dossier_id.is_match(id)
    }

    /// The context of a dossier call: its dossier and procedure, required, and the officer,
    /// optional (checked when given).
    pub fn dossier(
        &self,
        dossier_id: &str,
        procedure_code: &str,
        officer_id: &str,
    ) -> Result<CallContext, String> {
        let check = |value: &str, name: &str, re: &Pattern| -> Result<String, String> {
            let v = value.trim();
            if v.is_empty() {
                return Err(format!("{name} is required"));
            }
            if !re.is_match(v) {
                return Err(format!("{name} does not match the pattern {}", re.as_str()));
            }
            Ok(v.to_owned())
        };
        Ok(CallContext {
            procedure_code: check(procedure_code, "procedure_code", &self.procedure_code)?,
            dossier_id: check(dossier_id, "dossier_id", &self.dossier_id)?,
            officer_id: match officer_id.trim() {
                "" => String::new(),
                given => check(given, "officer_id", &self.officer_id)?,
            },
            agency_code: String::new(),
            purpose: String::new(),
        })
    }

    /// Validates a raw context; the error names the field and the rule, not the value.
    pub fn validate(&self, raw: &RawContext) -> Result<CallContext, String> {
        if let Some((field, why)) = raw.malformed {
            return Err(format!("{field} {why}"));
        }
        let required =
            |value: &Option<String>, name: &str, re: &Pattern| -> Result<String, String> {
                let v = value.as_deref().map(str::trim).unwrap_or_default();
                if v.is_empty() {
                    return Err(format!("{name} is required"));
                }
                if !re.is_match(v) {
                    return Err(format!("{name} does not match the pattern {}", re.as_str()));
                }
                Ok(v.to_owned())
            };
        let agency_code = match raw.agency_code.as_deref().map(str::trim) {
            None | Some("") => String::new(),
            Some(v) if self.agency_code.is_match(v) => v.to_owned(),
            Some(_) => {
                return Err(format!(
                    "agency_code does not match the pattern {}",
                    self.agency_code.as_str()
                ));
            }
        };
        let purpose = raw.purpose.as_deref().unwrap_or_default().trim().to_owned();
        if purpose.chars().count() > MAX_PURPOSE_CHARS || purpose.chars().any(char::is_control) {
            return Err(format!(
                "purpose must be at most {MAX_PURPOSE_CHARS} characters of text"
            ));
        }
        Ok(CallContext {
            procedure_code: required(&raw.procedure_code, "procedure_code", &self.procedure_code)?,
            dossier_id: required(&raw.dossier_id, "dossier_id", &self.dossier_id)?,
            officer_id: required(&raw.officer_id, "officer_id", &self.officer_id)?,
            agency_code,
            purpose,
        })
    }
}

/// The procedures catalogue: names by procedure code, each code in the deployment's
/// format, each given once.
pub fn procedures(
    raw: &crate::config::raw::RawProcedures,
    rules: &ContextRules,
    e: &mut Errors<'_>,
) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for (i, p) in raw.procedure.iter().enumerate() {
        let key = format!("procedure[{i}]");
        let code = p.code.trim();
        if !rules.procedure_code.is_match(code) {
            e.add(
                format!("{key}.code"),
                format!(
                    "{code:?} does not match the pattern {}",
                    rules.procedure_code.as_str()
                ),
            );
            continue;
        }
        if p.name.trim().is_empty() {
            e.add(format!("{key}.name"), "must name the procedure");
            continue;
        }
        if out
            .insert(code.to_owned(), p.name.trim().to_owned())
            .is_some()
        {
            e.add(format!("{key}.code"), format!("{code} is listed twice"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(p: &str, d: &str, o: &str) -> RawContext {
        RawContext {
            procedure_code: Some(p.into()),
            dossier_id: Some(d.into()),
            officer_id: Some(o.into()),
            ..RawContext::default()
        }
    }

    #[test]
    fn validates_documented_formats() {
        let rules = ContextRules::default();
        for p in ["1.001612", "2.000884", "1.001612.000.00.00.H48"] {
            assert!(
                rules
                    .validate(&raw(p, "000.00.53.H48-220921-0099", "cb.nguyen"))
                    .is_ok(),
                "{p}"
            );
        }
        let e = rules
            .validate(&raw("1001612", "000.00.53.H48-220921-0099", "x"))
            .unwrap_err();
        assert!(e.starts_with("procedure_code does not match"), "{e}");
        let e = rules.validate(&raw("1.001612", "hs-1", "x")).unwrap_err();
        assert!(e.starts_with("dossier_id"), "{e}");
        let e = rules
            .validate(&RawContext {
                officer_id: None,
                ..raw("1.001612", "000.00.53.H48-220921-0099", "")
            })
            .unwrap_err();
        assert_eq!(e, "officer_id is required");
    }

    #[test]
    fn a_patterns_memo_answers_what_the_regex_answered() {
        let p = Pattern::new(DEFAULT_DOSSIER_ID_PATTERN).expect("compiles");
        let good = "000.00.53.H48-251128-0001";
        let bad = [
            "000.00.53.H48-251128-01",
            "",
            "x-251128-0001\n",
            "000.00.53.H48-251128-00011111",
        ];
        for _ in 0..3 {
            assert!(p.is_match(good));
            for b in bad {
                assert!(!p.is_match(b), "{b:?}");
            }
        }
        // Many accepted values share the slots; none lets a refused value through.
        for n in 0..2_000 {
            assert!(p.is_match(&format!("000.00.53.H48-251128-{n:04}")));
            assert!(!p.is_match(&format!("000.00.53.H48-25112-{n:04}")));
        }
        let copy = p.clone();
        assert_eq!(copy.as_str(), p.as_str());
        assert!(copy.is_match(good) && !copy.is_match(bad[0]));
    }
}
