//! What can go wrong in the store, split by who must act: the caller
//! (`NotFound`, `Conflict`, `Invalid`) or the operator (the database).

use flags::ValidationError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} `{key}` was not found")]
    NotFound { kind: &'static str, key: String },
    #[error("{0}")]
    Conflict(String),
    /// The change would leave flags, segments or metrics that do not compile.
    #[error("{} validation problem(s): {}", .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ValidationError>),
    #[error("{0}")]
    Open(String),
    /// A stored row cannot be read back (edited by hand, or a bug).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A backup that cannot be written, or a file that cannot be restored:
    /// not a backup, cut short or garbled, or from a newer Rollgate.
    #[error("{0}")]
    Backup(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    pub(crate) fn not_found(kind: &'static str, key: &str) -> Self {
        StoreError::NotFound {
            kind,
            key: key.to_owned(),
        }
    }
}
