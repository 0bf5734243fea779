//! Misuse alerts, kept beside the dossiers for operators and auditors: one row per (rule,
//! consumer, officer, dossier, period), so replicas that see the same firing raise it once.
//! An auditor acknowledges an alert with a note.

use super::{Register, RegisterError, Store};
use sqlx::Row;

/// An alert as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub id: String,
    pub rule: String,
    pub consumer: String,
    /// The officer, or empty for a consumer's or a dossier's period.
    pub officer_id: String,
    /// The dossier, for the dossier rule.
    pub dossier_id: String,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub count: i64,
    pub threshold: i64,
    /// "alert" or "refuse".
    pub action: String,
    pub raised_ms: i64,
    /// The replica that raised it.
    pub instance: String,
    /// When and by whom it was acknowledged, with the note; `None` while open.
    pub acknowledged_ms: Option<i64>,
    pub acknowledged_by: String,
    pub note: String,
}

/// Which alerts to list; all that are set must hold. Newest first.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub rule: Option<String>,
    pub consumer: Option<String>,
    pub officer_id: Option<String>,
    pub acknowledged: Option<bool>,
    /// Raised at or after, before or at (Unix ms).
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Continue after this (raised_ms, id) of a previous page.
    pub after: Option<(i64, String)>,
    pub limit: usize,
}

/// One page of alerts and where the next starts.
#[derive(Debug, Clone)]
pub struct AlertPage {
    pub alerts: Vec<Alert>,
    pub next: Option<(i64, String)>,
}

fn alert<R: Row>(row: &R) -> Result<Alert, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'d> String: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> i64: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
{
    let acknowledged: i64 = row.try_get("acknowledged_ms")?;
    Ok(Alert {
        id: row.try_get("id")?,
        rule: row.try_get("rule")?,
        consumer: row.try_get("consumer")?,
        officer_id: row.try_get("officer_id")?,
        dossier_id: row.try_get("dossier_id")?,
        window_start_ms: row.try_get("window_start_ms")?,
        window_end_ms: row.try_get("window_end_ms")?,
        count: row.try_get("count")?,
        threshold: row.try_get("threshold")?,
        action: row.try_get("action")?,
        raised_ms: row.try_get("raised_ms")?,
        instance: row.try_get("instance")?,
        acknowledged_ms: (acknowledged > 0).then_some(acknowledged),
        acknowledged_by: row.try_get("acknowledged_by")?,
        note: row.try_get("note")?,
    })
}

impl Store {
    async fn raise(&self, a: &Alert) -> Result<bool, RegisterError> {
        on_pool!(self, pool => {
            let inserted = sqlx::query(
                "INSERT INTO misuse_alerts (id, rule, consumer, officer_id, dossier_id, \
                 window_start_ms, window_end_ms, count, threshold, action, raised_ms, instance, \
                 acknowledged_ms, acknowledged_by, note) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, '', '') \
                 ON CONFLICT (rule, consumer, officer_id, dossier_id, window_start_ms) DO NOTHING",
            )
            .bind(&a.id)
            .bind(&a.rule)
            .bind(&a.consumer)
            .bind(&a.officer_id)
            .bind(&a.dossier_id)
            .bind(a.window_start_ms)
            .bind(a.window_end_ms)
            .bind(a.count)
            .bind(a.threshold)
            .bind(&a.action)
            .bind(a.raised_ms)
            .bind(&a.instance)
            .execute(pool)
            .await?
            .rows_affected();
            Ok(inserted == 1)
        })
    }

    async fn list(&self, f: &AlertFilter) -> Result<Vec<Alert>, RegisterError> {
        on_pool!(self, pool => {
            let mut b = sqlx::QueryBuilder::new("SELECT * FROM misuse_alerts WHERE 1 = 1");
            for (column, value) in [
                ("rule", &f.rule),
                ("consumer", &f.consumer),
                ("officer_id", &f.officer_id),
            ] {
                if let Some(v) = value {
                    b.push(format!(" AND {column} = ")).push_bind(v.clone());
                }
            }
            match f.acknowledged {
                Some(true) => {
                    b.push(" AND acknowledged_ms > 0");
                }
                Some(false) => {
                    b.push(" AND acknowledged_ms = 0");
                }
                None => {}
            }
            if let Some(from) = f.from_ms {
                b.push(" AND raised_ms >= ").push_bind(from);
            }
            if let Some(to) = f.to_ms {
                b.push(" AND raised_ms <= ").push_bind(to);
            }
            if let Some((time, id)) = &f.after {
                b.push(" AND (raised_ms < ")
                    .push_bind(*time)
                    .push(" OR (raised_ms = ")
                    .push_bind(*time)
                    .push(" AND id < ")
                    .push_bind(id.clone())
                    .push("))");
            }
            b.push(" ORDER BY raised_ms DESC, id DESC LIMIT ")
                .push_bind(f.limit as i64);
            let rows = b.build().fetch_all(pool).await?;
            Ok(rows.iter().map(alert).collect::<Result<_, _>>()?)
        })
    }

    async fn acknowledge(
        &self,
        id: &str,
        by: &str,
        note: &str,
        now_ms: i64,
    ) -> Result<Option<Alert>, RegisterError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE misuse_alerts SET acknowledged_ms = $2, acknowledged_by = $3, note = $4 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(now_ms)
            .bind(by)
            .bind(note)
            .execute(pool)
            .await?;
            let row = sqlx::query("SELECT * FROM misuse_alerts WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            Ok(row.as_ref().map(alert).transpose()?)
        })
    }
}

impl Register {
    /// Keeps an alert; `false` when the same firing was raised already (here or by another
    /// replica), so that it is recorded once.
    pub async fn raise(&self, alert: &Alert) -> Result<bool, RegisterError> {
        self.store.raise(alert).await
    }

    /// One page of alerts, newest first.
    pub async fn alerts(&self, filter: &AlertFilter) -> Result<AlertPage, RegisterError> {
        let mut f = filter.clone();
        f.limit = filter.limit + 1;
        let mut alerts = self.store.list(&f).await?;
        let next = (alerts.len() > filter.limit).then(|| {
            alerts.truncate(filter.limit);
            alerts
                .last()
                .map(|a| (a.raised_ms, a.id.clone()))
                .unwrap_or_default()
        });
        Ok(AlertPage { alerts, next })
    }

    /// Acknowledges an alert with a note (again: the latest note stands); `None` when no
    /// alert has that id.
    pub async fn acknowledge(
        &self,
        id: &str,
        by: &str,
        note: &str,
        now_ms: i64,
    ) -> Result<Option<Alert>, RegisterError> {
        self.store.acknowledge(id, by, note, now_ms).await
    }
}
