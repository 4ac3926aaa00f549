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
    /// Any combination of the above, with gates at chosen points.
    Plan(Plan),
}

/// A composable fault: framing, where to hold, where to stop and how.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// `Transfer-Encoding: chunked` instead of `Content-Length`.
    pub chunked: bool,
    /// With `chunked`: this `Transfer-Encoding` value instead (e.g.
    /// `gzip, chunked`; the body is still chunk-framed, not compressed).
    pub transfer_encoding: Option<String>,
    /// Neither `Content-Length` nor `Transfer-Encoding`: the body ends when
    /// the connection closes (HTTP/1.0 style).
    pub unframed: bool,
    /// Send nothing (not even the status line) until `release_header`.
    pub hold_header: bool,
    /// Answer as `HTTP/1.0` (an old origin, python's http.server).
    pub http10: bool,
    /// After this many body bytes, wait for `release`.
    pub gate_at: Option<u64>,
    /// Send only this many body bytes, then end the connection (FIN, or RST
    /// with `reset`); a chunked body then lacks its last chunk.
    pub stop_at: Option<u64>,
    pub reset: bool,
    /// Interim answers (e.g. 103 Early Hints) sent before the final one.
    pub interim: Vec<u16>,
}

impl Fault {
    fn plan(&self, len: u64) -> Plan {
        match self {
            Fault::None | Fault::Delay(_) => Plan::default(),
            Fault::Chunked => Plan {
                chunked: true,
                ..Plan::default()
            },
            Fault::Truncate(n) => Plan {
                stop_at: Some(*n as u64),
                ..Plan::default()
            },
            Fault::Reset(n) => Plan {
                stop_at: Some(*n as u64),
                reset: true,
                ..Plan::default()
            },
            Fault::Gate => Plan {
                gate_at: Some(len / 2),
                ..Plan::default()
            },
            Fault::Plan(p) => p.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub enum Body {
    Bytes(Vec<u8>),
    /// `len` bytes of `super::pattern`-like data generated on the fly.
    Pattern {
        len: u64,
        seed: u8,
    },
    /// Bytes shared by every request (large objects served at memcpy speed
    /// without a copy per request).
    Shared(Arc<Vec<u8>>),
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::Pattern { len, .. } => *len,
            Body::Shared(b) => b.len() as u64,
        }
    }
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
    /// A 200 with `body`, shared by every request.
    pub fn shared(body: &Arc<Vec<u8>>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("Content-Type".into(), "application/octet-stream".into())],
            body: Body::Shared(body.clone()),
            fault: Fault::None,
        }
    }
    fn edit_plan(mut self, f: impl FnOnce(&mut Plan)) -> Reply {
        let len = self.body.len();
        let mut p = self.fault.plan(len);
        f(&mut p);
        self.fault = Fault::Plan(p);
        self
    }
    /// The body ends with the connection: no `Content-Length`, no chunks.
    pub fn unframed(self) -> Reply {
        self.edit_plan(|p| p.unframed = true)
    }
    /// The status line says `HTTP/1.0`.
    pub fn http10(self) -> Reply {
        self.edit_plan(|p| p.http10 = true)
    }
    /// Chunk-framed, announced as `Transfer-Encoding: <te>`.
    pub fn transfer_encoding(self, te: &str) -> Reply {
        self.edit_plan(|p| {
            p.chunked = true;
            p.transfer_encoding = Some(te.into());
        })
    }
    /// An interim `status` answer (100, 103) before the final one.
    pub fn interim(self, status: u16) -> Reply {
        self.edit_plan(|p| p.interim.push(status))
    }
    /// Nothing is sent until `Origin::release_header`.
    pub fn hold_header(self) -> Reply {
        self.edit_plan(|p| p.hold_header = true)
    }
    /// After `n` body bytes, wait for `Origin::release`.
    pub fn gate_at(self, n: u64) -> Reply {
        self.edit_plan(|p| p.gate_at = Some(n))
    }
    pub fn chunked(self) -> Reply {
        self.edit_plan(|p| p.chunked = true)
    }
    /// Send `n` body bytes, then close (FIN): short of the announced length.
    pub fn truncate_at(self, n: u64) -> Reply {
        self.edit_plan(|p| p.stop_at = Some(n))
    }
    /// Send `n` body bytes, then reset the connection (RST).
    pub fn reset_at(self, n: u64) -> Reply {
        self.edit_plan(|p| {
            p.stop_at = Some(n);
            p.reset = true
        })
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
    header_open: bool,
    /// Body bytes written, per path (query ignored), over all connections.
    sent: HashMap<String, u64>,
    /// Responses whose write failed: the peer closed the connection early.
    closed_early: HashMap<String, usize>,
}

pub struct Origin {
    pub port: u16,
    state: Arc<(Mutex<State>, std::sync::Condvar)>,
}

impl Origin {
    pub fn start() -> Origin {
        Origin::start_on("127.0.0.1")
    }

    /// An origin on another loopback address (e.g. `127.0.0.2`): another
    /// host as far as URLs go.
    pub fn start_on(ip: &str) -> Origin {
        let listener = TcpListener::bind((ip, 0)).unwrap();
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

    /// Lets `Fault::Gate` bodies (and `gate_at`) finish.
    pub fn release(&self) {
        self.state.0.lock().unwrap().gate_open = true;
        self.state.1.notify_all();
    }

    /// Lets `hold_header` replies start.
    pub fn release_header(&self) {
        self.state.0.lock().unwrap().header_open = true;
        self.state.1.notify_all();
    }

    /// Body bytes written so far for `path`, over all its requests.
    pub fn sent(&self, path: &str) -> u64 {
        let s = self.state.0.lock().unwrap();
        s.sent.get(path).copied().unwrap_or(0)
    }

    /// Responses for `path` whose write failed because the peer had
    /// closed the connection.
    pub fn closed_early(&self, path: &str) -> usize {
        let s = self.state.0.lock().unwrap();
        s.closed_early.get(path).copied().unwrap_or(0)
    }

    /// Polls (60 s at most) until `cond(self)` holds; panics with `what`.
    pub fn wait(&self, what: &str, cond: impl Fn(&Origin) -> bool) {
        super::wait_until(what, std::time::Duration::from_secs(60), || cond(self));
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
    let path = target.split('?').next().unwrap_or("").to_string();
    if write_reply(conn, &method, &path, reply, &st).is_err() {
        *st.0.lock().unwrap().closed_early.entry(path).or_default() += 1;
    }
}

fn write_reply(
    mut conn: TcpStream,
    method: &str,
    path: &str,
    r: Reply,
    st: &Arc<(Mutex<State>, std::sync::Condvar)>,
) -> std::io::Result<()> {
    if let Fault::Delay(d) = r.fault {
        std::thread::sleep(d);
    }
    let len = r.body.len();
    let plan = r.fault.plan(len);
    let wait_for = |open: fn(&State) -> bool| {
        let mut s = st.0.lock().unwrap();
        while !open(&s) {
            s = st.1.wait(s).unwrap();
        }
    };
    if plan.hold_header {
        wait_for(|s| s.header_open);
    }
    let version = if plan.http10 { "1.0" } else { "1.1" };
    for status in &plan.interim {
        let hint = "Link: </style.css>; rel=preload; as=style\r\n";
        conn.write_all(format!("HTTP/1.1 {status} Interim\r\n{hint}\r\n").as_bytes())?;
    }
    let mut head = format!("HTTP/{version} {} X\r\nConnection: close\r\n", r.status);
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if plan.chunked {
        let te = plan.transfer_encoding.as_deref().unwrap_or("chunked");
        head.push_str(&format!("Transfer-Encoding: {te}\r\n\r\n"));
    } else if plan.unframed {
        head.push_str("\r\n");
    } else {
        head.push_str(&format!("Content-Length: {len}\r\n\r\n"));
    }
    conn.write_all(head.as_bytes())?;
    if method == "HEAD" {
        return Ok(());
    }
    let stop_at = plan.stop_at.unwrap_or(len).min(len);
    let mut sent = 0u64;
    let mut gen = Gen::new(&r.body);
    while sent < stop_at {
        let mut n = (stop_at - sent).min(65536);
        if let Some(g) = plan.gate_at {
            if sent >= g {
                wait_for(|s| s.gate_open);
            } else {
                n = n.min(g - sent);
            }
        }
        let chunk = gen.take(n as usize);
        if plan.chunked {
            conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
            conn.write_all(&chunk)?;
            conn.write_all(b"\r\n")?;
        } else {
            conn.write_all(&chunk)?;
        }
        sent += n;
        *st.0
            .lock()
            .unwrap()
            .sent
            .entry(path.to_string())
            .or_default() += n;
    }
    if plan.stop_at.is_some() && plan.reset {
        let sock = socket2::Socket::from(conn);
        sock.set_linger(Some(Duration::ZERO))?;
        drop(sock);
        return Ok(());
    }
    if plan.chunked && plan.stop_at.is_none() {
        conn.write_all(b"0\r\n\r\n")?;
    }
    conn.flush()
}

/// Produces a body's bytes in order without holding all of it.
struct Gen {
    bytes: Option<Arc<Vec<u8>>>,
    pos: usize,
    x: u32,
}

impl Gen {
    fn new(b: &Body) -> Gen {
        match b {
            Body::Bytes(v) => Gen {
                bytes: Some(Arc::new(v.clone())),
                pos: 0,
                x: 0,
            },
            Body::Shared(v) => Gen {
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
