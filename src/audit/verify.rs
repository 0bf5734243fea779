//! `lienthong audit verify`: recompute every chain and check every checkpoint signature.
//!
//! A chain links each record to the hash of the one before, so an altered, removed or
//! inserted record breaks a link or a hash. Someone able to rewrite the store could rebuild
//! the links after a change; the signed checkpoints catch that, since the hash they signed no
//! longer matches. Records after the last checkpoint have only the chain to protect them,
//! which is why the report says how many there are.

use super::anchor::Anchoring;
use super::record::{Checkpoint, GENESIS, checkpoint_signed_by};
use super::retention::verify_archive;
use super::store::{AuditStore, StoreError};
use std::collections::{BTreeMap, HashMap};

/// What was checked of one chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainReport {
    pub instance: String,
    /// Records checked (those still in the store).
    pub records: i64,
    /// Where the chain starts in the store (after what was archived) and ends.
    pub first_seq: i64,
    pub last_seq: i64,
    pub checkpoints: usize,
    /// The newest checkpoint's position, and how many records follow it.
    pub last_checkpoint: i64,
    pub after_last_checkpoint: i64,
    pub archived_through: i64,
    /// Archive files checked (signature, chain, link to the one before), and those not
    /// found where the store says they were written (moved to cold storage, or lost).
    pub archives_checked: usize,
    pub archives_missing: usize,
    /// The witnesses' receipts for the checkpoints, checked.
    pub anchoring: super::anchor::AnchorReport,
}

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("chain {instance}, record {seq}: {what}")]
pub struct Broken {
    pub instance: String,
    pub seq: i64,
    pub what: String,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Broken(#[from] Broken),
    /// An index does not match the records it was built from: queries and reports could
    /// miss records (the chain itself verified).
    #[error("{0}")]
    Index(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

const PAGE: usize = 10_000;

/// Checks every chain in the store. `keys` holds the public keys (by key id) checkpoints
/// may be signed with; `progress(instance, done, total)` is called as pages are checked.
pub async fn verify(
    store: &dyn AuditStore,
    keys: &HashMap<String, Vec<u8>>,
    progress: impl FnMut(&str, i64, i64),
) -> Result<Vec<ChainReport>, VerifyError> {
    verify_anchored(store, keys, &Anchoring::default(), progress).await
}

/// As [`verify`], and every checkpoint's receipts from the `anchoring` witnesses: a
/// receipt that does not match the chain, or one missing past the anchoring lag, is
/// tampering (see [`super::anchor::check_chain`]).
pub async fn verify_anchored(
    store: &dyn AuditStore,
    keys: &HashMap<String, Vec<u8>>,
    anchoring: &Anchoring,
    mut progress: impl FnMut(&str, i64, i64),
) -> Result<Vec<ChainReport>, VerifyError> {
    let mut reports = Vec::new();
    for instance in store.instances().await? {
        reports.push(verify_chain(store, &instance, keys, anchoring, &mut progress).await?);
    }
    if let Some(wrong) = store.indexes_differ().await?.into_iter().next() {
        return Err(VerifyError::Index(wrong));
    }
    Ok(reports)
}

async fn verify_chain(
    store: &dyn AuditStore,
    instance: &str,
    keys: &HashMap<String, Vec<u8>>,
    anchoring: &Anchoring,
    progress: &mut impl FnMut(&str, i64, i64),
) -> Result<ChainReport, VerifyError> {
    let broken = |seq: i64, what: String| Broken {
        instance: instance.to_owned(),
        seq,
        what,
    };
    let archives = store.archives(instance).await?;
    let (mut checked, mut missing) = (0, 0);
    for (i, a) in archives.iter().enumerate() {
        if !std::path::Path::new(&a.file).exists() {
            missing += 1;
            continue;
        }
        let previous = i.checked_sub(1).map(|p| &archives[p]);
        verify_archive(a, previous, keys).map_err(|what| broken(a.last_seq, what.to_string()))?;
        checked += 1;
    }
    let (archived_seq, archived_hash) = archives
        .last()
        .map(|a| (a.last_seq, a.last_hash))
        .unwrap_or((0, GENESIS));
    let checkpoints: BTreeMap<i64, Checkpoint> = store
        .checkpoints(instance)
        .await?
        .into_iter()
        .map(|c| (c.seq, c))
        .collect();
    for cp in checkpoints.values() {
        let key = keys.get(&cp.key_id).ok_or_else(|| {
            broken(
                cp.seq,
                format!(
                    "checkpoint signed with key {:?}, which is not configured",
                    cp.key_id
                ),
            )
        })?;
        if !checkpoint_signed_by(cp, key) {
            return Err(broken(cp.seq, "checkpoint signature does not verify".into()).into());
        }
    }
    let total = store.count(instance).await?;
    let mut report = ChainReport {
        instance: instance.to_owned(),
        first_seq: archived_seq + 1,
        last_seq: archived_seq,
        archived_through: archived_seq,
        archives_checked: checked,
        archives_missing: missing,
        ..ChainReport::default()
    };
    let (mut expected, mut prev) = (archived_seq + 1, archived_hash);
    loop {
        let page = store.scan(instance, expected - 1, PAGE).await?;
        let Some(last) = page.last() else { break };
        let next_after = last.seq;
        for r in &page {
            if r.seq != expected {
                return Err(broken(
                    expected,
                    format!(
                        "missing: the chain jumps from {} to {}",
                        expected - 1,
                        r.seq
                    ),
                )
                .into());
            }
            if r.prev_hash != prev {
                return Err(broken(
                    r.seq,
                    "does not link to the record before it (one was removed, inserted or altered)"
                        .into(),
                )
                .into());
            }
            if !r.hash_holds() {
                return Err(
                    broken(r.seq, "altered: its contents do not match its hash".into()).into(),
                );
            }
            if let Some(cp) = checkpoints.get(&r.seq)
                && cp.hash != r.hash
            {
                return Err(broken(
                    r.seq,
                    "differs from what the checkpoint signed (the chain was rewritten)".into(),
                )
                .into());
            }
            prev = r.hash;
            expected += 1;
            report.records += 1;
        }
        report.last_seq = next_after;
        progress(instance, report.records, total);
        if page.len() < PAGE {
            break;
        }
    }
    // A checkpoint beyond the last record means the tail was cut off.
    if let Some((&seq, _)) = checkpoints.range(report.last_seq + 1..).next() {
        return Err(broken(
            seq,
            format!(
                "signed by a checkpoint but absent: records after {} were removed",
                report.last_seq
            ),
        )
        .into());
    }
    report.checkpoints = checkpoints.len();
    report.last_checkpoint = checkpoints
        .keys()
        .next_back()
        .copied()
        .unwrap_or(archived_seq);
    report.after_last_checkpoint = report.last_seq - report.last_checkpoint;
    let receipts = if anchoring.witnesses.is_empty() {
        Vec::new()
    } else {
        store.receipts(instance).await?
    };
    report.anchoring =
        super::anchor::check_chain(anchoring, &checkpoints, &receipts, super::record::now_ms())
            .map_err(|(seq, what)| broken(seq, what))?;
    Ok(report)
}
