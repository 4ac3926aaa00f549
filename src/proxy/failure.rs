//! The failure phase: an upstream that can't be reached or breaks off,
//! and the answer left for `fail_to_proxy` (Pingora closes the client's
//! connection after it, so the answers decided earlier avoid it: see
//! `answer::PeerAnswer` and `answer::in_place`).

use super::answer::{write_answer, Answer};
use super::{origin, OriginPull, RequestCtx};
use crate::errors::S3Error;
use crate::metrics::OriginResult;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, Session};

impl OriginPull {
    /// `fail_to_connect`: which attempt could not connect decides the
    /// answer (the fill peer's, an origin's, the bucket's).
    pub(super) fn connect_failed(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        e: &Error,
    ) -> Box<Error> {
        if ctx.peer_answer.is_some() {
            // The peer is down: `fail_to_proxy` writes the parked answer
            // (and the connection closes after it).
            return origin::answered();
        }
        if ctx.fill.is_some() {
            let why = format!("cannot reach the fill peer: {}", e.etype().as_str());
            return origin::answer_here(ctx, Answer::Error(S3Error::Internal(why)));
        }
        if let Some(run) = ctx.mirror.as_mut() {
            if run.addr_fallbacks < origin::MAX_ADDR_FALLBACKS && run.next_addr() {
                run.addr_fallbacks += 1;
                log::info!(
                    "{} mirror key={:?}: cannot connect to {} ({}); trying its next address",
                    ctx.request_id,
                    ctx.key,
                    run.target.authority,
                    e.etype().as_str()
                );
                return origin::reroute(ctx, "next origin address");
            }
        }
        if let (Some(run), Some(site)) = (&ctx.mirror, &ctx.site) {
            let r = if matches!(e.etype(), ErrorType::ConnectTimedout) {
                OriginResult::Timeout
            } else {
                OriginResult::ConnectError
            };
            origin::count(site, run.rule, r);
            return origin::origin_failed(
                ctx,
                format!(
                    "cannot connect to the origin: {}{}",
                    e.etype().as_str(),
                    crate::tls::hint(&e.to_string())
                ),
            );
        }
        self.on_bucket_unreachable(session, ctx, e.etype().as_str())
    }

    /// `error_while_proxy`: an attempt failed after connecting.
    pub(super) fn proxy_error(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        if std::mem::take(&mut ctx.rerouting) || ctx.answer.is_some() {
            return e; // our own reroute or answer: keep its retry decision
        }
        if e.esource() == &ErrorSource::Downstream {
            // The client left (or broke its request): nothing to retry,
            // and not the bucket's or the origin's failure.
            let mut e = e;
            e.set_retry(false);
            return e;
        }
        if let Some(pa) = ctx.peer_answer.as_ref() {
            // Before the peer's header: a pooled connection to it that had
            // closed is asked again while a try is left. Otherwise the
            // request ends here, and `fail_to_proxy` writes the parked
            // answer if the peer's header never came.
            let mut e = e;
            if !pa.header_seen {
                e.retry.decide_reuse(client_reused);
            }
            if pa.header_seen || ctx.tries >= super::MAX_TRIES {
                e.set_retry(false);
            }
            return e;
        }
        if ctx.fill.is_some() {
            // The fill broke off (or the client left): never retried, the
            // client's response ends without a valid end of body.
            let mut e = e;
            e.set_retry(false);
            return e;
        }
        match &ctx.mirror {
            // No origin header yet (timeout, reset): a failed fetch.
            Some(run) if run.status == 0 => {
                if let Some(site) = &ctx.site {
                    let r = match e.etype() {
                        ErrorType::ReadTimedout | ErrorType::ConnectTimedout => {
                            OriginResult::Timeout
                        }
                        _ => OriginResult::ConnectError,
                    };
                    origin::count(site, run.rule, r);
                }
                origin::origin_failed(ctx, format!("origin failed: {}", e.etype().as_str()))
            }
            // Mid-body: the client already has the header; just end.
            Some(_) => {
                let mut e = e;
                e.set_retry(false);
                e
            }
            None => {
                let mut e = e.more_context(format!("Peer: {peer}"));
                e.retry.decide_reuse(client_reused);
                // Reset or timed out before any answer (and not a stale
                // pooled connection Pingora retries): the bucket is
                // unreachable, so `mirror_on_bucket_error` applies (SPEC 1.7).
                if !e.retry() && !ctx.bucket_answered {
                    return self.on_bucket_unreachable(session, ctx, e.etype().as_str());
                }
                e
            }
        }
    }

    /// `fail_to_proxy`: what is left to answer after the last try.
    pub(super) async fn final_answer(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        // An answer the fill peer was to write but couldn't (its
        // connection failed, or the tries ran out) is written here.
        let parked = ctx
            .peer_answer
            .take()
            .filter(|p| !p.header_seen)
            .map(|p| Answer::Error(p.error));
        let answer = match ctx.answer.take().or(parked) {
            Some(a) => {
                ctx.answered = true;
                a
            }
            None => match e.esource() {
                ErrorSource::Upstream if ctx.mirror.is_some() || ctx.fill.is_some() => {
                    Answer::Error(S3Error::MirrorFailed(e.etype().as_str().to_string()))
                }
                ErrorSource::Upstream => {
                    Answer::Error(S3Error::BucketUnreachable(e.etype().as_str().to_string()))
                }
                // The client is gone (nothing to answer), or its request
                // can't be forwarded.
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                        return FailToProxy {
                            error_code: 0,
                            can_reuse_downstream: false,
                        }
                    }
                    // A request Pingora refuses to forward (as its default
                    // `fail_to_proxy`: 400).
                    other => Answer::Error(S3Error::InvalidArgument(format!(
                        "the request cannot be forwarded: {}",
                        other.as_str()
                    ))),
                },
                _ => Answer::Error(S3Error::Internal(e.etype().as_str().to_string())),
            },
        };
        let code = answer.status();
        // Once the header went out, the only honest signal is to close
        // the connection without a valid end of body.
        if session.response_written().is_none() {
            ctx.outcome = Some(answer.outcome());
            ctx.ttfb = Some(ctx.started.elapsed());
            // Pingora closes the client connection after a failed proxy
            // attempt whatever `can_reuse_downstream` says (0.9: the
            // retry loop's final error never reuses it). Say so in the
            // answer: with `Connection: keep-alive` a client sent its
            // next request on the closing connection and got a reset.
            session.set_keepalive(None);
            if let Err(we) = write_answer(session, ctx.request_id, &answer).await {
                log::debug!("{}: could not send answer: {we}", ctx.request_id);
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}
