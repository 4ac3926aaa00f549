//! A real HTTP/1.1 origin on a loopback port, with fault modes (slow,
//! truncated, reset, chunked, any status), a hit counter per path and a
//! record of every request it received. Written on raw sockets on purpose:
//! the faults are exactly what well-behaved HTTP libraries won't produce.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug, Default)]
pub enum Fault {
    #[default]
    None,
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Announce the full length, send this many bytes, close.
    Truncate(usize),
    /// Send this many bytes, then reset the connection (RST).
    Reset(usize),
    /// Wait this long before the response header.
    Delay(Duration),
    /// Announce the length, stream the body, waiting for `release` before the
    /// second half (lets a test act mid-body without sleeping).
    Gate,
}

#[derive(Clone, Debug)]
pub enum Body {
    Bytes(Vec<u8>),
    /// `len` bytes of `super::pattern`-like data generated on the fly.
    Pattern {
        len: u64,
        seed: u8,
    },
}

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    pub fault: Fault,
}

impl Reply {
    pub fn ok(body: &[u8], content_type: &str) -> Reply {
        Reply {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: Body::Bytes(body.to_vec()),
            fault: Fault::None,
        }
    }
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: vec![],
            body: Body::Bytes(format!("status {status}").into_bytes()),
            fault: Fault::None,
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn fault(mut self, f: Fault) -> Reply {
        self.fault = f;
        self
    }
}

/// One request as the origin received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    replies: HashMap<String, Reply>,
    seen: Vec<Seen>,
    gate_open: bool,
}

pub struct Origin {
    pub port: u16,
    state: Arc<(Mutex<State>, std::sync::Condvar)>,
}

impl Origin {
    pub fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new((Mutex::new(State::default()), std::sync::Condvar::new()));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let st = st.clone();
                std::thread::spawn(move || serve(conn, st));
            }
        });
        Origin { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Answers `target` (path, or path?query) with `reply`.
    pub fn set(&self, target: &str, reply: Reply) {
        self.state
            .0
            .lock()
            .unwrap()
            .replies
            .insert(target.to_string(), reply);
    }

    /// Requests received for a path (query ignored).
    pub fn hits(&self, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.target.split('?').next() == Some(path))
            .count()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.0.lock().unwrap().seen.clone()
    }

    /// Lets `Fault::Gate` bodies finish.
    pub fn release(&self) {
        self.state.0.lock().unwrap().gate_open = true;
        self.state.1.notify_all();
    }
}

fn serve(conn: TcpStream, st: Arc<(Mutex<State>, std::sync::Condvar)>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let reply = {
        let mut s = st.0.lock().unwrap();
        s.seen.push(Seen {
            method: method.clone(),
            target: target.clone(),
            headers,
        });
        let path = target.split('?').next().unwrap_or("").to_string();
        s.replies
            .get(&target)
            .or_else(|| s.replies.get(&path))
            .cloned()
            .unwrap_or_else(|| Reply::status(404))
    };
    let _ = write_reply(conn, &method, reply, &st);
}

fn write_reply(
    mut conn: TcpStream,
    method: &str,
    r: Reply,
    st: &Arc<(Mutex<State>, std::sync::Condvar)>,
) -> std::io::Result<()> {
    if let Fault::Delay(d) = r.fault {
        std::thread::sleep(d);
    }
    let len = match &r.body {
        Body::Bytes(b) => b.len() as u64,
        Body::Pattern { len, .. } => *len,
    };
    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", r.status);
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let chunked = matches!(r.fault, Fault::Chunked);
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
    } else {
        head.push_str(&format!("Content-Length: {len}\r\n\r\n"));
    }
    conn.write_all(head.as_bytes())?;
    if method == "HEAD" {
        return Ok(());
    }
    let stop_at = match r.fault {
        Fault::Truncate(n) | Fault::Reset(n) => n as u64,
        _ => len,
    };
    let mut sent = 0u64;
    let mut gen = Gen::new(&r.body);
    while sent < stop_at {
        if matches!(r.fault, Fault::Gate) && sent >= len / 2 {
            let mut s = st.0.lock().unwrap();
            while !s.gate_open {
                s = st.1.wait(s).unwrap();
            }
        }
        let n = (stop_at - sent).min(65536) as usize;
        let chunk = gen.take(n);
        if chunked {
            conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
            conn.write_all(&chunk)?;
            conn.write_all(b"\r\n")?;
        } else {
            conn.write_all(&chunk)?;
        }
        sent += n as u64;
    }
    match r.fault {
        Fault::Chunked => conn.write_all(b"0\r\n\r\n")?,
        Fault::Reset(_) => {
            let sock = socket2::Socket::from(conn);
            sock.set_linger(Some(Duration::ZERO))?;
            drop(sock);
            return Ok(());
        }
        _ => {}
    }
    conn.flush()
}

/// Produces a body's bytes in order without holding all of it.
struct Gen {
    bytes: Option<Vec<u8>>,
    pos: usize,
    x: u32,
}

impl Gen {
    fn new(b: &Body) -> Gen {
        match b {
            Body::Bytes(v) => Gen {
                bytes: Some(v.clone()),
                pos: 0,
                x: 0,
            },
            Body::Pattern { seed, .. } => Gen {
                bytes: None,
                pos: 0,
                x: 0x9E37_79B9 ^ *seed as u32,
            },
        }
    }
    fn take(&mut self, n: usize) -> Vec<u8> {
        match &self.bytes {
            Some(v) => {
                let out = v[self.pos..self.pos + n].to_vec();
                self.pos += n;
                out
            }
            None => (0..n)
                .map(|_| {
                    self.x ^= self.x << 13;
                    self.x ^= self.x >> 17;
                    self.x ^= self.x << 5;
                    self.x as u8
                })
                .collect(),
        }
    }
}
