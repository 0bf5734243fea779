//! Upstream side: connectors that call providers and map their payloads to canonical records.

pub mod auth;
