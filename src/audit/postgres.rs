//! The audit store for many replicas: PostgreSQL. Each replica writes its own chain (its
//! `instance_id`), so writers never contend for a head; `audit verify` checks every chain
//! in the database, and queries see all of them. Group commit applies as with SQLite: one
//! transaction per batch. With `fsync` off the writer's sessions run
//! `synchronous_commit = off`.
//!
//! Tables live in the configured schema (`storage.schema`), created with the migrations
//! recorded in its `schema_migrations`.

use super::record::{AuditEntry, Chained, Checkpoint, GENESIS, Receipt, Signer, chain_hash};
use super::rows::{self, COLUMNS, err, hash32};
use super::store::{Archive, AuditStore, Query, StoreError};
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Executor, PgConnection, Row};
use std::str::FromStr;
use std::time::Duration;

const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE audit_records (
        instance TEXT NOT NULL,
        seq BIGINT NOT NULL,
        time_ms BIGINT NOT NULL,
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
        upstream_ms BIGINT NOT NULL,
        detail TEXT NOT NULL,
        prev_hash BYTEA NOT NULL,
        hash BYTEA NOT NULL,
        PRIMARY KEY (instance, seq)
    );
    CREATE INDEX audit_by_subject ON audit_records (subject, time_ms);
    CREATE INDEX audit_by_actor ON audit_records (actor, time_ms);
    CREATE INDEX audit_by_dossier ON audit_records (dossier_id, time_ms);
    CREATE INDEX audit_by_officer ON audit_records (officer_id, time_ms);
    CREATE INDEX audit_by_time ON audit_records (time_ms);
    CREATE TABLE audit_checkpoints (
        instance TEXT NOT NULL,
        seq BIGINT NOT NULL,
        hash BYTEA NOT NULL,
        time_ms BIGINT NOT NULL,
        key_id TEXT NOT NULL,
        signature BYTEA NOT NULL,
        PRIMARY KEY (instance, seq)
    );
    CREATE TABLE audit_archives (
        instance TEXT NOT NULL,
        first_seq BIGINT NOT NULL,
        last_seq BIGINT NOT NULL,
        last_hash BYTEA NOT NULL,
        file TEXT NOT NULL,
        file_hash BYTEA NOT NULL,
        time_ms BIGINT NOT NULL,
        PRIMARY KEY (instance, last_seq)
    );
    CREATE TABLE registry_versions (
        version BIGINT PRIMARY KEY,
        time_ms BIGINT NOT NULL,
        actor TEXT NOT NULL,
        change TEXT NOT NULL,
        files TEXT NOT NULL
    );",
    ),
    (
        2,
        // Entry format version 2: a disclosure's facts, and the people who appear in it.
        "ALTER TABLE audit_records ADD COLUMN ext TEXT NOT NULL DEFAULT '';
    CREATE TABLE audit_mentions (
        reference TEXT NOT NULL,
        time_ms BIGINT NOT NULL,
        instance TEXT NOT NULL,
        seq BIGINT NOT NULL
    );
    CREATE INDEX audit_mentions_by_reference ON audit_mentions (reference, time_ms);",
    ),
    (
        3,
        // Witnesses' receipts for checkpoints (off-host anchoring).
        "CREATE TABLE audit_receipts (
        instance TEXT NOT NULL,
        seq BIGINT NOT NULL,
        witness TEXT NOT NULL,
        time_ms BIGINT NOT NULL,
        body BYTEA NOT NULL,
        PRIMARY KEY (instance, seq, witness)
    );",
    ),
];

use crate::config::valid_schema;

/// A pool on `url` whose sessions use `schema` (created, with the migrations, on first use).
pub async fn connect(
    url: &str,
    schema: &str,
    fsync: bool,
    max_connections: u32,
) -> Result<PgPool, StoreError> {
    if !valid_schema(schema) {
        return Err(StoreError(format!(
            "{schema:?} is not a schema name (lower case, digits, _)"
        )));
    }
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError(format!("storage.postgres_url: {e}")))?
        // "already exists, skipping" and the like are not worth a log line.
        .options([("client_min_messages", "warning")]);
    let setup = format!(
        "SET search_path TO {schema}; SET synchronous_commit TO {}",
        if fsync { "on" } else { "off" }
    );
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(move |conn, _| {
            let setup = setup.clone();
            Box::pin(async move {
                conn.execute(AssertSqlSafe(setup)).await?;
                Ok(())
            })
        })
        .connect_lazy_with(options);
    migrate(&pool, schema).await?;
    Ok(pool)
}

async fn migrate(pool: &PgPool, schema: &str) -> Result<(), StoreError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| StoreError(format!("cannot reach PostgreSQL: {e}")))?;
    // One migrating replica at a time.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('lienthong migrations ' || $1))")
        .bind(schema)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}; \
         CREATE TABLE IF NOT EXISTS {schema}.schema_migrations \
         (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)"
    )))
    .execute(&mut *tx)
    .await
    .map_err(err)?;
    let applied: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT MAX(version) FROM {schema}.schema_migrations"
    )))
    .fetch_one(&mut *tx)
    .await
    .map_err(err)?;
    let applied = applied.unwrap_or(0);
    if let Some((newest, _)) = MIGRATIONS.last()
        && applied > *newest
    {
        return Err(StoreError(format!(
            "the database is at schema version {applied}, newer than this build knows ({newest})"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > applied) {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "SET LOCAL search_path TO {schema}; {sql}"
        )))
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {schema}.schema_migrations (version, applied_ms) VALUES ($1, $2)"
        )))
        .bind(version)
        .bind(super::record::now_ms())
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    }
    tx.commit().await.map_err(err)
}

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn open(url: &str, schema: &str, fsync: bool) -> Result<PostgresStore, StoreError> {
        Ok(PostgresStore {
            pool: connect(url, schema, fsync, 8).await?,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Inserts records in one statement (a group commit's worth at a time).
async fn insert(conn: &mut PgConnection, records: &[Chained]) -> Result<(), StoreError> {
    // Statements of at most 16 rows (about 8 KB of parameters): sqlx does not set
    // TCP_NODELAY, and a larger message leaves its socket in more than one write, whose tail
    // then waits for the server's delayed ACK (about 40 ms a commit). Several small
    // statements in one transaction cost a loopback round trip each instead.
    for chunk in records.chunks(16) {
        let mut b = sqlx::QueryBuilder::new(format!("INSERT INTO audit_records ({COLUMNS}, ext) "));
        b.push_values(chunk, |mut row, r| {
            let e = &r.entry;
            row.push_bind(&r.instance)
                .push_bind(r.seq)
                .push_bind(e.time_ms)
                .push_bind(&e.request_id)
                .push_bind(&e.trace_id)
                .push_bind(&e.transport)
                .push_bind(&e.actor)
                .push_bind(&e.credential)
                .push_bind(&e.officer_id)
                .push_bind(&e.agency_code)
                .push_bind(&e.procedure_code)
                .push_bind(&e.dossier_id)
                .push_bind(&e.purpose)
                .push_bind(&e.dataset)
                .push_bind(&e.subject)
                .push_bind(&e.action)
                .push_bind(e.fields.join(","))
                .push_bind(&e.outcome)
                .push_bind(&e.cache)
                .push_bind(&e.upstream_status)
                .push_bind(e.upstream_ms)
                .push_bind(&e.detail)
                .push_bind(r.prev_hash.as_slice())
                .push_bind(r.hash.as_slice())
                .push_bind(
                    e.disclosure
                        .as_ref()
                        .and_then(|d| serde_json::to_string(d).ok())
                        .unwrap_or_default(),
                );
        });
        b.build().execute(&mut *conn).await.map_err(err)?;
        let mentions: Vec<(&str, &Chained)> = chunk
            .iter()
            .flat_map(|r| rows::mentions(r).map(move |m| (m, r)))
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

async fn insert_checkpoint(conn: &mut PgConnection, cp: &Checkpoint) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_checkpoints (instance, seq, hash, time_ms, key_id, signature) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
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
    conn: &mut PgConnection,
    instance: &str,
) -> Result<Option<(i64, [u8; 32])>, StoreError> {
    let row = sqlx::query(
        "SELECT seq, hash FROM audit_records WHERE instance = $1 ORDER BY seq DESC LIMIT 1",
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
    let row = sqlx::query(
        "SELECT last_seq, last_hash FROM audit_archives WHERE instance = $1 \
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

#[async_trait]
impl AuditStore for PostgresStore {
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
            insert_checkpoint(&mut tx, cp).await?;
        }
        tx.commit().await.map_err(err)
    }

    async fn append_at_head(
        &self,
        instance: &str,
        entry: &AuditEntry,
        signer: Option<&Signer>,
    ) -> Result<Chained, StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        // One writer of this chain at a time, until the transaction ends.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('lienthong chain ' || $1))")
            .bind(instance)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        let (seq, prev) = head_in(&mut tx, instance).await?.unwrap_or((0, GENESIS));
        let record = Chained {
            instance: instance.to_owned(),
            seq: seq + 1,
            hash: chain_hash(&prev, instance, seq + 1, entry),
            prev_hash: prev,
            entry: entry.clone(),
        };
        insert(&mut tx, std::slice::from_ref(&record)).await?;
        if let Some(signer) = signer {
            let cp = signer.sign(instance, record.seq, &record.hash, entry.time_ms);
            insert_checkpoint(&mut tx, &cp).await?;
        }
        tx.commit().await.map_err(err)?;
        Ok(record)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        // Refused on a read-only server (a standby): the store must take writes.
        sqlx::query("SET TRANSACTION READ WRITE")
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        sqlx::query("SELECT 1 FROM audit_checkpoints LIMIT 1")
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.rollback().await.map_err(err)
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
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_records WHERE instance = $1")
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
            "SELECT {COLUMNS}, ext FROM audit_records WHERE instance = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3"
        )))
        .bind(instance)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(rows::chained).collect()
    }

    async fn checkpoints(&self, instance: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT instance, seq, hash, time_ms, key_id, signature FROM audit_checkpoints \
             WHERE instance = $1 ORDER BY seq",
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
             WHERE instance = $1 ORDER BY seq, witness",
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
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
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
        let mut b = sqlx::QueryBuilder::new(format!(
            "SELECT {COLUMNS}, ext FROM audit_records WHERE 1 = 1"
        ));
        if !q.subjects.is_empty() {
            b.push(" AND subject = ANY(")
                .push_bind(q.subjects.clone())
                .push(")");
        }
        for (column, value) in [
            ("dataset", &q.dataset),
            ("actor", &q.actor),
            ("dossier_id", &q.dossier_id),
            ("officer_id", &q.officer_id),
            ("outcome", &q.outcome),
        ] {
            if let Some(v) = value {
                b.push(format!(" AND {column} = ")).push_bind(v.clone());
            }
        }
        if !q.persons.is_empty() {
            // Two index lookups (by subject, by mention), not a scan testing each record.
            b.push(
                " AND (instance, seq) IN (SELECT instance, seq FROM audit_records WHERE subject = ANY(",
            )
            .push_bind(q.persons.clone())
            .push(") UNION ALL SELECT instance, seq FROM audit_mentions WHERE reference = ANY(")
            .push_bind(q.persons.clone())
            .push("))");
        }
        if let Some(from) = q.from_ms {
            b.push(" AND time_ms >= ").push_bind(from);
        }
        if let Some(to) = q.to_ms {
            b.push(" AND time_ms <= ").push_bind(to);
        }
        if let Some((time, instance, seq)) = &q.after {
            b.push(" AND (time_ms < ")
                .push_bind(*time)
                .push(" OR (time_ms = ")
                .push_bind(*time)
                .push(" AND (instance > ")
                .push_bind(instance.clone())
                .push(" OR (instance = ")
                .push_bind(instance.clone())
                .push(" AND seq < ")
                .push_bind(*seq)
                .push("))))");
        }
        b.push(" ORDER BY time_ms DESC, instance ASC, seq DESC LIMIT ")
            .push_bind(q.limit as i64);
        let rows = b.build().fetch_all(&self.pool).await.map_err(err)?;
        rows.iter().map(rows::chained).collect()
    }

    async fn archives(&self, instance: &str) -> Result<Vec<Archive>, StoreError> {
        let rows = sqlx::query(
            "SELECT instance, first_seq, last_seq, last_hash, file, file_hash, time_ms \
             FROM audit_archives WHERE instance = $1 ORDER BY last_seq",
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
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS}, ext FROM audit_records WHERE instance = $1 AND seq < COALESCE(\
               (SELECT MIN(seq) FROM audit_records WHERE instance = $1 AND time_ms >= $2), \
               9223372036854775807) ORDER BY seq LIMIT $3"
        )))
        .bind(instance)
        .bind(before_ms)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.iter().map(rows::chained).collect()
    }

    async fn archived(&self, a: &Archive) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query(
            "INSERT INTO audit_archives (instance, first_seq, last_seq, last_hash, file, file_hash, time_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
                "DELETE FROM {table} WHERE instance = $1 AND seq <= $2"
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
