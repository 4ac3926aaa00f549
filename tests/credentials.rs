//! `credentials: aws_chain`: the bucket's keys come from the AWS default
//! chain and are renewed before they expire. The source is the container
//! credentials endpoint (what ECS and EKS Pod Identity give a process:
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` and an authorization token), here a
//! small HTTP server handing out Garage keys with an expiry.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// What the credentials endpoint hands out, and what it was asked.
#[derive(Default)]
struct State {
    /// (access key, secret); `None`: answer 500.
    keys: Option<(String, String)>,
    /// How long the handed-out credentials are valid.
    valid_for: Duration,
    /// The `Authorization` header of each request.
    asked: Vec<String>,
}

struct CredsEndpoint {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl CredsEndpoint {
    fn start(keys: Option<(String, String)>, valid_for: Duration) -> CredsEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            keys,
            valid_for,
            asked: Vec::new(),
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut auth = String::new();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("authorization") {
                            auth = v.trim().to_string();
                        }
                    }
                }
                let answer = {
                    let mut s = shared.lock().unwrap();
                    s.asked.push(auth);
                    match &s.keys {
                        Some((id, secret)) => {
                            let expires = chrono::DateTime::<chrono::Utc>::from(
                                SystemTime::now() + s.valid_for,
                            )
                            .format("%Y-%m-%dT%H:%M:%SZ");
                            let body = format!(
                                "{{\"AccessKeyId\":\"{id}\",\"SecretAccessKey\":\"{secret}\",\"Token\":\"session-token\",\"Expiration\":\"{expires}\"}}"
                            );
                            format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                        }
                        None => "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                    }
                };
                let _ = conn.write_all(answer.as_bytes());
            }
        });
        CredsEndpoint { port, state }
    }

    fn asked(&self) -> Vec<String> {
        self.state.lock().unwrap().asked.clone()
    }

    fn hand_out(&self, keys: Option<(String, String)>, valid_for: Duration) {
        let mut s = self.state.lock().unwrap();
        s.keys = keys;
        s.valid_for = valid_for;
    }

    /// Waits (60 s at most) until asked more than `n` times.
    fn wait_asked_more_than(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.asked().len() <= n {
            assert!(
                Instant::now() < deadline,
                "asked {} times",
                self.asked().len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A proxy whose bucket (`b`) takes its keys from the chain, with only
/// `endpoint` as a source (no keys in the environment, no profile, no
/// IMDS), and one mirror rule to `origin`.
fn chain_proxy(b: &TestBucket, endpoint: &CredsEndpoint, origin: &str) -> (Proxy, u16) {
    let admin = free_port();
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nadmin: {{ listen: \"127.0.0.1:{admin}\" }}\nsites:\n  - name: s\n    bucket: {{ endpoint: \"{}\", name: \"{}\", region: garage, credentials: aws_chain }}\n    rules:\n      - condition: {{ key_prefix: \"m/\" }}\n        mirror: {{ url: \"{origin}\" }}\n",
        b.garage.endpoint(),
        b.name
    );
    let uri = format!("http://127.0.0.1:{}/creds", endpoint.port);
    (Proxy::start_env(&yaml, &chain_env(&uri)), admin)
}

/// The environment of a process whose only chain source is the container
/// endpoint at `uri`.
fn chain_env(uri: &str) -> [(&'static str, &str); 10] {
    [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "pod-identity-token"),
        ("AWS_ACCESS_KEY_ID", ""),
        ("AWS_SECRET_ACCESS_KEY", ""),
        ("AWS_SESSION_TOKEN", ""),
        ("AWS_PROFILE", "default"),
        ("AWS_CONFIG_FILE", "/nonexistent/aws-config"),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        ),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", ""),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
}

fn get(p: &Proxy, path: &str) -> (u16, Vec<u8>) {
    let r = client().get(p.url(path)).send().unwrap();
    (r.status().as_u16(), r.bytes().unwrap().to_vec())
}

/// GET `path` answers 200 with `body` (the proxy's log on failure).
fn assert_serves(p: &Proxy, path: &str, body: &[u8]) {
    let (status, got) = get(p, path);
    assert!(
        status == 200 && got == body,
        "{path}: {status}, {} bytes: {}\n{}",
        got.len(),
        String::from_utf8_lossy(&got[..got.len().min(300)]),
        p.log()
    );
}

/// A key allowed to read and write `b` only.
fn bucket_key(b: &TestBucket, name: &str) -> (String, String) {
    let key = b.garage.new_key(name);
    b.garage.cli(&[
        "bucket", "allow", "--read", "--write", &b.name, "--key", &key.0,
    ]);
    key
}

/// Credentials valid for 5 min 4 s are renewed at once 4 s later (5 min
/// ahead of expiry). When the endpoint hands out a new key and the old one
/// loses its access, reads and write-backs go on with the new one.
#[test]
fn chain_credentials_sign_and_are_renewed_before_expiry() {
    let g = garage();
    let b = g.bucket("chain");
    let first = bucket_key(&b, "chain-first");
    let second = bucket_key(&b, "chain-second");
    // 4 s more than the renewal margin (5 min): renewed from 4 s on, at
    // every readiness round until the endpoint hands out longer ones.
    let endpoint = CredsEndpoint::start(Some(first.clone()), Duration::from_secs(304));
    let o = Origin::start();
    let (p, _admin) = chain_proxy(&b, &endpoint, &o.url());
    // Fetched before the listeners opened: the first request is signed.
    let body = pattern(5000, 1);
    b.put("hit.bin", &body, None);
    assert_serves(&p, "/hit.bin", &body);
    let asked = endpoint.asked();
    assert_eq!(asked[0], "pod-identity-token");
    assert!(
        p.log().contains(&format!("access key {}", first.0)),
        "{}",
        p.log()
    );

    // The next key; the first one loses the bucket.
    endpoint.hand_out(Some(second.clone()), Duration::from_secs(3600));
    let n = endpoint.asked().len();
    endpoint.wait_asked_more_than(n);
    p.wait_log(&format!("renewed, access key {}", second.0));
    g.cli(&[
        "bucket", "deny", "--read", "--write", &b.name, "--key", &first.0,
    ]);
    let body2 = pattern(7000, 2);
    b.put("after.bin", &body2, None);
    assert_serves(&p, "/after.bin", &body2);
    let mirrored = pattern(9000, 3);
    o.set(
        "/m/new.bin",
        Reply::ok(&mirrored, "application/octet-stream"),
    );
    assert_serves(&p, "/m/new.bin", &mirrored);
    p.expect_stored("m/new.bin");
    assert_eq!(b.stored_matches("m/new.bin", &mirrored), Ok(()));
    assert!(endpoint.asked().iter().all(|a| a == "pod-identity-token"));
}

/// A chain that does not answer at start: the proxy starts, says why,
/// is not ready and answers 502; once the source answers, it serves.
#[test]
fn a_chain_that_does_not_answer_yet() {
    let g = garage();
    let b = g.bucket("chainlate");
    let key = bucket_key(&b, "chain-late");
    let endpoint = CredsEndpoint::start(None, Duration::from_secs(3600));
    let o = Origin::start();
    let (p, admin) = chain_proxy(&b, &endpoint, &o.url());
    let body = pattern(3000, 4);
    b.put("late.bin", &body, None);
    p.wait_log("AWS credentials (aws_chain): none yet");
    assert_eq!(get(&p, "/late.bin").0, 502);
    let readyz = client()
        .get(format!("http://127.0.0.1:{admin}/readyz"))
        .send()
        .unwrap();
    assert_eq!(readyz.status(), 503);
    let why = readyz.text().unwrap();
    assert!(why.contains("no credentials yet"), "{why}");

    endpoint.hand_out(Some(key.clone()), Duration::from_secs(3600));
    p.wait_log(&format!("access key {}", key.0));
    assert_serves(&p, "/late.bin", &body);
}

/// A private origin bucket read with the chain's credentials
/// (`mirror.auth: { type: sigv4, credentials: aws_chain }`) while the
/// destination bucket keeps its keys from variables: a miss is fetched
/// signed with the renewed key and stored; the chain is asked although no
/// bucket uses it.
#[test]
fn a_private_origin_signed_with_chain_credentials() {
    let g = garage();
    let src = g.bucket("chainsrc");
    let dst = g.bucket("chaindst");
    let reader = g.new_key("chainsrc-reader");
    g.cli(&["bucket", "allow", "--read", &src.name, "--key", &reader.0]);
    let other = g.new_key("chainsrc-other");
    g.cli(&["bucket", "allow", "--read", &src.name, "--key", &other.0]);
    let endpoint = CredsEndpoint::start(Some(reader.clone()), Duration::from_secs(304));
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: s\n    bucket: {}\n    rules:\n      - condition: {{ key_prefix: \"\" }}\n        mirror: {{ url: \"{}/{}/\", auth: {{ type: sigv4, region: garage, credentials: aws_chain }} }}\n",
        dst.yaml(),
        g.endpoint(),
        src.name
    );
    let uri = format!("http://127.0.0.1:{}/creds", endpoint.port);
    let mut env = chain_env(&uri).to_vec();
    env.extend_from_slice(&dst.proxy_env());
    let p = Proxy::start_env(&yaml, &env);

    let body = pattern(40_000, 5);
    src.put("a.bin", &body, Some("application/x-a"));
    assert_serves(&p, "/a.bin", &body);
    p.expect_stored("a.bin");
    assert_eq!(dst.stored_matches("a.bin", &body), Ok(()));
    assert!(
        p.log().contains(&format!("access key {}", reader.0)),
        "{}",
        p.log()
    );

    // Renewed (304 s is inside the 5-minute margin) to the other key;
    // the first one loses the source.
    endpoint.hand_out(Some(other.clone()), Duration::from_secs(3600));
    p.wait_log(&format!("renewed, access key {}", other.0));
    g.cli(&["bucket", "deny", "--read", &src.name, "--key", &reader.0]);
    let body2 = pattern(50_000, 6);
    src.put("b.bin", &body2, None);
    assert_serves(&p, "/b.bin", &body2);
    p.expect_stored("b.bin");
    assert_eq!(dst.stored_matches("b.bin", &body2), Ok(()));
    // The chain's key never reached the destination bucket's requests:
    // it cannot write there, and the write-backs were stored.
    assert!(endpoint.asked().iter().all(|a| a == "pod-identity-token"));
}
