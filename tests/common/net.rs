//! Loopback helpers: free ports, readiness, raw requests, a recording relay.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls until `port` accepts (true) or `alive` says the server died or
/// 60 s pass (false).
pub fn wait_for_port(port: u16, mut alive: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if !alive() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Sends `request` verbatim (for paths a URL library would normalise) and
/// returns the status and the whole response text.
pub fn raw_request(port: u16, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// `GET <path>` with `Connection: close` and the given Host.
pub fn raw_get(port: u16, host: &str, path: &str) -> (u16, String) {
    raw_request(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
}

/// A TCP relay in front of `target` that records every byte sent to it,
/// to assert what a peer really received.
pub struct Recorder {
    pub port: u16,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    pub fn start(target: u16) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rec = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut down) = conn else { continue };
                let Ok(mut up) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (mut down2, mut up2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
                let rec = rec.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = down.read(&mut buf) {
                        if n == 0 || up.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        rec.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = up.shutdown(Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up2, &mut down2);
                    let _ = down2.shutdown(Shutdown::Write);
                });
            }
        });
        Recorder { port, seen }
    }

    /// Everything sent to the target so far, as text.
    pub fn seen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).to_string()
    }
}
