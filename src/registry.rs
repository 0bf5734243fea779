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

pub struct Registry {
    pool: SqlitePool,
}

fn err(e: impl std::fmt::Display) -> String {
    format!("registry: {e}")
}

fn version(row: &sqlx::sqlite::SqliteRow) -> Result<Version, String> {
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
        Ok(Registry { pool })
    }

    pub async fn latest(&self) -> Result<Option<Version>, String> {
        let row = sqlx::query("SELECT * FROM registry_versions ORDER BY version DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(version).transpose()
    }

    pub async fn get(&self, v: i64) -> Result<Option<Version>, String> {
        let row = sqlx::query("SELECT * FROM registry_versions WHERE version = ?")
            .bind(v)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.as_ref().map(version).transpose()
    }

    /// Every version, newest first (files included).
    pub async fn history(&self) -> Result<Vec<Version>, String> {
        let rows = sqlx::query("SELECT * FROM registry_versions ORDER BY version DESC")
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(version).collect()
    }

    /// Adds a version; returns its number.
    pub async fn record(
        &self,
        actor: &str,
        change: &str,
        files: &[(String, String)],
    ) -> Result<i64, String> {
        let files = serde_json::to_string(files).map_err(err)?;
        let row = sqlx::query(
            "INSERT INTO registry_versions (time_ms, actor, change, files) VALUES (?, ?, ?, ?) \
             RETURNING version",
        )
        .bind(now_ms())
        .bind(actor)
        .bind(change)
        .bind(files)
        .fetch_one(&self.pool)
        .await
        .map_err(err)?;
        row.try_get("version").map_err(err)
    }
}
