//! The deployment's working calendar, in Vietnam's time: which days are working days (a
//! week's pattern and a list of days off), and the day a deadline of so many working days
//! falls on. Access requests are answered within it.

use super::date::Date;
use crate::config::Errors;
use crate::config::raw::RawAccessRequests;

/// Vietnam's offset from UTC (Asia/Ho_Chi_Minh keeps no daylight saving).
pub const VIETNAM_OFFSET_MS: i64 = 7 * 3_600_000;
const DAY_MS: i64 = 86_400_000;
/// Most working days a deadline may be set to.
const MAX_DEADLINE_DAYS: u32 = 60;
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// Working days of the week, Monday first.
    week: [bool; 7],
    /// Days off, as days since the epoch.
    holidays: Vec<i64>,
}

/// Monday to Friday, no days off.
impl Default for Calendar {
    fn default() -> Calendar {
        Calendar {
            week: [true, true, true, true, true, false, false],
            holidays: Vec::new(),
        }
    }
}

/// Working days of the week as configured ("mon" … "sun"), each mistake named under `key`.
fn week_of(days: &[String], key: &str, e: &mut Errors<'_>) -> [bool; 7] {
    let mut week = [false; 7];
    for (i, d) in days.iter().enumerate() {
        match WEEKDAYS.iter().position(|n| *n == d.trim().to_lowercase()) {
            Some(p) => week[p] = true,
            None => e.add(
                format!("{key}[{i}]"),
                format!("{d:?} is not mon, tue, wed, thu, fri, sat or sun"),
            ),
        }
    }
    week
}

/// Days off as configured (`yyyy-mm-dd`), as days since the epoch.
fn holidays_of(listed: &[String], key: &str, e: &mut Errors<'_>) -> Vec<i64> {
    let mut holidays = Vec::new();
    for (i, h) in listed.iter().enumerate() {
        match Date::parse_iso(h.trim()) {
            Some(d) => holidays.push(d.days()),
            None => e.add(
                format!("{key}[{i}]"),
                format!("{h:?} is not a date (yyyy-mm-dd)"),
            ),
        }
    }
    holidays
}

impl Calendar {
    /// A calendar from its settings: working days under `days_key`, days off under
    /// `holidays_key`.
    pub fn from_settings(
        (days, days_key): (&[String], &str),
        (holidays, holidays_key): (&[String], &str),
        e: &mut Errors<'_>,
    ) -> Calendar {
        Calendar {
            week: week_of(days, days_key, e),
            holidays: holidays_of(holidays, holidays_key, e),
        }
    }

    /// Whether the day `days` after 1970-01-01 is a working day.
    pub fn is_working_day(&self, days: i64) -> bool {
        // 1970-01-01 was a Thursday (index 3, Monday first).
        self.week[(days + 3).rem_euclid(7) as usize] && !self.holidays.contains(&days)
    }

    pub fn is_working(&self, day: Date) -> bool {
        self.is_working_day(day.days())
    }

    /// The `n`-th working day after `from` (a request made on a day off counts from the
    /// next working day on, as one made on a working day does).
    pub fn add_working_days(&self, from: Date, n: u32) -> Date {
        let mut day = from.days();
        let mut left = n;
        // At least one weekday works (checked when built): a year ahead always holds n.
        for _ in 0..(n as i64 * 7 + 400) {
            if left == 0 {
                break;
            }
            day += 1;
            if self.is_working_day(day) {
                left -= 1;
            }
        }
        Date::from_days(day)
    }
}

/// Vietnam's calendar date at Unix `ms`.
pub fn vietnam_date(ms: i64) -> Date {
    Date::from_days((ms + VIETNAM_OFFSET_MS).div_euclid(DAY_MS))
}

/// How access requests are answered: within so many working days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessSettings {
    pub deadline_working_days: u32,
    pub calendar: Calendar,
}

/// `[access_requests]` checked; its calendar defaults to misuse detection's (its office
/// days and holidays), so that a deployment keeps one list of days off.
pub fn from_settings(
    raw: &RawAccessRequests,
    office: &Calendar,
    e: &mut Errors<'_>,
) -> AccessSettings {
    let n = raw.deadline_working_days;
    if n == 0 || n > MAX_DEADLINE_DAYS {
        e.add(
            "access_requests.deadline_working_days",
            format!("must be 1 to {MAX_DEADLINE_DAYS} (it is {n})"),
        );
    }
    let (mut week, days_key) = match &raw.working_days {
        Some(d) => (
            week_of(d, "access_requests.working_days", e),
            "access_requests.working_days",
        ),
        None => (office.week, "misuse.office_days"),
    };
    if !week.contains(&true) {
        e.add(days_key, "name at least one working day");
        week = Calendar::default().week;
    }
    let holidays = match &raw.holidays {
        Some(h) => holidays_of(h, "access_requests.holidays", e),
        None => office.holidays.clone(),
    };
    AccessSettings {
        deadline_working_days: n.clamp(1, MAX_DEADLINE_DAYS),
        calendar: Calendar { week, holidays },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calendar(holidays: &[&str]) -> Calendar {
        let raw = RawAccessRequests {
            holidays: Some(holidays.iter().map(|h| (*h).to_owned()).collect()),
            ..Default::default()
        };
        let mut all = Vec::new();
        let mut e = Errors {
            file: "t".into(),
            all: &mut all,
        };
        let settings = from_settings(&raw, &Calendar::default(), &mut e);
        assert!(all.is_empty(), "{all:?}");
        settings.calendar
    }

    fn day(s: &str) -> Date {
        Date::parse_iso(s).expect("date")
    }

    #[test]
    fn deadlines_skip_weekends_and_holidays() {
        // 2026-11-30 is a Monday.
        let c = calendar(&[]);
        assert_eq!(c.add_working_days(day("2026-11-30"), 2), day("2026-12-02"));
        // From Thursday, two working days: Friday, then Monday.
        assert_eq!(c.add_working_days(day("2026-12-03"), 2), day("2026-12-07"));
        // A request made on Saturday counts from Monday.
        assert_eq!(c.add_working_days(day("2026-12-05"), 2), day("2026-12-08"));
        // National Day (2 September 2026 is a Wednesday) and the day after are off.
        let c = calendar(&["2026-09-02", "2026-09-03"]);
        assert_eq!(c.add_working_days(day("2026-09-01"), 2), day("2026-09-07"));
        assert!(!c.is_working(day("2026-09-02")));
        assert!(c.is_working(day("2026-09-01")));
    }

    #[test]
    fn the_date_is_vietnams() {
        // 2026-11-30T17:30:00Z is already 1 December in Hanoi.
        let ms = crate::domain::date::parse_rfc3339_ms("2026-11-30T17:30:00Z").expect("instant");
        assert_eq!(vietnam_date(ms), day("2026-12-01"));
    }

    #[test]
    fn a_week_without_working_days_is_refused() {
        let raw = RawAccessRequests {
            working_days: Some(Vec::new()),
            deadline_working_days: 0,
            ..Default::default()
        };
        let mut all = Vec::new();
        let mut e = Errors {
            file: "t".into(),
            all: &mut all,
        };
        from_settings(&raw, &Calendar::default(), &mut e);
        let keys: Vec<&str> = all.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "access_requests.deadline_working_days",
                "access_requests.working_days"
            ]
        );
    }
}
