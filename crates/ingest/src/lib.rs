//! Events in: validation of batches, the durable group-committed write path,
//! and the exposures that evaluations record by themselves.
//!
//! Invariant: a sender is answered 2xx only after its whole batch is
//! committed to the store (WAL with `synchronous=FULL` on SQLite), so a crash
//! right after the answer loses nothing.

pub mod aggregator;
pub mod arms;
pub mod event;
pub mod experiment;
pub mod fold;
pub mod pipeline;
pub mod report;

pub use event::{BatchError, Event, MAX_BATCH_EVENTS, parse_json_batch, parse_ndjson_batch};
pub use pipeline::{Ingestor, Receipt, SubmitError};
