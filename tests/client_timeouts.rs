//! Client connections are bounded in time (`limits.client_*`): an idle
//! keep-alive connection is closed, and a client that stops reading is
//! dropped. Pingora 0.9 alone keeps an HTTP/1.1 connection forever after
//! its first request and has no write timeout.

mod common;
use common::http::Conn;
use common::*;
use std::time::{Duration, Instant};

fn proxy(b: &TestBucket, limits: &str, extra: &str) -> Proxy {
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nlimits: {{ {limits} }}\n{extra}sites:\n  - name: s\n    bucket: {}\n",
        b.yaml()
    );
    Proxy::start_env(&yaml, &b.proxy_env())
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let b = garage().bucket("idle");
    b.put("k", b"kept alive", None);
    let p = proxy(&b, "client_idle_timeout_seconds: 1", "");
    let mut c = Conn::open(p.port);
    // Two requests on the connection: keep-alive works, and the second
    // comes after the first request made Pingora's keep-alive endless.
    for _ in 0..2 {
        let (head, body) = c.get("/k", &[]);
        assert_eq!(head.status, 200);
        assert_eq!(body.unwrap(), b"kept alive");
    }
    let idle = Instant::now();
    assert!(
        c.closed_within(Duration::from_secs(15)),
        "an idle connection stayed open"
    );
    assert!(
        idle.elapsed() >= Duration::from_millis(900),
        "closed too soon"
    );
    // `Connection: close` still closes at once.
    let mut c = Conn::open(p.port);
    let (head, _) = c.get("/k", &[("Connection", "close")]);
    assert_eq!(head.status, 200);
    assert!(c.closed_within(Duration::from_secs(15)));
}

#[test]
fn a_client_that_stops_reading_is_dropped() {
    const LEN: usize = 16 << 20;
    let b = garage().bucket("stalled");
    let body = pattern(LEN, 7);
    b.put("big", &body, None);
    let p = proxy(
        &b,
        "client_send_timeout_seconds: 1",
        "access_log: { path: stdout, format: json }\n",
    );
    let mut c = Conn::open_small_window(p.port, 4096);
    c.send("/big", &[]);
    let head = c.head().unwrap();
    assert_eq!(head.status, 200);
    // Not reading: the proxy's writes stall, and after the send timeout
    // the request ends as the client's doing.
    let line = p.wait_log("\"outcome\":\"client_abort\"");
    assert!(line.contains("\"key\":\"big\""), "{line}");
    // What the client can still read is a truncated body.
    let got = c.body(&head, |_| {});
    assert!(got.is_err(), "the whole body arrived: {got:?}");
}
