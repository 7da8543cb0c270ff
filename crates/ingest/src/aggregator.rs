//! The aggregator: folds committed batches, in id order, into exposures and
//! per-unit metric totals, and records how far it got in the same
//! transaction (exactly once, across crashes and restarts).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use store::{
    BucketRow, CovariateRow, ExposureRow, FoldWrite, HistoryDelta, Store, StoreError, TotalDelta,
};
use tokio::sync::Notify;

use crate::event::Event;
use crate::fold::{Exposed, Exposures, Folded, fold_tracking};

/// Batches read per fold.
const BATCHES_PER_FOLD: i64 = 200;
/// How often the aggregator looks for work when nobody wakes it.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// Units whose exposures are kept in memory; beyond this the cache restarts.
const MAX_CACHED_UNITS: usize = 1_000_000;

/// Progress shared with the write path (for backpressure).
#[derive(Default)]
pub(crate) struct Progress {
    /// The newest batch id the writer committed.
    pub stored: AtomicI64,
    /// The newest batch id folded into the aggregates.
    pub folded: AtomicI64,
    pub wake: Notify,
    /// Told after every fold that wrote aggregates (the rollout controller
    /// steps on fresh data at once).
    pub after_fold: Notify,
}

/// The exposures of units this aggregator has read or folded, per
/// environment: complete only while nobody else folds. Another process
/// folding a batch (another replica on the same PostgreSQL) may add
/// exposures of cached units, so the cache is valid only at the progress it
/// was left at, and starts again when it finds progress elsewhere.
#[derive(Debug, Default)]
pub struct ExposureCache {
    /// The aggregation progress the cache is complete at.
    at: i64,
    units: HashMap<String, Exposures>,
}

impl ExposureCache {
    /// Forgets everything (after a failed or lost fold).
    pub fn clear(&mut self) {
        self.units.clear();
    }

    fn len(&self) -> usize {
        self.units.values().map(HashMap::len).sum()
    }
}

impl Progress {
    pub fn lag(&self) -> i64 {
        self.stored.load(Ordering::Relaxed) - self.folded.load(Ordering::Relaxed)
    }
}

pub(crate) async fn run(store: Store, progress: Arc<Progress>) {
    let mut cache = ExposureCache::default();
    match (
        store.aggregation_progress().await,
        store.last_batch_id().await,
    ) {
        (Ok(folded), Ok(stored)) => {
            progress.folded.store(folded, Ordering::Relaxed);
            progress.stored.fetch_max(stored, Ordering::Relaxed);
        }
        (Err(error), _) | (_, Err(error)) => {
            tracing::warn!(message = "Could not read aggregation progress.", %error)
        }
    }
    loop {
        loop {
            match fold_next(&store, &mut cache).await {
                Ok(Some(through)) => {
                    progress.folded.store(through, Ordering::Relaxed);
                    progress.after_fold.notify_waiters();
                }
                Ok(None) => break,
                Err(StoreError::Conflict(_)) => {
                    // Another process folded these batches; start again from its progress.
                    cache.clear();
                    if let Ok(folded) = store.aggregation_progress().await {
                        progress.folded.store(folded, Ordering::Relaxed);
                    }
                }
                Err(error) => {
                    tracing::warn!(message = "Could not fold event batches; retrying.", %error);
                    cache.clear();
                    break;
                }
            }
        }
        let _ = tokio::time::timeout(IDLE_CHECK, progress.wake.notified()).await;
    }
}

/// Folds the next batches; returns the id of the last one, or `None` when
/// there was nothing to fold.
pub async fn fold_next(
    store: &Store,
    cache: &mut ExposureCache,
) -> Result<Option<i64>, StoreError> {
    let from = store.aggregation_progress().await?;
    if from != cache.at {
        // Someone else folded since (or this is the first fold).
        cache.clear();
        cache.at = from;
    }
    let batches = store.batches_after(from, BATCHES_PER_FOLD).await?;
    let Some(through) = batches.last().map(|b| b.id) else {
        return Ok(None);
    };

    // Events per environment, in batch order (parsed off the runtime threads).
    let by_environment = tokio::task::spawn_blocking(move || {
        let mut by_environment: Vec<(String, Vec<Event>)> = Vec::new();
        for batch in &batches {
            let events: Vec<Event> = serde_json::from_str(&batch.events)
                .map_err(|e| StoreError::Corrupt(format!("event batch {}: {e}", batch.id)))?;
            match by_environment
                .iter_mut()
                .find(|(env, _)| *env == batch.environment)
            {
                Some((_, all)) => all.extend(events),
                None => by_environment.push((batch.environment.clone(), events)),
            }
        }
        Ok::<_, StoreError>(by_environment)
    })
    .await
    .map_err(|e| StoreError::Corrupt(format!("reading event batches failed: {e}")))??;

    if cache.len() > MAX_CACHED_UNITS {
        cache.clear();
    }
    let mut writes = Vec::with_capacity(by_environment.len());
    for (environment, events) in by_environment {
        let specs = store.load_metrics(&environment).await?;
        let metrics = stats::compile_metrics(&specs).unwrap_or_else(|errors| {
            tracing::error!(
                message = "Stored metrics do not compile; folding exposures only.",
                environment,
                errors = errors.len()
            );
            Vec::new()
        });
        let cuped = cuped_metrics(store, &environment, &metrics).await?;
        let known = cache.units.entry(environment.clone()).or_default();
        // Attribution needs every exposure of a unit that sent a track event,
        // so those units are read from the store when not cached. A unit
        // that only appears in exposures needs no lookup: the store's upsert
        // keeps its first variant and marks a conflict itself. Such units are
        // folded with what this fold knows and then forgotten, so the cache
        // only ever holds complete entries. (With OFREP recording an exposure
        // for every new unit, this saves a lookup per evaluated unit.)
        let mut tracked: HashSet<&str> = HashSet::new();
        let mut blind: HashSet<&str> = HashSet::new();
        for event in &events {
            match event {
                Event::Track { unit, .. } => {
                    tracked.insert(unit);
                }
                Event::Exposure { unit, .. } => {
                    blind.insert(unit);
                }
            }
        }
        blind.retain(|u| !tracked.contains(u) && !known.contains_key(*u));
        let missing: Vec<String> = tracked
            .into_iter()
            .filter(|u| !known.contains_key(*u))
            .map(str::to_owned)
            .collect();
        for unit in &missing {
            known.insert(unit.clone(), Vec::new());
        }
        for (unit, flag, variant, first_at_ms) in store.exposures_of(&environment, &missing).await?
        {
            known.entry(unit).or_default().push(Exposed {
                flag,
                variant,
                first_at_ms,
            });
        }
        let blind: Vec<String> = blind.into_iter().map(str::to_owned).collect();
        // Folding is CPU work of milliseconds per thousand events: run it
        // beside the runtime threads that answer requests.
        let mut owned = std::mem::take(known);
        let (folded, owned) = tokio::task::spawn_blocking(move || {
            let folded = fold_tracking(&events, &metrics, &cuped, &mut owned);
            for unit in &blind {
                owned.remove(unit);
            }
            (folded, owned)
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("folding events failed: {e}")))?;
        *known = owned;
        writes.push(to_write(environment, folded));
    }
    if let Err(error) = store.write_folds(&writes, from, through).await {
        // What was folded into the cache was not written.
        cache.clear();
        return Err(error);
    }
    cache.at = through;
    Ok(Some(through))
}

/// The indices of the metrics whose per-unit history is kept: those of
/// experiments that adjust with CUPED.
async fn cuped_metrics(
    store: &Store,
    environment: &str,
    metrics: &[stats::Metric],
) -> Result<Vec<usize>, StoreError> {
    let experiments = store.list_experiments(environment).await?;
    let keys: HashSet<&str> = experiments
        .iter()
        .filter(|e| e.spec.cuped)
        .flat_map(|e| {
            e.spec
                .primary_metrics
                .iter()
                .chain(&e.spec.secondary_metrics)
                .chain(&e.spec.guardrail_metrics)
                .map(String::as_str)
        })
        .collect();
    Ok(metrics
        .iter()
        .enumerate()
        .filter(|(_, m)| keys.contains(m.key.as_str()))
        .map(|(i, _)| i)
        .collect())
}

fn to_write(environment: String, folded: Folded) -> FoldWrite {
    // One row per (flag, unit): a multi-row upsert may not touch a row twice.
    let mut exposures: Vec<ExposureRow> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for e in folded.exposures {
        match index.get(&(e.flag.clone(), e.unit.clone())) {
            Some(&i) => exposures[i].conflicting |= e.conflicting,
            None => {
                index.insert((e.flag.clone(), e.unit.clone()), exposures.len());
                exposures.push(ExposureRow {
                    flag: e.flag,
                    unit: e.unit,
                    variant: e.variant,
                    first_at_ms: e.first_at_ms,
                    conflicting: e.conflicting,
                });
            }
        }
    }
    let totals = folded
        .totals
        .into_iter()
        .map(|(k, d)| TotalDelta {
            flag: k.flag,
            variant: k.variant,
            metric: k.metric,
            unit: k.unit,
            x: d.x,
            y: d.y,
            events: d.events,
        })
        .collect();
    let buckets = folded
        .buckets
        .into_iter()
        .map(|(k, d)| BucketRow {
            flag: k.flag,
            variant: k.variant,
            metric: k.metric,
            resolution: k.resolution.as_str().to_owned(),
            start_ms: k.start_ms,
            x: d.x,
            y: d.y,
            events: d.events,
            max_value: d.max,
            sketch: d.sketch.map(|s| s.to_bytes()),
        })
        .collect();
    let history = folded
        .history
        .into_iter()
        .map(|((unit, metric), d)| HistoryDelta {
            metric,
            unit,
            x: d.x,
            y: d.y,
            events: d.events,
        })
        .collect();
    let covariates = folded
        .covariates
        .into_iter()
        .map(|c| CovariateRow {
            flag: c.flag,
            metric: c.metric,
            unit: c.unit,
            x: c.before.x,
            y: c.before.y,
        })
        .collect();
    FoldWrite {
        environment,
        exposures,
        totals,
        buckets,
        history,
        covariates,
    }
}
