//! What the gateway and the simulators talk about: Vietnamese public-administration facts
//! (administrative units, identifier formats, dates), the datasets and their canonical
//! records, the call context, and the error-code table every transport answers with.

pub mod compact;
pub mod context;
pub mod dataset;
pub mod date;
pub mod error;
pub mod ids;
pub mod record;
pub mod signed_header;
pub mod units;
pub mod xml;
