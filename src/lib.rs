//! lienthong — a data-sharing integration gateway between Vietnam's one-stop systems (the
//! consumers) and the national databases (the providers).
//!
//! A one-stop system looks up a citizen, an enterprise or a land parcel over gRPC or REST,
//! bound to a procedure and a dossier; the gateway authenticates it, validates the key and the
//! context, checks its grant, calls the provider through a connector and returns only the
//! fields the grant allows.
//!
//! # Layout
//! Dependencies point one way, and `tests/architecture.rs` fails on any arrow against it or
//! any cycle: `cli → app → transport → admin → core → layers → upstream → domain`, with the
//! foundations below the pipeline, `config` a leaf and `sim` apart. See
//! `docs/architecture.md`.
//! - [`cli`] the command line: demo, serve, sim, audit, admin client, certs, ready.
//! - [`app`] builds the runtime parts from settings, wires them, graceful shutdown.
//! - [`transport`] the REST and gRPC adapters (translation only), TLS and client
//!   certificates on the lookup listener, and the admin listener.
//! - [`admin`] the admin operations (datasets, connectors, grants, registry history and
//!   rollback, purges, audit queries) with their roles, shared by REST and gRPC.
//! - [`core`] the lookup service, whose functions hold the order of the request path, the
//!   one call wrapper (audit, metrics, span), the model it runs on, its routes, probes and
//!   its live, reloadable version.
//! - [`layers`] the steps of the request path, one per file: authenticate, validate,
//!   authorize (on the policy: consumers, grants, admin roles), quota, fetch through the
//!   record cache (single-flight, negative entries, stale-if-error), verify's claims.
//! - [`upstream`] the guard (capacity, breaker, retries), connectors (`soap-xml`,
//!   `rest-json`, `grpc`) built from their specs, request templates, the declared payload
//!   mapping, and active health probes.
//! - [`domain`] identifiers, dates, administrative units, datasets and canonical records,
//!   the call context, the error-code table, the population database's signed headers.
//! - Foundations: [`audit`] the tamper-evident trail (records, chain, group-commit writer,
//!   SQLite and PostgreSQL stores, verification); [`registry`] every version of the
//!   datasets, connectors, consumers and grants the gateway ran; [`telemetry`] logs, spans
//!   and metrics; [`certs`] the crypto provider and a private CA for mTLS pilots;
//!   [`shared`] GCRA limiters and what replicas share through Redis.
//! - [`config`] plain settings, a leaf: TOML files → `LIENTHONG_*` env overrides → shape
//!   checks; each owner builds its runtime form from its own section.
//! - [`sim`] the simulated national databases and their deterministic data.
//! - [`proto`] generated messages and services (`proto/`, compiled by protox in build.rs).

pub mod admin;
pub mod app;
pub mod audit;
pub mod certs;
pub mod cli;
pub mod config;
pub mod core;
pub mod domain;
pub mod dossiers;
pub mod layers;
pub mod registry;
pub mod shared;
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
    /// The land registry's own API, which its simulator describes by server reflection.
    pub const CADASTRE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/cadastre_descriptor.bin"));

    /// The lookup API and canonical records (`lienthong.v1`).
    pub mod lienthong {
        tonic::include_proto!("lienthong.v1");
        include!(concat!(env!("OUT_DIR"), "/lienthong.v1.serde.rs"));
    }
    /// The simulated vehicle registry's interface: its descriptors are not in
    /// [`FILE_DESCRIPTOR_SET`], as a provider unknown to the gateway's build.
    pub const VEHICLES_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/vehicles_descriptor.bin"));
    /// The simulated vehicle registry's own interface (`vehicles.v1`), for its simulator.
    pub mod vehicles {
        tonic::include_proto!("vehicles.v1");
    }
    /// The simulated land registry's own interface (`cadastre.v1`).
    pub mod cadastre {
        tonic::include_proto!("cadastre.v1");
        include!(concat!(env!("OUT_DIR"), "/cadastre.v1.serde.rs"));
    }
}
