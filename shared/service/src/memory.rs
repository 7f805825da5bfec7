//! In-memory backends for unit tests and benchmarks. Not durable: the
//! embedded default uses a file-backed store instead.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use terima_core::{Provider, QueueMessage, Resource, Timestamp};

use crate::store::{
    AckStore, BackendError, Blobs, ConflictRecord, Effect, EventFilter, EventLog, EventRecord,
    EventStore, EventView, Lease, LeaseRequest, Outbox, Page, QuarantineRecord, Queue,
    ResourceState, Retried, Seen, Story, WorkKey, WorkRecord, complete_transition, fail_transition,
    finish_transition, lease_transition, page_of,
};

#[derive(Default)]
struct State {
    works: HashMap<WorkKey, WorkRecord>,
    events: BTreeMap<String, EventRecord>,
    resources: HashMap<(Provider, String, String), ResourceState>,
    conflicts: Vec<ConflictRecord>,
    quarantine: BTreeMap<String, QuarantineRecord>,
    outbox: BTreeMap<String, String>,
    blobs: HashMap<String, Vec<u8>>,
    queue: Vec<QueueMessage>,
    next_handle: u64,
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

    /// Takes every queued message, as a consumer would.
    pub fn drain_queue(&self) -> Vec<QueueMessage> {
        std::mem::take(&mut self.state().queue)
    }

    pub fn work_records(&self) -> Vec<WorkRecord> {
        self.state().works.values().cloned().collect()
    }

    pub fn logged(&self) -> Vec<EventRecord> {
        self.state().events.values().cloned().collect()
    }

    pub fn conflict_records(&self) -> Vec<ConflictRecord> {
        self.state().conflicts.clone()
    }

    pub fn quarantine_records(&self) -> Vec<QuarantineRecord> {
        self.state().quarantine.values().cloned().collect()
    }

    pub fn held_count(&self) -> usize {
        self.state().outbox.len()
    }

    pub fn blob_keys(&self) -> Vec<String> {
        self.state().blobs.keys().cloned().collect()
    }

    fn works_of(
        state: &State,
        provider: Provider,
        resource: &Resource,
        work_key: &str,
    ) -> Vec<WorkRecord> {
        state
            .works
            .values()
            .filter(|w| {
                w.key.provider == provider
                    && w.key.resource == *resource
                    && w.key.work_key == work_key
            })
            .cloned()
            .collect()
    }

    fn view(state: &State, event: &EventRecord) -> EventView {
        EventView {
            event: event.clone(),
            work: state.works.get(&event.work_key()).cloned(),
            archived: false,
        }
    }
}

impl AckStore for MemoryStore {
    async fn seen(
        &self,
        provider: Provider,
        resource: &Resource,
        work_key: &str,
        digest: &str,
    ) -> Result<Seen, BackendError> {
        let state = self.state();
        let works = Self::works_of(&state, provider, resource, work_key);
        Ok(Seen::from_digests(
            digest,
            works.iter().map(|w| w.key.digest.as_str()),
        ))
    }

    async fn hold(&self, message: &QueueMessage) -> Result<(), BackendError> {
        let mut state = self.state();
        state.next_handle += 1;
        let handle = format!("{:020}", state.next_handle);
        state.outbox.insert(handle, message.encode());
        Ok(())
    }

    async fn quarantine(&self, record: &QuarantineRecord) -> Result<(), BackendError> {
        self.state()
            .quarantine
            .insert(record.id.clone(), record.clone());
        Ok(())
    }
}

impl Queue for MemoryStore {
    async fn send(&self, message: &QueueMessage) -> Result<(), BackendError> {
        self.state().queue.push(message.clone());
        Ok(())
    }
}

impl Blobs for MemoryStore {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BackendError> {
        self.state().blobs.insert(key.to_owned(), bytes.to_vec());
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.state().blobs.get(key).cloned())
    }
}

impl Outbox for MemoryStore {
    async fn held(&self, limit: usize) -> Result<Vec<(String, String)>, BackendError> {
        Ok(self
            .state()
            .outbox
            .iter()
            .take(limit)
            .map(|(h, m)| (h.clone(), m.clone()))
            .collect())
    }

    async fn release(&self, handle: &str) -> Result<(), BackendError> {
        self.state().outbox.remove(handle);
        Ok(())
    }
}

impl EventStore for MemoryStore {
    async fn works(
        &self,
        provider: Provider,
        resource: &Resource,
        work_key: &str,
    ) -> Result<Vec<WorkRecord>, BackendError> {
        Ok(Self::works_of(&self.state(), provider, resource, work_key))
    }

    async fn log(&self, event: &EventRecord) -> Result<(), BackendError> {
        self.state().events.insert(event.id.clone(), event.clone());
        Ok(())
    }

    async fn unlog(&self, event: &EventRecord) -> Result<(), BackendError> {
        self.state().events.remove(&event.id);
        Ok(())
    }

    async fn acquire(&self, request: &LeaseRequest) -> Result<Lease, BackendError> {
        let mut state = self.state();
        let key = request.record.key.clone();
        let (lease, write) = lease_transition(state.works.get(&key), request);
        if let Some(record) = write {
            state.works.insert(key, record);
        }
        Ok(lease)
    }

    async fn complete(
        &self,
        key: &WorkKey,
        owner: &str,
        now: Timestamp,
        effect: Effect,
    ) -> Result<bool, BackendError> {
        let mut state = self.state();
        let next = complete_transition(state.works.get(key), owner, now, effect);
        Ok(next.map(|r| state.works.insert(key.clone(), r)).is_some())
    }

    async fn finish(&self, record: &WorkRecord) -> Result<bool, BackendError> {
        let mut state = self.state();
        let next = finish_transition(state.works.get(&record.key), record);
        Ok(next
            .map(|r| state.works.insert(record.key.clone(), r))
            .is_some())
    }

    async fn fail(
        &self,
        key: &WorkKey,
        owner: Option<&str>,
        error: &str,
    ) -> Result<bool, BackendError> {
        let mut state = self.state();
        let next = fail_transition(state.works.get(key), owner, error);
        Ok(next.map(|r| state.works.insert(key.clone(), r)).is_some())
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

    async fn record_conflict(&self, conflict: &ConflictRecord) -> Result<(), BackendError> {
        let mut state = self.state();
        let known = state.conflicts.iter().any(|c| {
            c.first_event_id == conflict.first_event_id
                && c.second_event_id == conflict.second_event_id
        });
        if !known {
            state.conflicts.push(conflict.clone());
        }
        Ok(())
    }
}

impl EventLog for MemoryStore {
    async fn event(&self, id: &str) -> Result<Option<EventView>, BackendError> {
        let state = self.state();
        Ok(state.events.get(id).map(|e| Self::view(&state, e)))
    }

    async fn events(
        &self,
        filter: &EventFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<EventView>, BackendError> {
        let state = self.state();
        let views = state
            .events
            .values()
            .map(|e| Self::view(&state, e))
            .filter(|v| v.matches(filter))
            .collect();
        Ok(page_of(views, after, limit))
    }

    async fn story(&self, provider: Provider, kind: &str, id: &str) -> Result<Story, BackendError> {
        let state = self.state();
        let resource = Resource::new(kind, id);
        let mut works: Vec<WorkRecord> = state
            .works
            .values()
            .filter(|w| w.key.provider == provider && w.key.resource == resource)
            .cloned()
            .collect();
        works.sort_by_key(|w| w.received_at);
        Ok(Story {
            state: state
                .resources
                .get(&(provider, kind.to_owned(), id.to_owned()))
                .cloned(),
            works,
        })
    }

    async fn body(&self, event: &EventRecord) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(match &event.body {
            terima_core::BodyRef::Inline { text } => Some(text.as_bytes().to_vec()),
            terima_core::BodyRef::Stored { key, .. } => self.state().blobs.get(key).cloned(),
        })
    }

    async fn conflicts(&self, limit: usize) -> Result<Vec<ConflictRecord>, BackendError> {
        let mut all = self.state().conflicts.clone();
        all.reverse();
        all.truncate(limit);
        Ok(all)
    }

    async fn quarantined(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<QuarantineRecord>, BackendError> {
        let state = self.state();
        let mut items: Vec<QuarantineRecord> = state
            .quarantine
            .values()
            .rev()
            .filter(|q| after.is_none_or(|a| q.id.as_str() < a))
            .take(limit + 1)
            .cloned()
            .collect();
        let more = items.len() > limit;
        items.truncate(limit);
        let next = more.then(|| items.last().map(|q| q.id.clone())).flatten();
        Ok(Page { items, next })
    }

    async fn quarantined_one(&self, id: &str) -> Result<Option<QuarantineRecord>, BackendError> {
        Ok(self.state().quarantine.get(id).cloned())
    }

    async fn mark_retried(&self, id: &str, retried: &Retried) -> Result<(), BackendError> {
        if let Some(record) = self.state().quarantine.get_mut(id) {
            record.retried = Some(retried.clone());
        }
        Ok(())
    }
}
