//! Identifier formats of the three national datasets, validated before any upstream call.
//!
//! Error messages name the rule broken and never echo the identifier itself: a malformed
//! personal id is still personal data.

use super::units::units;
use std::fmt;

/// Why a key was refused. The message is safe to return to callers and to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

fn err(msg: impl Into<String>) -> KeyError {
    KeyError(msg.into())
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Sex as coded in the century/sex digit of a personal id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Male,
    Female,
}

/// A 12-digit personal identification number `PPP G YY RRRRRR` (số định danh cá nhân).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PersonalId(String);

impl PersonalId {
    /// Validates structure: 12 digits, a known province-of-registration prefix, and a
    /// century/sex digit and year that give a birth year no later than `current_year`.
    pub fn parse(s: &str, current_year: i32) -> Result<PersonalId, KeyError> {
        let s = s.trim();
        if s.len() == 9 && all_digits(s) {
            return Err(err(
                "a 9-digit ID-card (CMND) number is not a key: look up by the 12-digit personal id",
            ));
        }
        if s.len() != 12 || !all_digits(s) {
            return Err(err("personal id must be exactly 12 digits"));
        }
        if units().old_province_by_id_prefix(&s[..3]).is_none() {
            return Err(err(
                "personal id digits 1-3 must be a province code of birth registration (001-096)",
            ));
        }
        let id = PersonalId(s.to_owned());
        if id.birth_year() > current_year {
            return Err(err(
                "personal id digit 4 (century and sex) with digits 5-6 (year) gives a birth year in the future",
            ));
        }
        Ok(id)
    }

    /// Builds an id from its parts; the caller guarantees their ranges.
    pub fn from_parts(prefix: &str, birth_year: i32, sex: Sex, serial: u32) -> PersonalId {
        let century = (birth_year - 1900).div_euclid(100);
        let g = century * 2 + if sex == Sex::Female { 1 } else { 0 };
        PersonalId(format!(
            "{prefix}{g}{:02}{serial:06}",
            birth_year.rem_euclid(100)
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn province_prefix(&self) -> &str {
        &self.0[..3]
    }

    fn digit(&self, i: usize) -> i32 {
        i32::from(self.0.as_bytes()[i] - b'0')
    }

    pub fn birth_year(&self) -> i32 {
        1900 + (self.digit(3) / 2) * 100 + self.digit(4) * 10 + self.digit(5)
    }

    pub fn sex(&self) -> Sex {
        if self.digit(3) % 2 == 0 {
            Sex::Male
        } else {
            Sex::Female
        }
    }

    /// The random part, digits 7-12.
    pub fn serial(&self) -> u32 {
        self.0[6..].parse().unwrap_or(0)
    }
}

impl fmt::Display for PersonalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const ENTERPRISE_WEIGHTS: [u32; 9] = [31, 29, 23, 19, 17, 13, 7, 5, 3];

/// The check digit of a 9-digit enterprise-code prefix, or `None` for a prefix that is never
/// issued (its weighted sum is a multiple of 11, which would need a check digit of 10).
pub fn enterprise_check_digit(prefix: &[u8; 9]) -> Option<u8> {
    let sum: u32 = prefix
        .iter()
        .zip(ENTERPRISE_WEIGHTS)
        .map(|(d, w)| u32::from(*d) * w)
        .sum();
    match sum % 11 {
        0 => None,
        r => Some(((10 - r) % 10) as u8),
    }
}

/// An enterprise code (mã số doanh nghiệp): 10 digits with a check digit, or a branch code
/// `NNNNNNNNNN-XXX` (XXX from 001 to 999).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EnterpriseCode {
    code: String,
    branch: Option<u16>,
}

impl EnterpriseCode {
    pub fn parse(s: &str) -> Result<EnterpriseCode, KeyError> {
        let s = s.trim();
        let (main, branch) = match s.split_once('-') {
            Some((m, b)) => (m, Some(b)),
            None => (s, None),
        };
        if main.len() != 10 || !all_digits(main) {
            return Err(err(
                "enterprise code must be 10 digits, or 10 digits, a hyphen and a 3-digit branch number",
            ));
        }
        let digits: Vec<u8> = main.bytes().map(|b| b - b'0').collect();
        if digits[2..9].iter().all(|&d| d == 0) {
            return Err(err(
                "enterprise code digits 3-9 (sequence) must not all be zero",
            ));
        }
        let mut prefix = [0u8; 9];
        prefix.copy_from_slice(&digits[..9]);
        match enterprise_check_digit(&prefix) {
            None => {
                return Err(err(
                    "enterprise code digits 1-9 form a prefix that is never issued",
                ));
            }
            Some(c) if c != digits[9] => {
                return Err(err(
                    "enterprise code check digit (digit 10) does not match digits 1-9",
                ));
            }
            Some(_) => {}
        }
        let branch = match branch {
            None => None,
            Some(b) => {
                let n: u16 = if b.len() == 3 && all_digits(b) {
                    b.parse().unwrap_or(0)
                } else {
                    0
                };
                if n == 0 {
                    return Err(err(
                        "branch number after the hyphen must be 3 digits, 001 to 999",
                    ));
                }
                Some(n)
            }
        };
        Ok(EnterpriseCode {
            code: main.to_owned(),
            branch,
        })
    }

    /// Builds a code from a 9-digit prefix that is issuable.
    pub fn from_prefix(prefix: &[u8; 9]) -> Option<EnterpriseCode> {
        let check = enterprise_check_digit(prefix)?;
        let code = prefix
            .iter()
            .chain(std::iter::once(&check))
            .map(|d| char::from(b'0' + d))
            .collect();
        Some(EnterpriseCode { code, branch: None })
    }

    pub fn with_branch(&self, branch: u16) -> EnterpriseCode {
        EnterpriseCode {
            code: self.code.clone(),
            branch: Some(branch),
        }
    }

    /// The 10-digit code of the enterprise itself (the parent, for a branch).
    pub fn main_code(&self) -> &str {
        &self.code
    }

    pub fn branch(&self) -> Option<u16> {
        self.branch
    }
}

impl fmt::Display for EnterpriseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.branch {
            Some(b) => write!(f, "{}-{b:03}", self.code),
            None => f.write_str(&self.code),
        }
    }
}

/// A land parcel key `CCCCC-S-P`: 2025 commune code, map sheet number, parcel number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParcelId {
    pub commune: String,
    pub sheet: u32,
    pub parcel: u32,
}

/// Highest map sheet number accepted in a parcel key.
pub const MAX_MAP_SHEET: u32 = 9_999;
/// Highest parcel number accepted in a parcel key.
pub const MAX_PARCEL_NUMBER: u32 = 99_999;

impl ParcelId {
    /// Validates and normalises (leading zeros of sheet and parcel numbers are dropped).
    pub fn parse(s: &str) -> Result<ParcelId, KeyError> {
        let parts: Vec<&str> = s.trim().split('-').collect();
        let [commune, sheet, parcel] = parts[..] else {
            return Err(err(
                "parcel key must be CCCCC-S-P: commune code, map sheet and parcel number separated by hyphens",
            ));
        };
        if commune.len() != 5 || !all_digits(commune) {
            return Err(err("parcel key commune code must be 5 digits"));
        }
        if units().commune(commune).is_none() {
            return Err(err("parcel key commune code is not a 2025 commune code"));
        }
        let number = |part: &str, max: u32, what: &str| -> Result<u32, KeyError> {
            match part.parse::<u32>() {
                Ok(n) if all_digits(part) && (1..=max).contains(&n) => Ok(n),
                _ => Err(err(format!(
                    "parcel key {what} must be a number from 1 to {max}"
                ))),
            }
        };
        Ok(ParcelId {
            commune: commune.to_owned(),
            sheet: number(sheet, MAX_MAP_SHEET, "map sheet")?,
            parcel: number(parcel, MAX_PARCEL_NUMBER, "parcel number")?,
        })
    }
}

impl fmt::Display for ParcelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.commune, self.sheet, self.parcel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_id_rules() {
        let id = PersonalId::parse("001090012345", 2026).expect("valid");
        assert_eq!(id.birth_year(), 1990);
        assert_eq!(id.sex(), Sex::Male);
        assert_eq!(
            PersonalId::parse("079305000001", 2026).map(|i| i.birth_year()),
            Ok(2005)
        );
        assert_eq!(
            PersonalId::parse("079305000001", 2026).map(|i| i.sex()),
            Ok(Sex::Female)
        );
        for (bad, rule) in [
            ("00109001234", "12 digits"),
            ("00109001234x", "12 digits"),
            ("123456789", "9-digit"),
            ("003090012345", "province code"),
            ("001290012345", "future"),
            ("001490012345", "future"),
        ] {
            let e = PersonalId::parse(bad, 2026).expect_err(bad);
            assert!(e.0.contains(rule), "{bad}: {e}");
            assert!(!e.0.contains(bad), "message echoes the id");
        }
        let built = PersonalId::from_parts("079", 2003, Sex::Female, 42);
        assert_eq!(built.as_str(), "079303000042");
    }

    #[test]
    fn enterprise_code_rules() {
        assert!(EnterpriseCode::parse("0100233488").is_ok());
        assert_eq!(
            EnterpriseCode::parse("0314409058-002").map(|c| c.to_string()),
            Ok("0314409058-002".to_owned())
        );
        for (bad, rule) in [
            ("0100233489", "check digit"),
            ("010023348", "10 digits"),
            ("0100000000", "must not all be zero"),
            ("0314409058-000", "branch number"),
            ("0314409058-02", "branch number"),
        ] {
            let e = EnterpriseCode::parse(bad).expect_err(bad);
            assert!(e.0.contains(rule), "{bad}: {e}");
        }
        // A prefix whose weighted sum is a multiple of 11 is never issued.
        let never = [0, 1, 0, 0, 0, 0, 0, 0, 0]; // 29 -> not 0 mod 11
        assert!(enterprise_check_digit(&never).is_some());
        let zero_sum = [0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(enterprise_check_digit(&zero_sum), None);
    }

    #[test]
    fn parcel_key_rules() {
        let p = ParcelId::parse("00004-012-345").expect("valid");
        assert_eq!(p.to_string(), "00004-12-345");
        for (bad, rule) in [
            ("00004-12", "CCCCC-S-P"),
            ("0004-12-345", "5 digits"),
            ("99999-12-345", "2025 commune"),
            ("00004-0-345", "map sheet"),
            ("00004-12-1000000", "parcel number"),
            ("00004-+1-3", "map sheet"),
        ] {
            let e = ParcelId::parse(bad).expect_err(bad);
            assert!(e.0.contains(rule), "{bad}: {e}");
        }
    }
}
