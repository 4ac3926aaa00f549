//! Config checks of TLS listeners (`origin-pull -t`): errors and warnings
//! name `file:line:column` and the field.

mod common;
use common::tls::TestCa;
use common::*;
use std::path::Path;
use std::process::Command;

/// `origin-pull -t` on `yaml` written in `dir`: (exit code, stderr with
/// the config path shown as FILE).
fn check(dir: &Path, yaml: &str) -> (i32, String) {
    let path = dir.join("edge.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(binary())
        .arg("-t")
        .arg("-c")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "FILE");
    (out.status.code().unwrap_or(-1), stderr)
}

/// A config with one TLS listener whose certificates are `certs` (YAML
/// flow entries, paths relative to the config's folder), and a site for
/// `hosts`.
fn yaml(certs: &[&str], hosts: &str) -> String {
    let mut y = String::from("listen:\n  - \"127.0.0.1:8080\"\n  - addr: \"127.0.0.1:8443\"\n    tls:\n      certificates:\n");
    for c in certs {
        y.push_str(&format!("        - {c}\n"));
    }
    y.push_str(&format!(
        "sites:\n  - name: s\n    {hosts}\n    bucket: {{ local: bkt }}\n"
    ));
    y
}

struct Dir {
    d: tempfile::TempDir,
    ca: TestCa,
}

fn dir() -> Dir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("bkt")).unwrap();
    let ca = TestCa::new();
    ca.issue(d.path(), "a", &["a.test", "*.img.test"]);
    ca.issue(d.path(), "b", &["b.test"]);
    Dir { d, ca }
}

fn assert_error(d: &Dir, yaml: &str, location: &str, words: &[&str]) {
    let (code, stderr) = check(d.d.path(), yaml);
    assert_ne!(code, 0, "accepted:\n{yaml}");
    assert!(
        stderr.contains(&format!("FILE:{location}: ")),
        "want FILE:{location} in {stderr:?}"
    );
    for w in words {
        assert!(stderr.contains(w), "want {w:?} in {stderr:?}");
    }
}

#[test]
fn a_good_config_passes_without_warnings() {
    let d = dir();
    let y = yaml(
        &["{ cert: a.pem, key: a.key }", "{ cert: b.pem, key: b.key }"],
        "hosts: [a.test, b.test, \"*.img.test\", x.img.test]",
    );
    let (code, stderr) = check(d.d.path(), &y);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn missing_and_unreadable_files() {
    let d = dir();
    let y = yaml(
        &[
            "{ cert: a.pem, key: a.key }",
            "{ cert: nope.pem, key: b.key }",
        ],
        "",
    );
    assert_error(
        &d,
        &y,
        "7:19",
        &[
            "listen[1].tls.certificates[1].cert",
            "cannot read",
            "nope.pem",
        ],
    );
    let y = yaml(&["{ cert: a.pem, key: gone.key }"], "");
    assert_error(&d, &y, "6:31", &["certificates[0].key", "cannot read"]);
    // A folder where a file should be: unreadable as a file.
    let y = yaml(&["{ cert: bkt, key: a.key }"], "");
    assert_error(&d, &y, "6:19", &["certificates[0].cert", "cannot read"]);
    // Files that hold something else.
    let y = yaml(&["{ cert: a.key, key: a.key }"], "");
    assert_error(&d, &y, "6:19", &["holds no certificate"]);
    let y = yaml(&["{ cert: a.pem, key: a.pem }"], "");
    assert_error(&d, &y, "6:31", &["holds no private key"]);
}

#[test]
fn key_of_another_certificate() {
    let d = dir();
    let y = yaml(&["{ cert: a.pem, key: b.key }"], "");
    assert_error(
        &d,
        &y,
        "6:31",
        &[
            "listen[1].tls.certificates[0].key",
            "does not match certificate",
        ],
    );
}

#[test]
fn malformed_listen_entries() {
    let d = dir();
    let y = yaml(&[], "").replace("      certificates:\n", "      certificates: []\n");
    assert_error(&d, &y, "5:21", &["certificates", "at least one"]);
    let y = yaml(&["{ cert: a.pem, key: a.key }"], "").replace(
        "      certificates:",
        "      colour: blue\n      certificates:",
    );
    assert_error(&d, &y, "5:7", &["unknown field `colour`"]);
    let y = yaml(&["{ cert: a.pem }"], "");
    assert_error(&d, &y, "6:11", &["missing field `key`"]);
    let y = yaml(&["{ cert: a.pem, key: a.key }"], "").replace("127.0.0.1:8443", "localhost:8443");
    assert_error(&d, &y, "3:11", &["listen[1].addr", "not an ip:port"]);
    let y = yaml(&["{ cert: a.pem, key: a.key }"], "").replace("127.0.0.1:8443", "127.0.0.1:8080");
    assert_error(&d, &y, "3:11", &["listed twice"]);
}

#[test]
fn expired_certificate_and_uncovered_hosts_are_warnings() {
    let d = dir();
    d.ca.issue_with(d.d.path(), "old", &["a.test"], |p| {
        p.not_before = rcgen::date_time_ymd(2001, 1, 1);
        p.not_after = rcgen::date_time_ymd(2002, 1, 1);
    });
    let y = yaml(
        &[
            "{ cert: old.pem, key: old.key }",
            "{ cert: b.pem, key: b.key }",
        ],
        "hosts: [a.test, c.test, \"*.cdn.test\"]",
    );
    let (code, stderr) = check(d.d.path(), &y);
    assert_eq!(code, 0, "{stderr}");
    for want in [
        "FILE:6:19: warning: listen[1].tls.certificates[0].cert:",
        "expired on",
        "FILE:10:21: warning: sites[0].hosts[1]: no certificate of TLS listener `127.0.0.1:8443` covers `c.test`",
        "FILE:10:29: warning: sites[0].hosts[2]",
        "covers `*.cdn.test`",
    ] {
        assert!(stderr.contains(want), "want {want:?} in {stderr}");
    }
    // a.test is covered (by the expired certificate): no warning for it.
    assert!(!stderr.contains("hosts[0]"), "{stderr}");
}
