//! Where dossiers are kept: a SQLite file, or the PostgreSQL schema replicas share. The SQL is the same for both; every
//! change to a dossier first updates its row under a condition (open, not expired), which
//! both serialises concurrent changes to one dossier (a row lock in PostgreSQL, the write
//! lock in SQLite) and decides whether the change may happen at all.

use super::{Declared, Dossier, NewDossier, RegisterError, Status, Subject};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use std::path::Path;
use std::time::Duration;

/// The register's tables, the same in SQLite and PostgreSQL.
pub(super) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS dossiers (
        consumer TEXT NOT NULL,
        dossier_id TEXT NOT NULL,
        procedure_code TEXT NOT NULL,
        officer_id TEXT NOT NULL,
        received_ms BIGINT NOT NULL,
        declared_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL,
        status TEXT NOT NULL,
        result TEXT NOT NULL,
        closed_ms BIGINT NOT NULL,
        changes BIGINT NOT NULL,
        PRIMARY KEY (consumer, dossier_id)
    );
    CREATE INDEX IF NOT EXISTS dossiers_by_expiry ON dossiers (status, expires_ms);
    CREATE INDEX IF NOT EXISTS dossiers_by_end ON dossiers (status, closed_ms);
    CREATE TABLE IF NOT EXISTS dossier_subjects (
        consumer TEXT NOT NULL,
        dossier_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        dataset TEXT NOT NULL,
        subject TEXT NOT NULL,
        added_ms BIGINT NOT NULL,
        added_reason TEXT NOT NULL,
        removed_ms BIGINT NOT NULL,
        removed_reason TEXT NOT NULL,
        PRIMARY KEY (consumer, dossier_id, seq)
    );
    CREATE TABLE IF NOT EXISTS misuse_alerts (
        id TEXT PRIMARY KEY,
        rule TEXT NOT NULL,
        consumer TEXT NOT NULL,
        officer_id TEXT NOT NULL,
        dossier_id TEXT NOT NULL,
        window_start_ms BIGINT NOT NULL,
        window_end_ms BIGINT NOT NULL,
        count BIGINT NOT NULL,
        threshold BIGINT NOT NULL,
        action TEXT NOT NULL,
        raised_ms BIGINT NOT NULL,
        instance TEXT NOT NULL,
        acknowledged_ms BIGINT NOT NULL,
        acknowledged_by TEXT NOT NULL,
        note TEXT NOT NULL,
        UNIQUE (rule, consumer, officer_id, dossier_id, window_start_ms)
    );
    CREATE INDEX IF NOT EXISTS misuse_alerts_by_time ON misuse_alerts (raised_ms);";

/// A SQLite file or a PostgreSQL pool.
pub enum Store {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

fn dossier<R: Row>(row: &R) -> Result<Dossier, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'d> String: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> i64: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
{
    let closed_ms: i64 = row.try_get("closed_ms")?;
    Ok(Dossier {
        consumer: row.try_get("consumer")?,
        dossier_id: row.try_get("dossier_id")?,
        procedure_code: row.try_get("procedure_code")?,
        officer_id: row.try_get("officer_id")?,
        received_ms: row.try_get("received_ms")?,
        declared_ms: row.try_get("declared_ms")?,
        expires_ms: row.try_get("expires_ms")?,
        status: Status::parse(&row.try_get::<String, _>("status")?),
        result: row.try_get("result")?,
        closed_ms: (closed_ms > 0).then_some(closed_ms),
        subjects: Vec::new(),
    })
}

fn subject<R: Row>(row: &R) -> Result<Subject, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'d> String: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> i64: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
{
    let removed_ms: i64 = row.try_get("removed_ms")?;
    Ok(Subject {
        dataset: row.try_get("dataset")?,
        reference: row.try_get("subject")?,
        added_ms: row.try_get("added_ms")?,
        added_reason: row.try_get("added_reason")?,
        removed_ms: (removed_ms > 0).then_some(removed_ms),
        removed_reason: row.try_get("removed_reason")?,
    })
}

/// Reads one dossier with its subjects through `conn` (a pool or a transaction).
macro_rules! read {
    ($conn:expr, $consumer:expr, $id:expr) => {{
        let row = sqlx::query("SELECT * FROM dossiers WHERE consumer = $1 AND dossier_id = $2")
            .bind($consumer)
            .bind($id)
            .fetch_optional(&mut *$conn)
            .await?;
        match row {
            None => None,
            Some(row) => {
                let mut d = dossier(&row)?;
                let rows = sqlx::query(
                    "SELECT * FROM dossier_subjects WHERE consumer = $1 AND dossier_id = $2 \
                     ORDER BY seq",
                )
                .bind($consumer)
                .bind($id)
                .fetch_all(&mut *$conn)
                .await?;
                d.subjects = rows.iter().map(subject).collect::<Result<_, _>>()?;
                Some(d)
            }
        }
    }};
}

/// Marks a change on an open dossier, which holds its row (PostgreSQL) or the write lock
/// (SQLite) until the transaction ends; returns from the caller with why not when the
/// dossier is unknown or no longer open.
macro_rules! touch {
    ($tx:expr, $consumer:expr, $id:expr, $now:expr) => {{
        let touched = sqlx::query(
            "UPDATE dossiers SET changes = changes + 1 WHERE consumer = $1 \
             AND dossier_id = $2 AND status = 'open' AND expires_ms > $3",
        )
        .bind($consumer)
        .bind($id)
        .bind($now)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        if touched == 0 {
            return Err(not_open(read!($tx, $consumer, $id), $id, $now));
        }
    }};
}

/// Why a conditional update of a dossier touched no row: it is unknown, or no longer open.
fn not_open(found: Option<Dossier>, id: &str, now_ms: i64) -> RegisterError {
    match found {
        None => RegisterError::Unknown(id.to_owned()),
        Some(d) => RegisterError::Ended {
            id: id.to_owned(),
            status: d.status_at(now_ms).as_str(),
        },
    }
}

impl Store {
    /// Opens (creating) the SQLite file.
    pub async fn open(path: &Path) -> Result<Store, RegisterError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                RegisterError::Store(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| RegisterError::Store(format!("cannot open {}: {e}", path.display())))?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Store::Sqlite(pool))
    }

    /// A private in-memory SQLite database (one connection, kept for the pool's life).
    pub async fn in_memory() -> Result<Store, RegisterError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(SqliteConnectOptions::new().in_memory(true))
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Store::Sqlite(pool))
    }

    /// The register in a PostgreSQL schema (its tables come with the store's migrations).
    pub async fn postgres(url: &str, schema: &str) -> Result<Store, RegisterError> {
        let pool = crate::audit::postgres::connect(url, schema, true, 4)
            .await
            .map_err(|e| RegisterError::Store(e.to_string()))?;
        // One replica creates the tables; the others wait for it and find them.
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('lienthong dossiers ' || $1))")
            .bind(schema)
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Store::Postgres(pool))
    }

    pub(super) async fn get(
        &self,
        consumer: &str,
        id: &str,
    ) -> Result<Option<Dossier>, RegisterError> {
        on_pool!(self, pool => {
            let mut conn = pool.acquire().await?;
            Ok(read!(conn, consumer, id))
        })
    }

    pub(super) async fn declare(
        &self,
        new: &NewDossier,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<Declared, RegisterError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO dossiers (consumer, dossier_id, procedure_code, officer_id, \
                 received_ms, declared_ms, expires_ms, status, result, closed_ms, changes) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', '', 0, 0) \
                 ON CONFLICT (consumer, dossier_id) DO NOTHING",
            )
            .bind(&new.consumer)
            .bind(&new.dossier_id)
            .bind(&new.procedure_code)
            .bind(&new.officer_id)
            .bind(new.received_ms)
            .bind(now_ms)
            .bind(expires_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                let existing = read!(tx, &new.consumer, &new.dossier_id)
                    .ok_or_else(|| RegisterError::Unknown(new.dossier_id.clone()))?;
                let same = existing.procedure_code == new.procedure_code
                    && existing.officer_id == new.officer_id
                    && existing.received_ms == new.received_ms
                    && existing
                        .current()
                        .map(|s| (s.dataset.as_str(), s.reference.as_str()))
                        .eq(new.subjects.iter().map(|(d, r)| (d.as_str(), r.as_str())));
                return if same {
                    Ok(Declared::Unchanged(existing))
                } else {
                    Err(RegisterError::Declared(new.dossier_id.clone()))
                };
            }
            for (seq, (dataset, reference)) in new.subjects.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO dossier_subjects (consumer, dossier_id, seq, dataset, subject, \
                     added_ms, added_reason, removed_ms, removed_reason) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'declared', 0, '')",
                )
                .bind(&new.consumer)
                .bind(&new.dossier_id)
                .bind(seq as i64 + 1)
                .bind(dataset)
                .bind(reference)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            }
            let created = read!(tx, &new.consumer, &new.dossier_id)
                .ok_or_else(|| RegisterError::Unknown(new.dossier_id.clone()))?;
            tx.commit().await?;
            Ok(Declared::Created(created))
        })
    }

    pub(super) async fn add_subject(
        &self,
        consumer: &str,
        id: &str,
        (dataset, reference): (&str, &str),
        reason: &str,
        now_ms: i64,
        max: usize,
    ) -> Result<Dossier, RegisterError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            touch!(tx, consumer, id, now_ms);
            let d = read!(tx, consumer, id).ok_or_else(|| RegisterError::Unknown(id.to_owned()))?;
            if d.holds(reference) {
                return Err(RegisterError::AlreadySubject(id.to_owned()));
            }
            if d.current().count() >= max {
                return Err(RegisterError::TooManySubjects { id: id.to_owned(), max });
            }
            sqlx::query(
                "INSERT INTO dossier_subjects (consumer, dossier_id, seq, dataset, subject, \
                 added_ms, added_reason, removed_ms, removed_reason) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, '')",
            )
            .bind(consumer)
            .bind(id)
            .bind(d.subjects.len() as i64 + 1)
            .bind(dataset)
            .bind(reference)
            .bind(now_ms)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
            let d = read!(tx, consumer, id).ok_or_else(|| RegisterError::Unknown(id.to_owned()))?;
            tx.commit().await?;
            Ok(d)
        })
    }

    pub(super) async fn remove_subject(
        &self,
        consumer: &str,
        id: &str,
        reference: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<Dossier, RegisterError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            touch!(tx, consumer, id, now_ms);
            let removed = sqlx::query(
                "UPDATE dossier_subjects SET removed_ms = $4, removed_reason = $5 \
                 WHERE consumer = $1 AND dossier_id = $2 AND subject = $3 AND removed_ms = 0",
            )
            .bind(consumer)
            .bind(id)
            .bind(reference)
            .bind(now_ms)
            .bind(reason)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if removed == 0 {
                return Err(RegisterError::NotSubject(id.to_owned()));
            }
            let d = read!(tx, consumer, id).ok_or_else(|| RegisterError::Unknown(id.to_owned()))?;
            tx.commit().await?;
            Ok(d)
        })
    }

    pub(super) async fn close(
        &self,
        consumer: &str,
        id: &str,
        result: &str,
        now_ms: i64,
    ) -> Result<Dossier, RegisterError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let touched = sqlx::query(
                "UPDATE dossiers SET status = 'closed', result = $4, closed_ms = $3, \
                 changes = changes + 1 WHERE consumer = $1 AND dossier_id = $2 \
                 AND status = 'open' AND expires_ms > $3",
            )
            .bind(consumer)
            .bind(id)
            .bind(now_ms)
            .bind(result)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let found = read!(tx, consumer, id);
            if touched == 0 {
                return Err(not_open(found, id, now_ms));
            }
            tx.commit().await?;
            found.ok_or_else(|| RegisterError::Unknown(id.to_owned()))
        })
    }

    pub(super) async fn expire_due(&self, now_ms: i64) -> Result<Vec<Dossier>, RegisterError> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "UPDATE dossiers SET status = 'expired', result = 'expired', closed_ms = $1, \
                 changes = changes + 1 WHERE status = 'open' AND expires_ms <= $1 RETURNING *",
            )
            .bind(now_ms)
            .fetch_all(pool)
            .await?;
            Ok(rows.iter().map(dossier).collect::<Result<_, _>>()?)
        })
    }

    pub(super) async fn purge_ended_before(&self, before_ms: i64) -> Result<u64, RegisterError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "DELETE FROM dossier_subjects WHERE (consumer, dossier_id) IN \
                 (SELECT consumer, dossier_id FROM dossiers \
                  WHERE status <> 'open' AND closed_ms < $1)",
            )
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
            let n = sqlx::query("DELETE FROM dossiers WHERE status <> 'open' AND closed_ms < $1")
                .bind(before_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(n)
        })
    }
}
