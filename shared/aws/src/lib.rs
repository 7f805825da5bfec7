//! Terima on AWS: the DynamoDB and SQS backends and the Lambda entry points
//! that run the shared ack path and processor.

pub mod dynamo;
pub mod lambda;
pub mod setup;
pub mod sqs;

pub use dynamo::DynamoStore;
pub use sqs::SqsQueue;
