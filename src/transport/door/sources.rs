//! Sources as the door counts them (an IPv4 address, an IPv6 /64), CIDR lists, and the
//! bounded table of what each source may still do: its request budget, its failed
//! authentications and back-off, its open connections.

use crate::shared::limiter::{Limiter, QuotaSpec};
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where requests come from: an IPv4 address, or the /64 an IPv6 address is in (one host
/// usually holds a whole /64). `Untracked` stands for every source the table had no room
/// for; they share one budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKey {
    V4([u8; 4]),
    V6([u8; 8]),
    Untracked,
}

impl SourceKey {
    pub fn of(ip: IpAddr) -> SourceKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => SourceKey::V4(v4.octets()),
            IpAddr::V6(v6) => {
                let o = v6.octets();
                SourceKey::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
            }
        }
    }
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceKey::V4(o) => write!(f, "{}", std::net::Ipv4Addr::from(*o)),
            SourceKey::V6(p) => {
                let mut o = [0u8; 16];
                o[..8].copy_from_slice(p);
                write!(f, "{}/64", std::net::Ipv6Addr::from(o))
            }
            SourceKey::Untracked => f.write_str("untracked"),
        }
    }
}

/// An address block, `10.0.0.0/8` or `2001:db8::/32`; a bare address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address block like 10.0.0.0/8"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr {
            net: mask(net, prefix),
            prefix,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.prefix) == self.net
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

/// Whether any block of `list` holds `ip`.
pub(super) fn listed(list: &[Cidr], ip: IpAddr) -> bool {
    list.iter().any(|c| c.contains(ip))
}

/// Why a request was refused before its credentials were looked at, and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refused {
    pub(super) backoff: bool,
    pub(super) retry_after: Duration,
}

struct Entry {
    requests: Limiter,
    failures: Option<Limiter>,
    backoff_until: Option<Instant>,
    /// Back-offs in a row while failures continue: the next lasts 2^level times the first.
    level: u32,
    last_failure: Option<Instant>,
    connections: [usize; 2],
    last_seen: Instant,
}

/// The per-source state, for at most `max` sources at a time. When the table is full, a
/// sweep (at most once a second) forgets sources that are quiet: no connection open, no
/// back-off running, not seen for a budget's period. Sources still without room share the
/// `Untracked` entry, so the table's memory is bounded whatever variety of addresses a
/// flood spoofs.
pub(super) struct Sources {
    max: usize,
    requests: QuotaSpec,
    failures: QuotaSpec,
    backoff: Duration,
    backoff_max: Duration,
    table: Mutex<Table>,
}

struct Table {
    entries: HashMap<SourceKey, Entry>,
    last_sweep: Option<Instant>,
}

impl Sources {
    pub(super) fn new(
        max: usize,
        requests: QuotaSpec,
        failures: QuotaSpec,
        (backoff, backoff_max): (Duration, Duration),
    ) -> Sources {
        Sources {
            max: max.max(1),
            requests,
            failures,
            backoff,
            backoff_max,
            table: Mutex::new(Table {
                entries: HashMap::new(),
                last_sweep: None,
            }),
        }
    }

    fn with<T>(&self, key: SourceKey, f: impl FnOnce(&mut Entry, Instant, SourceKey) -> T) -> T {
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let key = self.room_for(&mut table, key, now);
        let requests = self.requests;
        let entry = table.entries.entry(key).or_insert_with(|| Entry {
            requests: Limiter::new(requests),
            failures: None,
            backoff_until: None,
            level: 0,
            last_failure: None,
            connections: [0, 0],
            last_seen: now,
        });
        entry.last_seen = now;
        f(entry, now, key)
    }

    /// `key` if it has (or can get) an entry, else `Untracked`.
    fn room_for(&self, table: &mut Table, key: SourceKey, now: Instant) -> SourceKey {
        if table.entries.contains_key(&key) || table.entries.len() < self.max {
            return key;
        }
        let due = table
            .last_sweep
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        if due {
            table.last_sweep = Some(now);
            let quiet = self.requests.per.max(self.backoff_max);
            table.entries.retain(|k, e| {
                *k == SourceKey::Untracked
                    || e.connections != [0, 0]
                    || e.backoff_until.is_some_and(|u| u > now)
                    || now.duration_since(e.last_seen) < quiet
            });
            if table.entries.len() < self.max {
                return key;
            }
        }
        SourceKey::Untracked
    }

    /// Admits one request from `key`, or says why not: a back-off after failed
    /// authentications (checked first), or the request budget.
    pub(super) fn admit(&self, key: SourceKey) -> Result<(), Refused> {
        self.with(key, |e, now, _| {
            if let Some(until) = e.backoff_until.filter(|u| *u > now) {
                return Err(Refused {
                    backoff: true,
                    retry_after: until - now,
                });
            }
            e.requests.check().map(|_| ()).map_err(|over| Refused {
                backoff: false,
                retry_after: over.retry_after,
            })
        })
    }

    /// Counts a failed authentication from `key`. Past the failure budget a back-off starts;
    /// each one that follows while failures continue lasts twice as long, up to the most.
    /// Returns the back-off started, if one did.
    pub(super) fn failed(&self, key: SourceKey) -> Option<Duration> {
        let (spec, first, most) = (self.failures, self.backoff, self.backoff_max);
        self.with(key, |e, now, _| {
            // A quiet spell as long as the longest back-off starts the ladder again.
            if e.last_failure.is_some_and(|t| now.duration_since(t) > most) {
                e.level = 0;
            }
            e.last_failure = Some(now);
            let over = e
                .failures
                .get_or_insert_with(|| Limiter::new(spec))
                .check()
                .is_err();
            if !over || e.backoff_until.is_some_and(|u| u > now) {
                return None;
            }
            let lasts = first
                .saturating_mul(1u32.checked_shl(e.level).unwrap_or(u32::MAX))
                .min(most);
            e.level = e.level.saturating_add(1);
            e.backoff_until = Some(now + lasts);
            Some(lasts)
        })
    }

    /// Opens a connection for `key` on `listener` (0 lookup, 1 admin) if it has fewer than
    /// `cap` open there; the entry that counts it (`key` or `Untracked`) closes it.
    pub(super) fn connect(&self, key: SourceKey, listener: usize, cap: usize) -> Option<SourceKey> {
        self.with(key, |e, _, counted| {
            if e.connections[listener] >= cap {
                return None;
            }
            e.connections[listener] += 1;
            Some(counted)
        })
    }

    /// Closes a connection `connect` counted under `counted`.
    pub(super) fn disconnect(&self, counted: SourceKey, listener: usize) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = table.entries.get_mut(&counted) {
            e.connections[listener] = e.connections[listener].saturating_sub(1);
        }
    }

    /// Sources tracked now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> QuotaSpec {
        QuotaSpec::parse(s).unwrap()
    }

    #[test]
    fn sources_are_addresses_and_ipv6_slash_64s() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(SourceKey::of(a), SourceKey::of(b));
        assert_ne!(SourceKey::of(a), SourceKey::of(c));
        assert_eq!(SourceKey::of(a).to_string(), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(SourceKey::of(mapped).to_string(), "10.1.2.3");
    }

    #[test]
    fn blocks_hold_what_their_prefix_says() {
        let net = Cidr::parse("10.20.0.0/16").unwrap();
        assert!(net.contains("10.20.255.1".parse().unwrap()));
        assert!(!net.contains("10.21.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.20.0.9".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        let one = Cidr::parse("127.0.0.2").unwrap();
        assert!(one.contains("127.0.0.2".parse().unwrap()));
        assert!(!one.contains("127.0.0.1".parse().unwrap()));
        assert!(
            Cidr::parse("fd00::/8")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").unwrap_err().contains("0 to 32"));
        assert!(Cidr::parse("ten/8").is_err());
    }

    #[test]
    fn a_budget_holds_per_source_and_a_backoff_refuses_everything() {
        let s = Sources::new(
            10,
            spec("3/min"),
            spec("2/min"),
            (Duration::from_secs(60), Duration::from_secs(600)),
        );
        let a = SourceKey::of("10.0.0.1".parse().unwrap());
        let b = SourceKey::of("10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            s.admit(a).unwrap();
        }
        let refused = s.admit(a).unwrap_err();
        assert!(!refused.backoff && refused.retry_after > Duration::ZERO);
        s.admit(b).expect("another source has its own budget");
        assert_eq!(s.failed(b), None);
        assert_eq!(s.failed(b), None);
        assert_eq!(s.failed(b), Some(Duration::from_secs(60)));
        let refused = s.admit(b).unwrap_err();
        assert!(refused.backoff);
        // A failure during the back-off does not start another.
        assert_eq!(s.failed(b), None);
    }

    #[test]
    fn backoffs_grow_while_failures_continue() {
        let s = Sources::new(
            10,
            spec("1/day"),
            spec("1/day"),
            (Duration::from_millis(1), Duration::from_millis(300)),
        );
        let a = SourceKey::of("10.0.0.1".parse().unwrap());
        s.failed(a);
        let mut lasted = Vec::new();
        for _ in 0..4 {
            // Each back-off has ended (they are short) before the next failure.
            std::thread::yield_now();
            while s.admit(a).is_err_and(|r| r.backoff) {
                std::hint::spin_loop();
            }
            lasted.push(s.failed(a).expect("over budget: a back-off"));
        }
        assert_eq!(
            lasted,
            [1, 2, 4, 8].map(Duration::from_millis),
            "each back-off doubles the one before"
        );
    }

    #[test]
    fn the_table_is_bounded_and_the_overflow_shares_one_budget() {
        let s = Sources::new(
            4,
            spec("1/day"),
            spec("1/day"),
            (Duration::from_secs(1), Duration::from_secs(1)),
        );
        for i in 0..4u8 {
            s.admit(SourceKey::V4([10, 0, 0, i])).unwrap();
        }
        assert_eq!(s.len(), 4);
        // The table is full of sources seen just now: newcomers share the untracked entry.
        s.admit(SourceKey::V4([10, 0, 1, 1])).unwrap();
        let refused = s.admit(SourceKey::V4([10, 0, 1, 2])).unwrap_err();
        assert!(!refused.backoff, "the shared budget is spent");
        for i in 0..200u8 {
            let _ = s.admit(SourceKey::V4([10, 9, 9, i]));
        }
        assert!(s.len() <= 5, "at most max entries and the untracked one");
    }

    #[test]
    fn connections_are_capped_per_source_and_listener() {
        let s = Sources::new(
            4,
            spec("1/s"),
            spec("1/s"),
            (Duration::from_secs(1), Duration::from_secs(1)),
        );
        let a = SourceKey::V4([10, 0, 0, 1]);
        assert_eq!(s.connect(a, 0, 2), Some(a));
        assert_eq!(s.connect(a, 0, 2), Some(a));
        assert_eq!(s.connect(a, 0, 2), None);
        assert!(
            s.connect(a, 1, 1).is_some(),
            "the admin listener counts apart"
        );
        s.disconnect(a, 0);
        assert_eq!(s.connect(a, 0, 2), Some(a));
    }
}
