//! In-memory backends for unit tests and benchmarks. Not durable: the
//! embedded default uses a file-backed store instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use terima_core::{Provider, QueueMessage, Timestamp};

use crate::store::{
    BackendError, Claim, DedupRecord, DedupStore, EventFilter, EventRecord, EventStore, Lease,
    LeaseRequest, Queue, ResourceState, complete_transition, fail_transition, lease_transition,
    newest_first,
};

#[derive(Default)]
struct State {
    dedup: HashMap<(Provider, String), DedupRecord>,
    conflicts: Vec<(DedupRecord, String)>,
    events: HashMap<(Provider, String), EventRecord>,
    resources: HashMap<(Provider, String, String), ResourceState>,
    queue: Vec<QueueMessage>,
}

/// Every record kind and the queue, behind one lock. Clones share state.
#[derive(Clone, Default)]
pub struct MemoryStore(Arc<Mutex<State>>);

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn queued(&self) -> Vec<QueueMessage> {
        self.state().queue.clone()
    }

    pub fn dedup_records(&self) -> Vec<DedupRecord> {
        self.state().dedup.values().cloned().collect()
    }

    pub fn conflicts(&self) -> usize {
        self.state().conflicts.len()
    }
}

impl DedupStore for MemoryStore {
    async fn claim(&self, record: &DedupRecord) -> Result<Claim, BackendError> {
        let mut state = self.state();
        let key = (record.provider, record.dedup_key.clone());
        let now_secs = record.received_at.unix_millis() / 1_000;
        match state.dedup.get(&key) {
            Some(existing) if existing.expires_at > now_secs => Ok(Claim::Existing {
                body_sha256: existing.body_sha256.clone(),
            }),
            _ => {
                state.dedup.insert(key, record.clone());
                Ok(Claim::Fresh)
            }
        }
    }

    async fn record_conflict(&self, record: &DedupRecord, body: &str) -> Result<(), BackendError> {
        self.state()
            .conflicts
            .push((record.clone(), body.to_owned()));
        Ok(())
    }
}

impl Queue for MemoryStore {
    async fn send(&self, message: &QueueMessage) -> Result<(), BackendError> {
        self.state().queue.push(message.clone());
        Ok(())
    }
}

impl EventStore for MemoryStore {
    async fn acquire(&self, request: &LeaseRequest) -> Result<Lease, BackendError> {
        let mut state = self.state();
        let key = (request.record.provider, request.record.work_key.clone());
        let (lease, write) = lease_transition(state.events.get(&key), request);
        if let Some(record) = write {
            state.events.insert(key, record);
        }
        Ok(lease)
    }

    async fn complete(
        &self,
        provider: Provider,
        work_key: &str,
        owner: &str,
        now: Timestamp,
    ) -> Result<bool, BackendError> {
        let mut state = self.state();
        let key = (provider, work_key.to_owned());
        let next = complete_transition(state.events.get(&key), owner, now);
        Ok(next
            .map(|record| state.events.insert(key, record))
            .is_some())
    }

    async fn fail(
        &self,
        provider: Provider,
        work_key: &str,
        owner: &str,
        error: &str,
    ) -> Result<bool, BackendError> {
        let mut state = self.state();
        let key = (provider, work_key.to_owned());
        let next = fail_transition(state.events.get(&key), owner, error);
        Ok(next
            .map(|record| state.events.insert(key, record))
            .is_some())
    }

    async fn event(
        &self,
        provider: Provider,
        work_key: &str,
    ) -> Result<Option<EventRecord>, BackendError> {
        Ok(self
            .state()
            .events
            .get(&(provider, work_key.to_owned()))
            .cloned())
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, BackendError> {
        let matching = self
            .state()
            .events
            .values()
            .filter(|e| filter.matches(e))
            .cloned()
            .collect();
        Ok(newest_first(matching, filter.limit))
    }

    async fn resource(
        &self,
        provider: Provider,
        kind: &str,
        id: &str,
    ) -> Result<Option<ResourceState>, BackendError> {
        Ok(self
            .state()
            .resources
            .get(&(provider, kind.to_owned(), id.to_owned()))
            .cloned())
    }

    async fn put_resource(
        &self,
        state: &ResourceState,
        expected: Option<u64>,
    ) -> Result<bool, BackendError> {
        let mut guard = self.state();
        let key = (state.provider, state.kind.clone(), state.id.clone());
        if guard.resources.get(&key).map(|r| r.version) != expected {
            return Ok(false);
        }
        guard.resources.insert(key, state.clone());
        Ok(true)
    }
}
