//! `terima console --backend aws` on a stack on the local emulator: the
//! event log, a resource's story and the dead-letter queue of the deployed
//! stack, with no secret in them (the browser test runs on the embedded
//! backend: `console.rs`).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::aws::Stack;
use common::{ConsoleProcess, Signers, samples};
use http::Request;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

async fn get(url: &str) -> Value {
    let client = terima::send::client();
    let request = Request::get(url)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = client.request(request).await.expect("answered");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert!(
        status.is_success(),
        "{url}: {status} {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terima_console_reads_a_deployed_stack() {
    // GIVEN a stack on the emulator that processed two events
    let stack = Stack::create("console");
    let server = stack.serve("console-aws", &[]);
    let client = terima::send::client();
    let signers = Signers::load();
    let mut sent = Vec::new();
    for (path, mut request) in samples() {
        if path.ends_with("oms/package.created.json")
            || path.ends_with("bitbybit/order.created.json")
        {
            signers.sign(&mut request);
            let url = format!("{}{}", server.url(), request.path);
            let (status, _) = terima::send::post(&client, &url, &request)
                .await
                .expect("answered");
            assert_eq!(status, 200);
            sent.push(request);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while stack
        .cli_json(&["events", "list", "--status", "processed"])
        .len()
        < 2
    {
        assert!(Instant::now() < deadline, "not processed in time");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // WHEN terima console reads the stack
    let console =
        ConsoleProcess::start(&["--backend", "aws", "--addr", "127.0.0.1:0"], |command| {
            stack.apply(command);
        });

    // THEN its pages' data is the stack's
    let events = get(&format!("{}api/events", console.url)).await;
    let items = events["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{events}");
    let first = &items[0];
    let detail = get(&format!(
        "{}api/events/{}",
        console.url,
        first["id"].as_str().expect("id")
    ))
    .await;
    assert_eq!(detail["logged"], true);
    assert!(detail["body"].as_str().is_some_and(|b| !b.is_empty()));
    let story = get(&format!(
        "{}api/resources/{}/{}/{}",
        console.url,
        first["provider"].as_str().expect("provider"),
        first["resource_kind"].as_str().expect("kind"),
        first["resource_id"].as_str().expect("id"),
    ))
    .await;
    assert!(story["state"].is_object(), "{story}");
    let letters = get(&format!("{}api/dead-letters", console.url)).await;
    assert_eq!(letters["items"].as_array().map(Vec::len), Some(0));
    let info = get(&format!("{}api/info", console.url)).await;
    assert_eq!(info["backend"], "aws");
    assert_eq!(info["writes"], false);
}
