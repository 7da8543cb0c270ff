//! The write path: validated batches go through a bounded queue to one writer
//! task, which commits every batch waiting at that moment in one transaction
//! (group commit: one fsync for many senders) and only then answers them.
//!
//! Backpressure: when the queue is full the sender is told to retry later
//! (HTTP 429) instead of the server buffering without bound.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use store::{Appended, NewBatch, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::aggregator::{self, Progress};
use crate::event::Event;

/// Batches that may wait for the writer; beyond this, senders get 429.
pub const QUEUE_BATCHES: usize = 256;
/// Committed batches the aggregator may be behind; beyond this, senders get
/// 429 until it catches up, so the backlog (and its memory) stays bounded.
pub const MAX_AGGREGATION_LAG_BATCHES: i64 = 2_000;
/// Most batches one transaction commits.
pub const MAX_GROUP: usize = 64;
/// How often exposures recorded by evaluations are written.
const EXPOSURE_FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// Exposures kept in memory between flushes; beyond this, new ones are
/// dropped (and counted) rather than growing memory.
const MAX_PENDING_EXPOSURES: usize = 100_000;
/// Recorded exposures per stored batch.
const EXPOSURES_PER_BATCH: usize = 2_000;
/// Slots of the table of recent exposures (8 bytes each).
const MAX_REMEMBERED_EXPOSURES: usize = 1 << 20;

/// Why a batch was not stored.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full: retry after a moment.
    #[error("ingestion is behind; retry shortly")]
    Overloaded,
    /// The writer has stopped (the server is shutting down).
    #[error("the server is shutting down")]
    Closed,
    /// The database did not take the batch (it is unreachable or failing).
    #[error("the database did not store the batch: {0}")]
    Failed(String),
}

impl From<StoreError> for SubmitError {
    fn from(e: StoreError) -> Self {
        SubmitError::Failed(e.to_string())
    }
}

/// What the sender is told on success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub batch_id: i64,
    pub accepted: usize,
    /// The batch repeats an idempotency key; it was not stored again.
    pub duplicate: bool,
}

struct Job {
    batch: NewBatch,
    reply: oneshot::Sender<Result<Appended, Arc<StoreError>>>,
}

/// Exposures recorded by evaluations, waiting for the next flush.
#[derive(Default)]
struct ExposureBuffer {
    /// (environment, exposure)
    pending: Vec<(String, Event)>,
    seen: SeenTable,
    dropped: u64,
}

/// Fingerprints of recent exposures, to skip a unit's repeats: a
/// direct-mapped table, so recording never rehashes or clears a large set
/// while evaluations wait on the lock. A collision only forgets an exposure,
/// which then is recorded again (harmless: the store keeps the first).
struct SeenTable {
    slots: Vec<u64>,
}

impl Default for SeenTable {
    fn default() -> Self {
        SeenTable {
            slots: vec![0; MAX_REMEMBERED_EXPOSURES],
        }
    }
}

impl SeenTable {
    /// Remembers `fingerprint`; returns whether it was already there.
    fn check_and_insert(&mut self, fingerprint: u64) -> bool {
        let fingerprint = fingerprint.max(1); // 0 marks an empty slot
        let index = (fingerprint % self.slots.len() as u64) as usize;
        let seen = self.slots[index] == fingerprint;
        self.slots[index] = fingerprint;
        seen
    }
}

/// A handle on the pipeline; cheap to clone.
#[derive(Clone)]
pub struct Ingestor {
    queue: mpsc::Sender<Job>,
    progress: Arc<Progress>,
    exposures: Arc<Mutex<ExposureBuffer>>,
}

impl Ingestor {
    /// Starts the writer and the exposure flusher on the current runtime.
    pub fn start(store: Store) -> Ingestor {
        Ingestor::with_queue(store, QUEUE_BATCHES)
    }

    /// Like [`Ingestor::start`] with room for `capacity` waiting batches.
    pub fn with_queue(store: Store, capacity: usize) -> Ingestor {
        let (queue, jobs) = mpsc::channel(capacity.max(1));
        let progress = Arc::new(Progress::default());
        tokio::spawn(write_loop(store.clone(), jobs, progress.clone()));
        tokio::spawn(aggregator::run(store, progress.clone()));
        let ingestor = Ingestor {
            queue,
            progress,
            exposures: Arc::default(),
        };
        let flusher = ingestor.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EXPOSURE_FLUSH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(error) = flusher.flush_exposures().await {
                    tracing::warn!(message = "Could not store recorded exposures; they will be retried.", %error);
                }
            }
        });
        ingestor
    }

    /// Stores a validated batch; returns once it is committed.
    pub async fn submit(
        &self,
        environment: &str,
        idempotency_key: Option<String>,
        events: &[Event],
    ) -> Result<Receipt, SubmitError> {
        let text = serde_json::to_string(events)
            .map_err(|e| SubmitError::Failed(format!("cannot encode events: {e}")))?;
        self.submit_encoded(environment, idempotency_key, events.len(), text)
            .await
    }

    /// Stores a batch already encoded as the stored JSON form of its events.
    async fn submit_encoded(
        &self,
        environment: &str,
        idempotency_key: Option<String>,
        count: usize,
        text: String,
    ) -> Result<Receipt, SubmitError> {
        let batch = NewBatch {
            environment: environment.to_owned(),
            idempotency_key,
            event_count: count as i64,
            events: text,
        };
        if self.progress.lag() > MAX_AGGREGATION_LAG_BATCHES {
            return Err(SubmitError::Overloaded);
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Job { batch, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SubmitError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => SubmitError::Closed,
            })?;
        match answer.await {
            Ok(Ok(Appended::Stored { id })) => Ok(Receipt {
                batch_id: id,
                accepted: count,
                duplicate: false,
            }),
            Ok(Ok(Appended::Duplicate { id, event_count })) => Ok(Receipt {
                batch_id: id,
                accepted: event_count as usize,
                duplicate: true,
            }),
            Ok(Err(error)) => Err(SubmitError::Failed(error.to_string())),
            Err(_) => Err(SubmitError::Closed),
        }
    }

    /// Notes that an evaluation served `variant` of `flag` to `unit`. Cheap and
    /// never blocks: exposures are written in the background, a unit's repeat
    /// exposures to the same variant are skipped, and when the buffer is full
    /// new exposures are dropped (and counted).
    pub fn record_exposure(
        &self,
        environment: &str,
        flag: &str,
        variant: &str,
        unit: &str,
        at_ms: i64,
    ) {
        let fingerprint = fingerprint(&[environment, flag, variant, unit]);
        let Ok(mut buffer) = self.exposures.lock() else {
            return;
        };
        if buffer.pending.len() >= MAX_PENDING_EXPOSURES {
            buffer.dropped += 1;
            return;
        }
        if buffer.seen.check_and_insert(fingerprint) {
            return;
        }
        let event = Event::Exposure {
            flag: flag.to_owned(),
            variant: variant.to_owned(),
            unit: unit.to_owned(),
            at_ms,
        };
        buffer.pending.push((environment.to_owned(), event));
    }

    /// Exposures dropped because the buffer was full, since start.
    pub fn dropped_exposures(&self) -> u64 {
        self.exposures.lock().map(|b| b.dropped).unwrap_or(0)
    }

    /// Writes the exposures recorded so far; on failure they are kept for the
    /// next attempt.
    pub async fn flush_exposures(&self) -> Result<(), SubmitError> {
        let pending = match self.exposures.lock() {
            Ok(mut buffer) => std::mem::take(&mut buffer.pending),
            Err(_) => return Ok(()),
        };
        if pending.is_empty() {
            return Ok(());
        }
        let mut by_environment: Vec<(String, Vec<Event>)> = Vec::new();
        for (environment, event) in pending {
            match by_environment.iter_mut().find(|(e, _)| *e == environment) {
                Some((_, events)) => events.push(event),
                None => by_environment.push((environment, vec![event])),
            }
        }
        let mut failed: Vec<(String, Event)> = Vec::new();
        let mut first_error = None;
        for (environment, events) in by_environment {
            for chunk in events.chunks(EXPOSURES_PER_BATCH) {
                // Encoding thousands of events takes milliseconds: keep it off
                // the runtime threads that answer evaluations.
                let owned = chunk.to_vec();
                let encoded =
                    tokio::task::spawn_blocking(move || serde_json::to_string(&owned)).await;
                let result = match encoded {
                    Ok(Ok(text)) => {
                        self.submit_encoded(&environment, None, chunk.len(), text)
                            .await
                    }
                    Ok(Err(e)) => Err(SubmitError::Failed(format!("cannot encode exposures: {e}"))),
                    Err(e) => Err(SubmitError::Failed(format!(
                        "encoding exposures failed: {e}"
                    ))),
                };
                if let Err(error) = result {
                    failed.extend(chunk.iter().cloned().map(|e| (environment.clone(), e)));
                    first_error.get_or_insert(error);
                }
            }
        }
        if let Some(error) = first_error {
            if let Ok(mut buffer) = self.exposures.lock() {
                let room = MAX_PENDING_EXPOSURES.saturating_sub(buffer.pending.len());
                buffer.dropped += failed.len().saturating_sub(room) as u64;
                failed.truncate(room);
                buffer.pending.extend(failed);
            }
            return Err(error);
        }
        Ok(())
    }
}

fn fingerprint(parts: &[&str]) -> u64 {
    use std::hash::Hasher;
    // `DefaultHasher::new` has fixed keys: the same exposure always maps to
    // the same value.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for part in parts {
        hasher.write(part.as_bytes());
        hasher.write_u8(0xff);
    }
    hasher.finish()
}

/// Batches committed but not yet folded into the aggregates.
impl Ingestor {
    pub fn aggregation_lag(&self) -> i64 {
        self.progress.lag()
    }

    /// Resolves after the next fold that writes aggregates.
    pub async fn folded(&self) {
        self.progress.after_fold.notified().await;
    }
}

async fn write_loop(store: Store, mut jobs: mpsc::Receiver<Job>, progress: Arc<Progress>) {
    while let Some(first) = jobs.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let (batches, replies): (Vec<NewBatch>, Vec<_>) =
            group.into_iter().map(|j| (j.batch, j.reply)).unzip();
        match store.append_batches(&batches).await {
            Ok(results) => {
                if let Some(newest) = results
                    .iter()
                    .filter_map(|r| match r {
                        Appended::Stored { id } => Some(*id),
                        Appended::Duplicate { .. } => None,
                    })
                    .max()
                {
                    progress
                        .stored
                        .fetch_max(newest, std::sync::atomic::Ordering::Relaxed);
                    progress.wake.notify_one();
                }
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(error) => {
                tracing::error!(message = "Could not store event batches.", batches = batches.len(), %error);
                let error = Arc::new(error);
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}
