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
    // The fill stays joinable until the object is in the bucket.
    let upload = hold.another();
    let counted = crate::writeback::counted();
    hold.fills.rt.spawn(crate::writeback::store_from_fill(
        wb,
        cursor,
        counted,
        move |stored| {
            if stored {
                upload.fills.stored(&upload.fill);
                // Out of the registry now, even if the fetch task has not
                // dropped its hold yet: the object is in the bucket.
                upload.fills.retire(&upload.fill);
            }
            drop(upload);
        },
    ));
}

/// Asks the origin (hops, secondary) until it answers 200, with the URL
/// for `x-oss-tag`, or decides the outcome.
async fn open(fills: &Fills, job: &FetchJob) -> Result<(reqwest::Response, String), Outcome> {
    let mut configured = job.primary.clone();
    let mut target = configured.clone();
    let mut auth = job.auth.as_ref();
    let mut on_secondary = false;
    let mut hops = 0u8;
    loop {
        let same = policy::same_origin(&configured, &target);
        let headers: &[_] = if same { &job.headers } else { &[] };
        // A hop from a public origin to another one connects to public
        // addresses only: the name was checked before the hop
        // (`check_hop`), and `PublicOnly` keeps the connect to what passes.
        let public_only = !same && !policy::is_internal(&configured).await;
        let client = fills
            .origin_client(&target.trust, public_only)
            .map_err(|e| Outcome::Failed(e.to_string()))?;
        let count = |r: OriginResult| job.metrics.as_ref().map(|m| m.origin(r));
        let creds = origin_auth::for_target(auth, &configured, &target);
        let why = match request(&client, &target, headers, creds, job.timeout).await {
            Ok(resp) => match resp.status().as_u16() {
                200 => return Ok((resp, configured.url.clone())),
                404 => {
                    count(OriginResult::NotFound);
                    return Err(Outcome::NotFound);
                }
                // S3's wrong-region answers: no Location to follow.
                s @ (301 | 400)
                    if creds.is_some_and(OriginAuth::is_sigv4)
                        && !resp.headers().contains_key(http::header::LOCATION) =>
                {
                    count(OriginResult::BadStatus);
                    let hint = origin_auth::region_hint(resp, job.timeout).await;
                    origin_auth::log_region_hint(
                        &format!("fill key={:?}", job.key),
                        s,
                        &target.url,
                        hint,
                    );
                    format!("origin answered {s}")
                }
                s @ (301 | 302 | 303 | 307 | 308) if job.follow_redirect && hops < MAX_HOPS => {
                    let next = resp
                        .headers()
                        .get(http::header::LOCATION)
                        .and_then(|l| redirect_target(&target, &location_text(l)));
                    // An attempt that ends here is a bad status like any
                    // other (it counted nothing before).
                    match next {
                        None => {
                            count(OriginResult::BadStatus);
                            format!("origin answered {s} without a usable Location")
                        }
                        Some(n) => match policy::check_hop(&configured, &n).await {
                            Ok(()) => {
                                hops += 1;
                                target = n;
                                continue;
                            }
                            Err(why) => {
                                count(OriginResult::BadStatus);
                                why
                            }
                        },
                    }
                }
                s => {
                    count(OriginResult::BadStatus);
                    format!("origin answered {s}")
                }
            },
            Err((timeout, why)) => {
                count(if timeout {
                    OriginResult::Timeout
                } else {
                    OriginResult::ConnectError
                });
                why
            }
        };
        match (&job.secondary, on_secondary) {
            (Some(sec), false) => {
                log::info!(
                    "fill key={:?}: primary failed ({why}), trying secondary",
                    job.key
                );
                on_secondary = true;
                hops = 0;
                auth = job.secondary_auth.as_ref();
                configured = sec.clone();
                target = sec.clone();
            }
            _ => return Err(Outcome::Failed(why)),
        }
    }
}

/// One origin GET, up to its response header, authenticated with `auth`
/// (signed afresh on every call); the error says whether it was the
/// timeout.
async fn request(
    client: &reqwest::Client,
    target: &OriginTarget,
    headers: &[(http::HeaderName, http::HeaderValue)],
    auth: Option<&OriginAuth>,
    timeout: Duration,
) -> Result<reqwest::Response, (bool, String)> {
    let mut sent = http::HeaderMap::new();
    // `Host` exactly as signed (reqwest would drop an explicit default port).
    let host =
        http::HeaderValue::from_str(&target.authority).map_err(|e| (false, e.to_string()))?;
    sent.insert(http::header::HOST, host);
    for (k, v) in headers {
        sent.append(k.clone(), v.clone());
    }
    if let Some(a) = auth {
        // The credential replaces a rule header of the same name.
        for (k, v) in a
            .headers("GET", target, headers)
            .map_err(|e| (false, e.to_string()))?
        {
            sent.insert(k, v);
        }
    }
    let req = client.get(target.full_url()).headers(sent);
    match tokio::time::timeout(timeout, req.send()).await {
        Err(_) => Err((true, format!("no answer within {timeout:?}"))),
        Ok(Err(e)) => {
            // A refused or failed connection, or an answer the client
            // could not read (e.g. hyper's 100-header bound: "message
            // head is too large"): say which.
            let what = if e.is_connect() {
                "cannot connect to the origin"
            } else {
                "no readable answer from the origin"
            };
            let why = crate::errors::chain(&e);
            let hint = crate::tls::hint(&why);
            Err((e.is_timeout(), format!("{what}: {why}{hint}")))
        }
        Ok(Ok(r)) => Ok(r),
    }
}
