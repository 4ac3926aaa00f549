//! Mirror back-to-origin against a real Garage and a real origin server.

mod common;
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
    assert!(p.write_back_outcome(key).contains("write-back stored"));
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

    let extra = ", pass_query_string: true, headers: { pass: [x-custom], set: { x-set: v1 } }";
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
    assert!(p
        .write_back_outcome("chunked")
        .contains("write-back stored"));
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
    assert!(p.write_back_outcome("r1").contains("write-back stored"));
    assert_eq!(b.get("r1").body, b"at the end");

    // A Location with raw UTF-8 (not percent-encoded) is followed as
    // browsers and curl follow it: percent-encoded, on both miss paths
    // (GET: the fill; HEAD with `allow_head`: the plain path).
    o.set(
        "/u1",
        Reply::status(302).header("Location", "/dest/été x.txt"),
    );
    o.set(
        "/dest/%C3%A9t%C3%A9%20x.txt",
        Reply::ok(b"unicode hop", "text/plain"),
    );
    let p = mirror_proxy(&b, &o.url(), ", allow_head: true");
    let r = client().head(p.url("/u1")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "11");
    let r = client().get(p.url("/u1")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "unicode hop");
    assert_eq!(o.hits("/dest/%C3%A9t%C3%A9%20x.txt"), 2);

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
    assert!(p.write_back_outcome("c0").contains("write-back stored"));
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
        assert!(
            !p.write_back_outcome(key).contains("write-back stored"),
            "{key}"
        );
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
    assert!(p.write_back_outcome("big").contains("write-back stored"));
    assert!(b.get("big").body == body);
    assert_eq!(o.hits("/big"), 1);
    let again = client().get(p.url("/big")).send().unwrap();
    assert!(again.bytes().unwrap().as_ref() == body.as_slice());
    assert_eq!(o.hits("/big"), 1, "the second GET is a hit");
}

/// On the fill and on the plain path (an unusable spool).
#[test]
fn md5_mismatch_is_not_stored() {
    use base64::Engine;
    for plain in [false, true] {
        let b = garage().bucket(if plain { "md5-plain" } else { "md5" });
        let o = Origin::start();
        let wrong = base64::engine::general_purpose::STANDARD.encode([0u8; 16]);
        o.set(
            "/bad",
            Reply::ok(b"some bytes", "text/plain").header("Content-MD5", &wrong),
        );
        let (_spool, fill) = common::fill::plain_path_fill(plain);
        let p = common::fill::fill_proxy(&b, &o.url(), ", check_md5: true", &fill);
        let r = client().get(p.url("/bad")).send().unwrap();
        // The body is verified before it may end well: a client that got
        // the header sees a transfer without a valid end; one that arrives
        // after the check failed gets 424. Never a clean 200.
        match r.status().as_u16() {
            200 => assert!(r.bytes().is_err(), "{plain}: a clean 200 for a failed MD5"),
            s => assert_eq!(s, 424),
        }
        assert!(p.write_back_outcome("bad").contains("failed"), "{plain}");
        assert!(!b.exists("bad"));
    }
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
    // An HTTP/1.0 origin: the client still gets our HTTP/1.1 status line.
    o.set("/h10", Reply::ok(b"old", "text/plain").http10());
    let (status, text) = raw_request(
        p.port,
        "HEAD /h10 HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

/// The plain path (a HEAD here) tries each address the origin's name
/// resolves to, as the fill path's client and nginx do: a dual-stack
/// origin listed with an IPv6 address first that refuses (or is
/// unreachable from the proxy) was a 424 for HEAD while GET worked.
#[test]
fn every_address_of_an_origin_name_is_tried() {
    let b = garage().bucket("two-addrs");
    let o = Origin::start();
    o.set("/h", Reply::ok(b"0123456789", "text/plain"));
    let port = o.port;
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: s\n    bucket: {}\n    rules:\n      - mirror: {{ url: \"http://two.test:{port}\", timeout_seconds: 3, allow_head: true }}\n",
        b.yaml()
    );
    // The origin listens on 127.0.0.1 only; ::1 sorts first and refuses.
    let hosts = format!(
        "{}\n::1 two.test\n127.0.0.1 two.test\n",
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hosts");
    std::fs::write(&file, &hosts).unwrap();
    let order = std::process::Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            "mount --bind \"$1\" /etc/hosts && getent ahosts two.test",
            "sh",
        ])
        .arg(&file)
        .output()
        .unwrap();
    let order = String::from_utf8_lossy(&order.stdout).to_string();
    assert!(
        order
            .lines()
            .find(|l| l.contains("STREAM"))
            .is_some_and(|l| l.starts_with("::1")),
        "this test needs `unshare -m` (root) and ::1 sorted first for a name with both: {order}"
    );
    let p = Proxy::start_with_hosts(&yaml, &b.proxy_env(), Some(&hosts));
    let r = client().head(p.url("/h")).send().unwrap();
    assert_eq!(r.status(), 200, "{}", p.log());
    assert_eq!(o.hits("/h"), 1);
    assert!(p.log().contains("trying its next address"), "{}", p.log());
    // GET (a fill) reaches it too, and stores it.
    let r = client().get(p.url("/h")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), b"0123456789");
    wait_until("stored", std::time::Duration::from_secs(30), || {
        b.exists("h")
    });
}

/// Interim answers (103 Early Hints, 100 Continue) before the origin's
/// 200: the plain path took the first header for the origin's answer and
/// gave 424; the fill path's client already skipped them.
#[test]
fn interim_answers_before_the_origin_s_200_are_skipped() {
    let b = garage().bucket("interim");
    let o = Origin::start();
    o.set("/e", Reply::ok(b"early", "text/plain").interim(103));
    o.set(
        "/c",
        Reply::ok(b"continue", "text/plain")
            .interim(100)
            .interim(103),
    );
    let p = mirror_proxy(&b, &o.url(), ", allow_head: true");
    for path in ["/e", "/c"] {
        let (status, text) = raw_request(
            p.port,
            &format!("HEAD {path} HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(status, 200, "HEAD {path}: {text}");
        assert!(
            !text.contains("Interim"),
            "the interim answer was passed on: {text}"
        );
        let r = client().get(p.url(path)).send().unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
    }
    assert_eq!(
        client().get(p.url("/e")).send().unwrap().text().unwrap(),
        "early"
    );
    wait_until("stored", std::time::Duration::from_secs(30), || {
        b.exists("c")
    });
}
