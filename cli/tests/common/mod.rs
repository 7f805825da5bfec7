//! Helpers shared by the end-to-end tests and the load generator: a real
//! `terima serve` child process on a free port, the sample events, unique
//! variants of them, and the CLI run as a process.
// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

pub mod aws;
pub mod backend;
pub mod browser;
pub mod ledger;
pub mod limits;
pub mod load;
pub mod scenario;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use serde_json::Value;
use terima::gateway::SampleRequest;
use terima::settings::Settings;
use terima::sign::Signer;
use terima_core::providers::{bitbybit, biteship};
use terima_core::{Provider, inspect};

pub const BIN: &str = env!("CARGO_BIN_EXE_terima");

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn secrets_file() -> PathBuf {
    repo_root().join("events/test-secrets.env")
}

/// Every provider sample in `events/`, sorted by path.
pub fn samples() -> Vec<(PathBuf, SampleRequest)> {
    let mut files = Vec::new();
    for provider in Provider::ALL {
        let dir = repo_root().join("events").join(provider.name());
        for entry in std::fs::read_dir(&dir).expect("events/<provider> exists") {
            let path = entry.expect("directory entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let request = SampleRequest::read(&path).expect("sample is an API Gateway event");
            (path, request)
        })
        .collect()
}

/// Signs requests as the providers would, with the test secrets.
pub struct Signers(Vec<(Provider, Signer)>);

impl Signers {
    pub fn load() -> Self {
        let settings = Settings::load(Some(&secrets_file())).expect("test secrets readable");
        Self(
            Provider::ALL
                .into_iter()
                .map(|p| {
                    (
                        p,
                        Signer::load(p, &settings).expect("test secrets configure every provider"),
                    )
                })
                .collect(),
        )
    }

    pub fn sign(&self, request: &mut SampleRequest) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let now = i64::try_from(now).expect("fits");
        if let Some((_, signer)) = self.0.iter().find(|(p, _)| *p == request.provider) {
            signer.sign(&mut request.headers, &request.body, now);
        }
    }
}

/// Whether the sample is Biteship's installation probe (answered 200
/// `ignored`, never stored).
pub fn is_probe(request: &SampleRequest) -> bool {
    request.provider == Provider::Biteship && biteship::is_installation_probe(&request.body)
}

/// A copy of `sample` that is a different event: its ids carry `tag`, so its
/// dedup key, work key and resource are its own.
pub fn variant(sample: &SampleRequest, tag: &str) -> SampleRequest {
    let mut request = sample.clone();
    let mut body: Value = serde_json::from_slice(&sample.body).expect("samples are JSON");
    let suffix = |value: &mut Value| match value {
        Value::String(text) => text.push_str(tag),
        Value::Number(n) => *value = Value::String(format!("{n}{tag}")),
        _ => {}
    };
    match sample.provider {
        Provider::BitByBit => {
            let id = sample
                .headers
                .get(bitbybit::ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("evt");
            request.headers.insert(
                bitbybit::ID_HEADER,
                HeaderValue::from_str(&format!("{id}{tag}")).expect("ascii"),
            );
            for key in ["id", "messageId"] {
                if let Some(value) = body.get_mut(key) {
                    suffix(value);
                }
            }
        }
        Provider::BebasKirim => {
            if let Some(data) = body.get_mut("data").and_then(Value::as_object_mut) {
                for (key, value) in data.iter_mut() {
                    if key.ends_with("_id") {
                        suffix(value);
                    }
                }
            }
        }
        Provider::Oms => {
            if let Some(uuid) = body.pointer_mut("/event/uuid") {
                suffix(uuid);
            }
            if let Some(id) = body.pointer_mut("/payload/id") {
                suffix(id);
            }
        }
        Provider::Biteship => {
            if let Some(order) = body.get_mut("order_id") {
                suffix(order);
            }
        }
    }
    request.body = serde_json::to_vec(&body).expect("serialises");
    request
}

/// The `(provider, work_key)` and dedup key the gateway will give a request.
pub fn keys(request: &SampleRequest) -> (Provider, String, String) {
    let inspected =
        inspect(request.provider, &request.headers, &request.body).expect("sample reads");
    (
        request.provider,
        inspected.reading.work_key,
        inspected.reading.dedup_key,
    )
}

/// Where [`Server`] writes the standard error of the `terima serve` started
/// with `log_name`.
pub fn log_path(log_name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{log_name}.log"))
}

/// A running `terima serve`; killed with SIGKILL when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The console's URL, when it was asked for (`--console`).
    pub console: Option<String>,
}

impl Server {
    /// Starts the built binary on a free port with the test secrets, short
    /// leases and visibility timeouts (so a crash's leftovers are retried
    /// within seconds), and waits for its `listening on` line.
    pub fn start(data_dir: &Path, log_name: &str, extra_env: &[(&str, &str)]) -> Self {
        Self::launch(log_name, |command| {
            command.arg("--data-dir").arg(data_dir);
            for (name, value) in extra_env {
                command.env(name, value);
            }
        })
    }

    /// `terima serve` as [`Server::start`] runs it, with the backend's
    /// arguments and environment added by `configure`.
    pub fn launch(log_name: &str, configure: impl FnOnce(&mut Command)) -> Self {
        let log = std::fs::File::create(log_path(log_name)).expect("log file");
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--addr", "127.0.0.1:0", "--env-file"])
            .arg(secrets_file())
            .env("TERIMA_LEASE_SECS", "2")
            .env("TERIMA_VISIBILITY_SECS", "2")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        configure(&mut command);
        let mut child = command.spawn().expect("terima serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // The console's line comes first, if any.
            let mut console = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("console on ") {
                    console = Some(url.trim().to_owned());
                }
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send((addr.trim().to_owned(), console.take()));
                }
            }
        });
        let (addr, console) = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok((addr, console)) => (addr.parse().expect("a socket address"), console),
            Err(_) => {
                let _ = child.kill();
                panic!("terima serve did not print its address within 30 s (see {log_name}.log)");
            }
        };
        Self {
            child,
            addr,
            console,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit status (bounded).
    pub fn terminate(mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `terima console` as a child process, on a free port; killed when dropped.
pub struct ConsoleProcess {
    child: Child,
    /// `http://127.0.0.1:<port>/`.
    pub url: String,
}

impl ConsoleProcess {
    /// Starts `terima console <args>` with the environment set by
    /// `configure`, and waits for its `console on` line.
    pub fn start(args: &[&str], configure: impl FnOnce(&mut Command)) -> Self {
        let mut command = Command::new(BIN);
        command
            .arg("console")
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        configure(&mut command);
        let mut child = command.spawn().expect("terima console starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("console on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => Self { child, url },
            Err(_) => {
                let _ = child.kill();
                panic!("terima console did not print its address within 30 s");
            }
        }
    }
}

impl Drop for ConsoleProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the CLI to completion, within `timeout`. Output is read while the
/// child runs, so a long listing never blocks on a full pipe.
pub fn cli(args: &[&str], timeout: Duration) -> Output {
    cli_with(args, timeout, |_| {})
}

/// [`cli`] with the environment (a backend's, say) set by `configure`.
pub fn cli_with(args: &[&str], timeout: Duration, configure: impl FnOnce(&mut Command)) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    configure(&mut command);
    let child = command.spawn().expect("terima runs");
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
            panic!("terima {args:?} did not finish within {timeout:?}");
        }
    }
}

/// `terima <args> --json`, one object per line.
pub fn cli_json(args: &[&str]) -> Vec<Value> {
    cli_json_with(args, |_| {})
}

/// [`cli_json`] with the environment set by `configure`.
pub fn cli_json_with(args: &[&str], configure: impl FnOnce(&mut Command)) -> Vec<Value> {
    let mut all = args.to_vec();
    all.push("--json");
    let output = cli_with(&all, Duration::from_secs(60), configure);
    assert!(
        output.status.success(),
        "terima {all:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}
