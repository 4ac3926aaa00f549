//! The fill peer: a small HTTP/1.1 server on a Unix socket in a private
//! (0700) folder, on the fill runtime. Pingora proxies a client to
//! `/fill/<id>` like to any upstream, so the client's connection keeps
//! Pingora's normal keep-alive, and a fill that breaks off reaches the
//! client as an upstream body error (the connection is closed without a
//! valid end of body), never as a clean end.
//!
//! Answers: 200 / 206 / 416 with the origin's stored headers; for an
//! origin that has no object (`not-found`) or failed (`failed`), the S3
//! error the client gets (XML body, the client request's id from
//! `x-fill-request-id`), marked with `x-fill-outcome`: the proxy passes
//! it on as a normal response, so the client's connection stays open
//! (an answer written from `fail_to_proxy` closes it: Pingora 0.9 never
//! reuses a connection after a failed proxy attempt). `fallback` is a
//! bare 503 the proxy turns into a plain mirror. `/answer` writes an
//! error the proxy parked for the request (`super::answers`).

use super::range::{resolve, RangeAnswer};
use super::{Cursor, Fills, Outcome, State};
use crate::errors::S3Error;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Weak;

/// Bytes a reader takes from the spool at a time: its whole memory.
const READ_CHUNK: usize = 64 << 10;

pub const OUTCOME: &str = "x-fill-outcome";
/// The client request's id, for the `RequestId` of an error answer.
pub const REQUEST_ID: &str = "x-fill-request-id";
/// Where the proxy fetches an error answer it parked (`super::answers`).
pub const ANSWER_PATH: &str = "/answer";
/// The `OUTCOME` of such an answer.
pub const ANSWERED: &str = "answer";

type Body = BoxBody<Bytes, std::io::Error>;

/// Starts the fill runtime (its own threads: fills never run on a
/// Pingora worker) and binds the socket. Serving starts with [`serve`].
pub(super) fn bind() -> std::io::Result<(tokio::runtime::Handle, PathBuf, tokio::net::UnixListener)>
{
    let dir = std::env::temp_dir().join(format!(
        "origin-pull-{}-{}",
        std::process::id(),
        &super::random_id()[..12]
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let socket = dir.join("fill.sock");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fill")
        .enable_all()
        .build()?;
    let listener = {
        let _g = rt.enter();
        tokio::net::UnixListener::bind(&socket)?
    };
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("fill".into())
        .spawn(move || rt.block_on(std::future::pending::<()>()))?;
    Ok((handle, socket, listener))
}

pub(super) async fn serve(listener: tokio::net::UnixListener, fills: Weak<Fills>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                log::warn!("fill peer accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let fills = fills.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(fills.clone(), req));
            // hyper queues up to ~400 KiB per connection by default; with
            // 100 readers of one fill that alone was 40 MiB. A small cap
            // keeps one chunk in flight per reader (the socket's own
            // buffer does the rest).
            let _ = hyper::server::conn::http1::Builder::new()
                .max_buf_size(16 << 10)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn bare(status: u16, outcome: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(OUTCOME, outcome)
        .header(http::header::CONTENT_LENGTH, "0")
        .body(Empty::new().map_err(|e| match e {}).boxed())
        .unwrap_or_else(|_| Response::new(Empty::new().map_err(|e| match e {}).boxed()))
}

/// `e` as the client's whole answer: the header and body
/// `S3Error::response` gives the proxy's own answers, plus the outcome.
fn s3_error(e: S3Error, outcome: &str, request_id: &str) -> Response<Body> {
    s3_response(e, request_id, &[(OUTCOME, outcome)])
}

/// `e`'s status, header and XML body, with the `extra` header fields.
fn s3_response(e: S3Error, request_id: &str, extra: &[(&str, &str)]) -> Response<Body> {
    let Ok((head, body)) = e.response(request_id) else {
        return bare(500, "failed");
    };
    let mut resp = Response::builder().status(head.status);
    for (name, value) in extra {
        resp = resp.header(*name, *value);
    }
    for (name, value) in head.headers.iter() {
        resp = resp.header(name, value);
    }
    resp.body(Full::new(body).map_err(|e| match e {}).boxed())
        .unwrap_or_else(|_| bare(500, "failed"))
}

/// A response that could not be built (never expected): a 500 in S3 form.
fn internal(request_id: &str) -> Response<Body> {
    let e = S3Error::Internal("the fill peer could not build its answer".into());
    s3_error(e, "failed", request_id)
}

async fn handle(fills: Weak<Fills>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    // Set by the proxy (ours: a short id); anything else is not echoed.
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 32 && v.bytes().all(|b| b.is_ascii_alphanumeric()))
        .unwrap_or("-")
        .to_string();
    if req.uri().path() == ANSWER_PATH {
        // An error the proxy decided (see `super::answers`).
        return Ok(match fills.upgrade().and_then(|f| f.answers.take(&id)) {
            Some(e) => s3_error(e, ANSWERED, &id),
            None => internal(&id),
        });
    }
    let fill = req
        .uri()
        .path()
        .strip_prefix("/fill/")
        .and_then(|id| fills.upgrade()?.by_id(id));
    let Some(fill) = fill else {
        return Ok(bare(500, "gone"));
    };
    let failed = |why: &str| Ok(s3_error(S3Error::MirrorFailed(why.into()), "failed", &id));
    let mut rx = fill.subscribe();
    let state = match rx.wait_for(|s| !matches!(s, State::Waiting)).await {
        Ok(s) => s.clone(),
        Err(_) => State::Failed("the fill stopped".into()),
    };
    let head = match state {
        State::Answer(Outcome::NotFound) => {
            return Ok(s3_error(S3Error::NoSuchKey, "not-found", &id))
        }
        State::Answer(Outcome::Failed(why)) => return failed(&why),
        State::Answer(Outcome::Fallback) => return Ok(bare(503, "fallback")),
        // Broke off before this client got anything: a clean 424.
        State::Failed(why) => return failed(&why),
        State::Waiting => return failed("no origin answer"),
        State::Body { head, .. } | State::Done { head, .. } => head,
    };
    let range = req
        .headers()
        .get(http::header::RANGE)
        .and_then(|v| v.to_str().ok());
    let mut resp = Response::builder();
    for (k, v) in &head.headers {
        resp = resp.header(k.as_str(), v.as_str());
    }
    if head.len.is_some() {
        // A range of this answer is served (as hits say): a download
        // manager may resume the first download too.
        resp = resp.header(http::header::ACCEPT_RANGES, "bytes");
    }
    let (start, end) = match resolve(range, head.len) {
        RangeAnswer::Unsatisfiable => {
            // As S3 answers it: `InvalidRange` in XML (not the object's
            // headers), and the object's length.
            let range = format!("bytes */{}", head.len.unwrap_or(0));
            let extra = [(http::header::CONTENT_RANGE.as_str(), range.as_str())];
            return Ok(s3_response(S3Error::InvalidRange, &id, &extra));
        }
        RangeAnswer::Partial { start, end } => {
            let len = head.len.unwrap_or(0);
            resp = resp
                .status(206)
                .header(
                    http::header::CONTENT_RANGE,
                    format!("bytes {start}-{end}/{len}"),
                )
                .header(http::header::CONTENT_LENGTH, (end - start + 1).to_string());
            (start, Some(end + 1))
        }
        RangeAnswer::Full => {
            resp = resp.status(200);
            if let Some(len) = head.len {
                resp = resp.header(http::header::CONTENT_LENGTH, len.to_string());
            }
            (0, head.len)
        }
    };
    let body = StreamBody::new(body_stream(Cursor::new(fill, start), end));
    Ok(resp
        .body(BodyExt::boxed(body))
        .unwrap_or_else(|_| internal(&id)))
}

/// The spool from the cursor to `end` (exclusive; `None`: the fill's end),
/// one chunk at a time. A broken fill ends the stream with an error,
/// which makes hyper drop the connection mid-body.
fn body_stream(
    cursor: Cursor,
    end: Option<u64>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> {
    futures_util::stream::unfold(Some(cursor), move |c| async move {
        let mut c = c?;
        let max = match end {
            Some(e) if c.pos >= e => return None,
            Some(e) => ((e - c.pos) as usize).min(READ_CHUNK),
            None => READ_CHUNK,
        };
        match c.next(max).await {
            Ok(Some(b)) => Some((Ok(Frame::data(b)), Some(c))),
            Ok(None) => None,
            Err(why) => Some((Err(std::io::Error::other(why)), None)),
        }
    })
}
