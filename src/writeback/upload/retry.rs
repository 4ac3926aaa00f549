//! Another attempt at a write-back request the bucket failed in passing.
//!
//! S3 asks clients to retry `503 SlowDown` and `500 InternalError` (its
//! SDKs do, with backoff), and a busy bucket sheds load that way exactly
//! when a migration writes back the most. Without a retry such an object
//! is not stored: the next request fetches it from the origin again
//! (egress) and tries once more. So each request of a write-back is sent
//! up to [`ATTEMPTS`] times while its failure is worth it ([`retryable`]);
//! the pauses double and are jittered so many write-backs throttled
//! together do not come back together.
//!
//! A request's body must be sendable again: it is from a fill's spool
//! (the miss path), and from a part the plain path's tee buffered (an
//! origin without a length); the tee's streamed PUTs and parts are not
//! retried (their bytes are gone once sent).
//!
//! An attempt whose answer was lost (reset after the bucket stored the
//! object) is harmless to repeat: the PUT and CompleteMultipartUpload
//! carry `If-None-Match: *` (a bucket that honours it answers "already
//! exists", which counts as stored), and the bytes are the same anyway.

use crate::metrics::METRICS;
use crate::writeback::{Job, WriteBackError};
use std::future::Future;
use std::time::Duration;

/// Attempts at one bucket request (the first one included).
pub const ATTEMPTS: u32 = 4;
/// The pause before the second attempt, doubled for each later one, then
/// jittered down to half of it at most: 0.5–1 s, 1–2 s, 2–4 s.
const FIRST_PAUSE: Duration = Duration::from_secs(1);

/// Whether another attempt may succeed where this one failed: S3's
/// "slow down / try again" answers, and a connection that failed. Not:
/// the bucket refusing the request (4xx: credentials, a policy, a bad
/// request stay refused), a bucket that stalled for the whole idle limit
/// (another minute-long wait per attempt would hold an upload slot and
/// the spool for minutes), the origin's stream failing, or the checks of
/// the bytes.
pub fn retryable(e: &WriteBackError) -> bool {
    match e {
        WriteBackError::Bucket(status, text) => match status {
            429 | 500 | 502 | 503 | 504 => true,
            // S3 closes a request whose body paused too long (a part read
            // at a slow origin's pace); the SDKs retry it.
            400 => text.contains("<Code>RequestTimeout</Code>"),
            // CompleteMultipartUpload can answer 200 with an error
            // document; S3 documents InternalError there as retryable.
            200 => ["InternalError", "SlowDown"]
                .iter()
                .any(|c| text.contains(&format!("<Code>{c}</Code>"))),
            _ => false,
        },
        WriteBackError::Http(_) => true,
        _ => false,
    }
}

/// After attempt `attempt` failed with `e`: false when it was the last
/// one or not worth repeating; otherwise logs, waits the pause, and says
/// to go again.
pub async fn again(job: &Job, what: &str, attempt: u32, e: &WriteBackError) -> bool {
    if attempt >= ATTEMPTS || !retryable(e) {
        return false;
    }
    let pause = pause(attempt, fastrand::f64());
    log::warn!(
        "write-back key={:?}: {what} attempt {attempt}/{ATTEMPTS} failed: {e}; retrying in {} ms",
        job.key,
        pause.as_millis()
    );
    METRICS.writeback_retries.inc();
    tokio::time::sleep(pause).await;
    true
}

/// `send` until it succeeds, fails for good, or the attempts are used up.
/// Each call must build its request afresh (its body included).
pub async fn retried<T, F, Fut>(job: &Job, what: &str, send: F) -> Result<T, WriteBackError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, WriteBackError>>,
{
    let mut attempt = 1;
    loop {
        match send().await {
            Ok(v) => return Ok(v),
            Err(e) if again(job, what, attempt, &e).await => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

/// The pause after failed attempt `attempt` (from 1), `jitter` in [0, 1).
fn pause(attempt: u32, jitter: f64) -> Duration {
    let full = FIRST_PAUSE * 2u32.pow(attempt.saturating_sub(1).min(8));
    full.mul_f64(1.0 - jitter / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_worth_another_attempt() {
        let bucket = |s, t: &str| WriteBackError::Bucket(s, t.to_string());
        assert!(retryable(&bucket(503, "<Code>SlowDown</Code>")));
        assert!(retryable(&bucket(500, "<Code>InternalError</Code>")));
        assert!(retryable(&bucket(429, "")));
        assert!(retryable(&WriteBackError::Http("connection reset".into())));
        assert!(retryable(&bucket(
            200,
            "<Error><Code>InternalError</Code></Error>"
        )));
        // Refusals stay refusals; the source's failures and the checks are
        // not the bucket's.
        assert!(!retryable(&bucket(403, "<Code>AccessDenied</Code>")));
        assert!(!retryable(&bucket(400, "<Code>EntityTooSmall</Code>")));
        assert!(!retryable(&bucket(200, "<Error><Code>InvalidPart</Code>")));
        assert!(retryable(&bucket(400, "<Code>RequestTimeout</Code>")));
        assert!(!retryable(&WriteBackError::Stalled(Duration::from_secs(
            60
        ))));
        assert!(!retryable(&WriteBackError::Abandoned));
        assert!(!retryable(&WriteBackError::Fill("origin reset".into())));
        assert!(!retryable(&WriteBackError::Md5));
        assert!(!retryable(&WriteBackError::AlreadyExists));
        assert!(!retryable(&WriteBackError::Length { got: 1, want: 2 }));
    }

    #[test]
    fn pauses_double_and_jitter_down_to_half() {
        assert_eq!(pause(1, 0.0), Duration::from_secs(1));
        assert_eq!(pause(2, 0.0), Duration::from_secs(2));
        assert_eq!(pause(3, 0.0), Duration::from_secs(4));
        assert_eq!(pause(1, 0.999_999).as_millis(), 500);
        assert!(pause(u32::MAX, 0.0) <= Duration::from_secs(256));
    }
}
