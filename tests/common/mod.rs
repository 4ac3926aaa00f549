//! Test harness: a real Garage (one per test binary, a fresh bucket per
//! test), the real `origin-pull` binary on free loopback ports, and small
//! clients. Everything waits for readiness by polling the port it needs.
#![allow(dead_code, unused_imports)]

pub mod edge;
pub mod fill;
pub mod garage;
pub mod http;
pub mod net;
pub mod origin;
pub mod s3fault;
pub mod tls;

pub use garage::{garage, TestBucket};
pub use net::*;
pub use origin::{Body, Fault, Origin, Plan, Reply};

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running `origin-pull` process, killed on drop.
pub struct Proxy {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Proxy {
    /// Starts the binary with `yaml`, where `{port}` is replaced by the
    /// listen port chosen here. Panics with the process output on failure.
    pub fn start(yaml: &str) -> Proxy {
        Proxy::start_env(yaml, &[])
    }

    /// [`Proxy::start`] with environment variables. A port from
    /// [`free_port`] is free only until someone binds it: when another
    /// test's server took it first (the proxy refuses to start beside it),
    /// the start is tried again on another port.
    pub fn start_env(yaml: &str, env: &[(&str, &str)]) -> Proxy {
        Proxy::start_with_hosts(yaml, env, None)
    }

    /// [`Proxy::start_env`] with `hosts` as the proxy's `/etc/hosts` (a
    /// private mount namespace: `unshare -m`, which needs root), so names
    /// can resolve to several loopback addresses.
    pub fn start_with_hosts(yaml: &str, env: &[(&str, &str)], hosts: Option<&str>) -> Proxy {
        for _ in 0..3 {
            match Proxy::try_start(yaml, env, hosts) {
                Ok(p) => return p,
                Err(p) if p.lost_its_port() => continue,
                Err(p) => panic!("origin-pull did not start:\n{}", p.log()),
            }
        }
        panic!("origin-pull did not start: its listen port was taken three times");
    }

    fn try_start(yaml: &str, env: &[(&str, &str)], hosts: Option<&str>) -> Result<Proxy, Proxy> {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let path = dir.path().join("origin-pull.yaml");
        let mut f = std::fs::File::create(&path).expect("config file");
        f.write_all(yaml.replace("{port}", &port.to_string()).as_bytes())
            .unwrap();
        let log = std::fs::File::create(dir.path().join("proxy.log")).unwrap();
        let mut cmd = match hosts {
            None => Command::new(env!("CARGO_BIN_EXE_origin-pull")),
            Some(hosts) => {
                let file = dir.path().join("hosts");
                std::fs::write(&file, hosts).expect("hosts file");
                // `exec`: the proxy keeps the pid the harness watches.
                let mut c = Command::new("unshare");
                c.args(["-m", "sh", "-c"])
                    .arg("mount --bind \"$1\" /etc/hosts && shift && exec \"$@\"")
                    .arg("sh")
                    .arg(&file)
                    .arg(env!("CARGO_BIN_EXE_origin-pull"));
                c
            }
        };
        cmd.arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        cmd.env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn origin-pull");
        // Its own socket: a connect alone may reach another test's server
        // that took the port, and be refused once that one closes.
        let pid = child.id();
        let ready = wait_for_port(port, || child.try_wait().ok().flatten().is_none())
            && net::wait_for_own_listener(pid, port, || child.try_wait().ok().flatten().is_none());
        let proxy = Proxy { child, port, dir };
        if ready {
            Ok(proxy)
        } else {
            Err(proxy)
        }
    }

    /// Whether the start failed because its listen port was taken.
    fn lost_its_port(&self) -> bool {
        let log = self.log();
        log.contains(&format!("127.0.0.1:{}", self.port))
            && log.contains("another process listens there")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The config file the proxy was started with (tests rewrite it
    /// before a reload).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("origin-pull.yaml")
    }

    /// Sends `signal` (e.g. "HUP", "TERM") to the proxy.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{signal} failed");
    }

    /// Whether the process has ended.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Path of the binary under test, for tests that run it themselves.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_origin-pull"))
}

/// `origin-pull -t -c path` with `env` added: whether it passed, and its
/// stderr with the path shown as `FILE`.
pub fn check_config(path: &std::path::Path, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(binary());
    cmd.args(["-t", "-c"]).arg(path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run origin-pull -t");
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "FILE");
    (out.status.success(), stderr)
}

/// An HTTP client that follows no redirects and decodes nothing.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .expect("client")
}

/// Deterministic pseudo-random bytes, so large objects need no fixtures.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9 ^ seed as u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

impl Proxy {
    /// Waits (polling the log, 60 s at most) for a line containing `needle`.
    pub fn wait_log(&self, needle: &str) -> String {
        self.wait_line(|l| l.contains(needle))
    }

    /// Waits (polling the log, 60 s at most) for a line matching `want`.
    fn wait_line(&self, want: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| want(l)) {
                return line.to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no matching log line:\n{log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Waits for the write-back outcome of `key` and returns the line.
    /// Once it is logged, the object's fill has left the registry: the
    /// next GET reads the bucket. Only outcome lines count (not "waits
    /// for an upload slot" or an abort retry).
    pub fn write_back_outcome(&self, key: &str) -> String {
        let needles = ["stored", "skipped", "failed", "abandoned"]
            .map(|word| format!("write-back {word} key={key:?}"));
        self.wait_line(|l| needles.iter().any(|n| l.contains(n.as_str())))
    }

    /// Waits for `key`'s write-back outcome and asserts it was stored
    /// (the proxy's log on failure).
    pub fn expect_stored(&self, key: &str) {
        let outcome = self.write_back_outcome(key);
        assert!(
            outcome.contains("write-back stored"),
            "{outcome}\n{}",
            self.log()
        );
    }
}

/// A proxy for `bucket` with one mirror rule to `origin` (extra rule
/// fields in `mirror_extra`, e.g. `pass_query_string: true`).
pub fn mirror_proxy(bucket: &TestBucket, origin_url: &str, mirror_extra: &str) -> Proxy {
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: s\n    bucket: {}\n    rules:\n      - condition: {{ key_prefix: \"\" }}\n        mirror: {{ url: \"{origin_url}\", timeout_seconds: 3 {mirror_extra} }}\n",
        bucket.yaml()
    );
    Proxy::start_env(&yaml, &bucket.proxy_env())
}

/// A bucket on a closed port (any contact would be a 502), and its env.
pub fn dead_bucket() -> (String, [(&'static str, &'static str); 2]) {
    let yaml = format!(
        "{{ endpoint: \"http://127.0.0.1:{}\", name: b, access_key_id_env: OP_KEY, secret_access_key_env: OP_SECRET }}",
        free_port()
    );
    (yaml, [("OP_KEY", "k"), ("OP_SECRET", "s")])
}

/// Polls `cond` every 10 ms until it holds; panics naming `what` after
/// `limit`. The only way tests wait: for a condition, never for a time.
pub fn wait_until(what: &str, limit: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
