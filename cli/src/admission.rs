//! Backpressure for `terima serve`: a bound on the queue's depth. Past it, a
//! delivery from a provider that retries is answered `503` with a body that
//! says why and a `Retry-After`, so intake slows to what the processor
//! completes instead of the backlog growing without end. A provider that
//! never retries (Biteship) is still taken: a 503 would lose its event, and
//! the queue holds it as well as any other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use terima_core::Provider;
use terima_embedded::EmbeddedStore;
use tracing::{info, warn};

/// The default bound: about ten seconds of the processor's work on a small
/// machine, and about 75 MB of queued messages.
pub const DEFAULT_MAX_QUEUE_DEPTH: u64 = 50_000;

/// How often the queue's depth is measured. Between two looks intake may
/// overshoot the bound by what arrives in this time.
pub const DEPTH_REFRESH: Duration = Duration::from_millis(100);

/// What a refused provider is told to wait, in seconds.
const RETRY_AFTER_SECS: u64 = 5;

/// Whether a provider sends a delivery again after a 5xx (the providers'
/// own rule: Biteship calls each webhook once).
pub fn retries(provider: Provider) -> bool {
    provider.spec().retries()
}

/// The bound and the queue's depth as last measured.
pub struct Admission {
    bound: u64,
    depth: AtomicU64,
}

/// Why a delivery was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded {
    pub depth: u64,
    pub bound: u64,
}

impl Overloaded {
    /// Seconds for the `Retry-After` header.
    pub fn retry_after_secs(&self) -> u64 {
        RETRY_AFTER_SECS
    }

    pub fn body(&self, request_id: &str) -> String {
        serde_json::json!({
            "status": "overloaded",
            "request_id": request_id,
            "error": format!(
                "{} events are waiting to be processed (limit {}); retry later",
                self.depth, self.bound
            ),
        })
        .to_string()
    }
}

impl Admission {
    pub fn bounded(bound: u64) -> Self {
        Self {
            bound,
            depth: AtomicU64::new(0),
        }
    }

    /// Takes everything: for a backend whose queue is not ours to bound
    /// (SQS).
    pub fn unbounded() -> Self {
        Self::bounded(u64::MAX)
    }

    /// Records a measurement of the queue's depth.
    pub fn observe(&self, depth: u64) {
        let before = self.depth.swap(depth, Ordering::Relaxed);
        if before < self.bound && depth >= self.bound {
            warn!(
                depth,
                bound = self.bound,
                "queue at its bound: answering 503 to providers that retry"
            );
        } else if before >= self.bound && depth < self.bound {
            info!(depth, bound = self.bound, "queue below its bound again");
        }
    }

    /// Whether a delivery from `provider` is taken now.
    pub fn admit(&self, provider: Provider) -> Result<(), Overloaded> {
        let depth = self.depth.load(Ordering::Relaxed);
        if depth < self.bound || !retries(provider) {
            return Ok(());
        }
        Err(Overloaded {
            depth,
            bound: self.bound,
        })
    }
}

/// Measures the embedded queue's depth every [`DEPTH_REFRESH`], for ever.
pub async fn watch(store: EmbeddedStore, admission: &Admission) {
    let mut interval = tokio::time::interval(DEPTH_REFRESH);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match store.depth().await {
            Ok(depth) => admission.observe(depth),
            // The last measurement stands; the writer reports the failure.
            Err(e) => warn!(detail = %e, "cannot measure the queue's depth"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_bound_only_providers_that_never_retry_are_taken() {
        let admission = Admission::bounded(10);
        admission.observe(9);
        assert_eq!(admission.admit(Provider::BitByBit), Ok(()));
        admission.observe(10);
        for provider in Provider::ALL {
            let admitted = admission.admit(provider);
            if retries(provider) {
                assert_eq!(
                    admitted,
                    Err(Overloaded {
                        depth: 10,
                        bound: 10
                    })
                );
            } else {
                assert_eq!(admitted, Ok(()));
            }
        }
        admission.observe(3);
        assert_eq!(admission.admit(Provider::Oms), Ok(()));
    }

    #[test]
    fn an_unbounded_admission_takes_everything() {
        let admission = Admission::unbounded();
        admission.observe(u64::MAX - 1);
        assert!(
            Provider::ALL
                .into_iter()
                .all(|p| admission.admit(p).is_ok())
        );
    }

    #[test]
    fn the_refusal_says_why() {
        let body = Overloaded {
            depth: 12,
            bound: 10,
        }
        .body("r-1");
        let value: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(value["status"], "overloaded");
        assert_eq!(value["request_id"], "r-1");
        assert!(
            value["error"]
                .as_str()
                .is_some_and(|e| e.contains("12") && e.contains("10"))
        );
    }
}
