//! HTTPS and HTTP/2 towards clients: a TLS listener with three
//! certificates from a test CA, picked by SNI; hits, fills, Range,
//! failures and redirects over HTTP/1.1 and h2. Clients trust only the
//! test CA.

mod common;
use common::edge::{handshake, Edge};
use common::*;
use std::io::Read;

#[test]
fn https_hit_and_mirrored_miss_are_byte_equal() {
    let e = Edge::start(2);
    // Workers each have their own TLS socket, as for plain listeners.
    wait_until("2 TLS sockets", std::time::Duration::from_secs(30), || {
        listening_sockets(e.proxy.port) == 2
    });
    let hit = pattern(300_000, 1);
    std::fs::write(e.bucket().join("hit.bin"), &hit).unwrap();
    let miss = pattern(700_000, 2);
    e.origin
        .set("/miss.bin", Reply::ok(&miss, "application/x-miss"));
    let c = e.client(true);

    let r = c.get(e.url("a.test", "/hit.bin")).send().unwrap();
    assert_eq!(r.status(), 200, "{}", e.proxy.log());
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert!(r.bytes().unwrap().as_ref() == hit.as_slice());

    let r = c.get(e.url("b.test", "/miss.bin")).send().unwrap();
    assert_eq!(r.status(), 200, "{}", e.proxy.log());
    assert_eq!(r.headers()["content-type"], "application/x-miss");
    assert!(r.headers().contains_key("x-oss-tag"));
    assert!(r.bytes().unwrap().as_ref() == miss.as_slice());
    // Written back: the next read is a hit, the origin is not asked again.
    let stored = e.bucket().join("miss.bin");
    wait_until("write-back", std::time::Duration::from_secs(30), || {
        std::fs::read(&stored).is_ok_and(|b| b == miss)
    });
    let r = c.get(e.url("a.test", "/miss.bin")).send().unwrap();
    assert!(r.bytes().unwrap().as_ref() == miss.as_slice());
    assert_eq!(e.origin.hits("/miss.bin"), 1);

    // The plain listener still speaks plain HTTP/1.1.
    let (status, text) = raw_get(e.plain, "a.test", "/hit.bin");
    assert_eq!(status, 200, "{text}");
}

#[test]
fn sni_picks_the_certificate() {
    let e = Edge::start(1);
    let p = e.proxy.port;
    let a = handshake(p, Some("a.test"), Some(&e.ca)).unwrap();
    assert_eq!(a.names, ["a.test"]);
    let b = handshake(p, Some("b.test"), Some(&e.ca)).unwrap();
    assert_eq!(b.names, ["b.test", "*.b.test"]);
    // A wildcard name, verified by the client like any other.
    let w = handshake(p, Some("x.b.test"), Some(&e.ca)).unwrap();
    assert_eq!(w.names, ["b.test", "*.b.test"]);
    // Unknown name, no SNI: the first certificate, which the client
    // (rightly) refuses when it checks the name.
    let u = handshake(p, Some("unknown.test"), None).unwrap();
    assert_eq!(u.names, ["default.test"]);
    let none = handshake(p, None, None).unwrap();
    assert_eq!(none.names, ["default.test"]);
    let refused = handshake(p, Some("unknown.test"), Some(&e.ca))
        .err()
        .unwrap();
    assert!(refused.contains("not valid for name"), "{refused}");
    // h2 is offered by ALPN.
    assert_eq!(a.alpn.as_deref(), Some(&b"h2"[..]));
}

#[test]
fn http2_hit_streamed_miss_and_range() {
    let e = Edge::start(1);
    let hit = pattern(200_000, 3);
    std::fs::write(e.bucket().join("hit.bin"), &hit).unwrap();
    let c = e.client(false);

    let r = c.get(e.url("a.test", "/hit.bin")).send().unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert!(r.bytes().unwrap().as_ref() == hit.as_slice());

    let r = c
        .get(e.url("a.test", "/hit.bin"))
        .header("range", "bytes=1000-1999")
        .send()
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 1000-1999/200000");
    assert!(r.bytes().unwrap().as_ref() == &hit[1000..2000]);

    // A miss streams: the client has the first part while the origin
    // still holds back the rest.
    let big = std::sync::Arc::new(pattern(2 << 20, 4));
    e.origin
        .set("/stream.bin", Reply::shared(&big).gate_at(1 << 20));
    let mut r = c.get(e.url("a.test", "/stream.bin")).send().unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let mut first = vec![0u8; 512 << 10];
    r.read_exact(&mut first).unwrap();
    assert!(first == big[..first.len()]);
    assert!(e.origin.sent("/stream.bin") <= 1 << 20);
    e.origin.release();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest == big[first.len()..]);

    // A Range on a missing object is served from the fill (206).
    let obj = pattern(100_000, 5);
    e.origin
        .set("/ranged.bin", Reply::ok(&obj, "application/octet-stream"));
    let r = c
        .get(e.url("b.test", "/ranged.bin"))
        .header("range", "bytes=10-19")
        .send()
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 206, "{}", e.proxy.log());
    assert!(r.bytes().unwrap().as_ref() == &obj[10..20]);
}

/// The write-back of `path` ended without storing (300 KB is past the
/// fill's first publish step, so one always starts), and no file is left.
fn not_stored(e: &Edge, path: &str) {
    let outcome = e.proxy.write_back_outcome(&path[1..]);
    assert!(!outcome.contains("write-back stored"), "{path}: {outcome}");
    assert!(!e.bucket().join(&path[1..]).exists(), "{path} stored");
}

#[test]
fn http2_failed_fill_is_an_error_for_the_client() {
    let e = Edge::start(1);
    let obj = pattern(1 << 20, 6);
    for path in ["/cut.bin", "/cut-chunked.bin"] {
        let reply = Reply::ok(&obj, "application/octet-stream").truncate_at(300_000);
        let reply = if path.contains("chunked") {
            reply.chunked()
        } else {
            reply
        };
        e.origin.set(path, reply);
    }
    let c = e.client(false);
    for path in ["/cut.bin", "/cut-chunked.bin"] {
        let r = c.get(e.url("a.test", path)).send().unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        // A client that reaches the fill after it failed (a loaded
        // machine: the fill reads the 300 KB and fails first) gets 424.
        if r.status() == 424 {
            not_stored(&e, path);
            continue;
        }
        assert_eq!(r.status(), 200);
        // A stream reset, not a clean end: the client can't take the
        // short body for the object (even without a Content-Length).
        // (Pingora drops the stream: RST_STREAM with CANCEL.)
        let err = match r.bytes() {
            Ok(b) => panic!("{path}: body ended cleanly after {} bytes", b.len()),
            Err(e) => format!("{e:?}"),
        };
        assert!(err.contains("Reset("), "{path}: {err}");
        not_stored(&e, path);
    }
    // The connection (and others on it) still works.
    std::fs::write(e.bucket().join("ok.txt"), b"ok").unwrap();
    let r = c.get(e.url("a.test", "/ok.txt")).send().unwrap();
    assert_eq!(r.text().unwrap(), "ok");
}

#[test]
fn redirect_keeps_the_scheme_of_the_listener() {
    let e = Edge::start(1);
    for h1 in [true, false] {
        let r = e
            .client(h1)
            .get(e.url("a.test", "/old/x.txt?q=1"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 302, "{}", e.proxy.log());
        let want = format!("https://a.test:{}/new/x.txt", e.proxy.port);
        assert_eq!(r.headers()["location"], want.as_str());
    }
    let (status, text) = raw_get(e.plain, "a.test", "/old/x.txt");
    assert_eq!(status, 302);
    assert!(text.contains("http://a.test/new/x.txt"), "{text}");
}

#[test]
fn host_conditions_hold_over_h2() {
    // HTTP/2 carries the host in `:authority`, without a Host header: a
    // `host` condition never matched there.
    let e = Edge::start(1);
    for h1 in [true, false] {
        let c = e.client(h1);
        let r = c.get(e.url("a.test", "/byhost/x")).send().unwrap();
        assert_eq!(r.status(), 302, "h1 {h1}: {}", e.proxy.log());
        assert_eq!(r.headers()["location"], "https://a-site.example/byhost/x");
        // Another host: no redirect (the mirror rule, the origin's 404).
        let r = c.get(e.url("b.test", "/byhost/x")).send().unwrap();
        assert_eq!(r.status(), 404, "h1 {h1}");
    }
}

#[test]
fn redirect_on_a_bucket_404_over_h1_and_h2() {
    // Written over the bucket's 404 (its body dropped), on both
    // protocols; the next request works.
    let e = Edge::start(1);
    std::fs::write(e.bucket().join("here.txt"), b"here").unwrap();
    for h1 in [true, false] {
        let c = e.client(h1);
        let r = c.get(e.url("a.test", "/moved/x.txt")).send().unwrap();
        assert_eq!(r.status(), 302, "{}", e.proxy.log());
        assert_eq!(
            r.headers()["location"],
            "https://elsewhere.example/moved/x.txt"
        );
        assert_eq!(r.bytes().unwrap().len(), 0);
        let r = c.get(e.url("a.test", "/here.txt")).send().unwrap();
        assert_eq!(r.text().unwrap(), "here");
    }
}

#[test]
fn a_bucket_outage_costs_https_clients_no_new_handshakes() {
    // Every request's 502 keeps the TLS connection: one accepted TCP
    // connection (one handshake) for all of them, over HTTP/1.1 and h2.
    let ca = common::tls::TestCa::new();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = ca.issue(certs.path(), "a", &["a.test"]);
    let (dead, env) = dead_bucket();
    let yaml = format!(
        "listen:\n  - addr: \"127.0.0.1:{{port}}\"\n    tls:\n      certificates:\n        - {{ cert: \"{}\", key: \"{}\" }}\nsites:\n  - name: s\n    bucket: {dead}\n    rules:\n      - mirror: {{ url: \"http://127.0.0.1:9/\" }}\n",
        cert.display(),
        key.display()
    );
    let proxy = Proxy::start_env(&yaml, &env);
    for h1 in [true, false] {
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let front = relay(proxy.port, move |_| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Some((pass(), pass()))
        });
        let pem = reqwest::Certificate::from_pem(ca.ca_pem().as_bytes()).unwrap();
        let mut b = reqwest::blocking::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(pem)
            .resolve(
                "a.test",
                std::net::SocketAddr::from(([127, 0, 0, 1], front)),
            );
        if h1 {
            b = b.http1_only();
        }
        let c = b.build().unwrap();
        for _ in 0..3 {
            let r = c.get(format!("https://a.test:{front}/k")).send().unwrap();
            assert_eq!(r.status(), 502);
            assert!(r.headers().get("connection").is_none_or(|v| v != "close"));
            assert!(r.text().unwrap().contains("<Code>BadGateway</Code>"));
        }
        let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(n, 1, "h1={h1}: {n} connections (handshakes) for 3 requests");
    }
}

/// What a client does to its own connection is not an ERROR: a TCP
/// connect and close on the TLS port (a load balancer's health check), a
/// request header never finished. Pingora logs both at ERROR; the
/// binary's logger shows them at debug (here enabled to see them at all).
#[test]
fn clients_that_hang_up_are_logged_at_debug() {
    let log =
        "info,pingora_core::services::listening=debug,pingora_proxy=debug,origin_pull::proxy=debug";
    let e = Edge::start_env(1, &[("RUST_LOG", log)]);
    drop(std::net::TcpStream::connect(("127.0.0.1", e.proxy.port)).unwrap());
    let line = e.proxy.wait_log("Downstream handshake");
    assert!(line.contains("DEBUG") && !line.contains("ERROR"), "{line}");
    // Counted all the same.
    let metrics = client()
        .get(format!("http://127.0.0.1:{}/metrics", e.admin))
        .send()
        .unwrap()
        .text()
        .unwrap();
    // (The start-up readiness wait connects and closes too.)
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("origin_pull_tls_handshake_failures_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(failures >= 1, "{metrics}");
    let mut half = std::net::TcpStream::connect(("127.0.0.1", e.plain)).unwrap();
    std::io::Write::write_all(&mut half, b"GET /x HT").unwrap();
    drop(half);
    let line = e.proxy.wait_log("downstream session type");
    assert!(line.contains("DEBUG") && !line.contains("ERROR"), "{line}");
    // A client that hangs up mid-body (more than the socket buffers hold).
    std::fs::write(e.bucket().join("big.bin"), vec![7u8; 32 << 20]).unwrap();
    let mut c = common::http::Conn::open(e.plain);
    c.send("/big.bin", &[]);
    assert_eq!(c.head().unwrap().status, 200);
    drop(c);
    e.proxy.wait_log("client connection ended");
    // A request still works, and nothing above was an ERROR.
    let r = e
        .client(true)
        .get(e.url("a.test", "/old/x"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(!e.proxy.log().contains("ERROR"), "{}", e.proxy.log());
}
