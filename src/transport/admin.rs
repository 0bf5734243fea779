//! The admin listener: liveness and readiness for now; metrics, dashboard and the admin API
//! join it in later issues.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

pub fn router() -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        // Serving means config loaded and connectors built; the audit store and connector
        // health join the readiness check when they exist.
        .route(
            "/readyz",
            get(|| async { Json(json!({ "status": "ready" })) }),
        )
}
