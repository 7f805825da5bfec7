//! Terima on AWS: the DynamoDB, SQS and S3 backends, the archive, and the
//! Lambda entry points that run the shared ack path, processor and outbox
//! sweeper.

pub mod archive;
pub mod dynamo;
pub mod lambda;
mod markers;
pub mod s3;
pub mod setup;
pub mod sqs;

pub use dynamo::DynamoStore;
pub use s3::S3Blobs;
pub use sqs::SqsQueue;
