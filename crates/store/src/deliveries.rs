//! The webhook deliveries queue: what to send to which channel, enqueued in
//! the transaction of what it announces, claimed by one sender at a time and
//! retried with backoff until delivered or given up.
//!
//! Invariant: a delivery is sent by at most one sender per attempt. A claim
//! moves `next_attempt_at_ms` forward (the lease) only over the value it
//! read, so of two replicas claiming the same row only one changes it.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::{Store, StoreError, now_ms};

/// A delivery waiting to be sent (or being retried).
pub const DELIVERY_QUEUED: &str = "queued";
/// The receiver answered 2xx.
pub const DELIVERY_DELIVERED: &str = "delivered";
/// Every attempt failed for as long as the retry policy allows.
pub const DELIVERY_FAILED: &str = "failed";

/// Deliveries listed at most by default, and at most at all.
pub const DEFAULT_DELIVERY_LIMIT: i64 = 100;
pub const MAX_DELIVERY_LIMIT: i64 = 1000;

/// A delivery to enqueue.
#[derive(Clone, Debug, PartialEq)]
pub struct NewDelivery {
    pub channel: String,
    /// The event's name (`rollback`, `phase_started`, …).
    pub event: String,
    /// The body to POST, already in the channel's format.
    pub body: String,
}

/// A delivery as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub id: i64,
    pub environment: String,
    pub channel: String,
    pub event: String,
    pub body: String,
    pub created_at_ms: i64,
    pub next_attempt_at_ms: i64,
    /// Attempts made so far (finished, successful or not).
    pub attempts: i64,
    /// `queued`, `delivered` or `failed`.
    pub status: String,
    pub last_error: Option<String>,
    pub delivered_at_ms: Option<i64>,
}

/// Which deliveries to list.
#[derive(Clone, Debug, Default)]
pub struct DeliveryFilter {
    pub environment: Option<String>,
    pub status: Option<String>,
    pub limit: Option<i64>,
}

const COLUMNS: &str = "id, environment, channel, event, body, created_at_ms, next_attempt_at_ms, \
                       attempts, status, last_error, delivered_at_ms";

fn delivery_from_row(row: &AnyRow) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        id: row.try_get("id")?,
        environment: row.try_get("environment")?,
        channel: row.try_get("channel")?,
        event: row.try_get("event")?,
        body: row.try_get("body")?,
        created_at_ms: row.try_get("created_at_ms")?,
        next_attempt_at_ms: row.try_get("next_attempt_at_ms")?,
        attempts: row.try_get("attempts")?,
        status: row.try_get("status")?,
        last_error: row.try_get("last_error")?,
        delivered_at_ms: row.try_get("delivered_at_ms")?,
    })
}

/// Inserts `deliveries` inside the caller's write transaction, due now.
pub(crate) async fn enqueue_in(
    tx: &mut AnyConnection,
    environment: &str,
    deliveries: &[NewDelivery],
) -> Result<Vec<i64>, StoreError> {
    let now = now_ms();
    let mut ids = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let row = sqlx::query(
            "INSERT INTO deliveries (environment, channel, event, body, created_at_ms, \
             next_attempt_at_ms, attempts, status) VALUES ($1, $2, $3, $4, $5, $5, 0, $6) RETURNING id",
        )
        .bind(environment)
        .bind(&delivery.channel)
        .bind(&delivery.event)
        .bind(&delivery.body)
        .bind(now)
        .bind(DELIVERY_QUEUED)
        .fetch_one(&mut *tx)
        .await?;
        ids.push(row.try_get("id")?);
    }
    Ok(ids)
}

impl Store {
    /// Enqueues deliveries on their own (when there is no transaction of what
    /// they announce to join); returns their ids.
    pub async fn enqueue_deliveries(
        &self,
        environment: &str,
        deliveries: &[NewDelivery],
    ) -> Result<Vec<i64>, StoreError> {
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        let _write = self.write.lock().await;
        let mut tx = self.begin_write().await?;
        let ids = enqueue_in(&mut tx, environment, deliveries).await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// Claims up to `limit` queued deliveries due at `now_ms`, oldest due
    /// first: each is leased until `now_ms + lease_ms`, so no other sender
    /// claims it meanwhile. A sender that dies holding a lease only delays
    /// the delivery until the lease ends.
    ///
    /// Only the oldest queued delivery of each channel is claimable: a
    /// channel gets its deliveries one at a time, in the order they were
    /// enqueued, and a delivery being retried holds back the ones after it
    /// (a rollback's alerts never arrive out of order).
    pub async fn claim_due_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin_write().await?;
        let due = sqlx::query(
            "SELECT id, next_attempt_at_ms FROM deliveries d \
             WHERE status = $1 AND next_attempt_at_ms <= $2 AND NOT EXISTS (\
                 SELECT 1 FROM deliveries e WHERE e.environment = d.environment \
                 AND e.channel = d.channel AND e.status = $1 AND e.id < d.id) \
             ORDER BY next_attempt_at_ms, id LIMIT $3",
        )
        .bind(DELIVERY_QUEUED)
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(due.len());
        for row in &due {
            let id: i64 = row.try_get("id")?;
            let read: i64 = row.try_get("next_attempt_at_ms")?;
            let row = sqlx::query(&format!(
                "UPDATE deliveries SET next_attempt_at_ms = $1 \
                 WHERE id = $2 AND status = $3 AND next_attempt_at_ms = $4 RETURNING {COLUMNS}"
            ))
            .bind(now_ms + lease_ms)
            .bind(id)
            .bind(DELIVERY_QUEUED)
            .bind(read)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = row {
                claimed.push(delivery_from_row(&row)?);
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Records a successful attempt.
    pub async fn mark_delivered(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        let _write = self.write.lock().await;
        sqlx::query(
            "UPDATE deliveries SET status = $1, attempts = attempts + 1, delivered_at_ms = $2, \
             last_error = NULL WHERE id = $3 AND status = $4",
        )
        .bind(DELIVERY_DELIVERED)
        .bind(now_ms)
        .bind(id)
        .bind(DELIVERY_QUEUED)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a failed attempt: queued again for `retry_at_ms`, or, when
    /// `None`, given up (`failed`).
    pub async fn mark_attempt_failed(
        &self,
        id: i64,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let _write = self.write.lock().await;
        let query = match retry_at_ms {
            Some(at) => sqlx::query(
                "UPDATE deliveries SET attempts = attempts + 1, last_error = $1, next_attempt_at_ms = $2 \
                 WHERE id = $3 AND status = $4",
            )
            .bind(error)
            .bind(at),
            None => sqlx::query(
                "UPDATE deliveries SET attempts = attempts + 1, last_error = $1, status = $2 \
                 WHERE id = $3 AND status = $4",
            )
            .bind(error)
            .bind(DELIVERY_FAILED),
        };
        query
            .bind(id)
            .bind(DELIVERY_QUEUED)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// When the next claimable delivery (the oldest queued of its channel)
    /// is due; `None` when none is queued.
    pub async fn next_delivery_due_ms(&self) -> Result<Option<i64>, StoreError> {
        let row =
            sqlx::query("SELECT MIN(next_attempt_at_ms) AS due FROM deliveries d WHERE status = $1 \
                         AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.environment = d.environment \
                         AND e.channel = d.channel AND e.status = $1 AND e.id < d.id)")
                .bind(DELIVERY_QUEUED)
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get("due")?)
    }

    /// Deliveries, newest first.
    pub async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        let limit = filter
            .limit
            .unwrap_or(DEFAULT_DELIVERY_LIMIT)
            .clamp(1, MAX_DELIVERY_LIMIT);
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM deliveries \
             WHERE ($1 IS NULL OR environment = $1) AND ($2 IS NULL OR status = $2) \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(filter.environment.as_deref())
        .bind(filter.status.as_deref())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }
}
