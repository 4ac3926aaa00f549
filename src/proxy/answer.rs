//! The answers origin-pull gives itself (errors as S3 XML, redirects),
//! written from a filter or from `fail_to_proxy`.

use super::RequestCtx;
use crate::errors::{RequestId, S3Error};
use crate::redirect::{location, LocationError, RequestParts};
use crate::rules::Redirect;
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
}

/// The redirect for this request, or 400 when the `Location` would need
/// the client's `Host` and that is not a plain host name.
pub fn redirect_answer(session: &Session, key: &str, r: &Redirect, caps: &[String]) -> Answer {
    let req = session.req_header();
    let parts = RequestParts {
        // origin-pull listens on plain TCP; TLS is terminated in front of
        // it, so without a configured `protocol` the request's is http.
        scheme: "http",
        host: req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.host()),
        key,
        query: req.uri.query(),
    };
    match location(r, &parts, caps) {
        Ok(location) => Answer::Redirect {
            code: r.code,
            location,
        },
        Err(LocationError::Host) => Answer::Error(S3Error::InvalidArgument(
            "the Host header is not a plain host name".into(),
        )),
        Err(LocationError::Key(e)) => Answer::Error(S3Error::InvalidUri(e)),
    }
}

/// Writes `answer` from a filter and ends the request.
pub async fn respond(session: &mut Session, ctx: &RequestCtx, answer: Answer) -> Result<bool> {
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
            let mut resp = ResponseHeader::build(*code, Some(3))?;
            resp.insert_header(http::header::LOCATION, location.as_str())?;
            resp.insert_header(http::header::CONTENT_LENGTH, "0")?;
            resp.insert_header("x-amz-request-id", request_id.to_string())?;
            session.write_response_header(Box::new(resp), true).await
        }
    }
}
