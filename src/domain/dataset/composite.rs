//! A composite key: several named parts, each with its own rule, written as one string
//! joined by a separator (so that it fits a URL path segment), each part held by its own
//! field of the record. A civil-status registration, for example, is its authority's code,
//! the book's year, the book's number and the registration's number:
//! `00004-2025-01-000123`.

use crate::config::raw::RawKeyPart;
use regex::Regex;
use serde_json::{Value, json};

/// Separators a composite key may use: none of them needs escaping in a URL path.
const SEPARATORS: &[char] = &['-', '_', '.', '~', ':'];
/// Most parts a composite key may have.
const MAX_PARTS: usize = 8;

#[derive(Debug, Clone)]
pub struct Composite {
    /// Each part's name and anchored rule.
    pub parts: Vec<(String, Regex)>,
    pub separator: char,
}

impl Composite {
    /// A composite rule from its parts and separator (`-` when unset); the error says what
    /// is wrong.
    pub fn from_settings(
        parts: &[RawKeyPart],
        separator: Option<&str>,
    ) -> Result<Composite, String> {
        let separator = match separator {
            None => '-',
            Some(s) => {
                let mut chars = s.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if SEPARATORS.contains(&c) => c,
                    _ => {
                        return Err(format!(
                            "separator {s:?} must be one of {}",
                            SEPARATORS
                                .iter()
                                .map(|c| format!("\"{c}\""))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                }
            }
        };
        if parts.len() < 2 || parts.len() > MAX_PARTS {
            return Err(format!(
                "a composite key has 2 to {MAX_PARTS} parts (it has {})",
                parts.len()
            ));
        }
        let mut built: Vec<(String, Regex)> = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let valid_name = p
                .name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase())
                && p.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid_name {
                return Err(format!(
                    "part {i}: {:?} is not a part name (lower case, digits, _; starting with a letter)",
                    p.name
                ));
            }
            if built.iter().any(|(n, _)| *n == p.name) {
                return Err(format!("part {i}: {:?} is named twice", p.name));
            }
            if p.pattern.len() > 200 {
                return Err(format!(
                    "part {i} ({}): the pattern is longer than 200 characters",
                    p.name
                ));
            }
            let re = Regex::new(&format!("^(?:{})$", p.pattern))
                .map_err(|e| format!("part {i} ({}): not a regular expression: {e}", p.name))?;
            if re.is_match(&separator.to_string()) {
                return Err(format!(
                    "part {i} ({}): its pattern matches the separator {separator:?}, so keys could not be split",
                    p.name
                ));
            }
            built.push((p.name.clone(), re));
        }
        Ok(Composite {
            parts: built,
            separator,
        })
    }

    /// The key checked part by part, each part trimmed; the error names the part.
    pub fn normalize(&self, key: &str) -> Result<String, String> {
        let pieces: Vec<&str> = key.trim().split(self.separator).map(str::trim).collect();
        if pieces.len() != self.parts.len() {
            return Err(format!(
                "has {} parts separated by {:?}; the dataset's key has {}: {}",
                pieces.len(),
                self.separator,
                self.parts.len(),
                self.names()
                    .collect::<Vec<_>>()
                    .join(&self.separator.to_string())
            ));
        }
        for (piece, (name, re)) in pieces.iter().zip(&self.parts) {
            if !re.is_match(piece) {
                let shown = re.as_str();
                return Err(format!(
                    "part {name} does not match {}",
                    &shown[4..shown.len() - 2]
                ));
            }
        }
        Ok(pieces.join(&self.separator.to_string()))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().map(|(n, _)| n.as_str())
    }

    pub fn to_json(&self) -> Value {
        json!({
            "parts": self.parts.iter().map(|(name, re)| {
                let shown = re.as_str();
                json!({ "name": name, "pattern": &shown[4..shown.len() - 2] })
            }).collect::<Vec<_>>(),
            "separator": self.separator.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str, pattern: &str) -> RawKeyPart {
        RawKeyPart {
            name: name.into(),
            pattern: pattern.into(),
        }
    }

    fn registration() -> Composite {
        Composite::from_settings(
            &[
                part("authority", "[0-9]{5}"),
                part("year", "[0-9]{4}"),
                part("book", "[0-9]{2}"),
                part("number", "[0-9]{6}"),
            ],
            None,
        )
        .expect("valid")
    }

    #[test]
    fn a_key_is_checked_part_by_part_and_the_refusal_names_the_part() {
        let c = registration();
        assert_eq!(
            c.normalize(" 00004-2025-01-000123 ").as_deref(),
            Ok("00004-2025-01-000123")
        );
        let wrong = c.normalize("00004-25-01-000123").expect_err("short year");
        assert!(
            wrong.contains("part year") && wrong.contains("[0-9]{4}"),
            "{wrong}"
        );
        let few = c.normalize("00004-2025-000123").expect_err("three parts");
        assert!(
            few.contains("has 3 parts") && few.contains("authority-year-book-number"),
            "{few}"
        );
        assert!(c.normalize("00004-2025-01-000123-9").is_err());
    }

    #[test]
    fn a_rule_that_could_not_split_its_keys_is_refused() {
        let loose = Composite::from_settings(&[part("a", ".+"), part("b", "[0-9]+")], None)
            .expect_err("a part that takes the separator");
        assert!(loose.contains("matches the separator"), "{loose}");
        assert!(Composite::from_settings(&[part("a", "x")], None).is_err());
        assert!(Composite::from_settings(&[part("a", "x"), part("a", "y")], None).is_err());
        let slash = Composite::from_settings(&[part("a", "x"), part("b", "y")], Some("/"))
            .expect_err("slash");
        assert!(slash.contains("separator"), "{slash}");
        let dotted =
            Composite::from_settings(&[part("a", "[a-z]+"), part("b", "[0-9]+")], Some("."))
                .expect("dot");
        assert_eq!(dotted.normalize("abc.12").as_deref(), Ok("abc.12"));
    }
}
