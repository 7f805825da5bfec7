//! The ack path and the processor, written once against coarse storage traits
//! ([`store`]) so that the Lambda functions (DynamoDB and SQS), the embedded
//! default (a local file) and the tests (memory) all run the same code.

pub mod config;
pub mod extensions;
pub mod faults;
pub mod ingest;
pub mod memory;
pub mod metrics;
pub mod process;
pub mod projection;
pub mod store;

pub use config::{ConfigError, EndpointConfig, Env, Lookup, ProcessorConfig};
pub use ingest::{Ingest, Outcome, Reply};
pub use metrics::Metrics;
pub use process::{Extension, Processor, Record};
