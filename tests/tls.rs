//! https upstreams with a private CA (`tls: { ca_file }`): bucket reads
//! and write-back through TLS in front of a real Garage, and an https
//! origin. The CA and certificates are made by the test; the certificate
//! names `localhost` only, so every request must use the host name.

mod common;
use common::tls::{tls_yaml, TestPki, TlsRelay};
use common::*;
use md5::{Digest, Md5};
use std::path::Path;

/// `bucket:` for `b` behind `relay`, by host name, trusting `ca`.
fn https_bucket(b: &TestBucket, relay: &TlsRelay, ca: Option<&Path>) -> String {
    format!(
        "{{ endpoint: \"https://localhost:{}\", name: \"{}\", region: garage, access_key_id_env: OP_KEY, secret_access_key_env: OP_SECRET{} }}",
        relay.port,
        b.name,
        ca.map(|c| format!(", {}", tls_yaml(c))).unwrap_or_default()
    )
}

fn proxy_yaml(bucket: &str, origin_url: &str, mirror_extra: &str) -> String {
    format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: s\n    bucket: {bucket}\n    rules:\n      - condition: {{ key_prefix: \"\" }}\n        mirror: {{ url: \"{origin_url}\", timeout_seconds: 5 {mirror_extra} }}\n"
    )
}

#[test]
fn https_bucket_reads_and_writes_back_through_tls() {
    let pki = TestPki::new();
    let b = garage().bucket("tls");
    let relay = TlsRelay::start(b.garage.s3_port, &pki);
    b.put("hit.txt", b"from the bucket", Some("text/plain"));
    let o = Origin::start();
    let small = pattern(300_000, 5);
    o.set("/small.bin", Reply::ok(&small, "application/octet-stream"));
    // Multipart (over the single-PUT size), streamed with a known length.
    let big_len = 20 << 20;
    o.set(
        "/big.bin",
        Reply {
            status: 200,
            headers: vec![("Content-Type".into(), "application/x-big".into())],
            body: Body::Pattern {
                len: big_len,
                seed: 6,
            },
            fault: Fault::None,
        },
    );
    let yaml = proxy_yaml(
        &https_bucket(&b, &relay, Some(&pki.ca_file())),
        &o.url(),
        "",
    );
    let p = Proxy::start_env(&yaml, &b.proxy_env());

    // A hit, read through TLS by Pingora.
    let r = client().get(p.url("/hit.txt")).send().unwrap();
    assert_eq!(r.status(), 200, "{}", p.log());
    assert_eq!(r.bytes().unwrap().as_ref(), b"from the bucket");

    // Misses, written back through TLS by the uploader.
    let r = client().get(p.url("/small.bin")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().unwrap().as_ref() == small.as_slice());
    let line = p.write_back_outcome("small.bin");
    assert!(line.contains("write-back stored"), "{line}\n{}", p.log());
    assert!(b.get("small.bin").body == small);

    let r = client().get(p.url("/big.bin")).send().unwrap();
    assert_eq!(r.status(), 200);
    let served = Md5::digest(r.bytes().unwrap());
    let line = p.write_back_outcome("big.bin");
    assert!(line.contains("write-back stored"), "{line}\n{}", p.log());
    let stored = b.get("big.bin");
    assert_eq!(stored.body.len() as u64, big_len);
    assert_eq!(Md5::digest(&stored.body), served);
    assert_eq!(stored.headers["content-type"], "application/x-big");

    // The stored copy is now a hit: the origin is not asked again.
    let r = client().get(p.url("/small.bin")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-oss-tag").is_some());
    assert_eq!(o.hits("/small.bin"), 1);

    // Every connection named the host (SNI), never an address.
    let seen = relay.handshakes();
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(seen.iter().all(|s| s == "localhost"), "{seen:?}");
}

#[test]
fn https_bucket_without_its_ca_is_not_trusted() {
    let pki = TestPki::new();
    let b = garage().bucket("tlsnoca");
    let relay = TlsRelay::start(b.garage.s3_port, &pki);
    b.put("hit.txt", b"x", None);
    let o = Origin::start();
    let yaml = proxy_yaml(&https_bucket(&b, &relay, None), &o.url(), "");
    let p = Proxy::start_env(&yaml, &b.proxy_env());
    let r = client().get(p.url("/hit.txt")).send().unwrap();
    assert_eq!(r.status(), 502);
    assert!(relay.handshakes().is_empty());
}

#[test]
fn https_origin_with_its_ca_is_mirrored_and_stored() {
    let pki = TestPki::new();
    let b = garage().bucket("tlsorigin");
    let o = Origin::start();
    let relay = TlsRelay::start(o.port, &pki);
    let body = pattern(500_000, 8);
    o.set("/dir/img/a.png", Reply::ok(&body, "image/png"));
    let origin_url = format!("https://localhost:{}/dir/", relay.port);

    let extra = format!(", {}", tls_yaml(&pki.ca_file()));
    let p = Proxy::start_env(&proxy_yaml(&b.yaml(), &origin_url, &extra), &b.proxy_env());
    let r = client().get(p.url("/img/a.png")).send().unwrap();
    assert_eq!(r.status(), 200, "{}", p.log());
    let tag = r.headers()["x-oss-tag"].to_str().unwrap().to_string();
    assert!(tag.starts_with("MIRROR https%3A%2F%2Flocalhost"), "{tag}");
    assert!(r.bytes().unwrap().as_ref() == body.as_slice());
    let line = p.write_back_outcome("img/a.png");
    assert!(line.contains("write-back stored"), "{line}");
    assert!(b.get("img/a.png").body == body);
    assert!(relay.handshakes().iter().all(|s| s == "localhost"));

    // Without the rule's CA the origin is not trusted: 424, nothing stored.
    let p = Proxy::start_env(&proxy_yaml(&b.yaml(), &origin_url, ""), &b.proxy_env());
    let r = client().get(p.url("/img/other.png")).send().unwrap();
    assert_eq!(r.status(), 424);
    assert!(r.text().unwrap().contains("<Code>MirrorFailed</Code>"));
    assert!(!b.exists("img/other.png"));
}

/// The origin's CA is rotated and the new one written over the same
/// `ca_file`; a reload must trust the new one. It compared the paths
/// only, kept the old origin client and failed every https miss with
/// `BadSignature` until a restart.
#[test]
fn a_reload_reads_a_rotated_origin_ca_file() {
    let (old, new) = (TestPki::new(), TestPki::new());
    let b = garage().bucket("tlsrotate");
    let o = Origin::start();
    o.set("/dir/a", Reply::ok(b"a", "text/plain"));
    o.set("/dir/b", Reply::ok(b"b", "text/plain"));
    let relay = TlsRelay::start(o.port, &old);
    let origin_url = format!("https://localhost:{}/dir/", relay.port);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("origin-ca.pem");
    std::fs::copy(old.ca_file(), &ca_file).unwrap();
    let extra = format!(", {}", tls_yaml(&ca_file));
    let p = Proxy::start_env(&proxy_yaml(&b.yaml(), &origin_url, &extra), &b.proxy_env());
    assert_eq!(client().get(p.url("/a")).send().unwrap().status(), 200);

    relay.rotate(&new);
    std::fs::copy(new.ca_file(), &ca_file).unwrap();
    p.signal("HUP");
    p.wait_log("is in force");
    let r = client().get(p.url("/b")).send().unwrap();
    assert_eq!(r.status(), 200, "{}", p.log());
    assert_eq!(r.text().unwrap(), "b");
}

/// A self-signed certificate made the usual way (`openssl req -x509`
/// marks it CA:TRUE) is refused as a server's own by rustls: the 424
/// says so and how to fix it, instead of `CaUsedAsEndEntity` alone.
#[test]
fn a_ca_certificate_as_the_origin_s_own_is_explained() {
    let pki = TestPki::self_signed_ca_leaf();
    let b = garage().bucket("tlscaleaf");
    let o = Origin::start();
    o.set("/dir/a", Reply::ok(b"a", "text/plain"));
    let relay = TlsRelay::start(o.port, &pki);
    let origin_url = format!("https://localhost:{}/dir/", relay.port);
    let extra = format!(", {}", tls_yaml(&pki.ca_file()));
    let p = Proxy::start_env(&proxy_yaml(&b.yaml(), &origin_url, &extra), &b.proxy_env());
    let r = client().get(p.url("/a")).send().unwrap();
    assert_eq!(r.status(), 424);
    let text = r.text().unwrap();
    assert!(text.contains("CA:FALSE"), "{text}");
}

/// Credentials for `-t` runs (their values are never used).
const KEYS: [(&str, &str); 2] = [("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s")];

#[test]
fn a_bad_ca_file_fails_validation_with_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.pem");
    std::fs::write(&broken, "no certificate here\n").unwrap();
    for (bucket, mirror_tls, field) in [
        (
            format!(
                "{{ endpoint: \"https://localhost:1\", name: b, tls: {{ ca_file: \"{}\" }} }}",
                dir.path().join("missing.pem").display()
            ),
            String::new(),
            "sites[0].bucket.tls.ca_file",
        ),
        (
            "{ endpoint: \"http://127.0.0.1:1\", name: b }".to_string(),
            format!(", tls: {{ ca_file: \"{}\" }}", broken.display()),
            "sites[0].rules[0].mirror.tls.ca_file",
        ),
        // On an http endpoint the roots do nothing (a warning, below),
        // but the file is still checked.
        (
            format!(
                "{{ endpoint: \"http://127.0.0.1:1\", name: b, tls: {{ ca_file: \"{}\" }} }}",
                broken.display()
            ),
            String::new(),
            "sites[0].bucket.tls.ca_file",
        ),
    ] {
        let yaml = proxy_yaml(&bucket, "https://origin.example/", &mirror_tls);
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, yaml.replace("{port}", "1")).unwrap();
        let (ok, err) = check_config(&path, &KEYS);
        assert!(!ok, "{field}: accepted");
        assert!(err.contains(field), "{field}: {err}");
    }
    // SPEC's example pairs `tls` with an http endpoint: valid, warned.
    let yaml = proxy_yaml(
        "{ endpoint: \"http://127.0.0.1:1\", name: b, tls: {} }",
        "https://origin.example/",
        "",
    );
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, yaml.replace("{port}", "1")).unwrap();
    let (ok, err) = check_config(&path, &KEYS);
    assert!(ok, "{err}");
    assert!(
        err.contains("warning: sites[0].bucket.tls: has no effect"),
        "{err}"
    );
}
