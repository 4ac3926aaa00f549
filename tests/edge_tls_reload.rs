//! Certificate rotation without a restart: replace the files, SIGHUP; new
//! handshakes get the new certificate while a transfer on a connection
//! made before completes. A broken certificate is refused and the running
//! one stays.

mod common;
use common::edge::{handshake, Edge};
use common::*;
use std::io::Read;
use std::time::Duration;

/// Lines of the proxy's log containing `needle`.
fn log_count(e: &Edge, needle: &str) -> usize {
    e.proxy.log().lines().filter(|l| l.contains(needle)).count()
}

/// `tls_certificate_expiry_timestamp_seconds` of the certificate file
/// ending in `file`, from the admin port.
fn expiry(e: &Edge, file: &str) -> Option<i64> {
    let text = client()
        .get(format!("http://127.0.0.1:{}/metrics", e.admin))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("origin_pull_tls_certificate_expiry_timestamp_seconds{"))
        .find(|l| l.contains(&format!("{file}\"")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn sighup_rotates_certificates_and_old_connections_complete() {
    let e = Edge::start(2);
    let port = e.proxy.port;
    assert_eq!(
        handshake(port, Some("a.test"), Some(&e.ca)).unwrap().names,
        ["a.test"]
    );

    // A transfer in progress on a connection made with the old
    // certificate: the origin holds the second half back.
    let big = std::sync::Arc::new(pattern(4 << 20, 7));
    e.origin
        .set("/long.bin", Reply::shared(&big).gate_at(1 << 20));
    let c = e.client(false);
    let mut r = c.get(e.url("a.test", "/long.bin")).send().unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let mut first = vec![0u8; 256 << 10];
    r.read_exact(&mut first).unwrap();

    // Rotate: a.test's files now hold a new certificate (a new key too),
    // which also names rotated.test and expires on 2031-01-02.
    let before = expiry(&e, "/a.pem").expect("a.pem's expiry is exported");
    e.ca.issue_with(e.certs.path(), "a", &["a.test", "rotated.test"], |p| {
        p.not_after = rcgen::date_time_ymd(2031, 1, 2);
    });
    e.proxy.signal("HUP");
    wait_until("reload", Duration::from_secs(30), || {
        log_count(&e, "is in force") == 1
    });
    let now = handshake(port, Some("a.test"), Some(&e.ca)).unwrap();
    assert_eq!(now.names, ["a.test", "rotated.test"]);
    // 2031-01-02T00:00:00Z; the metric follows the rotation.
    assert_eq!(expiry(&e, "/a.pem"), Some(1_925_078_400));
    assert_ne!(before, 1_925_078_400);
    assert!(expiry(&e, "/b.pem").is_some());
    // Every worker serves it (each has its own socket): a few more
    // handshakes, all new.
    for _ in 0..6 {
        let h = handshake(port, Some("a.test"), Some(&e.ca)).unwrap();
        assert_eq!(h.names, ["a.test", "rotated.test"]);
    }
    assert_eq!(
        handshake(port, Some("b.test"), Some(&e.ca)).unwrap().names,
        ["b.test", "*.b.test"]
    );

    // The old connection's transfer completes, byte for byte.
    e.origin.release();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(first == big[..first.len()]);
    assert!(rest == big[first.len()..], "old transfer broken");

    // A broken rotation (the key of another certificate) is refused, says
    // why, and the running certificate stays.
    std::fs::copy(e.certs.path().join("b.key"), e.certs.path().join("a.key")).unwrap();
    e.proxy.signal("HUP");
    wait_until("refused reload", Duration::from_secs(30), || {
        log_count(&e, "reload refused") == 1
    });
    let line = e.proxy.wait_log("reload refused");
    assert!(
        line.contains("certificates[1].key") && line.contains("does not match"),
        "{line}"
    );
    assert_eq!(
        handshake(port, Some("a.test"), Some(&e.ca)).unwrap().names,
        ["a.test", "rotated.test"]
    );
    // And the proxy still serves over it.
    std::fs::write(e.bucket().join("after.txt"), b"still here").unwrap();
    let r = e
        .client(true)
        .get(e.url("a.test", "/after.txt"))
        .send()
        .unwrap();
    assert_eq!(r.text().unwrap(), "still here");
}
