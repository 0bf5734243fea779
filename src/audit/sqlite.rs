//! The embedded audit store: one SQLite file in WAL mode. With `fsync` on (the default) it
//! runs `synchronous=FULL`, so a committed group survives power loss; off, `NORMAL`, which
//! survives a crash of the process.

use super::record::{AuditEntry, Chained, Checkpoint, GENESIS, Receipt, Signer, chain_hash};
use super::rows::{self, err, hash32};
use super::store::{Archive, AuditStore, Query, StoreError};
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row, SqlitePool};
use std::path::Path;
use std::time::Duration;

/// Schema versions in order; each runs once, in a transaction, recorded in
/// `schema_migrations`.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE audit_records (
        instance TEXT NOT NULL,
        seq INTEGER NOT NULL,
        time_ms INTEGER NOT NULL,
        request_id TEXT NOT NULL,
        trace_id TEXT NOT NULL,
        transport TEXT NOT NULL,
        actor TEXT NOT NULL,
        credential TEXT NOT NULL,
        officer_id TEXT NOT NULL,
        agency_code TEXT NOT NULL,
        procedure_code TEXT NOT NULL,
        dossier_id TEXT NOT NULL,
        purpose TEXT NOT NULL,
        dataset TEXT NOT NULL,
        subject TEXT NOT NULL,
        action TEXT NOT NULL,
        fields TEXT NOT NULL,
        outcome TEXT NOT NULL,
        cache TEXT NOT NULL,
        upstream_status TEXT NOT NULL,
        upstream_ms INTEGER NOT NULL,
        detail TEXT NOT NULL,
        prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (instance, seq)
    );
    CREATE INDEX audit_by_subject ON audit_records (subject, time_ms);
    CREATE INDEX audit_by_actor ON audit_records (actor, time_ms);
    CREATE INDEX audit_by_dossier ON audit_records (dossier_id, time_ms);
    CREATE INDEX audit_by_officer ON audit_records (officer_id, time_ms);
    CREATE INDEX audit_by_time ON audit_records (time_ms);
    CREATE TABLE audit_checkpoints (
        instance TEXT NOT NULL,
        seq INTEGER NOT NULL,
        hash BLOB NOT NULL,
        time_ms INTEGER NOT NULL,
        key_id TEXT NOT NULL,
        signature BLOB NOT NULL,
        PRIMARY KEY (instance, seq)
    );
    CREATE TABLE audit_archives (
        instance TEXT NOT NULL,
        first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        last_hash BLOB NOT NULL,
        file TEXT NOT NULL,
        file_hash BLOB NOT NULL,
        time_ms INTEGER NOT NULL,
        PRIMARY KEY (instance, last_seq)
    );",
    ),
    (
        2,
        // Compact rows: the columns queries filter on, and the rest of the record as the
        // bytes its hash covers. Half the values to bind and store per record. The rows of
        // version 1 are copied over by `copy_version_1` in the same transaction.
        "ALTER TABLE audit_records RENAME TO audit_records_v1;
    DROP INDEX audit_by_subject;
    DROP INDEX audit_by_actor;
    DROP INDEX audit_by_dossier;
    DROP INDEX audit_by_officer;
    DROP INDEX audit_by_time;
    CREATE TABLE audit_records (
        instance TEXT NOT NULL,
        seq INTEGER NOT NULL,
        time_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        officer_id TEXT NOT NULL,
        dossier_id TEXT NOT NULL,
        dataset TEXT NOT NULL,
        subject TEXT NOT NULL,
        outcome TEXT NOT NULL,
        entry BLOB NOT NULL,
        prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (instance, seq)
    );
    CREATE INDEX audit_by_subject ON audit_records (subject, time_ms);
    CREATE INDEX audit_by_actor ON audit_records (actor, time_ms);
    CREATE INDEX audit_by_dossier ON audit_records (dossier_id, time_ms);
    CREATE INDEX audit_by_officer ON audit_records (officer_id, time_ms);
    CREATE INDEX audit_by_time ON audit_records (time_ms);",
    ),
    (
        3,
        // The people who appear in a disclosure's fields (entry format version 2), for
        // their access reports.
        "CREATE TABLE audit_mentions (
        reference TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        instance TEXT NOT NULL,
        seq INTEGER NOT NULL
    );
    CREATE INDEX audit_mentions_by_reference ON audit_mentions (reference, time_ms);",
    ),
    (
        4,
        // Witnesses' receipts for checkpoints (off-host anchoring).
        "CREATE TABLE audit_receipts (
        instance TEXT NOT NULL,
        seq INTEGER NOT NULL,
        witness TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        body BLOB NOT NULL,
        PRIMARY KEY (instance, seq, witness)
    );",
    ),
];

/// The record table's columns, in the order [`insert`] writes them. `entry` holds the
/// record's canonical bytes ([`AuditEntry::canonical`]); the columns before it repeat what
/// queries filter on, and a record is read with the columns' values, so the hash covers
/// them too: changing a column without the hash shows as an altered record.
const COLUMNS: &str = "instance, seq, time_ms, actor, officer_id, dossier_id, dataset, subject, outcome, entry, \
     prev_hash, hash";

fn chained(row: &sqlx::sqlite::SqliteRow) -> Result<Chained, StoreError> {
    let s = |c: &str| row.try_get::<String, _>(c).map_err(err);
    let seq: i64 = row.try_get("seq").map_err(err)?;
    let bytes: &[u8] = row.try_get("entry").map_err(err)?;
    let mut entry = AuditEntry::from_canonical(bytes)
        .map_err(|e| StoreError(format!("record {seq} cannot be read: {e}")))?;
    entry.time_ms = row.try_get("time_ms").map_err(err)?;
    entry.actor = s("actor")?;
    entry.officer_id = s("officer_id")?;
    entry.dossier_id = s("dossier_id")?;
    entry.dataset = s("dataset")?;
    entry.subject = s("subject")?;
    entry.outcome = s("outcome")?;
    Ok(Chained {
        instance: s("instance")?,
        seq,
        entry,
        prev_hash: hash32(row.try_get("prev_hash").map_err(err)?)?,
        hash: hash32(row.try_get("hash").map_err(err)?)?,
    })
}

/// Moves version 1's rows into the compact table, a batch at a time, and drops the old
/// table.
async fn copy_version_1(conn: &mut sqlx::SqliteConnection) -> Result<(), StoreError> {
    let mut after = 0i64;
    loop {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT rowid, {} FROM audit_records_v1 WHERE rowid > ? ORDER BY rowid LIMIT 5000",
            rows::COLUMNS
        )))
        .bind(after)
        .fetch_all(&mut *conn)
        .await
        .map_err(err)?;
        let Some(last) = rows.last() else { break };
        after = last.try_get("rowid").map_err(err)?;
        let records = rows
            .iter()
            .map(rows::chained)
            .collect::<Result<Vec<_>, _>>()?;
        insert(conn, &records).await?;
    }
    sqlx::raw_sql("DROP TABLE audit_records_v1")
        .execute(conn)
        .await
        .map_err(err)?;
    Ok(())
}

pub struct SqliteStore {
    pool: SqlitePool,
}

/// Inserts records with one statement per 256 (many records in one round trip to SQLite's
/// worker thread, while each statement is built in a fraction of a millisecond on the thread
/// that serves calls).
async fn insert(conn: &mut sqlx::SqliteConnection, records: &[Chained]) -> Result<(), StoreError> {
    for chunk in records.chunks(256) {
        let mut b = sqlx::QueryBuilder::new(format!("INSERT INTO audit_records ({COLUMNS}) "));
        b.push_values(chunk, |mut row, r| {
            let e = &r.entry;
            row.push_bind(r.instance.as_str())
                .push_bind(r.seq)
                .push_bind(e.time_ms)
                .push_bind(e.actor.as_str())
                .push_bind(e.officer_id.as_str())
                .push_bind(e.dossier_id.as_str())
                .push_bind(e.dataset.as_str())
                .push_bind(e.subject.as_str())
                .push_bind(e.outcome.as_str())
                .push_bind(e.canonical())
                .push_bind(r.prev_hash.as_slice())
                .push_bind(r.hash.as_slice());
        });
        b.build().execute(&mut *conn).await.map_err(err)?;
        let mentions: Vec<(&str, &Chained)> = chunk
            .iter()
            .flat_map(|r| super::rows::mentions(r).map(move |m| (m, r)))
            .collect();
        if !mentions.is_empty() {
            let mut b = sqlx::QueryBuilder::new(
                "INSERT INTO audit_mentions (reference, time_ms, instance, seq) ",
            );
            b.push_values(mentions, |mut row, (reference, r)| {
                row.push_bind(reference)
                    .push_bind(r.entry.time_ms)
                    .push_bind(r.instance.as_str())
                    .push_bind(r.seq);
            });
            b.build().execute(&mut *conn).await.map_err(err)?;
        }
    }
    Ok(())
}

async fn insert_checkpoint(
    conn: &mut sqlx::SqliteConnection,
    cp: &Checkpoint,
    verb: &str,
) -> Result<(), StoreError> {
    sqlx::query(AssertSqlSafe(format!(
        "{verb} INTO audit_checkpoints (instance, seq, hash, time_ms, key_id, signature) \
         VALUES (?, ?, ?, ?, ?, ?)"
    )))
    .bind(&cp.instance)
    .bind(cp.seq)
    .bind(cp.hash.as_slice())
    .bind(cp.time_ms)
    .bind(&cp.key_id)
    .bind(&cp.signature)
    .execute(conn)
    .await
    .map_err(err)?;
    Ok(())
}

async fn head_in(
    conn: &mut sqlx::SqliteConnection,
    instance: &str,
) -> Result<Option<(i64, [u8; 32])>, StoreError> {
    let row = sqlx::query(
        "SELECT seq, hash FROM audit_records WHERE instance = ? ORDER BY seq DESC LIMIT 1",
    )
    .bind(instance)
    .fetch_optional(&mut *conn)
    .await
    .map_err(err)?;
    if let Some(row) = row {
        return Ok(Some((
            row.try_get("seq").map_err(err)?,
            hash32(row.try_get("hash").map_err(err)?)?,
        )));
    }
    // Everything archived: the chain continues from the last archive.
    let row = sqlx::query(
        "SELECT last_seq, last_hash FROM audit_archives WHERE instance = ? \
         ORDER BY last_seq DESC LIMIT 1",
    )
    .bind(instance)
    .fetch_optional(&mut *conn)
    .await
    .map_err(err)?;
    row.map(|r| {
        Ok((
            r.try_get("last_seq").map_err(err)?,
            hash32(r.try_get("last_hash").map_err(err)?)?,
        ))
    })
    .transpose()
}

impl SqliteStore {
    /// Opens (creating) the file and brings its schema up to date.
    pub async fn open(path: &Path, fsync: bool) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if fsync {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(Duration::from_secs(10))
            // Pages read through a memory map rather than a read() each.
            .pragma("mmap_size", "268435456")
            .pragma("cache_size", "-65536")
            // A multi-row INSERT keeps a statement journal; in memory, not a temp file.
            .pragma("temp_store", "memory")
            // Checkpoint the WAL into the database in larger, rarer steps (64 MB), off most
            // commits' path.
            .pragma("wal_autocheckpoint", "16384");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
        let store = SqliteStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations \
             (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)",
        )
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
        let applied = applied.unwrap_or(0);
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > applied) {
            sqlx::raw_sql(AssertSqlSafe(*sql))
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            if *version == 2 {
                copy_version_1(&mut tx).await?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, applied_ms) VALUES (?, ?)")
                .bind(version)
                .bind(super::record::now_ms())
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        if let Some((newest, _)) = MIGRATIONS.last()
            && applied > *newest
        {
            return Err(StoreError(format!(
                "the audit database is at schema version {applied}, newer than this build knows ({newest})"
            )));
        }
        tx.commit().await.map_err(err)
    }

    /// Appends records and any number of checkpoints in one transaction: the commit log
    /// moves its batches in with this. A checkpoint already held is left as it is.
    pub async fn append_all(
        &self,
        records: &[Chained],
        checkpoints: &[Checkpoint],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        insert(&mut tx, records).await?;
        for cp in checkpoints {
            insert_checkpoint(&mut tx, cp, "INSERT OR IGNORE").await?;
        }
        tx.commit().await.map_err(err)
    }

    /// The highest archived sequence number of each chain that has archives.
    pub async fn archived_through(
        &self,
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT instance, MAX(last_seq) FROM audit_archives GROUP BY instance")
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        Ok(rows.into_iter().collect())
    }

    /// Runs a statement against the file directly (tests use it to tamper).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// `?, ?, …`: `n` placeholders for an `IN` list.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn head(&self, instance: &str) -> Result<Option<(i64, [u8; 32])>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(err)?;
        head_in(&mut conn, instance).await
    }

    async fn append(
        &self,
        records: Vec<Chained>,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        insert(&mut tx, &records).await?;
        if let Some(cp) = checkpoint {
            insert_checkpoint(&mut tx, cp, "INSERT").await?;
        }
        tx.commit().await.map_err(err)
    }

    async fn append_at_head(
        &self,
        instance: &str,
        entry: &AuditEntry,
        signer: Option<&Signer>,
    ) -> Result<Chained, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(err)?;
        // IMMEDIATE: take the write lock before reading the head, so two writers of one
        // chain cannot both extend the same head.
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .map_err(err)?;
        let result = async {
            let (seq, prev) = head_in(&mut conn, instance).await?.unwrap_or((0, GENESIS));
            let record = Chained {
                instance: instance.to_owned(),
                seq: seq + 1,
                hash: chain_hash(&prev, instance, seq + 1, entry),
                prev_hash: prev,
                entry: entry.clone(),
            };
            insert(&mut conn, std::slice::from_ref(&record)).await?;
            if let Some(signer) = signer {
                let cp = signer.sign(instance, record.seq, &record.hash, entry.time_ms);
                insert_checkpoint(&mut conn, &cp, "INSERT").await?;
            }
            Ok(record)
        }
        .await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        sqlx::query(end).execute(&mut *conn).await.map_err(err)?;
        result
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(err)?;
        // Taking the write lock and letting it go proves the file is writable and not
        // locked out; it writes nothing.
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .map_err(err)?;
        sqlx::query("ROLLBACK")
            .execute(&mut *conn)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn instances(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT instance FROM audit_records UNION SELECT instance FROM audit_archives \
             ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(err)
    }

    async fn count(&self, instance: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_records WHERE instance = ?")
            .bind(instance)
            .fetch_one(&self.pool)
            .await
            .map_err(err)
    }

    async fn scan(
        &self,
        instance: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Chained>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM audit_records WHERE instance = ? AND seq > ? \
             ORDER BY seq LIMIT ?"
        )))
        .bind(instance)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(chained).collect()
    }

    async fn checkpoints(&self, instance: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT instance, seq, hash, time_ms, key_id, signature FROM audit_checkpoints \
             WHERE instance = ? ORDER BY seq",
        )
        .bind(instance)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(rows::checkpoint).collect()
    }

    async fn receipts(&self, instance: &str) -> Result<Vec<Receipt>, StoreError> {
        let rows = sqlx::query(
            "SELECT instance, seq, witness, time_ms, body FROM audit_receipts \
             WHERE instance = ? ORDER BY seq, witness",
        )
        .bind(instance)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(rows::receipt).collect()
    }

    async fn add_receipt(&self, r: &Receipt) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_receipts (instance, seq, witness, time_ms, body) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&r.instance)
        .bind(r.seq)
        .bind(&r.witness)
        .bind(r.time_ms)
        .bind(&r.body)
        .execute(&self.pool)
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn query(&self, q: &Query) -> Result<Vec<Chained>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM audit_records WHERE 1 = 1");
        let mut texts: Vec<&str> = Vec::new();
        if !q.subjects.is_empty() {
            sql.push_str(&format!(
                " AND subject IN ({})",
                placeholders(q.subjects.len())
            ));
            texts.extend(q.subjects.iter().map(String::as_str));
        }
        for (column, value) in [
            ("dataset", &q.dataset),
            ("actor", &q.actor),
            ("dossier_id", &q.dossier_id),
            ("officer_id", &q.officer_id),
            ("outcome", &q.outcome),
        ] {
            if let Some(v) = value {
                sql.push_str(&format!(" AND {column} = ?"));
                texts.push(v);
            }
        }
        if !q.persons.is_empty() {
            // Two index lookups (by subject, by mention), not a scan testing each record.
            let list = placeholders(q.persons.len());
            sql.push_str(&format!(
                " AND rowid IN (SELECT rowid FROM audit_records WHERE subject IN ({list}) \
                 UNION ALL SELECT r.rowid FROM audit_mentions m JOIN audit_records r \
                 ON r.instance = m.instance AND r.seq = m.seq WHERE m.reference IN ({list}))"
            ));
            texts.extend(q.persons.iter().map(String::as_str));
            texts.extend(q.persons.iter().map(String::as_str));
        }
        if q.from_ms.is_some() {
            sql.push_str(" AND time_ms >= ?");
        }
        if q.to_ms.is_some() {
            sql.push_str(" AND time_ms <= ?");
        }
        if q.after.is_some() {
            sql.push_str(
                " AND (time_ms < ? OR (time_ms = ? AND (instance > ? OR (instance = ? AND seq < ?))))",
            );
        }
        sql.push_str(" ORDER BY time_ms DESC, instance ASC, seq DESC LIMIT ?");
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for t in texts {
            query = query.bind(t);
        }
        if let Some(from) = q.from_ms {
            query = query.bind(from);
        }
        if let Some(to) = q.to_ms {
            query = query.bind(to);
        }
        if let Some((time, instance, seq)) = &q.after {
            query = query
                .bind(*time)
                .bind(*time)
                .bind(instance.as_str())
                .bind(instance.as_str())
                .bind(*seq);
        }
        let rows = query
            .bind(q.limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(chained).collect()
    }

    async fn archives(&self, instance: &str) -> Result<Vec<Archive>, StoreError> {
        let rows = sqlx::query(
            "SELECT instance, first_seq, last_seq, last_hash, file, file_hash, time_ms \
             FROM audit_archives WHERE instance = ? ORDER BY last_seq",
        )
        .bind(instance)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(rows::archive).collect()
    }

    async fn expired(
        &self,
        instance: &str,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<Chained>, StoreError> {
        // In chain order, stopping at the first record still in retention: a chain is
        // archived from its start, never with holes.
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM audit_records WHERE instance = ? AND seq < COALESCE(\
               (SELECT MIN(seq) FROM audit_records WHERE instance = ? AND time_ms >= ?), \
               9223372036854775807) ORDER BY seq LIMIT ?"
        )))
        .bind(instance)
        .bind(instance)
        .bind(before_ms)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(chained).collect()
    }

    /// Copies the write-ahead log into the database file and empties it, so that after a
    /// graceful stop `audit.db` alone holds every record (a copy of it is a whole backup).
    async fn flush(&self) -> Result<(), StoreError> {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn archived(&self, a: &Archive) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query(
            "INSERT INTO audit_archives (instance, first_seq, last_seq, last_hash, file, file_hash, time_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&a.instance)
        .bind(a.first_seq)
        .bind(a.last_seq)
        .bind(a.last_hash.as_slice())
        .bind(&a.file)
        .bind(a.file_hash.as_slice())
        .bind(a.time_ms)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        for table in ["audit_records", "audit_checkpoints", "audit_mentions"] {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE instance = ? AND seq <= ?"
            )))
            .bind(&a.instance)
            .bind(a.last_seq)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }
}

#[cfg(test)]
mod tests;
