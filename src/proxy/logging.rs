//! The logging phase: the request's outcome, its metrics and its access
//! log line. Runs once per request, after the response (or a fatal error).

use super::RequestCtx;
use crate::access_log::{self, Record};
use crate::metrics::{OriginResult, Outcome, SiteMetrics};
use pingora::prelude::*;
use pingora::proxy::Session;
use std::sync::LazyLock;

/// Requests that matched no site (unknown host, or refused before the
/// site was looked up) count under `site="-"`.
static NO_SITE: LazyLock<SiteMetrics> = LazyLock::new(crate::metrics::no_site);

pub fn finish(session: &Session, e: Option<&Error>, ctx: &RequestCtx) {
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let outcome = outcome(e, ctx, status);
    let bytes = session.body_bytes_sent() as u64;
    let took = ctx.started.elapsed();
    let metrics = ctx.site.as_ref().map_or(&*NO_SITE, |s| s.metrics());
    metrics.request(outcome, status, bytes, took, ctx.ttfb);
    if let (Some(run), Some(site)) = (&ctx.mirror, &ctx.site) {
        if let Some(m) = site.metrics().rule(run.rule) {
            m.bytes.inc_by(run.bytes);
            // The 200 was counted `ok` at its header; a body that broke
            // off is counted again as truncated.
            if run.status == 200 && e.is_some_and(|e| e.esource() == &ErrorSource::Upstream) {
                m.origin(OriginResult::Truncated);
            }
        }
    }
    if access_log::enabled() {
        access_log::request(record(session, ctx, outcome, status, bytes, took));
    }
}

fn outcome(e: Option<&Error>, ctx: &RequestCtx, status: u16) -> Outcome {
    if let Some(o) = ctx.outcome {
        return o;
    }
    if let Some(e) = e {
        return match e.esource() {
            ErrorSource::Downstream => Outcome::ClientAbort,
            _ if ctx.mirror.is_some() || ctx.fill.is_some() => Outcome::Error,
            ErrorSource::Upstream => Outcome::BucketError,
            _ => Outcome::Error,
        };
    }
    if ctx.mirror.is_some() || ctx.fill.is_some() {
        Outcome::Mirror
    } else if status >= 500 || status == 0 {
        Outcome::BucketError
    } else {
        Outcome::Hit
    }
}

fn record(
    session: &Session,
    ctx: &RequestCtx,
    outcome: Outcome,
    status: u16,
    bytes: u64,
    took: std::time::Duration,
) -> Record {
    let req = session.req_header();
    // Raw bytes kept (non-ASCII as UTF-8, invalid bytes replaced): the
    // combined format writes them `\xHH`, JSON as text. (`to_str` would
    // have dropped a user agent or referer with one non-ASCII byte.)
    let header = |n: http::header::HeaderName| {
        req.headers
            .get(n)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let client = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let (rule, origin_host, origin_status, origin_bytes, write_back) =
        match (&ctx.mirror, &ctx.fill) {
            (Some(run), _) => (
                Some(run.rule),
                Some(run.target.authority.clone()),
                Some(run.status),
                Some(run.bytes),
                Some(match &run.tee {
                    None => "none",
                    Some(t) if t.abandoned() => "abandoned",
                    Some(_) => "started",
                }),
            ),
            // A fill's origin transfer belongs to the fill, not to this
            // client: its status is the fill peer's, its write-back is
            // logged when it ends (`event: write_back`).
            (None, Some(run)) => (
                Some(run.rule),
                Some(run.origin_host.clone()),
                Some(run.status),
                None,
                Some(match (run.att.fill.stores(), run.started_it) {
                    // The bucket was unreachable: nothing is written back.
                    (false, _) => "none",
                    (true, true) => "fill",
                    (true, false) => "joined_fill",
                }),
            ),
            // A redirect rule's answer, or an async mirror's 302 (its
            // fill is logged when its write-back ends).
            _ => (ctx.answered_by, None, None, None, None),
        };
    Record {
        at: std::time::SystemTime::now(),
        time: String::new(),
        request_id: ctx.request_id.to_string(),
        client,
        method: req.method.as_str().to_string(),
        // HTTP/2 names it in `:authority`, an HTTP/1.0 absolute-form
        // target in the target.
        host: header(http::header::HOST)
            .or_else(|| crate::rules::target_authority(req).map(str::to_string))
            .unwrap_or_default(),
        key: ctx.key.clone(),
        status,
        bytes_sent: bytes,
        duration_ms: took.as_secs_f64() * 1000.0,
        ttfb_ms: ctx.ttfb.map(|t| t.as_secs_f64() * 1000.0),
        site: ctx.site.as_ref().map(|s| s.name.clone()),
        rule,
        outcome: outcome.as_str(),
        bucket_status: ctx.bucket_status,
        origin_host,
        origin_status,
        origin_bytes,
        write_back,
        user_agent: header(http::header::USER_AGENT),
        // A referring URL's query may carry tokens: logged without it.
        referer: header(http::header::REFERER)
            .map(|r| r.split(['?', '#']).next().unwrap_or_default().to_string()),
    }
}
