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
                    // Recorded before it is passed on: once the answer is
                    // back, the request is in `seen`.
                    while let Ok(n) = down.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        rec.lock().unwrap().extend_from_slice(&buf[..n]);
                        if up.write_all(&buf[..n]).is_err() {
                            break;
                        }
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

/// A TCP relay in front of `target` that passes at most `bytes_per_sec`
/// (both directions and all connections together): a slow bucket.
pub struct Throttle {
    pub port: u16,
    up: Arc<std::sync::atomic::AtomicU64>,
}

impl Throttle {
    pub fn start(target: u16, bytes_per_sec: u64) -> Throttle {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // When the link is free again: shared by every connection.
        let budget = Arc::new(Mutex::new(Instant::now()));
        let up_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = up_bytes.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(down) = conn else { continue };
                let Ok(up) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let _ = (down.set_nodelay(true), up.set_nodelay(true));
                for (from, to, count) in [
                    (
                        down.try_clone().unwrap(),
                        up.try_clone().unwrap(),
                        Some(counter.clone()),
                    ),
                    (up, down, None),
                ] {
                    let budget = budget.clone();
                    std::thread::spawn(move || pace(from, to, bytes_per_sec, &budget, count));
                }
            }
        });
        Throttle { port, up: up_bytes }
    }

    /// Bytes passed on to the target so far (requests and uploads).
    pub fn passed_up(&self) -> u64 {
        self.up.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn pace(
    mut from: TcpStream,
    mut to: TcpStream,
    rate: u64,
    budget: &Mutex<Instant>,
    count: Option<Arc<std::sync::atomic::AtomicU64>>,
) {
    let mut buf = [0u8; 16384];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Throttling, not synchronisation: hold the bytes until the shared
        // budget allows them.
        let due = {
            let mut free = budget.lock().unwrap();
            *free = (*free).max(Instant::now()) + Duration::from_secs_f64(n as f64 / rate as f64);
            *free
        };
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Some(c) = &count {
            c.fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// A TCP relay in front of `target` that holds back the answer to the
/// first request containing `needle` until [`Gate::release`]; everything
/// else passes: a bucket answer that arrives late, on cue.
pub struct Gate {
    pub port: u16,
    state: Arc<(Mutex<GateState>, std::sync::Condvar)>,
}

#[derive(Default)]
struct GateState {
    /// The needle was seen: its connection holds its next answer.
    matched: bool,
    holding: bool,
    released: bool,
}

impl Gate {
    pub fn start(target: u16, needle: &str) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new((Mutex::new(GateState::default()), std::sync::Condvar::new()));
        let (shared, needle) = (state.clone(), needle.as_bytes().to_vec());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut down) = conn else { continue };
                let Ok(mut up) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (mut down2, mut up2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
                // This connection carries the held request.
                let ours = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let (ours2, shared2, needle) = (ours.clone(), shared.clone(), needle.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = down.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        {
                            // Marked before it is passed on: the answer
                            // can't overtake the mark.
                            let mut st = shared2.0.lock().unwrap();
                            if !st.matched && buf[..n].windows(needle.len()).any(|w| w == needle) {
                                st.matched = true;
                                ours2.store(true, std::sync::atomic::Ordering::SeqCst);
                            }
                        }
                        if up.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = up.shutdown(Shutdown::Write);
                });
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = up2.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if ours.swap(false, std::sync::atomic::Ordering::SeqCst) {
                            let (lock, cv) = &*shared;
                            let mut st = lock.lock().unwrap();
                            st.holding = true;
                            cv.notify_all();
                            while !st.released {
                                st = cv.wait(st).unwrap();
                            }
                        }
                        if down2.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = down2.shutdown(Shutdown::Write);
                });
            }
        });
        Gate { port, state }
    }

    /// Waits (60 s at most) until the answer to the needle's request is
    /// held here.
    pub fn wait_holding(&self) {
        let (lock, cv) = &*self.state;
        let st = lock.lock().unwrap();
        let (st, _) = cv
            .wait_timeout_while(st, Duration::from_secs(60), |st| !st.holding)
            .unwrap();
        assert!(st.holding, "no answer to hold arrived");
    }

    /// Lets the held answer go on.
    pub fn release(&self) {
        let (lock, cv) = &*self.state;
        lock.lock().unwrap().released = true;
        cv.notify_all();
    }
}

/// Listening TCP sockets on `port` (IPv4), from /proc/net/tcp.
pub fn listening_sockets(port: u16) -> usize {
    let want = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
        })
        .count()
}
