//! Connection hygiene of `terima serve`, over raw TCP on loopback: idle
//! connections, half-sent headers and bodies are cut off in bounded time,
//! connections past the cap wait, and a declared oversize body is answered
//! 413 at once.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;

/// The timeouts the tests configure, and the margin allowed past them.
const TIMEOUT_SECS: &str = "1";
const TIMEOUT: Duration = Duration::from_secs(1);
const MARGIN: Duration = Duration::from_secs(2);

fn start(name: &str, extra: &[(&str, &str)]) -> (tempfile::TempDir, Server) {
    let data = tempfile::tempdir().expect("temp dir");
    let server = Server::start(data.path(), name, extra);
    (data, server)
}

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.addr).expect("connects");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Reads until the server closes the connection or `within` passes;
/// returns what arrived and when the connection closed (`None`: still open).
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, Option<Duration>) {
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        let left = within.saturating_sub(start.elapsed());
        if left.is_zero() {
            return (String::from_utf8_lossy(&received).into_owned(), None);
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            // A reset is a close too.
            Err(_) => break,
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        Some(start.elapsed()),
    )
}

/// Reads one response with a `Content-Length`, within `within`.
fn read_response(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if received.len() >= end + 4 + length {
                return Some(text);
            }
        }
        let left = within.saturating_sub(start.elapsed());
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buffer) {
            Ok(0) => return None,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return None,
        }
    }
}

fn assert_closed_after_timeout(closed: Option<Duration>) {
    let closed = closed.expect("the server closed the connection");
    assert!(
        closed >= TIMEOUT.mul_f64(0.8),
        "closed after {closed:?}, before the timeout"
    );
    assert!(closed <= TIMEOUT + MARGIN, "closed only after {closed:?}");
}

#[test]
fn an_idle_connection_is_closed_after_the_header_timeout() {
    let (_data, server) = start("http-idle", &[("TERIMA_HEADER_TIMEOUT_SECS", TIMEOUT_SECS)]);
    // GIVEN a connection that sends nothing
    let mut stream = connect(&server);
    // THEN the server closes it, without an answer
    let (received, closed) = read_until_closed(&mut stream, Duration::from_secs(10));
    assert_eq!(received, "");
    assert_closed_after_timeout(closed);
}

#[test]
fn half_sent_headers_are_cut_off() {
    let (_data, server) = start(
        "http-headers",
        &[("TERIMA_HEADER_TIMEOUT_SECS", TIMEOUT_SECS)],
    );
    // GIVEN headers that stop half-way
    let mut stream = connect(&server);
    stream
        .write_all(b"POST /webhooks/bitbybit HTTP/1.1\r\nHost: terima\r\nContent-Le")
        .expect("write");
    // THEN the server closes the connection
    let (received, closed) = read_until_closed(&mut stream, Duration::from_secs(10));
    assert!(!received.starts_with("HTTP/1.1 2"), "{received}");
    assert_closed_after_timeout(closed);
}

#[test]
fn a_half_sent_body_is_answered_408() {
    let (_data, server) = start("http-body", &[("TERIMA_BODY_TIMEOUT_SECS", TIMEOUT_SECS)]);
    // GIVEN a body that stops after 10 of its 100 bytes
    let mut stream = connect(&server);
    let start = Instant::now();
    stream
        .write_all(b"POST /webhooks/bitbybit HTTP/1.1\r\nHost: terima\r\nContent-Length: 100\r\n\r\n{\"id\": \"12")
        .expect("write");
    // THEN the answer is 408 once the body timeout passes, and the connection closes
    let (received, closed) = read_until_closed(&mut stream, Duration::from_secs(10));
    assert!(received.starts_with("HTTP/1.1 408"), "{received}");
    assert!(received.contains("\"status\":\"timeout\""), "{received}");
    assert!(closed.is_some(), "the connection stays open");
    assert_closed_after_timeout(Some(start.elapsed()));
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let (_data, server) = start(
        "http-keepalive",
        &[("TERIMA_HEADER_TIMEOUT_SECS", TIMEOUT_SECS)],
    );
    // GIVEN a request answered on a keep-alive connection
    let mut stream = connect(&server);
    stream
        .write_all(b"GET /nowhere HTTP/1.1\r\nHost: terima\r\n\r\n")
        .expect("write");
    let response = read_response(&mut stream, Duration::from_secs(5)).expect("an answer");
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    // WHEN the client sends nothing more
    // THEN the server closes the connection
    let (received, closed) = read_until_closed(&mut stream, Duration::from_secs(10));
    assert_eq!(received, "");
    assert_closed_after_timeout(closed);
}

#[test]
fn at_the_cap_idle_connections_make_room() {
    let (_data, server) = start(
        "http-cap-idle",
        &[
            ("TERIMA_MAX_CONNECTIONS", "2"),
            ("TERIMA_HEADER_TIMEOUT_SECS", "30"),
        ],
    );
    // GIVEN as many idle connections as the cap
    let mut idle = [connect(&server), connect(&server)];
    // WHEN one more sends a request
    let start = Instant::now();
    let mut late = connect(&server);
    late.write_all(b"GET /nowhere HTTP/1.1\r\nHost: terima\r\n\r\n")
        .expect("write");
    // THEN the idle connections are closed, long before the header timeout
    for stream in &mut idle {
        let (received, closed) = read_until_closed(stream, Duration::from_secs(10));
        assert_eq!(received, "");
        assert!(closed.is_some(), "an idle connection stayed open");
    }
    // AND the request is answered
    let response = read_response(&mut late, Duration::from_secs(5)).expect("an answer");
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    assert!(
        start.elapsed() <= terima::http::SHED_AFTER + MARGIN,
        "answered after {:?}",
        start.elapsed()
    );
}

#[test]
fn connections_past_the_cap_wait_while_the_others_are_busy() {
    let (_data, server) = start(
        "http-cap-busy",
        &[
            ("TERIMA_MAX_CONNECTIONS", "2"),
            ("TERIMA_HEADER_TIMEOUT_SECS", "30"),
        ],
    );
    // GIVEN as many connections as the cap, each in the middle of a request
    let mut busy = [connect(&server), connect(&server)];
    for stream in &mut busy {
        stream
            .write_all(b"POST /webhooks/oms HTTP/1.1\r\nHost: terima\r\n")
            .expect("write");
    }
    // WHEN one more sends a request
    let mut late = connect(&server);
    late.write_all(b"GET /nowhere HTTP/1.1\r\nHost: terima\r\n\r\n")
        .expect("write");
    // THEN it is not served while the cap is reached
    assert_eq!(
        read_response(&mut late, terima::http::SHED_AFTER + Duration::from_secs(1)),
        None
    );
    // AND it is served as soon as a connection closes
    let [first, _second] = busy;
    drop(first);
    let response = read_response(&mut late, Duration::from_secs(5)).expect("an answer");
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
}

#[test]
fn a_declared_oversize_body_is_answered_413_at_once() {
    let (_data, server) = start("http-413", &[]);
    for expect in ["", "Expect: 100-continue\r\n"] {
        // GIVEN headers declaring a body over the limit, and no body
        let mut stream = connect(&server);
        let start = Instant::now();
        let head = format!(
            "POST /webhooks/oms HTTP/1.1\r\nHost: terima\r\nContent-Length: 2000000\r\n{expect}\r\n"
        );
        stream.write_all(head.as_bytes()).expect("write");
        // THEN the answer is 413 at once (no 100 Continue first)
        let response = read_response(&mut stream, Duration::from_secs(1)).expect("an answer");
        assert!(response.starts_with("HTTP/1.1 413"), "{response}");
        assert!(response.contains("too_large"), "{response}");
        assert!(start.elapsed() < Duration::from_secs(1));
        // AND the connection closes, though the body never comes
        let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(10));
        assert!(closed.is_some_and(|c| c <= terima::http::LINGER + MARGIN));
    }
}

#[test]
fn an_oversize_body_without_a_length_is_answered_413_once_past_the_limit() {
    let (_data, server) = start("http-413-chunked", &[("TERIMA_MAX_BODY_BYTES", "1000")]);
    // GIVEN a chunked body that goes past the limit and keeps going
    let mut stream = connect(&server);
    stream
        .write_all(
            b"POST /webhooks/oms HTTP/1.1\r\nHost: terima\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .expect("write");
    let chunk = format!("{:x}\r\n{}\r\n", 600, "x".repeat(600));
    for _ in 0..2 {
        stream.write_all(chunk.as_bytes()).expect("write");
    }
    // THEN the answer is 413 without waiting for the end of the body
    let response = read_response(&mut stream, Duration::from_secs(2)).expect("an answer");
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
}
