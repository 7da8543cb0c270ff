//! What the request handlers share: the store, and the in-memory snapshots that
//! the evaluation path reads without touching the database.
//!
//! Invariant: a snapshot is replaced (never mutated) after every committed
//! change, so an evaluation sees either the old or the new flag set whole.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use flags::FlagSet;
use store::{Store, TokenKind};

use crate::ServerConfig;
use crate::notify::DeliveryPolicy;
use crate::telemetry::Telemetry;

/// One environment's compiled flags.
#[derive(Debug, Default)]
pub struct EnvSnapshot {
    pub flags: FlagSet,
    pub revision: i64,
}

/// Who is calling, from their token.
#[derive(Clone, Debug)]
pub struct Principal {
    pub name: String,
    pub kind: TokenKind,
    /// The one environment of a client token; `None` for admin tokens.
    pub environment: Option<String>,
}

pub struct AppState {
    pub store: Store,
    /// The event write path (batches and recorded exposures).
    pub ingest: ingest::Ingestor,
    pub telemetry: Telemetry,
    snapshots: ArcSwap<HashMap<String, Arc<EnvSnapshot>>>,
    /// SHA-256 hex of each active token's secret → its principal.
    tokens: ArcSwap<HashMap<String, Arc<Principal>>>,
    /// Serialises snapshot rebuilds so that a slow, older reload cannot replace a newer one.
    reload: tokio::sync::Mutex<()>,
    /// The latest automatic selections (Thompson sampling) per environment,
    /// laid over every rebuilt snapshot.
    selections: std::sync::Mutex<HashMap<String, Vec<Selection>>>,
    /// Whether this replica runs the rollout controller (on PostgreSQL one
    /// replica of several does; on SQLite always, once started).
    pub leading: std::sync::atomic::AtomicBool,
    /// How this server's delivery worker retries webhook deliveries.
    pub delivery: DeliveryPolicy,
    /// Wakes this server's delivery worker (`notify::wake_worker`).
    pub(crate) deliveries_enqueued: tokio::sync::Notify,
}

/// The choice probabilities of an automatically selecting arm.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    pub flag: String,
    pub arm: String,
    pub choices: Vec<(String, f64)>,
}

impl AppState {
    pub async fn load(
        store: Store,
        telemetry: Telemetry,
        config: &ServerConfig,
    ) -> Result<Arc<Self>, store::StoreError> {
        let state = Arc::new(AppState {
            ingest: ingest::Ingestor::with_queue(store.clone(), config.ingest_queue),
            store,
            telemetry,
            snapshots: ArcSwap::from_pointee(HashMap::new()),
            tokens: ArcSwap::from_pointee(HashMap::new()),
            reload: tokio::sync::Mutex::new(()),
            selections: std::sync::Mutex::new(HashMap::new()),
            leading: std::sync::atomic::AtomicBool::new(false),
            delivery: config.delivery,
            deliveries_enqueued: tokio::sync::Notify::new(),
        });
        for env in state.store.list_environments().await? {
            state.refresh_selections(&env.key).await?;
        }
        state.reload_tokens().await?;
        Ok(state)
    }

    /// The current snapshot of an environment; an empty one if it has no flags.
    pub fn snapshot(&self, environment: &str) -> Arc<EnvSnapshot> {
        self.snapshots
            .load()
            .get(environment)
            .cloned()
            .unwrap_or_default()
    }

    pub fn has_environment(&self, environment: &str) -> bool {
        self.snapshots.load().contains_key(environment)
    }

    /// Rebuilds one environment's snapshot from the store.
    pub async fn reload_environment(&self, environment: &str) -> Result<(), store::StoreError> {
        let _guard = self.reload.lock().await;
        let (flag_specs, segment_specs, revision) =
            self.store.load_environment(environment).await?;
        let flags = match flags::compile(&flag_specs, &segment_specs) {
            Ok(mut flags) => {
                for selection in self.selections_of(environment) {
                    if let Err(error) = flags.select_automatically(
                        &selection.flag,
                        &selection.arm,
                        &selection.choices,
                    ) {
                        tracing::warn!(message = "An automatic selection no longer applies.", environment, flag = selection.flag, %error);
                    }
                }
                flags
            }
            Err(errors) => {
                // The store validates every change before committing it, so this
                // means the stored data was edited by hand. Keep serving the last
                // good snapshot rather than nothing.
                for error in &errors {
                    tracing::error!(message = "Stored flags do not compile; keeping the previous snapshot.", environment, %error);
                }
                return Ok(());
            }
        };
        let snapshot = Arc::new(EnvSnapshot { flags, revision });
        self.snapshots.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(environment.to_owned(), snapshot.clone());
            next
        });
        Ok(())
    }

    fn selections_of(&self, environment: &str) -> Vec<Selection> {
        let selections = self.selections.lock().unwrap_or_else(|e| e.into_inner());
        selections.get(environment).cloned().unwrap_or_default()
    }

    /// The automatic selections in force in an environment.
    pub fn selections(&self, environment: &str) -> Vec<Selection> {
        self.selections_of(environment)
    }

    /// Recomputes the automatic selections of an environment's experiments
    /// from the data so far (the probability that each choice is the best),
    /// then rebuilds its snapshot with them.
    pub async fn refresh_selections(&self, environment: &str) -> Result<(), store::StoreError> {
        self.store_selections(environment).await?;
        self.reload_environment(environment).await
    }

    /// The periodic resync: recomputes the automatic selections and rebuilds
    /// the snapshot only when it is `stale` or a selection changed, so an
    /// environment without news is not recompiled.
    pub async fn resync_environment(
        &self,
        environment: &str,
        stale: bool,
    ) -> Result<(), store::StoreError> {
        let changed = self.store_selections(environment).await?;
        if stale || changed {
            self.reload_environment(environment).await?;
        }
        Ok(())
    }

    /// Computes and keeps an environment's selections; whether they changed.
    async fn store_selections(&self, environment: &str) -> Result<bool, store::StoreError> {
        let mut selections = Vec::new();
        for experiment in self.store.list_experiments(environment).await? {
            let Some(auto) = &experiment.spec.auto_select else {
                continue;
            };
            let choices = ingest::experiment::selection_probabilities(
                &self.store,
                environment,
                &experiment.spec,
            )
            .await?;
            selections.push(Selection {
                flag: experiment.spec.flag.clone(),
                arm: auto.arm.clone(),
                choices,
            });
        }
        let previous = self
            .selections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(environment.to_owned(), selections.clone());
        Ok(previous.unwrap_or_default() != selections)
    }

    pub async fn reload_tokens(&self) -> Result<(), store::StoreError> {
        let _guard = self.reload.lock().await;
        let tokens = self.store.active_tokens().await?;
        let map = tokens
            .into_iter()
            .map(|t| {
                let principal = Principal {
                    name: t.record.name,
                    kind: t.record.kind,
                    environment: t.record.environment,
                };
                (t.hash, Arc::new(principal))
            })
            .collect();
        self.tokens.store(Arc::new(map));
        Ok(())
    }

    pub fn principal(&self, secret: &str) -> Option<Arc<Principal>> {
        self.tokens.load().get(&store::hash_token(secret)).cloned()
    }
}
