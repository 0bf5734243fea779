//! The simulated national databases: population over SOAP/XML, business registration over
//! REST/JSON, land over gRPC, each with a control surface for faults and call counts.

pub mod data;
pub mod names;
