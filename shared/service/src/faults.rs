//! Fault injection for tests and benchmarks: wraps any backend and fails or
//! delays the Nth call. Integration tests wrap the real DynamoDB and SQS
//! adapters with it; nothing in production code uses it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use terima_core::{Provider, QueueMessage, Timestamp};

use crate::store::{
    BackendError, Claim, DedupRecord, DedupStore, EventFilter, EventRecord, EventStore, Lease,
    LeaseRequest, Queue, ResourceState,
};

/// When an injected failure strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The call fails without reaching the backend.
    Before,
    /// The call reaches the backend and takes effect, then the caller sees an
    /// error (a lost response, a timeout after the write).
    After,
}

/// The shared plan of one wrapper: a call counter, the calls to fail and a
/// fixed delay added to every call.
#[derive(Debug, Default)]
pub struct FaultPlan {
    calls: AtomicU64,
    failures: Mutex<HashMap<u64, Fault>>,
    delay: Mutex<Duration>,
}

impl FaultPlan {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Fails call number `n` (counting from 1 across every operation).
    pub fn fail(&self, n: u64, fault: Fault) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(n, fault);
    }

    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap_or_else(|p| p.into_inner()) = delay;
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    async fn enter(&self) -> (u64, Option<Fault>) {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let delay = *self.delay.lock().unwrap_or_else(|p| p.into_inner());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let fault = self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&n)
            .copied();
        (n, fault)
    }
}

/// A backend wrapped with a [`FaultPlan`].
#[derive(Clone)]
pub struct Faulty<T> {
    inner: T,
    plan: Arc<FaultPlan>,
}

impl<T> Faulty<T> {
    pub fn new(inner: T, plan: Arc<FaultPlan>) -> Self {
        Self { inner, plan }
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }

    async fn run<R>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<R, BackendError>>,
    ) -> Result<R, BackendError> {
        let (n, fault) = self.plan.enter().await;
        let injected =
            || BackendError::new("injected", operation, format!("fault injected on call {n}"));
        match fault {
            Some(Fault::Before) => Err(injected()),
            Some(Fault::After) => {
                call.await?;
                Err(injected())
            }
            None => call.await,
        }
    }
}

impl<T: DedupStore> DedupStore for Faulty<T> {
    async fn claim(&self, record: &DedupRecord) -> Result<Claim, BackendError> {
        self.run("claim", self.inner.claim(record)).await
    }

    async fn record_conflict(&self, record: &DedupRecord, body: &str) -> Result<(), BackendError> {
        self.run("record_conflict", self.inner.record_conflict(record, body))
            .await
    }
}

impl<T: Queue> Queue for Faulty<T> {
    async fn send(&self, message: &QueueMessage) -> Result<(), BackendError> {
        self.run("send", self.inner.send(message)).await
    }
}

impl<T: EventStore> EventStore for Faulty<T> {
    async fn acquire(&self, request: &LeaseRequest) -> Result<Lease, BackendError> {
        self.run("acquire", self.inner.acquire(request)).await
    }

    async fn complete(
        &self,
        provider: Provider,
        work_key: &str,
        owner: &str,
        now: Timestamp,
    ) -> Result<bool, BackendError> {
        self.run(
            "complete",
            self.inner.complete(provider, work_key, owner, now),
        )
        .await
    }

    async fn fail(
        &self,
        provider: Provider,
        work_key: &str,
        owner: &str,
        error: &str,
    ) -> Result<bool, BackendError> {
        self.run("fail", self.inner.fail(provider, work_key, owner, error))
            .await
    }

    async fn event(
        &self,
        provider: Provider,
        work_key: &str,
    ) -> Result<Option<EventRecord>, BackendError> {
        self.run("event", self.inner.event(provider, work_key))
            .await
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, BackendError> {
        self.run("events", self.inner.events(filter)).await
    }

    async fn resource(
        &self,
        provider: Provider,
        kind: &str,
        id: &str,
    ) -> Result<Option<ResourceState>, BackendError> {
        self.run("resource", self.inner.resource(provider, kind, id))
            .await
    }

    async fn put_resource(
        &self,
        state: &ResourceState,
        expected: Option<u64>,
    ) -> Result<bool, BackendError> {
        self.run("put_resource", self.inner.put_resource(state, expected))
            .await
    }
}
