//! The ack path, the processor and the outbox sweeper, written once against
//! coarse storage traits ([`store`]) so that the Lambda functions (DynamoDB,
//! SQS and S3), the embedded default (a local file) and the tests (memory)
//! all run the same code.

pub mod config;
pub mod extensions;
pub mod faults;
pub mod ingest;
pub mod memory;
pub mod metrics;
pub mod process;
pub mod projection;
pub mod store;
pub mod sweep;

pub use config::{ConfigError, EndpointConfig, Env, Lookup, ProcessorConfig};
pub use ingest::{Delivered, Ingest, Outcome, Reply};
pub use metrics::Metrics;
pub use process::{Extension, Processor, Record};
