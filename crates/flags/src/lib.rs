//! The flag engine: what a flag is, how a configuration is validated, how a
//! unit is assigned a sticky bucket, and how a flag is evaluated for a context.
//!
//! Architecture invariant: this crate does no IO, reads no clock and draws no
//! random numbers. Everything it needs comes in as arguments, so every
//! evaluation can be replayed. `tests/tidy.rs` enforces it.
//!
//! The flow is `spec` (what users write, serde) → [`compile`] (validation,
//! regexes and versions parsed once) → [`FlagSet::evaluate`] (hot path, never
//! fails: it returns a value with a reason, or an error code).

mod bucket;
mod bytes;
mod compile;
mod context;
mod eval;
mod spec;
mod version;

pub use bucket::{BUCKET_COUNT, bucket, split_boundaries, weight_units};
pub use compile::{
    CompiledFlag, FlagSet, MAX_KEY_LEN, ValidationError, auto_salt, check_key, compile,
    rollout_salt,
};
pub use context::{AttrRef, Attributes, AttributesIter, Context, ContextError, TARGETING_KEY};
pub use eval::{ErrorCode, EvalError, Evaluation, Reason};
pub use spec::{
    ConditionSpec, DefaultSpec, FlagSpec, FlagType, Op, RuleSpec, SegmentSpec, ServeSpec, Weight,
};
