//! The bucket probe: one signed GET of a key that cannot exist. Run in
//! the background by `control` every few seconds (never on the request
//! path): it feeds `/readyz` and `origin_pull_bucket_up`, and explains a
//! bucket whose answer would keep mirror rules from acting.
//!
//! Mirror rules act on the bucket's 404. AWS S3 answers `403 AccessDenied`
//! instead when the credentials lack `s3:ListBucket` (so that a caller
//! cannot learn which keys exist); then no rule ever fires and the proxy
//! looks broken while every log line says "403". One signed GET of a key
//! that cannot exist, in the background, turns that into a warning that
//! names the fix.

use crate::bucket::{Bucket, Payload};
use std::time::Duration;

/// What a bucket's answer to a missing key means for the mirror rules.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 404: rules can act.
    Ok,
    /// 403: the credentials lack `s3:ListBucket`.
    NoListBucket,
    Unexpected(u16),
}

pub fn verdict(status: u16) -> Verdict {
    match status {
        404 => Verdict::Ok,
        403 => Verdict::NoListBucket,
        s => Verdict::Unexpected(s),
    }
}

/// Asks `bucket` for a key that cannot exist, within `timeout`: the
/// status it answered, or why there was no answer. Uses the bucket's own
/// client (its trust roots and pinned address).
pub async fn probe(bucket: &Bucket, timeout: Duration) -> Result<u16, String> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|e| e.to_string())?;
    // A key nobody has written: the answer can only be "missing".
    let key = format!("origin-pull-check/{}", hex::encode(nonce));
    let path = bucket.object_path(&key);
    let signed = bucket
        .sign("GET", &path, &[], Payload::Unsigned)
        .map_err(|e| e.to_string())?;
    let mut req = bucket
        .client()
        .get(format!("{}{path}", bucket.base_url()))
        .header("host", bucket.host())
        .timeout(timeout);
    for (k, v) in &signed {
        req = req.header(k.as_str(), v.as_str());
    }
    let started = std::time::Instant::now();
    let answer = req.send().await;
    bucket
        .metrics
        .bucket_request(crate::metrics::BucketOp::Probe, started.elapsed());
    match answer {
        Ok(resp) => Ok(resp.status().as_u16()),
        Err(e) if e.is_timeout() => Err(format!("no answer within {timeout:?}")),
        Err(e) => Err(format!("not reachable: {e}")),
    }
}

/// Whether a probe's result means the bucket serves: it answered, and
/// not with a server error. A 403 still serves hits (see [`explain`]).
pub fn serving(result: &Result<u16, String>) -> Result<(), String> {
    match result {
        Ok(s) if *s < 500 => Ok(()),
        Ok(s) => Err(format!("bucket answered {s}")),
        Err(why) => Err(why.clone()),
    }
}

/// Logs what a probe's answer means for the mirror rules (at start-up and
/// whenever it changes).
pub fn explain(site: &str, bucket: &Bucket, result: &Result<u16, String>) {
    let status = match result {
        Ok(s) => *s,
        Err(why) => return log::warn!("site `{site}`: bucket `{}` {why}", bucket.name),
    };
    match verdict(status) {
        Verdict::Ok => log::info!(
            "site `{site}`: bucket check: a missing key answers 404, mirror rules can act"
        ),
        Verdict::NoListBucket => log::warn!(
            "site `{site}`: bucket `{name}` answers 403 AccessDenied, not 404, for a missing key, \
             so no mirror or redirect rule on 404 will ever act. The credentials lack \
             s3:ListBucket (without it S3 hides missing keys behind 403): grant s3:ListBucket \
             on arn:aws:s3:::{name}, next to s3:GetObject and s3:PutObject on \
             arn:aws:s3:::{name}/*",
            name = bucket.name
        ),
        Verdict::Unexpected(s) => log::warn!(
            "site `{site}`: bucket check: a missing key answers {s}, not 404; mirror rules act on 404 only"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(verdict(404), Verdict::Ok);
        assert_eq!(verdict(403), Verdict::NoListBucket);
        assert_eq!(verdict(500), Verdict::Unexpected(500));
    }
}
