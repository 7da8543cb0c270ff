//! Exposures and per-unit metric totals: what the event log adds up to.
//!
//! The aggregator folds batches in id order and writes the result together
//! with the id of the last batch folded, in one transaction, so every batch
//! is counted exactly once even across crashes.

use sqlx::Row;

use crate::{Store, StoreError};

/// Rows per multi-row INSERT (8 parameters each, well under every limit).
const ROWS_PER_STATEMENT: usize = 100;
/// Units per `IN (…)` lookup.
const UNITS_PER_LOOKUP: usize = 500;

/// An exposure to record (see the `exposures` table).
#[derive(Clone, Debug, PartialEq)]
pub struct ExposureRow {
    pub flag: String,
    pub unit: String,
    pub variant: String,
    pub first_at_ms: i64,
    pub conflicting: bool,
}

/// An addition to one unit's running total.
#[derive(Clone, Debug, PartialEq)]
pub struct TotalDelta {
    pub flag: String,
    pub variant: String,
    pub metric: String,
    pub unit: String,
    pub x: f64,
    pub y: f64,
    pub events: i64,
}

/// Everything one fold adds to one environment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FoldWrite {
    pub environment: String,
    pub exposures: Vec<ExposureRow>,
    pub totals: Vec<TotalDelta>,
}

/// One unit's running total of a metric.
#[derive(Clone, Debug, PartialEq)]
pub struct UnitTotal {
    pub variant: String,
    pub unit: String,
    pub x: f64,
    pub y: f64,
    pub events: i64,
}

/// Exposed units of one variant of a flag.
#[derive(Clone, Debug, PartialEq)]
pub struct VariantExposures {
    pub variant: String,
    pub units: i64,
    /// Units also seen in another variant (they count for their first).
    pub conflicting: i64,
}

impl Store {
    /// The id of the last batch folded into the aggregates.
    pub async fn aggregation_progress(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT last_batch_id FROM aggregation_progress WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("last_batch_id")?)
    }

    /// The id of the newest stored batch (0 when none).
    pub async fn last_batch_id(&self) -> Result<i64, StoreError> {
        let row =
            sqlx::query("SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) AS id FROM event_batches")
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get("id")?)
    }

    /// Adds folds of the batches `(from, through]` to the aggregates. Fails
    /// with `Conflict`, writing nothing, when progress is no longer `from`
    /// (another aggregator got there first).
    pub async fn write_folds(
        &self,
        folds: &[FoldWrite],
        from: i64,
        through: i64,
    ) -> Result<(), StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin_write().await?;
        let moved = sqlx::query("UPDATE aggregation_progress SET last_batch_id = $1 WHERE id = 1 AND last_batch_id = $2")
            .bind(through)
            .bind(from)
            .execute(&mut *tx)
            .await?;
        if moved.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "aggregation progress moved past batch {from}"
            )));
        }
        for fold in folds {
            for chunk in fold.exposures.chunks(ROWS_PER_STATEMENT) {
                let mut sql = String::from(
                    "INSERT INTO exposures (environment, flag, unit, variant, first_at_ms, conflicting) VALUES ",
                );
                push_placeholders(&mut sql, chunk.len(), 6);
                sql.push_str(
                    " ON CONFLICT (environment, flag, unit) DO UPDATE SET conflicting = \
                     CASE WHEN exposures.variant <> excluded.variant OR excluded.conflicting = 1 THEN 1 \
                     ELSE exposures.conflicting END",
                );
                let mut query = sqlx::query(&sql);
                for e in chunk {
                    query = query
                        .bind(&fold.environment)
                        .bind(&e.flag)
                        .bind(&e.unit)
                        .bind(&e.variant)
                        .bind(e.first_at_ms)
                        .bind(i64::from(e.conflicting));
                }
                query.execute(&mut *tx).await?;
            }
            for chunk in fold.totals.chunks(ROWS_PER_STATEMENT) {
                let mut sql = String::from(
                    "INSERT INTO unit_totals (environment, flag, variant, metric, unit, x, y, events) VALUES ",
                );
                push_placeholders(&mut sql, chunk.len(), 8);
                sql.push_str(
                    " ON CONFLICT (environment, flag, metric, variant, unit) DO UPDATE SET \
                     x = unit_totals.x + excluded.x, y = unit_totals.y + excluded.y, \
                     events = unit_totals.events + excluded.events",
                );
                let mut query = sqlx::query(&sql);
                for t in chunk {
                    query = query
                        .bind(&fold.environment)
                        .bind(&t.flag)
                        .bind(&t.variant)
                        .bind(&t.metric)
                        .bind(&t.unit)
                        .bind(t.x)
                        .bind(t.y)
                        .bind(t.events);
                }
                query.execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The recorded first exposures of these units: (unit, flag, variant, first_at_ms).
    pub async fn exposures_of(
        &self,
        environment: &str,
        units: &[String],
    ) -> Result<Vec<(String, String, String, i64)>, StoreError> {
        let mut out = Vec::new();
        for chunk in units.chunks(UNITS_PER_LOOKUP) {
            let mut sql = String::from(
                "SELECT unit, flag, variant, first_at_ms FROM exposures WHERE environment = $1 AND unit IN (",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${}", i + 2));
            }
            sql.push(')');
            let mut query = sqlx::query(&sql).bind(environment);
            for unit in chunk {
                query = query.bind(unit);
            }
            for row in query.fetch_all(&self.pool).await? {
                out.push((
                    row.try_get("unit")?,
                    row.try_get("flag")?,
                    row.try_get("variant")?,
                    row.try_get("first_at_ms")?,
                ));
            }
        }
        Ok(out)
    }

    /// Every unit's running total of `metric` under `flag`, by variant and unit.
    pub async fn unit_totals(
        &self,
        environment: &str,
        flag: &str,
        metric: &str,
    ) -> Result<Vec<UnitTotal>, StoreError> {
        let rows = sqlx::query(
            "SELECT variant, unit, x, y, events FROM unit_totals \
             WHERE environment = $1 AND flag = $2 AND metric = $3 ORDER BY variant, unit",
        )
        .bind(environment)
        .bind(flag)
        .bind(metric)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UnitTotal {
                    variant: row.try_get("variant")?,
                    unit: row.try_get("unit")?,
                    x: row.try_get("x")?,
                    y: row.try_get("y")?,
                    events: row.try_get("events")?,
                })
            })
            .collect()
    }

    /// Exposed units per variant of a flag.
    pub async fn exposure_counts(
        &self,
        environment: &str,
        flag: &str,
    ) -> Result<Vec<VariantExposures>, StoreError> {
        let rows = sqlx::query(
            "SELECT variant, CAST(COUNT(*) AS BIGINT) AS units, CAST(SUM(conflicting) AS BIGINT) AS conflicting \
             FROM exposures WHERE environment = $1 AND flag = $2 GROUP BY variant ORDER BY variant",
        )
        .bind(environment)
        .bind(flag)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(VariantExposures {
                    variant: row.try_get("variant")?,
                    units: row.try_get("units")?,
                    conflicting: row.try_get("conflicting")?,
                })
            })
            .collect()
    }
}

/// Appends `($1, …, $k), (…)` for `rows` rows of `columns` parameters.
fn push_placeholders(sql: &mut String, rows: usize, columns: usize) {
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..columns {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", r * columns + c + 1));
        }
        sql.push(')');
    }
}
