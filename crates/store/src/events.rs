//! The event log: validated batches, one row each, committed before the
//! sender is answered. Aggregates are derived from this log.

use sqlx::Row;

use crate::{Store, StoreError, now_ms};

/// A validated batch, ready to store.
#[derive(Clone, Debug)]
pub struct NewBatch {
    pub environment: String,
    /// A retried batch with the same key (in the same environment) is stored once.
    pub idempotency_key: Option<String>,
    pub event_count: i64,
    /// The events as JSON text.
    pub events: String,
}

/// What storing a batch did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    Stored {
        id: i64,
    },
    /// A batch with this idempotency key was stored before; nothing was added.
    Duplicate {
        id: i64,
        event_count: i64,
    },
}

/// One stored batch, as the aggregator reads it.
#[derive(Clone, Debug)]
pub struct StoredBatch {
    pub id: i64,
    pub environment: String,
    pub received_at_ms: i64,
    pub event_count: i64,
    pub events: String,
}

impl Store {
    /// Stores several batches in one transaction, so they share one fsync
    /// (group commit). Every batch is whole or absent.
    pub async fn append_batches(&self, batches: &[NewBatch]) -> Result<Vec<Appended>, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin_write().await?;
        if self.backend == crate::Backend::Postgres {
            // The aggregator folds batches in id order and keeps only the last
            // id folded, so ids must become visible in order. SQLite's single
            // writer guarantees that; across PostgreSQL clients this lock
            // does (it also makes the idempotency check below race-free).
            sqlx::query("LOCK TABLE event_batches IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
        }
        let now = now_ms();
        let mut out = Vec::with_capacity(batches.len());
        for batch in batches {
            if let Some(key) = &batch.idempotency_key {
                let earlier = sqlx::query(
                    "SELECT id, event_count FROM event_batches WHERE environment = $1 AND idempotency_key = $2",
                )
                .bind(&batch.environment)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = earlier {
                    out.push(Appended::Duplicate {
                        id: row.try_get("id")?,
                        event_count: row.try_get("event_count")?,
                    });
                    continue;
                }
            }
            let row = sqlx::query(
                "INSERT INTO event_batches (environment, idempotency_key, received_at_ms, event_count, events) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(&batch.environment)
            .bind(batch.idempotency_key.as_deref())
            .bind(now)
            .bind(batch.event_count)
            .bind(&batch.events)
            .fetch_one(&mut *tx)
            .await?;
            out.push(Appended::Stored {
                id: row.try_get("id")?,
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Batches with an id above `after_id`, oldest first.
    pub async fn batches_after(
        &self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<StoredBatch>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, environment, received_at_ms, event_count, events FROM event_batches \
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredBatch {
                    id: row.try_get("id")?,
                    environment: row.try_get("environment")?,
                    received_at_ms: row.try_get("received_at_ms")?,
                    event_count: row.try_get("event_count")?,
                    events: row.try_get("events")?,
                })
            })
            .collect()
    }

    /// Events stored in an environment (all batches).
    pub async fn event_count(&self, environment: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT CAST(COALESCE(SUM(event_count), 0) AS BIGINT) AS n FROM event_batches WHERE environment = $1")
            .bind(environment)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}
