//! `limits:` (SPEC 5): bounds on what a client may send, and the buffers
//! each client connection gets. Kept apart from `validate` so each section
//! stays small.

use super::locate::FieldPath;
use pingora::http::ResponseHeader;
use serde::Deserialize;

/// An HTTP/1.1 body up to this size leaves without a send timeout
/// (`bound_send`).
const SMALL_BODY_BYTES: u64 = 16 * 1024;

/// Request headers larger than this are refused by default: what common
/// front ends accept (nginx 8-32 KiB, Apache 8 KiB per line), far below
/// the 1 MiB Pingora itself reads.
pub const DEFAULT_MAX_REQUEST_HEADER_BYTES: usize = 16 * 1024;

/// Client connections' write buffer (Pingora's L4 write buffer; its own
/// default is 1460, one MSS). A response of known length is flushed only
/// when complete or when the buffer is full, so the size decides two
/// things (README "Where the time goes"). At 1460 a 4 KiB hit leaves in
/// two `sendto`s (the header alone, then the body); at 8 KiB in one (a
/// system call less of ~6.6 per hit). But a miss's first bytes wait in
/// the buffer until it is full: 8 KiB is inside the first flight a
/// cold origin connection sends (TCP's initial window, 10 segments, is
/// 14.6 KB), so a steady origin fills it without waiting a round trip;
/// 16 KiB would not be. Origins that trickle their first bytes want 1460
/// (or 0).
pub const DEFAULT_DOWNSTREAM_WRITE_BUFFER_BYTES: usize = 8 * 1024;
/// Client connections' read buffer: Pingora's default, which the TLS
/// layer's 16 KiB record reads need.
pub const DEFAULT_DOWNSTREAM_READ_BUFFER_BYTES: usize = 64 * 1024;
/// How long an idle HTTP/1.1 keep-alive (or HTTP/2) client connection is
/// kept: Pingora's own default for the first request, nginx's order of
/// magnitude (`keepalive_timeout 75s`).
pub const DEFAULT_CLIENT_IDLE_TIMEOUT_SECONDS: u64 = 60;
/// How long one write to a client may wait for the client to take bytes
/// (nginx's `send_timeout`, 60 s).
pub const DEFAULT_CLIENT_SEND_TIMEOUT_SECONDS: u64 = 60;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_request_header_bytes: Option<usize>,
    pub downstream_write_buffer_bytes: Option<usize>,
    pub downstream_read_buffer_bytes: Option<usize>,
    pub client_idle_timeout_seconds: Option<u64>,
    pub client_send_timeout_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus header fields, as received; more is a 431.
    pub max_request_header_bytes: usize,
    /// Per client connection; 0 writes straight to the socket.
    pub downstream_write_buffer_bytes: usize,
    /// Per client connection; 0 reads straight from the socket.
    pub downstream_read_buffer_bytes: usize,
    /// An idle keep-alive client connection is closed after this.
    pub client_idle_timeout_seconds: u64,
    /// A client that takes no bytes of a write for this long is dropped.
    pub client_send_timeout_seconds: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_request_header_bytes: DEFAULT_MAX_REQUEST_HEADER_BYTES,
            downstream_write_buffer_bytes: DEFAULT_DOWNSTREAM_WRITE_BUFFER_BYTES,
            downstream_read_buffer_bytes: DEFAULT_DOWNSTREAM_READ_BUFFER_BYTES,
            client_idle_timeout_seconds: DEFAULT_CLIENT_IDLE_TIMEOUT_SECONDS,
            client_send_timeout_seconds: DEFAULT_CLIENT_SEND_TIMEOUT_SECONDS,
        }
    }
}

impl Limits {
    /// The L4 buffers for every client listener (plain and TLS).
    pub fn l4_buffers(&self) -> pingora::listeners::L4BufferSettings {
        pingora::listeners::L4BufferSettings::new(
            self.downstream_read_buffer_bytes,
            self.downstream_write_buffer_bytes,
        )
    }

    /// Bounds a client connection's idle time, per request: Pingora 0.9
    /// turns an HTTP/1.1 connection's 60 s keep-alive into an endless one
    /// when it reads a request (`respect_keepalive`) and carries that to
    /// the next, so an idle client held its connection (and its file
    /// descriptor) forever. `Connection: close` (keep-alive off) stays off.
    ///
    /// With it, HTTP/1.1 pipelining is turned on (RFC 9112 §9.3.2,
    /// requests served one after the other, as nginx does; Pingora resets
    /// the keep-alive per request, so this runs for each, a store each):
    /// off, Pingora answers the first of pipelined requests and closes the
    /// connection with the others unanswered (apt pipelines by default).
    pub fn bound_client(&self, session: &mut pingora::proxy::Session) {
        if session.get_keepalive() == Some(0) {
            session.set_keepalive(Some(self.client_idle_timeout_seconds));
            session.set_pipelining_enabled(true);
        }
    }

    /// Bounds the time a client may take to accept each write of this
    /// response: Pingora has no write timeout, so a client that stopped
    /// reading held its response, its bucket connection or its fill's
    /// spool for ever. On HTTP/2 always (a stream waits for the client's
    /// flow-control window, which a client can keep shut); on HTTP/1.1
    /// only for a body the socket buffers may not take at once (unknown
    /// length, or over 16 KiB, the smallest send buffer Linux starts a
    /// connection with): a timeout is a timer armed per write, and a small
    /// response is in the kernel's hands after its first write. (The idle
    /// bound above is a timer per request header read on a kept-alive
    /// connection: +1.3 % instructions per 4 KiB hit, callgrind, 99.3k ->
    /// 100.6k; nginx arms one too.)
    pub fn bound_send(&self, session: &mut pingora::proxy::Session, resp: &ResponseHeader) {
        let small = !session.is_http2()
            && crate::mirror::content_length(&resp.headers).is_some_and(|n| n <= SMALL_BODY_BYTES);
        if !small {
            session.set_write_timeout(Some(std::time::Duration::from_secs(
                self.client_send_timeout_seconds,
            )));
        }
    }

    /// Whether this request's header is over `max_request_header_bytes`.
    pub fn header_too_large(&self, req: &http::request::Parts) -> bool {
        request_header_bytes(req) > self.max_request_header_bytes
    }
}

/// Smallest accepted bound: below it even an ordinary browser request
/// (cookies, user agent) would be refused.
const MIN_HEADER_BYTES: usize = 1024;
/// Pingora reads at most this much request header (1 MiB - 1), so a
/// larger bound could never apply.
const MAX_HEADER_BYTES: usize = 1_048_575;
/// Largest connection buffer: each client connection holds its buffers
/// for its whole life, so 10,000 connections at this size are 10 GiB.
const MAX_BUFFER_BYTES: usize = 1 << 20;
/// Longest client timeout: an hour (0 would mean "never", which is what
/// these bounds exist to prevent).
const MAX_TIMEOUT_SECONDS: u64 = 3600;

/// The validated section, or the field at fault and why.
pub(super) fn validate(
    raw: Option<&RawLimits>,
    path: &FieldPath,
) -> Result<Limits, (FieldPath, String)> {
    let mut limits = Limits::default();
    let Some(raw) = raw else { return Ok(limits) };
    if let Some(n) = raw.max_request_header_bytes {
        if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&n) {
            return Err((
                path.key("max_request_header_bytes"),
                format!("{n} is outside {MIN_HEADER_BYTES}..={MAX_HEADER_BYTES} bytes"),
            ));
        }
        limits.max_request_header_bytes = n;
    }
    for (name, value, field) in [
        (
            "downstream_write_buffer_bytes",
            raw.downstream_write_buffer_bytes,
            &mut limits.downstream_write_buffer_bytes,
        ),
        (
            "downstream_read_buffer_bytes",
            raw.downstream_read_buffer_bytes,
            &mut limits.downstream_read_buffer_bytes,
        ),
    ] {
        if let Some(n) = value {
            if n > MAX_BUFFER_BYTES {
                return Err((
                    path.key(name),
                    format!("{n} is outside 0..={MAX_BUFFER_BYTES} bytes"),
                ));
            }
            *field = n;
        }
    }
    for (name, value, field) in [
        (
            "client_idle_timeout_seconds",
            raw.client_idle_timeout_seconds,
            &mut limits.client_idle_timeout_seconds,
        ),
        (
            "client_send_timeout_seconds",
            raw.client_send_timeout_seconds,
            &mut limits.client_send_timeout_seconds,
        ),
    ] {
        if let Some(n) = value {
            if !(1..=MAX_TIMEOUT_SECONDS).contains(&n) {
                return Err((
                    path.key(name),
                    format!("{n} is outside 1..={MAX_TIMEOUT_SECONDS} seconds"),
                ));
            }
            *field = n;
        }
    }
    Ok(limits)
}

/// The size of a request header as it was on the wire: request line and
/// every field with its separators. Computed from the parsed header so it
/// holds for HTTP/1 and HTTP/2 alike (within a few bytes of optional
/// whitespace).
pub fn request_header_bytes(req: &http::request::Parts) -> usize {
    // "GET /path HTTP/1.1\r\n" ... "\r\n"
    let line = req.method.as_str().len()
        + req.uri.path_and_query().map_or(1, |p| p.as_str().len())
        + " HTTP/1.1\r\n".len()
        + 1;
    let fields: usize = req
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + ": \r\n".len())
        .sum();
    line + fields + "\r\n".len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_whole_header() {
        let (parts, ()) = http::Request::get("/a?b=1")
            .header("x-big", "v".repeat(100))
            .body(())
            .unwrap()
            .into_parts();
        // "GET /a?b=1 HTTP/1.1\r\n" + "x-big: vvv..\r\n" + "\r\n"
        assert_eq!(request_header_bytes(&parts), 21 + 5 + 2 + 100 + 2 + 2);
    }

    #[test]
    fn bounds() {
        let p = FieldPath::default().key("limits");
        assert_eq!(validate(None, &p).unwrap().max_request_header_bytes, 16384);
        let raw = |n| RawLimits {
            max_request_header_bytes: Some(n),
            ..RawLimits::default()
        };
        assert_eq!(
            validate(Some(&raw(4096)), &p)
                .unwrap()
                .max_request_header_bytes,
            4096
        );
        let (at, why) = validate(Some(&raw(10)), &p).unwrap_err();
        assert_eq!(at.to_string(), "limits.max_request_header_bytes");
        assert!(why.contains("outside"), "{why}");
        assert!(validate(Some(&raw(2 << 20)), &p).is_err());
    }

    #[test]
    fn connection_buffers() {
        let p = FieldPath::default().key("limits");
        let d = validate(None, &p).unwrap().l4_buffers();
        assert_eq!((d.read_capacity(), d.write_capacity()), (65536, 8192));
        let raw = RawLimits {
            downstream_write_buffer_bytes: Some(0),
            downstream_read_buffer_bytes: Some(4096),
            ..RawLimits::default()
        };
        let b = validate(Some(&raw), &p).unwrap().l4_buffers();
        assert_eq!((b.read_capacity(), b.write_capacity()), (4096, 0));
        let big = RawLimits {
            downstream_read_buffer_bytes: Some((1 << 20) + 1),
            ..RawLimits::default()
        };
        let (at, why) = validate(Some(&big), &p).unwrap_err();
        assert_eq!(at.to_string(), "limits.downstream_read_buffer_bytes");
        assert!(why.contains("0..=1048576"), "{why}");
    }
}
