//! Mirror back-to-origin against a real Garage and a real origin server.

mod common;
use common::http::Conn;
use common::*;

#[test]
fn miss_is_fetched_stored_and_then_hit() {
    let b = garage().bucket("miss");
    let o = Origin::start();
    let body = pattern(200_000, 9);
    o.set(
        "/dir1/img/a%20b%20%C3%BC.jpg",
        Reply::ok(&body, "image/jpeg")
            .header("Cache-Control", "max-age=60")
            .header("Access-Control-Allow-Origin", "https://app.example")
            .header("Set-Cookie", "s=1")
            .header("Server", "origin/1.0")
            .header("X-Powered-By", "php"),
    );
    let p = mirror_proxy(&b, &format!("{}dir1/", o.url()), "");
    let r = client()
        .get(p.url("/img/a%20b%20%C3%BC.jpg"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let want_tag = format!(
        "MIRROR http%3A%2F%2F127.0.0.1%3A{}%2Fdir1%2Fimg%2Fa%2520b%2520%25C3%25BC.jpg",
        o.port
    );
    assert_eq!(r.headers()["x-oss-tag"], want_tag.as_str());
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    for h in ["set-cookie", "server", "x-powered-by"] {
        assert!(r.headers().get(h).is_none(), "{h} returned");
    }
    assert!(r.bytes().unwrap().as_ref() == body.as_slice());
    assert_eq!(o.seen()[0].target, "/dir1/img/a%20b%20%C3%BC.jpg");

    let key = "img/a b ü.jpg";
    assert!(p.write_back_outcome(key).contains("stored"));
    let stored = b.get(key);
    assert!(stored.body == body);
    assert_eq!(stored.headers["content-type"], "image/jpeg");
    assert_eq!(stored.headers["cache-control"], "max-age=60");
    assert!(stored.headers.get("set-cookie").is_none());

    // The origin changes: the stored object keeps being served, tagged.
    o.set(
        "/dir1/img/a%20b%20%C3%BC.jpg",
        Reply::ok(b"changed", "text/plain"),
    );
    let r = client()
        .get(p.url("/img/a%20b%20%C3%BC.jpg"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-oss-tag"], want_tag.as_str());
    // One of the seven stored headers, kept as user metadata by the bucket.
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(r.bytes().unwrap().as_ref() == body.as_slice());
    assert_eq!(o.hits("/dir1/img/a%20b%20%C3%BC.jpg"), 1);
}

#[test]
fn client_headers_and_query_policy() {
    let b = garage().bucket("hdrs");
    let o = Origin::start();
    o.set("/k", Reply::ok(b"x", "text/plain"));
    let send = |p: &Proxy, key: &str| {
        client()
            .get(p.url(&format!("/{key}?q=1")))
            .header("authorization", "Bearer t")
            .header("cookie", "c=1")
            .header("x-custom", "yes")
            .send()
            .unwrap()
            .status()
    };
    o.set("/a", Reply::ok(b"x", "text/plain"));
    let p = mirror_proxy(&b, &o.url(), "");
    assert_eq!(send(&p, "a"), 200);
    let s = &o.seen()[0];
    assert_eq!(s.target, "/a");
    for h in ["authorization", "cookie", "x-custom"] {
        assert!(s.header(h).is_none(), "{h} reached the origin");
    }
    assert_eq!(
        s.header("host"),
        Some(format!("127.0.0.1:{}", o.port).as_str())
    );

    let extra = ", pass_query_string: true, headers: { pass: [x-custom, authorization, cookie], set: { x-set: v1 } }";
    let p = mirror_proxy(&b, &o.url(), extra);
    o.set("/b", Reply::ok(b"x", "text/plain"));
    assert_eq!(send(&p, "b"), 200);
    let s = o
        .seen()
        .into_iter()
        .find(|s| s.target.starts_with("/b"))
        .unwrap();
    assert_eq!(s.target, "/b?q=1");
    assert_eq!(s.header("x-custom"), Some("yes"));
    assert_eq!(s.header("x-set"), Some("v1"));
    assert!(s.header("authorization").is_none() && s.header("cookie").is_none());

    let p = mirror_proxy(&b, &o.url(), ", headers: { pass_all: true }");
    o.set("/c", Reply::ok(b"x", "text/plain"));
    assert_eq!(send(&p, "c"), 200);
    let s = o
        .seen()
        .into_iter()
        .find(|s| s.target.starts_with("/c"))
        .unwrap();
    assert_eq!(s.header("x-custom"), Some("yes"));
    assert!(s.header("authorization").is_none() && s.header("cookie").is_none());
}

#[test]
fn framing_is_kept() {
    let b = garage().bucket("frame");
    let o = Origin::start();
    let body = pattern(300_000, 4);
    o.set(
        "/chunked",
        Reply::ok(&body, "application/octet-stream").fault(Fault::Chunked),
    );
    o.set("/sized", Reply::ok(&body, "application/octet-stream"));
    let p = mirror_proxy(&b, &o.url(), "");
    let r = client().get(p.url("/chunked")).send().unwrap();
    assert_eq!(
        r.headers()
            .get("transfer-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("chunked")
    );
    assert!(r.headers().get("content-length").is_none());
    assert!(r.bytes().unwrap().as_ref() == body.as_slice());
    let r = client().get(p.url("/sized")).send().unwrap();
    assert_eq!(r.headers()["content-length"], "300000");
    assert!(r.bytes().unwrap().as_ref() == body.as_slice());
    assert!(p.write_back_outcome("chunked").contains("stored"));
    assert!(b.get("chunked").body == body);
}

#[test]
fn origin_failures() {
    let b = garage().bucket("fail");
    let o = Origin::start();
    o.set("/gone", Reply::status(404));
    o.set("/e500", Reply::status(500));
    o.set("/e403", Reply::status(403));
    o.set("/e206", Reply::status(206));
    o.set(
        "/moved",
        Reply::status(302).header("Location", "/elsewhere"),
    );
    o.set(
        "/slow",
        Reply::ok(b"late", "text/plain").fault(Fault::Delay(std::time::Duration::from_secs(6))),
    );
    let p = mirror_proxy(&b, &o.url(), ", follow_redirect: false");
    let r = client().get(p.url("/gone")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().unwrap().contains("<Code>NoSuchKey</Code>"));
    for key in ["e500", "e403", "e206", "moved", "slow"] {
        let r = client().get(p.url(&format!("/{key}"))).send().unwrap();
        assert_eq!(r.status(), 424, "{key}");
        assert!(
            r.text().unwrap().contains("<Code>MirrorFailed</Code>"),
            "{key}"
        );
    }
    let refused = format!("http://127.0.0.1:{}/", free_port());
    let p2 = mirror_proxy(&b, &refused, "");
    let r = client().get(p2.url("/any")).send().unwrap();
    assert_eq!(r.status(), 424);
    for key in ["gone", "e500", "e403", "e206", "moved", "slow", "any"] {
        assert!(!b.exists(key), "{key} stored");
    }
    assert!(!p.log().contains("write-back ") && !p2.log().contains("write-back "));
}

#[test]
fn redirects_and_secondary() {
    let b = garage().bucket("hops");
    let o = Origin::start();
    let second = Origin::start();
    o.set("/r1", Reply::status(302).header("Location", "/r2"));
    o.set(
        "/r2",
        Reply::status(301).header(
            "Location",
            &format!("http://127.0.0.1:{}/final", second.port),
        ),
    );
    second.set("/final", Reply::ok(b"at the end", "text/plain"));
    let p = mirror_proxy(&b, &o.url(), "");
    let r = client().get(p.url("/r1")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "at the end");
    assert!(p.write_back_outcome("r1").contains("stored"));
    assert_eq!(b.get("r1").body, b"at the end");

    let down = format!("http://127.0.0.1:{}/", free_port());
    second.set("/k2", Reply::ok(b"from secondary", "text/plain"));
    let p = mirror_proxy(&b, &down, &format!(", secondary_url: \"{}\"", second.url()));
    let r = client().get(p.url("/k2")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "from secondary");
}

/// The longest route the contract allows: the primary follows 10 hops
/// and fails, the secondary follows 10 hops and answers. On the plain
/// path (HEAD) every hop is one of Pingora's tries: 1 bucket + 11 + 11.
#[test]
fn ten_hops_on_each_origin_fit_the_try_budget() {
    let b = garage().bucket("longhops");
    let o = Origin::start();
    let second = Origin::start();
    for i in 0..10 {
        let hop = Reply::status(302).header("Location", &format!("/c{}", i + 1));
        o.set(&format!("/c{i}"), hop.clone());
        second.set(&format!("/c{i}"), hop);
    }
    o.set("/c10", Reply::status(500));
    second.set("/c10", Reply::ok(b"end of the chain", "text/plain"));
    let extra = format!(", allow_head: true, secondary_url: \"{}\"", second.url());
    let p = mirror_proxy(&b, &o.url(), &extra);
    let r = client().head(p.url("/c0")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "16");
    assert_eq!((o.hits("/c10"), second.hits("/c10")), (1, 1));
    let r = client().get(p.url("/c0")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "end of the chain");
    assert!(p.write_back_outcome("c0").contains("stored"));
}

#[test]
fn broken_bodies_store_nothing_and_retry_later() {
    let b = garage().bucket("broken");
    let o = Origin::start();
    let body = pattern(1 << 20, 5);
    o.set(
        "/short",
        Reply::ok(&body, "application/octet-stream").fault(Fault::Truncate(300_000)),
    );
    o.set(
        "/reset",
        Reply::ok(&body, "application/octet-stream").fault(Fault::Reset(300_000)),
    );
    let p = mirror_proxy(&b, &o.url(), "");
    for key in ["short", "reset"] {
        let r = client().get(p.url(&format!("/{key}"))).send().unwrap();
        // A client whose read of the fill began before the origin broke
        // off gets the 200 and a broken body; one that reaches the fill
        // after it failed (a loaded machine: the fill reads the 300 KB
        // and fails first) gets 424. Never a clean, complete 200.
        match r.status().as_u16() {
            200 => assert!(
                r.bytes().is_err(),
                "{key}: the client must see a truncated transfer"
            ),
            s => assert_eq!(s, 424, "{key}"),
        }
        assert!(!p.write_back_outcome(key).contains("stored"), "{key}");
        assert!(!b.exists(key), "{key} stored");
    }
    o.set("/short", Reply::ok(&body, "application/octet-stream"));
    let r = client().get(p.url("/short")).send().unwrap();
    assert!(r.bytes().unwrap().as_ref() == body.as_slice());
    assert_eq!(o.hits("/short"), 2);
}

#[test]
fn client_disconnect_still_stores() {
    use std::io::Read;
    let b = garage().bucket("disc");
    let o = Origin::start();
    let body = pattern(4 << 20, 6);
    o.set(
        "/big",
        Reply::ok(&body, "application/octet-stream").fault(Fault::Gate),
    );
    let p = mirror_proxy(&b, &o.url(), "");
    let mut r = client().get(p.url("/big")).send().unwrap();
    let mut first = vec![0u8; 100_000];
    r.read_exact(&mut first).unwrap();
    drop(r); // the client goes away mid-body
    o.release();
    // The fill is nobody's: it completes and is stored whole.
    assert!(p.write_back_outcome("big").contains("stored"));
    assert!(b.get("big").body == body);
    assert_eq!(o.hits("/big"), 1);
    let again = client().get(p.url("/big")).send().unwrap();
    assert!(again.bytes().unwrap().as_ref() == body.as_slice());
    assert_eq!(o.hits("/big"), 1, "the second GET is a hit");
}

#[test]
fn md5_mismatch_is_not_stored() {
    use base64::Engine;
    let b = garage().bucket("md5");
    let o = Origin::start();
    let wrong = base64::engine::general_purpose::STANDARD.encode([0u8; 16]);
    o.set(
        "/bad",
        Reply::ok(b"some bytes", "text/plain").header("Content-MD5", &wrong),
    );
    let p = mirror_proxy(&b, &o.url(), ", check_md5: true");
    let r = client().get(p.url("/bad")).send().unwrap();
    // The fill is verified before it may end well: a client that got the
    // header sees a transfer without a valid end; one that arrives after
    // the check failed gets 424. Never a clean 200.
    match r.status().as_u16() {
        200 => assert!(r.bytes().is_err(), "a clean 200 for a failed MD5"),
        s => assert_eq!(s, 424),
    }
    assert!(p.write_back_outcome("bad").contains("failed"));
    assert!(!b.exists("bad"));
}

#[test]
fn refused_write_back_is_invisible_to_client() {
    let g = garage();
    let b = g.bucket("ro");
    let o = Origin::start();
    let body = pattern(100_000, 8);
    o.set("/k", Reply::ok(&body, "text/plain"));
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: s\n    bucket: {}\n    rules:\n      - mirror: {{ url: \"{}\" }}\n",
        b.yaml(),
        o.url()
    );
    let p = Proxy::start_env(
        &yaml,
        &[
            ("OP_KEY", g.ro_key_id.as_str()),
            ("OP_SECRET", g.ro_secret.as_str()),
        ],
    );
    let r = client().get(p.url("/k")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().unwrap().as_ref() == body.as_slice());
    assert!(p.write_back_outcome("k").contains("failed"));
    assert!(!b.exists("k"));
}

#[test]
fn head_and_uncovered_keys() {
    let b = garage().bucket("head");
    let o = Origin::start();
    o.set("/h", Reply::ok(b"0123456789", "text/plain"));
    o.set("/other/x", Reply::ok(b"x", "text/plain"));
    let yaml = |extra: &str| {
        format!(
            "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: s\n    bucket: {}\n    rules:\n      - condition: {{ key_prefix: \"h\" }}\n        mirror: {{ url: \"{}\" {extra} }}\n",
            b.yaml(),
            o.url()
        )
    };
    let p = Proxy::start_env(&yaml(""), &b.proxy_env());
    let r = client().head(p.url("/h")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(o.hits("/h"), 0);
    let r = client().get(p.url("/other/x")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(o.hits("/other/x"), 0);

    let p = Proxy::start_env(&yaml(", allow_head: true"), &b.proxy_env());
    let r = client().head(p.url("/h")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(o.hits("/h"), 1);
    // A HEAD has no body to store: no write-back was started at all.
    let line = p.wait_log("mirror key=\"h\"");
    assert!(line.contains("write_back=none"), "{line}");
    assert!(!b.exists("h"));
}

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
    let line = p.wait_log("mirror key=\"k\"");
    assert!(
        line.contains("write_back=none"),
        "no write-back when the bucket is down: {line}"
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

    // The plain path (the bucket is down, so no fill): an origin 404 and a
    // failed origin, then an object, on one connection.
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
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: s\n    bucket: {}\n    rules:\n      - condition: {{ key_prefix: \"r/\", http_error_code: 404 }}\n        redirect: {{ host: r.example.com }}\n      - condition: {{ key_prefix: \"a/\" }}\n        mirror: {{ url: \"{}\", mode: async }}\n      - condition: {{ key_prefix: \"\" }}\n        mirror: {{ url: \"{}\", allow_head: true }}\n",
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
    p.wait_log("mirror key=\"broken\"");
}
