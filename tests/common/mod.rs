//! Test harness: a real Garage (one per test binary, a fresh bucket per
//! test), the real `origin-pull` binary on free loopback ports, and small
//! clients. Everything waits for readiness by polling the port it needs.
#![allow(dead_code, unused_imports)]

pub mod garage;
pub mod net;

pub use garage::{garage, TestBucket};
pub use net::*;

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

    pub fn start_env(yaml: &str, env: &[(&str, &str)]) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let path = dir.path().join("origin-pull.yaml");
        let mut f = std::fs::File::create(&path).expect("config file");
        f.write_all(yaml.replace("{port}", &port.to_string()).as_bytes())
            .unwrap();
        let log = std::fs::File::create(dir.path().join("proxy.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_origin-pull"));
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
        let ready = wait_for_port(port, || child.try_wait().ok().flatten().is_none());
        let proxy = Proxy { child, port, dir };
        if !ready {
            panic!("origin-pull did not start:\n{}", proxy.log());
        }
        proxy
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
