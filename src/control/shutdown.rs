//! SIGTERM: stop promptly and lose nothing. Pingora has already stopped
//! accepting (it got the same signal); this waits until no request,
//! fill or write-back is in flight, then ends the process, at the latest
//! after `shutdown_timeout_seconds`, when unfinished multipart uploads
//! are aborted first. `/readyz` answers 503 from the start.

use super::Control;
use crate::metrics::work_in_flight;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the work in flight is looked at.
const TICK: Duration = Duration::from_millis(25);
/// Idle this long in a row before exiting: covers the instant between a
/// request ending and the write-back it started being counted.
const SETTLE: Duration = Duration::from_millis(100);
/// Past the timeout, how long the aborts of unfinished multipart
/// uploads may take (all at once) before the process exits anyway: well
/// inside the 5 s Pingora's grace period adds to the timeout
/// (`server::build`), after which Pingora ends the process itself.
const ABORT_WITHIN: Duration = Duration::from_secs(3);

/// SIGTERM or SIGQUIT (`signal` names it in the log).
pub fn drain(c: Arc<Control>, signal: &str) {
    if c.draining.swap(true, Ordering::SeqCst) {
        return; // already draining
    }
    let limit = c.config().shutdown_timeout;
    log::info!(
        "{signal}: draining ({} in flight), exiting when idle or after {limit:?}",
        work_in_flight()
    );
    tokio::spawn(async move {
        let deadline = Instant::now() + limit;
        let mut idle_since: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if work_in_flight() > 0 {
                idle_since = None;
            } else if now.duration_since(*idle_since.get_or_insert(now)) >= SETTLE {
                log::info!("drained: nothing in flight, exiting");
                break;
            }
            if now >= deadline {
                log::warn!(
                    "shutdown timeout: exiting with {} requests, fills or write-backs in flight",
                    work_in_flight()
                );
                // Their multipart uploads would stay in the bucket, parts
                // billed, until a lifecycle rule removed them.
                crate::writeback::abort_open_uploads(ABORT_WITHIN).await;
                break;
            }
            tokio::time::sleep(TICK).await;
        }
        exit(&c);
    });
}

/// SIGINT: stop now, waiting for nothing (a drain under way included),
/// but for the aborts of unfinished multipart uploads.
pub async fn stop_now(c: &Control) {
    log::warn!(
        "SIGINT: exiting now with {} requests, fills or write-backs in flight",
        work_in_flight()
    );
    c.draining.store(true, Ordering::SeqCst);
    crate::writeback::abort_open_uploads(ABORT_WITHIN).await;
    exit(c);
}

/// The process's end: what a destructor would do, had `exit` run them.
fn exit(c: &Control) -> ! {
    crate::access_log::flush();
    c.proxy.fills().remove_socket();
    std::process::exit(0);
}
