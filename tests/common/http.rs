//! A raw HTTP/1.1 client on one TCP connection: keep-alive is observable
//! (several requests on one socket), bodies can be streamed into a check
//! without being kept, and a broken end of body (short Content-Length body,
//! chunked body without its last chunk, reset) is an error, never EOF.

use md5::{Digest, Md5};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A response's status line and headers.
#[derive(Clone, Debug)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.parse().ok())
    }

    pub fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    /// The server announced it will close the connection after this one.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// One client connection.
pub struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    pub fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        s.set_nodelay(true).unwrap();
        Conn {
            r: BufReader::with_capacity(1 << 16, s.try_clone().unwrap()),
            w: s,
        }
    }

    /// A connection whose receive buffer is `bytes` (set before connecting,
    /// so the window the server sees stays small): a client that reads
    /// slowly, or not at all, fills it fast.
    pub fn open_small_window(port: u16, bytes: usize) -> Conn {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(bytes).unwrap();
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        sock.connect(&addr.into()).expect("connect");
        let s: TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        Conn {
            r: BufReader::with_capacity(1 << 16, s.try_clone().unwrap()),
            w: s,
        }
    }

    /// Whether the server closes this (idle) connection within `d`: a read
    /// that ends (EOF or reset) rather than times out.
    pub fn closed_within(&mut self, d: Duration) -> bool {
        self.w.set_read_timeout(Some(d)).unwrap();
        let mut byte = [0u8; 1];
        match self.r.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }

    /// Sends `GET path` (keep-alive) with extra headers.
    pub fn send(&mut self, path: &str, headers: &[(&str, &str)]) {
        self.send_method("GET", path, headers);
    }

    /// Sends a GET of each path in one write (HTTP/1.1 pipelining: every
    /// request is on the wire before the first response is read).
    pub fn pipeline(&mut self, paths: &[&str]) {
        let reqs: String = paths
            .iter()
            .map(|p| format!("GET {p} HTTP/1.1\r\nHost: test\r\n\r\n"))
            .collect();
        self.w.write_all(reqs.as_bytes()).expect("send requests");
    }

    /// `HEAD path` on this connection: its response header (no body).
    pub fn head_of(&mut self, path: &str) -> Head {
        self.send_method("HEAD", path, &[]);
        self.head().unwrap_or_else(|e| panic!("HEAD {path}: {e}"))
    }

    fn send_method(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.w.write_all(req.as_bytes()).expect("send request");
    }

    /// Reads a response header.
    pub fn head(&mut self) -> Result<Head, String> {
        let mut line = String::new();
        let n = self.r.read_line(&mut line).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before a response".into());
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if self.r.read_line(&mut h).map_err(|e| e.to_string())? == 0 {
                return Err("connection closed inside the header".into());
            }
            if h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.trim_end().split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        Ok(Head { status, headers })
    }

    /// Reads the body that follows `head`, feeding it to `sink`. `Ok(n)` only
    /// when the body ended validly (the whole Content-Length, the last
    /// chunk, or a close-delimited end); an error says what was short.
    pub fn body(&mut self, head: &Head, mut sink: impl FnMut(&[u8])) -> Result<u64, String> {
        let mut buf = vec![0u8; 1 << 16];
        if matches!(head.status, 100..=199 | 204 | 304) {
            return Ok(0);
        }
        if head.chunked() {
            let mut total = 0u64;
            loop {
                let mut size = String::new();
                let n = self.r.read_line(&mut size).map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err(format!(
                        "chunked body ended without its last chunk after {total} bytes"
                    ));
                }
                let size = u64::from_str_radix(size.trim().split(';').next().unwrap(), 16)
                    .map_err(|_| format!("bad chunk size {size:?}"))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        let mut t = String::new();
                        if self.r.read_line(&mut t).map_err(|e| e.to_string())? == 0 {
                            return Err("no end after the last chunk".into());
                        }
                        if t == "\r\n" {
                            return Ok(total);
                        }
                    }
                }
                self.copy(size, &mut buf, &mut sink)
                    .map_err(|got| format!("chunk cut after {} bytes", total + got))?;
                total += size;
                let mut crlf = [0u8; 2];
                self.r
                    .read_exact(&mut crlf)
                    .map_err(|e| format!("no CRLF after a chunk: {e}"))?;
            }
        }
        if let Some(len) = head.content_length() {
            return self
                .copy(len, &mut buf, &mut sink)
                .map(|_| len)
                .map_err(|got| format!("body has {got} of {len} bytes"));
        }
        // Close-delimited.
        let mut total = 0u64;
        loop {
            let n = self.r.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok(total);
            }
            sink(&buf[..n]);
            total += n as u64;
        }
    }

    /// Copies exactly `len` bytes to `sink`; Err(bytes copied) when short.
    fn copy(&mut self, len: u64, buf: &mut [u8], sink: &mut impl FnMut(&[u8])) -> Result<u64, u64> {
        let mut got = 0u64;
        while got < len {
            let want = (len - got).min(buf.len() as u64) as usize;
            match self.r.read(&mut buf[..want]) {
                Ok(0) | Err(_) => return Err(got),
                Ok(n) => {
                    sink(&buf[..n]);
                    got += n as u64;
                }
            }
        }
        Ok(got)
    }

    /// Reads `n` bytes of a Content-Length body (the start of it).
    pub fn read_part(&mut self, n: usize) -> Vec<u8> {
        let mut part = vec![0u8; n];
        self.r
            .read_exact(&mut part)
            .expect("first bytes of the body");
        part
    }

    /// `GET path` on this connection; the body is kept.
    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> (Head, Result<Vec<u8>, String>) {
        self.send(path, headers);
        let head = self.head().unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let mut body = Vec::new();
        let end = self.body(&head, |b| body.extend_from_slice(b));
        (head, end.map(|_| body))
    }
}

/// What a streamed download came to, without keeping the body.
#[derive(Debug)]
pub struct Download {
    pub head: Head,
    /// Body bytes received (valid end or not).
    pub len: u64,
    pub md5: [u8; 16],
    /// Ok when the body ended validly, else why not.
    pub end: Result<(), String>,
}

/// How far one client got, for tests that wait on many clients.
#[derive(Default)]
pub struct Progress {
    /// The request was written to the socket.
    pub sent: AtomicBool,
    /// Body bytes received so far.
    pub body: AtomicU64,
}

impl Progress {
    pub fn many(n: usize) -> std::sync::Arc<Vec<Progress>> {
        std::sync::Arc::new((0..n).map(|_| Progress::default()).collect())
    }
    pub fn sent(&self) -> bool {
        self.sent.load(Ordering::SeqCst)
    }
    pub fn body(&self) -> u64 {
        self.body.load(Ordering::SeqCst)
    }
}

/// `GET path` on a new connection, feeding the body to `sink` as it
/// arrives, reporting to `progress` (when given) so a test can wait for
/// "every client asked" or "every client got part of the body".
pub fn fetch(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    progress: Option<&Progress>,
    mut sink: impl FnMut(&[u8]),
) -> (Head, u64, Result<(), String>) {
    let mut c = Conn::open(port);
    c.send(path, headers);
    if let Some(p) = progress {
        p.sent.store(true, Ordering::SeqCst);
    }
    let head = c.head().unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let mut len = 0u64;
    let end = c.body(&head, |b| {
        sink(b);
        len += b.len() as u64;
        if let Some(p) = progress {
            p.body.fetch_add(b.len() as u64, Ordering::SeqCst);
        }
    });
    (head, len, end.map(|_| ()))
}

/// `GET path` on a new connection, hashing the body as it arrives.
pub fn download(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    progress: Option<&Progress>,
) -> Download {
    let mut h = Md5::new();
    let (head, len, end) = fetch(port, path, headers, progress, |b| h.update(b));
    Download {
        head,
        len,
        md5: h.finalize().into(),
        end,
    }
}

/// What a download compared with the expected bytes came to.
#[derive(Debug)]
pub struct Compared {
    pub head: Head,
    pub len: u64,
    pub end: Result<(), String>,
    /// Offset of the first byte that differs from `expected` (or lies
    /// beyond it), if any.
    pub differs_at: Option<u64>,
}

/// `GET path`, comparing the body with `expected` as it arrives (a memcmp
/// per chunk: 100 clients of a large object cost little, and no client's
/// copy is kept).
pub fn download_compare(
    port: u16,
    path: &str,
    expected: &[u8],
    progress: Option<&Progress>,
) -> Compared {
    let (mut off, mut differs_at) = (0usize, None);
    let (head, len, end) = fetch(port, path, &[], progress, |b| {
        if differs_at.is_none() && expected.get(off..off + b.len()) != Some(b) {
            differs_at = Some(off as u64);
        }
        off += b.len();
    });
    Compared {
        head,
        len,
        end,
        differs_at,
    }
}

/// MD5 and length of `super::pattern(len, seed)` without holding it.
pub fn pattern_md5(len: u64, seed: u8) -> [u8; 16] {
    let mut h = Md5::new();
    let mut x: u32 = 0x9E37_79B9 ^ seed as u32;
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        for b in &mut buf[..n] {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    h.finalize().into()
}

pub fn md5(bytes: &[u8]) -> [u8; 16] {
    Md5::digest(bytes).into()
}
