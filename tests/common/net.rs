//! Loopback helpers: free ports, readiness, raw requests, a recording relay.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
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

/// Whether process `pid` holds a socket listening on 127.0.0.1:`port`
/// (from `/proc/net/tcp` and the process's fds). A port from
/// [`free_port`] is free only until someone binds it: another test's
/// server may take it before the proxy does, and a connect would then
/// reach that server (and be refused once it closes).
pub fn listens_on(pid: u32, port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A"))
                .then(|| f.get(9).map(|s| format!("socket:[{s}]")))
                .flatten()
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|l| inodes.iter().any(|i| l.to_string_lossy() == *i))
    })
}

/// Polls until `pid` listens on `port` itself ([`listens_on`], true), or
/// `alive` says it died or 60 s pass (false).
pub fn wait_for_own_listener(pid: u32, port: u16, mut alive: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if listens_on(pid, port) {
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

/// Called with each chunk a relay passes, before it is passed on (it may
/// block: that holds the connection's direction).
pub type Hook = Box<dyn FnMut(&[u8]) + Send>;

/// A TCP relay on a new port in front of `target`; `hooks` gives each
/// accepted connection its hook for bytes going to the target and the one
/// for bytes coming back, or `None` to close it unanswered. Returns the
/// port.
pub fn relay(
    target: u16,
    hooks: impl Fn(&TcpStream) -> Option<(Hook, Hook)> + Send + 'static,
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(down) = conn else { continue };
            let Some((to_target, back)) = hooks(&down) else {
                continue;
            };
            let Ok(up) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            let _ = (down.set_nodelay(true), up.set_nodelay(true));
            let (down2, up2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || pump(down, up, to_target));
            std::thread::spawn(move || pump(up2, down2, back));
        }
    });
    port
}

fn pump(mut from: TcpStream, mut to: TcpStream, mut hook: Hook) {
    let mut buf = [0u8; 16384];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        hook(&buf[..n]);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// The hook that passes bytes as they come.
pub fn pass() -> Hook {
    Box::new(|_| ())
}

/// A TCP relay in front of `target` that records every byte sent to it,
/// to assert what a peer really received.
pub struct Recorder {
    pub port: u16,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    pub fn start(target: u16) -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rec = seen.clone();
        // Recorded before it is passed on: once the answer is back, the
        // request is in `seen`.
        let port = relay(target, move |_| {
            let rec = rec.clone();
            let record: Hook = Box::new(move |b| rec.lock().unwrap().extend_from_slice(b));
            Some((record, pass()))
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
    up: Arc<AtomicU64>,
}

impl Throttle {
    pub fn start(target: u16, bytes_per_sec: u64) -> Throttle {
        // When the link is free again: shared by every connection.
        let budget = Arc::new(Mutex::new(Instant::now()));
        let up = Arc::new(AtomicU64::new(0));
        let counter = up.clone();
        let port = relay(target, move |_| {
            let (b1, b2, counter) = (budget.clone(), budget.clone(), counter.clone());
            let to_target: Hook = Box::new(move |chunk| {
                pace(chunk.len(), bytes_per_sec, &b1);
                counter.fetch_add(chunk.len() as u64, SeqCst);
            });
            let back: Hook = Box::new(move |chunk| pace(chunk.len(), bytes_per_sec, &b2));
            Some((to_target, back))
        });
        Throttle { port, up }
    }

    /// Bytes passed on to the target so far (requests and uploads).
    pub fn passed_up(&self) -> u64 {
        self.up.load(SeqCst)
    }
}

/// Throttling, not synchronisation: holds `n` bytes until the shared
/// budget allows them.
fn pace(n: usize, rate: u64, budget: &Mutex<Instant>) {
    let due = {
        let mut free = budget.lock().unwrap();
        *free = (*free).max(Instant::now()) + Duration::from_secs_f64(n as f64 / rate as f64);
        *free
    };
    if let Some(wait) = due.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
}

/// A TCP relay in front of `target` that holds back the answer to the
/// first request containing `needle` until [`Gate::release`]; everything
/// else passes: a bucket answer that arrives late, on cue.
pub struct Gate {
    pub port: u16,
    state: Arc<(Mutex<GateState>, Condvar)>,
}

#[derive(Default)]
struct GateState {
    /// The needle was seen (its connection holds its next answer).
    matched: bool,
    holding: bool,
    released: bool,
}

impl Gate {
    pub fn start(target: u16, needle: &str) -> Gate {
        let state = Arc::new((Mutex::new(GateState::default()), Condvar::new()));
        let (shared, needle) = (state.clone(), needle.as_bytes().to_vec());
        let port = relay(target, move |_| {
            // This connection carries the held request.
            let ours = Arc::new(AtomicBool::new(false));
            let (ours2, seen, held, needle) =
                (ours.clone(), shared.clone(), shared.clone(), needle.clone());
            // Marked before it is passed on: the answer can't overtake it.
            let mark: Hook = Box::new(move |b| {
                let mut st = seen.0.lock().unwrap();
                if !st.matched && b.windows(needle.len()).any(|w| w == needle) {
                    st.matched = true;
                    ours2.store(true, SeqCst);
                }
            });
            let hold: Hook = Box::new(move |_| {
                if ours.swap(false, SeqCst) {
                    let (lock, cv) = &*held;
                    let mut st = lock.lock().unwrap();
                    st.holding = true;
                    cv.notify_all();
                    while !st.released {
                        st = cv.wait(st).unwrap();
                    }
                }
            });
            Some((mark, hold))
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
