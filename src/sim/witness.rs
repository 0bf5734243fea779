//! The simulated witnesses a demo or a test anchors checkpoints with, on one listener:
//! - `POST /tsa`: an RFC 3161 time-stamping authority (`application/timestamp-query` in,
//!   `application/timestamp-reply` out), with its own certificate and ECDSA key;
//! - `POST /v1/countersign`: a countersigning witness that appends each chain head to its
//!   own log, refuses one contradicting what it logged (409), and signs what it accepts
//!   with its Ed25519 key;
//! - `GET /v1/log/{instance}`: the heads it logged for a chain, to compare with a chain's
//!   own checkpoints.

use crate::domain::tsp::Authority;
use crate::domain::witness::{Countersignature, Head, message};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// The witnesses' state and keys.
pub struct Witnesses {
    pub name: String,
    pub tsa: Authority,
    key: Ed25519KeyPair,
    logs: Mutex<HashMap<String, Vec<Head>>>,
}

impl Witnesses {
    /// New witnesses: a fresh time-stamping authority, and the countersigning key from
    /// `seed` (32 bytes).
    pub fn new(name: &str, seed: &[u8; 32]) -> Result<Witnesses, String> {
        let tsa = Authority::generate(&format!("{name} time-stamping authority"))?;
        Witnesses::with_authority(name, tsa, seed)
    }

    /// From a time-stamping authority already made (its certificate and key kept).
    pub fn with_authority(
        name: &str,
        tsa: Authority,
        seed: &[u8; 32],
    ) -> Result<Witnesses, String> {
        Ok(Witnesses {
            name: name.to_owned(),
            tsa,
            key: Ed25519KeyPair::from_seed_unchecked(seed).map_err(|e| e.to_string())?,
            logs: Mutex::default(),
        })
    }

    /// The authority's certificate as PEM, for `audit.witnesses[].certificate`.
    pub fn certificate_pem(&self) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.tsa.certificate);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    }

    /// The countersigning key's public half, base64, for `audit.witnesses[].public_key`.
    pub fn public_key(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.key.public_key().as_ref())
    }

    /// The heads logged for a chain.
    pub fn log(&self, instance: &str) -> Vec<Head> {
        self.logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(instance)
            .cloned()
            .unwrap_or_default()
    }
}

fn now_ms() -> i64 {
    crate::domain::date::now_ms()
}

/// UTC now as GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn generalized_now() -> String {
    let iso = crate::domain::date::iso_ms(now_ms());
    // 2026-12-01T03:15:00.000Z
    iso.chars()
        .filter(|c| c.is_ascii_digit())
        .take(14)
        .collect::<String>()
        + "Z"
}

async fn tsa(State(w): State<Arc<Witnesses>>, body: axum::body::Bytes) -> Response {
    match w.tsa.reply(&body, &generalized_now()) {
        Ok(reply) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/timestamp-reply",
            )],
            reply,
        )
            .into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

async fn countersign(State(w): State<Arc<Witnesses>>, Json(head): Json<Head>) -> Response {
    let mut logs = w.logs.lock().unwrap_or_else(|p| p.into_inner());
    let log = logs.entry(head.instance.clone()).or_default();
    if let Some(same) = log.iter().find(|h| h.seq == head.seq) {
        if same.hash != head.hash {
            return (
                StatusCode::CONFLICT,
                format!(
                    "position {} of chain {} was logged with another hash: the chain forked or was rewritten",
                    head.seq, head.instance
                ),
            )
                .into_response();
        }
    } else if log.last().is_some_and(|last| last.seq > head.seq) {
        return (
            StatusCode::CONFLICT,
            format!(
                "chain {} is logged up to {}: an earlier head is not appended",
                head.instance,
                log.last().map(|h| h.seq).unwrap_or_default()
            ),
        )
            .into_response();
    } else {
        log.push(head.clone());
    }
    let witnessed_ms = now_ms();
    let signature = w.key.sign(&message(&w.name, &head, witnessed_ms));
    use base64::Engine;
    Json(Countersignature {
        witness: w.name.clone(),
        head,
        witnessed_ms,
        signature: base64::engine::general_purpose::STANDARD.encode(signature.as_ref()),
    })
    .into_response()
}

async fn log_of(State(w): State<Arc<Witnesses>>, Path(instance): Path<String>) -> Json<Vec<Head>> {
    Json(w.log(&instance))
}

pub fn router(w: Arc<Witnesses>) -> Router {
    Router::new()
        .route("/tsa", post(tsa))
        .route("/v1/countersign", post(countersign))
        .route("/v1/log/{instance}", get(log_of))
        .with_state(w)
}

/// Serves `w` on `addr`.
pub async fn spawn(
    addr: SocketAddr,
    w: Arc<Witnesses>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    super::serve(addr, router(w)).await
}
