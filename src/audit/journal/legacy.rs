//! Commit files of the format before segments (one JSON line per group commit, next to the
//! SQLite file as `audit.db.commits.<n>`). A store written by an earlier version may hold
//! some, left by a crash; the first open moves their records into SQLite, once, and removes
//! them. Nothing writes this format any more.

use crate::audit::record::{AuditEntry, Chained, Checkpoint};
use crate::audit::sqlite::SqliteStore;
use crate::audit::store::{AuditStore, StoreError};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct Frame {
    records: Vec<FrameRecord>,
    #[serde(default)]
    checkpoint: Option<FrameCheckpoint>,
}

#[derive(Deserialize)]
struct FrameRecord {
    instance: String,
    seq: i64,
    prev_hash: String,
    hash: String,
    entry: AuditEntry,
}

#[derive(Deserialize)]
struct FrameCheckpoint {
    instance: String,
    seq: i64,
    hash: String,
    time_ms: i64,
    key_id: String,
    signature: String,
}

fn unhex32(s: &str) -> Result<[u8; 32], String> {
    hex::decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| format!("not a 32-byte hex hash: {s:?}"))
}

fn decode(line: &[u8]) -> Result<(Vec<Chained>, Option<Checkpoint>), String> {
    let frame: Frame = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let records = frame
        .records
        .into_iter()
        .map(|r| {
            Ok(Chained {
                instance: r.instance,
                seq: r.seq,
                prev_hash: unhex32(&r.prev_hash)?,
                hash: unhex32(&r.hash)?,
                entry: r.entry,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let checkpoint = frame
        .checkpoint
        .map(|c| {
            Ok::<_, String>(Checkpoint {
                instance: c.instance,
                seq: c.seq,
                hash: unhex32(&c.hash)?,
                time_ms: c.time_ms,
                key_id: c.key_id,
                signature: hex::decode(&c.signature).map_err(|e| e.to_string())?,
            })
        })
        .transpose()?;
    Ok((records, checkpoint))
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError(format!("cannot {what} {}: {e}", path.display()))
}

/// `audit.db.commits.<n>` files present, in order.
fn files(base: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let dir = match base.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let prefix = format!(
        "{}.commits.",
        base.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| io("list", &dir, e))? {
        let entry = entry.map_err(|e| io("list", &dir, e))?;
        let name = entry.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.parse::<u64>().ok())
        {
            files.push((n, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// Moves the records of commit files an earlier version left into SQLite (each once: a
/// crash could leave a record both moved and in its file), then removes the files.
pub(super) async fn recover(sqlite: &SqliteStore, base: &Path) -> Result<(), StoreError> {
    let files = files(base)?;
    if files.is_empty() {
        return Ok(());
    }
    let mut records = Vec::new();
    let mut checkpoints = Vec::new();
    for (i, (_, path)) in files.iter().enumerate() {
        let text = std::fs::read(path).map_err(|e| io("read", path, e))?;
        let last_file = i + 1 == files.len();
        let mut lines = text.split_inclusive(|b| *b == b'\n').peekable();
        while let Some(line) = lines.next() {
            let whole = line.ends_with(b"\n");
            match decode(line) {
                Ok((r, cp)) if whole => {
                    records.extend(r);
                    checkpoints.extend(cp);
                }
                // A torn end: that commit never finished, so it was never acknowledged.
                _ if last_file && lines.peek().is_none() => {
                    tracing::warn!(file = %path.display(), "dropping a torn last commit (never acknowledged)");
                }
                _ => {
                    return Err(StoreError(format!(
                        "the audit commit file {} is damaged: a line in its middle does not read; \
                         keep the file for inspection and move it away to start",
                        path.display()
                    )));
                }
            }
        }
    }
    let mut heads = std::collections::HashMap::new();
    let mut kept = Vec::with_capacity(records.len());
    for r in records {
        if !heads.contains_key(&r.instance) {
            let head = sqlite.head(&r.instance).await?.map_or(0, |h| h.0);
            heads.insert(r.instance.clone(), head);
        }
        if r.seq > heads[&r.instance] {
            kept.push(r);
        }
    }
    if !kept.is_empty() || !checkpoints.is_empty() {
        tracing::info!(
            records = kept.len(),
            "moving audit records committed before the last stop (earlier commit-file format) into the store"
        );
        sqlite.append_all(&kept, &checkpoints).await?;
    }
    for (_, path) in files {
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(io("remove", &path, e));
        }
    }
    Ok(())
}
