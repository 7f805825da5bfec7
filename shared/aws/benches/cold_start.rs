//! Cold start of a provider function: from exec of its release binary to its
//! first response, under a minimal Lambda Runtime API served here on
//! loopback. Prints the time to first response, the peak RSS and the stripped
//! binary size.
//!
//! Run: `cargo bench -p terima-aws --bench cold_start` (builds the release
//! binary first). The first invocation is Biteship's installation probe,
//! which is answered without a backend call, so the figure is the function's
//! own start-up (configuration, AWS clients, runtime) plus one request through
//! the handler, with no emulator latency in it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const RUNS: usize = 20;
const FUNCTION: &str = "biteship";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn build_release() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "--release", "--locked", "-p", FUNCTION])
        .current_dir(root())
        .status()
        .expect("run cargo build");
    assert!(status.success(), "release build failed");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target"));
    target.join("release").join(FUNCTION)
}

/// One HTTP/1.1 request: method, path and body.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, String)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((method, path))
}

/// Serves `next` once with `event`, then reports the response time.
fn runtime_api(listener: TcpListener, event: String, done: mpsc::Sender<Result<Instant, String>>) {
    std::thread::spawn(move || {
        let mut served = false;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut writer = stream.try_clone().expect("clone stream");
            let mut reader = BufReader::new(stream);
            while let Some((method, path)) = read_request(&mut reader) {
                if method == "GET" && path.ends_with("/invocation/next") {
                    if served {
                        // Hold the second poll: the function idles, as in Lambda.
                        std::thread::sleep(Duration::from_secs(3600));
                        return;
                    }
                    served = true;
                    let deadline = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .expect("clock")
                        .as_millis()
                        + 10_000;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: cold-1\r\n\
                         Lambda-Runtime-Deadline-Ms: {deadline}\r\n\
                         Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:ap-southeast-3:123456789012:function:{FUNCTION}\r\n\
                         Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000;Sampled=0\r\n\
                         Content-Length: {}\r\n\r\n",
                        event.len()
                    );
                    let _ = writer.write_all(head.as_bytes());
                    let _ = writer.write_all(event.as_bytes());
                } else {
                    let at = Instant::now();
                    let _ = writer.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n");
                    let outcome = if path.ends_with("/response") {
                        Ok(at)
                    } else {
                        Err(path)
                    };
                    let _ = done.send(outcome);
                }
            }
        }
    });
}

fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn test_secrets() -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(root().join("events/test-secrets.env"))
        .expect("events/test-secrets.env");
    terima_service::config::parse_env_file(&text).expect("a valid env file")
}

struct Run {
    first_response: Duration,
    peak_rss_kb: u64,
}

fn cold_start(binary: &Path, event: &str, endpoint: &str) -> Run {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let (tx, rx) = mpsc::channel();
    runtime_api(listener, event.to_owned(), tx);
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .envs(test_secrets())
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_REGION", "ap-southeast-3")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("TERIMA_TABLE", "cold-start")
        .env(
            "TERIMA_QUEUE_URL",
            format!("{endpoint}/123456789012/cold-start"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the function");
    let answered = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("no response from the function");
    let at = answered.unwrap_or_else(|path| panic!("the function reported an error at {path}"));
    let rss = peak_rss_kb(child.id());
    let _ = child.kill();
    let _ = child.wait();
    Run {
        first_response: at - started,
        peak_rss_kb: rss,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(label: &str, runs: &[Run]) {
    let mut times: Vec<Duration> = runs.iter().map(|r| r.first_response).collect();
    times.sort();
    let rss = runs.iter().map(|r| r.peak_rss_kb).max().unwrap_or(0);
    println!(
        "{label}: first response median {:.1} ms, p90 {:.1} ms, max {:.1} ms over {} runs; peak RSS max {:.1} MB",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.9).as_secs_f64() * 1e3,
        times.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        runs.len(),
        rss as f64 / 1024.0
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let binary = build_release();
    let size = std::fs::metadata(&binary).expect("binary").len();
    println!(
        "{FUNCTION} release binary (stripped, x86_64): {:.2} MB",
        size as f64 / 1e6
    );

    // Biteship's installation probe needs no backend call: this series is
    // start-up plus one request through the handler.
    let probe =
        std::fs::read_to_string(root().join("events/biteship/probe.json")).expect("probe event");
    let runs: Vec<Run> = (0..RUNS)
        .map(|_| cold_start(&binary, &probe, "http://127.0.0.1:9"))
        .collect();
    report(
        "cold start, secrets from the environment, probe request",
        &runs,
    );
}
