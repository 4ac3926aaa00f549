//! A bucket that fails on cue: an HTTP-aware relay in front of Garage's S3
//! port that answers chosen requests with an S3 error itself (as a busy S3
//! answers `503 SlowDown`) and passes everything else, request by request,
//! so a kept-alive connection is examined on every request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// Answer the next `times` requests that match with `status` and `code`
/// (`status` 0: close the connection unanswered, as a reset would).
/// Request bodies are framed by `Content-Length` only (what the proxy's
/// write-back sends); a chunked one would not be followed.
#[derive(Clone, Debug)]
pub struct Fault {
    pub method: &'static str,
    /// Matches when the request target contains it ("" for any).
    pub target_has: &'static str,
    /// Matches when the request target does not contain it ("" for none).
    pub target_lacks: &'static str,
    pub status: u16,
    pub code: &'static str,
    pub times: usize,
}

/// One request the relay saw: method, target, and whether it answered it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub failed: bool,
}

pub struct FaultyBucket {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FaultyBucket {
    pub fn start(target: u16, faults: Vec<Fault>) -> FaultyBucket {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let faults = Arc::new(Mutex::new(faults));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(down) = conn else { continue };
                let (faults, log) = (faults.clone(), log.clone());
                std::thread::spawn(move || serve(down, target, &faults, &log));
            }
        });
        FaultyBucket { port, seen }
    }

    /// The requests seen so far with `method` whose target contains `has`.
    pub fn seen(&self, method: &str, has: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == method && s.target.contains(has))
            .cloned()
            .collect()
    }
}

/// Relays one client connection, request by request.
fn serve(down: TcpStream, target: u16, faults: &Mutex<Vec<Fault>>, log: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(down.try_clone().unwrap());
    let mut up: Option<TcpStream> = None;
    loop {
        let mut head = Vec::new();
        loop {
            let start = head.len();
            match reader.read_until(b'\n', &mut head) {
                Ok(0) | Err(_) => return close(&down, up.as_ref()),
                Ok(_) => {}
            }
            if &head[start..] == b"\r\n" {
                break;
            }
        }
        let text = String::from_utf8_lossy(&head).to_string();
        let mut words = text.split(' ');
        let (method, target_path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let len: u64 = text
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let fault = take_fault(faults, method, target_path);
        log.lock().unwrap().push(Seen {
            method: method.to_string(),
            target: target_path.to_string(),
            failed: fault.is_some(),
        });
        if let Some(f) = fault {
            // Take the body in (the client sends it whole before it reads
            // an answer), then answer and close, as an S3 front end does.
            let _ = std::io::copy(&mut (&mut reader).take(len), &mut std::io::sink());
            if f.status == 0 {
                return close(&down, up.as_ref());
            }
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>injected by the test</Message></Error>",
                f.code
            );
            let answer = format!(
                "HTTP/1.1 {} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                f.status,
                body.len()
            );
            let _ = (&down).write_all(answer.as_bytes());
            return close(&down, up.as_ref());
        }
        if up.is_none() {
            let Ok(conn) = TcpStream::connect(("127.0.0.1", target)) else {
                return close(&down, None);
            };
            let _ = conn.set_nodelay(true);
            let (mut from, mut to) = (conn.try_clone().unwrap(), down.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from, &mut to);
                let _ = to.shutdown(Shutdown::Write);
            });
            up = Some(conn);
        }
        let conn = up.as_mut().unwrap();
        if conn.write_all(&head).is_err()
            || std::io::copy(&mut (&mut reader).take(len), conn).is_err()
        {
            return close(&down, up.as_ref());
        }
    }
}

fn take_fault(faults: &Mutex<Vec<Fault>>, method: &str, target: &str) -> Option<Fault> {
    let mut faults = faults.lock().unwrap();
    let f = faults.iter_mut().find(|f| {
        f.times > 0
            && f.method == method
            && target.contains(f.target_has)
            && (f.target_lacks.is_empty() || !target.contains(f.target_lacks))
    })?;
    f.times -= 1;
    Some(f.clone())
}

fn close(down: &TcpStream, up: Option<&TcpStream>) {
    let _ = down.shutdown(Shutdown::Both);
    if let Some(up) = up {
        let _ = up.shutdown(Shutdown::Both);
    }
}
