//! Misuse detection: rules that watch what each officer, dossier and consumer looks up, and
//! alert (or refuse) when a count goes past its threshold. Checked after binding and before
//! the quota, so attempts the quota then refuses count too.
//!
//! | rule | counts | period |
//! | --- | --- | --- |
//! | `officer_subjects_hour` | distinct subjects an officer (consumer, officer id) looked up | hour |
//! | `officer_subjects_day` | the same | day |
//! | `dossier_undeclared_subjects` | distinct subjects looked up under a dossier that it did not declare (pattern binding) | day |
//! | `off_hours` | an officer's calls outside office hours (Asia/Ho_Chi_Minh) or on days off | day |
//! | `not_found_ratio` | the share (%) of an officer's, or a consumer's, lookups that found nothing (guessing keys), once `not_found_min_calls` were made | hour |
//! | `sequential_keys` | an officer's lookups of a key near one it looked up before (enumeration) | hour |
//!
//! Periods are hours and days of Vietnam's clock (UTC+7, no daylight saving). A rule fires
//! when its count goes past its threshold; the first firing in a period raises one alert,
//! and under `refuse` every call while it fires is refused `permission_denied` naming the
//! rule. A grant's setting overrides its consumer's, which overrides `[misuse.rules]`.
//!
//! Near-sequential: a key's serial is its trailing digits (without the check digit of an
//! enterprise code), its prefix the rest. Serials fall into buckets of `sequential_step`; a
//! lookup is near-sequential when the officer looked up a key of the same dataset and prefix
//! in the same or a neighbouring bucket earlier in the hour, so keys less than two steps
//! apart always count. Buckets are kept as keyed references, like subjects: the state holds
//! no key in the clear.

mod state;

use crate::config::Errors;
use crate::config::raw::{RawMisuse, RawMisuseRules, RawRule};
pub use state::{Attempt, Detector, Firing, Outcome};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
use crate::domain::calendar::Calendar;
pub use crate::domain::calendar::VIETNAM_OFFSET_MS;

/// The rules, in the order of [`Rule::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    OfficerSubjectsHour,
    OfficerSubjectsDay,
    DossierUndeclaredSubjects,
    OffHours,
    NotFoundRatio,
    SequentialKeys,
}

impl Rule {
    pub const ALL: [Rule; 6] = [
        Rule::OfficerSubjectsHour,
        Rule::OfficerSubjectsDay,
        Rule::DossierUndeclaredSubjects,
        Rule::OffHours,
        Rule::NotFoundRatio,
        Rule::SequentialKeys,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::OfficerSubjectsHour => "officer_subjects_hour",
            Rule::OfficerSubjectsDay => "officer_subjects_day",
            Rule::DossierUndeclaredSubjects => "dossier_undeclared_subjects",
            Rule::OffHours => "off_hours",
            Rule::NotFoundRatio => "not_found_ratio",
            Rule::SequentialKeys => "sequential_keys",
        }
    }

    fn index(self) -> usize {
        Rule::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }

    /// How long one counting period lasts.
    pub fn period_ms(self) -> i64 {
        match self {
            Rule::OfficerSubjectsHour | Rule::NotFoundRatio | Rule::SequentialKeys => HOUR_MS,
            _ => DAY_MS,
        }
    }

    /// The built-in threshold, under `[misuse.rules]`.
    fn default_threshold(self) -> u64 {
        match self {
            Rule::OfficerSubjectsHour => 200,
            Rule::OfficerSubjectsDay => 1_000,
            Rule::DossierUndeclaredSubjects => 20,
            Rule::OffHours => 0,
            Rule::NotFoundRatio => 50,
            Rule::SequentialKeys => 20,
        }
    }

    fn raw(self, raw: &RawMisuseRules) -> Option<&RawRule> {
        match self {
            Rule::OfficerSubjectsHour => raw.officer_subjects_hour.as_ref(),
            Rule::OfficerSubjectsDay => raw.officer_subjects_day.as_ref(),
            Rule::DossierUndeclaredSubjects => raw.dossier_undeclared_subjects.as_ref(),
            Rule::OffHours => raw.off_hours.as_ref(),
            Rule::NotFoundRatio => raw.not_found_ratio.as_ref(),
            Rule::SequentialKeys => raw.sequential_keys.as_ref(),
        }
    }
}

/// What a rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Record an alert; the call goes on.
    Alert,
    /// Record an alert and refuse the calls while the rule fires.
    Refuse,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::Refuse => "refuse",
        }
    }
}

/// A rule's threshold and action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub threshold: u64,
    pub action: Action,
}

/// What one scope (a consumer, a grant) sets; unset parts come from the next scope out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides([(Option<u64>, Option<Action>); 6]);

impl Overrides {
    /// From a `misuse` table, mistakes named under `key`.
    pub fn from_settings(raw: &RawMisuseRules, key: &str, e: &mut Errors<'_>) -> Overrides {
        let mut out = Overrides::default();
        for rule in Rule::ALL {
            let Some(r) = rule.raw(raw) else { continue };
            let at = format!("{key}.{}", rule.as_str());
            let action = r.action.as_deref().and_then(|a| match a {
                "alert" => Some(Action::Alert),
                "refuse" => Some(Action::Refuse),
                other => {
                    e.add(
                        format!("{at}.action"),
                        format!("{other:?} is not \"alert\" or \"refuse\""),
                    );
                    None
                }
            });
            if rule == Rule::NotFoundRatio && r.threshold.is_some_and(|t| t > 100) {
                e.add(format!("{at}.threshold"), "a percentage: at most 100");
            }
            out.0[rule.index()] = (r.threshold, action);
        }
        out
    }
}

/// Office hours in Vietnam's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Office {
    /// Minutes after midnight: open from `start` (inclusive) to `end` (exclusive).
    start: i64,
    end: i64,
    /// Working days and days off.
    calendar: Calendar,
}

impl Office {
    /// Whether `now_ms` (Unix) falls in office hours on a working day.
    pub fn open_at(&self, now_ms: i64) -> bool {
        let local = now_ms + VIETNAM_OFFSET_MS;
        let minute = local.rem_euclid(DAY_MS) / 60_000;
        self.calendar.is_working_day(local.div_euclid(DAY_MS))
            && (self.start..self.end).contains(&minute)
    }

    /// The working days and days off office hours fall on.
    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }
}

/// Detection's settings (`[misuse]`), with every caller's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MisuseSettings {
    pub enabled: bool,
    pub office: Office,
    pub sequential_step: u64,
    pub not_found_min_calls: u64,
    pub max_tracked: usize,
    defaults: [Setting; 6],
}

impl MisuseSettings {
    /// The setting of `rule` for a call under `grant`'s and `consumer`'s overrides.
    pub fn setting(&self, rule: Rule, consumer: &Overrides, grant: &Overrides) -> Setting {
        let i = rule.index();
        let (gt, ga) = grant.0[i];
        let (ct, ca) = consumer.0[i];
        Setting {
            threshold: gt.or(ct).unwrap_or(self.defaults[i].threshold),
            action: ga.or(ca).unwrap_or(self.defaults[i].action),
        }
    }
}

fn minutes(hhmm: &str) -> Option<i64> {
    let (h, m) = hhmm.trim().split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    ((0..=24).contains(&h) && (0..60).contains(&m) && h * 60 + m <= 1440).then_some(h * 60 + m)
}

/// `[misuse]` checked, every mistake named.
pub fn from_settings(raw: &RawMisuse, e: &mut Errors<'_>) -> MisuseSettings {
    let (start, end) = match raw
        .office_hours
        .split_once('-')
        .and_then(|(a, b)| Some((minutes(a)?, minutes(b)?)))
    {
        Some((a, b)) if a < b => (a, b),
        _ => {
            e.add(
                "misuse.office_hours",
                format!(
                    "{:?} is not \"hh:mm-hh:mm\", start before end",
                    raw.office_hours
                ),
            );
            (0, 1440)
        }
    };
    let calendar = Calendar::from_settings(
        (&raw.office_days, "misuse.office_days"),
        (&raw.holidays, "misuse.holidays"),
        e,
    );
    if raw.sequential_step == 0 {
        e.add("misuse.sequential_step", "must be at least 1");
    }
    if raw.max_tracked < 100 {
        e.add("misuse.max_tracked", "must be at least 100");
    }
    let top = Overrides::from_settings(&raw.rules, "misuse.rules", e);
    let defaults = Rule::ALL.map(|rule| {
        let (t, a) = top.0[rule.index()];
        Setting {
            threshold: t.unwrap_or(rule.default_threshold()),
            action: a.unwrap_or(Action::Alert),
        }
    });
    MisuseSettings {
        enabled: raw.enabled,
        office: Office {
            start,
            end,
            calendar,
        },
        sequential_step: raw.sequential_step.max(1),
        not_found_min_calls: raw.not_found_min_calls,
        max_tracked: raw.max_tracked.max(100),
        defaults,
    }
}

impl Default for MisuseSettings {
    fn default() -> Self {
        let mut all = Vec::new();
        let mut e = Errors {
            file: String::new(),
            all: &mut all,
        };
        from_settings(&RawMisuse::default(), &mut e)
    }
}

/// The serial part of a key and the prefix before it, for the sequential rule: the
/// trailing digits (without an enterprise code's check digit), and what precedes them.
pub fn serial<'k>(dataset: &str, key: &'k str) -> Option<(&'k str, u64)> {
    let digits = key.len() - key.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (prefix, tail) = key.split_at(key.len() - digits);
    let tail = if dataset == crate::domain::dataset::BUSINESS_ENTERPRISE && tail.len() == 10 {
        &tail[..9]
    } else {
        tail
    };
    let tail = &tail[tail.len().saturating_sub(18)..];
    Some((prefix, tail.parse().ok()?))
}

#[cfg(test)]
mod tests;
