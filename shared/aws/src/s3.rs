//! The S3 bucket: bodies too large to travel inline (`claim/`), quarantined
//! bodies too large for their record (`claim/quarantine/`), and the archive
//! of the event log (`archive/`). Encrypted, private, with lifecycle rules in
//! `template.yaml`.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use terima_service::store::{BackendError, Blobs};

#[derive(Clone, Debug)]
pub struct S3Blobs {
    client: Client,
    bucket: String,
}

fn backend(operation: &'static str, e: impl std::fmt::Display) -> BackendError {
    BackendError::new("s3", operation, e)
}

impl S3Blobs {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Every key under `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, BackendError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    backend("list_objects_v2", aws_sdk_s3::error::DisplayErrorContext(e))
                })?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            match out.next_continuation_token() {
                Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => return Ok(keys),
            }
        }
    }
}

impl Blobs for S3Blobs {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BackendError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes.to_vec()))
            .send()
            .await
            .map_err(|e| backend("put_object", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => {
                return Ok(None);
            }
            Err(e) => {
                return Err(backend(
                    "get_object",
                    aws_sdk_s3::error::DisplayErrorContext(e),
                ));
            }
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| backend("get_object", e))?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }
}
