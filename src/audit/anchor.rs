//! Off-host anchoring: each signed checkpoint is also sent to witnesses outside the
//! gateway's host, whose signed receipts are kept beside it. An RFC 3161 time-stamping
//! authority stamps the checkpoint's digest; a countersigning witness appends the chain's
//! head to its own log and signs it. `audit verify` checks the receipts offline against
//! the witnesses' certificates and keys, which are configured apart from the host's keys:
//! so someone with root on the host who rewrites the chain and re-signs it with the key
//! beside it is caught, the receipts no longer matching (or missing).
//!
//! Anchoring runs beside the chain and never holds it up: the writer hands each
//! checkpoint over as it commits it, and a checkpoint a witness did not answer for is
//! tried again every few seconds until it does. How far behind each witness is, is a
//! metric.

use super::record::{Checkpoint, Receipt, checkpoint_message, now_ms};
use super::store::AuditStore;
use crate::domain::{tsp, witness};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a witness signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessKind {
    /// An RFC 3161 time-stamping authority; its certificate (DER).
    Rfc3161 { certificate: Vec<u8> },
    /// A countersigning witness; its Ed25519 public key.
    Countersign { public_key: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    pub name: String,
    pub url: String,
    pub kind: WitnessKind,
}

/// The witnesses, and how long a checkpoint may wait for its receipts before `audit
/// verify` calls the lack of one tampering.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Anchoring {
    pub witnesses: Vec<Witness>,
    pub lag: Duration,
}

/// What the digest a time-stamping authority stamps is: SHA-256 of what the checkpoint
/// signs.
pub fn checkpoint_digest(cp: &Checkpoint) -> [u8; 32] {
    let mut h = [0; 32];
    h.copy_from_slice(
        ring::digest::digest(
            &ring::digest::SHA256,
            &checkpoint_message(&cp.instance, cp.seq, &cp.hash, cp.time_ms),
        )
        .as_ref(),
    );
    h
}

fn head(cp: &Checkpoint) -> witness::Head {
    witness::Head {
        instance: cp.instance.clone(),
        seq: cp.seq,
        hash: hex::encode(cp.hash),
        time_ms: cp.time_ms,
    }
}

/// Checks a receipt against its witness and the checkpoint; the witness's time.
pub fn check_receipt(w: &Witness, cp: &Checkpoint, body: &[u8]) -> Result<String, String> {
    match &w.kind {
        WitnessKind::Rfc3161 { certificate } => {
            tsp::check_token(body, certificate, &checkpoint_digest(cp)).map(|s| s.gen_time)
        }
        WitnessKind::Countersign { public_key } => witness::check(body, public_key, &head(cp))
            .map(|c| crate::domain::date::iso_ms(c.witnessed_ms)),
    }
}

/// Asks a witness for its receipt of a checkpoint.
pub async fn request_receipt(
    http: &reqwest::Client,
    w: &Witness,
    cp: &Checkpoint,
) -> Result<Vec<u8>, String> {
    let request = match &w.kind {
        WitnessKind::Rfc3161 { .. } => {
            let nonce =
                u64::from_be_bytes(checkpoint_digest(cp)[..8].try_into().unwrap_or_default());
            http.post(&w.url)
                .header("content-type", "application/timestamp-query")
                .body(tsp::request(&checkpoint_digest(cp), nonce >> 1))
        }
        WitnessKind::Countersign { .. } => http.post(&w.url).json(&head(cp)),
    };
    let response = request
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("{}: {e}", w.url))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("{}: {e}", w.url))?;
    if !status.is_success() {
        return Err(format!(
            "{} answered {status}: {}",
            w.url,
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    let receipt = match &w.kind {
        WitnessKind::Rfc3161 { .. } => tsp::token_of_reply(&body)?,
        WitnessKind::Countersign { .. } => body.to_vec(),
    };
    // Kept only if it holds: a witness answering wrongly is as down as one not answering.
    check_receipt(w, cp, &receipt)
        .map_err(|e| format!("{}: the receipt does not hold: {e}", w.name))?;
    Ok(receipt)
}

/// How far behind each witness is, for the metrics.
#[derive(Debug, Default)]
pub struct AnchorStats {
    /// Per witness: the time of the oldest checkpoint it has not answered for (0: none).
    pub oldest_pending_ms: Mutex<BTreeMap<String, i64>>,
    pub failures: Mutex<BTreeMap<String, u64>>,
    pub receipts: std::sync::atomic::AtomicU64,
}

impl AnchorStats {
    /// (witness, seconds behind) now.
    pub fn lag_seconds(&self, now_ms: i64) -> Vec<(String, f64)> {
        self.oldest_pending_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(w, oldest)| {
                let lag = if *oldest == 0 {
                    0
                } else {
                    (now_ms - oldest).max(0)
                };
                (w.clone(), lag as f64 / 1000.0)
            })
            .collect()
    }
}

/// How often checkpoints still waiting are tried again.
pub const RETRY_EVERY: Duration = Duration::from_secs(2);

/// Sends each checkpoint of `instance` to every witness until each has answered: those
/// the store holds without receipts (from before a restart, or while a witness was down)
/// and those the writer hands over from now on, until `stop`.
pub async fn run(
    store: Arc<dyn AuditStore>,
    instance: String,
    anchoring: Anchoring,
    mut fresh: tokio::sync::mpsc::UnboundedReceiver<Checkpoint>,
    stats: Arc<AnchorStats>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if anchoring.witnesses.is_empty() {
        return;
    }
    let http = reqwest::Client::new();
    // (seq → checkpoint) still owed a receipt by at least one witness, and by whom.
    let mut pending: BTreeMap<i64, (Checkpoint, BTreeSet<String>)> = BTreeMap::new();
    let names: BTreeSet<String> = anchoring.witnesses.iter().map(|w| w.name.clone()).collect();
    let mut loaded = false;
    let mut ticker = tokio::time::interval(RETRY_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            cp = fresh.recv() => match cp {
                Some(cp) => { pending.insert(cp.seq, (cp, names.clone())); }
                None => return,
            },
            _ = stop.wait_for(|s| *s) => return,
        }
        while let Ok(cp) = fresh.try_recv() {
            pending.insert(cp.seq, (cp, names.clone()));
        }
        if !loaded {
            match backlog(store.as_ref(), &instance, &names).await {
                Ok(owed) => {
                    for (cp, who) in owed {
                        pending.entry(cp.seq).or_insert((cp, who));
                    }
                    loaded = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "anchoring: the checkpoints cannot be read yet")
                }
            }
        }
        for w in &anchoring.witnesses {
            // Oldest first; a witness that fails is left alone until the next round.
            let owed: Vec<i64> = pending
                .iter()
                .filter(|(_, (_, who))| who.contains(&w.name))
                .map(|(seq, _)| *seq)
                .collect();
            for seq in owed {
                let Some((cp, _)) = pending.get(&seq) else {
                    continue;
                };
                match request_receipt(&http, w, cp).await {
                    Ok(body) => {
                        let receipt = Receipt {
                            instance: instance.clone(),
                            seq,
                            witness: w.name.clone(),
                            time_ms: now_ms(),
                            body,
                        };
                        if let Err(e) = store.add_receipt(&receipt).await {
                            tracing::warn!(error = %e, witness = %w.name, seq, "anchoring: a receipt could not be kept; it is asked again");
                            break;
                        }
                        stats
                            .receipts
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if let Some((_, who)) = pending.get_mut(&seq) {
                            who.remove(&w.name);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, witness = %w.name, seq, "anchoring: no receipt yet; tried again shortly");
                        *stats
                            .failures
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(w.name.clone())
                            .or_default() += 1;
                        break;
                    }
                }
            }
        }
        pending.retain(|_, (_, who)| !who.is_empty());
        let mut oldest = stats
            .oldest_pending_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for w in &anchoring.witnesses {
            let first = pending
                .values()
                .filter(|(_, who)| who.contains(&w.name))
                .map(|(cp, _)| cp.time_ms)
                .min()
                .unwrap_or(0);
            oldest.insert(w.name.clone(), first);
        }
    }
}

/// The checkpoints of `instance` some witness has no receipt for, with those witnesses.
async fn backlog(
    store: &dyn AuditStore,
    instance: &str,
    names: &BTreeSet<String>,
) -> Result<Vec<(Checkpoint, BTreeSet<String>)>, super::store::StoreError> {
    let mut have: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for r in store.receipts(instance).await? {
        have.entry(r.seq).or_default().insert(r.witness);
    }
    Ok(store
        .checkpoints(instance)
        .await?
        .into_iter()
        .filter_map(|cp| {
            let held = have.get(&cp.seq);
            let owed: BTreeSet<String> = names
                .iter()
                .filter(|n| held.is_none_or(|h| !h.contains(*n)))
                .cloned()
                .collect();
            (!owed.is_empty()).then_some((cp, owed))
        })
        .collect())
}

/// What `audit verify` found of one chain's anchoring.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnchorReport {
    /// Checkpoints every witness answered for, checked.
    pub anchored: usize,
    /// Checkpoints still within the anchoring lag without every receipt.
    pub waiting: usize,
    /// The newest checkpoint every witness answered for, and the witnesses' times for it.
    pub anchored_through: Option<(i64, Vec<(String, String)>)>,
}

/// Checks a chain's receipts: each checkpoint older than the lag has a receipt from every
/// witness that holds for it; no checkpoint lacks one while a later one has it (receipts
/// removed); no receipt stands for a checkpoint that is gone. The first failure says what.
pub fn check_chain(
    anchoring: &Anchoring,
    checkpoints: &BTreeMap<i64, Checkpoint>,
    receipts: &[Receipt],
    now_ms: i64,
) -> Result<AnchorReport, (i64, String)> {
    let mut report = AnchorReport::default();
    if anchoring.witnesses.is_empty() {
        return Ok(report);
    }
    let mut by: BTreeMap<(i64, &str), &Receipt> = BTreeMap::new();
    for r in receipts {
        if !checkpoints.contains_key(&r.seq) {
            return Err((
                r.seq,
                format!(
                    "witness {} holds a receipt for a checkpoint that is gone (the chain was rewritten)",
                    r.witness
                ),
            ));
        }
        by.insert((r.seq, r.witness.as_str()), r);
    }
    let lag_ms = anchoring.lag.as_millis() as i64;
    // Each checkpoint's witness times, as its receipts are checked (each once).
    let mut times: BTreeMap<i64, Vec<(String, String)>> = BTreeMap::new();
    for w in &anchoring.witnesses {
        let newest_answered = by
            .keys()
            .filter(|(_, name)| *name == w.name)
            .map(|(seq, _)| *seq)
            .max();
        for cp in checkpoints.values() {
            match by.get(&(cp.seq, w.name.as_str())) {
                Some(r) => {
                    let at = check_receipt(w, cp, &r.body).map_err(|e| {
                        (
                            cp.seq,
                            format!(
                                "the receipt of witness {} does not match the local chain: {e}",
                                w.name
                            ),
                        )
                    })?;
                    times.entry(cp.seq).or_default().push((w.name.clone(), at));
                }
                None if newest_answered.is_some_and(|n| n > cp.seq) => {
                    return Err((
                        cp.seq,
                        format!(
                            "the checkpoint has no receipt from witness {} though later ones have: its receipt was removed",
                            w.name
                        ),
                    ));
                }
                None if now_ms - cp.time_ms > lag_ms => {
                    return Err((
                        cp.seq,
                        format!(
                            "the checkpoint has no receipt from witness {} and is older than the anchoring lag ({} s): its receipt was removed, or the witness was never reached",
                            w.name,
                            anchoring.lag.as_secs()
                        ),
                    ));
                }
                None => {}
            }
        }
    }
    for seq in checkpoints.keys() {
        match times.remove(seq) {
            Some(t) if t.len() == anchoring.witnesses.len() => {
                report.anchored += 1;
                report.anchored_through = Some((*seq, t));
            }
            _ => report.waiting += 1,
        }
    }
    Ok(report)
}
