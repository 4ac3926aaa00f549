//! Reload of a listener's certificates, driven directly (the SIGHUP path
//! is tested end to end in tests/edge_tls.rs).

use super::*;
use crate::config::{Config, ConfigError};
use std::path::Path;

/// A self-signed certificate for `names` as `stem.pem` / `stem.key`.
fn write_cert(dir: &Path, stem: &str, names: &[&str]) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join(format!("{stem}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
}

fn config(dir: &Path, addr: &str, h2: bool) -> Result<Config, ConfigError> {
    std::fs::create_dir_all(dir.join("bkt")).unwrap();
    let yaml = format!(
        "listen:\n  - \"127.0.0.1:1\"\n  - addr: \"{addr}\"\n    tls:\n      h2: {h2}\n      certificates:\n        - {{ cert: a.pem, key: a.key }}\n        - {{ cert: b.pem, key: b.key }}\nsites:\n  - name: s\n    bucket: {{ local: bkt }}\n"
    );
    Config::parse(&yaml, "t.yaml", dir, &|_| None)
}

/// The first DNS name of the certificate new handshakes get for `sni`.
fn served(edge: &EdgeTls, addr: &str, sni: Option<&str>) -> String {
    let set = edge.store(addr).unwrap().current();
    let key = set.pick(sni).clone();
    let (_, cert) = x509_parser::parse_x509_certificate(key.cert[0].as_ref()).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    match &san.value.general_names[0] {
        x509_parser::extensions::GeneralName::DNSName(n) => n.to_string(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn reload_swaps_certificates_and_keeps_them_on_error() {
    let d = tempfile::tempdir().unwrap();
    let addr = "127.0.0.1:8443";
    write_cert(d.path(), "a", &["a.test"]);
    write_cert(d.path(), "b", &["b.test"]);
    let c = config(d.path(), addr, true).unwrap();
    let edge = EdgeTls::new(&c.listen);
    assert!(edge.store("127.0.0.1:1").is_none());
    assert_eq!(served(&edge, addr, Some("b.test")), "b.test");
    assert_eq!(served(&edge, addr, None), "a.test");
    let before = edge.store(addr).unwrap().current();

    // New files: b now also names c.test, a is replaced by d.test.
    write_cert(d.path(), "a", &["d.test"]);
    write_cert(d.path(), "b", &["b.test", "c.test"]);
    // Nothing changes until the reload.
    assert_eq!(served(&edge, addr, Some("c.test")), "a.test");
    let c2 = config(d.path(), addr, true).unwrap();
    edge.reload(&c2.listen).unwrap();
    assert_eq!(served(&edge, addr, Some("c.test")), "b.test");
    assert_eq!(served(&edge, addr, Some("zzz")), "d.test");
    // A handshake that loaded the old set still holds it, intact.
    assert_eq!(before.pick(Some("b.test")).cert.len(), 1);

    // A broken key fails validation: no new config, nothing to swap.
    std::fs::write(d.path().join("b.key"), "not a key").unwrap();
    let e = config(d.path(), addr, true).unwrap_err().to_string();
    assert!(e.contains("t.yaml:8:") && e.contains("b.key"), "{e}");
    assert_eq!(served(&edge, addr, Some("c.test")), "b.test");

    // A listener change is refused as a whole, even with good certificates.
    write_cert(d.path(), "b", &["e.test"]);
    let moved = config(d.path(), "127.0.0.1:9443", true).unwrap();
    let e = edge.reload(&moved.listen).unwrap_err().to_string();
    assert!(e.contains("127.0.0.1:9443"), "{e}");
    let no_h2 = config(d.path(), addr, false).unwrap();
    assert!(edge.reload(&no_h2.listen).is_err());
    assert_eq!(served(&edge, addr, Some("c.test")), "b.test");
    assert_eq!(served(&edge, addr, Some("e.test")), "d.test");
}

#[test]
fn every_worker_shares_the_listener_store() {
    let d = tempfile::tempdir().unwrap();
    write_cert(d.path(), "a", &["a.test"]);
    write_cert(d.path(), "b", &["b.test"]);
    let c = config(d.path(), "127.0.0.1:8443", true).unwrap();
    let edge = EdgeTls::new(&c.listen);
    let clone = edge.clone();
    assert!(Arc::ptr_eq(
        edge.store("127.0.0.1:8443").unwrap(),
        clone.store("127.0.0.1:8443").unwrap()
    ));
    assert!(edge.settings(&c.listen[0]).is_none());
    assert!(edge.settings(&c.listen[1]).is_some());
}
