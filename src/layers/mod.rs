//! The steps of the request path, one concern per file: authentication and the record
//! cache (single-flight, negative entries, stale-if-error).

pub mod authenticate;
pub mod cache;
pub mod policy;
