//! Fault injection for tests and benchmarks: wraps any backend and fails or
//! delays the Nth call. Integration tests wrap the real DynamoDB and SQS
//! adapters with it; nothing in production code uses it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use terima_core::{Provider, QueueMessage, Resource, Timestamp};

use crate::store::{
    AckStore, BackendError, Blobs, ConflictRecord, Effect, EventRecord, EventStore, Lease,
    LeaseRequest, Outbox, QuarantineRecord, Queue, ResourceState, Seen, WorkKey, WorkRecord,
};

/// When an injected failure strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The call fails without reaching the backend.
    Before,
    /// The call reaches the backend and takes effect, then the caller sees an
    /// error (a lost response, a timeout after the write).
    After,
    /// The call never returns and never reaches the backend: the caller is
    /// killed waiting (a function that dies, a request that times out).
    Stall,
    /// The call takes effect and then never returns: killed after the write.
    StallAfter,
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
            Some(Fault::Stall) => std::future::pending().await,
            Some(Fault::StallAfter) => {
                let _ = call.await;
                std::future::pending().await
            }
            None => call.await,
        }
    }
}

impl<T: AckStore> AckStore for Faulty<T> {
    async fn seen(
        &self,
        provider: Provider,
        resource: &Resource,
        work_key: &str,
        digest: &str,
    ) -> Result<Seen, BackendError> {
        self.run(
            "seen",
            self.inner.seen(provider, resource, work_key, digest),
        )
        .await
    }

    async fn hold(&self, message: &QueueMessage) -> Result<(), BackendError> {
        self.run("hold", self.inner.hold(message)).await
    }

    async fn quarantine(&self, record: &QuarantineRecord) -> Result<(), BackendError> {
        self.run("quarantine", self.inner.quarantine(record)).await
    }
}

impl<T: Queue> Queue for Faulty<T> {
    async fn send(&self, message: &QueueMessage) -> Result<(), BackendError> {
        self.run("send", self.inner.send(message)).await
    }
}

impl<T: Blobs> Blobs for Faulty<T> {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BackendError> {
        self.run("blob_put", self.inner.put(key, bytes)).await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        self.run("blob_get", self.inner.get(key)).await
    }
}

impl<T: Outbox> Outbox for Faulty<T> {
    async fn held(&self, limit: usize) -> Result<Vec<(String, String)>, BackendError> {
        self.run("held", self.inner.held(limit)).await
    }

    async fn release(&self, handle: &str) -> Result<(), BackendError> {
        self.run("release", self.inner.release(handle)).await
    }
}

impl<T: EventStore> EventStore for Faulty<T> {
    async fn works(
        &self,
        provider: Provider,
        resource: &Resource,
        work_key: &str,
    ) -> Result<Vec<WorkRecord>, BackendError> {
        self.run("works", self.inner.works(provider, resource, work_key))
            .await
    }

    async fn log(&self, event: &EventRecord) -> Result<(), BackendError> {
        self.run("log", self.inner.log(event)).await
    }

    async fn unlog(&self, event: &EventRecord) -> Result<(), BackendError> {
        self.run("unlog", self.inner.unlog(event)).await
    }

    async fn acquire(&self, request: &LeaseRequest) -> Result<Lease, BackendError> {
        self.run("acquire", self.inner.acquire(request)).await
    }

    async fn complete(
        &self,
        key: &WorkKey,
        owner: &str,
        now: Timestamp,
        effect: Effect,
    ) -> Result<bool, BackendError> {
        self.run("complete", self.inner.complete(key, owner, now, effect))
            .await
    }

    async fn finish(&self, record: &WorkRecord) -> Result<bool, BackendError> {
        self.run("finish", self.inner.finish(record)).await
    }

    async fn fail(
        &self,
        key: &WorkKey,
        owner: Option<&str>,
        error: &str,
    ) -> Result<bool, BackendError> {
        self.run("fail", self.inner.fail(key, owner, error)).await
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

    async fn resource_to_update(
        &self,
        provider: Provider,
        kind: &str,
        id: &str,
    ) -> Result<Option<ResourceState>, BackendError> {
        self.run(
            "resource_to_update",
            self.inner.resource_to_update(provider, kind, id),
        )
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

    async fn put_resource_and_finish(
        &self,
        state: &ResourceState,
        expected: Option<u64>,
        work: &WorkRecord,
    ) -> Result<bool, BackendError> {
        self.run(
            "put_resource_and_finish",
            self.inner.put_resource_and_finish(state, expected, work),
        )
        .await
    }

    async fn record_conflict(&self, conflict: &ConflictRecord) -> Result<(), BackendError> {
        self.run("record_conflict", self.inner.record_conflict(conflict))
            .await
    }
}
