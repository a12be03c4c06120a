//! Slow, idle and excess clients, black-box (issue #12, defects 1 and 6): the real
//! binary on a real socket, with raw TCP clients that trickle or say nothing.
//!
//! Every timeout is configured small (one or two seconds) and every wait is bounded at a
//! few times the configured value, so a server that holds a client forever fails the
//! test instead of hanging it. Timings are never asserted beyond "within the bound".

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use esdb_double::EsdbDouble;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for something the server should do within a configured timeout
/// of 1 s: generous, so a loaded machine does not fail the test.
const BOUND: Duration = Duration::from_secs(6);

async fn connect(s: &TestServer) -> TcpStream {
    TcpStream::connect(("127.0.0.1", s.port))
        .await
        .expect("connect")
}

/// Reads until the server closes the connection (EOF or reset) or `within` passes;
/// what was read, or `None` if the connection was still open.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok().map(|()| got)
}

/// Writes `bytes` one at a time, `pause` apart, until they are all sent or the server
/// closes the connection; never returns before it is closed if `forever`.
async fn trickle(mut w: tokio::net::tcp::OwnedWriteHalf, bytes: Vec<u8>, pause: Duration) {
    for b in bytes.iter().cycle() {
        if w.write_all(&[*b]).await.is_err() {
            return;
        }
        tokio::time::sleep(pause).await;
    }
}

/// A client with a bound on every request and no connection reuse: each request opens a
/// fresh connection, as a new client would.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// The value of one series of `GET /metrics` (0 if absent).
async fn metric(s: &TestServer, series: &str) -> f64 {
    let text = fresh_client()
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// The status and JSON body of a raw HTTP/1.1 response.
fn parse_response(raw: &[u8]) -> (u16, String, Value) {
    let text = String::from_utf8_lossy(raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
    (status, head.to_ascii_lowercase(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_speaks_is_disconnected_within_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        dir.path(),
        &[
            "--header-read-timeout-secs",
            "1",
            "--idle-timeout-secs",
            "60",
        ],
    )
    .await;
    let mut silent = connect(&s).await;
    let closed = read_until_closed(&mut silent, BOUND).await;
    assert_eq!(
        closed.as_deref(),
        Some(&b""[..]),
        "a silent connection was still open after {BOUND:?} (header timeout 1 s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_sent_a_byte_at_a_time_are_cut_off_at_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        dir.path(),
        &[
            "--header-read-timeout-secs",
            "1",
            "--idle-timeout-secs",
            "60",
        ],
    )
    .await;
    let (mut r, w) = connect(&s).await.into_split();
    let head = b"GET /v1.0 HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec();
    let writer = tokio::spawn(trickle(w, head, Duration::from_millis(100)));
    let closed = tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    writer.abort();
    assert!(
        closed.is_ok(),
        "a client trickling its headers was still connected after {BOUND:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_a_byte_at_a_time_is_answered_408_and_the_connection_closed() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--body-read-timeout-secs", "1"]).await;
    let (mut r, mut w) = connect(&s).await.into_split();
    w.write_all(
        b"POST /v1.0/p1/instances HTTP/1.1\r\nHost: x\r\nX-Auth-Token: alice:p1\r\n\
          Content-Type: application/json\r\nContent-Length: 300\r\n\r\n{",
    )
    .await
    .unwrap();
    let writer = tokio::spawn(trickle(w, b" ".to_vec(), Duration::from_millis(100)));
    let answer = tokio::time::timeout(BOUND, async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    let raw = answer.expect("a slow body was still being read after the bound");
    let (status, head, body) = parse_response(&raw);
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&raw));
    assert_eq!(body["requestTimeout"]["code"], 408, "{body}");
    assert!(head.contains("connection: close"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        dir.path(),
        &[
            "--idle-timeout-secs",
            "1",
            "--header-read-timeout-secs",
            "60",
        ],
    )
    .await;
    let mut c = connect(&s).await;
    // The answer arrives; then the connection stays open and idle (keep-alive).
    assert_eq!(get_version(&mut c).await, 200);
    let closed = read_until_closed(&mut c, BOUND).await;
    assert_eq!(
        closed.as_deref(),
        Some(&b""[..]),
        "an idle keep-alive connection was still open after {BOUND:?} (idle timeout 1 s)"
    );
}

/// Sends a GET of `/v1.0` on `c` and reads its answer (bounded); its status.
async fn get_version(c: &mut TcpStream) -> u16 {
    c.write_all(b"GET /v1.0 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"v1.0\"") {
        let n = tokio::time::timeout(BOUND, c.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    parse_response(&got).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_may_stay_idle_longer_than_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        dir.path(),
        &[
            "--header-read-timeout-secs",
            "1",
            "--idle-timeout-secs",
            "30",
        ],
    )
    .await;
    let mut c = connect(&s).await;
    assert_eq!(get_version(&mut c).await, 200);
    // Idle for twice the header timeout: the idle timeout applies, not the header's.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(get_version(&mut c).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_grace_period_with_slow_clients_connected() {
    let dir = tempfile::tempdir().unwrap();
    // Timeouts far beyond the grace period: only the bounded drain can end these clients.
    let mut s = TestServer::start(
        dir.path(),
        &[
            "--sim-latency-ms",
            "0",
            "--shutdown-grace-secs",
            "2",
            "--header-read-timeout-secs",
            "120",
            "--body-read-timeout-secs",
            "120",
            "--idle-timeout-secs",
            "120",
        ],
    )
    .await;
    let id = s.create("alice", "p1", "acknowledged").await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let _silent = connect(&s).await;
    let (_r1, w1) = connect(&s).await.into_split();
    let slow_head = tokio::spawn(trickle(
        w1,
        b"GET /v1.0 HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec(),
        Duration::from_millis(200),
    ));
    let (_r2, mut w2) = connect(&s).await.into_split();
    w2.write_all(
        b"POST /v1.0/p1/instances HTTP/1.1\r\nHost: x\r\nX-Auth-Token: alice:p1\r\n\
          Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{",
    )
    .await
    .unwrap();
    let slow_body = tokio::spawn(trickle(w2, b" ".to_vec(), Duration::from_millis(200)));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let exit = s.terminate(Duration::from_secs(10));
    slow_head.abort();
    slow_body.abort();
    let exit = exit.expect("troved still running 10 s after SIGTERM (grace period 2 s)");
    assert!(exit.success(), "troved exited with {exit}");
    eprintln!("exited {:?} after SIGTERM", started.elapsed());

    // Nothing acknowledged is lost.
    s.restart().await;
    let (status, body) = s.get("alice", "p1", &format!("/instances/{id}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["instance"]["name"], "acknowledged");
}

/// Raises this test process's own soft limit of open files, so that it can hold
/// thousands of client sockets.
fn raise_own_nofile_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    let _ = setrlimit(Resource::Nofile, limit);
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_sockets_beyond_the_descriptor_limit_fail_no_request() {
    let own = raise_own_nofile_limit();
    let sockets = 2000usize.min(own.saturating_sub(200) as usize);
    let dir = tempfile::tempdir().unwrap();
    // 256 descriptors at most (soft and hard): the default connection limit must fit
    // below it.
    let s = TestServer::start_limited(dir.path(), &["--sim-latency-ms", "0"], Some("-n 256")).await;
    let mut idle = Vec::with_capacity(sockets);
    let mut connect_failures = 0;
    for _ in 0..sockets {
        match tokio::time::timeout(
            Duration::from_secs(2),
            TcpStream::connect(("127.0.0.1", s.port)),
        )
        .await
        {
            Ok(Ok(c)) => idle.push(c),
            _ => {
                connect_failures += 1;
                break;
            }
        }
    }
    let client = fresh_client();
    let mut failed = Vec::new();
    for i in 0..20 {
        let url = if i % 2 == 0 {
            format!("{}/v1.0", s.base)
        } else {
            format!("{}/v1.0/p1/instances", s.base)
        };
        match client
            .get(url)
            .header("X-Auth-Token", "alice:p1")
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => failed.push(format!("{}", r.status())),
            Err(e) => failed.push(format!("{e}")),
        }
    }
    assert_eq!(
        connect_failures,
        0,
        "a connect timed out after {} sockets",
        idle.len()
    );
    assert!(
        failed.is_empty(),
        "{} idle sockets: failed requests {failed:?}",
        idle.len()
    );
    drop(idle);
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_limit_of_open_files_is_raised_to_the_hard_limit_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_limited(dir.path(), &[], Some("-Sn 256")).await;
    let pid = s.pid().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    let fields: Vec<&str> = line.split_whitespace().collect();
    // "Max open files <soft> <hard> files"
    let (soft, hard) = (fields[3], fields[4]);
    assert_eq!(soft, hard, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_the_oldest_idle_connection_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        dir.path(),
        &[
            "--max-connections",
            "2",
            "--idle-timeout-secs",
            "60",
            "--header-read-timeout-secs",
            "60",
        ],
    )
    .await;
    let mut oldest = connect(&s).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _newer = connect(&s).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resp = fresh_client()
        .get(format!("{}/v1.0", s.base))
        .send()
        .await
        .expect("a request at the limit is served");
    assert_eq!(resp.status().as_u16(), 200);
    let closed = read_until_closed(&mut oldest, BOUND).await;
    assert!(closed.is_some(), "the oldest idle connection was kept");
    let evicted = r#"troved_http_connections_closed_total{reason="evicted"}"#;
    assert!(metric(&s, evicted).await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_with_every_connection_busy_the_excess_gets_503() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        dir.path(),
        &["--max-connections", "2", "--body-read-timeout-secs", "30"],
    )
    .await;
    // Two requests in flight: their bodies never come.
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut c = connect(&s).await;
        c.write_all(
            b"POST /v1.0/p1/instances HTTP/1.1\r\nHost: x\r\nX-Auth-Token: alice:p1\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
        busy.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut excess = connect(&s).await;
    excess
        .write_all(b"GET /v1.0 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let raw = read_until_closed(&mut excess, BOUND)
        .await
        .expect("the excess connection was neither answered nor closed");
    let (status, head, body) = parse_response(&raw);
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&raw));
    assert!(head.contains("retry-after:"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(body["serviceUnavailable"]["code"], 503, "{body}");

    // The busy connections were not disturbed; once they are gone, requests are served.
    for c in &mut busy {
        assert!(read_until_closed(c, Duration::from_millis(200))
            .await
            .is_none());
    }
    drop(busy);
    let refused = r#"troved_http_connections_closed_total{reason="refused"}"#;
    let deadline = Instant::now() + BOUND;
    loop {
        let resp = fresh_client().get(format!("{}/v1.0", s.base)).send().await;
        if matches!(&resp, Ok(r) if r.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "not served again: {resp:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metric(&s, refused).await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_answer_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--auth", "noauth"]).await;
    let client = fresh_client();
    let (status, body) = common::send(client.get(format!("{}/healthz", s.base))).await;
    assert_eq!((status, &body), (200, &json!({"status": "ok"})));
    let (status, body) = common::send(client.get(format!("{}/readyz", s.base))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(
        body["read_models"]["applied"], body["read_models"]["head"],
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_the_event_store_is_away_and_healthz_stays_200() {
    let double = EsdbDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        dir.path(),
        &["--event-store", &double.url(), "--sim-latency-ms", "10"],
    )
    .await;
    let client = fresh_client();
    let readyz = || common::send(client.get(format!("{}/readyz", s.base)));
    assert_eq!(readyz().await.0, 200);

    double.stop().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (status, body) = readyz().await;
        if status == 503 {
            break body;
        }
        assert!(Instant::now() < deadline, "still ready: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let message = body["serviceUnavailable"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("event store"), "{body}");
    let (status, _) = common::send(client.get(format!("{}/healthz", s.base))).await;
    assert_eq!(status, 200);

    double.restart().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = readyz().await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready again: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
