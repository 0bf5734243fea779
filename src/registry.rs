//! The registry: every version of the connectors, consumers and grants files the gateway
//! has run, in SQLite, with who changed them and why. The config files seed version 1; after
//! that the registry is what the gateway runs: a reload from the files or a rollback adds a
//! version, and a restart resumes the latest.

use crate::audit::record::now_ms;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};
use std::path::Path;

/// One version: the files (name, text), and its history entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub version: i64,
    pub time_ms: i64,
    pub actor: String,
    pub change: String,
    pub files: Vec<(String, String)>,
}

/// Where versions are kept: a SQLite file (one gateway), or the PostgreSQL schema every
/// replica shares.
pub enum Registry {
    Sqlite(SqlitePool),
    Postgres(sqlx::PgPool),
}

fn err(e: impl std::fmt::Display) -> String {
    format!("registry: {e}")
}

fn version<R: Row>(row: &R) -> Result<Version, String>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'d> String: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> i64: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
{
    let files: String = row.try_get("files").map_err(err)?;
    Ok(Version {
        version: row.try_get("version").map_err(err)?,
        time_ms: row.try_get("time_ms").map_err(err)?,
        actor: row.try_get("actor").map_err(err)?,
        change: row.try_get("change").map_err(err)?,
        files: serde_json::from_str(&files).map_err(err)?,
    })
}

impl Registry {
    /// Opens (creating) the registry file.
    pub async fn open(path: &Path) -> Result<Registry, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS registry_versions (
                version INTEGER PRIMARY KEY,
                time_ms INTEGER NOT NULL,
                actor TEXT NOT NULL,
                change TEXT NOT NULL,
                files TEXT NOT NULL
            )",
        )
        .execute(&pool)
        .await
        .map_err(err)?;
        Ok(Registry::Sqlite(pool))
    }

    /// The registry in a PostgreSQL schema (its table comes with the store's migrations).
    pub async fn postgres(url: &str, schema: &str) -> Result<Registry, String> {
        crate::audit::postgres::connect(url, schema, true, 2)
            .await
            .map(Registry::Postgres)
            .map_err(err)
    }

    pub async fn latest(&self) -> Result<Option<Version>, String> {
        const SQL: &str = "SELECT * FROM registry_versions ORDER BY version DESC LIMIT 1";
        match self {
            Registry::Sqlite(pool) => {
                let row = sqlx::query(SQL).fetch_optional(pool).await.map_err(err)?;
                row.as_ref().map(version).transpose()
            }
            Registry::Postgres(pool) => {
                let row = sqlx::query(SQL).fetch_optional(pool).await.map_err(err)?;
                row.as_ref().map(version).transpose()
            }
        }
    }

    /// The newest version number, without the files (cheap enough to poll).
    pub async fn latest_number(&self) -> Result<Option<i64>, String> {
        const SQL: &str = "SELECT MAX(version) FROM registry_versions";
        match self {
            Registry::Sqlite(pool) => sqlx::query_scalar(SQL).fetch_one(pool).await,
            Registry::Postgres(pool) => sqlx::query_scalar(SQL).fetch_one(pool).await,
        }
        .map_err(err)
    }

    pub async fn get(&self, v: i64) -> Result<Option<Version>, String> {
        match self {
            Registry::Sqlite(pool) => {
                let row = sqlx::query("SELECT * FROM registry_versions WHERE version = ?")
                    .bind(v)
                    .fetch_optional(pool)
                    .await
                    .map_err(err)?;
                row.as_ref().map(version).transpose()
            }
            Registry::Postgres(pool) => {
                let row = sqlx::query("SELECT * FROM registry_versions WHERE version = $1")
                    .bind(v)
                    .fetch_optional(pool)
                    .await
                    .map_err(err)?;
                row.as_ref().map(version).transpose()
            }
        }
    }

    /// Every version, newest first (files included).
    pub async fn history(&self) -> Result<Vec<Version>, String> {
        const SQL: &str = "SELECT * FROM registry_versions ORDER BY version DESC";
        match self {
            Registry::Sqlite(pool) => {
                let rows = sqlx::query(SQL).fetch_all(pool).await.map_err(err)?;
                rows.iter().map(version).collect()
            }
            Registry::Postgres(pool) => {
                let rows = sqlx::query(SQL).fetch_all(pool).await.map_err(err)?;
                rows.iter().map(version).collect()
            }
        }
    }

    /// Adds a version; returns its number. Replicas sharing a registry take the next number
    /// under a lock; with `after`, only if the newest version is still that one, so a change
    /// made against an older version never silently undoes another replica's.
    pub async fn record(
        &self,
        actor: &str,
        change: &str,
        files: &[(String, String)],
        after: Option<i64>,
    ) -> Result<i64, String> {
        let files = serde_json::to_string(files).map_err(err)?;
        match self {
            Registry::Sqlite(pool) => {
                let mut tx = pool.begin().await.map_err(err)?;
                let newest: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(version) FROM registry_versions")
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(err)?;
                conflict(after, newest)?;
                let row = sqlx::query(
                    "INSERT INTO registry_versions (time_ms, actor, change, files) \
                     VALUES (?, ?, ?, ?) RETURNING version",
                )
                .bind(now_ms())
                .bind(actor)
                .bind(change)
                .bind(files)
                .fetch_one(&mut *tx)
                .await
                .map_err(err)?;
                tx.commit().await.map_err(err)?;
                row.try_get("version").map_err(err)
            }
            Registry::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(err)?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext('lienthong registry'))")
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                let newest: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(version) FROM registry_versions")
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(err)?;
                conflict(after, newest)?;
                let v: i64 = sqlx::query_scalar(
                    "INSERT INTO registry_versions (version, time_ms, actor, change, files) \
                     SELECT COALESCE(MAX(version), 0) + 1, $1, $2, $3, $4 FROM registry_versions \
                     RETURNING version",
                )
                .bind(now_ms())
                .bind(actor)
                .bind(change)
                .bind(files)
                .fetch_one(&mut *tx)
                .await
                .map_err(err)?;
                tx.commit().await.map_err(err)?;
                Ok(v)
            }
        }
    }
}

/// Refuses a change made against `after` when a newer version exists.
fn conflict(after: Option<i64>, newest: Option<i64>) -> Result<(), String> {
    match (after, newest) {
        (Some(a), Some(n)) if n > a => Err(format!(
            "version {n} was made meanwhile (by another replica); this change was made against version {a} and is not applied: send it again"
        )),
        _ => Ok(()),
    }
}
