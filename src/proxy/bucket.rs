//! The bucket side of a request: what the bucket is asked (signed, with
//! only the client headers S3 semantics need), how its stored metadata
//! comes back as headers, and what a bucket error or an unreachable
//! bucket leads to (a rule's mirror or redirect, or 502).

use super::answer::{acting_rule, in_place, Answer};
use super::{fill, origin, OriginPull, RequestCtx};
use crate::bucket::Bucket;
use crate::errors::S3Error;
use crate::metrics::BucketOp;
use crate::rules::{Action, Probe};
use http::header::{self, HeaderName};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;

/// Client headers forwarded to the bucket (SPEC 1.5); all others dropped.
const FORWARDED_TO_BUCKET: [HeaderName; 5] = [
    header::RANGE,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
];

/// Whether a client's conditional header goes to the bucket: a date
/// condition that is not an HTTP-date is ignored (RFC 9110 §13.1.3,
/// §13.1.4), where S3 buckets answer 400, so a hit and a miss disagreed.
fn forwardable(name: &HeaderName, value: &http::HeaderValue) -> bool {
    if name == header::IF_MODIFIED_SINCE || name == header::IF_UNMODIFIED_SINCE {
        return value
            .to_str()
            .is_ok_and(|v| httpdate::parse_http_date(v).is_ok());
    }
    true
}

/// User metadata under which the mirror source is stored with an object.
pub const TAG_META: &str = "x-amz-meta-x-oss-tag";
/// User metadata under which the origin's `Access-Control-Allow-Origin` is
/// stored: S3-compatible buckets keep only their standard headers on PUT.
pub const ACAO_META: &str = "x-amz-meta-access-control-allow-origin";

impl OriginPull {
    /// The bucket's response header: counted, checked against a client's
    /// If-Range, and a bucket error handed to the rules.
    pub(super) fn on_bucket_response(
        &self,
        session: &Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.bucket_answered = true;
        let status = resp.status.as_u16();
        ctx.bucket_status = Some(status);
        if let (Some(site), Some(sent)) = (&ctx.site, ctx.bucket_sent) {
            let op = if session.req_header().method == http::Method::HEAD {
                BucketOp::Head
            } else {
                BucketOp::Get
            };
            site.metrics().bucket_request(op, sent.elapsed());
        }
        let validator_failed = ctx.if_range == IfRange::Asked
            && match status {
                412 => true,
                206 => !if_range_holds(session.req_header(), resp),
                _ => false,
            };
        if validator_failed {
            // The client's copy is not the bucket's object any more: the
            // whole object instead of the range, as If-Range asks.
            ctx.if_range = IfRange::Failed;
            return Err(origin::reroute(ctx, "If-Range validator failed"));
        }
        if status >= 400 {
            if let Some(e) = self.on_bucket_error(session, ctx, status) {
                return in_place(session, resp, ctx, Err(e));
            }
        }
        restore_stored_headers(resp)
    }

    /// The bucket answered `status` (an error): which rule acts on it.
    pub(super) fn on_bucket_error(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        status: u16,
    ) -> Option<Box<Error>> {
        let site = ctx.site.clone()?;
        let req = session.req_header();
        let probe = Probe::new(&ctx.key, req, Some(status));
        let (idx, rule, caps, redirect) = acting_rule(session, &site, &ctx.key, &probe)?;
        match &rule.action {
            Action::Mirror(m) => {
                let head = req.method == http::Method::HEAD;
                if head && !m.allow_head {
                    return None; // HEAD of a missing key: the bucket's 404
                }
                if !head {
                    return Some(fill::start(&self.fills, &site, ctx, idx, caps, req, true));
                }
                if let Err(e) = origin::start(&site, ctx, idx, &caps, req.uri.query(), false) {
                    return Some(origin::answer(ctx, Answer::Error(S3Error::InvalidUri(e))));
                }
                Some(origin::reroute(ctx, "bucket 404: mirroring"))
            }
            // The bucket's body is never read, so it cannot leak.
            Action::Redirect(_) => {
                let answer = redirect?;
                ctx.answered_by = Some(idx);
                Some(origin::answer(ctx, answer))
            }
        }
    }

    /// The bucket could not be reached: 502, or the origin without
    /// write-back when the matching mirror rule allows it.
    pub(super) fn on_bucket_unreachable(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        why: &str,
    ) -> Box<Error> {
        let req = session.req_header();
        if let Some(site) = ctx.site.clone() {
            let probe = Probe::new(&ctx.key, req, Some(404));
            if let Some((idx, rule, caps, _)) = acting_rule(session, &site, &ctx.key, &probe) {
                if let Action::Mirror(m) = &rule.action {
                    let head = req.method == http::Method::HEAD;
                    if m.mirror_on_bucket_error && !head {
                        // Coalesced like a miss; nothing stored.
                        return fill::start(&self.fills, &site, ctx, idx, caps, req, false);
                    }
                    if m.mirror_on_bucket_error && m.allow_head {
                        return match origin::start(&site, ctx, idx, &caps, req.uri.query(), false) {
                            Ok(()) => {
                                origin::reroute(ctx, "bucket unreachable: serving from origin")
                            }
                            Err(e) => origin::answer(ctx, Answer::Error(S3Error::InvalidUri(e))),
                        };
                    }
                }
            }
        }
        origin::answer(
            ctx,
            Answer::Error(S3Error::BucketUnreachable(why.to_string())),
        )
    }
}

/// The signed bucket request for `key`: a copy of the cached signed
/// request (see `crate::bucket::reads`) with the client headers S3 reads
/// added, replacing the client's header. Built apart instead of edited in
/// place: Pingora keeps a case-preserving name map beside a parsed
/// request's headers, so each removal and insertion there was paid twice,
/// with the names re-parsed and copied (callgrind: 12k instructions of a
/// 128k hit, the largest cost origin-pull added to Pingora's). The bucket
/// gets lower-case names, as HTTP/2 would send them anyway.
pub fn request(
    bucket: &Bucket,
    key: &str,
    upstream: &mut RequestHeader,
    if_range: &mut IfRange,
) -> Result<()> {
    let signed = bucket
        .read_request(&upstream.method, key)
        .map_err(|e| Error::because(InternalError, "signing", e))?;
    let mut req = RequestHeader::clone(&signed);
    let (mut range, mut validator) = (None, None);
    // One pass over the client's few headers: cheaper than five lookups.
    for (name, value) in upstream.headers.iter() {
        if name == header::RANGE {
            range = Some(value);
        } else if name == header::IF_RANGE {
            validator = Some(value);
        } else if FORWARDED_TO_BUCKET.contains(name) && forwardable(name, value) {
            req.append_header(name.as_str().to_owned(), value.clone())?;
        }
    }
    // A Range with another unit or a bad syntax is ignored (RFC 9110
    // §14.2): the whole object, as a miss answers it. S3 buckets say 416.
    // The unit is case-insensitive (RFC 9110 §14.1): sent as `bytes=`,
    // since S3 buckets refuse `Bytes=` with 416.
    let range = range
        .and_then(|r| r.to_str().ok())
        .filter(|r| crate::fill::range::is_byte_range_set(r))
        .and_then(|r| http::HeaderValue::from_str(&format!("bytes={}", &r.trim()[6..])).ok());
    if let Some(range) = range {
        match validator {
            None => {
                req.append_header("range", range.clone())?;
            }
            // Again on every attempt (a stale pooled connection's retry,
            // a recheck) until the validator failed once.
            Some(v) if *if_range != IfRange::Failed => {
                // The range only if the object is still the one the client
                // has, checked by the bucket: If-Range is not in the S3
                // API, and a bucket that ignored it would send a range of
                // another version, spliced into the client's file. (A
                // bucket that ignores the condition too is caught on its
                // answer: `if_range_holds`.)
                let own = req.headers.contains_key(header::IF_MATCH)
                    || req.headers.contains_key(header::IF_UNMODIFIED_SINCE);
                if let Some((cond, v)) = if_range_condition(v).filter(|_| !own) {
                    req.append_header("range", range.clone())?;
                    req.append_header(cond.as_str().to_owned(), v)?;
                    *if_range = IfRange::Asked;
                }
                // Otherwise (a weak or unreadable validator, or a client
                // condition of its own that S3 would rank above ours) the
                // validator can't be checked for it: the whole object, as
                // If-Range says when it fails.
            }
            // The validator failed: the whole object.
            Some(_) => {}
        }
    }
    *upstream = req;
    Ok(())
}

/// Where a client's `If-Range` stands on the bucket path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfRange {
    /// Not asked (no `Range`, or no `If-Range`).
    No,
    /// The bucket was asked for the range under the validator as a
    /// condition (`If-Match` or `If-Unmodified-Since`).
    Asked,
    /// The bucket answered 412 to that: asked again for the whole object.
    Failed,
}

/// The bucket condition that stands for an `If-Range` validator: an
/// entity tag as `If-Match`, a date as `If-Unmodified-Since`. None for a
/// weak tag (If-Range compares strongly: never a match) or garbage.
fn if_range_condition(v: &http::HeaderValue) -> Option<(HeaderName, http::HeaderValue)> {
    let s = v.to_str().ok()?.trim();
    if s.starts_with('"') && s.len() >= 2 && s.ends_with('"') {
        return Some((header::IF_MATCH, v.clone()));
    }
    // Sent as an IMF-fixdate whatever form the client used: some buckets
    // read no other.
    let date = httpdate::fmt_http_date(httpdate::parse_http_date(s).ok()?);
    Some((
        header::IF_UNMODIFIED_SINCE,
        http::HeaderValue::from_str(&date).ok()?,
    ))
}

/// Whether a 206 the bucket sent under a translated If-Range is of the
/// version the client's validator names (the tag equal, or the date equal
/// to `Last-Modified`, as If-Range compares). A bucket that ignores the
/// condition (the embedded local bucket does) answers 206 of whatever it
/// holds; this catches it.
pub fn if_range_holds(req: &RequestHeader, resp: &ResponseHeader) -> bool {
    fn get(h: &http::HeaderMap, n: HeaderName) -> Option<&str> {
        h.get(n).and_then(|v| v.to_str().ok()).map(str::trim)
    }
    let Some(v) = get(&req.headers, header::IF_RANGE) else {
        return true;
    };
    if v.starts_with('"') {
        return get(&resp.headers, header::ETAG).is_some_and(|e| e == v);
    }
    let have =
        get(&resp.headers, header::LAST_MODIFIED).and_then(|l| httpdate::parse_http_date(l).ok());
    have.is_some() && have == httpdate::parse_http_date(v).ok()
}

/// A hit's stored metadata back as the headers it was.
pub fn restore_stored_headers(resp: &mut ResponseHeader) -> Result<()> {
    // Most objects carry neither: one pass over the names is cheaper
    // than looking both up (each lookup parses and hashes the name).
    if !resp
        .headers
        .keys()
        .any(|n| n.as_str().starts_with("x-amz-meta-"))
    {
        return Ok(());
    }
    // A mirrored object carries its source as metadata; show it as
    // `x-oss-tag` like OSS does.
    if let Some(tag) = resp.headers.get(TAG_META).cloned() {
        resp.remove_header(TAG_META);
        resp.insert_header("x-oss-tag", tag)?;
    }
    // The stored CORS header comes back as the header it was; one the
    // bucket itself sends (its CORS rules) is left as it is.
    if let Some(acao) = resp.remove_header(ACAO_META) {
        if !resp
            .headers
            .contains_key(http::header::ACCESS_CONTROL_ALLOW_ORIGIN)
        {
            resp.insert_header(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, acao)?;
        }
    }
    Ok(())
}
