//! Reading the segments: a chain's head, its records in order, its checkpoints, and
//! queries newest first. A sealed segment is read through its index: a binary search to
//! the run of the query's most selective key, then only the records in that run, each
//! compared in full (keys are hashes, so a run can hold a stranger). A log not yet sealed
//! is walked whole.

use super::index::{self, Kind, Summary};
use super::{Archived, Seg, Segments, format, io};
use crate::audit::record::{Chained, Checkpoint, EntryView};
use crate::audit::store::{Query, StoreError};
use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Postings read at a time.
const CHUNK: u32 = 512;

/// Where a record falls in a query's answer: newest first, then by chain, then by sequence
/// number downwards.
type Order = (Reverse<i64>, String, Reverse<i64>);

fn order(r: &Chained) -> Order {
    (Reverse(r.entry.time_ms), r.instance.clone(), Reverse(r.seq))
}

/// Every condition of a query, tested on a record's view.
struct Filter<'a> {
    q: &'a Query,
    archived: &'a Archived,
}

impl Filter<'_> {
    /// What can be told from a record's place alone (before reading it).
    fn may_keep(&self, instance: &str, seq: i64, time: i64) -> bool {
        let q = self.q;
        self.archived.get(instance).is_none_or(|a| seq > *a)
            && q.from_ms.is_none_or(|f| time >= f)
            && q.to_ms.is_none_or(|t| time <= t)
            && q.after.as_ref().is_none_or(|(t, i, s)| {
                time < *t || (time == *t && (instance > i.as_str() || (instance == i && seq < *s)))
            })
    }

    fn keeps(&self, instance: &str, seq: i64, v: &EntryView<'_>) -> bool {
        let q = self.q;
        let eq =
            |want: &Option<String>, got: &[u8]| want.as_ref().is_none_or(|w| w.as_bytes() == got);
        let any = |want: &[String], got: &[u8]| {
            want.is_empty() || want.iter().any(|w| w.as_bytes() == got)
        };
        self.may_keep(instance, seq, v.time_ms)
            && any(&q.subjects, v.subject)
            && eq(&q.dataset, v.dataset)
            && eq(&q.actor, v.actor)
            && eq(&q.dossier_id, v.dossier_id)
            && eq(&q.officer_id, v.officer_id)
            && eq(&q.outcome, v.outcome)
            && (q.persons.is_empty()
                || q.persons
                    .iter()
                    .any(|p| v.subject == p.as_bytes() || v.mentions().any(|m| m == p.as_bytes())))
    }

    /// The runs to read: the most selective key the query names (a person's two: as the
    /// subject and as named in fields), or every record.
    fn runs(&self) -> Vec<u64> {
        let q = self.q;
        fn nonempty(v: &Option<String>) -> Option<&[u8]> {
            v.as_ref().filter(|v| !v.is_empty()).map(|v| v.as_bytes())
        }
        let named = |refs: &[String]| refs.iter().filter(|r| !r.is_empty()).count() > 0;
        if named(&q.persons) {
            return q
                .persons
                .iter()
                .filter(|p| !p.is_empty())
                .flat_map(|p| {
                    [
                        index::key(Kind::Subject, p.as_bytes()),
                        index::key(Kind::Mention, p.as_bytes()),
                    ]
                })
                .collect();
        }
        if named(&q.subjects) {
            return q
                .subjects
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| index::key(Kind::Subject, s.as_bytes()))
                .collect();
        }
        for (kind, value) in [
            (Kind::Dossier, &q.dossier_id),
            (Kind::Officer, &q.officer_id),
            (Kind::Actor, &q.actor),
        ] {
            if let Some(v) = nonempty(value) {
                return vec![index::key(kind, v)];
            }
        }
        vec![index::key(Kind::All, b"")]
    }

    /// The newest time a record can have: where runs are entered.
    fn newest(&self) -> Option<i64> {
        match (self.q.to_ms, self.q.after.as_ref().map(|a| a.0)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn read_at(log: &File, offset: u64, len: u32) -> Result<Vec<u8>, String> {
    let mut b = vec![0; len as usize];
    log.read_exact_at(&mut b, offset)
        .map_err(|e| e.to_string())?;
    Ok(b)
}

fn decode(r: &format::RecordRef<'_>) -> Result<Chained, StoreError> {
    r.chained().map_err(|e| {
        StoreError(format!(
            "record {}:{} cannot be read: {e}",
            r.instance, r.seq
        ))
    })
}

impl Segments {
    fn read_log(&self, n: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.log_path(n);
        match format::read_used(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path, e)),
        }
    }

    /// Walks a log not yet sealed: its records, in order, and its checkpoints.
    fn walk_open(
        &self,
        n: u64,
        mut each: impl FnMut(&format::RecordRef<'_>) -> Result<(), StoreError>,
        mut checkpoint: impl FnMut(&Checkpoint),
    ) -> Result<(), StoreError> {
        let Some(bytes) = self.read_log(n)? else {
            return Ok(());
        };
        let (records, checkpoints) =
            index::walk(&bytes).map_err(|e| io("read", &self.log_path(n), e))?;
        for r in &records {
            each(r)?;
        }
        checkpoints.iter().for_each(&mut checkpoint);
        Ok(())
    }

    fn open_log(&self, n: u64) -> Result<File, StoreError> {
        let path = self.log_path(n);
        File::open(&path).map_err(|e| io("open", &path, e))
    }

    /// The last record of a chain here, as (seq, hash).
    pub fn head(&self, instance: &str) -> Result<Option<(i64, [u8; 32])>, StoreError> {
        for seg in self.list()?.into_iter().rev() {
            match seg {
                Seg::Sealed(_, s) => {
                    if let Some(c) = s.chain(instance) {
                        return Ok(Some((c.last_seq, c.last_hash)));
                    }
                }
                Seg::Open(n) => {
                    let mut last = None;
                    self.walk_open(
                        n,
                        |r| {
                            if r.instance == instance {
                                last = Some((r.seq, r.hash));
                            }
                            Ok(())
                        },
                        |_| {},
                    )?;
                    if last.is_some() {
                        return Ok(last);
                    }
                }
            }
        }
        Ok(None)
    }

    pub fn instances(&self) -> Result<BTreeSet<String>, StoreError> {
        let mut out = BTreeSet::new();
        for seg in self.list()? {
            match seg {
                Seg::Sealed(_, s) => out.extend(s.chains.iter().map(|c| c.instance.clone())),
                Seg::Open(n) => self.walk_open(
                    n,
                    |r| {
                        if !out.contains(r.instance) {
                            out.insert(r.instance.to_owned());
                        }
                        Ok(())
                    },
                    |_| {},
                )?,
            }
        }
        Ok(out)
    }

    /// Records of a chain with `seq > archived`.
    pub fn count(&self, instance: &str, archived: i64) -> Result<i64, StoreError> {
        let mut total = 0i64;
        for seg in self.list()? {
            match seg {
                Seg::Sealed(n, s) => {
                    let Some(c) = s.chain(instance) else { continue };
                    if c.last_seq <= archived {
                        continue;
                    }
                    if c.first_seq > archived {
                        total += c.count as i64;
                        continue;
                    }
                    let index = self.index(n)?;
                    let key = index::key(Kind::Chain, instance.as_bytes());
                    let from = index.seek(key, archived + 1).map_err(StoreError)?;
                    let to = index.seek(key, i64::MAX).map_err(StoreError)?;
                    total += (to - from) as i64;
                }
                Seg::Open(n) => self.walk_open(
                    n,
                    |r| {
                        total += i64::from(r.instance == instance && r.seq > archived);
                        Ok(())
                    },
                    |_| {},
                )?,
            }
        }
        Ok(total)
    }

    /// Up to `limit` records of a chain with `seq > after`, in order.
    pub fn scan(
        &self,
        instance: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Chained>, StoreError> {
        let mut out = Vec::new();
        for seg in self.list()? {
            if out.len() >= limit {
                break;
            }
            let after = out.last().map_or(after, |r: &Chained| r.seq);
            match seg {
                Seg::Sealed(n, s) => {
                    if s.chain(instance).is_none_or(|c| c.last_seq <= after) {
                        continue;
                    }
                    let index = self.index(n)?;
                    let log = self.open_log(n)?;
                    let key = index::key(Kind::Chain, instance.as_bytes());
                    let mut pos = index.seek(key, after + 1).map_err(StoreError)?;
                    'run: loop {
                        let chunk = index.postings(pos, CHUNK).map_err(StoreError)?;
                        for p in &chunk {
                            if p.key != key || out.len() >= limit {
                                break 'run;
                            }
                            let e = index.entry(p.ordinal).map_err(StoreError)?;
                            let bytes = read_at(&log, e.offset, e.len).map_err(StoreError)?;
                            let r = format::record_at(&bytes, e.offset).map_err(StoreError)?;
                            if r.instance == instance {
                                out.push(decode(&r)?);
                            }
                        }
                        if chunk.len() < CHUNK as usize {
                            break;
                        }
                        pos += CHUNK;
                    }
                }
                Seg::Open(n) => self.walk_open(
                    n,
                    |r| {
                        if r.instance == instance && r.seq > after && out.len() < limit {
                            out.push(decode(r)?);
                        }
                        Ok(())
                    },
                    |_| {},
                )?,
            }
        }
        Ok(out)
    }

    /// A chain's checkpoints past `archived`, in order.
    pub fn checkpoints(
        &self,
        instance: &str,
        archived: i64,
    ) -> Result<Vec<Checkpoint>, StoreError> {
        let mut out = Vec::new();
        for seg in self.list()? {
            match seg {
                Seg::Sealed(_, s) => out.extend(
                    s.checkpoints
                        .iter()
                        .filter(|c| c.instance == instance && c.seq > archived)
                        .cloned(),
                ),
                Seg::Open(n) => self.walk_open(
                    n,
                    |_| Ok(()),
                    |c| {
                        if c.instance == instance && c.seq > archived {
                            out.push(c.clone());
                        }
                    },
                )?,
            }
        }
        out.sort_by_key(|c| c.seq);
        Ok(out)
    }

    /// The newest `q.limit` records that match, in query order.
    pub fn query(&self, q: &Query, archived: &Archived) -> Result<Vec<Chained>, StoreError> {
        let f = Filter { q, archived };
        let mut found: Vec<Chained> = Vec::new();
        let mut sealed: Vec<(u64, std::sync::Arc<Summary>)> = Vec::new();
        for seg in self.list()? {
            match seg {
                Seg::Open(n) => self.walk_open(
                    n,
                    |r| {
                        let v = r.view().map_err(|e| {
                            StoreError(format!("record {}:{}: {e}", r.instance, r.seq))
                        })?;
                        if f.keeps(r.instance, r.seq, &v) {
                            found.push(decode(r)?);
                        }
                        Ok(())
                    },
                    |_| {},
                )?,
                Seg::Sealed(n, s) => sealed.push((n, s)),
            }
        }
        let settle = |found: &mut Vec<Chained>| {
            found.sort_by_cached_key(order);
            found.dedup_by(|a, b| a.instance == b.instance && a.seq == b.seq);
            found.truncate(q.limit);
        };
        settle(&mut found);
        // Newest segments first: once the answer is full, a segment whose newest record is
        // older than its last one cannot change it, nor can any after it.
        sealed.sort_by_key(|(_, s)| Reverse(s.max_time));
        for (n, s) in sealed {
            if found.len() >= q.limit
                && found
                    .last()
                    .is_some_and(|last| s.max_time < last.entry.time_ms)
            {
                break;
            }
            if q.from_ms.is_some_and(|from| s.max_time < from)
                || f.newest().is_some_and(|newest| s.min_time > newest)
            {
                continue;
            }
            found.extend(self.query_sealed(n, &s, &f)?);
            settle(&mut found);
        }
        Ok(found)
    }

    /// Up to `limit` records of one sealed segment that match, in query order.
    fn query_sealed(
        &self,
        n: u64,
        s: &Summary,
        f: &Filter<'_>,
    ) -> Result<Vec<Chained>, StoreError> {
        let index = self.index(n)?;
        let log = self.open_log(n)?;
        let mut out = Vec::new();
        let start = f.newest().map_or(i64::MIN, |t| t.saturating_neg());
        for key in f.runs() {
            let mut taken = 0;
            let mut pos = index.seek(key, start).map_err(StoreError)?;
            'run: loop {
                let chunk = index.postings(pos, CHUNK).map_err(StoreError)?;
                for p in &chunk {
                    let time = -p.order;
                    if p.key != key
                        || taken >= f.q.limit
                        || f.q.from_ms.is_some_and(|from| time < from)
                    {
                        break 'run;
                    }
                    let e = index.entry(p.ordinal).map_err(StoreError)?;
                    let Some(chain) = s.chains.get(e.chain as usize) else {
                        return Err(io(
                            "read the index",
                            &self.index_path(n),
                            "a record names no chain",
                        ));
                    };
                    if !f.may_keep(&chain.instance, e.seq, e.time_ms) {
                        continue;
                    }
                    let bytes = read_at(&log, e.offset, e.len).map_err(StoreError)?;
                    let r = format::record_at(&bytes, e.offset).map_err(StoreError)?;
                    let v = r.view().map_err(|err| {
                        StoreError(format!("record {}:{}: {err}", r.instance, r.seq))
                    })?;
                    if f.keeps(r.instance, r.seq, &v) {
                        out.push(decode(&r)?);
                        taken += 1;
                    }
                }
                if chunk.len() < CHUNK as usize {
                    break;
                }
                pos += CHUNK;
            }
        }
        Ok(out)
    }
}
