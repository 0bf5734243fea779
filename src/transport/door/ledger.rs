//! The ledger of refusals before a caller is identified: counted per (listener, source,
//! reason) and written as one chained audit record per key and window, so that a flood
//! grows the trail by sources × reasons × windows, not by requests. The first refusal of a
//! key in a window is also the only log line it gets.

use super::Reason;
use super::sources::SourceKey;
use crate::audit::record::{AuditEntry, now_ms};
use std::collections::HashMap;
use std::sync::Mutex;

/// The audit action of a summary record.
pub const DOOR_SUMMARY: &str = "door_summary";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tally {
    count: u64,
    first_ms: i64,
    last_ms: i64,
}

type Key = (&'static str, SourceKey, Reason);

/// Counts for the current window, at most `max` keys: beyond that, refusals are counted
/// under the `untracked` source.
pub(super) struct Ledger {
    max: usize,
    window: Mutex<HashMap<Key, Tally>>,
}

impl Ledger {
    pub(super) fn new(max: usize) -> Ledger {
        Ledger {
            max: max.max(1),
            window: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one refusal; true when it is the key's first in this window (log it).
    pub(super) fn count(&self, listener: &'static str, source: SourceKey, reason: Reason) -> bool {
        let now = now_ms();
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let mut key = (listener, source, reason);
        if !w.contains_key(&key) && w.len() >= self.max {
            key.1 = SourceKey::Untracked;
        }
        let tally = w.entry(key).or_insert(Tally {
            count: 0,
            first_ms: now,
            last_ms: now,
        });
        tally.count += 1;
        tally.last_ms = now;
        tally.count == 1
    }

    /// Closes the window: one record per key counted in it.
    pub(super) fn drain(&self) -> Vec<AuditEntry> {
        let taken = std::mem::take(&mut *self.window.lock().unwrap_or_else(|p| p.into_inner()));
        let time_ms = now_ms();
        let mut entries: Vec<AuditEntry> = taken
            .into_iter()
            .map(|((listener, source, reason), t)| AuditEntry {
                time_ms,
                request_id: crate::transport::request_id(),
                transport: listener.into(),
                action: DOOR_SUMMARY.into(),
                outcome: reason.as_str().into(),
                upstream_ms: -1,
                detail: serde_json::json!({
                    "listener": listener,
                    "source": source.to_string(),
                    "reason": reason.as_str(),
                    "count": t.count,
                    "first_ms": t.first_ms,
                    "last_ms": t.last_ms,
                })
                .to_string(),
                ..AuditEntry::default()
            })
            .collect();
        entries.sort_by(|a, b| a.detail.cmp(&b.detail));
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_holds_one_tally_per_key_and_is_bounded() {
        let l = Ledger::new(3);
        let a = SourceKey::V4([10, 0, 0, 1]);
        assert!(l.count("lookup", a, Reason::Unauthenticated));
        for _ in 0..999 {
            assert!(!l.count("lookup", a, Reason::Unauthenticated));
        }
        assert!(l.count("lookup", a, Reason::SourceBudget));
        assert!(l.count("admin", a, Reason::Unauthenticated));
        for i in 0..100 {
            l.count(
                "lookup",
                SourceKey::V4([10, 1, 0, i]),
                Reason::Unauthenticated,
            );
        }
        let records = l.drain();
        assert_eq!(records.len(), 4, "three keys and the untracked one");
        let flood = records
            .iter()
            .find(|r| {
                r.detail.contains("10.0.0.1")
                    && r.outcome == "unauthenticated"
                    && r.transport == "lookup"
            })
            .unwrap();
        let detail: serde_json::Value = serde_json::from_str(&flood.detail).unwrap();
        assert_eq!(detail["count"], 1000);
        assert_eq!(flood.action, DOOR_SUMMARY);
        assert!(
            records
                .iter()
                .any(|r| r.detail.contains("\"untracked\"") && r.detail.contains("\"count\":100"))
        );
        assert!(l.drain().is_empty(), "a new window starts empty");
        assert!(
            l.count("lookup", a, Reason::Unauthenticated),
            "and logs again"
        );
    }
}
