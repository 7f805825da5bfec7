//! The deliveries `terima serve` answered lately, in memory: the only place
//! a refused delivery (bad signature, too large, overloaded) can be seen,
//! since nothing refused is stored. A ring of fixed size: the oldest entry
//! goes when a new one comes.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;
use terima_core::{Clock, Provider, SystemClock, Timestamp};
use terima_service::Delivered;
use tokio::sync::watch;

/// Deliveries kept: a few minutes of a busy gateway, about 1 MB.
pub const CAPACITY: usize = 5_000;

/// One delivery as the console lists it.
#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    /// Increases by one per delivery: the live stream's cursor.
    pub seq: u64,
    pub received_at: String,
    pub provider: &'static str,
    pub request_id: String,
    pub http_status: u16,
    /// accepted, duplicate, conflict, quarantined, ignored, rejected or
    /// unavailable.
    pub outcome: &'static str,
    /// Why it was rejected or quarantined.
    pub reason: Option<&'static str>,
    /// The event id it is logged under (accepted, duplicate, conflict) or
    /// its quarantine id.
    pub record_id: Option<String>,
    pub event_type: Option<String>,
    pub resource_kind: Option<String>,
    pub resource_id: Option<String>,
}

/// The outcome class and reason of an answer's label: every refusal is
/// `rejected`, with the label (or the verifier's reason) as its reason.
fn classify(delivered: &Delivered) -> (&'static str, Option<&'static str>) {
    match delivered.outcome {
        label @ ("accepted" | "duplicate" | "conflict" | "ignored" | "unavailable") => {
            (label, delivered.reason)
        }
        "quarantined" => ("quarantined", delivered.reason),
        label => ("rejected", Some(delivered.reason.unwrap_or(label))),
    }
}

pub struct Recent {
    ring: Mutex<Ring>,
    capacity: usize,
    /// The newest `seq`, for live streams to wait on.
    latest: watch::Sender<u64>,
}

#[derive(Default)]
struct Ring {
    next: u64,
    entries: VecDeque<Delivery>,
}

impl Recent {
    pub fn new(capacity: usize) -> Self {
        Self {
            ring: Mutex::new(Ring {
                next: 1,
                entries: VecDeque::with_capacity(capacity.min(CAPACITY)),
            }),
            capacity: capacity.max(1),
            latest: watch::channel(0).0,
        }
    }

    pub fn record(
        &self,
        provider: Provider,
        request_id: &str,
        http_status: u16,
        delivered: &Delivered,
    ) {
        let (outcome, reason) = classify(delivered);
        let received_at = Timestamp::from_unix_millis(SystemClock.now_millis()).to_string();
        let seq = {
            let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            let seq = ring.next;
            ring.next += 1;
            if ring.entries.len() == self.capacity {
                ring.entries.pop_front();
            }
            ring.entries.push_back(Delivery {
                seq,
                received_at,
                provider: provider.name(),
                request_id: request_id.to_owned(),
                http_status,
                outcome,
                reason,
                record_id: delivered.record_id.clone(),
                event_type: delivered.event_type.clone(),
                resource_kind: delivered.resource.as_ref().map(|r| r.kind.clone()),
                resource_id: delivered.resource.as_ref().map(|r| r.id.clone()),
            });
            seq
        };
        self.latest.send_replace(seq);
    }

    /// Entries after `seq` that `keep` accepts, oldest first, at most `limit`
    /// (the newest of them).
    pub fn after(&self, seq: u64, limit: usize, keep: impl Fn(&Delivery) -> bool) -> Vec<Delivery> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let mut found: Vec<Delivery> = ring
            .entries
            .iter()
            .rev()
            .take_while(|d| d.seq > seq)
            .filter(|d| keep(d))
            .take(limit)
            .cloned()
            .collect();
        found.reverse();
        found
    }

    /// The newest entries `keep` accepts, newest first.
    pub fn newest(&self, limit: usize, keep: impl Fn(&Delivery) -> bool) -> Vec<Delivery> {
        let mut found = self.after(0, limit, keep);
        found.reverse();
        found
    }

    /// The deliveries of one event (or quarantine record), newest first.
    pub fn of_record(&self, record_id: &str) -> Vec<Delivery> {
        self.newest(self.capacity, |d| d.record_id.as_deref() == Some(record_id))
    }

    /// Changes whenever a delivery is recorded.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(outcome: &'static str, reason: Option<&'static str>) -> Delivered {
        Delivered {
            outcome,
            reason,
            ..Delivered::default()
        }
    }

    #[test]
    fn keeps_the_newest_and_classifies_refusals() {
        // GIVEN a ring of three
        let recent = Recent::new(3);
        // WHEN four deliveries are recorded
        recent.record(Provider::Oms, "r1", 200, &delivered("accepted", None));
        recent.record(
            Provider::Oms,
            "r2",
            401,
            &delivered("unauthorized", Some("bad_signature")),
        );
        recent.record(Provider::Oms, "r3", 503, &delivered("overloaded", None));
        recent.record(
            Provider::Oms,
            "r4",
            200,
            &delivered("quarantined", Some("not_json")),
        );
        // THEN the oldest is gone, refusals are `rejected` with a reason
        let all = recent.newest(10, |_| true);
        let ids: Vec<&str> = all.iter().map(|d| d.request_id.as_str()).collect();
        assert_eq!(ids, ["r4", "r3", "r2"]);
        assert_eq!(all[1].outcome, "rejected");
        assert_eq!(all[1].reason, Some("overloaded"));
        assert_eq!(all[2].reason, Some("bad_signature"));
        assert_eq!(all[0].outcome, "quarantined");
        // AND a cursor returns only what is newer, oldest first
        let newer: Vec<u64> = recent
            .after(2, 10, |_| true)
            .iter()
            .map(|d| d.seq)
            .collect();
        assert_eq!(newer, [3, 4]);
        assert_eq!(*recent.subscribe().borrow(), 4);
    }
}
