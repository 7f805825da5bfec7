//! The operator's commands against a running `terima serve` on the same data
//! directory, and the documented exit code of every kind of failure.

mod common;

use std::time::{Duration, Instant};

use common::{BIN, Server, Signers, cli, cli_json, keys, samples, secrets_file};
use terima::failure::code;
use terima::send::{client, post};
use terima_core::Provider;

const QUICK: Duration = Duration::from_secs(30);

fn exit_code(args: &[&str]) -> i32 {
    cli(args, QUICK).status.code().expect("exited, not killed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspection_and_replay_work_while_serve_runs() {
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().to_str().expect("utf-8 path").to_owned();
    let server = Server::start(data.path(), "operator", &[]);
    let signers = Signers::load();
    let (_, mut order) = samples()
        .into_iter()
        .find(|(path, _)| path.ends_with("bitbybit/order.created.json"))
        .expect("the BitByBit order sample");
    signers.sign(&mut order);
    let url = format!("{}{}", server.url(), order.path);
    let (status, _) = post(&client(), &url, &order).await.expect("reachable");
    assert_eq!(status, 200);
    let (_, work_key, _) = keys(&order);

    // GIVEN serve is running WHEN the CLI lists on the same directory THEN it sees the event processed
    let deadline = Instant::now() + Duration::from_secs(30);
    let event = loop {
        let listed = cli_json(&[
            "events",
            "list",
            "--data-dir",
            &dir,
            "--provider",
            "bitbybit",
        ]);
        if let Some(event) = listed.into_iter().find(|e| e["status"] == "processed") {
            break event;
        }
        assert!(Instant::now() < deadline, "not processed in time");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(event["work_key"], work_key.as_str());
    assert_eq!(event["attempts"], 1);
    let id = event["id"].as_str().expect("an id").to_owned();

    let shown = cli_json(&["events", "show", &id, "--data-dir", &dir]);
    assert_eq!(shown.len(), 1);
    assert_eq!(
        shown[0]["body"].as_str().map(str::as_bytes),
        Some(order.body.as_slice())
    );
    // And byte for byte, as received.
    let raw = cli(&["events", "show", &id, "--raw", "--data-dir", &dir], QUICK);
    assert!(raw.status.success());
    assert_eq!(raw.stdout, order.body);
    for field in [
        "provider",
        "event_type",
        "dedup_key",
        "resource_kind",
        "resource_id",
        "status",
        "attempts",
    ] {
        assert!(!shown[0][field].is_null(), "{field}");
    }

    let kind = event["resource_kind"].as_str().expect("kind");
    let resource_id = event["resource_id"].as_str().expect("id");
    let resource = cli_json(&[
        "resources",
        "show",
        "bitbybit",
        kind,
        resource_id,
        "--data-dir",
        &dir,
    ]);
    for field in ["provider", "kind", "id", "status", "deleted", "updated_at"] {
        assert!(
            resource[0]["state"].get(field).is_some(),
            "{field} missing in {}",
            resource[0]
        );
    }
    assert_eq!(resource[0]["events"][0]["event_id"], id.as_str());
    assert_eq!(resource[0]["events"][0]["effect"], "applied");

    let filtered = cli_json(&[
        "events",
        "list",
        "--data-dir",
        &dir,
        "--resource",
        &format!("{kind}:{resource_id}"),
        "--status",
        "processed",
        "--since",
        "2000-01-01T00:00:00Z",
        "--limit",
        "1",
    ]);
    assert_eq!(filtered.len(), 1);
    assert!(
        cli_json(&[
            "events",
            "list",
            "--data-dir",
            &dir,
            "--until",
            "2000-01-01T00:00:00Z"
        ])
        .is_empty()
    );

    // WHEN the event is replayed THEN it goes through dedup and the processor does nothing twice
    let dry = cli_json(&[
        "replay",
        "--data-dir",
        &dir,
        "--provider",
        "bitbybit",
        "--dry-run",
    ]);
    assert_eq!(dry.len(), 1);
    let replayed = cli_json(&[
        "replay",
        "--data-dir",
        &dir,
        "--provider",
        "bitbybit",
        "--rate",
        "100",
    ]);
    assert_eq!(replayed[0]["id"], id.as_str());
    assert_eq!(replayed[0]["outcome"], "duplicate");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = cli_json(&["status", "--data-dir", &dir]);
        if status[0]["queued"] == 0 && status[0]["in_flight"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replay not consumed: {}",
            status[0]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = cli_json(&["events", "show", &id, "--data-dir", &dir]);
    assert_eq!(after[0]["attempts"], 1, "processed once, replay or not");
    assert_eq!(after[0]["status"], "processed");
    assert!(cli_json(&["dlq", "list", "--data-dir", &dir]).is_empty());
    assert_eq!(
        cli_json(&["dlq", "redrive", "--data-dir", &dir])[0]["redriven"],
        0
    );

    // AND every failure has its documented exit code
    assert_eq!(
        exit_code(&[
            "events",
            "show",
            "20000101T000000000-000000000000",
            "--data-dir",
            &dir
        ]),
        i32::from(code::NOT_FOUND)
    );
    assert_eq!(
        exit_code(&[
            "resources",
            "show",
            "oms",
            "package",
            "none",
            "--data-dir",
            &dir
        ]),
        i32::from(code::NOT_FOUND)
    );
    assert_eq!(
        exit_code(&["events", "show", "nonsense", "--data-dir", &dir]),
        i32::from(code::USAGE)
    );
    assert_eq!(
        exit_code(&["events", "list", "--since", "soon", "--data-dir", &dir]),
        i32::from(code::USAGE)
    );
    let missing = data.path().join("missing");
    let missing = missing.to_str().expect("utf-8");
    assert_eq!(
        exit_code(&["events", "list", "--data-dir", missing]),
        i32::from(code::BACKEND)
    );
    assert_eq!(
        exit_code(&["events", "list", "--env-file", missing]),
        i32::from(code::CONFIG)
    );

    let sample = common::repo_root().join("events/bitbybit/order.created.json");
    let sample = sample.to_str().expect("utf-8");
    let secrets = secrets_file();
    let secrets = secrets.to_str().expect("utf-8");
    let sent = cli(
        &[
            "send",
            sample,
            "--url",
            &server.url(),
            "--env-file",
            secrets,
        ],
        QUICK,
    );
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(String::from_utf8_lossy(&sent.stdout).contains(": 200 "));

    let wrong = data.path().join("wrong.env");
    std::fs::write(&wrong, "TERIMA_BITBYBIT_SECRETS=not-the-secret\n").expect("write env file");
    let wrong = wrong.to_str().expect("utf-8");
    assert_eq!(
        exit_code(&["send", sample, "--url", &server.url(), "--env-file", wrong]),
        i32::from(code::SEND_FAILED)
    );
    assert_eq!(
        exit_code(&["send", sample, "--url", &server.url()]),
        i32::from(code::CONFIG)
    );
    assert_eq!(
        exit_code(&[
            "send",
            sample,
            "--url",
            "http://127.0.0.1:9",
            "--env-file",
            secrets
        ]),
        i32::from(code::BACKEND)
    );
    assert_eq!(
        exit_code(&["send", "no-such-file.json"]),
        i32::from(code::USAGE)
    );

    assert!(
        server.terminate().is_some_and(|s| s.success()),
        "SIGTERM stops serve cleanly"
    );
}

/// A body that an older, stricter version of the reading rules put in
/// quarantine reads now: `quarantine retry` queues it and it is processed.
/// One that still does not read stays, unmarked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantined_bodies_are_listed_shown_and_retried() {
    use terima_core::Timestamp;
    use terima_embedded::{EmbeddedStore, Options};
    use terima_service::store::{AckStore, QuarantineRecord, QuarantinedBody, quarantine_id};

    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().to_str().expect("utf-8 path").to_owned();
    let server = Server::start(data.path(), "quarantine", &[]);
    let signers = Signers::load();
    let (_, template) = samples()
        .into_iter()
        .find(|(path, _)| path.ends_with("biteship/order.status.json"))
        .expect("the Biteship sample");
    let url = format!("{}{}", server.url(), template.path);
    // Quarantined by this version: a duplicated key.
    let mut broken = template.clone();
    broken.body = br#"{"event": "order.status", "order_id": "x", "order_id": "y"}"#.to_vec();
    signers.sign(&mut broken);
    let (status, body) = post(&client(), &url, &broken).await.expect("reachable");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("quarantined"), "{body}");
    // Quarantined by an older version whose rules refused what reads now.
    let store = EmbeddedStore::open(
        data.path(),
        Options {
            create: false,
            ..Options::default()
        },
    )
    .expect("the data directory");
    let at = Timestamp::from_unix_millis(1_705_764_600_000);
    let readable = QuarantineRecord {
        id: quarantine_id(at, "old-request"),
        provider: Provider::Biteship,
        received_at: at,
        request_id: "old-request".to_owned(),
        reason: "wrong_type".to_owned(),
        detail: "$.courier_driver_phone is a number, expected a string".to_owned(),
        headers: Default::default(),
        body: QuarantinedBody::Text {
            text: String::from_utf8(template.body.clone()).expect("utf-8"),
        },
        retried: None,
    };
    store.quarantine(&readable).await.expect("stored");
    drop(store);

    let listed = cli_json(&["quarantine", "list", "--data-dir", &dir]);
    assert_eq!(listed.len(), 2);
    let reasons: Vec<&str> = listed.iter().filter_map(|q| q["reason"].as_str()).collect();
    assert!(
        reasons.contains(&"duplicate_key") && reasons.contains(&"wrong_type"),
        "{reasons:?}"
    );
    let broken_id = listed
        .iter()
        .find(|q| q["reason"] == "duplicate_key")
        .and_then(|q| q["id"].as_str())
        .expect("an id")
        .to_owned();
    let shown = cli_json(&["quarantine", "show", &broken_id, "--data-dir", &dir]);
    assert_eq!(
        shown[0]["body"].as_str().map(str::as_bytes),
        Some(broken.body.as_slice())
    );

    let retried = cli_json(&["quarantine", "retry", "--data-dir", &dir]);
    assert_eq!(retried.len(), 2);
    let outcome = |id: &str| {
        retried
            .iter()
            .find(|r| r["id"] == id)
            .and_then(|r| r["outcome"].as_str())
            .map(str::to_owned)
            .unwrap_or_default()
    };
    assert_eq!(outcome(&readable.id), "accepted");
    assert!(
        outcome(&broken_id).starts_with("still unreadable"),
        "{retried:?}"
    );
    // The retried body is processed like any delivery.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = cli_json(&[
            "events",
            "list",
            "--data-dir",
            &dir,
            "--provider",
            "biteship",
        ]);
        if events.iter().any(|e| e["status"] == "processed") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the retried body was not processed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A second retry only takes what has not been retried.
    let again = cli_json(&["quarantine", "retry", "--data-dir", &dir]);
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(server.terminate().is_some_and(|s| s.success()));
}

#[test]
fn serve_refuses_to_start_without_configuration() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut command = std::process::Command::new(BIN);
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data.path());
    for provider in Provider::ALL {
        let infix = provider.env_infix();
        command.env_remove(format!("TERIMA_{infix}_SECRETS"));
        command.env_remove(format!("TERIMA_{infix}_VERIFY"));
    }
    let output = command.output().expect("terima runs");
    assert_eq!(output.status.code(), Some(i32::from(code::CONFIG)));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TERIMA_BEBASKIRIM_SECRETS"), "{stderr}");
    assert!(
        !data.path().join(terima_embedded::DB_FILE).exists(),
        "nothing is created before the configuration is read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_projects_a_biteship_status_with_a_numeric_phone_and_a_null_name() {
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().to_str().expect("utf-8 path").to_owned();
    let server = Server::start(data.path(), "operator-biteship", &[]);
    let (_, mut delivery) = samples()
        .into_iter()
        .find(|(path, _)| path.ends_with("biteship/order.status.json"))
        .expect("the Biteship sample");
    // As Biteship was seen to send it: the phone a number, the name null.
    let mut body: serde_json::Value = serde_json::from_slice(&delivery.body).expect("JSON");
    body["courier_driver_phone"] = serde_json::json!(6_281_200_000_001_u64);
    body["courier_driver_name"] = serde_json::Value::Null;
    body["status"] = "dropping_off".into();
    delivery.body = body.to_string().into_bytes();
    Signers::load().sign(&mut delivery);
    let order = body["order_id"].as_str().expect("an order id").to_owned();

    let url = format!("{}{}", server.url(), delivery.path);
    let (status, answer) = post(&client(), &url, &delivery).await.expect("reachable");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("a JSON answer");
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("accepted")),
        "{answer}"
    );

    let deadline = Instant::now() + QUICK;
    let args = [
        "resources",
        "show",
        "biteship",
        "order",
        &order,
        "--data-dir",
        &dir,
    ];
    // Until it is processed the resource is not there (exit code 1).
    while !cli(&args, QUICK).status.success() {
        assert!(Instant::now() < deadline, "not projected in time");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let state = cli_json(&args)[0]["state"].clone();
    assert_eq!(state["status"], "dropping_off", "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_is_listed_with_both_bodies_and_the_state_follows_provider_time() {
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().to_str().expect("utf-8 path").to_owned();
    let server = Server::start(data.path(), "operator-conflict", &[]);
    let signers = Signers::load();
    let (_, first) = samples()
        .into_iter()
        .find(|(path, _)| path.ends_with("biteship/order.status.json"))
        .expect("the Biteship sample");
    // The same work (order, status, time) with another meaning: a changed
    // tracking link. Then a later status, which must win.
    let edit = |request: &terima::gateway::SampleRequest, f: &dyn Fn(&mut serde_json::Value)| {
        let mut request = request.clone();
        let mut body: serde_json::Value = serde_json::from_slice(&request.body).expect("JSON");
        f(&mut body);
        request.body = body.to_string().into_bytes();
        signers.sign(&mut request);
        request
    };
    let first = edit(&first, &|b| b["updated_at"] = "2024-01-20T10:00:00Z".into());
    let second = edit(&first, &|b| {
        b["courier_link"] = "https://example.com/lacak/1".into()
    });
    let later = edit(&first, &|b| {
        b["status"] = "delivered".into();
        b["updated_at"] = "2024-01-20T12:00:00Z".into();
    });
    let url = format!("{}{}", server.url(), first.path);
    let mut labels = Vec::new();
    for request in [&first, &second, &later] {
        let (status, answer) = post(&client(), &url, request).await.expect("reachable");
        assert_eq!(status, 200, "{answer}");
        let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
        labels.push(answer["status"].as_str().unwrap_or_default().to_owned());
        // Each processed before the next arrives.
        let deadline = Instant::now() + QUICK;
        while cli_json(&["status", "--data-dir", &dir])[0]["queued"] != 0 {
            assert!(Instant::now() < deadline, "not drained");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(labels, ["accepted", "conflict", "accepted"]);

    let conflicts = cli_json(&["conflicts", "list", "--data-dir", &dir]);
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let first_id = conflicts[0]["first_event_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let shown = cli_json(&["conflicts", "show", &first_id, "--data-dir", &dir]);
    let bodies: Vec<&str> = shown[0]["events"]
        .as_array()
        .expect("both events")
        .iter()
        .filter_map(|e| e["body"].as_str())
        .collect();
    assert_eq!(bodies.len(), 2, "{}", shown[0]);
    assert!(bodies.iter().any(|b| b.contains("example.com/lacak/1")));
    assert!(bodies.iter().any(|b| !b.contains("example.com/lacak/1")));
    let order = cli_json(&[
        "resources",
        "show",
        "biteship",
        "order",
        "65bb1f2e9a4c3d0012e4f5a6",
        "--data-dir",
        &dir,
    ]);
    assert_eq!(order[0]["state"]["status"], "delivered", "{}", order[0]);
}

#[test]
fn serve_refuses_a_visibility_timeout_shorter_than_the_lease() {
    let data = tempfile::tempdir().expect("temp dir");
    let out = cli(
        &[
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--data-dir",
            data.path().to_str().expect("utf-8 path"),
            "--env-file",
            secrets_file().to_str().expect("utf-8 path"),
            "--visibility-secs",
            "60",
        ],
        QUICK,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(i32::from(code::CONFIG)), "{stderr}");
    assert!(stderr.contains("shorter than the lease"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_takes_back_at_once_what_a_killed_serve_held() {
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().to_str().expect("utf-8 path").to_owned();
    // A first serve acknowledges an event and dies holding it: received,
    // hidden for an hour, not processed (its processor loops are stopped by
    // SIGKILL right after the receive in the real case; here the message is
    // received by hand on the same store).
    {
        let server = Server::start(
            data.path(),
            "operator-recover-1",
            &[("TERIMA_WORKERS", "1")],
        );
        let signers = Signers::load();
        let (_, mut delivery) = samples()
            .into_iter()
            .find(|(path, _)| path.ends_with("oms/package.status.packed.json"))
            .expect("the Akinon sample");
        signers.sign(&mut delivery);
        let mut server = server;
        server.kill();
        let store =
            terima_embedded::EmbeddedStore::open(data.path(), terima_embedded::Options::default())
                .expect("the data directory");
        let ingest = terima_service::Ingest::new(
            terima_service::EndpointConfig::load(terima_core::Provider::Oms, &settings())
                .expect("configured"),
            store.clone(),
            store.clone(),
            store.clone(),
            std::sync::Arc::new(terima_core::SystemClock),
            terima_service::Metrics::Silent,
        );
        let reply = ingest
            .handle(&delivery.headers, &delivery.body, "req-held")
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let held = store
            .receive(10, Duration::from_secs(3600))
            .await
            .expect("receives");
        assert_eq!(held.len(), 1, "held by the dead process");
    }
    // The next serve, with an hour's visibility, processes it at once.
    let started = Instant::now();
    let _server = Server::start(
        data.path(),
        "operator-recover-2",
        &[("TERIMA_VISIBILITY_SECS", "3600")],
    );
    loop {
        let listed = cli_json(&["events", "list", "--data-dir", &dir, "--provider", "oms"]);
        if listed.iter().any(|e| e["status"] == "processed") {
            break;
        }
        assert!(
            started.elapsed() < QUICK,
            "the held message waited for its visibility"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("processed {:?} after the restart", started.elapsed());
}

/// The test secrets, as `serve --env-file` reads them.
fn settings() -> impl terima_service::Lookup {
    let text = std::fs::read_to_string(secrets_file()).expect("the secrets file");
    let vars = terima_service::config::parse_env_file(&text).expect("an env file");
    move |name: &str| vars.get(name).cloned()
}
