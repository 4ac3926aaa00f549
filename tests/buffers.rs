//! Client connections' write buffer (`limits.downstream_write_buffer_bytes`):
//! a response of known length is held until it is complete or the buffer
//! is full, so a miss whose origin stalls must still show the client all
//! it has beyond one buffer's worth, and an unbuffered listener every byte.

mod common;
use common::fill::yaml;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// GETs `path` from `port` and reads until `want` body bytes arrived or
/// `limit` passed; the bytes read (header and body) and the connection.
fn read_until(port: u16, path: &str, want: usize, limit: Duration) -> (Vec<u8>, TcpStream) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    let end = Instant::now() + limit;
    while body_of(&got).len() < want && Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    (got, s)
}

/// The body part of what `read_until` got (empty without a whole header).
fn body_of(got: &[u8]) -> &[u8] {
    got.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&[][..], |i| &got[i + 4..])
}

/// Reads the rest of a `len`-byte body after `have` of it.
fn finish(mut s: TcpStream, mut have: Vec<u8>, len: usize) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 65536];
    while have.len() < len {
        let n = s.read(&mut buf).expect("rest of the body");
        assert!(n > 0, "closed after {} of {len} bytes", have.len());
        have.extend_from_slice(&buf[..n]);
    }
    have
}

#[test]
fn a_stalled_miss_shows_all_but_one_buffer() {
    let b = garage().bucket("bufstall");
    let o = Origin::start();
    let body = pattern(256 << 10, 3);
    let gate: usize = 64 << 10;
    o.set(
        "/k",
        Reply::ok(&body, "application/octet-stream").gate_at(gate as u64),
    );
    let p = Proxy::start_env(&yaml(&b.yaml(), &o.url(), "", ""), &b.proxy_env());
    // At least all but one default buffer of the body arrives while the
    // origin holds the rest.
    let want = gate - origin_pull::config::limits::DEFAULT_DOWNSTREAM_WRITE_BUFFER_BYTES;
    let (got, s) = read_until(p.port, "/k", want, Duration::from_secs(10));
    let seen = body_of(&got).len();
    assert!(
        seen >= want,
        "{seen} body bytes while the origin stalls at {gate}\n{}",
        p.log()
    );
    o.release();
    let all = finish(s, body_of(&got).to_vec(), body.len());
    assert!(all == body);
}

#[test]
fn an_unbuffered_listener_sends_every_byte_at_once() {
    let b = garage().bucket("bufnone");
    let o = Origin::start();
    let body = pattern(64 << 10, 4);
    o.set(
        "/k",
        Reply::ok(&body, "application/octet-stream").gate_at(1000),
    );
    let conf = format!(
        "{}limits: {{ downstream_write_buffer_bytes: 0 }}\n",
        yaml(&b.yaml(), &o.url(), "", "")
    );
    let p = Proxy::start_env(&conf, &b.proxy_env());
    // Header and all 1000 bytes, though the default buffer would hold
    // them all until the origin goes on.
    let (got, s) = read_until(p.port, "/k", 1000, Duration::from_secs(10));
    assert_eq!(body_of(&got).len(), 1000, "{}", p.log());
    o.release();
    let all = finish(s, body_of(&got).to_vec(), body.len());
    assert!(all == body);
}
