//! The fill task: one origin fetch (redirect hops, the secondary origin,
//! timeouts and the header policy as in SPEC section 2), its body written
//! to the spool and published, verified at the end, and the write-back
//! started from the spool. Owned by no client: it runs until the body is
//! complete, it fails, or the unattended rules cancel it.

use super::{policy, Cursor, Fill, FillKey, Fills, Head, Hold, Outcome, State};
use crate::bucket::Bucket;
use crate::errors::RequestId;
use crate::metrics::{OriginResult, RuleMetrics};
use crate::mirror::{
    content_length, content_md5, location_text, oss_tag, redirect_target, storable_framing,
    stored_headers, OriginTarget,
};
use crate::origin_auth::{self, OriginAuth};
use futures_util::{FutureExt, StreamExt};
use md5::{Digest, Md5};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[path = "fetch_origin.rs"]
mod origin;
use origin::open;

/// Most origin 3xx hops followed (SPEC 2).
const MAX_HOPS: u8 = 10;
/// Readers are woken at most once per this many new bytes, unless the
/// origin has nothing more right now (then at once), so 100 readers are
/// not woken for every 16 KiB the origin sends.
const PUBLISH_STEP: u64 = 256 << 10;

/// Everything a fill needs, decided when it is started.
pub struct FetchJob {
    pub fill_key: FillKey,
    /// The bucket key the object is stored under.
    pub key: String,
    pub primary: OriginTarget,
    pub secondary: Option<OriginTarget>,
    /// Sent to the configured origin (never on a hop to another origin).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Credentials for `primary` and `secondary` (same rule as `headers`).
    pub auth: Option<OriginAuth>,
    pub secondary_auth: Option<OriginAuth>,
    pub follow_redirect: bool,
    /// To the response header, and the idle timeout on the body.
    pub timeout: Duration,
    /// The origin's Content-MD5 must match (when it sends one).
    pub check_md5: bool,
    /// Write the object back to this bucket.
    pub store: Option<Arc<Bucket>>,
    /// The rule's origin counters (results, egress bytes).
    pub metrics: Option<RuleMetrics>,
    /// The request that started the fill: the write-back's log line
    /// carries it.
    pub request_id: Option<RequestId>,
}

/// The writer's end of the progress channel. Dropped without a terminal
/// state (error, panic, cancel, shutdown), it publishes a failure: a
/// reader must never take a dead writer for a clean end of body.
pub struct Publisher(watch::Sender<State>);

impl Publisher {
    pub fn new(tx: watch::Sender<State>) -> Publisher {
        Publisher(tx)
    }
    pub(super) fn set(&self, s: State) {
        self.0.send_replace(s);
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.0.send_if_modified(|s| {
            if s.is_terminal() {
                return false;
            }
            *s = State::Failed("the fill stopped".into());
            true
        });
    }
}

pub(super) async fn run(fills: Arc<Fills>, fill: Arc<Fill>, job: FetchJob, publisher: Publisher) {
    let _in_flight = crate::metrics::InFlight::new(&crate::metrics::METRICS.fills_in_flight);
    let hold = Hold::first(fills.clone(), fill.clone());
    let done = tokio::select! {
        r = fetch(&hold, &job, &publisher) => r,
        _ = fill.cancel.notified() => Err("cancelled: nobody reads it and too much remains".into()),
    };
    if let Some(m) = &job.metrics {
        // The 200's body decides (answers were counted in `open`).
        match &done {
            Err(why) if why.starts_with("MD5") => m.origin(OriginResult::Md5Mismatch),
            Err(why) if why.starts_with("origin stalled") => m.origin(OriginResult::Timeout),
            Err(_) => m.origin(OriginResult::Truncated),
            Ok(true) => m.origin(OriginResult::Ok),
            Ok(false) => {}
        }
    }
    let done = done.map(|_| ());
    match done {
        Ok(()) => drop(hold),
        Err(why) => {
            if why.starts_with("cancelled") {
                log::info!("fill cancelled key={:?}: {why}", job.key);
            } else {
                log::warn!("fill failed key={:?}: {why}", job.key);
            }
            publisher.set(State::Failed(why.into()));
            fills.retire(&fill);
        }
    }
}

/// Ok: the fill ended with a body (true) or an answer (false); Err: it
/// broke off.
async fn fetch(hold: &Hold, job: &FetchJob, publisher: &Publisher) -> Result<bool, String> {
    let (fills, fill) = (&hold.fills, &hold.fill);
    let (resp, tag_url) = match open(fills, job).await {
        Ok(r) => r,
        Err(outcome) => {
            if let Outcome::Failed(why) = &outcome {
                log::warn!("fill key={:?}: origin failed: {why}", job.key);
            }
            publisher.set(State::Answer(outcome));
            return Ok(false);
        }
    };
    let h = resp.headers();
    let len = content_length(h);
    let storable = storable_framing(h);
    if !storable {
        if let Some(bucket) = &job.store {
            crate::writeback::unframed(bucket, &job.key, job.request_id);
        }
    }
    let want_md5 = if job.check_md5 { content_md5(h) } else { None };
    let stored_headers = stored_headers(h);
    let mut headers = stored_headers.clone();
    let tag = oss_tag(&tag_url);
    headers.push(("x-oss-tag".into(), tag.clone()));
    let head = Arc::new(Head { headers, len });
    let mut upload = job
        .store
        .clone()
        .filter(|_| storable)
        .map(|bucket| crate::writeback::Job {
            bucket,
            key: job.key.clone(),
            headers: stored_headers,
            tag,
            expected_len: len,
            md5: None, // checked here, before the fill may end well
            request_id: job.request_id,
        });
    // A background fill (async) of unknown length skips the spool: a
    // chunked body grows its reservation past the budget if it must
    // (`Spool`), which a fill nobody reads, never cancelled for size,
    // must not do.
    let unspooled = match len {
        Some(n) if !fill.spool.reserve(n) => Some(format!(
            "{n} bytes exceed the spool budget ({} in use)",
            fills.budget.used()
        )),
        None if fill.background => Some("a body of unknown length".to_string()),
        _ => None,
    };
    if let Some(why) = unspooled {
        // Clients that join go the plain way (async rules: a 302).
        publisher.set(State::Answer(Outcome::Fallback));
        if let Some(mut wb) = upload.take().filter(|_| fill.background) {
            wb.md5 = want_md5; // checked by the uploader this time
            return super::direct::store(hold, job, resp, wb, &why).await;
        }
        log::info!("fill fallback key={:?}: {why}", job.key);
        return Ok(false);
    }
    publisher.set(State::Body {
        head: head.clone(),
        written: 0,
    });
    // The upload starts once the first bytes went out, not with the
    // header: creating a multipart upload costs the bucket and this
    // machine a few ms of CPU that the first client's TTFB would pay
    // (measured: +3 to +7 ms on a 64 MiB miss when started here).
    let mut body = resp.bytes_stream();
    let mut md5 = Md5::new();
    let (mut written, mut published) = (0u64, 0u64);
    loop {
        let next = match body.next().now_or_never() {
            Some(n) => n,
            None => {
                // The origin has nothing more right now: let readers in.
                if written > published {
                    publisher.set(State::Body {
                        head: head.clone(),
                        written,
                    });
                    published = written;
                    start_upload(hold, upload.take());
                }
                tokio::time::timeout(job.timeout, body.next())
                    .await
                    .map_err(|_| format!("origin stalled for {:?}", job.timeout))?
            }
        };
        let chunk = match next {
            None => break,
            Some(Ok(c)) => c,
            Some(Err(e)) => return Err(format!("origin body: {}", crate::errors::chain(&e))),
        };
        if len.is_some_and(|l| written + chunk.len() as u64 > l) {
            return Err("origin sent more than its Content-Length".into());
        }
        fill.spool
            .write_at(written, &chunk, len.is_none())
            .map_err(|e| format!("spool write: {e}"))?;
        if want_md5.is_some() {
            md5.update(&chunk);
        }
        if let Some(m) = &job.metrics {
            m.bytes.inc_by(chunk.len() as u64);
        }
        written += chunk.len() as u64;
        if written - published >= PUBLISH_STEP {
            publisher.set(State::Body {
                head: head.clone(),
                written,
            });
            published = written;
            start_upload(hold, upload.take());
        }
    }
    // A body too small to have been published yet.
    start_upload(hold, upload.take());
    if let Some(l) = len {
        if l != written {
            return Err(format!("origin sent {written} of {l} bytes"));
        }
    }
    if let Some(want) = want_md5 {
        if md5.finalize().as_slice() != want {
            return Err("MD5 mismatch with the origin's Content-MD5".into());
        }
    }
    publisher.set(State::Done { head, len: written });
    Ok(true)
}

/// Starts the write-back from the spool (once: `job` is taken).
fn start_upload(hold: &Hold, job: Option<crate::writeback::Job>) {
    let Some(wb) = job else { return };
    let cursor = Cursor::new(hold.fill.clone(), 0);
    let settled = hold.write_back();
    let counted = crate::writeback::counted();
    hold.fills.rt.spawn(crate::writeback::store_from_fill(
        wb, cursor, counted, settled,
    ));
}
