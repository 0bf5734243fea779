//! Upstream side: connectors that call providers over their protocols (SOAP/XML, REST/JSON,
//! gRPC) and map their payloads to canonical records through declared mappings.

pub mod auth;
pub mod connector;
pub mod credentials;
pub mod grpc;
pub mod guard;
pub mod mapping;
pub mod probe;
pub mod reflection;
pub mod rest;
pub mod soap;
pub mod spec;
pub mod template;
