//! The answers origin-pull gives itself (errors as S3 XML, redirects),
//! written from a filter or from `fail_to_proxy`.

use super::RequestCtx;
use super::Site;
use crate::errors::{RequestId, S3Error};
use crate::metrics::Outcome;
use crate::redirect::{is_own_url, location, LocationError, RequestParts};
use crate::rules::{matching, Action, Probe, Redirect, Rule};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

/// What the proxy answers itself.
pub enum Answer {
    Error(S3Error),
    Redirect { code: u16, location: String },
}

impl Answer {
    pub fn status(&self) -> u16 {
        match self {
            Answer::Error(e) => e.status(),
            Answer::Redirect { code, .. } => *code,
        }
    }

    /// The metric outcome of a request this answer ends.
    pub fn outcome(&self) -> Outcome {
        match self {
            Answer::Redirect { .. } => Outcome::Redirect,
            Answer::Error(e) => error_outcome(e),
        }
    }
}

fn error_outcome(e: &S3Error) -> Outcome {
    match e {
        // Only answered for an origin's 404 (a bucket 404 is proxied).
        S3Error::NoSuchKey => Outcome::OriginMiss,
        S3Error::BucketUnreachable(_) => Outcome::BucketError,
        S3Error::MirrorFailed(_) | S3Error::Internal(_) => Outcome::Error,
        _ => Outcome::Rejected,
    }
}

/// An error answer on its way through the fill peer, which writes it
/// (`crate::fill::ParkedAnswer`): Pingora passes it on like any response,
/// so the client's connection stays open.
pub struct PeerAnswer {
    pub error: S3Error,
    /// Parked when the request to the peer is built; dropped with the
    /// request.
    parked: Option<crate::fill::ParkedAnswer>,
    /// The peer's header arrived: an error after it ends the response.
    pub header_seen: bool,
}

impl PeerAnswer {
    pub fn new(error: S3Error) -> PeerAnswer {
        PeerAnswer {
            error,
            parked: None,
            header_seen: false,
        }
    }

    pub fn park(&mut self, fills: &std::sync::Arc<crate::fill::Fills>, id: RequestId) {
        // A retry parks again under the same id: the old guard goes first,
        // or its drop would take the new entry with it.
        self.parked = None;
        self.parked = Some(fills.park_answer(id.to_string(), self.error.clone()));
    }

    /// The metric outcome of the request it ends.
    pub fn outcome(&self) -> Outcome {
        error_outcome(&self.error)
    }
}

/// The redirect for this request, or 400 when the `Location` would need
/// the client's `Host` and that is not a plain host name. `None` when the
/// `Location` is the request's own URL: answering it would loop (a
/// "force https" rule on the https listener), so the rule passes and the
/// next one, or the bucket, decides.
pub fn redirect_answer(
    session: &Session,
    key: &str,
    r: &Redirect,
    caps: &[String],
) -> Option<Answer> {
    let req = session.req_header();
    let parts = RequestParts {
        // Without a configured `protocol` the redirect keeps the scheme
        // the request came in on (SPEC 3): https on a TLS listener. A TLS
        // terminator in front of a plain listener is not seen here; such
        // setups set `protocol: https`.
        scheme: crate::edge_tls::request_scheme(session),
        // HTTP/2 carries the host in `:authority` (port included),
        // usually without a Host header.
        host: crate::rules::request_host(req),
        key,
        query: req.uri.query(),
    };
    Some(match location(r, &parts, caps) {
        Ok(location) if is_own_url(&location, &parts) => return None,
        Ok(location) => Answer::Redirect {
            code: r.code,
            location,
        },
        Err(LocationError::Host) => Answer::Error(S3Error::InvalidArgument(
            "the Host header is not a plain host name".into(),
        )),
        Err(LocationError::Key(e)) => Answer::Error(S3Error::InvalidUri(e)),
    })
}

/// The first rule that acts on `probe`: a mirror rule, or a redirect whose
/// `Location` is not the request's own URL (that one would loop: it passes
/// to the next rule). With the redirect's answer when it is one. Every
/// place that asks "which rule handles this miss" asks this, so they agree.
pub fn acting_rule<'s>(
    session: &Session,
    site: &'s Site,
    key: &str,
    probe: &Probe,
) -> Option<(usize, &'s Rule, Vec<String>, Option<Answer>)> {
    let mut redirect = None;
    let (idx, rule, caps) = matching(&site.rules, probe).find(|(_, rule, caps)| {
        let Action::Redirect(r) = &rule.action else {
            return true;
        };
        redirect = redirect_answer(session, key, r, caps);
        redirect.is_some()
    })?;
    Some((idx, rule, caps, redirect))
}

/// Writes `answer` from a filter and ends the request.
pub async fn respond(session: &mut Session, ctx: &mut RequestCtx, answer: Answer) -> Result<bool> {
    ctx.outcome = Some(answer.outcome());
    ctx.ttfb = Some(ctx.started.elapsed());
    write_answer(session, ctx.request_id, &answer).await?;
    Ok(true)
}

pub async fn write_answer(
    session: &mut Session,
    request_id: RequestId,
    answer: &Answer,
) -> Result<()> {
    match answer {
        Answer::Error(e) => e.respond(session, request_id).await,
        Answer::Redirect { code, location } => {
            let resp = redirect_header(*code, location, request_id)?;
            session.write_response_header(Box::new(resp), true).await
        }
    }
}

fn redirect_header(code: u16, location: &str, request_id: RequestId) -> Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(code, Some(3))?;
    resp.insert_header(http::header::LOCATION, location)?;
    resp.insert_header(http::header::CONTENT_LENGTH, "0")?;
    resp.insert_header("x-amz-request-id", request_id.to_string())?;
    Ok(resp)
}

/// An answer decided on an upstream's response header (`r` is the
/// filter's result), written over that response when it has no body: a
/// redirect, or any answer to a HEAD. Pingora then passes it on like any
/// response, the upstream's body dropped (`ctx.drop_body`), and the
/// client's connection stays open, where an answer from `fail_to_proxy`
/// closes it (Pingora 0.9 never reuses a connection after a failed
/// attempt). Errors with a body go through the fill peer (`PeerAnswer`),
/// reroutes keep the error path.
pub fn in_place(
    session: &Session,
    resp: &mut ResponseHeader,
    ctx: &mut RequestCtx,
    r: Result<()>,
) -> Result<()> {
    let Err(e) = r else { return r };
    let head = session.req_header().method == http::Method::HEAD;
    let answer = match ctx.answer.take() {
        Some(a @ Answer::Redirect { .. }) => a,
        Some(a) if head => a,
        // An error for a HEAD has no body: written here, without the trip
        // to the fill peer, and the upstream's connection is kept.
        None if head => match ctx.peer_answer.take() {
            Some(pa) => {
                ctx.rerouting = false;
                Answer::Error(pa.error)
            }
            None => return Err(e),
        },
        other => {
            ctx.answer = other;
            return Err(e);
        }
    };
    *resp = match &answer {
        Answer::Error(err) => err.response(ctx.request_id)?.0,
        Answer::Redirect { code, location } => redirect_header(*code, location, ctx.request_id)?,
    };
    ctx.drop_body = true;
    ctx.outcome = Some(answer.outcome());
    Ok(())
}
