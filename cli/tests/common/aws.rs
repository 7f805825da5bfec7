//! The AWS backend of the end-to-end tests: a fresh table, queue, dead-letter
//! queue and body bucket on the local emulator, made by
//! `scripts/local_resources.py` from `template.yaml`'s own definitions, and
//! the environment that points `terima --backend aws` at them.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use super::{Server, cli_json_with, cli_with, repo_root};

/// The region every local script and test uses.
pub const REGION: &str = "ap-southeast-3";
/// Short, so that a crash's leftovers are retried within seconds, but longer
/// than the embedded backend's: the emulator serves one request at a time,
/// and a message that came back while still being processed would use up
/// one of its five receives.
pub const LEASE_SECS: &str = "3";
pub const VISIBILITY_SECS: &str = "6";

/// The emulator's URL, set by `scripts/test.sh`, which starts it. Without it
/// the tests fail: a skipped end-to-end test would pass CI unseen.
pub fn endpoint() -> String {
    std::env::var("TERIMA_TEST_AWS_ENDPOINT")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .expect(
            "TERIMA_TEST_AWS_ENDPOINT is not set: run the suite with scripts/test.sh, which installs and starts moto_server",
        )
}

/// The project's virtual environment's Python, which has boto3 and the
/// template loader's dependencies.
pub fn python() -> PathBuf {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: scripts/test.sh creates the virtual environment (or `source scripts/env.sh`)",
        python.display()
    );
    python
}

/// One test's table, queues and bucket, and the variables naming them.
pub struct Stack {
    pub prefix: String,
    vars: Vec<(String, String)>,
}

impl Stack {
    /// New resources named after `label` and this run.
    pub fn create(label: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let prefix = format!(
            "e2e-{label}-{}-{nanos:x}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let endpoint = endpoint();
        let mut vars: Vec<(String, String)> = [
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_SESSION_TOKEN", "test"),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let mut command = Command::new(python());
        command
            .arg(repo_root().join("scripts/local_resources.py"))
            .arg(&prefix);
        isolate(&mut command, &vars);
        let output = run(command, Duration::from_secs(60), "local_resources.py");
        assert!(
            output.status.success(),
            "scripts/local_resources.py {prefix} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        for line in String::from_utf8(output.stdout).expect("utf-8").lines() {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("not KEY=value: {line:?}"));
            // The CLI reads the dead-letter queue's URL under this name.
            let key = if key == "LOCAL_DLQ_URL" {
                "TERIMA_DLQ_URL"
            } else {
                key
            };
            vars.push((key.to_owned(), value.to_owned()));
        }
        let stack = Self { prefix, vars };
        for name in [
            "TERIMA_TABLE",
            "TERIMA_QUEUE_URL",
            "TERIMA_BUCKET",
            "TERIMA_DLQ_URL",
        ] {
            assert!(!stack.var(name).is_empty(), "{name} was not printed");
        }
        stack
    }

    pub fn var(&self, name: &str) -> &str {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// This stack's environment on `command`, and none of the test
    /// process's own AWS or Terima settings.
    pub fn apply(&self, command: &mut Command) {
        isolate(command, &self.vars);
    }

    /// `terima serve --backend aws` on this stack; `env` comes last.
    pub fn serve(&self, log_name: &str, env: &[(&str, &str)]) -> Server {
        Server::launch(log_name, |command| {
            command.args(["--backend", "aws"]);
            self.apply(command);
            command
                .env("RUST_LOG", "warn")
                .env("TERIMA_LEASE_SECS", LEASE_SECS)
                .env("TERIMA_VISIBILITY_SECS", VISIBILITY_SECS);
            for (name, value) in env {
                command.env(name, value);
            }
        })
    }

    /// `terima <args> --backend aws` on this stack.
    pub fn cli(&self, args: &[&str], timeout: Duration) -> Output {
        let mut all = args.to_vec();
        all.extend(["--backend", "aws"]);
        cli_with(&all, timeout, |command| self.apply(command))
    }

    /// `terima <args> --backend aws --json`, one object per line.
    pub fn cli_json(&self, args: &[&str]) -> Vec<Value> {
        let mut all = args.to_vec();
        all.extend(["--backend", "aws"]);
        cli_json_with(&all, |command| self.apply(command))
    }
}

/// Removes every inherited `AWS_*` and `TERIMA_*` variable (a profile, a
/// real endpoint, a backend choice) and sets `vars`.
fn isolate(command: &mut Command, vars: &[(String, String)]) {
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("AWS_") || text.starts_with("TERIMA_") {
            command.env_remove(&name);
        }
    }
    command.envs(vars.iter().map(|(k, v)| (k, v)));
}

/// Runs `command` to completion within `timeout`.
fn run(mut command: Command, timeout: Duration, what: &str) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(output) => output.expect("output"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{what} did not finish within {timeout:?}");
        }
    }
}
