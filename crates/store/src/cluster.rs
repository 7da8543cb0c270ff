//! Several replicas on one PostgreSQL database: how each hears about changes
//! the others commit, and which one runs the rollout controller.
//!
//! - **Change notices.** Triggers (migration 0010) announce every committed
//!   change of an environment's configuration and of the tokens on the
//!   channel [`CHANGES_CHANNEL`]; [`Store::listen_changes`] subscribes.
//!   Notices can be lost while a listener's connection is down, so a lost
//!   connection is reported ([`ChangeListener::next`] returns `None`) for
//!   the caller to reload everything.
//! - **Leadership.** One session-level advisory lock, [`CONTROLLER_LOCK`],
//!   held on a connection of its own: the replica holding it leads. When
//!   that process dies its connection closes and PostgreSQL releases the
//!   lock at once; the next replica to try takes it. Leadership is a
//!   liveness device, not a safety one: every rollout step still commits
//!   only over the state version it read, so two leaders for a moment can
//!   never apply a step twice.
//!
//! On SQLite there is one process: no notices, and it always leads.

use sqlx::Connection as _;
use sqlx::postgres::{PgConnection, PgListener};

use crate::{Backend, Store, StoreError};

/// The channel change notices are sent on.
pub const CHANGES_CHANNEL: &str = "rollgate_changes";

/// The advisory lock key of the rollout controller: "Rollgate" in ASCII.
pub const CONTROLLER_LOCK: i64 = 0x526f_6c6c_6761_7465;

/// A committed change another replica (or this one) made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeNotice {
    /// An environment's configuration changed (or it was created).
    Environment(String),
    /// A token was created, revoked or deleted.
    Tokens,
}

impl ChangeNotice {
    fn parse(payload: &str) -> Option<ChangeNotice> {
        match payload.split_once(':') {
            Some(("environment", key)) => Some(ChangeNotice::Environment(key.to_owned())),
            None if payload == "tokens" => Some(ChangeNotice::Tokens),
            _ => None,
        }
    }
}

/// A subscription to [`CHANGES_CHANNEL`].
pub struct ChangeListener {
    listener: PgListener,
}

impl std::fmt::Debug for ChangeListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeListener").finish_non_exhaustive()
    }
}

impl ChangeListener {
    /// The next notice; `None` when the connection was lost, so notices may
    /// be missing (the next call reconnects). Payloads this version does not
    /// know are skipped.
    pub async fn next(&mut self) -> Result<Option<ChangeNotice>, StoreError> {
        loop {
            match self.listener.try_recv().await? {
                None => return Ok(None),
                Some(notification) => {
                    if let Some(notice) = ChangeNotice::parse(notification.payload()) {
                        return Ok(Some(notice));
                    }
                    tracing::debug!(
                        message = "Skipped an unknown change notice.",
                        payload = notification.payload()
                    );
                }
            }
        }
    }
}

/// This process's claim to run the rollout controller.
#[derive(Debug)]
pub struct Leadership {
    /// The connection holding the advisory lock; none on SQLite.
    lock: Option<PgConnection>,
}

impl Leadership {
    /// Whether this process still leads: on PostgreSQL, whether the
    /// connection holding the lock still answers (if it does not, the
    /// server has released the lock, and another replica may hold it).
    pub async fn holds(&mut self) -> bool {
        match &mut self.lock {
            None => true,
            Some(connection) => sqlx::query("SELECT 1")
                .execute(&mut *connection)
                .await
                .is_ok(),
        }
    }

    /// Gives leadership up (a clean shutdown), so another replica takes
    /// over without waiting.
    pub async fn release(self) {
        if let Some(mut connection) = self.lock {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(CONTROLLER_LOCK)
                .execute(&mut connection)
                .await;
            let _ = connection.close().await;
        }
    }
}

impl Store {
    /// Subscribes to the change notices of other replicas; `None` on
    /// SQLite, which has no other replicas.
    pub async fn listen_changes(&self) -> Result<Option<ChangeListener>, StoreError> {
        let Some(url) = self.postgres_url() else {
            return Ok(None);
        };
        let mut listener = PgListener::connect(url).await?;
        listener.listen(CHANGES_CHANNEL).await?;
        Ok(Some(ChangeListener { listener }))
    }

    /// Tries to become the replica that runs the rollout controller:
    /// `Some` when this process now leads (always on SQLite), `None` when
    /// another holds the lock.
    pub async fn try_lead(&self) -> Result<Option<Leadership>, StoreError> {
        let Some(url) = self.postgres_url() else {
            return Ok(Some(Leadership { lock: None }));
        };
        let mut connection = PgConnection::connect(url).await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(CONTROLLER_LOCK)
            .fetch_one(&mut connection)
            .await?;
        if locked {
            Ok(Some(Leadership {
                lock: Some(connection),
            }))
        } else {
            let _ = connection.close().await;
            Ok(None)
        }
    }

    fn postgres_url(&self) -> Option<&str> {
        match self.backend {
            Backend::Postgres => self.url.as_deref(),
            Backend::Sqlite => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_parse_and_unknown_ones_do_not() {
        assert_eq!(
            ChangeNotice::parse("environment:production"),
            Some(ChangeNotice::Environment("production".into()))
        );
        assert_eq!(ChangeNotice::parse("tokens"), Some(ChangeNotice::Tokens));
        assert_eq!(ChangeNotice::parse("environment"), None);
        assert_eq!(ChangeNotice::parse("flags:x"), None);
    }
}
