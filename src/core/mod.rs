//! The core: one lookup service both transports call, the call context, datasets, records
//! and the error-code table.

pub mod context;
pub mod dataset;
pub mod error;
pub mod live;
pub mod record;
pub mod service;
