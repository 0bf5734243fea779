//! Reading audit rows back, for every SQL store alike: the record, checkpoint and archive
//! tables have the same columns in SQLite and PostgreSQL.

use super::record::{AuditEntry, Chained, Checkpoint};
use super::store::{Archive, StoreError};
use sqlx::{ColumnIndex, Database, Decode, Row, Type};

/// The record table's columns, in the order stores write them.
pub(crate) const COLUMNS: &str = "instance, seq, time_ms, request_id, trace_id, transport, actor, credential, \
    officer_id, agency_code, procedure_code, dossier_id, purpose, dataset, subject, action, \
    fields, outcome, cache, upstream_status, upstream_ms, detail, prev_hash, hash";

/// The references of the people a record's disclosed fields name (format version 2).
pub(crate) fn mentions(r: &Chained) -> impl Iterator<Item = &str> {
    r.entry
        .disclosure
        .iter()
        .flat_map(|d| d.mentions.iter().map(|(_, reference)| reference.as_str()))
}

pub(crate) fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::from(e)
}

pub(crate) fn hash32(bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError("a stored hash is not 32 bytes".into()))
}

/// What a row of either store can be read as.
pub(crate) trait AuditRow: Row
where
    for<'c> &'c str: ColumnIndex<Self>,
{
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError>;
}

impl<R: Row> AuditRow for R
where
    for<'c> &'c str: ColumnIndex<R>,
    for<'d> String: Decode<'d, R::Database> + Type<R::Database>,
    for<'d> i64: Decode<'d, R::Database> + Type<R::Database>,
    for<'d> Vec<u8>: Decode<'d, R::Database> + Type<R::Database>,
    R::Database: Database,
{
    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.try_get(column).map_err(err)
    }

    fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.try_get(column).map_err(err)
    }

    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
        self.try_get(column).map_err(err)
    }
}

pub(crate) fn chained<R: AuditRow>(row: &R) -> Result<Chained, StoreError>
where
    for<'c> &'c str: ColumnIndex<R>,
{
    let s = |c: &str| row.text(c);
    let fields = s("fields")?;
    Ok(Chained {
        instance: s("instance")?,
        seq: row.int("seq")?,
        prev_hash: hash32(row.bytes("prev_hash")?)?,
        hash: hash32(row.bytes("hash")?)?,
        entry: AuditEntry {
            time_ms: row.int("time_ms")?,
            request_id: s("request_id")?,
            trace_id: s("trace_id")?,
            transport: s("transport")?,
            actor: s("actor")?,
            credential: s("credential")?,
            officer_id: s("officer_id")?,
            agency_code: s("agency_code")?,
            procedure_code: s("procedure_code")?,
            dossier_id: s("dossier_id")?,
            purpose: s("purpose")?,
            dataset: s("dataset")?,
            subject: s("subject")?,
            action: s("action")?,
            fields: if fields.is_empty() {
                vec![]
            } else {
                fields.split(',').map(Into::into).collect()
            },
            outcome: s("outcome")?,
            cache: s("cache")?,
            upstream_status: s("upstream_status")?,
            upstream_ms: row.int("upstream_ms")?,
            detail: s("detail")?,
            // Version 2's facts, where the table has them (PostgreSQL's `ext`).
            disclosure: row
                .text("ext")
                .ok()
                .filter(|t| !t.is_empty())
                .map(|t| serde_json::from_str(&t))
                .transpose()
                .map_err(|e| StoreError(format!("a record's version 2 facts do not read: {e}")))?,
        },
    })
}

pub(crate) fn checkpoint<R: AuditRow>(r: &R) -> Result<Checkpoint, StoreError>
where
    for<'c> &'c str: ColumnIndex<R>,
{
    Ok(Checkpoint {
        instance: r.text("instance")?,
        seq: r.int("seq")?,
        hash: hash32(r.bytes("hash")?)?,
        time_ms: r.int("time_ms")?,
        key_id: r.text("key_id")?,
        signature: r.bytes("signature")?,
    })
}

pub(crate) fn receipt<R: AuditRow>(r: &R) -> Result<super::record::Receipt, StoreError>
where
    for<'c> &'c str: ColumnIndex<R>,
{
    Ok(super::record::Receipt {
        instance: r.text("instance")?,
        seq: r.int("seq")?,
        witness: r.text("witness")?,
        time_ms: r.int("time_ms")?,
        body: r.bytes("body")?,
    })
}

pub(crate) fn archive<R: AuditRow>(r: &R) -> Result<Archive, StoreError>
where
    for<'c> &'c str: ColumnIndex<R>,
{
    Ok(Archive {
        instance: r.text("instance")?,
        first_seq: r.int("first_seq")?,
        last_seq: r.int("last_seq")?,
        last_hash: hash32(r.bytes("last_hash")?)?,
        file: r.text("file")?,
        file_hash: hash32(r.bytes("file_hash")?)?,
        time_ms: r.int("time_ms")?,
    })
}
