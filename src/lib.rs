//! lienthong — a data-sharing integration gateway between Vietnam's one-stop systems (the
//! consumers) and the national databases (the providers).
//!
//! A one-stop system looks up a citizen, an enterprise or a land parcel over gRPC or REST,
//! bound to a procedure and a dossier; the gateway authenticates it, validates the key and the
//! context, checks its grant, calls the provider through a connector and returns only the
//! fields the grant allows.
//!
//! # Layout
//! - [`admin`] the admin operations (datasets, connectors, grants, registry history and
//!   rollback, purges, audit queries) with their roles, shared by REST and gRPC.
//! - [`app`] wires config → core → transports; graceful shutdown.
//! - [`audit`] the tamper-evident audit trail: records, chain, group-commit writer, stores
//!   (SQLite, PostgreSQL), verification.
//! - [`config`] typed config: TOML files → `LIENTHONG_*` env overrides → validation.
//! - [`core`] the call context, datasets, canonical records, the error-code table, and the
//!   lookup service whose one function holds the order of the request path.
//! - [`registry`] every version of the datasets, connectors, consumers and grants the
//!   gateway ran (SQLite, or PostgreSQL shared by replicas).
//! - [`layers`] the record cache (single-flight, negative entries, stale-if-error), quotas,
//!   and what replicas share through Redis (quotas, provider capacity, purge and registry
//!   announcements).
//! - [`upstream`] connectors (`soap-xml`, `rest-json`, `grpc`), request templates, the
//!   declared payload mapping, and upstream credentials.
//! - [`transport`] the REST and gRPC adapters (translation only), TLS and client
//!   certificates on the lookup listener, and the admin listener.
//! - [`certs`] a private CA and certificates for mTLS pilots and tests (`lienthong certs`).
//! - [`domain`] identifier formats and the official administrative-unit code lists.
//! - [`sim`] the simulated national databases and their deterministic data.
//! - [`telemetry`] logging.
//! - [`proto`] generated messages and services (`proto/`, compiled by protox in build.rs).

pub mod admin;
pub mod app;
pub mod audit;
pub mod certs;
pub mod config;
pub mod core;
pub mod domain;
pub mod layers;
pub mod registry;
pub mod sim;
pub mod telemetry;
pub mod transport;
pub mod upstream;

/// Generated protobuf code.
pub mod proto {
    /// Descriptors of every compiled proto (the lookup API and the providers' interfaces),
    /// for dynamic messages in the gRPC connector.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
    /// Descriptors of the lookup API alone, for gRPC server reflection.
    pub const LOOKUP_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/lookup_descriptor.bin"));
    /// Descriptors of the admin API alone, for reflection on the admin listener.
    pub const ADMIN_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/admin_descriptor.bin"));

    /// The lookup API and canonical records (`lienthong.v1`).
    pub mod lienthong {
        tonic::include_proto!("lienthong.v1");
        include!(concat!(env!("OUT_DIR"), "/lienthong.v1.serde.rs"));
    }
    /// The simulated land registry's own interface (`cadastre.v1`).
    pub mod cadastre {
        tonic::include_proto!("cadastre.v1");
        include!(concat!(env!("OUT_DIR"), "/cadastre.v1.serde.rs"));
    }
}
