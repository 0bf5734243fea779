//! Backups of the embedded store, taken while it serves, and their restore.
//!
//! A backup is a directory:
//! - `segments/`: the audit segment logs and their indexes;
//! - `db/`: the SQLite databases (audit, registry, dossier register), each copied with
//!   `VACUUM INTO` (a consistent snapshot while writers go on);
//! - `archive/`: the audit archives;
//! - `MANIFEST.json`: every file's size and SHA-256, and the chain heads acknowledged when
//!   the backup started. It is written last, so a directory without it is no backup.
//!
//! The order makes it consistent:
//! 1. The heads are read first. Every record acknowledged by then is in a log, synced, so
//!    it is copied.
//! 2. Then the logs. Only the newest is still written; it is copied up to its length when
//!    listed, and a commit torn at that edge is cut off when the restored store opens, as
//!    after a crash.
//! 3. Then the databases. An archive noted there had its records removed from the logs
//!    only after it was noted, so the logs copied before hold them or the archive does.
//! 4. Then the archive files, which exist before they are noted.
//!
//! Keys are not in the store, nor in a backup.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Where the store's parts live (from the configuration).
#[derive(Debug, Clone)]
pub struct Layout {
    /// SQLite databases: (name in the backup, path). The first is the audit store's.
    pub databases: Vec<(String, PathBuf)>,
    /// The audit segment logs' directory.
    pub segments: PathBuf,
    /// The audit archives' directory.
    pub archives: PathBuf,
    /// The lock a serving gateway holds on the audit store.
    pub lock: PathBuf,
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub taken_at: String,
    /// The last acknowledged record of each chain when the backup started: every record
    /// up to it is in the backup.
    pub heads: BTreeMap<String, i64>,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the backup directory, with `/`.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} is not empty: a backup goes into a new (or empty) directory")]
    NotEmpty(PathBuf),
    #[error("{0} holds no MANIFEST.json: it is not a complete backup")]
    NoManifest(PathBuf),
    #[error("{path}: {why}: the backup is damaged; nothing was restored")]
    Damaged { path: String, why: String },
    #[error(
        "a gateway is serving with the store at {0}: stop it first (a restore never overwrites a live store)"
    )]
    Live(PathBuf),
    #[error("{0} already holds data: restore with --replace to move it aside first")]
    Occupied(PathBuf),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("copying {}: {why}", path.display())]
    Database { path: PathBuf, why: String },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_owned();
    move |source| BackupError::Io { what, path, source }
}

const MANIFEST: &str = "MANIFEST.json";

/// Whether a gateway holds the store's lock now.
pub fn is_live(layout: &Layout) -> bool {
    match std::fs::File::open(&layout.lock) {
        Ok(f) => match f.try_lock() {
            Ok(()) => false,
            Err(std::fs::TryLockError::WouldBlock) => true,
            Err(_) => false,
        },
        Err(_) => false,
    }
}

fn empty_or_absent(dir: &Path) -> Result<bool, BackupError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io("read", dir)(e)),
    }
}

/// Copies `from` (its first `len` bytes, or all) to `to`, synced; returns (bytes, sha256).
fn copy(from: &Path, to: &Path, len: Option<u64>) -> Result<(u64, String), BackupError> {
    let mut dst = std::fs::File::create(to).map_err(io("create", to))?;
    let read = pass(from, Some((&mut dst, to)), len)?;
    dst.sync_all().map_err(io("sync", to))?;
    Ok(read)
}

fn hash_file(path: &Path) -> Result<(u64, String), BackupError> {
    pass(path, None, None)
}

/// Reads `from` (its first `len` bytes, or all), writing it to `to` when given: (bytes,
/// sha256).
fn pass(
    from: &Path,
    mut to: Option<(&mut std::fs::File, &Path)>,
    len: Option<u64>,
) -> Result<(u64, String), BackupError> {
    let mut src = std::fs::File::open(from).map_err(io("open", from))?;
    let mut left = len.unwrap_or(u64::MAX);
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = src.read(&mut buf[..want]).map_err(io("read", from))?;
        if n == 0 {
            break;
        }
        if let Some((dst, path)) = to.as_mut() {
            dst.write_all(&buf[..n]).map_err(io("write", path))?;
        }
        digest.update(&buf[..n]);
        total += n as u64;
        left -= n as u64;
    }
    Ok((total, hex::encode(digest.finish().as_ref())))
}

/// Regular files of `dir` (none when it is absent), by name.
fn files_of(dir: &Path) -> Result<Vec<(String, PathBuf)>, BackupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read", dir)(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io("read", dir))?;
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            files.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            ));
        }
    }
    files.sort();
    Ok(files)
}

/// Takes a backup of the store laid out as `layout` into `to`, which must be new or
/// empty. `heads` are the chains' acknowledged heads, read before this is called.
pub async fn take(
    layout: &Layout,
    to: &Path,
    heads: BTreeMap<String, i64>,
) -> Result<Manifest, BackupError> {
    if !empty_or_absent(to)? {
        return Err(BackupError::NotEmpty(to.to_owned()));
    }
    for sub in ["segments", "db", "archive"] {
        let dir = to.join(sub);
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    }
    let mut files = Vec::new();
    // 2. The logs, each at its length now, and the indexes (whole or absent).
    let (layout_c, to_c) = (layout.clone(), to.to_owned());
    let segments = tokio::task::spawn_blocking(move || -> Result<Vec<FileEntry>, BackupError> {
        let mut out = Vec::new();
        let listed: Vec<(String, PathBuf, u64)> = files_of(&layout_c.segments)?
            .into_iter()
            .filter(|(name, _)| name.ends_with(".log") || name.ends_with(".idx"))
            .map(|(name, path)| {
                let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                (name, path, len)
            })
            .collect();
        for (name, path, len) in listed {
            let (bytes, sha256) = copy(&path, &to_c.join("segments").join(&name), Some(len))?;
            out.push(FileEntry {
                path: format!("segments/{name}"),
                bytes,
                sha256,
            });
        }
        Ok(out)
    })
    .await
    .map_err(|e| BackupError::Database {
        path: layout.segments.clone(),
        why: e.to_string(),
    })??;
    files.extend(segments);
    // 3. The databases, each a consistent snapshot.
    for (name, path) in &layout.databases {
        if !path.exists() {
            continue;
        }
        let target = to.join("db").join(name);
        vacuum_into(path, &target).await?;
        let (bytes, sha256) = hash_file(&target)?;
        files.push(FileEntry {
            path: format!("db/{name}"),
            bytes,
            sha256,
        });
    }
    // 4. The archive files.
    for (name, path) in files_of(&layout.archives)? {
        let (bytes, sha256) = copy(&path, &to.join("archive").join(&name), None)?;
        files.push(FileEntry {
            path: format!("archive/{name}"),
            bytes,
            sha256,
        });
    }
    let manifest = Manifest {
        format: 1,
        taken_at: crate::domain::date::iso_ms(crate::domain::date::now_ms()),
        heads,
        files,
    };
    let path = to.join(MANIFEST);
    let text = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    let mut f = std::fs::File::create(&path).map_err(io("create", &path))?;
    f.write_all(&text)
        .and_then(|()| f.sync_all())
        .map_err(io("write", &path))?;
    if let Ok(dir) = std::fs::File::open(to) {
        let _ = dir.sync_all();
    }
    Ok(manifest)
}

/// `VACUUM INTO`: a consistent copy of a live SQLite database, through a connection of
/// its own (writers in the gateway go on; WAL readers do not block them).
async fn vacuum_into(from: &Path, to: &Path) -> Result<(), BackupError> {
    use sqlx::ConnectOptions;
    let failed = |e: sqlx::Error| BackupError::Database {
        path: from.to_owned(),
        why: e.to_string(),
    };
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(from)
        .read_only(true)
        .busy_timeout(std::time::Duration::from_secs(30))
        .connect()
        .await
        .map_err(failed)?;
    sqlx::query("VACUUM INTO ?")
        .bind(to.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await
        .map_err(failed)?;
    Ok(())
}

/// Reads a backup's manifest and checks every file against it.
pub fn check(from: &Path) -> Result<Manifest, BackupError> {
    let path = from.join(MANIFEST);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::NoManifest(from.to_owned()));
        }
        Err(e) => return Err(io("read", &path)(e)),
    };
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| BackupError::Damaged {
        path: MANIFEST.into(),
        why: format!("not a manifest: {e}"),
    })?;
    for f in &manifest.files {
        if f.path.contains("..") || f.path.starts_with('/') {
            return Err(BackupError::Damaged {
                path: f.path.clone(),
                why: "a path outside the backup".into(),
            });
        }
        let (bytes, sha256) = hash_file(&from.join(&f.path)).map_err(|e| BackupError::Damaged {
            path: f.path.clone(),
            why: e.to_string(),
        })?;
        if (bytes, &sha256) != (f.bytes, &f.sha256) {
            return Err(BackupError::Damaged {
                path: f.path.clone(),
                why: format!(
                    "{bytes} bytes with SHA-256 {sha256}, the manifest says {} bytes with {}",
                    f.bytes, f.sha256
                ),
            });
        }
    }
    Ok(manifest)
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    pub manifest: Manifest,
    /// Where data found in the way was moved (with `replace`).
    pub moved_aside: Vec<PathBuf>,
}

/// Puts the backup in `from` in the places `layout` names. Refuses while a gateway serves
/// from them; data already there is refused, or with `replace` moved aside (renamed with a
/// `.replaced-<ms>` suffix), never deleted.
pub fn restore(layout: &Layout, from: &Path, replace: bool) -> Result<Restored, BackupError> {
    let manifest = check(from)?;
    if let Some(dir) = layout.lock.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    // Held until the restore ends: no gateway starts on a half-restored store.
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&layout.lock)
        .map_err(io("open", &layout.lock))?;
    if lock.try_lock().is_err() {
        return Err(BackupError::Live(layout.databases[0].1.clone()));
    }
    let mut in_the_way = Vec::new();
    for (_, db) in &layout.databases {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = db.as_os_str().to_owned();
            p.push(suffix);
            let p = PathBuf::from(p);
            if p.exists() {
                in_the_way.push(p);
            }
        }
    }
    for dir in [&layout.segments, &layout.archives] {
        if !empty_or_absent(dir)? {
            in_the_way.push(dir.clone());
        }
    }
    if let Some(first) = in_the_way.first()
        && !replace
    {
        return Err(BackupError::Occupied(first.clone()));
    }
    let stamp = crate::domain::date::now_ms();
    let mut moved_aside = Vec::new();
    for p in in_the_way {
        let mut aside = p.as_os_str().to_owned();
        aside.push(format!(".replaced-{stamp}"));
        let aside = PathBuf::from(aside);
        std::fs::rename(&p, &aside).map_err(io("move aside", &p))?;
        moved_aside.push(aside);
    }
    for dir in [&layout.segments, &layout.archives] {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    for f in &manifest.files {
        let (part, name) = f.path.split_once('/').unwrap_or(("", &f.path));
        let target = match part {
            "segments" => layout.segments.join(name),
            "archive" => layout.archives.join(name),
            "db" => match layout.databases.iter().find(|(n, _)| n == name) {
                Some((_, path)) => {
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
                    }
                    path.clone()
                }
                None => continue,
            },
            _ => continue,
        };
        copy(&from.join(&f.path), &target, None)?;
    }
    drop(lock);
    Ok(Restored {
        manifest,
        moved_aside,
    })
}

#[cfg(test)]
mod tests;
