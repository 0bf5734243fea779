//! The layers of the request path that sit between the core's checks and the connector, one
//! concern per file.

pub mod cache;
pub mod rate_limit;
pub mod shared;
