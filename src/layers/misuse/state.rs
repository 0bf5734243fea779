//! What detection remembers, per replica, in bounded memory: one window per (rule, actor,
//! period) with the keyed references it saw (capped just past the threshold, since a count
//! past it fires whatever it reaches), a count, and whether its alert was raised. When
//! the table is full, windows whose period ended go first, then the oldest.

use super::{Action, MisuseSettings, Overrides, Rule, VIETNAM_OFFSET_MS};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// One call as detection sees it. `subject` and `buckets` are keyed references (the key
/// itself never reaches detection).
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    pub consumer: &'a str,
    pub officer: &'a str,
    pub dossier: &'a str,
    pub subject: &'a str,
    /// Under pattern binding: whether the dossier declared this subject (`None` under
    /// declared binding, where the dossier rule has nothing to add).
    pub declared: Option<bool>,
    /// The sequential rule's bucket references: this key's bucket, and its neighbours'.
    pub buckets: Option<[String; 3]>,
    pub now_ms: i64,
}

/// A rule that fired: what an alert records and a refusal names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    pub rule: Rule,
    pub consumer: String,
    /// The officer, or empty for a consumer's or a dossier's window.
    pub officer: String,
    /// The dossier, for the dossier rule.
    pub dossier: String,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub count: u64,
    pub threshold: u64,
    pub action: Action,
}

/// What detection says about a call.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Rules that fired for the first time in their period: an alert each.
    pub alerts: Vec<Firing>,
    /// A rule under `refuse` that fires: the call is refused.
    pub refuse: Option<Firing>,
}

#[derive(Debug, Default)]
struct Window {
    seen: HashSet<u64>,
    count: u64,
    calls: u64,
    misses: u64,
    alerted: bool,
    end_ms: i64,
}

/// A reference's first 64 bits: enough to tell subjects apart in one window.
fn short(reference: &str) -> u64 {
    let hex = reference.rsplit(':').next().unwrap_or(reference);
    hex.get(..16)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or_else(|| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            reference.hash(&mut h);
            h.finish()
        })
}

/// The start of the period of `rule` that holds `now_ms`, on Vietnam's clock.
pub(super) fn period_start(rule: Rule, now_ms: i64) -> i64 {
    let p = rule.period_ms();
    (now_ms + VIETNAM_OFFSET_MS).div_euclid(p) * p - VIETNAM_OFFSET_MS
}

/// Detection's memory on this replica, shared by every configuration version.
#[derive(Default)]
pub struct Detector {
    windows: Mutex<HashMap<(Rule, String, i64), Window>>,
}

impl Detector {
    /// Counts the attempt under every rule and says which fired.
    pub fn check(
        &self,
        settings: &MisuseSettings,
        scope: (&Overrides, &Overrides),
        a: &Attempt<'_>,
    ) -> Outcome {
        let mut out = Outcome::default();
        if !settings.enabled {
            return out;
        }
        let officer_actor = format!("{}\0{}", a.consumer, a.officer);
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        self.make_room(&mut windows, settings.max_tracked, a.now_ms);
        for rule in Rule::ALL {
            let setting = settings.setting(rule, scope.0, scope.1);
            let (actor, officer, dossier) = match rule {
                Rule::DossierUndeclaredSubjects => match a.declared {
                    Some(false) => (format!("{}\0\0{}", a.consumer, a.dossier), "", a.dossier),
                    _ => continue,
                },
                Rule::OffHours if settings.office.open_at(a.now_ms) => continue,
                Rule::SequentialKeys if a.buckets.is_none() => continue,
                Rule::NotFoundRatio => {
                    // Past calls decide; this one's outcome is counted when it is known.
                    for (actor, officer) in [
                        (officer_actor.clone(), a.officer),
                        (a.consumer.to_owned(), ""),
                    ] {
                        let start = period_start(rule, a.now_ms);
                        let w = windows.entry((rule, actor, start)).or_default();
                        w.end_ms = start + rule.period_ms();
                        let fires = w.calls >= settings.not_found_min_calls
                            && w.calls > 0
                            && w.misses * 100 > setting.threshold * w.calls;
                        if fires {
                            let firing = Firing {
                                rule,
                                consumer: a.consumer.to_owned(),
                                officer: officer.to_owned(),
                                dossier: String::new(),
                                window_start_ms: start,
                                window_end_ms: w.end_ms,
                                count: w.misses * 100 / w.calls,
                                threshold: setting.threshold,
                                action: setting.action,
                            };
                            decide(w, firing, &mut out);
                        }
                    }
                    continue;
                }
                _ => (officer_actor.clone(), a.officer, ""),
            };
            let start = period_start(rule, a.now_ms);
            let w = windows.entry((rule, actor, start)).or_default();
            w.end_ms = start + rule.period_ms();
            let cap = setting.threshold.saturating_add(1) as usize;
            match rule {
                Rule::OffHours => w.count += 1,
                Rule::SequentialKeys => {
                    let Some(buckets) = &a.buckets else { continue };
                    let [own, below, above] =
                        [&buckets[0], &buckets[1], &buckets[2]].map(|b| short(b));
                    if [own, below, above].iter().any(|b| w.seen.contains(b)) {
                        w.count += 1;
                    }
                    if w.seen.len() < 4_096 {
                        w.seen.insert(own);
                    }
                }
                _ => {
                    if w.seen.len() < cap {
                        w.seen.insert(short(a.subject));
                    }
                    w.count = w.seen.len() as u64;
                }
            }
            if w.count > setting.threshold {
                let firing = Firing {
                    rule,
                    consumer: a.consumer.to_owned(),
                    officer: officer.to_owned(),
                    dossier: dossier.to_owned(),
                    window_start_ms: start,
                    window_end_ms: w.end_ms,
                    count: w.count,
                    threshold: setting.threshold,
                    action: setting.action,
                };
                decide(w, firing, &mut out);
            }
        }
        out
    }

    /// Counts a lookup's result for the not-found rule: `found` false for `not_found`.
    pub fn outcome(
        &self,
        settings: &MisuseSettings,
        consumer: &str,
        officer: &str,
        found: bool,
        now_ms: i64,
    ) {
        if !settings.enabled {
            return;
        }
        let start = period_start(Rule::NotFoundRatio, now_ms);
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        for actor in [format!("{consumer}\0{officer}"), consumer.to_owned()] {
            let w = windows
                .entry((Rule::NotFoundRatio, actor, start))
                .or_default();
            w.end_ms = start + Rule::NotFoundRatio.period_ms();
            w.calls += 1;
            w.misses += u64::from(!found);
        }
    }

    /// Windows tracked now (for tests and the live metrics).
    pub fn tracked(&self) -> usize {
        self.windows.lock().map(|w| w.len()).unwrap_or(0)
    }

    /// Keeps the table within `max` windows: ended ones go first, then the oldest.
    fn make_room(
        &self,
        windows: &mut HashMap<(Rule, String, i64), Window>,
        max: usize,
        now_ms: i64,
    ) {
        if windows.len() < max {
            return;
        }
        windows.retain(|_, w| w.end_ms > now_ms);
        if windows.len() >= max {
            let mut starts: Vec<i64> = windows.keys().map(|k| k.2).collect();
            starts.sort_unstable();
            let cut = starts[windows.len() - max * 3 / 4];
            windows.retain(|k, _| k.2 > cut);
        }
    }
}

/// The first firing in a window is an alert; under `refuse`, every firing refuses.
fn decide(w: &mut Window, firing: Firing, out: &mut Outcome) {
    if !w.alerted {
        w.alerted = true;
        out.alerts.push(firing.clone());
    }
    if firing.action == Action::Refuse && out.refuse.is_none() {
        out.refuse = Some(firing);
    }
}
