//! `lienthong evidence`: check a saved answer and its evidence offline, and make evidence
//! keys.

use super::{CliError, load};
use crate::audit::evidence::{Jwks, verify};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum EvidenceCommand {
    /// Check a saved answer against its evidence, offline: the signature, the key's
    /// validity when it was given, and the answer's digest. FILE is the bundle an answer
    /// asked with `X-Evidence: bundle` returns: {"answer": …, "evidence": "JWS", "key_id": …}.
    Verify {
        file: PathBuf,
        /// The gateway's JWKS (as `GET /v1/keys` publishes it); else the evidence keys of
        /// the configuration (`--config`, LIENTHONG_CONFIG, else the demo's).
        #[arg(long)]
        keys: Option<PathBuf>,
        #[arg(long, env = "LIENTHONG_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Make a new evidence key: its seed (to keep as a secret) and the lines to put first
    /// in `[[audit.evidence_keys]]`.
    NewKey {
        /// The new key's id, e.g. "e2".
        #[arg(long)]
        id: String,
    },
}

pub(crate) async fn evidence(command: EvidenceCommand) -> Result<(), CliError> {
    match command {
        EvidenceCommand::Verify { file, keys, config } => verify_file(&file, keys, config),
        EvidenceCommand::NewKey { id } => new_key(&id),
    }
}

fn read_json(path: &PathBuf) -> Result<serde_json::Value, CliError> {
    let text = std::fs::read(path).map_err(|source| CliError::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| CliError::Json {
        path: path.clone(),
        source,
    })
}

fn verify_file(
    file: &PathBuf,
    keys: Option<PathBuf>,
    config: Option<PathBuf>,
) -> Result<(), CliError> {
    let saved = read_json(file)?;
    let (Some(answer), Some(jws)) = (saved.get("answer"), saved["evidence"].as_str()) else {
        return Err(format!(
            "{}: not a saved answer: it needs \"answer\" (the answer as delivered) and \"evidence\" (the JWS)",
            file.display()
        )
        .into());
    };
    let jwks: Jwks = match &keys {
        Some(path) => serde_json::from_value(read_json(path)?)
            .map_err(|e| format!("{}: not a JWKS: {e}", path.display()))?,
        None => serde_json::from_value(load(config)?.model.audit.evidence.jwks())
            .map_err(|e| format!("the configuration's evidence keys: {e}"))?,
    };
    let claims = verify(jws, saved["key_id"].as_str(), &jwks, answer)
        .map_err(|e| format!("the evidence does not hold: {e}"))?;
    let named = crate::audit::evidence::key_id_of(jws).unwrap_or_default();
    out!("the evidence holds: key {named} signed it, and the answer is the one it was given for");
    for (name, value) in [
        ("action", claims.action.as_str()),
        ("answer sha256", &claims.answer_sha256),
        ("dataset", &claims.dataset),
        ("subject", &claims.subject),
        ("consumer", &claims.consumer),
        ("procedure", &claims.procedure),
        ("dossier", &claims.dossier),
        ("answered at", &claims.answered_at),
        ("fetched at", &claims.fetched_at),
        (
            "data time",
            claims.data_time.as_deref().unwrap_or("(not stated)"),
        ),
        ("cache", &claims.cache),
    ] {
        out!("  {name:<14} {value}");
    }
    out!(
        "  {:<14} {} #{}",
        "audit record",
        claims.audit_instance,
        claims.audit_seq
    );
    Ok(())
}

fn new_key(id: &str) -> Result<(), CliError> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
        .map_err(|_| "the system's random source failed")?;
    let key = crate::audit::evidence::EvidenceKey::from_seed(id, &seed)
        .ok_or("an ed25519 key could not be made")?;
    out!(
        r#"# Keep the seed secret (an environment variable, a secrets store); list the new key
# first, and keep the old one after it with its valid_until, so what it signed still
# verifies (public key only is enough).
[[audit.evidence_keys]]
id = "{id}"
seed_env = "LIENTHONG_EVIDENCE_SEED_{upper}"   # = {seed}
# public key: {public}"#,
        upper = id.to_uppercase().replace('-', "_"),
        seed = b64.encode(seed),
        public = b64.encode(&key.public),
    );
    Ok(())
}
