//! The console, as a person and an attacker see it: a real `terima serve`
//! with its console, driven by a real headless Chromium (WebDriver) —
//! deliveries appear on the live page without a reload, an event and a
//! resource story open, a dead letter is redriven behind a confirmation —
//! with screenshots under `target/console-screenshots/`; no configured
//! secret in any answer; writes refused without the flag, the token or from
//! another origin; no console on a non-loopback address unless asked.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::browser::Browser;
use common::load::HttpClient;
use common::{ConsoleProcess, Server, Signers, cli, cli_json, samples, secrets_file, variant};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use terima::gateway::SampleRequest;
use terima_core::{Clock, Provider, QueueMessage, SystemClock, Timestamp, inspect};
use terima_embedded::{EmbeddedStore, Options};
use terima_service::store::Queue;

const QUICK: Duration = Duration::from_secs(30);
const ENTER: &str = "\u{E007}";

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .join("console-screenshots")
}

/// `terima serve` with its console on a free loopback port.
fn serve_with_console(dir: &Path, log: &str, writes: bool) -> Server {
    let server = Server::launch(log, |command| {
        command
            .arg("--data-dir")
            .arg(dir)
            .args(["--console", "127.0.0.1:0"]);
        if writes {
            command.arg("--console-allow-writes");
        }
    });
    assert!(server.console.is_some(), "the console's address is printed");
    server
}

fn sample(path_end: &str) -> SampleRequest {
    samples()
        .into_iter()
        .find(|(path, _)| path.ends_with(path_end))
        .unwrap_or_else(|| panic!("no sample {path_end}"))
        .1
}

/// Puts a queue message for a fresh event straight into the dead-letter
/// queue (one receive allowed, received twice); returns its resource.
async fn seed_dead_letter(dir: &Path) -> (String, String) {
    let request = variant(&sample("bitbybit/customer.created.json"), "-dead");
    let inspected = inspect(request.provider, &request.headers, &request.body).expect("reads");
    let text = std::str::from_utf8(&request.body).expect("utf-8");
    let now = Timestamp::from_unix_millis(SystemClock.now_millis());
    let message = QueueMessage::new(
        &inspected,
        &request.headers,
        text,
        now,
        "seeded-dead-letter",
    );
    let options = Options {
        max_receive: 1,
        ..Options::default()
    };
    let store = EmbeddedStore::open(dir, options).expect("store opens");
    Queue::send(&store, &message).await.expect("sent");
    for _ in 0..2 {
        store.receive(10, Duration::ZERO).await.expect("received");
    }
    assert_eq!(store.dead_letters(None).await.expect("listed").len(), 1);
    let resource = inspected.reading.resource;
    (resource.kind, resource.id)
}

/// Signs and posts one request; the gateway's status.
async fn deliver(client: &HttpClient, server: &Server, request: &SampleRequest) -> u16 {
    let url = format!("{}{}", server.url(), request.path);
    terima::send::post(client, &url, request)
        .await
        .expect("the gateway answers")
        .0
}

/// Every kind of outcome: the Bebas Kirim order's story out of order
/// (accepted, some of them late), a duplicate, a forgery (rejected) and a
/// body that verifies but does not read (quarantined).
async fn send_a_mix(client: &HttpClient, server: &Server, signers: &Signers) {
    let mut order: Vec<SampleRequest> = samples()
        .into_iter()
        .filter(|(path, r)| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            r.provider == Provider::BebasKirim
                && (name.starts_with("order") || name.starts_with("awb."))
                && !name.contains("--")
        })
        .map(|(_, r)| r)
        .collect();
    // Newest states first: most arrive late.
    order.reverse();
    for request in &mut order {
        signers.sign(request);
        assert_eq!(deliver(client, server, request).await, 200);
    }
    assert_eq!(
        deliver(client, server, &order[0]).await,
        200,
        "the duplicate"
    );
    let mut forged = sample("oms/package.created.json");
    signers.sign(&mut forged);
    forged.body.extend_from_slice(b" ");
    assert_eq!(deliver(client, server, &forged).await, 401);
    let mut unreadable = sample("oms/package.created.json");
    unreadable.body = br#"{"event": {"uuid": "u-1"}, "not": "an OMS event"}"#.to_vec();
    signers.sign(&mut unreadable);
    assert_eq!(deliver(client, server, &unreadable).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_watches_deliveries_arrive_opens_a_story_and_redrives_a_dead_letter() {
    // GIVEN a dead letter, and terima serve with its console, writes allowed
    let data = tempfile::tempdir().expect("temp dir");
    let (dead_kind, dead_id) = seed_dead_letter(data.path()).await;
    let server = serve_with_console(data.path(), "console-browser", true);
    let console = server.console.clone().expect("console");
    let shots = screenshots();
    // AND a headless Chromium on the live page
    let browser = Browser::start(1280, 900).await;
    browser.goto(&format!("{console}#/")).await;
    browser
        .wait_for("the live page", "return document.querySelector('#live-table') !== null && document.getElementById('conn').textContent === 'live'", QUICK)
        .await;
    browser
        .script("window.__notReloaded = 42;", json!([]))
        .await;

    // WHEN webhooks arrive
    let client = terima::send::client();
    send_a_mix(&client, &server, &Signers::load()).await;

    // THEN they appear without a reload, each with its outcome, and the
    // logged ones reach `processed`
    browser
        .wait_for(
            "every outcome and processing status on the live page",
            r"const rows = [...document.querySelectorAll('#rows tr')].map(r => r.innerText);
              const has = (...words) => rows.some(t => words.every(w => t.includes(w)));
              return window.__notReloaded === 42 && has('order.completed', 'processed', 'accepted')
                && has('order.draft', 'processed') && has('duplicate') && has('rejected', 'no_secret_matched')
                && has('quarantined');",
            QUICK,
        )
        .await;
    browser.screenshot(&shots.join("live.png")).await;

    // AND the keyboard moves through the rows and opens one
    browser.press("j").await;
    let selected = browser
        .script(
            "return document.activeElement.getAttribute('aria-selected')",
            json!([]),
        )
        .await;
    assert_eq!(selected, "true", "j selects the first row");
    browser.press("/").await;
    let focused = browser
        .script("return document.activeElement.name", json!([]))
        .await;
    assert_eq!(focused, "provider", "/ focuses the filters");
    browser
        .script("document.activeElement.blur()", json!([]))
        .await;
    browser
        .script(
            r"const rows = [...document.querySelectorAll('#rows tr')];
              const i = rows.findIndex(r => r.innerText.includes('order.completed'));
              rows.forEach(r => r.removeAttribute('aria-selected'));
              rows[i].setAttribute('aria-selected', 'true'); rows[i].focus();",
            json!([]),
        )
        .await;
    browser.press(ENTER).await;

    // THEN the event's page shows its keys, reading, work and body; the
    // raw bytes are the bytes sent
    browser
        .wait_for("the event page", "return document.querySelector('h1').textContent === 'order.completed' && document.body.innerText.includes('Typed reading')", QUICK)
        .await;
    let text = browser
        .script("return document.body.innerText", json!([]))
        .await;
    let text = text.as_str().unwrap_or_default();
    for expected in [
        "Work key",
        "Dedup key",
        "Headers that matter",
        "Processing",
        "BebasKirim",
    ] {
        assert!(
            text.contains(expected),
            "the event page shows {expected}: {text}"
        );
    }
    browser.screenshot(&shots.join("event.png")).await;
    browser.click("button[aria-pressed]").await;
    let sent = String::from_utf8(sample("bebaskirim/order.completed.json").body).expect("utf-8");
    browser
        .wait_for(
            "the raw bytes",
            &format!(
                "return document.querySelector('pre.code').textContent === {}",
                serde_json::to_string(&sent).expect("json")
            ),
            QUICK,
        )
        .await;

    // WHEN its resource is opened
    browser.resize(1280, 1300).await;
    browser
        .click("a[href^='#/resource/bebaskirim/order/']")
        .await;
    // THEN the story shows both orders, the late events marked with why,
    // the projected state and the derived order
    browser
        .wait_for("the resource story", "return document.body.innerText.includes('In provider time') && document.querySelectorAll('.step').length > 0", QUICK)
        .await;
    let story = browser
        .script(
            r"return { still: document.querySelectorAll('.timeline ol:last-of-type .step.still').length,
                       moved: document.querySelectorAll('.step.moved').length,
                       late: [...document.querySelectorAll('.why')].some(w => w.textContent.startsWith('late:')),
                       duplicate: document.body.innerText.includes('duplicate: acknowledged'),
                       derived: document.querySelector('a[href$=\'/order/ORD-2024-001-1\']') !== null,
                       status: document.body.innerText.includes('completed') }",
            json!([]),
        )
        .await;
    assert!(story["still"].as_u64() > Some(0), "{story}");
    assert!(story["moved"].as_u64() > Some(0), "{story}");
    for key in ["late", "duplicate", "derived", "status"] {
        assert_eq!(story[key], true, "story: {key}: {story}");
    }
    browser.screenshot(&shots.join("story.png")).await;

    // WHEN the dead letters are opened (keyboard: d) and one is redriven,
    // confirmed in the dialog
    browser.resize(1280, 900).await;
    browser.press("d").await;
    browser
        .wait_for(
            "the dead letter",
            "return document.querySelector('button.redrive') !== null",
            QUICK,
        )
        .await;
    browser.screenshot(&shots.join("dead-letters.png")).await;
    browser.click("button.redrive").await;
    browser
        .wait_for(
            "the confirmation",
            "return document.getElementById('confirm').open",
            QUICK,
        )
        .await;
    browser.click("#confirm-ok").await;
    // THEN the queue is empty, and the event is processed
    browser
        .wait_for(
            "an empty dead-letter queue",
            "return document.body.innerText.includes('The dead-letter queue is empty.')",
            QUICK,
        )
        .await;
    let dir = data.path().to_str().expect("utf-8 path").to_owned();
    assert!(cli_json(&["dlq", "list", "--data-dir", &dir]).is_empty());
    let resource = format!("{dead_kind}:{dead_id}");
    let deadline = std::time::Instant::now() + QUICK;
    loop {
        let events = cli_json(&[
            "events",
            "list",
            "--data-dir",
            &dir,
            "--resource",
            &resource,
        ]);
        if events.first().is_some_and(|e| e["status"] == "processed") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the redriven event was not processed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // AND the live page reads on a phone
    browser.resize(390, 844).await;
    browser.goto(&format!("{console}#/")).await;
    browser
        .wait_for(
            "the live page on a phone",
            "return document.querySelectorAll('#rows tr').length > 3",
            QUICK,
        )
        .await;
    browser.screenshot(&shots.join("live-phone.png")).await;
    browser.quit().await;
    println!("screenshots in {}", shots.display());
}

/// One GET or POST to the console: status, headers and body.
async fn call(
    client: &HttpClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = if method == "POST" { "{}" } else { "" };
    let request = builder.body(Full::new(Bytes::from(body))).expect("request");
    let response = tokio::time::timeout(QUICK, client.request(request))
        .await
        .expect("in time")
        .expect("answered");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

async fn get_json(client: &HttpClient, url: &str) -> Value {
    let (status, _, body) = call(client, "GET", url, &[]).await;
    assert_eq!(status, StatusCode::OK, "{url}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

/// The live stream's first chunks, for `wait`.
async fn stream_for(client: &HttpClient, url: &str, wait: Duration) -> String {
    let request = Request::get(url)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = client.request(request).await.expect("answered");
    assert_eq!(
        response.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/event-stream"[..])
    );
    let mut body = response.into_body();
    let mut text = String::new();
    let _ = tokio::time::timeout(wait, async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                text.push_str(&String::from_utf8_lossy(&data));
            }
        }
    })
    .await;
    text
}

/// The values of every secrets variable in events/test-secrets.env.
fn configured_secrets() -> Vec<String> {
    std::fs::read_to_string(secrets_file())
        .expect("test secrets")
        .lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(name, _)| name.ends_with("_SECRETS") || name.ends_with("_TOKENS"))
        .flat_map(|(_, value)| value.split(',').map(|v| v.trim().to_owned()))
        .filter(|v| !v.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_answer_and_writes_need_the_flag_the_token_and_the_origin() {
    // GIVEN terima serve with the console, writes allowed, and every sample
    // delivered (and a forgery, a duplicate, a quarantined body)
    let data = tempfile::tempdir().expect("temp dir");
    let server = serve_with_console(data.path(), "console-secrets", true);
    let console = server.console.clone().expect("console");
    let client = terima::send::client();
    let signers = Signers::load();
    for (_, mut request) in samples() {
        signers.sign(&mut request);
        deliver(&client, &server, &request).await;
    }
    send_a_mix(&client, &server, &signers).await;
    let dir = data.path().to_str().expect("utf-8").to_owned();
    let drained = |dir: String| async move {
        let deadline = std::time::Instant::now() + QUICK;
        while cli_json(&["status", "--data-dir", &dir])[0]["queued"] != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "not processed in time"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    drained(dir.clone()).await;
    // AND once they are processed, a second body for a recorded work key
    let mut conflicting = sample("bebaskirim/order.completed.json");
    let mut body: Value = serde_json::from_slice(&conflicting.body).expect("JSON");
    body["data"]["order_number"] = "BBS-2024-0001-OTHER".into();
    conflicting.body = serde_json::to_vec(&body).expect("JSON");
    signers.sign(&mut conflicting);
    assert_eq!(deliver(&client, &server, &conflicting).await, 200);
    drained(dir.clone()).await;

    // WHEN every page and endpoint is read, for every event, resource and
    // quarantined body
    let mut answers: HashMap<String, String> = HashMap::new();
    let mut urls: BTreeSet<String> = [
        "",
        "assets/app.js",
        "assets/style.css",
        "api/info",
        "api/deliveries",
        "api/dead-letters",
        "api/quarantine",
        "api/conflicts",
        "api/events?limit=500",
    ]
    .iter()
    .map(|p| format!("{console}{p}"))
    .collect();
    let events = get_json(&client, &format!("{console}api/events?limit=500")).await;
    let events = events["items"].as_array().expect("items").clone();
    assert!(
        events.len() > 40,
        "every sample is listed: {}",
        events.len()
    );
    for event in &events {
        let id = event["id"].as_str().expect("id");
        urls.insert(format!("{console}api/events/{id}"));
        urls.insert(format!("{console}api/events/{id}/raw"));
        urls.insert(format!(
            "{console}api/resources/{}/{}/{}",
            event["provider"].as_str().expect("provider"),
            event["resource_kind"].as_str().expect("kind"),
            event["resource_id"].as_str().expect("id"),
        ));
    }
    let conflicts = get_json(&client, &format!("{console}api/conflicts")).await;
    let conflict = &conflicts["items"][0];
    let second = conflict["second_event_id"].as_str().expect("a conflict");
    let detail = get_json(&client, &format!("{console}api/events/{second}")).await;
    assert_eq!(
        detail["conflict"]["other"]["id"], conflict["first_event_id"],
        "the event page names the other event: {detail}"
    );
    assert!(
        detail["conflict"]["other"]["body_pretty"]
            .as_str()
            .is_some_and(|b| b.contains("BBS-2024-0001") && !b.contains("OTHER")),
        "and shows its body beside this one: {detail}"
    );
    let deliveries = get_json(&client, &format!("{console}api/deliveries")).await;
    assert_eq!(
        deliveries["items"][0]["outcome"], "conflict",
        "the ack path answered conflict: {deliveries}"
    );
    let quarantined = get_json(&client, &format!("{console}api/quarantine")).await;
    for record in quarantined["items"].as_array().expect("items") {
        urls.insert(format!(
            "{console}api/quarantine/{}",
            record["id"].as_str().expect("id")
        ));
    }
    for url in &urls {
        let (status, _, body) = call(&client, "GET", url, &[]).await;
        assert!(
            status.is_success() || status == StatusCode::NOT_FOUND,
            "{url}: {status} {body}"
        );
        answers.insert(url.clone(), body);
    }
    let stream = stream_for(
        &client,
        &format!("{console}api/stream"),
        Duration::from_secs(2),
    )
    .await;
    assert!(
        stream.contains("event: delivery") && stream.contains("event: logged"),
        "{stream}"
    );
    answers.insert("stream".to_owned(), stream);
    // AND `terima console` on the same data directory
    let offline = ConsoleProcess::start(
        &[
            "--addr",
            "127.0.0.1:0",
            "--data-dir",
            &dir,
            "--env-file",
            secrets_file().to_str().expect("utf-8"),
        ],
        |_| {},
    );
    let listed = get_json(&client, &format!("{}api/events?limit=5", offline.url)).await;
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(5),
        "terima console reads the data directory"
    );
    answers.insert("terima console".to_owned(), listed.to_string());

    // THEN no configured secret appears anywhere
    let secrets = configured_secrets();
    assert!(secrets.len() >= 4);
    for (url, body) in &answers {
        for secret in &secrets {
            assert!(
                !body.contains(secret.as_str()),
                "{url} shows the secret {secret}"
            );
        }
    }
    let page = &answers[&console];
    assert!(page.contains("content=\"on\""), "writes are on");

    // WHEN writes come without the token, from another origin, or for
    // another Host (DNS rebinding)
    let redrive = format!("{console}api/dead-letters/redrive");
    let token = page
        .split("name=\"terima-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the token is in the page")
        .to_owned();
    assert_eq!(token.len(), 32);
    let host = console
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let origin = format!("http://{host}");
    // THEN they are refused; with the token from this origin, they run
    for (headers, expected) in [
        (vec![], StatusCode::FORBIDDEN),
        (
            vec![("x-terima-token", "0123456789abcdef0123456789abcdef")],
            StatusCode::FORBIDDEN,
        ),
        (
            vec![
                ("x-terima-token", token.as_str()),
                ("origin", "http://evil.example"),
            ],
            StatusCode::FORBIDDEN,
        ),
        (
            vec![("x-terima-token", token.as_str()), ("host", "evil.example")],
            StatusCode::FORBIDDEN,
        ),
        (
            vec![
                ("x-terima-token", token.as_str()),
                ("origin", origin.as_str()),
            ],
            StatusCode::OK,
        ),
    ] {
        let (status, _, body) = call(&client, "POST", &redrive, &headers).await;
        assert_eq!(status, expected, "{headers:?}: {body}");
    }
    let (status, _, _) = call(
        &client,
        "GET",
        &format!("{console}api/info"),
        &[("host", "evil.example:80")],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "reads answer loopback names only"
    );

    // AND without the flag, the page has no token and writes answer 403
    let (status, _, body) = call(
        &client,
        "POST",
        &format!("{}api/dead-letters/redrive", offline.url),
        &[("x-terima-token", token.as_str())],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("--allow-writes"), "{body}");
    let (_, _, page) = call(&client, "GET", &offline.url, &[]).await;
    assert!(
        page.contains("name=\"terima-token\" content=\"\"") && page.contains("content=\"off\"")
    );
}

#[test]
fn the_console_refuses_a_non_loopback_address_unless_asked() {
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().to_str().expect("utf-8");
    let env = secrets_file();
    let env = env.to_str().expect("utf-8");
    // WHEN serve or console is asked for a console on every interface
    for (args, flag) in [
        (
            vec![
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--console",
                "0.0.0.0:0",
                "--data-dir",
                dir,
                "--env-file",
                env,
            ],
            "--console-allow-remote",
        ),
        (
            vec!["console", "--addr", "0.0.0.0:0", "--data-dir", dir],
            "--allow-remote",
        ),
    ] {
        let output = cli(&args, QUICK);
        // THEN it refuses with a usage error that names the flag
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("refusing to serve the console on 0.0.0.0:0") && stderr.contains(flag),
            "{stderr}"
        );
    }
    // AND with the flag, it serves
    let server = Server::launch("console-remote", |command| {
        command.arg("--data-dir").arg(data.path()).args([
            "--console",
            "0.0.0.0:0",
            "--console-allow-remote",
        ]);
    });
    assert!(
        server
            .console
            .as_deref()
            .is_some_and(|url| url.starts_with("http://0.0.0.0:"))
    );
}
