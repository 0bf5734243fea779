//! The audit trail: one record per call whatever its outcome, committed before the answer
//! leaves (group commit), chained and signed so tampering shows, and queried by subject,
//! consumer, dossier, officer and time.
//!
//! - [`record`] the record, its chain hash, subject references, checkpoint signatures.
//! - [`writer`] the group-commit writer and the handle requests use.
//! - [`store`] the store trait; [`journal`] the embedded store: commits go to
//!   [`segments`] (append-only logs, indexed once each when sealed), and [`sqlite`] keeps
//!   earlier records, the commands' own chains and the archives' list; [`postgres`] for
//!   replicas.
//! - [`verify`] recomputing chains and checking checkpoints.
//! - [`retention`] moving expired records to signed, chained archive files.
//! - [`query`] pages of records by subject, consumer, dossier, officer, time (the
//!   `lienthong audit` commands live in `cli`); [`citizen`] one person's access report
//!   across datasets.

pub mod anchor;
pub mod backup;
pub mod citizen;
pub mod evidence;
pub mod journal;
#[cfg(test)]
pub(crate) mod memory;
pub mod postgres;
pub mod query;
pub mod record;
pub mod retention;
mod rows;
pub mod segments;
pub mod settings;
pub mod sqlite;
pub mod store;
pub mod verify;
pub mod writer;
