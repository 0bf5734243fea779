//! Calendar dates (ISO 8601, proleptic Gregorian) without a date library: enough for grant
//! validity and plausible birth years.

use std::fmt;

/// A calendar date; ordering is chronological.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

/// Days in `month` (1-12) of `year`.
pub fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Date {
    /// `yyyy-mm-dd`, with a real day of that month.
    pub fn parse_iso(s: &str) -> Option<Date> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let digits = |r: std::ops::Range<usize>| -> Option<u32> {
            s.get(r.clone())
                .filter(|p| p.bytes().all(|c| c.is_ascii_digit()))?
                .parse()
                .ok()
        };
        let (year, month, day) = (digits(0..4)? as i32, digits(5..7)?, digits(8..10)?);
        ((1..=12).contains(&month) && (1..=days_in_month(year, month)).contains(&day))
            .then_some(Date { year, month, day })
    }

    /// Today in UTC.
    pub fn today() -> Date {
        Date::in_days(0)
    }

    /// The UTC date `days` from today (negative: in the past).
    pub fn in_days(days: i64) -> Date {
        let today = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| (d.as_secs() / 86_400) as i64)
            .unwrap_or(0);
        Date::from_days(today + days)
    }

    /// The date `days` after 1970-01-01 (civil-from-days, Howard Hinnant).
    pub fn from_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        Date {
            year: (yoe + era * 400 + i64::from(month <= 2)) as i32,
            month,
            day,
        }
    }
}

impl Date {
    /// Days from 1970-01-01 to this date (days-from-civil, the inverse of `from_days`).
    pub fn days(&self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `yyyy-mm-ddThh:mm:ss.mmmZ` for Unix milliseconds.
pub fn iso_ms(ms: i64) -> String {
    let day = Date::from_days(ms.div_euclid(86_400_000));
    let rest = ms.rem_euclid(86_400_000);
    format!(
        "{day}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

/// Unix milliseconds of `yyyy-mm-dd` (midnight UTC) or `yyyy-mm-ddThh:mm:ssZ`.
pub fn parse_instant_ms(s: &str) -> Option<i64> {
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z')?)),
        None => (s, None),
    };
    let day = Date::parse_iso(date)?.days() * 86_400_000;
    let Some(time) = time else { return Some(day) };
    let parts: Vec<&str> = time.split(':').collect();
    let [h, m, sec] = parts.as_slice() else {
        return None;
    };
    let (h, m, sec): (i64, i64, i64) = (h.parse().ok()?, m.parse().ok()?, sec.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m) && (0..60).contains(&sec))
        .then_some(day + ((h * 60 + m) * 60 + sec) * 1000)
}

/// Unix milliseconds of an RFC 3339 instant with its offset (`2026-11-30T08:15:00+07:00`,
/// `…Z`, seconds optionally with a fraction), or of a bare `yyyy-mm-dd` (midnight UTC).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let Some((date, time)) = s.split_once('T') else {
        return parse_instant_ms(s);
    };
    let (clock, offset_min) = if let Some(clock) = time.strip_suffix('Z') {
        (clock, 0)
    } else {
        let at = time.rfind(['+', '-'])?;
        let (clock, offset) = time.split_at(at);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (h, m) = offset[1..].split_once(':')?;
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        if offset.len() != 6 || h > 23 || m > 59 {
            return None;
        }
        (clock, sign * (h * 60 + m))
    };
    let (whole, fraction) = match clock.split_once('.') {
        Some((w, f)) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => (
            w,
            f[..f.len().min(3)].parse::<i64>().ok()? * 10_i64.pow(3 - f.len().min(3) as u32),
        ),
        Some(_) => return None,
        None => (clock, 0),
    };
    if whole.len() != 8 {
        return None;
    }
    let utc = parse_instant_ms(&format!("{date}T{whole}Z"))?;
    Some(utc + fraction - offset_min * 60_000)
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[cfg(test)]
mod instant_tests {
    use super::*;

    #[test]
    fn days_and_instants_round_trip() {
        for days in [-719_468, -1, 0, 1, 20_000, 20_785, 2_932_896] {
            assert_eq!(Date::from_days(days).days(), days);
        }
        assert_eq!(iso_ms(0), "1970-01-01T00:00:00.000Z");
        let ms = parse_instant_ms("2026-11-28T04:42:08Z").expect("valid");
        assert_eq!(iso_ms(ms), "2026-11-28T04:42:08.000Z");
        assert_eq!(
            parse_instant_ms("2026-11-28"),
            Some(ms - (4 * 3600 + 42 * 60 + 8) * 1000)
        );
        assert_eq!(parse_instant_ms("2026-11-28T25:00:00Z"), None);
        assert_eq!(parse_instant_ms("yesterday"), None);
        // With an offset (Vietnam is UTC+7) and a fraction.
        assert_eq!(parse_rfc3339_ms("2026-11-28T11:42:08+07:00"), Some(ms));
        assert_eq!(parse_rfc3339_ms("2026-11-28T04:42:08.250Z"), Some(ms + 250));
        assert_eq!(parse_rfc3339_ms("2026-11-28T00:42:08-04:00"), Some(ms));
        assert_eq!(
            parse_rfc3339_ms("2026-11-28"),
            parse_instant_ms("2026-11-28")
        );
        for bad in [
            "2026-11-28T11:42:08+7:00",
            "2026-11-28T11:42:08+07:60",
            "2026-11-28T11:42+07:00",
            "2026-11-28T11:42:08.+07:00",
            "2026-11-28T11:42:08",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_orders_and_converts() {
        assert_eq!(Date::from_days(0).to_string(), "1970-01-01");
        assert_eq!(Date::from_days(20_420).to_string(), "2025-11-28");
        assert_eq!(Date::from_days(19_416).to_string(), "2023-02-28");
        let d = Date::parse_iso("2024-02-29").expect("leap day");
        assert!(d < Date::parse_iso("2024-03-01").expect("valid"));
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "20240101",
            "2024-01-0x",
        ] {
            assert_eq!(Date::parse_iso(bad), None, "{bad}");
        }
        let year = Date::today().year;
        assert!((2025..2200).contains(&year), "{year}");
    }
}
