//! What detection remembers. A call is planned into counts (one per rule that applies, in
//! a window of (rule, actor, period)); the counts are kept in Redis when `[redis]` is set, so
//! that replicas add up, or in this replica's bounded memory otherwise (and while Redis does
//! not answer). Either way the state holds keyed references only, capped just past the
//! threshold (a count past it fires whatever it reaches). In memory, when the table is
//! full, windows whose period ended go first, then the oldest.

use super::{Action, MisuseSettings, Overrides, Rule, Setting, VIETNAM_OFFSET_MS};
use crate::shared::Shared;
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
    /// The sequential rule's bucket references (64-bit keyed, see
    /// [`crate::audit::record::SubjectKey::short`]): this key's bucket, and its neighbours'.
    pub buckets: Option<[u64; 3]>,
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
    /// Rules that fired for the first time in their period (on this replica): an alert
    /// each.
    pub alerts: Vec<Firing>,
    /// A rule under `refuse` that fires: the call is refused.
    pub refuse: Option<Firing>,
}

/// What one count adds.
#[derive(Debug, Clone)]
enum Kind<'a> {
    /// A distinct member (a subject's reference).
    Distinct(&'a str),
    /// One more call.
    Count,
    /// A key's bucket and its neighbours': counts when one was seen.
    Sequential([u64; 3]),
    /// Reads the not-found tally (calls, misses); this call's result is added later.
    Ratio,
}

/// Whose window a count goes to: a consumer's, one of its officers', or one of its
/// dossiers'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Actor<'a> {
    Consumer(&'a str),
    Officer(&'a str, &'a str),
    Dossier(&'a str, &'a str),
}

impl Actor<'_> {
    /// The window's name in Redis (as it always was: parts joined by `/`).
    fn redis_name(&self) -> String {
        match self {
            Actor::Consumer(c) => (*c).to_owned(),
            Actor::Officer(c, o) => format!("{c}/{o}"),
            Actor::Dossier(c, d) => format!("{c}//{d}"),
        }
    }

    /// The window's number in memory: a hash of its kind and parts, seeded per process,
    /// so building it allocates nothing and no caller can aim two names at one window.
    fn id(&self, seed: u64) -> u64 {
        use xxhash_rust::xxh3::xxh3_64_with_seed as h;
        match self {
            Actor::Consumer(c) => h(c.as_bytes(), seed),
            Actor::Officer(c, o) => h(o.as_bytes(), h(c.as_bytes(), seed ^ 1)),
            Actor::Dossier(c, d) => h(d.as_bytes(), h(c.as_bytes(), seed ^ 2)),
        }
    }

    fn officer(&self) -> &str {
        match self {
            Actor::Officer(_, o) => o,
            _ => "",
        }
    }

    fn dossier(&self) -> &str {
        match self {
            Actor::Dossier(_, d) => d,
            _ => "",
        }
    }
}

/// One count of one call, in its window.
#[derive(Debug, Clone)]
struct Planned<'a> {
    rule: Rule,
    actor: Actor<'a>,
    start: i64,
    kind: Kind<'a>,
    setting: Setting,
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

/// Most buckets a sequential window remembers.
const MAX_BUCKETS: usize = 4_096;

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

/// The counts a call adds, one per rule that applies to it.
fn plan<'a>(
    settings: &MisuseSettings,
    scope: (&Overrides, &Overrides),
    a: &Attempt<'a>,
) -> Vec<Planned<'a>> {
    let officer = Actor::Officer(a.consumer, a.officer);
    let mut out = Vec::with_capacity(7);
    for rule in Rule::ALL {
        let setting = settings.setting(rule, scope.0, scope.1);
        let start = period_start(rule, a.now_ms);
        let mut push = |actor: Actor<'a>, kind: Kind<'a>| {
            out.push(Planned {
                rule,
                actor,
                start,
                kind,
                setting,
            })
        };
        match rule {
            Rule::OfficerSubjectsHour | Rule::OfficerSubjectsDay => {
                push(officer, Kind::Distinct(a.subject))
            }
            Rule::DossierUndeclaredSubjects => {
                if a.declared == Some(false) {
                    push(
                        Actor::Dossier(a.consumer, a.dossier),
                        Kind::Distinct(a.subject),
                    )
                }
            }
            Rule::OffHours => {
                if !settings.office.open_at(a.now_ms) {
                    push(officer, Kind::Count)
                }
            }
            Rule::SequentialKeys => {
                if let Some(b) = a.buckets {
                    push(officer, Kind::Sequential(b))
                }
            }
            Rule::NotFoundRatio => {
                push(officer, Kind::Ratio);
                push(Actor::Consumer(a.consumer), Kind::Ratio);
            }
        }
    }
    out
}

/// What a rule counted: a count, or the not-found tally.
#[derive(Debug, Clone, Copy)]
enum Counted {
    N(u64),
    Tally { calls: u64, misses: u64 },
}

/// The Redis side of [`plan`]: one script call per attempt. For each count, ARGV holds
/// six values: kind, period (ms, the key's lifetime), cap, and up to three members.
const COUNT: &str = r"
local out = {}
for i = 1, #KEYS do
  local b = (i - 1) * 6
  local kind, ttl, cap = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local k = KEYS[i]
  if kind == 'd' then
    local m = ARGV[b + 4]
    if redis.call('SISMEMBER', k, m) == 0 and redis.call('SCARD', k) < cap then
      redis.call('SADD', k, m)
    end
    redis.call('PEXPIRE', k, ttl)
    out[i] = redis.call('SCARD', k)
  elseif kind == 'c' then
    out[i] = redis.call('INCR', k)
    redis.call('PEXPIRE', k, ttl)
  elseif kind == 's' then
    local near = redis.call('SMISMEMBER', k, ARGV[b + 4], ARGV[b + 5], ARGV[b + 6])
    local n = tonumber(redis.call('GET', k .. ':n') or '0')
    if near[1] == 1 or near[2] == 1 or near[3] == 1 then
      n = redis.call('INCR', k .. ':n')
      redis.call('PEXPIRE', k .. ':n', ttl)
    end
    if redis.call('SCARD', k) < cap then
      redis.call('SADD', k, ARGV[b + 4])
    end
    redis.call('PEXPIRE', k, ttl)
    out[i] = n
  else
    local v = redis.call('HMGET', k, 'calls', 'misses')
    out[i] = (tonumber(v[1]) or 0) * 4294967296 + (tonumber(v[2]) or 0)
  end
end
return out
";

type Windows = HashMap<(Rule, u64, i64), Window, foldhash::fast::RandomState>;

/// Detection's memory on this replica, shared by every configuration version.
pub struct Detector {
    /// Windows by (rule, actor's number, period start).
    /// Keyed by numbers already made under this process's seed: a fast hasher will do.
    windows: Mutex<Windows>,
    /// This process's seed of actors' numbers.
    seed: u64,
    script: redis::Script,
}

impl Default for Detector {
    fn default() -> Self {
        Detector {
            windows: Mutex::default(),
            seed: uuid::Uuid::new_v4().as_u64_pair().0,
            script: redis::Script::new(COUNT),
        }
    }
}

impl Detector {
    /// Counts the attempt under every rule (in Redis when `shared` is given and answers,
    /// else in memory) and says which rules fired.
    pub async fn check(
        &self,
        settings: &MisuseSettings,
        scope: (&Overrides, &Overrides),
        a: &Attempt<'_>,
        shared: Option<&Shared>,
    ) -> Outcome {
        if !settings.enabled {
            return Outcome::default();
        }
        let planned = plan(settings, scope, a);
        let counted = match shared {
            // Boxed: the Redis client's future is large, and most deployments never make it.
            Some(s) => Box::pin(self.count_shared(s, &planned)).await,
            None => None,
        };
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        make_room(&mut windows, settings.max_tracked, a.now_ms);
        let mut out = Outcome::default();
        for (i, p) in planned.iter().enumerate() {
            let w = windows
                .entry((p.rule, p.actor.id(self.seed), p.start))
                .or_default();
            w.end_ms = p.start + p.rule.period_ms();
            let counted = match &counted {
                Some(c) => c[i],
                None => count_locally(w, p),
            };
            let (fires, count) = match counted {
                Counted::N(n) => (n > p.setting.threshold, n),
                Counted::Tally { calls, misses } => (
                    calls >= settings.not_found_min_calls.max(1)
                        && misses * 100 > p.setting.threshold * calls,
                    (misses * 100).checked_div(calls).unwrap_or(0),
                ),
            };
            if fires {
                let firing = Firing {
                    rule: p.rule,
                    consumer: a.consumer.to_owned(),
                    officer: p.actor.officer().to_owned(),
                    dossier: p.actor.dossier().to_owned(),
                    window_start_ms: p.start,
                    window_end_ms: w.end_ms,
                    count,
                    threshold: p.setting.threshold,
                    action: p.setting.action,
                };
                if !w.alerted {
                    w.alerted = true;
                    out.alerts.push(firing.clone());
                }
                if firing.action == Action::Refuse && out.refuse.is_none() {
                    out.refuse = Some(firing);
                }
            }
        }
        out
    }

    /// The counts in Redis, or `None` when it does not answer.
    async fn count_shared(&self, shared: &Shared, planned: &[Planned<'_>]) -> Option<Vec<Counted>> {
        let mut keys = Vec::with_capacity(planned.len());
        let mut args = Vec::with_capacity(planned.len() * 6);
        for p in planned {
            keys.push(shared.prefixed(&format!(
                "misuse:{}:{}:{}",
                p.rule.as_str(),
                p.actor.redis_name(),
                p.start
            )));
            let ttl = (p.rule.period_ms() + 60_000).to_string();
            let cap = p.setting.threshold.saturating_add(1).to_string();
            let (kind, members): (&str, [String; 3]) = match &p.kind {
                Kind::Distinct(m) => ("d", [(*m).to_owned(), String::new(), String::new()]),
                Kind::Count => ("c", Default::default()),
                Kind::Sequential(b) => ("s", b.map(|b| format!("{b:016x}"))),
                Kind::Ratio => ("r", Default::default()),
            };
            let cap = if kind == "s" {
                MAX_BUCKETS.to_string()
            } else {
                cap
            };
            args.extend([kind.to_owned(), ttl, cap]);
            args.extend(members);
        }
        let answer = shared.eval(&self.script, &keys, &args).await?;
        (answer.len() == planned.len()).then(|| {
            planned
                .iter()
                .zip(answer)
                .map(|(p, v)| match p.kind {
                    Kind::Ratio => Counted::Tally {
                        calls: (v.max(0) as u64) >> 32,
                        misses: (v.max(0) as u64) & 0xffff_ffff,
                    },
                    _ => Counted::N(v.max(0) as u64),
                })
                .collect()
        })
    }

    /// Counts a lookup's result for the not-found rule: `found` false for `not_found`.
    pub async fn outcome(
        &self,
        settings: &MisuseSettings,
        (consumer, officer): (&str, &str),
        found: bool,
        now_ms: i64,
        shared: Option<&Shared>,
    ) {
        if !settings.enabled {
            return;
        }
        let start = period_start(Rule::NotFoundRatio, now_ms);
        let actors = [Actor::Officer(consumer, officer), Actor::Consumer(consumer)];
        if let Some(s) = shared {
            let keys = actors.map(|actor| {
                s.prefixed(&format!(
                    "misuse:{}:{}:{start}",
                    Rule::NotFoundRatio.as_str(),
                    actor.redis_name()
                ))
            });
            let ttl = (Rule::NotFoundRatio.period_ms() + 60_000).to_string();
            let miss = if found { "0" } else { "1" }.to_owned();
            if s.eval(&TALLY, &keys, &[miss, ttl]).await.is_some() {
                return;
            }
        }
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        for actor in actors {
            let w = windows
                .entry((Rule::NotFoundRatio, actor.id(self.seed), start))
                .or_default();
            w.end_ms = start + Rule::NotFoundRatio.period_ms();
            w.calls += 1;
            w.misses += u64::from(!found);
        }
    }

    /// Windows tracked in memory now (the bound the tests check).
    pub fn tracked(&self) -> usize {
        self.windows.lock().map(|w| w.len()).unwrap_or(0)
    }
}

/// Adds a lookup's result to each key's not-found tally.
static TALLY: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
for i = 1, #KEYS do
  redis.call('HINCRBY', KEYS[i], 'calls', 1)
  redis.call('HINCRBY', KEYS[i], 'misses', tonumber(ARGV[1]))
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2]))
end
return {}
",
    )
});

/// The count in this replica's memory.
fn count_locally(w: &mut Window, p: &Planned) -> Counted {
    match &p.kind {
        Kind::Count => {
            w.count += 1;
            Counted::N(w.count)
        }
        Kind::Distinct(m) => {
            let cap = p.setting.threshold.saturating_add(1) as usize;
            if w.seen.len() < cap {
                w.seen.insert(short(m));
            }
            Counted::N(w.seen.len() as u64)
        }
        Kind::Sequential([own, below, above]) => {
            if [own, below, above].iter().any(|b| w.seen.contains(*b)) {
                w.count += 1;
            }
            if w.seen.len() < MAX_BUCKETS {
                w.seen.insert(*own);
            }
            Counted::N(w.count)
        }
        Kind::Ratio => Counted::Tally {
            calls: w.calls,
            misses: w.misses,
        },
    }
}

/// Keeps the table within `max` windows: ended ones go first, then the oldest.
fn make_room(windows: &mut Windows, max: usize, now_ms: i64) {
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
