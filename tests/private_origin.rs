//! Private origins (`mirror.auth`, `mirror.secondary_auth`): a second
//! Garage bucket with a key of its own as the source, signed with SigV4 on
//! both miss paths (GET: the shared fill; HEAD with `allow_head` and the
//! spool-budget fallback: Pingora's plain reroute), and the test origin
//! for `type: header`. Secrets never show in `-t` output or logs.

mod common;
use common::*;
use std::process::Command;

/// A source bucket and a key that may only read it.
struct Source {
    bucket: TestBucket,
    key_id: String,
    secret: String,
}

impl Source {
    fn new(tag: &str) -> Source {
        let g = garage();
        let bucket = g.bucket(tag);
        let (key_id, secret) = g.new_key(&format!("{tag}-reader"));
        g.cli(&["bucket", "allow", "--read", &bucket.name, "--key", &key_id]);
        Source {
            bucket,
            key_id,
            secret,
        }
    }

    /// Path-style S3 URL of the bucket, as `mirror.url`.
    fn url(&self) -> String {
        format!("{}/{}/", garage().endpoint(), self.bucket.name)
    }
}

/// `auth:` for Garage with the keys in SRC_KEY / SRC_SECRET.
const SIGV4: &str =
    "{ type: sigv4, region: garage, access_key_id_env: SRC_KEY, secret_access_key_env: SRC_SECRET }";

/// One site on `bucket`, one mirror rule (`mirror` is the inside of its
/// flow mapping), plus `extra` top-level YAML.
fn yaml(bucket: &TestBucket, mirror: &str, extra: &str) -> String {
    format!(
        "listen: [\"127.0.0.1:{{port}}\"]\n{extra}sites:\n  - name: s\n    bucket: {}\n    rules:\n      - condition: {{ key_prefix: \"\" }}\n        mirror: {{ timeout_seconds: 5, allow_head: true, {mirror} }}\n",
        bucket.yaml()
    )
}

fn env<'a>(bucket: &'a TestBucket, more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = bucket.proxy_env().to_vec();
    v.extend_from_slice(more);
    v
}

/// A proxy mirroring `src` with SigV4 and the keys given.
fn signed_proxy(b: &TestBucket, src: &Source, key: &str, secret: &str, more: &str) -> Proxy {
    let m = format!("url: \"{}\", auth: {SIGV4} {more}", src.url());
    Proxy::start_env(
        &yaml(b, &m, ""),
        &env(b, &[("SRC_KEY", key), ("SRC_SECRET", secret)]),
    )
}

/// A HEAD (the plain path) or a GET (the fill) of `url`.
fn send(head: bool, url: &str) -> reqwest::blocking::Response {
    let req = if head {
        client().head(url)
    } else {
        client().get(url)
    };
    req.send().unwrap()
}

fn s3_error_code(body: &str) -> &str {
    body.split("<Code>")
        .nth(1)
        .and_then(|s| s.split("</Code>").next())
        .unwrap_or("")
}

#[test]
fn signed_miss_is_streamed_stored_and_tagged() {
    let src = Source::new("src-ok");
    let b = garage().bucket("dst-ok");
    let body = pattern(300_000, 3);
    src.bucket
        .put("dir/a b ü.bin", &body, Some("application/x-test"));
    let p = signed_proxy(&b, &src, &src.key_id, &src.secret, "");

    // GET: the shared fill fetches it, signed.
    let path = "/dir/a%20b%20%C3%BC.bin";
    let r = client().get(p.url(path)).send().unwrap();
    assert_eq!(r.status(), 200);
    let tag = format!(
        "MIRROR http%3A%2F%2F127.0.0.1%3A{}%2F{}%2Fdir%2Fa%2520b%2520%25C3%25BC.bin",
        garage().s3_port,
        src.bucket.name
    );
    assert_eq!(r.headers()["x-oss-tag"], tag.as_str());
    assert_eq!(r.headers()["content-type"], "application/x-test");
    assert!(r.bytes().unwrap().as_ref() == body.as_slice());
    p.wait_log("fill key=\"dir/a b ü.bin\"");
    assert!(p
        .write_back_outcome("dir/a b ü.bin")
        .contains("write-back stored"));
    b.stored_matches("dir/a b ü.bin", &body).unwrap();
    // A hit from now on, still tagged.
    let r = client().get(p.url(path)).send().unwrap();
    assert_eq!(r.headers()["x-oss-tag"], tag.as_str());
    assert!(r.bytes().unwrap().as_ref() == body.as_slice());

    // HEAD (`allow_head`): the plain path signs too; nothing stored.
    src.bucket.put("h.txt", b"0123456789", Some("text/plain"));
    let r = client().head(p.url("/h.txt")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "10");
    assert!(r.headers()["x-oss-tag"]
        .to_str()
        .unwrap()
        .starts_with("MIRROR http%3A"));
    let line = p.wait_log("mirror key=\"h.txt\"");
    assert!(line.contains("write_back=none"), "{line}");
    assert!(!b.exists("h.txt"));

    // A key the source lacks: its 404 is ours (the key may list the bucket).
    let r = client().get(p.url("/absent")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(s3_error_code(&r.text().unwrap()), "NoSuchKey");
    let r = client().head(p.url("/absent")).send().unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn plain_path_get_is_signed_and_stored() {
    // A spool budget too small for the object: the GET falls back to
    // Pingora's plain reroute, which signs and writes back as it streams.
    let src = Source::new("src-plain");
    let b = garage().bucket("dst-plain");
    let body = pattern(50_000, 5);
    src.bucket.put("p.bin", &body, Some("application/x-plain"));
    let m = format!("url: \"{}\", auth: {SIGV4}", src.url());
    let e = env(&b, &[("SRC_KEY", &src.key_id), ("SRC_SECRET", &src.secret)]);
    let p = Proxy::start_env(&yaml(&b, &m, "fill: { max_spool_bytes: 1000 }\n"), &e);
    let r = client().get(p.url("/p.bin")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().unwrap().as_ref() == body.as_slice());
    p.wait_log("exceed the spool budget");
    p.wait_log("mirror key=\"p.bin\"");
    assert!(p.write_back_outcome("p.bin").contains("write-back stored"));
    b.stored_matches("p.bin", &body).unwrap();
    assert_eq!(
        b.get("p.bin").headers["content-type"],
        "application/x-plain"
    );
}

#[test]
fn wrong_secret_or_no_read_permission_is_424_and_nothing_stored() {
    let src = Source::new("src-deny");
    let b = garage().bucket("dst-deny");
    src.bucket.put("k", b"private", Some("text/plain"));
    let (outsider, outsider_secret) = garage().new_key("src-deny-outsider");
    for (key, secret) in [
        (src.key_id.as_str(), "0".repeat(64)),
        (outsider.as_str(), outsider_secret.clone()),
    ] {
        let p = signed_proxy(&b, &src, key, &secret, "");
        let r = client().get(p.url("/k")).send().unwrap();
        assert_eq!(r.status(), 424);
        assert_eq!(s3_error_code(&r.text().unwrap()), "MirrorFailed");
        let r = client().head(p.url("/k")).send().unwrap();
        assert_eq!(r.status(), 424);
        assert!(p.log().contains("origin answered 403"), "{}", p.log());
        assert!(!b.exists("k"));
    }
}

#[test]
fn passed_query_is_signed_and_s3_controls_stay_out() {
    // Two objects: one under the spool budget (a GET is a shared fill) and
    // one over it (a GET takes Pingora's plain reroute), so both paths
    // that build an origin request are checked with the query.
    let src = Source::new("src-query");
    let b = garage().bucket("dst-query");
    let small = b"query";
    let large = pattern(5_000, 7);
    src.bucket.put("q.txt", small, Some("text/plain"));
    src.bucket.put("big.txt", &large, Some("text/plain"));
    let m = format!(
        "url: \"{}\", auth: {SIGV4}, pass_query_string: true",
        src.url()
    );
    let e = env(&b, &[("SRC_KEY", &src.key_id), ("SRC_SECRET", &src.secret)]);
    let p = Proxy::start_env(&yaml(&b, &m, "fill: { max_spool_bytes: 1000 }\n"), &e);
    // `v` is passed and signed: `+` and `,` test the query's encoding
    // (sent as signed: `%20`, `%2C`), and a mismatch would be Garage's
    // 403, our 424. Response overrides are S3 parameters S3 honours on
    // signed GETs: a client must not choose the stored object's headers,
    // so they are not passed.
    let q =
        "?v=a+b,c&response-content-type=text%2Fx-signed&response-cache-control=no-cache,+max-age=5";

    // HEAD first, while nothing is stored (after the GET it would be a
    // hit, and whether it is depends on the write-back's timing). The 200
    // is the proof: Garage checks the signature over the query, and a
    // mismatch is 403, our 424.
    let r = send(true, &p.url(&format!("/q.txt{q}")));
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "5");
    p.wait_log("mirror key=\"q.txt\"");

    for (key, body, path) in [
        ("q.txt", &small[..], "fill"),
        ("big.txt", &large[..], "mirror"),
    ] {
        let r = send(false, &p.url(&format!("/{key}{q}")));
        assert_eq!(r.status(), 200, "{key}");
        assert_eq!(r.headers()["content-type"], "text/plain", "{key}");
        assert!(r.headers().get("cache-control").is_none(), "{key}");
        assert!(r.bytes().unwrap().as_ref() == body, "{key}");
        p.wait_log(&format!("{path} key=\"{key}\""));
        assert!(
            p.write_back_outcome(key).contains("write-back stored"),
            "{key}"
        );
    }
}

#[test]
fn header_auth_is_sent_only_to_its_origin_and_never_printed() {
    let b = garage().bucket("dst-hdr");
    let o = Origin::start();
    let other = Origin::start_on("127.0.0.2");
    let src = Source::new("src-hdr");
    src.bucket.put("s/k", b"signed", Some("text/plain"));
    // Separate keys per method: a GET stores its object, a later HEAD
    // of it would be a hit.
    for k in ["/k", "/k-head"] {
        o.set(k, Reply::ok(b"with token", "text/plain"));
    }
    for (k, to) in [("/away", "final"), ("/away-head", "final-head")] {
        o.set(
            k,
            Reply::status(302).header("Location", &format!("{}{to}", other_url(&other))),
        );
        other.set(&format!("/{to}"), Reply::ok(b"elsewhere", "text/plain"));
    }
    let token = "Bearer tok-7d1c0ffee5ecre7";
    // Two rules: a header-auth origin and a SigV4 one, so both kinds of
    // secret are in play for the `-t` and log checks.
    let config = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\naccess_log: {{ path: stdout, format: json }}\nsites:\n  - name: s\n    bucket: {}\n    rules:\n      - condition: {{ key_prefix: \"s/\" }}\n        mirror: {{ url: \"{}\", allow_head: true, auth: {SIGV4} }}\n      - condition: {{ key_prefix: \"\" }}\n        mirror: {{ url: \"{}\", allow_head: true, auth: {{ type: header, name: authorization, value_env: ORIGIN_TOKEN }}, headers: {{ set: {{ authorization: \"Bearer from-set\", x-set: \"1\" }} }} }}\n",
        b.yaml(),
        src.url(),
        o.url()
    );
    let secrets = [("ORIGIN_TOKEN", token), ("SRC_SECRET", src.secret.as_str())];
    let vars = env(
        &b,
        &[
            ("ORIGIN_TOKEN", token),
            ("SRC_KEY", &src.key_id),
            ("SRC_SECRET", &src.secret),
        ],
    );
    // Debug logging and the access log: the most a log ever says.
    let mut debug = vars.clone();
    debug.push(("RUST_LOG", "debug"));
    let p = Proxy::start_env(&config, &debug);

    for (head, sfx) in [(false, ""), (true, "-head")] {
        let k = format!("/k{sfx}");
        let r = send(head, &p.url(&k));
        assert_eq!(r.status(), 200, "head={head}");
        let seen = o.seen();
        let last = seen.iter().rfind(|s| s.target == k).unwrap();
        assert_eq!(last.method, if head { "HEAD" } else { "GET" });
        // The credential replaces the rule's header of the same name.
        let auths: Vec<_> = last
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(auths, [token], "head={head}");
        assert_eq!(last.header("x-set"), Some("1"));

        // A hop to another origin carries no credential, on either path.
        let r = send(head, &p.url(&format!("/away{sfx}")));
        assert_eq!(r.status(), 200, "head={head}");
        let hop = other.seen().into_iter().last().unwrap();
        assert_eq!(hop.target, format!("/final{sfx}"));
        assert!(hop.header("authorization").is_none(), "head={head}");
    }
    assert_eq!(client().get(p.url("/s/k")).send().unwrap().status(), 200);
    assert!(p.write_back_outcome("s/k").contains("write-back stored"));

    // `-t` with the same config: valid, and silent about the values.
    let cfg = p.dir.path().join("origin-pull.yaml");
    let mut t = Command::new(binary());
    t.arg("-t").arg("-c").arg(&cfg).env("RUST_LOG", "debug");
    for (k, v) in &vars {
        t.env(k, v);
    }
    let out = t.output().unwrap();
    assert!(out.status.success());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Waited for: the access log is written by its own thread.
    for line in [
        "fill key=\"k\"",
        "mirror key=\"k-head\"",
        "\"key\":\"k-head\"",
    ] {
        p.wait_log(line);
    }
    let log = p.log();
    for (name, value) in secrets {
        assert!(!printed.contains(value), "-t printed {name}: {printed}");
        assert!(!log.contains(value), "the log has {name}");
    }
    // Nor any part of the token or a signature.
    let leaks: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("tok-7d1c0ffee5ecre7") || l.contains("Signature="))
        .collect();
    assert!(leaks.is_empty(), "{leaks:#?}");
}

fn other_url(o: &Origin) -> String {
    format!("http://127.0.0.2:{}/", o.port)
}

#[test]
fn secondary_uses_its_own_auth() {
    let b = garage().bucket("dst-sec");
    let src = Source::new("src-sec");
    src.bucket
        .put("k", b"from the secondary", Some("text/plain"));
    src.bucket.put("h", b"head", Some("text/plain"));

    // Primary answers 500 → the secondary, Garage with SigV4.
    let o = Origin::start();
    o.set("/k", Reply::status(500));
    o.set("/h", Reply::status(500));
    let m = format!(
        "url: \"{}\", secondary_url: \"{}\", secondary_auth: {SIGV4}",
        o.url(),
        src.url()
    );
    let e = env(&b, &[("SRC_KEY", &src.key_id), ("SRC_SECRET", &src.secret)]);
    let p = Proxy::start_env(&yaml(&b, &m, ""), &e);
    let r = client().get(p.url("/k")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "from the secondary");
    assert!(p.write_back_outcome("k").contains("write-back stored"));
    assert_eq!(client().head(p.url("/h")).send().unwrap().status(), 200);
    assert_eq!((o.hits("/k"), o.hits("/h")), (1, 1));
    // The primary has no `auth`: it got no credential.
    assert!(o.seen().iter().all(|s| s.header("authorization").is_none()));
    drop(p);

    // Primary: Garage with a bad secret (403) → the secondary, with a
    // header credential and none of the primary's signature.
    let sec = Origin::start();
    sec.set("/k2", Reply::ok(b"backup", "text/plain"));
    sec.set("/k2-head", Reply::ok(b"backup", "text/plain"));
    let m = format!(
        "url: \"{}\", auth: {SIGV4}, secondary_url: \"{}\", secondary_auth: {{ type: header, name: x-backup-token, value_env: BACKUP }}",
        src.url(),
        sec.url()
    );
    let bad = "1".repeat(64);
    let e = env(
        &b,
        &[
            ("SRC_KEY", &src.key_id),
            ("SRC_SECRET", &bad),
            ("BACKUP", "backup-token"),
        ],
    );
    let p = Proxy::start_env(&yaml(&b, &m, ""), &e);
    for (head, path) in [(false, "/k2"), (true, "/k2-head")] {
        let r = send(head, &p.url(path));
        assert_eq!(r.status(), 200, "head={head}");
    }
    assert_eq!((sec.hits("/k2"), sec.hits("/k2-head")), (1, 1));
    for s in sec.seen() {
        assert_eq!(s.header("x-backup-token"), Some("backup-token"));
        assert!(s.header("authorization").is_none());
        assert!(s.header("x-amz-date").is_none());
    }
    assert!(p.write_back_outcome("k2").contains("write-back stored"));
}

#[test]
fn s3_wrong_region_is_logged_with_the_region_it_names() {
    let b = garage().bucket("dst-region");
    let o = Origin::start();
    // S3's answer to a request for a bucket in another region: 301
    // PermanentRedirect, no Location; the region in a header, the
    // endpoint in the XML body.
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message><Endpoint>old.s3.eu-west-3.amazonaws.com</Endpoint><Bucket>old</Bucket></Error>";
    let moved = |region: Option<&str>| {
        let r = Reply {
            status: 301,
            headers: vec![("Content-Type".into(), "application/xml".into())],
            body: Body::Bytes(xml.as_bytes().to_vec()),
            fault: Fault::None,
        };
        match region {
            Some(reg) => r.header("x-amz-bucket-region", reg),
            None => r,
        }
    };
    o.set("/get", moved(None));
    o.set("/head", moved(Some("ap-northeast-2")));
    let m = format!("url: \"{}\", auth: {SIGV4}", o.url());
    let e = env(&b, &[("SRC_KEY", "AKIDEXAMPLE"), ("SRC_SECRET", "secret")]);
    let p = Proxy::start_env(&yaml(&b, &m, ""), &e);

    // GET (fill): the region comes from the XML body.
    assert_eq!(client().get(p.url("/get")).send().unwrap().status(), 424);
    let line = p.wait_log("old.s3.eu-west-3.amazonaws.com");
    assert!(
        line.contains("answered 301") && line.contains("fill key=\"get\""),
        "{line}"
    );
    // HEAD (plain path): from the header.
    assert_eq!(client().head(p.url("/head")).send().unwrap().status(), 424);
    let line = p.wait_log("region ap-northeast-2");
    assert!(line.contains("auth.region"), "{line}");
    assert!(!b.exists("get"));
}
