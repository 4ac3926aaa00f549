//! The bucket probe: one signed GET of a key that cannot exist. Run in
//! the background by `control` every few seconds (never on the request
//! path): it feeds `/readyz` and `origin_pull_bucket_up`, and explains a
//! bucket whose answer would keep mirror rules from acting, or that
//! refuses the proxy altogether (a bucket name that does not exist, a
//! wrong secret): then the proxy is not ready, since every request would
//! go to the origin and nothing would ever be stored.
//!
//! Mirror rules act on the bucket's 404. AWS S3 answers `403 AccessDenied`
//! instead when the credentials lack `s3:ListBucket` (so that a caller
//! cannot learn which keys exist); then no rule ever fires and the proxy
//! looks broken while every log line says "403". One signed GET of a key
//! that cannot exist, in the background, turns that into a warning that
//! names the fix.

use crate::bucket::{Bucket, Payload};
use std::time::Duration;

/// A bucket's answer to the probe: its status and, for an S3 error, the
/// error's `<Code>` and `<Message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub code: Option<String>,
    pub message: Option<String>,
}

/// What a bucket's answer to a missing key means for the mirror rules.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 404 (`NoSuchKey`): rules can act.
    Ok,
    /// 403 `AccessDenied`: the credentials lack `s3:ListBucket`, or (some
    /// buckets use this code for everything) are not accepted at all.
    NoListBucket,
    /// 404 `NoSuchBucket`: every request would be a miss, every write-back
    /// would fail, and nothing would ever be stored.
    NoSuchBucket,
    /// The bucket refused the credentials or the request's signing
    /// (unknown key, wrong secret, expired token, clock skew, region).
    Refused(String),
    Unexpected(u16),
}

/// S3 error codes that say the bucket refuses who we are or how we sign:
/// no request can succeed until the configuration changes.
const REFUSED: [&str; 9] = [
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "RequestTimeTooSkewed",
    "AuthorizationHeaderMalformed",
    "PermanentRedirect",
    "InvalidBucketName",
];

pub fn verdict(a: &Answer) -> Verdict {
    let code = a.code.as_deref();
    match (a.status, code) {
        (_, Some(c)) if REFUSED.contains(&c) => Verdict::Refused(c.to_string()),
        (404, Some("NoSuchBucket")) => Verdict::NoSuchBucket,
        (404, _) => Verdict::Ok,
        // Garage answers a wrong secret with `AccessDenied` too; its
        // message tells.
        (403, _) if a.message.as_deref().is_some_and(refused_message) => {
            Verdict::Refused(code.unwrap_or("AccessDenied").to_string())
        }
        (403, _) => Verdict::NoListBucket,
        (s, _) => Verdict::Unexpected(s),
    }
}

fn refused_message(m: &str) -> bool {
    let m = m.to_ascii_lowercase();
    m.contains("signature") || m.contains("no such key") || m.contains("access key")
}

/// The `<Code>` and `<Message>` of an S3 error body.
fn error_doc(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct ErrorDoc {
        #[serde(rename = "Code")]
        code: Option<String>,
        #[serde(rename = "Message")]
        message: Option<String>,
    }
    std::str::from_utf8(body)
        .ok()
        .and_then(|t| quick_xml::de::from_str::<ErrorDoc>(t).ok())
        .map_or((None, None), |d| (d.code, d.message))
}

/// Asks `bucket` for a key that cannot exist, within `timeout`: its
/// answer, or why there was none. Uses the bucket's own client (its trust
/// roots and addresses).
pub async fn probe(bucket: &Bucket, timeout: Duration) -> Result<Answer, String> {
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
    let answer = async {
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        // An error body is small; a body that isn't one is not read.
        let body = match status {
            200..=299 => Default::default(),
            _ => resp.bytes().await.unwrap_or_default(),
        };
        Ok::<_, reqwest::Error>((status, body))
    }
    .await;
    bucket
        .metrics
        .bucket_request(crate::metrics::BucketOp::Probe, started.elapsed());
    match answer {
        Ok((status, body)) => {
            let (code, message) = error_doc(&body);
            Ok(Answer {
                status,
                code,
                message,
            })
        }
        Err(e) if e.is_timeout() => Err(format!("no answer within {timeout:?}")),
        // Without the URL: it holds the random key, and readiness logs
        // only changes.
        Err(e) => Err(format!(
            "not reachable: {}",
            crate::errors::chain(&e.without_url())
        )),
    }
}

/// Whether a probe's result means the bucket serves: it answered, not
/// with a server error, and neither refused the credentials nor said the
/// bucket does not exist. A 403 `AccessDenied` still serves hits (see
/// [`explain`]).
pub fn serving(result: &Result<Answer, String>) -> Result<(), String> {
    let a = result.as_ref().map_err(Clone::clone)?;
    match verdict(a) {
        Verdict::NoSuchBucket => Err("bucket answered 404 NoSuchBucket".into()),
        Verdict::Refused(code) => Err(format!("bucket answered {} {code}", a.status)),
        _ if a.status >= 500 => Err(format!("bucket answered {}", a.status)),
        _ => Ok(()),
    }
}

/// Logs what a probe's answer means for the mirror rules (at start-up and
/// whenever it changes).
pub fn explain(site: &str, bucket: &Bucket, result: &Result<Answer, String>) {
    let a = match result {
        Ok(a) => a,
        Err(why) => return log::warn!("site `{site}`: bucket `{}` {why}", bucket.name),
    };
    let name = &bucket.name;
    let said = a
        .message
        .as_deref()
        .map(|m| format!(" ({m})"))
        .unwrap_or_default();
    match verdict(a) {
        Verdict::Ok => log::info!(
            "site `{site}`: bucket check: a missing key answers 404, mirror rules can act"
        ),
        Verdict::NoListBucket => log::warn!(
            "site `{site}`: bucket `{name}` answers 403 AccessDenied{said}, not 404, for a \
             missing key, so no mirror or redirect rule on 404 will ever act. The credentials \
             lack s3:ListBucket (without it S3 hides missing keys behind 403): grant \
             s3:ListBucket on arn:aws:s3:::{name}, next to s3:GetObject and s3:PutObject on \
             arn:aws:s3:::{name}/*"
        ),
        Verdict::NoSuchBucket => log::error!(
            "site `{site}`: bucket `{name}` does not exist (404 NoSuchBucket{said}): every \
             request would be a miss and no write-back could store it. Check `bucket.name`, \
             `endpoint` and `addressing`; not ready until it exists"
        ),
        Verdict::Refused(code) => log::error!(
            "site `{site}`: bucket `{name}` refuses the proxy's requests: {} {code}{said}. \
             Check the credentials (`access_key_id_env`, `secret_access_key_env`), `region` \
             and the clock; not ready until it accepts them",
            a.status
        ),
        Verdict::Unexpected(s) => log::warn!(
            "site `{site}`: bucket check: a missing key answers {s}{said}, not 404; mirror \
             rules act on 404 only"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        let (code, message) = error_doc(body.as_bytes());
        Answer {
            status,
            code,
            message,
        }
    }

    #[test]
    fn verdicts_follow_the_error_code() {
        let doc = |c: &str, m: &str| {
            format!("<?xml version=\"1.0\"?><Error><Code>{c}</Code><Message>{m}</Message></Error>")
        };
        let cases = [
            (404, doc("NoSuchKey", "gone"), Verdict::Ok),
            (404, String::new(), Verdict::Ok),
            (404, doc("NoSuchBucket", "no bucket"), Verdict::NoSuchBucket),
            (
                403,
                doc("AccessDenied", "Access Denied"),
                Verdict::NoListBucket,
            ),
            (
                403,
                doc("SignatureDoesNotMatch", "x"),
                Verdict::Refused("SignatureDoesNotMatch".into()),
            ),
            (
                403,
                doc("InvalidAccessKeyId", "x"),
                Verdict::Refused("InvalidAccessKeyId".into()),
            ),
            (
                400,
                doc("AuthorizationHeaderMalformed", "region"),
                Verdict::Refused("AuthorizationHeaderMalformed".into()),
            ),
            (
                403,
                doc("AccessDenied", "Forbidden: Invalid signature"),
                Verdict::Refused("AccessDenied".into()),
            ),
            (500, doc("InternalError", "x"), Verdict::Unexpected(500)),
        ];
        for (status, body, want) in cases {
            assert_eq!(verdict(&answer(status, &body)), want, "{status} {body}");
        }
        assert!(serving(&Ok(answer(403, &doc("AccessDenied", "Access Denied")))).is_ok());
        assert!(serving(&Ok(answer(404, &doc("NoSuchBucket", "x")))).is_err());
        assert!(serving(&Ok(answer(503, ""))).is_err());
        assert!(serving(&Err("not reachable".into())).is_err());
    }
}
