//! Reads the sample events in `events/`: API Gateway HTTP API (v2) and REST
//! API (v1) proxy events, as `sam local invoke -e` and `cargo lambda invoke`
//! take them.

use std::path::Path;

use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use terima_core::Provider;

/// The request a sample event describes.
#[derive(Clone, Debug)]
pub struct SampleRequest {
    pub path: String,
    pub provider: Provider,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GatewayEvent {
    raw_path: Option<String>,
    path: Option<String>,
    #[serde(default)]
    headers: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    multi_value_headers: Option<serde_json::Map<String, serde_json::Value>>,
    body: Option<String>,
    #[serde(default)]
    is_base64_encoded: bool,
}

/// Headers that describe one hop, not the delivery: the client sets its own.
const HOP_HEADERS: [&str; 4] = ["host", "content-length", "connection", "transfer-encoding"];

impl SampleRequest {
    pub fn read(file: &Path) -> Result<Self, String> {
        let bytes =
            std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        Self::parse(&bytes).map_err(|e| format!("{}: {e}", file.display()))
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let event: GatewayEvent =
            serde_json::from_slice(bytes).map_err(|e| format!("not an API Gateway event: {e}"))?;
        let path = event
            .raw_path
            .or(event.path)
            .ok_or("not an API Gateway proxy event (no rawPath or path)")?;
        let provider = path
            .strip_prefix("/webhooks/")
            .and_then(Provider::from_name)
            .ok_or_else(|| format!("{path} is not a provider route (/webhooks/<provider>)"))?;
        let mut headers = HeaderMap::new();
        let mut add = |name: &str, value: &serde_json::Value| -> Result<(), String> {
            let Some(value) = value.as_str() else {
                return Ok(());
            };
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("bad header name {name:?}"))?;
            if HOP_HEADERS.contains(&name.as_str()) {
                return Ok(());
            }
            let value =
                HeaderValue::from_str(value).map_err(|_| format!("bad value for header {name}"))?;
            headers.append(name, value);
            Ok(())
        };
        match (&event.multi_value_headers, &event.headers) {
            (Some(multi), _) => {
                for (name, values) in multi {
                    for value in values.as_array().into_iter().flatten() {
                        add(name, value)?;
                    }
                }
            }
            (None, Some(single)) => {
                for (name, value) in single {
                    add(name, value)?;
                }
            }
            (None, None) => {}
        }
        let body = event.body.unwrap_or_default();
        let body = if event.is_base64_encoded {
            base64::engine::general_purpose::STANDARD
                .decode(body.trim())
                .map_err(|e| format!("body is not base64: {e}"))?
        } else {
            body.into_bytes()
        };
        Ok(Self {
            path,
            provider,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v2_and_v1_events() {
        let v2 = br#"{"rawPath": "/webhooks/oms", "headers": {"Host": "x", "X-Whisperer-Event": "package.created"},
                      "body": "e30=", "isBase64Encoded": true}"#;
        let request = SampleRequest::parse(v2).expect("v2 event");
        assert_eq!(request.provider, Provider::Oms);
        assert_eq!(request.body, b"{}");
        assert!(request.headers.get("host").is_none());
        assert_eq!(request.headers["x-whisperer-event"], "package.created");

        let v1 = br#"{"path": "/webhooks/biteship", "headers": {"A": "1"}, "multiValueHeaders": {"A": ["1", "2"]},
                      "body": "{}"}"#;
        let request = SampleRequest::parse(v1).expect("v1 event");
        assert_eq!(request.headers.get_all("a").iter().count(), 2);
    }

    #[test]
    fn refuses_other_routes() {
        let err = SampleRequest::parse(br#"{"rawPath": "/other", "body": "{}"}"#)
            .expect_err("not a route");
        assert!(err.contains("/other"), "{err}");
        assert!(SampleRequest::parse(b"[]").is_err());
    }
}
