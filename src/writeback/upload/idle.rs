//! An idle limit for one bucket request: it fails once the bucket has made
//! no progress for a while, however long the whole transfer takes.
//!
//! A total deadline would cut slow but healthy uploads (a large part while
//! the client, and so the origin read, is slow); no limit at all lets a
//! stalled bucket hold an upload slot and its buffers forever. Progress is
//! each body chunk the HTTP client takes (it takes the next one once the
//! previous is written) and the answer's arrival. Time the body spends
//! waiting for the origin's next bytes is not the bucket's fault and is
//! not counted: the origin side has its own timeouts, and when it gives up
//! the stream ends and so does the request.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long a bucket may make no progress on a write-back request.
pub const BUCKET_IDLE: Duration = Duration::from_secs(60);

/// Shared between a request's body stream and its watchdog.
#[derive(Clone)]
pub struct Progress(Arc<State>);

struct State {
    limit: Duration,
    last: Mutex<Instant>,
    on_source: AtomicBool,
}

impl Progress {
    /// Progress watched against [`BUCKET_IDLE`].
    pub fn bucket() -> Progress {
        Progress::with_limit(BUCKET_IDLE)
    }

    pub fn with_limit(limit: Duration) -> Progress {
        Progress(Arc::new(State {
            limit,
            last: Mutex::new(Instant::now()),
            on_source: AtomicBool::new(false),
        }))
    }

    pub fn limit(&self) -> Duration {
        self.0.limit
    }

    /// The bucket took something, or answered.
    pub fn touch(&self) {
        *lock(&self.0.last) = Instant::now();
    }

    /// The body waits for the origin (true) or is back with data (false,
    /// which counts as progress).
    pub fn waiting_on_source(&self, waiting: bool) {
        self.0.on_source.store(waiting, Ordering::Relaxed);
        self.touch();
    }

    /// Time without progress that counts against the bucket.
    fn idle(&self) -> Duration {
        if self.0.on_source.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        lock(&self.0.last).elapsed()
    }
}

/// Runs `fut` until it completes, or fails with `Err(limit)` once
/// `progress` has been idle for its limit.
pub async fn within_idle_limit<F: Future>(
    fut: F,
    progress: &Progress,
) -> Result<F::Output, Duration> {
    let limit = progress.limit();
    tokio::pin!(fut);
    loop {
        let left = limit.saturating_sub(progress.idle());
        if left.is_zero() {
            return Err(limit);
        }
        tokio::select! {
            out = &mut fut => return Ok(out),
            _ = tokio::time::sleep(left) => {}
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Only an Instant is kept: a panic elsewhere leaves it valid.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_stalled_request_fails_after_the_limit() {
        let p = Progress::with_limit(LIMIT);
        let start = Instant::now();
        let r = within_idle_limit(std::future::pending::<()>(), &p).await;
        assert_eq!(r, Err(LIMIT));
        assert_eq!(start.elapsed(), LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_but_progressing_requests_run_past_the_limit() {
        let p = Progress::with_limit(LIMIT);
        let feeder = p.clone();
        // Ten minutes of work, progress every 50 s.
        let work = async move {
            for _ in 0..12 {
                tokio::time::sleep(Duration::from_secs(50)).await;
                feeder.touch();
            }
            "done"
        };
        assert_eq!(within_idle_limit(work, &p).await, Ok("done"));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_the_origin_is_not_idle() {
        let p = Progress::with_limit(LIMIT);
        let feeder = p.clone();
        let work = async move {
            feeder.waiting_on_source(true);
            tokio::time::sleep(LIMIT * 5).await;
            feeder.waiting_on_source(false);
            "done"
        };
        assert_eq!(within_idle_limit(work, &p).await, Ok("done"));
        // Once back from the origin the clock runs again.
        let r = within_idle_limit(std::future::pending::<()>(), &p).await;
        assert_eq!(r, Err(LIMIT));
    }
}
