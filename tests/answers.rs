//! The answers the proxy gives itself while proxying: 502 for a bucket
//! it can't reach (or the origin under `mirror_on_bucket_error`), S3
//! errors and redirects that keep the client's connection, and a client
//! that leaves before the bucket answers.

mod common;
use common::http::Conn;
use common::*;

/// A bucket that can't answer: 502, or the origin without write-back
/// when the rule says `mirror_on_bucket_error`.
fn unreachable_bucket_cases(bucket: &str, env: &[(&str, &str)]) {
    let o = Origin::start();
    o.set("/k", Reply::ok(b"from origin", "text/plain"));
    let yaml = |extra: &str| {
        format!(
            "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: s\n    bucket: {bucket}\n    rules:\n      - mirror: {{ url: \"{}\" {extra} }}\n",
            o.url()
        )
    };
    let p = Proxy::start_env(&yaml(""), env);
    let (status, text) = raw_get(p.port, "e", "/k");
    assert_eq!(status, 502, "{text}");
    assert_eq!(o.hits("/k"), 0);

    let p = Proxy::start_env(&yaml(", mirror_on_bucket_error: true"), env);
    let (status, text) = raw_get(p.port, "e", "/k");
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("from origin"));
    assert_eq!(o.hits("/k"), 1);
    p.wait_log("fill key=\"k\"");

    // GETs of one object during the outage share one origin fetch, as
    // misses do: the second joins the first's fill.
    let body = pattern(2 << 20, 42);
    o.set(
        "/hot",
        Reply::ok(&body, "application/octet-stream").gate_at(1 << 20),
    );
    let first = {
        let url = p.url("/hot");
        std::thread::spawn(move || client().get(url).send().unwrap().bytes().unwrap())
    };
    o.wait("the first half sent", |o| o.sent("/hot") >= 1 << 20);
    // Its header is out (the proxy took it up) before the gate opens.
    let second = client().get(p.url("/hot")).send().unwrap();
    assert_eq!(second.status(), 200);
    o.release();
    assert!(first.join().unwrap() == body, "first body differs");
    assert!(second.bytes().unwrap() == body, "second body differs");
    assert_eq!(o.hits("/hot"), 1, "the second GET asked the origin again");
    p.wait_log("fill key=\"hot\" joined=true");
    assert!(
        !p.log().contains("write-back"),
        "a write-back while the bucket is down:\n{}",
        p.log()
    );
    errors_keep_the_connection(bucket, env, &o);
}

/// Errors with a body (written by the fill peer for the proxy) keep the
/// client's connection, as nginx's 502 does: a bucket outage must not
/// cost every request a reconnect (and a TLS handshake on HTTPS).
fn errors_keep_the_connection(bucket: &str, env: &[(&str, &str)], o: &Origin) {
    o.set("/broken", Reply::status(500));
    let yaml = |extra: &str| {
        format!(
            "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: s\n    bucket: {bucket}\n    rules:\n      - mirror: {{ url: \"{}\", allow_head: true {extra} }}\n",
            o.url()
        )
    };
    let xml = |h: &common::http::Head, body: &[u8], code: &str| {
        let text = String::from_utf8_lossy(body).to_string();
        let id = h.header("x-amz-request-id").unwrap_or("-");
        assert!(text.contains(&format!("<Code>{code}</Code>")), "{text}");
        assert!(text.contains(&format!("<RequestId>{id}</RequestId>")) && id != "-");
        assert_eq!(h.header("content-type"), Some("application/xml"));
        assert!(!h.closes(), "{code}: Connection: close");
    };
    let p = Proxy::start_env(&yaml(""), env);
    let mut c = Conn::open(p.port);
    for _ in 0..2 {
        let (h, body) = c.get("/k", &[]);
        assert_eq!(h.status, 502);
        xml(&h, &body.unwrap(), "BadGateway");
    }
    let h = c.head_of("/k");
    assert_eq!(h.status, 502);
    assert!(!h.closes(), "HEAD 502: Connection: close");
    let (h, body) = c.get("/k", &[]);
    assert_eq!(h.status, 502, "the same connection still answers");
    xml(&h, &body.unwrap(), "BadGateway");

    // The origin while the bucket is down (a fill that stores nothing):
    // an origin 404 and a failed origin, then an object, on one
    // connection.
    let p = Proxy::start_env(&yaml(", mirror_on_bucket_error: true"), env);
    let mut c = Conn::open(p.port);
    let (h, body) = c.get("/missing", &[]);
    assert_eq!(h.status, 404);
    xml(&h, &body.unwrap(), "NoSuchKey");
    let (h, body) = c.get("/broken", &[]);
    assert_eq!(h.status, 424);
    xml(&h, &body.unwrap(), "MirrorFailed");
    let (h, body) = c.get("/k", &[]);
    assert_eq!(h.status, 200);
    assert_eq!(body.unwrap(), b"from origin");
}

#[test]
fn bucket_unreachable_502_or_origin_without_write_back() {
    let (dead, env) = dead_bucket();
    unreachable_bucket_cases(&dead, &env);
}

/// A "bucket" that accepts, reads the request and resets the connection.
fn resetting_bucket() -> (String, [(&'static str, &'static str); 2]) {
    use std::io::Read;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let s = socket2::Socket::from(c);
            let _ = s.set_linger(Some(std::time::Duration::ZERO));
        }
    });
    let yaml = format!(
        "{{ endpoint: \"http://127.0.0.1:{port}\", name: b, access_key_id_env: OP_KEY, secret_access_key_env: OP_SECRET }}"
    );
    (yaml, [("OP_KEY", "k"), ("OP_SECRET", "s")])
}

#[test]
fn bucket_reset_counts_as_unreachable() {
    let (bucket, env) = resetting_bucket();
    unreachable_bucket_cases(&bucket, &env);
}

/// A client that leaves while the bucket has not answered yet is a
/// client abort: not "bucket unreachable", so `mirror_on_bucket_error`
/// must not send the origin a request nobody reads.
#[test]
fn a_client_leaving_before_the_bucket_answers_asks_no_origin() {
    use std::io::{Read, Write};
    // A bucket that reads the request and never answers.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bucket_port = l.local_addr().unwrap().port();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut c in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = seen_tx.send(());
            held.push(c);
        }
    });
    let o = Origin::start();
    o.set("/k", Reply::ok(b"from origin", "text/plain"));
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\naccess_log: {{ path: stdout, format: json }}\nsites:\n  - name: s\n    bucket: {{ endpoint: \"http://127.0.0.1:{bucket_port}\", name: b, access_key_id_env: OP_KEY, secret_access_key_env: OP_SECRET }}\n    rules:\n      - mirror: {{ url: \"{}\", mirror_on_bucket_error: true }}\n",
        o.url()
    );
    let p = Proxy::start_env(&yaml, &[("OP_KEY", "k"), ("OP_SECRET", "s")]);
    let mut c = std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    c.write_all(b"GET /k HTTP/1.1\r\nHost: e\r\n\r\n").unwrap();
    seen_rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the bucket was asked");
    drop(c); // the client leaves; the bucket still hasn't answered
    let line = p.wait_log("\"outcome\":\"client_abort\"");
    assert!(line.contains("\"key\":\"k\""), "{line}");
    assert_eq!(
        o.hits("/k"),
        0,
        "the origin was asked for a client that left"
    );
}

#[test]
fn bodiless_answers_keep_the_connection() {
    // A redirect on a bucket 404, the `mode: async` 302, and a HEAD's
    // 404 or 424 are written over the upstream's answer: no
    // `Connection: close`, and the next request on the socket works.
    let b = garage().bucket("bodiless");
    let o = Origin::start();
    o.set("/broken", Reply::status(500));
    o.set("/a/x", Reply::ok(b"async", "text/plain"));
    o.set("/here", Reply::ok(b"here", "text/plain"));
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\naccess_log: {{ path: stdout, format: json }}\nsites:\n  - name: s\n    bucket: {}\n    rules:\n      - condition: {{ key_prefix: \"r/\", http_error_code: 404 }}\n        redirect: {{ host: r.example.com }}\n      - condition: {{ key_prefix: \"a/\" }}\n        mirror: {{ url: \"{}\", mode: async }}\n      - condition: {{ key_prefix: \"\" }}\n        mirror: {{ url: \"{}\", allow_head: true }}\n",
        b.yaml(),
        o.url(),
        o.url()
    );
    let p = Proxy::start_env(&yaml, &b.proxy_env());
    let mut c = Conn::open(p.port);

    let (h, body) = c.get("/r/x", &[]);
    assert_eq!(h.status, 302);
    assert_eq!(h.header("location"), Some("http://r.example.com/r/x"));
    assert_eq!(body.unwrap(), b"", "the bucket's 404 body was passed on");
    assert!(!h.closes(), "redirect: Connection: close");

    let (h, _) = c.get("/a/x", &[]);
    assert_eq!(h.status, 302);
    assert!(h.header("location").unwrap().ends_with("/a/x"));
    assert!(!h.closes(), "async 302: Connection: close");

    for (path, status) in [("/gone", 404), ("/broken", 424)] {
        let h = c.head_of(path);
        assert_eq!(h.status, status, "HEAD {path}");
        assert_eq!(h.header("content-type"), Some("application/xml"));
        assert!(h.header("x-amz-request-id").is_some());
        assert!(!h.closes(), "HEAD {path}: Connection: close");
    }
    // Still the same connection.
    let (h, body) = c.get("/here", &[]);
    assert_eq!(h.status, 200);
    assert_eq!(body.unwrap(), b"here");
    assert_eq!(o.hits("/gone"), 1);
    // The access log names the rule that answered without an origin
    // transfer of the client's own.
    for (key, rule) in [("r/x", 0), ("a/x", 1)] {
        let line = p.wait_log(&format!("\"key\":\"{key}\",\"status\""));
        assert!(line.contains(&format!("\"rule\":{rule},")), "{line}");
    }
    p.wait_log("mirror key=\"broken\"");
}
