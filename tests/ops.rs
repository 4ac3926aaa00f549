//! Operations (admin listener, metrics, access log) against the real
//! binary, a real Garage bucket and a real origin.

mod common;
use common::*;
use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A proxy for `bucket_yaml` with an admin listener, a mirror rule on
/// `m/` and a redirect rule on `old/`; `extra` is added at the top level.
fn ops_proxy(bucket_yaml: &str, env: &[(&str, &str)], origin: &str, extra: &str) -> (Proxy, u16) {
    let admin = free_port();
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nadmin: {{ listen: \"127.0.0.1:{admin}\" }}\n{extra}\nsites:\n  - name: ops\n    bucket: {bucket_yaml}\n    rules:\n      - condition: {{ key_prefix: \"m/\" }}\n        mirror: {{ url: \"{origin}\", timeout_seconds: 5 }}\n      - condition: {{ key_prefix: \"old/\" }}\n        redirect: {{ host: \"new.example.com\" }}\n"
    );
    let proxy = Proxy::start_env(&yaml, env);
    wait_until("admin listener", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", admin)).is_ok()
    });
    (proxy, admin)
}

fn admin_get(admin: u16, path: &str) -> (u16, String) {
    let resp = client()
        .get(format!("http://127.0.0.1:{admin}{path}"))
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

/// `/metrics` parsed by a real Prometheus text parser: series name plus
/// sorted labels → value.
fn scrape(admin: u16) -> HashMap<String, f64> {
    let (status, text) = admin_get(admin, "/metrics");
    assert_eq!(status, 200);
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let mut out = HashMap::new();
    for s in parsed.samples {
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        out.insert(format!("{}{{{}}}", s.metric, labels.join(",")), v);
    }
    out
}

fn get(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

fn requests(outcome: &str, class: &str) -> String {
    format!("origin_pull_requests_total{{outcome={outcome},site=ops,status_class={class}}}")
}

#[test]
fn metrics_move_with_each_outcome() {
    let bucket = garage().bucket("ops-metrics");
    bucket.put("hit.txt", b"in the bucket", Some("text/plain"));
    let origin = Origin::start();
    let body = pattern(300_000, 7);
    origin.set("/m/a.bin", Reply::ok(&body, "application/octet-stream"));
    let (proxy, admin) = ops_proxy(&bucket.yaml(), &bucket.proxy_env(), &origin.url(), "");
    let before = scrape(admin);
    let c = client();
    assert_eq!(c.get(proxy.url("/hit.txt")).send().unwrap().status(), 200);
    let got = c
        .get(proxy.url("/m/a.bin"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert!(got[..] == body[..], "mirrored bytes differ");
    assert_eq!(c.get(proxy.url("/m/none")).send().unwrap().status(), 404);
    assert_eq!(c.get(proxy.url("/old/x")).send().unwrap().status(), 302);
    assert_eq!(c.put(proxy.url("/hit.txt")).send().unwrap().status(), 405);
    // Refused before a site is chosen (HTTP/1.1 without Host): `site="-"`.
    let (status, _) = raw_request(proxy.port, "GET /hit.txt HTTP/1.1\r\n\r\n");
    assert_eq!(status, 400);
    wait_until("write-back counted", Duration::from_secs(30), || {
        get(
            &scrape(admin),
            "origin_pull_writebacks_total{result=stored,site=ops}",
        ) == 1.0
    });
    let after = scrape(admin);
    let delta = |s: &str| get(&after, s) - get(&before, s);
    assert_eq!(delta(&requests("hit", "2xx")), 1.0);
    assert_eq!(delta(&requests("mirror", "2xx")), 1.0);
    assert_eq!(delta(&requests("origin_miss", "4xx")), 1.0);
    assert_eq!(delta(&requests("redirect", "3xx")), 1.0, "{after:#?}");
    assert_eq!(delta(&requests("rejected", "4xx")), 1.0, "{after:#?}");
    assert_eq!(
        delta("origin_pull_origin_bytes_total{rule=0,site=ops}"),
        body.len() as f64
    );
    assert_eq!(
        delta("origin_pull_origin_requests_total{result=ok,rule=0,site=ops}"),
        1.0
    );
    assert_eq!(
        delta("origin_pull_origin_requests_total{result=not_found,rule=0,site=ops}"),
        1.0
    );
    assert_eq!(
        delta("origin_pull_writeback_bytes_total{site=ops}"),
        body.len() as f64
    );
    assert_eq!(get(&after, "origin_pull_requests_in_flight{}"), 0.0);
    assert_eq!(get(&after, "origin_pull_build_info{version=0.1.0}"), 1.0);
    assert_eq!(
        delta("origin_pull_requests_total{outcome=rejected,site=-,status_class=4xx}"),
        1.0,
        "{after:#?}"
    );
    // `site="-"` has no bucket: no `bucket_up 0` to alert on, no
    // write-back series that can never move.
    let bucketish: Vec<_> = after
        .keys()
        .filter(|k| {
            k.contains("site=-")
                && (k.starts_with("origin_pull_bucket") || k.starts_with("origin_pull_writeback"))
        })
        .collect();
    assert!(bucketish.is_empty(), "{bucketish:?}");
    assert!(bucket.stored_matches("m/a.bin", &body).is_ok());
}

/// A 502 the fill peer writes for the proxy counts as the bucket's error,
/// as it did when `fail_to_proxy` wrote it.
#[test]
fn an_unreachable_bucket_counts_as_bucket_error() {
    let (dead, env) = dead_bucket();
    let origin = Origin::start();
    let (proxy, admin) = ops_proxy(&dead, &env, &origin.url(), "");
    let before = scrape(admin);
    for path in ["/m/a", "/other"] {
        let r = client().get(proxy.url(path)).send().unwrap();
        assert_eq!(r.status(), 502, "{path}");
    }
    // Counted in the logging phase, which may end after the client read
    // the answer.
    let series = requests("bucket_error", "5xx");
    wait_until("both 502s counted", Duration::from_secs(10), || {
        get(&scrape(admin), &series) - get(&before, &series) == 2.0
    });
    let after = scrape(admin);
    let delta = |s: &str| get(&after, s) - get(&before, s);
    assert_eq!(delta(&requests("error", "5xx")), 0.0, "{after:#?}");
    assert_eq!(get(&after, "origin_pull_requests_in_flight{}"), 0.0);
    assert_eq!(origin.seen().len(), 0);
}

/// A relay in front of a port that can be switched off (connections are
/// closed at once) and on again: a bucket that goes away and comes back.
struct Switch {
    port: u16,
    up: Arc<AtomicBool>,
    open: Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Switch {
    fn start(target: u16) -> Switch {
        let up = Arc::new(AtomicBool::new(true));
        let open = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (on, conns) = (up.clone(), open.clone());
        let port = relay(target, move |conn: &TcpStream| {
            if !on.load(Ordering::SeqCst) {
                return None; // dropped: closed without an answer
            }
            conns.lock().unwrap().push(conn.try_clone().unwrap());
            Some((pass(), pass()))
        });
        Switch { port, up, open }
    }

    /// Refuses new connections and cuts the open ones.
    fn off(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[test]
fn health_and_readiness_follow_the_bucket() {
    let bucket = garage().bucket("ops-ready");
    let switch = Switch::start(bucket.garage.s3_port);
    let yaml = bucket.yaml_via(switch.port);
    let (_proxy, admin) = ops_proxy(&yaml, &bucket.proxy_env(), "http://127.0.0.1:9/", "");
    assert_eq!(admin_get(admin, "/healthz").0, 200);
    wait_until("ready", Duration::from_secs(30), || {
        admin_get(admin, "/readyz").0 == 200
    });
    switch.off();
    wait_until("not ready", Duration::from_secs(30), || {
        let (status, body) = admin_get(admin, "/readyz");
        status == 503 && body.contains("site ops")
    });
    assert_eq!(get(&scrape(admin), "origin_pull_bucket_up{site=ops}"), 0.0);
    assert_eq!(admin_get(admin, "/healthz").0, 200, "alive while not ready");
    switch.up.store(true, Ordering::SeqCst);
    wait_until("ready again", Duration::from_secs(30), || {
        admin_get(admin, "/readyz").0 == 200
    });
    assert_eq!(get(&scrape(admin), "origin_pull_bucket_up{site=ops}"), 1.0);
    assert_eq!(admin_get(admin, "/nothing").0, 404);
    assert_eq!(admin_get(admin, "/").0, 404);
}

#[test]
fn access_log_has_one_json_line_per_request_and_no_secrets() {
    let bucket = garage().bucket("ops-log");
    bucket.put("hit.txt", b"in the bucket", Some("text/plain"));
    let origin = Origin::start();
    origin.set("/m/a.txt", Reply::ok(b"from the origin", "text/plain"));
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("access.log");
    let extra = format!(
        "access_log: {{ path: \"{}\", format: json }}",
        log_path.display()
    );
    let (proxy, _admin) = ops_proxy(&bucket.yaml(), &bucket.proxy_env(), &origin.url(), &extra);
    let c = client();
    let secret = [("authorization", "Bearer SECRET-AUTH-VALUE")];
    for (path, want) in [
        ("/hit.txt?token=SECRET-QUERY-VALUE", 200),
        ("/m/a.txt?sig=SECRET-QUERY-VALUE", 200),
        ("/old/x?SECRET-QUERY-VALUE=1", 302),
        ("/%2Fb", 400),
    ] {
        let mut req = c.get(proxy.url(path));
        for (k, v) in secret {
            req = req.header(k, v);
        }
        assert_eq!(req.send().unwrap().status().as_u16(), want, "{path}");
    }
    // A user agent and a referer with non-ASCII bytes are logged, not
    // dropped.
    let ua = reqwest::header::HeaderValue::from_bytes("ua é".as_bytes()).unwrap();
    let referer =
        reqwest::header::HeaderValue::from_bytes("http://r/é?q=SECRET".as_bytes()).unwrap();
    let r = c
        .get(proxy.url("/hit.txt"))
        .header("user-agent", ua)
        .header("referer", referer)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let read = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_until("access log lines", Duration::from_secs(30), || {
        read().lines().filter(|l| l.contains("\"status\"")).count() == 5
            && read().contains("\"event\":\"write_back\"")
    });
    let text = read();
    assert!(
        !text.contains("SECRET"),
        "a secret reached the log:\n{text}"
    );
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let requests: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l.get("status").is_some()).collect();
    let outcomes: Vec<&str> = requests
        .iter()
        .map(|l| l["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["hit", "mirror", "redirect", "rejected", "hit"]);
    assert_eq!(requests[4]["user_agent"], "ua é");
    assert_eq!(requests[4]["referer"], "http://r/é");
    for l in &requests {
        for field in [
            "time",
            "request_id",
            "client",
            "method",
            "host",
            "key",
            "status",
            "bytes_sent",
            "duration_ms",
            "ttfb_ms",
            "site",
            "rule",
            "outcome",
            "bucket_status",
            "origin_host",
            "origin_status",
            "origin_bytes",
            "write_back",
        ] {
            assert!(l.get(field).is_some(), "{field} missing in {l}");
        }
        assert_eq!(l["client"], "127.0.0.1");
    }
    assert_eq!(requests[0]["key"], "hit.txt");
    assert_eq!(requests[0]["bucket_status"], 200);
    assert_eq!(requests[0]["bytes_sent"], 13);
    assert_eq!(requests[1]["bucket_status"], 404);
    assert_eq!(requests[1]["rule"], 0);
    // A redirect rule's answer names its rule too.
    assert_eq!(requests[2]["rule"], 1);
    assert_eq!(requests[3]["status"], 400);
    // The write-back's result comes back under the mirror's request id.
    let wb = lines.iter().find(|l| l["event"] == "write_back").unwrap();
    assert_eq!(wb["request_id"], requests[1]["request_id"]);
    assert_eq!(wb["write_back"], "stored");
    assert_eq!(wb["bytes"], 15);
}

/// A bucket that refuses the proxy is not ready, and the log says why:
/// before, a name that does not exist (`404 NoSuchBucket`) was "a missing
/// key, mirror rules can act" (every request went to the origin, every
/// write-back failed, all while ready), and a wrong secret was reported
/// as missing `s3:ListBucket`.
#[test]
fn a_bucket_that_refuses_the_proxy_is_not_ready() {
    let bucket = garage().bucket("ops-refused");
    let wrong_secret = [
        ("OP_KEY", bucket.garage.key_id.as_str()),
        ("OP_SECRET", "not-the-secret"),
    ];
    let no_bucket = bucket.yaml().replace(&bucket.name, "no-such-bucket-here");
    for (yaml, env, says) in [
        (
            bucket.yaml(),
            &wrong_secret,
            "refuses the proxy's requests: 403",
        ),
        (
            no_bucket,
            &bucket.proxy_env(),
            "does not exist (404 NoSuchBucket",
        ),
    ] {
        let (proxy, admin) = ops_proxy(&yaml, env, "http://127.0.0.1:9/", "");
        let line = proxy.wait_log(says);
        assert!(line.contains("ERROR"), "{line}");
        assert!(!proxy.log().contains("s3:ListBucket"), "{}", proxy.log());
        wait_until(
            "not ready, with the reason",
            Duration::from_secs(30),
            || {
                let (status, body) = admin_get(admin, "/readyz");
                status == 503 && body.contains("site ops: bucket answered")
            },
        );
        assert_eq!(get(&scrape(admin), "origin_pull_bucket_up{site=ops}"), 0.0);
    }
}

/// An access log whose folder disappears (a rotation gone wrong): SIGUSR1
/// cannot reopen it, its lines are counted as dropped, and once the folder
/// is back the log writes again by itself.
#[test]
fn an_access_log_that_cannot_be_opened_counts_and_recovers() {
    let bucket = garage().bucket("ops-logdir");
    bucket.put("hit.txt", b"in the bucket", Some("text/plain"));
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log_path = logs.join("access.log");
    let extra = format!("access_log: {{ path: \"{}\" }}", log_path.display());
    let (proxy, admin) = ops_proxy(&bucket.yaml(), &bucket.proxy_env(), &origin.url(), &extra);
    let hit = || {
        let r = client().get(proxy.url("/hit.txt")).send().unwrap();
        assert_eq!(r.status(), 200);
    };
    let dropped = || get(&scrape(admin), "origin_pull_access_log_dropped_total{}");
    let read = || std::fs::read_to_string(&log_path).unwrap_or_default();
    hit();
    wait_until("the first line", Duration::from_secs(30), || {
        read().lines().count() == 1
    });

    std::fs::remove_dir_all(&logs).unwrap();
    proxy.signal("USR1");
    proxy.wait_log("lines are dropped");
    hit();
    wait_until("a dropped line counted", Duration::from_secs(30), || {
        dropped() >= 1.0
    });

    std::fs::create_dir(&logs).unwrap();
    proxy.wait_log("access log: writing again");
    hit();
    wait_until("lines again", Duration::from_secs(30), || {
        read().contains("\"key\":\"hit.txt\"")
    });
}

/// A fill that fails counts under its cause: an origin redirect without a
/// usable `Location` as `bad_status` (it counted nothing), a body whose
/// MD5 is not the origin's `Content-MD5` as `md5_mismatch`, for the
/// origin and for the write-back (which counted `aborted`).
#[test]
fn failed_fills_count_under_their_cause() {
    use base64::Engine;
    let bucket = garage().bucket("ops-causes");
    let origin = Origin::start();
    origin.set("/m/noloc", Reply::status(302));
    let body = pattern(50_000, 8);
    let wrong = base64::engine::general_purpose::STANDARD.encode(http::md5(b"other bytes"));
    origin.set(
        "/m/bad.bin",
        Reply::ok(&body, "application/octet-stream").header("Content-MD5", &wrong),
    );
    let admin = free_port();
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nadmin: {{ listen: \"127.0.0.1:{admin}\" }}\nsites:\n  - name: ops\n    bucket: {}\n    rules:\n      - condition: {{ key_prefix: \"m/\" }}\n        mirror: {{ url: \"{}\", check_md5: true }}\n",
        bucket.yaml(),
        origin.url()
    );
    let proxy = Proxy::start_env(&yaml, &bucket.proxy_env());
    wait_until("admin listener", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", admin)).is_ok()
    });
    let before = scrape(admin);
    assert_eq!(
        client().get(proxy.url("/m/noloc")).send().unwrap().status(),
        424
    );
    // The MD5 is known only at the end: a truncated 200, or a 424.
    let _ = client()
        .get(proxy.url("/m/bad.bin"))
        .send()
        .map(|r| r.bytes());
    let series =
        |r: &str| format!("origin_pull_origin_requests_total{{result={r},rule=0,site=ops}}");
    let wb = "origin_pull_writebacks_total{result=md5_mismatch,site=ops}";
    wait_until("write-back counted", Duration::from_secs(30), || {
        get(&scrape(admin), wb) - get(&before, wb) == 1.0
    });
    let after = scrape(admin);
    let delta = |s: &str| get(&after, s) - get(&before, s);
    assert_eq!(delta(&series("bad_status")), 1.0, "{after:#?}");
    assert_eq!(delta(&series("md5_mismatch")), 1.0, "{after:#?}");
    assert_eq!(
        delta("origin_pull_writebacks_total{result=aborted,site=ops}"),
        0.0
    );
    assert!(!bucket.exists("m/bad.bin"));
}
