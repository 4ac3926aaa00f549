//! The mirror phase of a request: from a bucket 404 to the origin's
//! answer, with retries (redirect hops, secondary origin) driven through
//! Pingora's retry loop, and the tee started on a 200.

use super::answer::PeerAnswer;
use super::{Answer, RequestCtx, Site};
use crate::errors::S3Error;
use crate::fill::policy::same_origin;
use crate::key::KeyError;
use crate::metrics::OriginResult;
use crate::mirror::{
    content_length, content_md5, filter_origin_response, location_text, origin_request_headers,
    oss_tag, redirect_target, storable_framing, stored_headers, OriginTarget,
};
use crate::origin_auth::{self, configured_target, OriginAuth};
use crate::rules::{Action, Mirror};
use crate::writeback::{self, Job, Tee};
use bytes::Bytes;
use md5::{Digest, Md5};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use std::sync::Arc;
use std::time::Instant;

#[path = "mirror_run.rs"]
mod mirror_run;
pub use mirror_run::{peer, MirrorRun};

/// Most origin 3xx hops followed (SPEC 2).
pub const MAX_HOPS: u8 = 10;

/// Pingora's tries per request (its `max_retries`, 16 by default): every
/// reroute is one. The longest route: the bucket, the bucket again for
/// the whole object after an If-Range validator failed, the bucket again
/// after a commit race, the fill peer (a spool fallback), then the plain path's
/// primary and secondary origins with `MAX_HOPS` hops each, and the fill
/// peer again to write an error answer; plus a few for Pingora retrying a
/// pooled connection the peer had closed. At 16, such a route ended in a
/// 500 although the contract allows it.
/// And the origin addresses tried after a failed connect.
pub const MAX_TRIES: usize = 4 + 2 * (MAX_HOPS as usize + 1) + 1 + 4 + MAX_ADDR_FALLBACKS as usize;

/// Further addresses of an origin name tried after a connect failed, per
/// request (as nginx and the fill path's client try each address a name
/// resolves to): a dual-stack origin whose IPv6 address is unreachable
/// from here, or one address of a round-robin name down.
pub const MAX_ADDR_FALLBACKS: u8 = 3;

/// The mirror settings of rule `idx`.
pub fn rule(site: &Site, idx: usize) -> Option<&Mirror> {
    match &site.rules.get(idx)?.action {
        Action::Mirror(m) => Some(m),
        Action::Redirect(_) => None,
    }
}

/// The request to the origin: nothing of the client's but what the rule's
/// header policy lets through (and that only to the configured origin),
/// then the credentials, signed last, over the headers as they are sent.
/// Runs again on every attempt, so each one is signed afresh.
pub fn request(
    client: &RequestHeader,
    upstream: &mut RequestHeader,
    site: &Site,
    run: &MirrorRun,
) -> Result<()> {
    let names: Vec<http::HeaderName> = upstream.headers.keys().cloned().collect();
    for n in names {
        upstream.remove_header(&n);
    }
    let uri = run
        .target
        .path_and_query
        .parse::<http::Uri>()
        .map_err(|e| Error::because(InternalError, "origin path", e))?;
    upstream.set_uri(uri);
    upstream.insert_header(http::header::HOST, run.target.authority.as_str())?;
    let Some(m) = rule(site, run.rule) else {
        return Ok(());
    };
    let headers = if same_origin(&run.configured, &run.target) {
        origin_request_headers(&m.headers, &client.headers)
    } else {
        Vec::new()
    };
    for (n, v) in &headers {
        upstream.insert_header(n.clone(), v.clone())?;
    }
    if let Some(auth) = run.auth(m) {
        let signed = auth
            .headers(upstream.method.as_str(), &run.target, &headers)
            .map_err(|e| Error::because(InternalError, "origin credentials", e))?;
        for (n, v) in signed {
            upstream.insert_header(n, v)?;
        }
    }
    Ok(())
}

/// A deliberate retry: Pingora calls `upstream_peer` again, nothing has
/// reached the client yet.
pub fn reroute(ctx: &mut RequestCtx, why: &'static str) -> Box<Error> {
    ctx.rerouting = true;
    let mut e = Error::explain(ErrorType::Custom("reroute"), why);
    e.set_retry(true);
    e
}

/// Ends the request with `answer`. An error is written by the fill peer
/// (`PeerAnswer`), so the client's connection stays open; anything else
/// (a redirect, which `answer::in_place` usually writes over the
/// upstream's header; an error past the try budget) is left for
/// `fail_to_proxy` ([`answer_here`]).
pub fn answer(ctx: &mut RequestCtx, answer: Answer) -> Box<Error> {
    match answer {
        Answer::Error(e) if ctx.peer_answer.is_none() && ctx.tries < MAX_TRIES => {
            ctx.peer_answer = Some(Box::new(PeerAnswer::new(e)));
            reroute(ctx, "answer through the fill peer")
        }
        a => answer_here(ctx, a),
    }
}

/// Ends the request with `answer`, sent by `fail_to_proxy`: Pingora
/// closes the client's connection after it.
pub fn answer_here(ctx: &mut RequestCtx, answer: Answer) -> Box<Error> {
    ctx.answer = Some(answer);
    answered()
}

/// Ends the request with the answer already decided: `ctx.answer`, or a
/// `PeerAnswer` the fill peer did not give, which `fail_to_proxy` writes.
pub fn answered() -> Box<Error> {
    let mut e = Error::explain(ErrorType::Custom("answered"), "answered by origin-pull");
    e.set_retry(false);
    e
}

/// The origin could not give the object (non-200/404, or no answer
/// before the timeout): try the secondary, else 424.
pub fn origin_failed(ctx: &mut RequestCtx, why: String) -> Box<Error> {
    let site = ctx.site.clone();
    if let (Some(site), Some(run)) = (site, ctx.mirror.as_mut()) {
        if let Some(m) = rule(&site, run.rule) {
            if run.switch_to_secondary(m) {
                log::info!(
                    "{} mirror: primary failed ({why}), trying secondary",
                    ctx.request_id
                );
                return reroute(ctx, "secondary origin");
            }
        }
    }
    answer(ctx, Answer::Error(S3Error::MirrorFailed(why)))
}

/// Handles the origin's response header.
pub fn on_response(
    session: &Session,
    resp: &mut ResponseHeader,
    ctx: &mut RequestCtx,
    uploads: &tokio::runtime::Handle,
) -> Result<()> {
    let (Some(site), Some(run)) = (ctx.site.clone(), ctx.mirror.as_mut()) else {
        return Ok(());
    };
    let Some(m) = rule(&site, run.rule) else {
        return Ok(());
    };
    let status = resp.status.as_u16();
    run.status = status;
    match status {
        200 => {
            let tag = oss_tag(&run.tag_url);
            let is_get = session.req_header().method == http::Method::GET;
            let store = run.write_back && is_get;
            if store && !storable_framing(&resp.headers) {
                writeback::unframed(&site.bucket, &ctx.key, Some(ctx.request_id));
            } else if store {
                run.tee = Some(Tee::start(
                    Job {
                        bucket: site.bucket.clone(),
                        key: ctx.key.clone(),
                        headers: stored_headers(&resp.headers),
                        tag: tag.clone(),
                        expected_len: content_length(&resp.headers),
                        md5: if m.check_md5 {
                            content_md5(&resp.headers)
                        } else {
                            None
                        },
                        request_id: Some(ctx.request_id),
                    },
                    uploads,
                ));
            }
            run.md5 = content_md5(&resp.headers)
                .filter(|_| m.check_md5 && is_get)
                .map(|want| Box::new((Md5::new(), want)));
            filter_origin_response(resp, &tag)?;
            count(&site, run.rule, OriginResult::Ok);
            Ok(())
        }
        404 => {
            count(&site, run.rule, OriginResult::NotFound);
            Err(answer(ctx, Answer::Error(S3Error::NoSuchKey)))
        }
        // S3's wrong-region answers: no Location to follow.
        301 | 400
            if run.auth(m).is_some_and(OriginAuth::is_sigv4)
                && !resp.headers.contains_key(http::header::LOCATION) =>
        {
            count(&site, run.rule, OriginResult::BadStatus);
            let hint = origin_auth::s3_region_hint(&resp.headers, None);
            let what = format!("{} mirror key={:?}", ctx.request_id, ctx.key);
            origin_auth::log_region_hint(&what, status, &run.target.url, hint);
            Err(origin_failed(ctx, format!("origin answered {status}")))
        }
        301 | 302 | 303 | 307 | 308 if m.follow_redirect && run.hops < MAX_HOPS => {
            let next = resp
                .headers
                .get(http::header::LOCATION)
                .and_then(|l| redirect_target(&run.target, &location_text(l)));
            match next {
                Some(t) => {
                    run.hops += 1;
                    run.move_to(t);
                    Err(reroute(ctx, "origin redirect"))
                }
                None => {
                    count(&site, run.rule, OriginResult::BadStatus);
                    Err(origin_failed(
                        ctx,
                        format!("origin answered {status} without a usable Location"),
                    ))
                }
            }
        }
        _ => {
            count(&site, run.rule, OriginResult::BadStatus);
            Err(origin_failed(ctx, format!("origin answered {status}")))
        }
    }
}

/// Counts one origin answer (or failure) of rule `idx`.
pub fn count(site: &Site, idx: usize, r: OriginResult) {
    if let Some(m) = site.metrics().rule(idx) {
        m.origin(r);
    }
}

/// Starts a mirror for the bucket's answer when a rule says so. A key the
/// rule rewrites into an invalid one is refused (never sent to the origin).
pub fn start(
    site: &Arc<Site>,
    ctx: &mut RequestCtx,
    idx: usize,
    captures: &[String],
    query: Option<&str>,
    write_back: bool,
) -> Result<(), KeyError> {
    let Some(m) = rule(site, idx) else {
        return Ok(());
    };
    let origin_key = m.rewrite.apply(&ctx.key, captures)?;
    let query = if m.pass_query_string {
        query.map(str::to_string)
    } else {
        None
    };
    ctx.mirror = Some(Box::new(MirrorRun::new(
        idx, m, origin_key, query, write_back,
    )));
    Ok(())
}

/// The logging phase's line for a request on the plain mirror path.
pub fn log(ctx: &RequestCtx, failed: bool) {
    if let Some(run) = &ctx.mirror {
        let wb = match &run.tee {
            None => "none",
            Some(t) if t.abandoned() => "abandoned",
            Some(_) if failed => "aborted",
            Some(_) => "queued",
        };
        log::info!(
            "{} mirror key={:?} origin={} status={} bytes={} write_back={} ms={}",
            ctx.request_id,
            ctx.key,
            run.target.url,
            run.status,
            run.bytes,
            wb,
            run.started.elapsed().as_millis()
        );
    }
}
