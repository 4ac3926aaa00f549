//! The hit path against a real Garage: bytes and headers as the bucket
//! has them, conditional and range reads, what never reaches the bucket.

mod common;
use common::*;

fn one_site(b: &TestBucket) -> Proxy {
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: s\n    bucket: {}\n",
        b.yaml()
    );
    Proxy::start_env(&yaml, &b.proxy_env())
}

fn assert_same_as_bucket(b: &TestBucket, p: &Proxy, key: &str, path: &str) {
    let direct = b.get(key);
    assert_eq!(direct.status, 200, "direct read of {key}");
    let resp = client().get(p.url(path)).send().unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    for h in ["content-type", "etag", "content-length"] {
        assert_eq!(resp.headers().get(h), direct.headers.get(h), "{h} of {key}");
    }
    let body = resp.bytes().unwrap();
    assert!(
        body.as_ref() == direct.body.as_slice(),
        "bytes of {key} differ"
    );
}

#[test]
fn objects_of_all_sizes() {
    let b = garage().bucket("sizes");
    for (key, len) in [("one", 1), ("mib", 1 << 20), ("big", 100 << 20)] {
        b.put(key, &pattern(len, len as u8), Some("application/x-test"));
    }
    let p = one_site(&b);
    for key in ["one", "mib", "big"] {
        assert_same_as_bucket(&b, &p, key, &format!("/{key}"));
    }
}

#[test]
fn awkward_keys() {
    let b = garage().bucket("keys");
    let p = one_site(&b);
    for (key, path) in [
        ("with space.txt", "/with%20space.txt"),
        ("plus+sign.txt", "/plus+sign.txt"),
        ("per%cent.txt", "/per%25cent.txt"),
        (
            "ünïcödé/日本.txt",
            "/%C3%BCn%C3%AFc%C3%B6d%C3%A9/%E6%97%A5%E6%9C%AC.txt",
        ),
        ("a/b/c/d/e/f/deep.txt", "/a/b/c/d/e/f/deep.txt"),
    ] {
        b.put(key, key.as_bytes(), Some("text/plain"));
        assert_same_as_bucket(&b, &p, key, path);
    }
}

#[test]
fn range_conditional_head_and_missing() {
    let b = garage().bucket("cond");
    let body = pattern(5000, 1);
    b.put("obj", &body, Some("text/plain"));
    let p = one_site(&b);
    let c = client();

    let r = c
        .get(p.url("/obj"))
        .header("range", "bytes=0-9")
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().unwrap().as_ref(), &body[..10]);

    let etag = b.get("obj").headers["etag"].to_str().unwrap().to_string();
    let r = c
        .get(p.url("/obj"))
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);

    let r = c.head(p.url("/obj")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "5000");
    assert!(r.bytes().unwrap().is_empty());

    let r = c.get(p.url("/nothing-here")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().unwrap().contains("<Code>NoSuchKey</Code>"));

    // A Range of another unit or a bad syntax, and a date condition that
    // is no date, are ignored (RFC 9110 §14.2, §13.1.3): the whole
    // object, as a miss answers. Garage said 416 and 400.
    for (name, value) in [
        ("range", "items=0-5"),
        ("range", "bytes=abc"),
        ("range", "bytes=10-5"),
        ("if-modified-since", "garbage"),
        ("if-unmodified-since", "Mon, 30 Nov 2026 04:21:24 +0000"),
    ] {
        let r = c.get(p.url("/obj")).header(name, value).send().unwrap();
        assert_eq!(r.status(), 200, "{name}: {value}");
        assert_eq!(r.bytes().unwrap().as_ref(), &body[..], "{name}: {value}");
    }
    // The unit is case-insensitive: `Bytes=` is a range (Garage said
    // 416 to it; a miss answered 206).
    let r = c
        .get(p.url("/obj"))
        .header("range", "Bytes=0-9")
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().unwrap().as_ref(), &body[..10]);
    // A real date still decides.
    let r = c
        .get(p.url("/obj"))
        .header("if-modified-since", "Fri, 01 Jan 2100 00:00:00 GMT")
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);
}

#[test]
fn client_credentials_and_query_never_reach_bucket() {
    let b = garage().bucket("strip");
    b.put("secret.txt", b"payload", Some("text/plain"));
    let rec = Recorder::start(garage().s3_port);
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: s\n    bucket: {}\n",
        b.yaml().replace(
            &garage().endpoint(),
            &format!("http://127.0.0.1:{}", rec.port)
        )
    );
    let p = Proxy::start_env(&yaml, &b.proxy_env());
    let r = client()
        .get(p.url("/secret.txt?versionId=bogus&marker=q1"))
        .header("authorization", "Bearer client-token-xyz")
        .header("cookie", "session=cookie-abc")
        .header("x-custom", "custom-123")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), b"payload");
    let seen = rec.seen();
    assert!(seen.contains("GET /t-strip-"), "request not seen: {seen}");
    for leaked in [
        "client-token-xyz",
        "cookie-abc",
        "custom-123",
        "versionId",
        "marker=q1",
    ] {
        assert!(
            !seen.contains(leaked),
            "{leaked} reached the bucket:\n{seen}"
        );
    }
    assert!(
        seen.contains("AWS4-HMAC-SHA256"),
        "request not signed:\n{seen}"
    );
}

#[test]
fn methods_and_invalid_keys() {
    let b = garage().bucket("inval");
    let p = one_site(&b);
    for m in ["PUT", "POST", "DELETE"] {
        let (status, text) = raw_request(
            p.port,
            &format!(
                "{m} /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        );
        assert_eq!(status, 405, "{m}");
        assert!(text.contains("<Code>MethodNotAllowed</Code>"));
    }
    let long = format!("/{}", "k".repeat(1025));
    for path in [
        "/../x",
        "/a/./b",
        "/%2e%2e/x",
        "/%2E%2E%2Fx",
        "/a%00b",
        long.as_str(),
        "/",
        // A key starting with `/`: Garage reads `/x` as `x` (tests/keys.rs
        // has the empty segments a bucket takes).
        "//etc/passwd",
        "/%2Fetc/passwd",
    ] {
        let (status, text) = raw_get(p.port, "a", path);
        assert_eq!(status, 400, "{path}: {text}");
        assert!(text.contains("<Code>InvalidURI</Code>"), "{path}: {text}");
    }
}

#[test]
fn sites_by_host() {
    let g = garage();
    let (one, two) = (g.bucket("site-one"), g.bucket("site-two"));
    one.put("k", b"from one", None);
    two.put("k", b"from two", None);
    let sites = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: one\n    hosts: [\"one.example.com\"]\n    bucket: {}\n  - name: two\n    hosts: [\"*.two.example.com\"]\n    bucket: {}\n",
        one.yaml(),
        two.yaml()
    );
    let p = Proxy::start_env(&sites, &one.proxy_env());
    assert!(raw_get(p.port, "ONE.example.com:80", "/k")
        .1
        .ends_with("from one"));
    assert!(raw_get(p.port, "a.b.two.example.com", "/k")
        .1
        .ends_with("from two"));
    let (status, text) = raw_get(p.port, "two.example.com", "/k");
    assert_eq!(status, 404);
    assert!(text.contains("<Code>NoSuchWebsiteConfiguration</Code>"));

    let with_default = format!("{sites}  - name: fallback\n    bucket: {}\n", two.yaml());
    let p = Proxy::start_env(&with_default, &one.proxy_env());
    assert!(raw_get(p.port, "unknown.example.org", "/k")
        .1
        .ends_with("from two"));
    assert!(raw_get(p.port, "one.example.com", "/k")
        .1
        .ends_with("from one"));
    // An absolute-form target names the site when no Host does (HTTP/1.0,
    // RFC 9112 §3.2.2), not the default one.
    let (status, text) = raw_request(p.port, "GET http://one.example.com/k HTTP/1.0\r\n\r\n");
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("from one"), "{text}");
    // HTTP/1.1 requires Host (RFC 9112 §3.2): 400, not the default site.
    for target in ["/k", "http://one.example.com/k"] {
        let (status, text) = raw_request(p.port, &format!("GET {target} HTTP/1.1\r\n\r\n"));
        assert_eq!(status, 400, "{target}: {text}");
        assert!(text.contains("needs a Host header"), "{target}: {text}");
    }
}

#[test]
fn oversized_request_headers_get_431_before_any_bucket_request() {
    let b = garage().bucket("limits");
    b.put("k", b"payload", Some("text/plain"));
    let rec = Recorder::start(garage().s3_port);
    let bucket = b.yaml().replace(
        &garage().endpoint(),
        &format!("http://127.0.0.1:{}", rec.port),
    );
    let start = |limits: &str| {
        let yaml = format!(
            "listen: [\"127.0.0.1:{{port}}\"]\n{limits}sites:\n  - name: s\n    bucket: {bucket}\n"
        );
        Proxy::start_env(&yaml, &b.proxy_env())
    };
    let get = |p: &Proxy, header_len: usize| {
        raw_request(
            p.port,
            &format!(
                "GET /k HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
                "b".repeat(header_len)
            ),
        )
    };
    // Default: 16 KiB.
    let p = start("");
    let (status, text) = get(&p, 200_000);
    assert_eq!(status, 431, "{text}");
    assert!(
        text.contains("<Code>RequestHeaderSectionTooLarge</Code>"),
        "{text}"
    );
    let (status, text) = get(&p, 16_384 + 1);
    assert_eq!(status, 431, "{text}");
    // (The start-up bucket check reads a random key; `k` must not be read.)
    let asked = format!("/{}/k HTTP", b.name);
    assert!(
        !rec.seen().contains(&asked),
        "the bucket was asked: {}",
        rec.seen()
    );
    let (status, text) = get(&p, 15_000);
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("payload"));
    // Configured lower.
    let p = start("limits: { max_request_header_bytes: 2048 }\n");
    assert_eq!(get(&p, 1000).0, 200);
    assert_eq!(get(&p, 3000).0, 431);
}

#[test]
fn stored_access_control_allow_origin_comes_back_on_hits() {
    let b = garage().bucket("acao");
    b.put_with(
        "cors.txt",
        b"x",
        &[
            ("content-type", "text/plain"),
            (
                "x-amz-meta-access-control-allow-origin",
                "https://app.example.com",
            ),
        ],
    );
    let p = one_site(&b);
    let r = client().get(p.url("/cors.txt")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(r
        .headers()
        .get("x-amz-meta-access-control-allow-origin")
        .is_none());
}

#[test]
fn start_up_warns_when_a_missing_key_is_403() {
    let g = garage();
    let b = g.bucket("probe");
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: s\n    bucket: {}\n",
        b.yaml()
    );
    // A key Garage knows but that has no permission on this bucket: every
    // read is 403, as on AWS S3 without s3:ListBucket for a missing key.
    let (id, secret) = g.new_key(&format!("{}-noperm", b.name));
    let p = Proxy::start_env(&yaml, &[("OP_KEY", &id), ("OP_SECRET", &secret)]);
    let line = p.wait_log("s3:ListBucket");
    assert!(line.contains("WARN") && line.contains("403"), "{line}");
    // The proper key: the check passes, no warning.
    let p = Proxy::start_env(&yaml, &b.proxy_env());
    p.wait_log("bucket check: a missing key answers 404");
    assert!(!p.log().contains("s3:ListBucket"), "{}", p.log());
}

#[test]
fn bucket_signatures_never_reach_the_debug_log() {
    let b = garage().bucket("hit-sigs");
    b.put("s.txt", b"signed read", Some("text/plain"));
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: s\n    bucket: {}\n",
        b.yaml()
    );
    let mut env: Vec<(&str, &str)> = b.proxy_env().to_vec();
    env.push(("RUST_LOG", "debug"));
    let p = Proxy::start_env(&yaml, &env);
    for _ in 0..2 {
        // The second read reuses the cached signed request.
        let r = client().get(p.url("/s.txt")).send().unwrap();
        assert_eq!(r.text().unwrap(), "signed read");
    }
    let log = p.wait_log("Sending header to upstream");
    assert!(log.contains("\"authorization\": Sensitive"), "{log}");
    let all = p.log();
    assert!(
        !all.contains("Signature="),
        "a bucket signature reached the log"
    );
    assert!(
        !all.contains(&b.garage.secret),
        "the secret key reached the log"
    );
}

/// Temporary credentials (STS, SSO) carry a session token: it is signed
/// and sent as `x-amz-security-token` (without it every request was
/// refused). Named by `session_token_env`, or `AWS_SESSION_TOKEN` beside
/// the default key names, as the AWS SDKs read it.
#[test]
fn temporary_credentials_send_their_session_token() {
    // A stand-in bucket that records what it is sent.
    let fake = Origin::start();
    fake.set("/b/k", Reply::ok(b"object", "text/plain"));
    for (bucket, env) in [
        (
            format!("{{ endpoint: \"http://127.0.0.1:{}\", name: b, access_key_id_env: OP_KEY, secret_access_key_env: OP_SECRET, session_token_env: OP_TOKEN }}", fake.port),
            vec![("OP_KEY", "k"), ("OP_SECRET", "s"), ("OP_TOKEN", "TOKEN-1")],
        ),
        (
            format!("{{ endpoint: \"http://127.0.0.1:{}\", name: b }}", fake.port),
            vec![("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s"), ("AWS_SESSION_TOKEN", "TOKEN-1")],
        ),
    ] {
        let yaml = format!(
            "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: s\n    bucket: {bucket}\n"
        );
        let p = Proxy::start_env(&yaml, &env);
        let (status, text) = raw_get(p.port, "e", "/k");
        assert_eq!(status, 200, "{text}");
        let seen = fake.seen();
        let req = seen.iter().rev().find(|s| s.target == "/b/k").expect("bucket asked");
        assert_eq!(req.header("x-amz-security-token"), Some("TOKEN-1"));
        let auth = req.header("authorization").unwrap_or("");
        assert!(auth.contains("x-amz-security-token"), "token not signed: {auth}");
    }
}
