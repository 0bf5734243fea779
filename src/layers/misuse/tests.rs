//! The rules over the detector's memory, with times chosen on Vietnam's clock.

use super::*;
use crate::config::raw::{RawMisuse, RawMisuseRules, RawRule};

/// Monday 2026-11-30, 09:00 in Hanoi (02:00 UTC).
const MONDAY_9AM: i64 = 1_796_004_000_000;

fn settings(edit: impl FnOnce(&mut RawMisuse)) -> MisuseSettings {
    let mut raw = RawMisuse::default();
    edit(&mut raw);
    let mut all = Vec::new();
    let s = from_settings(
        &raw,
        &mut Errors {
            file: "gateway.toml".into(),
            all: &mut all,
        },
    );
    assert!(all.is_empty(), "{all:?}");
    s
}

fn rule(threshold: u64, action: &str) -> Option<RawRule> {
    Some(RawRule {
        threshold: Some(threshold),
        action: Some(action.into()),
    })
}

fn attempt(subject: &str, now_ms: i64) -> Attempt<'_> {
    Attempt {
        consumer: "onestop",
        officer: "canbo01",
        dossier: "000.00.53.H48-251130-0001",
        subject,
        declared: None,
        buckets: None,
        now_ms,
    }
}

/// A keyed reference whose leading bits (those detection keeps) tell `n` apart.
fn reference(n: u64) -> String {
    format!(
        "k1:{:016x}{}",
        n.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        "0".repeat(48)
    )
}

/// Counts an attempt in memory, under the main file's rules.
async fn check(d: &Detector, s: &MisuseSettings, a: &Attempt<'_>) -> Outcome {
    let none = Overrides::default();
    d.check(s, (&none, &none), a, None).await
}

fn fired(out: &Outcome) -> Vec<&'static str> {
    out.alerts.iter().map(|f| f.rule.as_str()).collect()
}

#[test]
fn the_clock_is_hanois() {
    let office = settings(|_| {}).office;
    assert!(office.open_at(MONDAY_9AM));
    assert!(!office.open_at(MONDAY_9AM - 3 * HOUR_MS), "06:00");
    assert!(!office.open_at(MONDAY_9AM + 9 * HOUR_MS), "18:00");
    assert!(
        office.open_at(MONDAY_9AM + 8 * HOUR_MS + 29 * 60_000),
        "17:29"
    );
    assert!(!office.open_at(MONDAY_9AM - 2 * DAY_MS), "Saturday");
    let holiday = settings(|r| r.holidays = vec!["2026-11-30".into()]).office;
    assert!(!holiday.open_at(MONDAY_9AM));
    // A day's period starts at midnight in Hanoi.
    assert_eq!(
        state::period_start(Rule::OffHours, MONDAY_9AM),
        MONDAY_9AM - 9 * HOUR_MS
    );
}

#[tokio::test]
async fn an_officer_past_the_threshold_raises_one_alert_per_period_and_refuses_under_refuse() {
    let s = settings(|r| r.rules.officer_subjects_hour = rule(3, "refuse"));
    let d = Detector::default();
    let refs: Vec<String> = (1..=6).map(reference).collect();
    for (i, r) in refs.iter().take(3).enumerate() {
        let out = check(&d, &s, &attempt(r, MONDAY_9AM + i as i64)).await;
        assert!(out.alerts.is_empty() && out.refuse.is_none());
    }
    // The same subject again does not count.
    let out = check(&d, &s, &attempt(&refs[0], MONDAY_9AM + 10)).await;
    assert!(out.refuse.is_none());
    let out = check(&d, &s, &attempt(&refs[3], MONDAY_9AM + 11)).await;
    assert_eq!(fired(&out), ["officer_subjects_hour"]);
    let refused = out.refuse.expect("refused");
    assert_eq!((refused.count, refused.threshold), (4, 3));
    assert_eq!(refused.window_start_ms, MONDAY_9AM);
    assert_eq!(refused.window_end_ms, MONDAY_9AM + HOUR_MS);
    // Still firing: refused, but alerted once.
    let out = check(&d, &s, &attempt(&refs[4], MONDAY_9AM + 12)).await;
    assert!(out.alerts.is_empty() && out.refuse.is_some());
    // The next hour starts afresh.
    let out = check(&d, &s, &attempt(&refs[5], MONDAY_9AM + HOUR_MS)).await;
    assert!(out.refuse.is_none());
}

#[test]
fn a_grant_overrides_its_consumer_which_overrides_the_main_file() {
    let s = settings(|r| r.rules.officer_subjects_hour = rule(100, "alert"));
    let mut all = Vec::new();
    let mut e = Errors {
        file: "x".into(),
        all: &mut all,
    };
    let consumer = Overrides::from_settings(
        &RawMisuseRules {
            officer_subjects_hour: rule(10, "refuse"),
            ..RawMisuseRules::default()
        },
        "consumer[0].misuse",
        &mut e,
    );
    let grant = Overrides::from_settings(
        &RawMisuseRules {
            officer_subjects_hour: Some(RawRule {
                threshold: Some(5),
                action: None,
            }),
            ..RawMisuseRules::default()
        },
        "grant[0].misuse",
        &mut e,
    );
    let _ = Overrides::from_settings(
        &RawMisuseRules {
            not_found_ratio: rule(150, "block"),
            ..RawMisuseRules::default()
        },
        "grant[1].misuse",
        &mut e,
    );
    let keys: Vec<&str> = all.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "grant[1].misuse.not_found_ratio.action",
            "grant[1].misuse.not_found_ratio.threshold"
        ]
    );
    let none = Overrides::default();
    let hour = Rule::OfficerSubjectsHour;
    assert_eq!(s.setting(hour, &none, &none).threshold, 100);
    assert_eq!(
        s.setting(hour, &consumer, &none),
        Setting {
            threshold: 10,
            action: Action::Refuse
        }
    );
    assert_eq!(
        s.setting(hour, &consumer, &grant),
        Setting {
            threshold: 5,
            action: Action::Refuse
        },
        "the grant's threshold, the consumer's action"
    );
}

#[tokio::test]
async fn calls_off_hours_and_on_days_off_fire() {
    let s = settings(|_| {});
    let d = Detector::default();
    let out = check(&d, &s, &attempt(&reference(1), MONDAY_9AM)).await;
    assert!(out.alerts.is_empty());
    let out = check(&d, &s, &attempt(&reference(1), MONDAY_9AM + 12 * HOUR_MS)).await;
    assert_eq!(fired(&out), ["off_hours"], "21:00");
    assert!(out.refuse.is_none(), "alert by default");
}

#[tokio::test]
async fn near_sequential_keys_fire_and_scattered_ones_do_not() {
    let s = settings(|r| {
        r.sequential_step = 5;
        r.rules.sequential_keys = rule(3, "alert");
    });
    let d = Detector::default();
    let buckets = |serial: u64| {
        let b = serial / 5;
        Some([b, b.saturating_sub(1), b + 1].map(|b| b.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
    };
    let at = |serial: u64, i: i64| Attempt {
        buckets: buckets(serial),
        ..attempt("k1:00", MONDAY_9AM + i)
    };
    // Scattered: far apart, nothing fires.
    for (i, serial) in [1_000, 5_000, 9_000, 13_000, 17_000]
        .into_iter()
        .enumerate()
    {
        assert!(check(&d, &s, &at(serial, i as i64)).await.alerts.is_empty());
    }
    let d = Detector::default();
    let mut out = Outcome::default();
    for (i, serial) in (100..110).enumerate() {
        out = check(&d, &s, &at(serial, i as i64)).await;
        if !out.alerts.is_empty() {
            break;
        }
    }
    assert_eq!(fired(&out), ["sequential_keys"]);
    assert_eq!(out.alerts[0].count, 4);
}

#[tokio::test]
async fn guessing_keys_shows_as_a_not_found_ratio_after_enough_calls() {
    let s = settings(|r| {
        r.not_found_min_calls = 10;
        r.rules.not_found_ratio = rule(50, "refuse");
    });
    let d = Detector::default();
    for i in 0..9 {
        d.outcome(&s, ("onestop", "canbo01"), false, MONDAY_9AM + i, None)
            .await;
    }
    let out = check(&d, &s, &attempt(&reference(1), MONDAY_9AM + 20)).await;
    assert!(out.refuse.is_none(), "not enough calls yet");
    d.outcome(&s, ("onestop", "canbo01"), true, MONDAY_9AM + 21, None)
        .await;
    let out = check(&d, &s, &attempt(&reference(2), MONDAY_9AM + 22)).await;
    // The officer's window and the consumer's both fire; one alert each.
    assert_eq!(fired(&out), ["not_found_ratio", "not_found_ratio"]);
    assert_eq!(out.alerts[0].officer, "canbo01");
    assert_eq!(out.alerts[1].officer, "");
    assert_eq!(out.refuse.expect("refused").count, 90);
}

#[tokio::test]
async fn undeclared_subjects_of_a_dossier_count_under_pattern_binding_only() {
    let s = settings(|r| r.rules.dossier_undeclared_subjects = rule(2, "alert"));
    let d = Detector::default();
    let mut out = Outcome::default();
    for n in 1..=3 {
        let r = reference(n);
        // Declared subjects never count.
        let declared = Attempt {
            declared: Some(true),
            ..attempt(&r, MONDAY_9AM)
        };
        assert!(check(&d, &s, &declared).await.alerts.is_empty());
        let undeclared = Attempt {
            declared: Some(false),
            ..attempt(&r, MONDAY_9AM)
        };
        out = check(&d, &s, &undeclared).await;
    }
    assert_eq!(fired(&out), ["dossier_undeclared_subjects"]);
    assert_eq!(out.alerts[0].dossier, "000.00.53.H48-251130-0001");
}

#[tokio::test]
async fn memory_stays_bounded_whatever_the_officers() {
    let s = settings(|r| r.max_tracked = 100);
    let d = Detector::default();
    for n in 0..5_000u64 {
        let officer = format!("o{n}");
        let a = Attempt {
            officer: &officer,
            ..attempt("k1:01", MONDAY_9AM + n as i64)
        };
        check(&d, &s, &a).await;
        assert!(d.tracked() <= 100 + 7, "{}", d.tracked());
    }
}

#[test]
fn a_keys_serial_is_its_trailing_digits() {
    assert_eq!(
        serial("population.citizen", "001090012345"),
        Some(("", 1_090_012_345))
    );
    assert_eq!(
        serial("business.enterprise", "0100233489"),
        Some(("", 10_023_348)),
        "without the check digit"
    );
    assert_eq!(
        serial("land.parcel", "00004-12-345"),
        Some(("00004-12-", 345))
    );
    assert_eq!(serial("x.y", "abc"), None);
}
