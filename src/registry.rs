//! The registry: every version of the connectors, consumers and grants files the gateway
//! has run, in SQLite, with who changed them and why. The config files seed version 1; after
//! that the registry is what the gateway runs: a reload from the files or a rollback adds a
//! version, and a restart resumes the latest.

use crate::audit::record::now_ms;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};
use std::path::{Path, PathBuf};

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

/// Why the registry could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry: {0}")]
    Database(#[from] sqlx::Error),
    #[error("registry: {0}")]
    Store(#[from] crate::audit::store::StoreError),
    #[error("registry: a version's files do not read back: {0}")]
    Files(#[from] serde_json::Error),
    #[error("registry: cannot create {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("registry: cannot open {}: {source}", path.display())]
    Open { path: PathBuf, source: sqlx::Error },
    #[error(
        "version {newest} was made meanwhile (by another replica); this change was made against version {after} and is not applied: send it again"
    )]
    Conflict { after: i64, newest: i64 },
}

fn version<R: Row>(row: &R) -> Result<Version, RegistryError>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'d> String: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> i64: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
{
    let files: String = row.try_get("files")?;
    Ok(Version {
        version: row.try_get("version")?,
        time_ms: row.try_get("time_ms")?,
        actor: row.try_get("actor")?,
        change: row.try_get("change")?,
        files: serde_json::from_str(&files)?,
    })
}

impl Registry {
    /// Opens (creating) the registry file.
    pub async fn open(path: &Path) -> Result<Registry, RegistryError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| RegistryError::CreateDir {
                dir: dir.to_owned(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(|source| RegistryError::Open {
                path: path.to_owned(),
                source,
            })?;
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
        .await?;
        Ok(Registry::Sqlite(pool))
    }

    /// The registry in a PostgreSQL schema (its table comes with the store's migrations).
    pub async fn postgres(url: &str, schema: &str) -> Result<Registry, RegistryError> {
        Ok(crate::audit::postgres::connect(url, schema, true, 2)
            .await
            .map(Registry::Postgres)?)
    }

    pub async fn latest(&self) -> Result<Option<Version>, RegistryError> {
        const SQL: &str = "SELECT * FROM registry_versions ORDER BY version DESC LIMIT 1";
        match self {
            Registry::Sqlite(pool) => {
                let row = sqlx::query(SQL).fetch_optional(pool).await?;
                row.as_ref().map(version).transpose()
            }
            Registry::Postgres(pool) => {
                let row = sqlx::query(SQL).fetch_optional(pool).await?;
                row.as_ref().map(version).transpose()
            }
        }
    }

    /// The newest version number, without the files (cheap enough to poll).
    pub async fn latest_number(&self) -> Result<Option<i64>, RegistryError> {
        const SQL: &str = "SELECT MAX(version) FROM registry_versions";
        match self {
            Registry::Sqlite(pool) => Ok(sqlx::query_scalar(SQL).fetch_one(pool).await?),
            Registry::Postgres(pool) => Ok(sqlx::query_scalar(SQL).fetch_one(pool).await?),
        }
    }

    pub async fn get(&self, v: i64) -> Result<Option<Version>, RegistryError> {
        match self {
            Registry::Sqlite(pool) => {
                let row = sqlx::query("SELECT * FROM registry_versions WHERE version = ?")
                    .bind(v)
                    .fetch_optional(pool)
                    .await?;
                row.as_ref().map(version).transpose()
            }
            Registry::Postgres(pool) => {
                let row = sqlx::query("SELECT * FROM registry_versions WHERE version = $1")
                    .bind(v)
                    .fetch_optional(pool)
                    .await?;
                row.as_ref().map(version).transpose()
            }
        }
    }

    /// Every version, newest first (files included).
    pub async fn history(&self) -> Result<Vec<Version>, RegistryError> {
        const SQL: &str = "SELECT * FROM registry_versions ORDER BY version DESC";
        match self {
            Registry::Sqlite(pool) => {
                let rows = sqlx::query(SQL).fetch_all(pool).await?;
                rows.iter().map(version).collect()
            }
            Registry::Postgres(pool) => {
                let rows = sqlx::query(SQL).fetch_all(pool).await?;
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
    ) -> Result<i64, RegistryError> {
        let files = serde_json::to_string(files)?;
        match self {
            Registry::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let newest: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(version) FROM registry_versions")
                        .fetch_one(&mut *tx)
                        .await?;
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
                .await?;
                tx.commit().await?;
                Ok(row.try_get("version")?)
            }
            Registry::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext('lienthong registry'))")
                    .execute(&mut *tx)
                    .await?;
                let newest: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(version) FROM registry_versions")
                        .fetch_one(&mut *tx)
                        .await?;
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
                .await?;
                tx.commit().await?;
                Ok(v)
            }
        }
    }
}

/// Refuses a change made against `after` when a newer version exists.
fn conflict(after: Option<i64>, newest: Option<i64>) -> Result<(), RegistryError> {
    match (after, newest) {
        (Some(after), Some(newest)) if newest > after => {
            Err(RegistryError::Conflict { after, newest })
        }
        _ => Ok(()),
    }
}
