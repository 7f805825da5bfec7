//! Terima's shared core: webhook verification, how each provider's
//! deliveries are read (routing facts, keys, meaning, projection rules), and
//! the queue message format.
//!
//! Nothing here does I/O; the provider functions, the processor and the
//! `terima` binary all build on it.

pub mod json;
pub mod key;
pub mod message;
pub mod providers;
pub mod secret;
pub mod timestamp;
pub mod verify;

pub use message::{BodyRef, QueueMessage};
pub use providers::{
    Inspected, Lookup, Provider, ProviderSpec, ReadError, Reading, Resource, TypedEvent, Update,
    inspect,
};
pub use secret::{Secret, SecretSet};
pub use timestamp::Timestamp;
pub use verify::{Clock, Scheme, SystemClock, Verification, Verified, Verifier, VerifyError};

/// The rank of a status in its resource's documented life, for ordering two
/// states that carry the same provider time (or none). Higher is later.
pub fn status_rank(provider: Provider, kind: &str, status: &str) -> Option<u32> {
    provider.spec().status_rank(kind, status)
}
