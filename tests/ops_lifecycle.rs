//! Reload in place and prompt, safe shutdown, with transfers in flight.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn yaml(bucket: &TestBucket, origin: &str, admin: u16, extra_rule: &str) -> String {
    format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nadmin: {{ listen: \"127.0.0.1:{admin}\" }}\nsites:\n  - name: life\n    bucket: {}\n    rules:\n{extra_rule}      - condition: {{ key_prefix: \"m/\" }}\n        mirror: {{ url: \"{origin}\", timeout_seconds: 30 }}\n",
        bucket.yaml()
    )
}

const REDIRECT_RULE: &str =
    "      - condition: { key_prefix: \"old/\" }\n        redirect: { host: \"new.example.com\" }\n";

fn status(proxy: &Proxy, path: &str) -> u16 {
    client()
        .get(proxy.url(path))
        .send()
        .map_or(0, |r| r.status().as_u16())
}

fn admin_text(admin: u16, path: &str) -> (u16, String) {
    match client()
        .get(format!("http://127.0.0.1:{admin}{path}"))
        .send()
    {
        Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// Rewrites the proxy's config file (its `{port}` filled in as at start).
fn rewrite(proxy: &Proxy, yaml: &str) {
    std::fs::write(
        proxy.config_path(),
        yaml.replace("{port}", &proxy.port.to_string()),
    )
    .unwrap();
}

#[test]
fn reload_swaps_rules_while_a_large_mirror_completes() {
    const LEN: usize = 256 << 20;
    let bucket = garage().bucket("life-reload");
    let origin = Origin::start();
    let body = std::sync::Arc::new(pattern(LEN, 3));
    origin.set("/m/big.bin", Reply::shared(&body).gate_at(LEN as u64 / 4));
    let admin = free_port();
    let first = yaml(&bucket, &origin.url(), admin, "");
    let proxy = Proxy::start_env(&first, &bucket.proxy_env());
    wait_until("admin", Duration::from_secs(30), || {
        admin_text(admin, "/healthz").0 == 200
    });
    assert_eq!(status(&proxy, "/old/x"), 404, "no redirect rule yet");

    let (port, expected) = (proxy.port, body.clone());
    let download =
        std::thread::spawn(move || http::download_compare(port, "/m/big.bin", &expected, None));
    origin.wait("origin at its gate", |o| {
        o.sent("/m/big.bin") >= LEN as u64 / 4
    });

    // A valid reload: the new rule answers at once.
    rewrite(&proxy, &yaml(&bucket, &origin.url(), admin, REDIRECT_RULE));
    proxy.signal("HUP");
    wait_until("new rule", Duration::from_secs(30), || {
        status(&proxy, "/old/x") == 302
    });

    // A broken file: refused, counted, logged with line:column; the rules stay.
    std::fs::write(proxy.config_path(), "listen: [\"127.0.0.1:1\"]\nsites: [ {").unwrap();
    proxy.signal("HUP");
    let line = proxy.wait_log("reload refused");
    assert!(line.contains("origin-pull.yaml:"), "{line}");
    assert!(
        line.split("origin-pull.yaml:").nth(1).is_some_and(|r| r
            .split(':')
            .take(2)
            .all(|n| n.trim().parse::<u32>().is_ok())),
        "no line:column in {line}"
    );
    wait_until("failure counted", Duration::from_secs(10), || {
        admin_text(admin, "/metrics")
            .1
            .contains("origin_pull_config_reloads_total{result=\"failed\"} 1")
    });
    assert_eq!(status(&proxy, "/old/x"), 302);

    // A changed `listen` is refused as a whole.
    let moved = yaml(&bucket, &origin.url(), admin, "")
        .replace("127.0.0.1:{port}", &format!("127.0.0.1:{}", free_port()));
    std::fs::write(proxy.config_path(), moved).unwrap();
    let resp = client()
        .post(format!("http://127.0.0.1:{admin}/-/reload"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 409);
    assert!(resp.text().unwrap().contains("needs a restart"));
    assert_eq!(
        status(&proxy, "/old/x"),
        302,
        "the refused reload changed nothing"
    );

    origin.release();
    let got = download.join().unwrap();
    assert_eq!(got.head.status, 200);
    assert!(got.end.is_ok(), "{:?}", got.end);
    assert_eq!((got.len, got.differs_at), (LEN as u64, None));
    wait_until("stored", Duration::from_secs(120), || {
        bucket.exists("m/big.bin")
    });
    bucket.stored_matches("m/big.bin", &body).unwrap();
}

/// A reload drops the series of a removed site and of removed rules:
/// a removed site's `bucket_up 0` must not stay (and alert) until a
/// restart.
#[test]
fn a_reload_drops_the_series_of_what_it_removed() {
    let (dead, env) = dead_bucket();
    let admin = free_port();
    let site = |name: &str, rules: &str| {
        format!("  - name: {name}\n    hosts: [{name}]\n    bucket: {dead}\n    rules:\n{rules}")
    };
    let mirror = "      - mirror: { url: \"http://127.0.0.1:9/\" }\n";
    let redirect =
        "      - condition: { key_prefix: \"old/\" }\n        redirect: { host: \"new.example.com\" }\n";
    let config = |sites: &[String]| {
        format!(
            "listen: [\"127.0.0.1:{{port}}\"]\nadmin: {{ listen: \"127.0.0.1:{admin}\" }}\nsites:\n{}",
            sites.concat()
        )
    };
    let two_rules = format!("{redirect}{mirror}");
    let first = config(&[site("kept", &two_rules), site("gone", mirror)]);
    let proxy = Proxy::start_env(&first, &env);
    let metrics = || admin_text(admin, "/metrics").1;
    wait_until("both sites probed", Duration::from_secs(30), || {
        let m = metrics();
        m.contains("bucket_up{site=\"gone\"} 0") && m.contains("bucket_up{site=\"kept\"} 0")
    });
    let before = metrics();
    assert!(before.contains("rule=\"1\",site=\"kept\""), "{before}");

    rewrite(&proxy, &config(&[site("kept", mirror)]));
    proxy.signal("HUP");
    wait_until("reload counted", Duration::from_secs(30), || {
        metrics().contains("origin_pull_config_reloads_total{result=\"ok\"} 1")
    });
    let after = metrics();
    assert!(!after.contains("site=\"gone\""), "{after}");
    assert!(!after.contains("rule=\"1\""), "{after}");
    assert!(after.contains("bucket_up{site=\"kept\"}"), "{after}");
    assert!(after.contains("rule=\"0\",site=\"kept\""), "{after}");
}

/// The fill peer's socket folders of process `pid` (`origin-pull-<pid>-*`).
fn socket_folders(pid: u32) -> Vec<std::path::PathBuf> {
    let prefix = format!("origin-pull-{pid}-");
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// SIGTERM, and SIGQUIT as nginx means it (graceful stop: Pingora's
/// meaning, handing the sockets to a new process, is not offered): an
/// idle proxy exits at once and leaves no socket folder behind. SIGQUIT
/// sent Pingora down its upgrade path: listeners closed while `/readyz`
/// said ready, the whole grace period waited, uploads left open.
#[test]
fn an_idle_proxy_exits_promptly_on_sigterm() {
    let bucket = garage().bucket("life-idle");
    for sig in ["TERM", "QUIT", "INT"] {
        let admin = free_port();
        let mut proxy = Proxy::start_env(
            &yaml(&bucket, "http://127.0.0.1:9/", admin, ""),
            &bucket.proxy_env(),
        );
        assert_eq!(status(&proxy, "/x"), 404);
        let pid = proxy.pid();
        assert_eq!(socket_folders(pid).len(), 1, "{sig}");
        let sent = Instant::now();
        proxy.signal(sig);
        wait_until("exit", Duration::from_secs(10), || proxy.exited());
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "{sig}: took {:?}",
            sent.elapsed()
        );
        assert_eq!(
            socket_folders(pid),
            Vec::<std::path::PathBuf>::new(),
            "{sig}"
        );
    }
}

#[test]
fn sigterm_waits_for_a_mirror_in_flight_and_its_write_back() {
    const LEN: usize = 64 << 20;
    let bucket = garage().bucket("life-drain");
    let origin = Origin::start();
    let body = std::sync::Arc::new(pattern(LEN, 9));
    origin.set("/m/slow.bin", Reply::shared(&body).gate_at(LEN as u64 / 2));
    let admin = free_port();
    let mut proxy = Proxy::start_env(
        &yaml(&bucket, &origin.url(), admin, ""),
        &bucket.proxy_env(),
    );
    wait_until("ready", Duration::from_secs(30), || {
        admin_text(admin, "/readyz").0 == 200
    });
    let (port, expected) = (proxy.port, body.clone());
    let download =
        std::thread::spawn(move || http::download_compare(port, "/m/slow.bin", &expected, None));
    origin.wait("origin at its gate", |o| {
        o.sent("/m/slow.bin") >= LEN as u64 / 2
    });
    proxy.signal("TERM");
    // Draining: still alive (the admin listener says so), not ready.
    wait_until("draining", Duration::from_secs(10), || {
        let (s, text) = admin_text(admin, "/readyz");
        s == 503 && text.contains("draining")
    });
    assert!(!proxy.exited(), "exited with a mirror in flight");
    origin.release();
    let got = download.join().unwrap();
    assert!(got.end.is_ok(), "{:?}", got.end);
    assert_eq!((got.len, got.differs_at), (LEN as u64, None));
    wait_until(
        "exit after the write-back",
        Duration::from_secs(120),
        || proxy.exited(),
    );
    bucket.stored_matches("m/slow.bin", &body).unwrap();
}

/// Past `shutdown_timeout_seconds` the process exits with a write-back
/// unfinished: its multipart upload is aborted first (logged with its
/// upload id), not left in the bucket with its parts billed. The same
/// after SIGQUIT, and at once on a SIGINT during the drain (which
/// Pingora no longer listened for: only SIGKILL ended a long drain).
#[test]
fn a_shutdown_timeout_aborts_unfinished_uploads() {
    for (signals, timeout) in [
        (&["TERM"][..], 1),
        (&["QUIT"][..], 1),
        (&["TERM", "INT"][..], 60),
    ] {
        unfinished_upload_aborted(signals, timeout);
    }
}

fn unfinished_upload_aborted(signals: &[&str], timeout: u64) {
    const LEN: usize = 24 << 20;
    let bucket = garage().bucket(&format!("life-abort-{}", signals.join("-").to_lowercase()));
    let origin = Origin::start();
    let body = std::sync::Arc::new(pattern(LEN, 10));
    origin.set("/m/held.bin", Reply::shared(&body).gate_at(LEN as u64 / 2));
    let admin = free_port();
    let mut proxy = Proxy::start_env(
        &yaml(&bucket, &origin.url(), admin, "").replace(
            "sites:",
            &format!(
                "shutdown_timeout_seconds: {timeout}\naccess_log: {{ path: stdout, format: json }}\nsites:"
            ),
        ),
        &bucket.proxy_env(),
    );
    let port = proxy.port;
    let download = std::thread::spawn(move || {
        let mut c = http::Conn::open(port);
        c.send("/m/held.bin", &[]);
        let _ = c.head();
    });
    // The upload is open once its first part (8 MiB) is in the spool.
    wait_until("multipart upload created", Duration::from_secs(60), || {
        admin_text(admin, "/metrics").1.lines().any(|l| {
            l.starts_with(
                "origin_pull_bucket_request_duration_seconds_count{operation=\"create_multipart\"",
            ) && !l.ends_with(" 0")
        })
    });
    let sent = Instant::now();
    for sig in signals {
        proxy.signal(sig);
        if *sig != "INT" {
            wait_until("draining", Duration::from_secs(10), || {
                let (s, text) = admin_text(admin, "/readyz");
                s == 503 && text.contains("draining")
            });
        }
    }
    wait_until("exit", Duration::from_secs(30), || proxy.exited());
    assert!(
        sent.elapsed() < Duration::from_secs(timeout.min(10) + 5),
        "{signals:?}: took {:?}",
        sent.elapsed()
    );
    let line = proxy.wait_log("upload_id=");
    assert!(line.contains("aborted (not stored)"), "{signals:?}: {line}");
    let id = line
        .split("upload_id=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap();
    assert!(
        !bucket.upload_open("m/held.bin", id),
        "{signals:?}: upload {id} left open"
    );
    assert!(!bucket.exists("m/held.bin"));
    // Its end is in the access log too, as a write-back's end always is.
    let event = proxy.wait_log("\"event\":\"write_back\"");
    assert!(
        event.contains("\"key\":\"m/held.bin\"") && event.contains("\"write_back\":\"aborted\""),
        "{signals:?}: {event}"
    );
    origin.release();
    let _ = download.join();
}

/// A reload that adds a site keeps the instance ready: the new site's
/// bucket is probed when `/readyz` is asked, not only at the next probe
/// round (which left every instance of a fleet unready for up to 2 s).
#[test]
fn a_reload_that_adds_a_site_stays_ready() {
    let bucket = garage().bucket("life-ready");
    let admin = free_port();
    let site = |name: &str| {
        format!(
            "  - name: {name}\n    hosts: [{name}]\n    bucket: {}\n",
            bucket.yaml()
        )
    };
    let config = |sites: &[String]| {
        format!(
            "listen: [\"127.0.0.1:{{port}}\"]\nadmin: {{ listen: \"127.0.0.1:{admin}\" }}\nsites:\n{}",
            sites.concat()
        )
    };
    let proxy = Proxy::start_env(&config(&[site("one")]), &bucket.proxy_env());
    wait_until("ready", Duration::from_secs(30), || {
        admin_text(admin, "/readyz").0 == 200
    });
    rewrite(&proxy, &config(&[site("one"), site("two")]));
    let r = client()
        .post(format!("http://127.0.0.1:{admin}/-/reload"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, text) = admin_text(admin, "/readyz");
    assert_eq!((status, text.as_str()), (200, "ready\n"));
}

/// A reload says what it took but only a restart applies (`fill`, a
/// longer shutdown timeout), instead of a bare "reloaded"; and keeps
/// saying so while the file still asks for it.
#[test]
fn a_reload_names_what_waits_for_a_restart() {
    let bucket = garage().bucket("life-kept");
    let admin = free_port();
    let base = yaml(&bucket, "http://127.0.0.1:9/", admin, "");
    let proxy = Proxy::start_env(&base, &bucket.proxy_env());
    let reload = || {
        let r = client()
            .post(format!("http://127.0.0.1:{admin}/-/reload"))
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    wait_until("admin", Duration::from_secs(30), || {
        admin_text(admin, "/healthz").0 == 200
    });
    assert_eq!(reload(), (200, "reloaded\n".to_string()));
    let changed = base.replace(
        "sites:",
        "fill: { max_spool_bytes: 1000 }\nshutdown_timeout_seconds: 900\nsites:",
    );
    rewrite(&proxy, &changed);
    let kept = "reloaded; kept until a restart: `fill`, a longer `shutdown_timeout_seconds`\n";
    assert_eq!(reload(), (200, kept.to_string()));
    assert_eq!(
        reload(),
        (200, kept.to_string()),
        "the second reload forgot them"
    );
    // A shorter timeout applies at once.
    rewrite(
        &proxy,
        &base.replace("sites:", "shutdown_timeout_seconds: 5\nsites:"),
    );
    assert_eq!(reload(), (200, "reloaded\n".to_string()));
}
