//! Terima's shared core: webhook verification, the typed events of every
//! provider, their dedup keys and resources, and the queue message format.
//!
//! Nothing here does I/O; the provider functions, the processor and the
//! `terima` binary all build on it.

pub mod message;
pub mod providers;
pub mod secret;
pub mod timestamp;
pub mod verify;

pub use message::QueueMessage;
pub use providers::{Inspected, Provider, Resource, TypedEvent, inspect};
pub use secret::{Secret, SecretSet};
pub use timestamp::Timestamp;
pub use verify::{Clock, Scheme, SystemClock, Verification, Verified, Verifier, VerifyError};

/// The rank of a status in its resource's documented life, for ordering two
/// states that carry the same provider time (or none). Higher is later.
pub fn status_rank(provider: Provider, kind: &str, status: &str) -> Option<u32> {
    match provider {
        Provider::BebasKirim => providers::bebaskirim::status_rank(kind, status),
        Provider::BitByBit => providers::bitbybit::status_rank(kind, status),
        Provider::Oms => providers::oms::status_rank(kind, status),
        Provider::Biteship => providers::biteship::Status::parse(status).rank(),
    }
}
