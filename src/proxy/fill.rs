//! The fill phase of a request (see `crate::fill`): a GET whose bucket
//! answer was 404 under a mirror rule, or one that finds a live fill for
//! its object in the request filter, is proxied to the fill peer (a Unix
//! socket) instead of the origin. Everything else about the response
//! (status, headers, keep-alive, a broken body) is Pingora's normal path.

use super::answer::{acting_rule, PeerAnswer};
use super::{origin, Answer, RequestCtx, Site};
use crate::errors::S3Error;
use crate::fill::{Attached, FetchJob, FillKey, Fills};
use crate::mirror::origin_request_headers;
use crate::origin_auth::configured_target;
use crate::rules::{Action, Probe};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A request reading a fill.
pub struct FillRun {
    pub att: Attached,
    /// Found live in the request filter (the bucket was not asked).
    pub joined: bool,
    pub rule: usize,
    pub captures: Vec<String>,
    pub status: u16,
    pub bytes: u64,
    pub started: Instant,
    /// The configured origin's host (for the access log).
    pub origin_host: String,
    /// A fallback to the plain path stores the object (not while the
    /// bucket is unreachable).
    pub write_back: bool,
    /// This request started the fill (a bucket 404 may also find one
    /// another request started meanwhile: then it joined).
    pub started_it: bool,
}

/// The fill a GET of `key` under rule `idx` would read; an error when
/// the rule rewrites the key into one no origin may be asked for.
pub fn job(
    site: &Site,
    key: &str,
    idx: usize,
    captures: &[String],
    req: &RequestHeader,
) -> Result<FetchJob, S3Error> {
    let m = origin::rule(site, idx).ok_or_else(|| S3Error::Internal("no mirror rule".into()))?;
    let origin_key = m.rewrite.apply(key, captures)?;
    let query = req.uri.query().filter(|_| m.pass_query_string);
    let primary = configured_target(&m.url, m.auth.as_ref(), &origin_key, query);
    let secondary = m
        .secondary_url
        .as_ref()
        .map(|u| configured_target(u, m.secondary_auth.as_ref(), &origin_key, query));
    let headers = origin_request_headers(&m.headers, &req.headers);
    let fill_key = FillKey::new(&site.name, key, &primary.full_url(), &headers);
    Ok(FetchJob {
        fill_key,
        key: key.to_string(),
        primary,
        secondary,
        headers,
        auth: m.auth.clone(),
        secondary_auth: m.secondary_auth.clone(),
        follow_redirect: m.follow_redirect,
        timeout: m.timeout,
        check_md5: m.check_md5,
        store: Some(site.bucket.clone()),
        metrics: site.metrics().rule(idx).cloned(),
        request_id: None,
    })
}

/// Request filter: a GET whose object has a live fill joins it without
/// asking the bucket. Hits pay one atomic load while no fill is live.
pub fn try_join(fills: &Fills, site: &Site, ctx: &mut RequestCtx, session: &Session) {
    let req = session.req_header();
    if !fills.any_live() || req.method != http::Method::GET || !fills.has_key(&ctx.key) {
        return;
    }
    // The rule the bucket's 404 would meet (`on_bucket_error`).
    let probe = Probe::new(&ctx.key, req, Some(404));
    let Some((idx, rule, caps, _)) = acting_rule(session, site, &ctx.key, &probe) else {
        return;
    };
    if !matches!(rule.action, Action::Mirror(_)) {
        return;
    }
    let Ok(job) = job(site, &ctx.key, idx, &caps, req) else {
        return; // the bucket's answer decides; a bad rewrite is refused then
    };
    if let Some(att) = fills.join(&job.fill_key) {
        let host = job.primary.authority.clone();
        let mut run = FillRun::new(att, true, idx, caps, host);
        // A fill that stores nothing (bucket unreachable): its fallback
        // does not write back either.
        run.write_back = run.att.fill.stores();
        ctx.fill = Some(run);
    }
}

impl FillRun {
    fn new(
        att: Attached,
        joined: bool,
        rule: usize,
        captures: Vec<String>,
        origin_host: String,
    ) -> FillRun {
        FillRun {
            att,
            joined,
            rule,
            captures,
            status: 0,
            bytes: 0,
            started: Instant::now(),
            origin_host,
            write_back: true,
            started_it: false,
        }
    }
}

/// A bucket 404 under mirror rule `idx` for a GET: read the fill (or,
/// `mode: async`, answer 302 and fill in the background); or, when a
/// fill of this object committed it moments ago, ask the bucket again.
/// Without `store` (the bucket could not be reached and the rule has
/// `mirror_on_bucket_error`): read a fill that stores nothing, so GETs
/// of one object during an outage still cost one origin fetch.
pub fn start(
    fills: &Arc<Fills>,
    site: &Arc<Site>,
    ctx: &mut RequestCtx,
    idx: usize,
    captures: Vec<String>,
    req: &RequestHeader,
    store: bool,
) -> Box<Error> {
    let mut job = match job(site, &ctx.key, idx, &captures, req) {
        Ok(j) => j,
        Err(e) => return origin::answer(ctx, Answer::Error(e)),
    };
    if !store {
        job.store = None;
    }
    if store && !ctx.rechecked && fills.recently_stored(&job.fill_key) {
        // This 404 left the bucket before a fill of the same object
        // committed it (the fill has retired since, or it would have been
        // joined): ask the bucket once more instead of fetching the object
        // from the origin a second time.
        ctx.rechecked = true;
        log::info!(
            "{} fill key={:?}: the bucket's 404 raced a write-back; asking the bucket again",
            ctx.request_id,
            ctx.key
        );
        return origin::reroute(ctx, "bucket 404 raced a write-back");
    }
    job.request_id = Some(ctx.request_id);
    // Nothing to store: the client reads the fill rather than a 302.
    if store && is_async(site, idx) {
        let location = job.primary.full_url();
        if !fills.start_background(job) {
            log::warn!(
                "{} async mirror key={:?}: no fill could start (spool budget or unattended cap); not stored",
                ctx.request_id,
                ctx.key
            );
        }
        return async_redirect(ctx, idx, location);
    }
    let key = ctx.key.clone();
    let host = job.primary.authority.clone();
    match fills.join_or_start(job) {
        Some((att, started)) => {
            let mut run = FillRun::new(att, false, idx, captures, host);
            run.write_back = store && run.att.fill.stores();
            run.started_it = started;
            ctx.fill = Some(run);
            origin::reroute(ctx, "bucket 404: reading the fill")
        }
        None => {
            log::info!("fill fallback key={key:?}: spool budget or disk; plain mirror");
            if let Err(e) = origin::start(site, ctx, idx, &captures, req.uri.query(), store) {
                return origin::answer(ctx, Answer::Error(S3Error::InvalidUri(e)));
            }
            origin::reroute(ctx, "bucket 404: mirroring (no fill)")
        }
    }
}

/// Whether mirror rule `idx` is `mode: async`.
fn is_async(site: &Site, idx: usize) -> bool {
    origin::rule(site, idx).is_some_and(|m| m.mode == crate::config::MirrorMode::Async)
}

/// An async mirror's answer: 302 to the origin's URL of the object, the
/// fill running in the background.
fn async_redirect(ctx: &mut RequestCtx, idx: usize, location: String) -> Box<Error> {
    ctx.answered_by = Some(idx);
    origin::answer(
        ctx,
        Answer::Redirect {
            code: 302,
            location,
        },
    )
}

/// The fill peer; no read timeout: the fill's own origin timeout decides
/// when a stalled transfer fails.
pub fn peer(fills: &Fills) -> Result<HttpPeer> {
    let path = fills
        .socket()
        .to_str()
        .ok_or_else(|| Error::explain(InternalError, "fill socket path is not UTF-8"))?;
    let mut peer = HttpPeer::new_uds(path, false, "fill".into())?;
    peer.options.connection_timeout = Some(Duration::from_secs(5));
    peer.options.idle_timeout = Some(Duration::from_secs(60));
    Ok(peer)
}

/// The request to the fill peer: its path, the client's Range (no other
/// client header) and the client request's id (for an error's XML).
pub fn request(
    upstream: &mut RequestHeader,
    run: &FillRun,
    request_id: crate::errors::RequestId,
) -> Result<()> {
    peer_request(upstream, &format!("/fill/{}", run.att.fill.id), request_id)
}

/// The request for an error answer parked for this request.
pub fn answer_request(
    fills: &Arc<Fills>,
    upstream: &mut RequestHeader,
    pa: &mut PeerAnswer,
    request_id: crate::errors::RequestId,
) -> Result<()> {
    pa.park(fills, request_id);
    peer_request(upstream, crate::fill::ANSWER_PATH, request_id)
}

fn peer_request(
    upstream: &mut RequestHeader,
    path: &str,
    request_id: crate::errors::RequestId,
) -> Result<()> {
    // A fill has no validator a client could hold (its answer carries no
    // ETag or Last-Modified): under `If-Range` the range is not asked for,
    // the whole object is, as a failed If-Range says.
    let keep_range = !upstream.headers.contains_key(http::header::IF_RANGE);
    let names: Vec<http::HeaderName> = upstream
        .headers
        .keys()
        .filter(|n| !(keep_range && *n == http::header::RANGE))
        .cloned()
        .collect();
    for n in names {
        upstream.remove_header(&n);
    }
    let uri = path
        .parse::<http::Uri>()
        .map_err(|e| Error::because(InternalError, "fill path", e))?;
    upstream.set_uri(uri);
    upstream.insert_header(http::header::HOST, "fill")?;
    upstream.insert_header(crate::fill::REQUEST_ID, request_id.to_string())?;
    Ok(())
}

/// The fill peer's answer: a body to stream, an S3 error it wrote for
/// this client (passed on), or a fallback to the plain path.
pub fn on_response(
    site: &Arc<Site>,
    resp: &mut ResponseHeader,
    ctx: &mut RequestCtx,
    req: &RequestHeader,
) -> Result<()> {
    let outcome = resp
        .headers
        .get(crate::fill::OUTCOME)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(run) = ctx.fill.as_mut() else {
        return Ok(());
    };
    run.status = resp.status.as_u16();
    let Some(outcome) = outcome else {
        return Ok(()); // 200, 206 or 416 from the spool
    };
    match outcome.as_str() {
        // The peer wrote the client's S3 error: passed on as a normal
        // response, so the client's connection stays open.
        "not-found" | "failed" => {
            resp.remove_header(crate::fill::OUTCOME);
            ctx.outcome = Some(if outcome == "not-found" {
                crate::metrics::Outcome::OriginMiss
            } else {
                crate::metrics::Outcome::Error
            });
            Ok(())
        }
        "fallback" => {
            // The spool can't hold it: this request fetches it the plain way.
            let Some(run) = ctx.fill.take() else {
                return Ok(());
            };
            // Unless the rule is async: its background fill streams into
            // the bucket meanwhile (`fill::direct`), and a GET gets the
            // 302 to the origin as the first one did.
            if run.write_back && is_async(site, run.rule) {
                if let Ok(job) = job(site, &ctx.key, run.rule, &run.captures, req) {
                    return Err(async_redirect(ctx, run.rule, job.primary.full_url()));
                }
            }
            let store = run.write_back;
            if let Err(e) =
                origin::start(site, ctx, run.rule, &run.captures, req.uri.query(), store)
            {
                return Err(origin::answer(ctx, Answer::Error(S3Error::InvalidUri(e))));
            }
            Err(origin::reroute(ctx, "fill fallback: mirroring (no fill)"))
        }
        other => Err(origin::answer(
            ctx,
            Answer::Error(S3Error::Internal(format!("fill peer: {other}"))),
        )),
    }
}

/// The logging phase's line for a request that read a fill.
pub fn log(ctx: &RequestCtx, failed: bool) {
    if let Some(run) = &ctx.fill {
        log::info!(
            "{} fill key={:?} joined={} status={} bytes={} error={} ms={}",
            ctx.request_id,
            ctx.key,
            run.joined,
            run.status,
            run.bytes,
            failed,
            run.started.elapsed().as_millis()
        );
    }
}
