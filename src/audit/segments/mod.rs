//! The segment store: where the embedded audit store keeps the records the gateway commits.
//! A group commit is one frame appended to the current log and one `fdatasync`, nothing
//! else: no B-tree, no index, no second copy. A log is sealed at [`SEAL_AT`] records or
//! [`SEAL_BYTES`]; a thread behind the calls then writes its index once ([`index`]): the
//! records' places and, per key (subject, person named, consumer, dossier, officer, chain),
//! a sorted run. The places and key hashes are noted as each commit is appended, so sealing
//! sorts them and reads nothing back. Queries binary-search each sealed segment's runs and
//! walk the few logs not yet sealed.
//!
//! Files, in `<audit.path>.segments/`: `<n>.log` and, once sealed, `<n>.idx` (written to a
//! temporary name, synced, then renamed, so an index is whole or absent). An index is what
//! its log alone builds: a log without one (a crash while sealing) is indexed again at open,
//! and `audit verify` builds each again to compare.
//! Another process (the `audit` commands beside a running gateway) reads the same files,
//! and sees each commit as soon as it is acknowledged.

pub mod format;
pub mod index;
mod query;

use crate::audit::record::{Chained, Checkpoint};
use crate::audit::store::StoreError;
use format::{Frames, LOG_MAGIC};
use index::{Builder, Index, Placed, Summary};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A log is sealed once it holds this many records…
pub const SEAL_AT: u32 = 16_384;
/// …or this many bytes.
pub const SEAL_BYTES: u64 = 16 << 20;
/// The nice value of the sealing thread when calls wait for commits: indexing yields to
/// them, and nothing waits for it.
const SEAL_NICE: i32 = 10;

/// Highest sequence number archived, per chain: records at or below it are gone from
/// every read, and a segment holding nothing else is removed.
pub type Archived = HashMap<String, i64>;

pub struct Segments {
    dir: PathBuf,
    fsync: bool,
    /// Records at which a log is sealed ([`SEAL_AT`]; tests seal sooner).
    seal_at: u32,
    /// Where this process appends; `None` when it only reads (another process owns them).
    appender: Option<tokio::sync::Mutex<Appender>>,
    /// Summaries of sealed segments read so far, by number.
    sealed: Mutex<BTreeMap<u64, Arc<Summary>>>,
    /// Logs to seal, for the sealing thread.
    to_seal: Option<std::sync::mpsc::Sender<ToSeal>>,
}

struct Appender {
    current: Option<Current>,
    next: u64,
}

struct Current {
    number: u64,
    file: Arc<File>,
    len: u64,
    /// The log's index, built as it is written (it counts the log's records).
    index: Builder,
}

/// A log to seal: its number and, when it was written whole, its index as built, with the
/// log's length; without them, the log is read back and indexed.
type ToSeal = (u64, Option<(Builder, u64)>);

/// A segment as a read finds it.
#[derive(Clone)]
pub(crate) enum Seg {
    Sealed(u64, Arc<Summary>),
    /// Not sealed yet (the current log, or one waiting for its index): walked whole.
    Open(u64),
}

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("cannot {what} {}: {e}", path.display()))
}

impl Segments {
    /// The segments of the store at `base` (`audit.db`): `audit.db.segments/`.
    pub fn dir_of(base: &Path) -> PathBuf {
        let mut name = base.as_os_str().to_owned();
        name.push(".segments");
        PathBuf::from(name)
    }

    pub(crate) fn log_path(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n:016}.log"))
    }

    pub(crate) fn index_path(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n:016}.idx"))
    }

    /// Opens the segments in `dir`. An `owner` (the process holding the store's lock) cuts
    /// the torn end a crash left off the newest log, indexes every log not yet indexed, and
    /// starts the sealing thread (at a lower priority when `behind_calls`).
    pub fn open(
        dir: &Path,
        fsync: bool,
        owner: bool,
        behind_calls: bool,
    ) -> Result<Segments, StoreError> {
        Segments::open_sealing_at(dir, fsync, owner, behind_calls, SEAL_AT)
    }

    /// As [`Segments::open`], sealing logs at `seal_at` records.
    pub fn open_sealing_at(
        dir: &Path,
        fsync: bool,
        owner: bool,
        behind_calls: bool,
        seal_at: u32,
    ) -> Result<Segments, StoreError> {
        if owner {
            std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        }
        let mut store = Segments {
            dir: dir.to_path_buf(),
            fsync,
            seal_at: seal_at.max(1),
            appender: None,
            sealed: Mutex::new(BTreeMap::new()),
            to_seal: None,
        };
        if !owner {
            return Ok(store);
        }
        let numbers = store.numbers()?;
        let newest = numbers.keys().next_back().copied();
        for (&n, &indexed) in &numbers {
            if !indexed {
                store.recover(n)?;
            }
        }
        store.appender = Some(tokio::sync::Mutex::new(Appender {
            current: None,
            next: newest.map_or(1, |n| n + 1),
        }));
        let (tx, rx) = std::sync::mpsc::channel::<ToSeal>();
        let sealer = Sealer {
            dir: dir.to_path_buf(),
            fsync,
        };
        std::thread::Builder::new()
            .name("lienthong-audit-seal".into())
            .spawn(move || {
                if behind_calls {
                    lower_this_thread();
                }
                while let Ok((n, built)) = rx.recv() {
                    if let Err(e) = sealer.seal(n, built) {
                        tracing::error!(segment = n, error = %e, "an audit segment could not be indexed; it is read whole until the next start indexes it");
                    }
                }
            })
            .map_err(|e| StoreError(format!("cannot start the audit sealing thread: {e}")))?;
        store.to_seal = Some(tx);
        Ok(store)
    }

    /// Logs present, by number, and whether each has its index.
    fn numbers(&self) -> Result<BTreeMap<u64, bool>, StoreError> {
        let mut out = BTreeMap::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io("list", &self.dir, e)),
        };
        let mut indexes = Vec::new();
        for entry in entries {
            let name = entry.map_err(|e| io("list", &self.dir, e))?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(n) = name.strip_suffix(".log").and_then(|n| n.parse().ok()) {
                out.entry(n).or_insert(false);
            } else if let Some(n) = name
                .strip_suffix(".idx")
                .and_then(|n| n.parse::<u64>().ok())
            {
                indexes.push(n);
            }
        }
        for n in indexes {
            if let Some(indexed) = out.get_mut(&n) {
                *indexed = true;
            }
        }
        Ok(out)
    }

    /// A log left without its index: it may end in a torn commit (a crash, or an append
    /// that failed), which is cut off, as it was never acknowledged; any other damage stops
    /// the open. Then it is indexed.
    fn recover(&self, n: u64) -> Result<(), StoreError> {
        let path = self.log_path(n);
        let bytes = std::fs::read(&path).map_err(|e| io("read", &path, e))?;
        let mut frames = Frames::new(&bytes);
        let mut damage = None;
        for frame in frames.by_ref() {
            if let Err(d) = frame {
                damage = Some(d);
            }
        }
        let end = frames.end() as usize;
        match damage {
            None => {}
            Some(d) if d.torn_end(&bytes) => {
                tracing::warn!(file = %path.display(), bytes = bytes.len() - end, "dropping a torn last commit (never acknowledged)");
                let file = File::options()
                    .write(true)
                    .open(&path)
                    .map_err(|e| io("open", &path, e))?;
                file.set_len(end.max(LOG_MAGIC.len()) as u64)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| io("cut the torn end of", &path, e))?;
            }
            Some(d) => {
                return Err(StoreError(format!(
                    "the audit segment {} is damaged: {d}; keep the file for inspection and move it away to start",
                    path.display()
                )));
            }
        }
        if end <= LOG_MAGIC.len() {
            // Nothing was ever committed to it.
            std::fs::remove_file(&path).map_err(|e| io("remove", &path, e))?;
            return Ok(());
        }
        Sealer {
            dir: self.dir.clone(),
            fsync: self.fsync,
        }
        .seal(n, None)
    }

    /// The segments as they are now, oldest first. Sealed summaries are read once.
    pub(crate) fn list(&self) -> Result<Vec<Seg>, StoreError> {
        let numbers = self.numbers()?;
        let mut sealed = self.sealed.lock().expect("segment summaries");
        sealed.retain(|n, _| numbers.get(n) == Some(&true));
        let mut out = Vec::with_capacity(numbers.len());
        for (n, indexed) in numbers {
            if !indexed {
                out.push(Seg::Open(n));
                continue;
            }
            if let Some(s) = sealed.get(&n) {
                out.push(Seg::Sealed(n, s.clone()));
                continue;
            }
            match self.index(n) {
                Ok(index) => {
                    let summary = Arc::new(index.summary);
                    sealed.insert(n, summary.clone());
                    out.push(Seg::Sealed(n, summary));
                }
                // Removed by archiving meanwhile.
                Err(_) if !self.log_path(n).exists() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub(crate) fn index(&self, n: u64) -> Result<Index, StoreError> {
        let path = self.index_path(n);
        let file = File::open(&path).map_err(|e| io("open", &path, e))?;
        Index::open(file).map_err(|e| io("read the index", &path, e))
    }

    /// Appends one group commit and syncs it: when this returns, the records are durable.
    pub async fn append(
        &self,
        records: &[Chained],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), StoreError> {
        let Some(appender) = &self.appender else {
            return Err(StoreError(
                "this process does not own the audit segments".into(),
            ));
        };
        let mut frame = Vec::with_capacity(64 + records.len() * 640);
        let places = format::encode_frame(&mut frame, records, checkpoint);
        let mut a = appender.lock().await;
        if a.current.is_none() {
            let number = a.next;
            let path = self.log_path(number);
            let (dir, fsync) = (self.dir.clone(), self.fsync);
            let file = tokio::task::spawn_blocking(move || {
                let mut file = File::options()
                    .create_new(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| io("create", &path, e))?;
                file.write_all(&LOG_MAGIC)
                    .map_err(|e| io("write", &path, e))?;
                if fsync {
                    // The new name must survive a power loss as well as its first commit.
                    File::open(&dir)
                        .and_then(|d| d.sync_all())
                        .map_err(|e| io("sync", &dir, e))?;
                }
                Ok::<_, StoreError>(file)
            })
            .await
            .map_err(|e| StoreError(format!("audit commit: {e}")))??;
            a.next += 1;
            a.current = Some(Current {
                number,
                file: Arc::new(file),
                len: LOG_MAGIC.len() as u64,
                index: Builder::default(),
            });
        }
        let current = a.current.as_mut().expect("a current log");
        let (file, len, fsync) = (current.file.clone(), current.len, self.fsync);
        let written = tokio::task::spawn_blocking(move || {
            let result = (&*file)
                .write_all(&frame)
                .and_then(|()| if fsync { file.sync_data() } else { Ok(()) });
            // Cut a half-written frame off, so the log stays whole frames.
            result
                .map(|()| frame.len() as u64)
                .inspect_err(|_| drop(file.set_len(len)))
        })
        .await
        .map_err(|e| StoreError(format!("audit commit: {e}")))?;
        match written {
            Ok(n) => {
                for (r, &(at, len)) in records.iter().zip(&places) {
                    let e = &r.entry;
                    current.index.add(
                        Placed {
                            offset: current.len + at as u64,
                            len,
                            instance: &r.instance,
                            seq: r.seq,
                            hash: r.hash,
                            time_ms: e.time_ms,
                        },
                        [&e.subject, &e.actor, &e.dossier_id, &e.officer_id].map(|v| v.as_bytes()),
                        e.disclosure
                            .iter()
                            .flat_map(|d| d.mentions.iter().map(|(_, m)| m.as_bytes())),
                    );
                }
                current.index.checkpoints.extend(checkpoint.cloned());
                current.len += n;
                if current.index.records() >= self.seal_at || current.len >= SEAL_BYTES {
                    let current = a.current.take().expect("a current log");
                    self.seal_later(current.number, Some((current.index, current.len)));
                }
                Ok(())
            }
            Err(e) => {
                // Whether the cut worked is unknown: the next commit starts a new log, and
                // this one is sealed as it stands (a torn end is left out of its index, and
                // the next start cuts it off).
                let number = current.number;
                a.current = None;
                self.seal_later(number, None);
                Err(io("append to", &self.log_path(number), e))
            }
        }
    }

    /// Seals the current log now and waits for its index (a graceful stop leaves every
    /// segment indexed); the next commit starts a new log.
    pub async fn seal_current(&self) -> Result<(), StoreError> {
        let Some(appender) = &self.appender else {
            return Ok(());
        };
        let mut a = appender.lock().await;
        let Some(current) = a.current.take() else {
            return Ok(());
        };
        let sealer = Sealer {
            dir: self.dir.clone(),
            fsync: self.fsync,
        };
        let built = Some((current.index, current.len));
        let sealed = tokio::task::spawn_blocking(move || sealer.seal(current.number, built))
            .await
            .map_err(|e| StoreError(format!("audit store: {e}")))?;
        drop(a);
        sealed
    }

    /// Whether the next log could be created: a file is made and removed in the segments'
    /// directory (a read-only or missing directory fails). A reader has nothing to check.
    pub fn probe(&self) -> Result<(), StoreError> {
        if self.appender.is_none() {
            return Ok(());
        }
        let path = self.dir.join("probe");
        File::create(&path)
            .and_then(|_| std::fs::remove_file(&path))
            .map_err(|e| io("write in", &self.dir, e))
    }

    fn seal_later(&self, n: u64, built: Option<(Builder, u64)>) {
        if let Some(tx) = &self.to_seal
            && tx.send((n, built)).is_err()
        {
            tracing::error!(
                segment = n,
                "the audit sealing thread is gone; the segment is read whole"
            );
        }
    }

    /// Sealed segments whose index is not the one their log builds: one line each, naming
    /// the file (removing it makes the next start build it again).
    pub fn indexes_differ(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for seg in self.list()? {
            let Seg::Sealed(n, _) = seg else { continue };
            let (log, idx) = (self.log_path(n), self.index_path(n));
            let bytes = std::fs::read(&log).map_err(|e| io("read", &log, e))?;
            let built = match index::build(&bytes) {
                Ok((built, _)) => built,
                Err(e) => {
                    out.push(format!(
                        "the audit segment {} cannot be read: {e}",
                        log.display()
                    ));
                    continue;
                }
            };
            let held = std::fs::read(&idx).map_err(|e| io("read", &idx, e))?;
            if held != built {
                out.push(format!(
                    "the index {} does not match its log: queries could miss records; remove it, and the next start builds it again",
                    idx.display()
                ));
            }
        }
        Ok(out)
    }

    /// Removes the sealed segments that hold nothing but archived records.
    pub fn remove_archived(&self, archived: &Archived) -> Result<usize, StoreError> {
        let mut removed = 0;
        for seg in self.list()? {
            let Seg::Sealed(n, summary) = seg else {
                continue;
            };
            let gone = summary
                .chains
                .iter()
                .all(|c| archived.get(&c.instance).is_some_and(|a| c.last_seq <= *a));
            if gone {
                for path in [self.index_path(n), self.log_path(n)] {
                    if let Err(e) = std::fs::remove_file(&path)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        return Err(io("remove", &path, e));
                    }
                }
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Builds and writes indexes.
struct Sealer {
    dir: PathBuf,
    fsync: bool,
}

impl Sealer {
    /// Writes the index of log `n`: the one `built` as it was written, or else one built
    /// from the log read back.
    fn seal(&self, n: u64, built: Option<(Builder, u64)>) -> Result<(), StoreError> {
        let index = match built {
            Some((builder, log_len)) => builder.finish(log_len).0,
            None => {
                let log = self.dir.join(format!("{n:016}.log"));
                let bytes = std::fs::read(&log).map_err(|e| io("read", &log, e))?;
                index::build(&bytes).map_err(|e| io("index", &log, e))?.0
            }
        };
        let path = self.dir.join(format!("{n:016}.idx"));
        let tmp = self.dir.join(format!("{n:016}.idx.tmp"));
        let mut file = File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
        file.write_all(&index).map_err(|e| io("write", &tmp, e))?;
        if self.fsync {
            file.sync_all().map_err(|e| io("sync", &tmp, e))?;
        }
        std::fs::rename(&tmp, &path).map_err(|e| io("rename", &tmp, e))?;
        if self.fsync {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("sync", &self.dir, e))?;
        }
        Ok(())
    }
}

/// Lowers the calling thread's CPU priority to [`SEAL_NICE`]. Best effort: where the
/// thread cannot be named or reniced, sealing runs at the calls' priority.
fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        let tid = std::fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|p| p.file_name()?.to_str()?.parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = tid
            && let Err(e) = rustix::process::setpriority_process(Some(pid), SEAL_NICE)
        {
            tracing::debug!(error = %e, "cannot lower the audit sealing thread's priority");
        }
    }
}

#[cfg(test)]
mod tests;
