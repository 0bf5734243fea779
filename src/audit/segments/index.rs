//! A sealed segment's index: written once, when its log stops growing, from what was noted
//! as the log was written or from the log alone (the same bytes), so it can always be built
//! again. It holds the segment's summary (chains, times,
//! checkpoints), one entry per record (where it is in the log), and postings: runs of
//! records under a key, sorted by the key and then in the order queries return records
//! (newest first), or, for a chain's run, by sequence number.
//!
//! File: `LTAUDIX1`, the summary (`u32` length and bytes), the record entries (32 bytes
//! each), the postings (20 bytes each), and a trailer: where each section starts, the counts
//! and the XXH3-64 of everything before it. Integers are little endian.

use super::format::{Cursor, Frames, RecordRef, put_checkpoint, put_short};
use crate::audit::record::Checkpoint;
use std::fs::File;
use std::os::unix::fs::FileExt;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

pub(crate) const INDEX_MAGIC: [u8; 8] = *b"LTAUDIX1";
const ENTRY: usize = 32;
const POSTING: usize = 20;
const TRAILER: usize = 32;

/// What a posting's key is made of. The value is part of the on-disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Every record, newest first: the run of time-only queries.
    All = 0,
    Subject = 1,
    Actor = 2,
    Dossier = 3,
    Officer = 4,
    /// A person named in a disclosure's fields (format version 2).
    Mention = 5,
    /// A chain, in sequence order.
    Chain = 6,
}

/// The key of a run: 0 for [`Kind::All`]; otherwise XXH3-64 of the value, seeded with the
/// kind (never 0). Different values can share a key; readers compare the record itself.
pub(crate) fn key(kind: Kind, value: &[u8]) -> u64 {
    match kind {
        Kind::All => 0,
        _ => xxh3_64_with_seed(value, kind as u64).max(1),
    }
}

/// One chain's records in a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRange {
    pub instance: String,
    pub first_seq: i64,
    pub last_seq: i64,
    pub last_hash: [u8; 32],
    pub count: u32,
}

/// What a segment holds, in brief: enough to skip it, to find a chain's head, and its
/// checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The log's length the index covers.
    pub log_len: u64,
    pub records: u32,
    pub min_time: i64,
    pub max_time: i64,
    /// By instance name; an entry's instance is its place here.
    pub chains: Vec<ChainRange>,
    pub checkpoints: Vec<Checkpoint>,
}

impl Summary {
    pub fn chain(&self, instance: &str) -> Option<&ChainRange> {
        self.chains.iter().find(|c| c.instance == instance)
    }
}

/// Where one record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub offset: u64,
    pub len: u32,
    pub chain: u32,
    pub seq: i64,
    pub time_ms: i64,
}

/// A record under a key. Runs ascend by `order`: the record's time negated in query runs
/// (newest first), its sequence number in chain runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posting {
    pub key: u64,
    pub order: i64,
    pub ordinal: u32,
}

fn encode_summary(s: &Summary) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&s.log_len.to_le_bytes());
    out.extend_from_slice(&s.records.to_le_bytes());
    out.extend_from_slice(&s.min_time.to_le_bytes());
    out.extend_from_slice(&s.max_time.to_le_bytes());
    out.extend_from_slice(&(s.chains.len() as u32).to_le_bytes());
    for c in &s.chains {
        put_short(&mut out, c.instance.as_bytes());
        out.extend_from_slice(&c.first_seq.to_le_bytes());
        out.extend_from_slice(&c.last_seq.to_le_bytes());
        out.extend_from_slice(&c.last_hash);
        out.extend_from_slice(&c.count.to_le_bytes());
    }
    out.extend_from_slice(&(s.checkpoints.len() as u32).to_le_bytes());
    for c in &s.checkpoints {
        put_checkpoint(&mut out, c);
    }
    out
}

fn decode_summary(bytes: &[u8]) -> Result<Summary, String> {
    let mut r = Cursor {
        bytes,
        at: 0,
        base: 0,
    };
    let mut s = Summary {
        log_len: r.i64()? as u64,
        records: r.u32()? as u32,
        min_time: r.i64()?,
        max_time: r.i64()?,
        ..Summary::default()
    };
    for _ in 0..r.u32()? {
        s.chains.push(ChainRange {
            instance: r.text()?.to_owned(),
            first_seq: r.i64()?,
            last_seq: r.i64()?,
            last_hash: r.hash()?,
            count: r.u32()? as u32,
        });
    }
    for _ in 0..r.u32()? {
        s.checkpoints.push(r.checkpoint()?);
    }
    Ok(s)
}

/// The records of a log, in log order, and its checkpoints: what an index is built from,
/// and what a read of a log without an index walks. A torn end (a commit being written, or
/// one cut short) ends the walk; other damage is an error.
pub(crate) fn walk(log: &[u8]) -> Result<(Vec<RecordRef<'_>>, Vec<Checkpoint>), String> {
    let (mut records, mut checkpoints) = (Vec::new(), Vec::new());
    for frame in Frames::new(log) {
        let frame = match frame {
            Ok(f) => f,
            Err(d) if d.torn_end(log) => break,
            Err(d) => return Err(d.to_string()),
        };
        records.extend(frame.records);
        checkpoints.extend(frame.checkpoint);
    }
    Ok((records, checkpoints))
}

/// Builds the index of a whole log (every frame must hold). Returns the file's bytes and
/// its summary.
pub fn build(log: &[u8]) -> Result<(Vec<u8>, Summary), String> {
    let (records, checkpoints) = walk(log)?;
    let mut b = Builder::default();
    for r in &records {
        let view = r
            .view()
            .map_err(|e| format!("record {}:{}: {e}", r.instance, r.seq))?;
        b.add(
            Placed {
                offset: r.offset,
                len: r.len,
                instance: r.instance,
                seq: r.seq,
                hash: r.hash,
                time_ms: view.time_ms,
            },
            [view.subject, view.actor, view.dossier_id, view.officer_id],
            view.mentions(),
        );
    }
    b.checkpoints = checkpoints;
    Ok(b.finish(log.len() as u64))
}

/// Where a record is in its log, and what its chain says of it.
pub(crate) struct Placed<'a> {
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) instance: &'a str,
    pub(crate) seq: i64,
    pub(crate) hash: [u8; 32],
    pub(crate) time_ms: i64,
}

/// An index being built, a record at a time: from a log read back ([`build`]), or as the
/// log is written, so that sealing it reads nothing back. Both make the same bytes.
#[derive(Default, Clone)]
pub(crate) struct Builder {
    /// Chains in the order they first appear.
    chains: Vec<ChainRange>,
    /// Per record: offset, length, chain (its place in `chains`), sequence number, time.
    records: Vec<(u64, u32, u32, i64, i64)>,
    /// Keyed query postings: (key, ordinal).
    keyed: Vec<(u64, u32)>,
    pub(crate) checkpoints: Vec<Checkpoint>,
}

impl Builder {
    /// Adds the next record: `values` are its subject, actor, dossier and officer, and
    /// `mentions` the references of the people its fields name.
    pub(crate) fn add<'v>(
        &mut self,
        r: Placed<'_>,
        values: [&[u8]; 4],
        mentions: impl Iterator<Item = &'v [u8]>,
    ) {
        let chain = match self.chains.iter().position(|c| c.instance == r.instance) {
            Some(i) => i,
            None => {
                self.chains.push(ChainRange {
                    instance: r.instance.to_owned(),
                    first_seq: r.seq,
                    last_seq: r.seq,
                    last_hash: r.hash,
                    count: 0,
                });
                self.chains.len() - 1
            }
        };
        let c = &mut self.chains[chain];
        c.first_seq = c.first_seq.min(r.seq);
        if r.seq >= c.last_seq {
            c.last_seq = r.seq;
            c.last_hash = r.hash;
        }
        c.count += 1;
        let ordinal = self.records.len() as u32;
        self.records
            .push((r.offset, r.len, chain as u32, r.seq, r.time_ms));
        let [subject, ..] = values;
        for (kind, value) in [Kind::Subject, Kind::Actor, Kind::Dossier, Kind::Officer]
            .into_iter()
            .zip(values)
        {
            if !value.is_empty() {
                self.keyed.push((key(kind, value), ordinal));
            }
        }
        for m in mentions {
            if m != subject && !m.is_empty() {
                self.keyed.push((key(Kind::Mention, m), ordinal));
            }
        }
    }

    /// Records added so far.
    pub(crate) fn records(&self) -> u32 {
        self.records.len() as u32
    }

    /// The index's bytes and summary, for a log of `log_len` bytes.
    pub(crate) fn finish(self, log_len: u64) -> (Vec<u8>, Summary) {
        let mut summary = Summary {
            log_len,
            records: self.records.len() as u32,
            min_time: self.records.iter().map(|r| r.4).min().unwrap_or(0),
            max_time: self.records.iter().map(|r| r.4).max().unwrap_or(0),
            checkpoints: self.checkpoints,
            ..Summary::default()
        };
        // Chains are numbered in the order of their names.
        let mut by_name: Vec<usize> = (0..self.chains.len()).collect();
        by_name.sort_by(|a, b| self.chains[*a].instance.cmp(&self.chains[*b].instance));
        let mut place = vec![0u32; self.chains.len()];
        for (p, &i) in by_name.iter().enumerate() {
            place[i] = p as u32;
        }
        let chain_keys: Vec<u64> = self
            .chains
            .iter()
            .map(|c| key(Kind::Chain, c.instance.as_bytes()))
            .collect();
        // Query runs sort newest first, then by chain, then by sequence number downwards;
        // chain runs by sequence number upwards. Each record gets its rank in both orders
        // once, so that a posting sorts as one number, (key, order, rank): the same order
        // as sorting (key, order value, chain, tie-break, ordinal) tuples, in a fraction of
        // the comparisons' cost. The order bit keeps the two kinds apart should a chain's
        // key ever equal another key.
        let n = self.records.len();
        // A record's rank in an order given as sortable keys (ordinal last, so ties cannot
        // happen), and the ordinals in that order.
        fn ranks<K: Ord>(mut keyed: Vec<(K, u32)>) -> (Vec<u32>, Vec<u32>) {
            keyed.sort_unstable();
            let mut rank = vec![0u32; keyed.len()];
            let by: Vec<u32> = keyed.into_iter().map(|(_, ordinal)| ordinal).collect();
            for (r, &ordinal) in by.iter().enumerate() {
                rank[ordinal as usize] = r as u32;
            }
            (by, rank)
        }
        let (newest_first, newest_rank) = ranks(
            self.records
                .iter()
                .zip(0..)
                .map(|(&(_, _, chain, seq, time), o)| ((-time, place[chain as usize], -seq), o))
                .collect(),
        );
        let (by_seq, seq_rank) = ranks(
            self.records
                .iter()
                .zip(0..)
                .map(|(&(_, _, _, seq, _), o)| (seq, o))
                .collect(),
        );
        const CHAIN_RUN: u128 = 1 << 32;
        let posting = |k: u64, rank: u32| (k as u128) << 33 | rank as u128;
        let mut postings: Vec<u128> = Vec::with_capacity(n * 2 + self.keyed.len());
        let mut entries = Vec::with_capacity(n * ENTRY);
        for (ordinal, &(offset, len, chain, seq, time)) in self.records.iter().enumerate() {
            let at = place[chain as usize];
            entries.extend_from_slice(&offset.to_le_bytes());
            entries.extend_from_slice(&len.to_le_bytes());
            entries.extend_from_slice(&at.to_le_bytes());
            entries.extend_from_slice(&seq.to_le_bytes());
            entries.extend_from_slice(&time.to_le_bytes());
            postings.push(posting(key(Kind::All, b""), newest_rank[ordinal]));
            postings.push(posting(chain_keys[chain as usize], seq_rank[ordinal]) | CHAIN_RUN);
        }
        for &(k, ordinal) in &self.keyed {
            postings.push(posting(k, newest_rank[ordinal as usize]));
        }
        postings.sort_unstable();
        // The same record twice under one key (a person named in two fields) is one posting.
        postings.dedup();
        summary.chains = by_name
            .into_iter()
            .map(|i| self.chains[i].clone())
            .collect();
        let mut out = INDEX_MAGIC.to_vec();
        let head = encode_summary(&summary);
        out.extend_from_slice(&(head.len() as u32).to_le_bytes());
        out.extend_from_slice(&head);
        let entries_at = out.len() as u64;
        out.extend_from_slice(&entries);
        let postings_at = out.len() as u64;
        out.reserve(postings.len() * POSTING + TRAILER);
        for &p in &postings {
            let (k, rank) = ((p >> 33) as u64, (p & 0xffff_ffff) as usize);
            let chain_run = p & CHAIN_RUN != 0;
            let ordinal = if chain_run {
                by_seq[rank]
            } else {
                newest_first[rank]
            };
            let (_, _, _, seq, time) = self.records[ordinal as usize];
            let order = if chain_run { seq } else { -time };
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&order.to_le_bytes());
            out.extend_from_slice(&ordinal.to_le_bytes());
        }
        out.extend_from_slice(&entries_at.to_le_bytes());
        out.extend_from_slice(&postings_at.to_le_bytes());
        out.extend_from_slice(&(self.records.len() as u32).to_le_bytes());
        out.extend_from_slice(&(postings.len() as u32).to_le_bytes());
        let check = xxh3_64(&out);
        out.extend_from_slice(&check.to_le_bytes());
        (out, summary)
    }
}

/// A sealed segment's index file, read a piece at a time.
pub struct Index {
    file: File,
    pub summary: Summary,
    entries_at: u64,
    postings_at: u64,
    entries: u32,
    postings: u32,
}

impl Index {
    /// Reads the summary and the trailer; the sections are read when queried.
    pub fn open(file: File) -> Result<Index, String> {
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let read = |at: u64, n: usize| -> Result<Vec<u8>, String> {
            let mut b = vec![0; n];
            file.read_exact_at(&mut b, at).map_err(|e| e.to_string())?;
            Ok(b)
        };
        if len < (INDEX_MAGIC.len() + 4 + TRAILER) as u64 {
            return Err("the index is cut short".into());
        }
        let head = read(0, 12)?;
        if head[..8] != INDEX_MAGIC {
            return Err("not a segment index".into());
        }
        let n = u32::from_le_bytes(head[8..12].try_into().expect("4")) as usize;
        if 12 + n as u64 + TRAILER as u64 > len {
            return Err("the index's summary runs past its end".into());
        }
        let summary = decode_summary(&read(12, n)?)?;
        let t = read(len - TRAILER as u64, TRAILER)?;
        let u64_at = |i: usize| u64::from_le_bytes(t[i..i + 8].try_into().expect("8"));
        let u32_at = |i: usize| u32::from_le_bytes(t[i..i + 4].try_into().expect("4"));
        let index = Index {
            entries_at: u64_at(0),
            postings_at: u64_at(8),
            entries: u32_at(16),
            postings: u32_at(20),
            summary,
            file,
        };
        let end = index.postings_at + index.postings as u64 * POSTING as u64;
        if index.entries_at + index.entries as u64 * ENTRY as u64 != index.postings_at
            || end + TRAILER as u64 != len
            || index.entries != index.summary.records
        {
            return Err("the index's sections do not add up to its length".into());
        }
        Ok(index)
    }

    pub fn entry(&self, ordinal: u32) -> Result<Entry, String> {
        if ordinal >= self.entries {
            return Err(format!(
                "record {ordinal} is past the index's {}",
                self.entries
            ));
        }
        let mut b = [0; ENTRY];
        self.file
            .read_exact_at(&mut b, self.entries_at + ordinal as u64 * ENTRY as u64)
            .map_err(|e| e.to_string())?;
        Ok(Entry {
            offset: u64::from_le_bytes(b[0..8].try_into().expect("8")),
            len: u32::from_le_bytes(b[8..12].try_into().expect("4")),
            chain: u32::from_le_bytes(b[12..16].try_into().expect("4")),
            seq: i64::from_le_bytes(b[16..24].try_into().expect("8")),
            time_ms: i64::from_le_bytes(b[24..32].try_into().expect("8")),
        })
    }

    /// Postings `from..from + n` (fewer at the end).
    pub fn postings(&self, from: u32, n: u32) -> Result<Vec<Posting>, String> {
        let n = n.min(self.postings.saturating_sub(from));
        let mut b = vec![0; n as usize * POSTING];
        self.file
            .read_exact_at(&mut b, self.postings_at + from as u64 * POSTING as u64)
            .map_err(|e| e.to_string())?;
        Ok(b.chunks_exact(POSTING)
            .map(|p| Posting {
                key: u64::from_le_bytes(p[0..8].try_into().expect("8")),
                order: i64::from_le_bytes(p[8..16].try_into().expect("8")),
                ordinal: u32::from_le_bytes(p[16..20].try_into().expect("4")),
            })
            .collect())
    }

    /// The first posting at or after (`key`, `order`) in sort order, by binary search.
    pub fn seek(&self, key: u64, order: i64) -> Result<u32, String> {
        let (mut lo, mut hi) = (0u32, self.postings);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let p = self.postings(mid, 1)?[0];
            if (p.key, p.order) < (key, order) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The postings as indexes were first written: (key, order value, chain, tie-break,
    /// ordinal) tuples, sorted. Indexes on disk have this order, and `audit verify`
    /// compares them byte for byte with the ones it rebuilds.
    fn tuple_sorted(b: &Builder) -> Vec<u8> {
        let mut by_name: Vec<usize> = (0..b.chains.len()).collect();
        by_name.sort_by(|x, y| b.chains[*x].instance.cmp(&b.chains[*y].instance));
        let mut place = vec![0u32; b.chains.len()];
        for (p, &i) in by_name.iter().enumerate() {
            place[i] = p as u32;
        }
        let mut postings: Vec<(u64, i64, u32, i64, u32)> = Vec::new();
        for (ordinal, &(_, _, chain, seq, time)) in b.records.iter().enumerate() {
            let (ordinal, at) = (ordinal as u32, place[chain as usize]);
            postings.push((key(Kind::All, b""), -time, at, -seq, ordinal));
            let chain_key = key(Kind::Chain, b.chains[chain as usize].instance.as_bytes());
            postings.push((chain_key, seq, 0, 0, ordinal));
        }
        for &(k, ordinal) in &b.keyed {
            let (_, _, chain, seq, time) = b.records[ordinal as usize];
            postings.push((k, -time, place[chain as usize], -seq, ordinal));
        }
        postings.sort_unstable();
        postings.dedup_by_key(|p| (p.0, p.4));
        let mut out = Vec::new();
        for (k, order, _, _, ordinal) in postings {
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&order.to_le_bytes());
            out.extend_from_slice(&ordinal.to_le_bytes());
        }
        out
    }

    #[test]
    fn postings_sort_as_the_tuples_indexes_were_first_written_with() {
        // Three chains interleaved, times out of order and tied, people named twice and
        // as the subject, empty values.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut b = Builder::default();
        let mut seqs = [0i64; 3];
        for i in 0..3000u64 {
            let chain = next(3) as usize;
            seqs[chain] += 1;
            let subject = format!("s{}", next(40));
            let officer = if next(4) == 0 {
                String::new()
            } else {
                format!("o{}", next(5))
            };
            let mentions = [format!("s{}", next(40)), format!("s{}", next(40))];
            let twice = [mentions[0].clone(), mentions[0].clone(), subject.clone()];
            let named: Vec<&[u8]> = if next(2) == 0 {
                &mentions[..]
            } else {
                &twice[..]
            }
            .iter()
            .map(|m| m.as_bytes())
            .collect();
            b.add(
                Placed {
                    offset: i * 100,
                    len: 100,
                    instance: ["b-node", "a-node", "c-node"][chain],
                    seq: seqs[chain],
                    hash: [chain as u8; 32],
                    time_ms: 1_700_000_000_000 + (i / 3) as i64 * 7 - next(20) as i64,
                },
                [
                    subject.as_bytes(),
                    b"consumer",
                    format!("d{}", next(9)).as_bytes(),
                    officer.as_bytes(),
                ],
                named.into_iter(),
            );
        }
        let expected = tuple_sorted(&b);
        let (bytes, summary) = b.clone().finish(300_000);
        assert_eq!(summary.records, 3000);
        let trailer = &bytes[bytes.len() - TRAILER..];
        let postings_at = u64::from_le_bytes(trailer[8..16].try_into().unwrap()) as usize;
        let count = u32::from_le_bytes(trailer[20..24].try_into().unwrap()) as usize;
        assert_eq!(count * POSTING, expected.len());
        assert_eq!(
            &bytes[postings_at..postings_at + expected.len()],
            &expected[..]
        );
    }
}
