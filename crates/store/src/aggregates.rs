//! Exposures and per-unit metric totals: what the event log adds up to.
//!
//! The aggregator folds batches in id order and writes the result together
//! with the id of the last batch folded, in one transaction, so every batch
//! is counted exactly once even across crashes.

use sqlx::Row;

use crate::{Backend, Store, StoreError};

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

/// One time bucket of a variant's metric (an addition when written, the
/// stored total when read).
#[derive(Clone, Debug, PartialEq)]
pub struct BucketRow {
    pub flag: String,
    pub variant: String,
    pub metric: String,
    /// `1m`, `1h` or `1d`.
    pub resolution: String,
    pub start_ms: i64,
    pub x: f64,
    pub y: f64,
    pub events: i64,
    pub max_value: Option<f64>,
    /// A `stats::QuantileSketch` in its byte form.
    pub sketch: Option<Vec<u8>>,
}

/// Everything one fold adds to one environment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FoldWrite {
    pub environment: String,
    pub exposures: Vec<ExposureRow>,
    pub totals: Vec<TotalDelta>,
    pub buckets: Vec<BucketRow>,
    /// Additions to units' histories of CUPED-adjusted metrics.
    pub history: Vec<HistoryDelta>,
    /// Pre-exposure values of units exposed in this fold.
    pub covariates: Vec<CovariateRow>,
}

/// An addition to a unit's history of a metric (all its events, exposed or not).
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryDelta {
    pub metric: String,
    pub unit: String,
    pub x: f64,
    pub y: f64,
    pub events: i64,
}

/// A unit's value of a metric before its first exposure to a flag, as far as
/// the fold saw it: the store adds the unit's history before the fold. Kept
/// only when the exposure is really the unit's first to the flag.
#[derive(Clone, Debug, PartialEq)]
pub struct CovariateRow {
    pub flag: String,
    pub metric: String,
    pub unit: String,
    pub x: f64,
    pub y: f64,
}

/// One unit's pre-exposure value of a metric (CUPED's covariate).
#[derive(Clone, Debug, PartialEq)]
pub struct UnitCovariate {
    pub unit: String,
    pub x: f64,
    pub y: f64,
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
            // Before the exposures and the history of this fold are written:
            // a covariate is the history before the fold plus the fold's own
            // events before the exposure, and only for a first exposure.
            for c in &fold.covariates {
                sqlx::query(
                    "INSERT INTO unit_covariates (environment, flag, metric, unit, x, y) \
                     SELECT CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS TEXT), CAST($4 AS TEXT), \
                     COALESCE((SELECT h.x FROM unit_history h WHERE h.environment = $1 AND h.metric = $3 AND h.unit = $4), 0) \
                     + CAST($5 AS DOUBLE PRECISION), \
                     COALESCE((SELECT h.y FROM unit_history h WHERE h.environment = $1 AND h.metric = $3 AND h.unit = $4), 0) \
                     + CAST($6 AS DOUBLE PRECISION) \
                     WHERE NOT EXISTS (SELECT 1 FROM exposures e WHERE e.environment = $1 AND e.flag = $2 AND e.unit = $4) \
                     ON CONFLICT (environment, flag, metric, unit) DO NOTHING",
                )
                .bind(&fold.environment)
                .bind(&c.flag)
                .bind(&c.metric)
                .bind(&c.unit)
                .bind(c.x)
                .bind(c.y)
                .execute(&mut *tx)
                .await?;
            }
            for chunk in fold.exposures.chunks(ROWS_PER_STATEMENT) {
                let mut sql = String::from(
                    "INSERT INTO exposures (environment, flag, unit, variant, first_at_ms, conflicting) VALUES ",
                );
                push_placeholders(&mut sql, self.backend, chunk.len(), 6);
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
                push_placeholders(&mut sql, self.backend, chunk.len(), 8);
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
            for chunk in fold.history.chunks(ROWS_PER_STATEMENT) {
                let mut sql = String::from(
                    "INSERT INTO unit_history (environment, metric, unit, x, y, events) VALUES ",
                );
                push_placeholders(&mut sql, self.backend, chunk.len(), 6);
                sql.push_str(
                    " ON CONFLICT (environment, metric, unit) DO UPDATE SET \
                     x = unit_history.x + excluded.x, y = unit_history.y + excluded.y, \
                     events = unit_history.events + excluded.events",
                );
                let mut query = sqlx::query(&sql);
                for h in chunk {
                    query = query
                        .bind(&fold.environment)
                        .bind(&h.metric)
                        .bind(&h.unit)
                        .bind(h.x)
                        .bind(h.y)
                        .bind(h.events);
                }
                query.execute(&mut *tx).await?;
            }
            for bucket in &fold.buckets {
                add_to_bucket(&mut tx, &fold.environment, bucket).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The time buckets of a metric under a flag at one resolution with
    /// `from_ms <= start < to_ms`, by variant and time.
    pub async fn metric_buckets(
        &self,
        environment: &str,
        flag: &str,
        metric: &str,
        resolution: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<BucketRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT variant, start_ms, x, y, events, max_value, sketch FROM metric_buckets \
             WHERE environment = $1 AND flag = $2 AND metric = $3 AND resolution = $4 \
             AND start_ms >= $5 AND start_ms < $6 ORDER BY variant, start_ms",
        )
        .bind(environment)
        .bind(flag)
        .bind(metric)
        .bind(resolution)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(BucketRow {
                    flag: flag.to_owned(),
                    variant: row.try_get("variant")?,
                    metric: metric.to_owned(),
                    resolution: resolution.to_owned(),
                    start_ms: row.try_get("start_ms")?,
                    x: row.try_get("x")?,
                    y: row.try_get("y")?,
                    events: row.try_get("events")?,
                    max_value: row.try_get("max_value")?,
                    sketch: row.try_get("sketch")?,
                })
            })
            .collect()
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
        rows.iter().map(unit_total_from_row).collect()
    }

    /// Every unit's pre-exposure value of `metric` for `flag` (units first
    /// exposed while an experiment on the flag adjusted `metric` with CUPED).
    pub async fn unit_covariates(
        &self,
        environment: &str,
        flag: &str,
        metric: &str,
    ) -> Result<Vec<UnitCovariate>, StoreError> {
        let rows = sqlx::query(
            "SELECT unit, x, y FROM unit_covariates \
             WHERE environment = $1 AND flag = $2 AND metric = $3 ORDER BY unit",
        )
        .bind(environment)
        .bind(flag)
        .bind(metric)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UnitCovariate {
                    unit: row.try_get("unit")?,
                    x: row.try_get("x")?,
                    y: row.try_get("y")?,
                })
            })
            .collect()
    }

    /// The variant of every unit exposed to a flag, by unit.
    pub async fn exposed_units(
        &self,
        environment: &str,
        flag: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT unit, variant FROM exposures WHERE environment = $1 AND flag = $2 ORDER BY unit",
        )
        .bind(environment)
        .bind(flag)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("unit")?, row.try_get("variant")?)))
            .collect()
    }

    /// Every unit's total of `metric` under `flag` since the flag's rollout
    /// window started (its total now less its total then; see
    /// `StepCommit::new_window`), for units with events in the window.
    /// Without a window, the running totals.
    pub async fn unit_totals_in_window(
        &self,
        environment: &str,
        flag: &str,
        metric: &str,
    ) -> Result<Vec<UnitTotal>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.variant, t.unit, t.x - COALESCE(b.x, 0) AS x, t.y - COALESCE(b.y, 0) AS y, \
             t.events - COALESCE(b.events, 0) AS events \
             FROM unit_totals t LEFT JOIN unit_baselines b ON b.environment = t.environment \
             AND b.flag = t.flag AND b.metric = t.metric AND b.variant = t.variant AND b.unit = t.unit \
             WHERE t.environment = $1 AND t.flag = $2 AND t.metric = $3 \
             AND t.events - COALESCE(b.events, 0) > 0 ORDER BY t.variant, t.unit",
        )
        .bind(environment)
        .bind(flag)
        .bind(metric)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(unit_total_from_row).collect()
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

fn unit_total_from_row(row: &sqlx::any::AnyRow) -> Result<UnitTotal, StoreError> {
    Ok(UnitTotal {
        variant: row.try_get("variant")?,
        unit: row.try_get("unit")?,
        x: row.try_get("x")?,
        y: row.try_get("y")?,
        events: row.try_get("events")?,
    })
}

/// Appends `($1, …, $k), (…)` for `rows` rows of `columns` parameters; on
/// SQLite anonymous `?` instead, which bind in order: SQLite looks a numbered
/// parameter's name up by scanning a list of all of them, so a statement of
/// hundreds of `$n` costs time quadratic in their number to bind.
fn push_placeholders(sql: &mut String, backend: Backend, rows: usize, columns: usize) {
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..columns {
            if c > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => sql.push_str(&format!("${}", r * columns + c + 1)),
            }
        }
        sql.push(')');
    }
}

/// Adds a bucket delta to its stored row: sums add, the max is the larger,
/// sketches merge. Folds are serialised by the progress row, so this
/// read-modify-write sees no concurrent writer.
async fn add_to_bucket(
    conn: &mut sqlx::AnyConnection,
    environment: &str,
    b: &BucketRow,
) -> Result<(), StoreError> {
    let stored = sqlx::query(
        "SELECT x, y, events, max_value, sketch FROM metric_buckets \
         WHERE environment = $1 AND flag = $2 AND metric = $3 AND resolution = $4 AND variant = $5 AND start_ms = $6",
    )
    .bind(environment)
    .bind(&b.flag)
    .bind(&b.metric)
    .bind(&b.resolution)
    .bind(&b.variant)
    .bind(b.start_ms)
    .fetch_optional(&mut *conn)
    .await?;
    let mut total = b.clone();
    if let Some(row) = stored {
        total.x += row.try_get::<f64, _>("x")?;
        total.y += row.try_get::<f64, _>("y")?;
        total.events += row.try_get::<i64, _>("events")?;
        let old_max: Option<f64> = row.try_get("max_value")?;
        total.max_value = match (old_max, b.max_value) {
            (Some(a), Some(c)) => Some(a.max(c)),
            (a, c) => a.or(c),
        };
        let old_sketch: Option<Vec<u8>> = row.try_get("sketch")?;
        total.sketch = match (old_sketch, &b.sketch) {
            (Some(old), Some(new)) => {
                let corrupt = |e: stats::SketchError| {
                    StoreError::Corrupt(format!("metric bucket sketch: {e}"))
                };
                let mut merged = stats::QuantileSketch::from_bytes(&old).map_err(corrupt)?;
                merged
                    .merge(&stats::QuantileSketch::from_bytes(new).map_err(corrupt)?)
                    .map_err(corrupt)?;
                Some(merged.to_bytes())
            }
            (old, new) => old.or_else(|| new.clone()),
        };
    }
    sqlx::query(
        "INSERT INTO metric_buckets (environment, flag, variant, metric, resolution, start_ms, x, y, events, max_value, sketch) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (environment, flag, metric, resolution, variant, start_ms) DO UPDATE SET \
         x = excluded.x, y = excluded.y, events = excluded.events, max_value = excluded.max_value, sketch = excluded.sketch",
    )
    .bind(environment)
    .bind(&total.flag)
    .bind(&total.variant)
    .bind(&total.metric)
    .bind(&total.resolution)
    .bind(total.start_ms)
    .bind(total.x)
    .bind(total.y)
    .bind(total.events)
    .bind(total.max_value)
    .bind(total.sketch)
    // sqlx's `Any` driver binds a NULL double as PostgreSQL `float4` (its
    // `Real` and `Double` nulls are swapped); a statement kept prepared with
    // that type would refuse the `float8` of a later bucket with a maximum.
    // So the statement without a maximum is prepared anew each time.
    .persistent(total.max_value.is_some())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
