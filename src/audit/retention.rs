//! Retention: records older than the configured period leave the store for an archive file,
//! from the start of the chain, never with holes. Each file holds the records with their
//! hashes, names the file before it by its SHA-256 (so archives form a chain of their own),
//! and is signed with the checkpoint key. The store keeps a note of every archive, so the
//! first remaining record still verifies against the last archived one.

use super::query::to_json;
use super::record::{Checkpoint, Signer, checkpoint_signed_by, now_ms};
use super::store::{Archive, AuditStore, StoreError};
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// Most records one archive file holds; a long backlog makes several files.
const MAX_PER_FILE: usize = 100_000;

/// Why archiving stopped (the archives made before stay made).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("audit store: {0}")]
    Store(#[from] StoreError),
    #[error("archive header: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot {doing} {}: {source}", path.display())]
    Io {
        doing: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

fn io<'a>(doing: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ArchiveError + 'a {
    move |source| ArchiveError::Io {
        doing,
        path: path.to_owned(),
        source,
    }
}

/// Archives every record of `instance` older than `before_ms`; returns the archives made.
pub async fn archive_expired(
    store: &dyn AuditStore,
    instance: &str,
    before_ms: i64,
    dir: &Path,
    signer: &Signer,
) -> Result<Vec<Archive>, ArchiveError> {
    let mut made = Vec::new();
    loop {
        let records = store.expired(instance, before_ms, MAX_PER_FILE).await?;
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(made);
        };
        let prev_file = store
            .archives(instance)
            .await?
            .last()
            .map(|a| a.file_hash)
            .unwrap_or([0; 32]);
        let time_ms = now_ms();
        let mut body = serde_json::to_string(&json!({
            "lienthong_audit_archive": 1,
            "instance": instance,
            "first_seq": first.seq,
            "last_seq": last.seq,
            "previous_archive_sha256": hex::encode(prev_file),
            "time_ms": time_ms,
        }))?;
        body.push('\n');
        for r in &records {
            let mut line = to_json(r);
            line["time_ms"] = json!(r.entry.time_ms);
            line["prev_hash"] = json!(hex::encode(r.prev_hash));
            line["hash"] = json!(hex::encode(r.hash));
            body.push_str(&line.to_string());
            body.push('\n');
        }
        let body_hash: [u8; 32] = Sha256::digest(body.as_bytes()).into();
        let signature = signer.sign(instance, last.seq, &body_hash, time_ms);
        body.push_str(
            &json!({
                "signature": base64::engine::general_purpose::STANDARD.encode(&signature.signature),
                "key_id": signature.key_id,
            })
            .to_string(),
        );
        body.push('\n');
        let file_hash: [u8; 32] = Sha256::digest(body.as_bytes()).into();
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let name = format!("{instance}-{:012}-{:012}.jsonl", first.seq, last.seq);
        let path = dir.join(&name);
        write_durably(&path, body.as_bytes())?;
        let archive = Archive {
            instance: instance.to_owned(),
            first_seq: first.seq,
            last_seq: last.seq,
            last_hash: last.hash,
            file: path.display().to_string(),
            file_hash,
            time_ms,
        };
        // Only once the file is on disk do the records leave the store.
        store.archived(&archive).await?;
        tracing::info!(instance, first = first.seq, last = last.seq, file = %name, "audit records archived");
        made.push(archive);
    }
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), ArchiveError> {
    let tmp = path.with_extension("jsonl.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("rename to", path))
}

/// What is wrong with an archive file.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveFault {
    #[error("archive {file} cannot be read: {source}")]
    Unreadable {
        file: String,
        source: std::io::Error,
    },
    #[error("archive {0} was changed after it was written")]
    Changed(String),
    #[error("archive {0} is empty")]
    Empty(String),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("archive {0} does not follow the archive before it")]
    NotFollowing(String),
    #[error("{0}")]
    Base64(#[from] base64::DecodeError),
    #[error("archive {file} is signed with unknown key {key_id:?}")]
    UnknownKey { file: String, key_id: String },
    #[error("archive {0}: the signature does not verify")]
    Signature(String),
    #[error("archive {file}: record {seq} does not link")]
    Unlinked { file: String, seq: String },
    #[error("{0}")]
    Hex(#[from] hex::FromHexError),
    #[error("a hash is not 32 bytes")]
    HashLength,
    #[error("archive {0} does not end where the store says")]
    WrongEnd(String),
}

/// Checks one archive file: its hash as noted, its signature, its records' chain, and that
/// it follows `previous` (the archive before it, if any).
pub fn verify_archive(
    archive: &Archive,
    previous: Option<&Archive>,
    keys: &HashMap<String, Vec<u8>>,
) -> Result<(), ArchiveFault> {
    let file = || archive.file.clone();
    let bytes = std::fs::read(&archive.file).map_err(|source| ArchiveFault::Unreadable {
        file: file(),
        source,
    })?;
    let file_hash: [u8; 32] = Sha256::digest(&bytes).into();
    if file_hash != archive.file_hash {
        return Err(ArchiveFault::Changed(file()));
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let (Some(header), Some(trailer)) = (lines.first(), lines.last()) else {
        return Err(ArchiveFault::Empty(file()));
    };
    let header: Value = serde_json::from_str(header)?;
    let trailer: Value = serde_json::from_str(trailer)?;
    let expected_prev = previous
        .map(|p| hex::encode(p.file_hash))
        .unwrap_or_else(|| hex::encode([0u8; 32]));
    if header["previous_archive_sha256"] != json!(expected_prev) {
        return Err(ArchiveFault::NotFollowing(file()));
    }
    let body_len = text.len() - lines.last().map(|l| l.len() + 1).unwrap_or(0);
    let body_hash: [u8; 32] = Sha256::digest(&bytes[..body_len]).into();
    let key_id = trailer["key_id"].as_str().unwrap_or_default();
    let signature = base64::engine::general_purpose::STANDARD
        .decode(trailer["signature"].as_str().unwrap_or_default())?;
    let cp = Checkpoint {
        instance: archive.instance.clone(),
        seq: archive.last_seq,
        hash: body_hash,
        time_ms: header["time_ms"].as_i64().unwrap_or_default(),
        key_id: key_id.to_owned(),
        signature,
    };
    let key = keys.get(key_id).ok_or_else(|| ArchiveFault::UnknownKey {
        file: file(),
        key_id: key_id.to_owned(),
    })?;
    if !checkpoint_signed_by(&cp, key) {
        return Err(ArchiveFault::Signature(file()));
    }
    let mut prev = previous.map(|p| p.last_hash).unwrap_or([0; 32]);
    for line in &lines[1..lines.len() - 1] {
        let r: Value = serde_json::from_str(line)?;
        if r["prev_hash"] != json!(hex::encode(prev)) {
            return Err(ArchiveFault::Unlinked {
                file: file(),
                seq: r["seq"].to_string(),
            });
        }
        let hash = hex::decode(r["hash"].as_str().unwrap_or_default())?;
        prev = hash.try_into().map_err(|_| ArchiveFault::HashLength)?;
    }
    if prev != archive.last_hash {
        return Err(ArchiveFault::WrongEnd(file()));
    }
    Ok(())
}
