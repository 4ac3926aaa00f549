//! The `ProxyHttp` implementation: the request's phases in order.
//!
//! - request_filter: site by `Host`, method, key (answered here when bad).
//! - upstream_peer / upstream_request_filter: the bucket, signed; or, in
//!   the mirror phase, the origin with the rule's header policy.
//! - upstream_response_filter: a bucket 404 that a rule covers reroutes to
//!   the origin through Pingora's retry loop (nothing has reached the
//!   client yet); the origin's answer is classified in `origin`.
//! - A GET under a mirror rule reads a shared fill instead (`fill`): the
//!   request filter joins a live one, a bucket 404 starts one; both are
//!   proxied to the fill peer, which streams the spool.
//! - upstream_response_body_filter: the tee to the bucket (plain path).
//! - Answers decided above: an S3 error is written by the fill peer (a
//!   fill's origin 404 or failure by the fill itself, any other error
//!   parked for its `/answer`: `answer::PeerAnswer`); a bodiless answer
//!   decided on an upstream's header (a redirect, any answer to a HEAD)
//!   is written over that header (`answer::in_place`). Pingora passes
//!   both on like responses, so the client's connection stays open.
//! - fail_to_proxy: what is left (the fill peer unreachable, errors
//!   after the header went out); Pingora closes the connection after it.

mod answer;
mod bucket;
mod failure;
mod fill;
mod framing;
mod logging;
mod origin;
mod state;

pub use answer::Answer;
use answer::{in_place, redirect_answer, respond};
pub use bucket::{ACAO_META, TAG_META};
pub use origin::MAX_TRIES;
pub use state::{OriginPull, Site, StartError, State};

use crate::errors::{new_request_id, RequestId, S3Error};
use crate::key::key_from_path;
use crate::metrics::{InFlight, Outcome, METRICS};
use crate::rules::{matching, Action, Probe};
use async_trait::async_trait;
use bytes::Bytes;
use origin::MirrorRun;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, ProxyWarnLogContext, Session};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Per-request state.
pub struct RequestCtx {
    pub request_id: RequestId,
    pub site: Option<Arc<Site>>,
    /// The decoded object key.
    pub key: String,
    /// Decided in a filter, written by `fail_to_proxy`.
    pub answer: Option<Answer>,
    /// Set while the request is in the mirror phase (plain path). Boxed:
    /// Pingora moves the whole request future (the context inside it)
    /// twice per request, and a hit never uses this.
    pub mirror: Option<Box<MirrorRun>>,
    /// Set while the request reads a shared fill.
    pub fill: Option<fill::FillRun>,
    /// Set while an error answer goes through the fill peer. Boxed like
    /// `mirror`: hits never use it.
    pub peer_answer: Option<Box<answer::PeerAnswer>>,
    /// Upstream attempts so far (Pingora allows `MAX_TRIES`).
    tries: usize,
    /// The current error is our own reroute, not a failure.
    rerouting: bool,
    /// The bucket was asked again after a fill just stored the object.
    pub rechecked: bool,
    /// A ranged read under the client's `If-Range` (see `bucket::request`).
    if_range: bucket::IfRange,
    /// The bucket's response header arrived (errors after it are not
    /// "bucket unreachable").
    bucket_answered: bool,
    /// `fail_to_proxy` sent an answer decided by a filter. Kept apart from
    /// `answer`, which it consumes: Pingora asks `suppress_error_log` after.
    answered: bool,
    /// The response is our answer written over an upstream's header
    /// (`answer::in_place`): the upstream's body is not passed on.
    pub drop_body: bool,
    /// When the request header was read (duration, TTFB).
    pub started: Instant,
    /// When the response header went out.
    pub ttfb: Option<Duration>,
    /// How the request was answered, when a filter decided it.
    pub outcome: Option<Outcome>,
    /// The bucket's status, and when its request was sent.
    pub bucket_status: Option<u16>,
    bucket_sent: Option<Instant>,
    /// The rule that answered without an origin transfer of this client's
    /// (a redirect, an async mirror's 302), for the access log.
    pub answered_by: Option<usize>,
    /// Counted in `origin_pull_requests_in_flight` while it lives.
    _in_flight: InFlight,
}

#[async_trait]
impl ProxyHttp for OriginPull {
    type CTX = RequestCtx;

    /// No downstream modules. Pingora's default adds its response
    /// compression module, disabled, which still builds and runs a context
    /// per request; origin-pull never compresses (objects keep their bytes
    /// and `Content-Length`).
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            request_id: new_request_id(),
            site: None,
            key: String::new(),
            answer: None,
            mirror: None,
            fill: None,
            peer_answer: None,
            tries: 0,
            rerouting: false,
            rechecked: false,
            if_range: bucket::IfRange::No,
            bucket_answered: false,
            answered: false,
            drop_body: false,
            started: Instant::now(),
            ttfb: None,
            outcome: None,
            bucket_status: None,
            bucket_sent: None,
            answered_by: None,
            _in_flight: InFlight::new(&METRICS.requests_in_flight),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let state = self.state.load();
        state.limits.bound_client(session);
        // First, so an oversized request reaches no bucket or origin.
        if state.limits.header_too_large(session.req_header()) {
            let e = S3Error::RequestHeaderTooLarge(state.limits.max_request_header_bytes);
            return respond(session, ctx, Answer::Error(e)).await;
        }
        let req = session.req_header();
        // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400, and
        // the connection closes after it, as nginx does; Pingora let it
        // through to the default site.
        if req.version == http::Version::HTTP_11 && !req.headers.contains_key(http::header::HOST) {
            session.set_keepalive(None);
            let e = S3Error::InvalidArgument("an HTTP/1.1 request needs a Host header".into());
            return respond(session, ctx, Answer::Error(e)).await;
        }
        let Some(site) = state.site_for(req) else {
            return respond(
                session,
                ctx,
                Answer::Error(S3Error::NoSuchWebsiteConfiguration),
            )
            .await;
        };
        // Set now so even a refused request counts under its site.
        ctx.site = Some(site.clone());
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            return respond(session, ctx, Answer::Error(S3Error::MethodNotAllowed)).await;
        }
        match key_from_path(req.uri.path()) {
            Ok(key) => ctx.key = key,
            Err(e) => return respond(session, ctx, Answer::Error(S3Error::InvalidUri(e))).await,
        }
        // Rules without `http_error_code` are answered here; the bucket
        // is not contacted.
        // A redirect to the request's own URL passes to the next rule.
        let probe = Probe::new(&ctx.key, req, None);
        let redirect =
            matching(&site.rules, &probe).find_map(|(idx, rule, caps)| match &rule.action {
                Action::Redirect(r) => {
                    redirect_answer(session, &ctx.key, r, &caps).map(|a| (idx, a))
                }
                Action::Mirror(_) => None,
            });
        if let Some((idx, answer)) = redirect {
            ctx.answered_by = Some(idx);
            return respond(session, ctx, answer).await;
        }
        // Only a redirect answers the empty key (a site's root); the
        // embedded bucket stores files, so its keys name files.
        let checked = if site.bucket.is_local() {
            crate::key::check_file_key(&ctx.key)
        } else {
            crate::key::check_bucket_key(&ctx.key)
        };
        if let Err(e) = checked {
            return respond(session, ctx, Answer::Error(S3Error::InvalidUri(e))).await;
        }
        fill::try_join(&self.fills, &site, ctx, session);
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        ctx.tries += 1;
        // A reroute decided in `fail_to_connect` never reached
        // `error_while_proxy`, which clears the flag: clear it per attempt.
        ctx.rerouting = false;
        if ctx.peer_answer.is_some() || ctx.fill.is_some() {
            return fill::peer(&self.fills).map(Box::new);
        }
        if let Some(run) = ctx.mirror.as_mut() {
            // No origin header yet on this attempt: a failure before it is
            // a failed fetch (secondary, 424), not one mid-body, even after
            // a redirect hop's 3xx. (Not on the way to the fill peer: the
            // origin's last status stays for the logs.)
            run.status = 0;
        }
        let site = ctx.site.clone().ok_or_else(|| Error::new(InternalError))?;
        if ctx.mirror.is_none() {
            return Ok(Box::new(site.bucket.peer()));
        }
        origin::peer(ctx, &site).await.map(Box::new)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let id = ctx.request_id;
        if let Some(pa) = ctx.peer_answer.as_mut() {
            return fill::answer_request(&self.fills, upstream, pa, id);
        }
        if let Some(run) = &ctx.fill {
            return fill::request(upstream, run, id);
        }
        let site = ctx.site.clone().ok_or_else(|| Error::new(InternalError))?;
        if let Some(run) = &ctx.mirror {
            return origin::request(session.req_header(), upstream, &site, run);
        }
        ctx.bucket_sent = Some(Instant::now());
        // Per attempt: a recheck's bucket may fail before answering.
        ctx.bucket_answered = false;
        bucket::request(&site.bucket, &ctx.key, upstream, &mut ctx.if_range)
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if resp.status.is_informational() && resp.status != http::StatusCode::SWITCHING_PROTOCOLS {
            // An interim answer (103 Early Hints, 100 Continue) before the
            // origin's final one (RFC 9110 §15.2): not the origin's answer,
            // and not passed on (HTTP/2 clients never get one from Pingora
            // either). It failed the plain path as "origin answered 103".
            session.set_ignore_info_resp(true);
            return Ok(());
        }
        if let Some(pa) = ctx.peer_answer.as_mut() {
            let ours = resp
                .headers
                .get(crate::fill::OUTCOME)
                .is_some_and(|v| v.as_bytes() == crate::fill::ANSWERED.as_bytes());
            if !ours {
                // Not our answer (never expected: the entry was gone):
                // `fail_to_proxy` writes the parked one.
                return Err(origin::answered());
            }
            // The error, as the fill peer wrote it: passed on.
            pa.header_seen = true;
            resp.remove_header(crate::fill::OUTCOME);
            ctx.outcome = Some(pa.outcome());
            return Ok(());
        }
        if ctx.fill.is_some() {
            let site = ctx.site.clone().ok_or_else(|| Error::new(InternalError))?;
            let r = fill::on_response(&site, resp, ctx, session.req_header());
            return in_place(session, resp, ctx, r);
        }
        if ctx.mirror.is_some() {
            let r = origin::on_response(session, resp, ctx, self.fills.runtime());
            return in_place(session, resp, ctx, r);
        }
        self.on_bucket_response(session, resp, ctx)
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        // The upstream's body under an answer written over its header.
        if ctx.drop_body {
            *body = None;
        }
        Ok(None)
    }

    fn upstream_response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if ctx.peer_answer.is_some() {
            return Ok(None); // our own error's body
        }
        if let (Some(run), Some(b)) = (ctx.fill.as_mut(), body.as_ref()) {
            run.bytes += b.len() as u64;
        }
        match ctx.mirror.as_mut() {
            // The plain path's tee may ask to pause (`writeback` pacing).
            Some(run) => run.body(body.as_ref(), end, session.response_written().is_some()),
            None => Ok(None),
        }
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        self.connect_failed(session, ctx, &e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        self.proxy_error(peer, session, e, ctx, client_reused)
    }

    fn suppress_proxy_warn_log(
        &self,
        _s: &Session,
        ctx: &RequestCtx,
        _e: &Error,
        _c: ProxyWarnLogContext,
    ) -> bool {
        // Reroutes to the origin are the normal miss path, logged below;
        // so is asking the bucket again after a write-back race.
        ctx.mirror.is_some() || ctx.fill.is_some() || ctx.rechecked || ctx.peer_answer.is_some()
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, error: &Error) -> bool {
        // A 404, 424 or 400 we decided on is an answer, not an error. A
        // client that closed or broke its own connection is the client's
        // doing (nginx logs it at info): at ERROR it buried real errors
        // and tripped error-rate alerts. The access log still has it.
        if error.esource() == &pingora::ErrorSource::Downstream {
            log::debug!("client connection ended: {error}");
            return true;
        }
        ctx.answered || ctx.answer.is_some()
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        self.final_answer(session, e, ctx).await
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if resp.status.is_informational() {
            return Ok(()); // ignored (`upstream_response_filter`)
        }
        ctx.ttfb.get_or_insert_with(|| ctx.started.elapsed());
        self.state.load().limits.bound_send(session, resp);
        framing::for_client_version(session, resp);
        Ok(())
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        fill::log(ctx, e.is_some());
        origin::log(ctx, e.is_some());
        logging::finish(session, e, ctx);
    }
}
