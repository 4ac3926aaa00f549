//! Signed request headers for object reads, reused for a short while.
//!
//! Signing is the largest cost of a hit that the proxy itself adds (about
//! a tenth of its CPU at 4 KiB in the benchmark's profile: canonical
//! request, string to sign, key derivation, all rebuilt per request).
//! A GET or HEAD signature covers only the method, the path, `Host`,
//! `x-amz-date` and `x-amz-content-sha256` (forwarded client headers
//! such as `Range` are not signed), so the same headers are valid for
//! every read of that object until S3's clock-skew window closes
//! (15 minutes). They are reused for at most [`REUSE_FOR`], far inside
//! that window; the signing itself stays with `aws-sigv4`.
//!
//! What is kept is the whole request header Pingora sends (path, `Host`,
//! signature), keyed by the object key: a hit clones it instead of
//! encoding the path and building the header again (callgrind: 6k of
//! the ~120k instructions a 4 KiB hit costs, down to about 2k).

use http::Method;
use pingora::http::RequestHeader;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one signature is reused.
pub const REUSE_FOR: Duration = Duration::from_secs(60);
/// Keys remembered per method; all stale ones go first when full.
const CAPACITY: usize = 8192;

/// A signed read request for Pingora, shared by the hits that reuse it.
pub type ReadHeaders = Arc<RequestHeader>;

#[derive(Debug, Default)]
pub struct ReadSignatures {
    get: Mutex<HashMap<String, (Instant, ReadHeaders)>>,
    head: Mutex<HashMap<String, (Instant, ReadHeaders)>>,
}

impl ReadSignatures {
    /// The cached request for `method key`, or the one `sign` makes (then
    /// cached). Only GET and HEAD are cached.
    pub fn get_or_sign<E>(
        &self,
        method: &Method,
        key: &str,
        sign: impl FnOnce() -> Result<ReadHeaders, E>,
    ) -> Result<ReadHeaders, E> {
        let map = match *method {
            Method::GET => &self.get,
            Method::HEAD => &self.head,
            _ => return sign(),
        };
        let now = Instant::now();
        if let Some((at, h)) = lock(map).get(key) {
            if now.duration_since(*at) < REUSE_FOR {
                return Ok(h.clone());
            }
        }
        let headers = sign()?;
        let mut m = lock(map);
        if m.len() >= CAPACITY {
            m.retain(|_, (at, _)| now.duration_since(*at) < REUSE_FOR);
            if m.len() >= CAPACITY {
                m.clear(); // all fresh: a burst of distinct keys
            }
        }
        m.insert(key.to_string(), (now, headers.clone()));
        Ok(headers)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock leaves a consistent map.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> ReadHeaders {
        let mut h = RequestHeader::build_no_case(Method::GET, b"/b/k", None).unwrap();
        h.insert_header("authorization", v).unwrap();
        Arc::new(h)
    }

    #[test]
    fn reads_reuse_a_signature_other_methods_never() {
        let c = ReadSignatures::default();
        let mut calls = 0;
        for _ in 0..3 {
            let h = c
                .get_or_sign::<()>(&Method::GET, "/b/k", || {
                    calls += 1;
                    Ok(headers("one"))
                })
                .unwrap();
            assert_eq!(h.headers["authorization"], "one");
        }
        assert_eq!(calls, 1);
        // HEAD and GET of the same path are signed apart; PUT never cached.
        c.get_or_sign::<()>(&Method::HEAD, "/b/k", || {
            calls += 1;
            Ok(headers("head"))
        })
        .unwrap();
        for _ in 0..2 {
            c.get_or_sign::<()>(&Method::PUT, "/b/k", || {
                calls += 1;
                Ok(headers("put"))
            })
            .unwrap();
        }
        assert_eq!(calls, 4);
    }

    #[test]
    fn a_full_cache_stays_bounded() {
        let c = ReadSignatures::default();
        for i in 0..CAPACITY + 10 {
            c.get_or_sign::<()>(&Method::GET, &format!("/b/{i}"), || Ok(headers("x")))
                .unwrap();
        }
        assert!(lock(&c.get).len() <= CAPACITY);
    }
}
