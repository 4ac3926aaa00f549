//! A start-up check that each bucket answers 404 for a missing key.
//!
//! Mirror rules act on the bucket's 404. AWS S3 answers `403 AccessDenied`
//! instead when the credentials lack `s3:ListBucket` (so that a caller
//! cannot learn which keys exist); then no rule ever fires and the proxy
//! looks broken while every log line says "403". One signed GET of a key
//! that cannot exist, in the background, turns that into a warning that
//! names the fix.

use crate::bucket::{Bucket, Payload};
use std::sync::Arc;
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

/// Checks every `(site name, bucket)` on a thread of its own; the result
/// is only logged, start-up never waits for it.
pub fn spawn(buckets: Vec<(String, Arc<Bucket>)>) {
    let run = move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return log::warn!("bucket check not run: {e}"),
        };
        // A client of its own: pooled connections belong to this runtime.
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
        {
            Ok(c) => c,
            Err(e) => return log::warn!("bucket check not run: {e}"),
        };
        rt.block_on(async {
            for (site, bucket) in &buckets {
                check(&client, site, bucket).await;
            }
        });
    };
    if let Err(e) = std::thread::Builder::new()
        .name("bucket-check".into())
        .spawn(run)
    {
        log::warn!("bucket check not run: {e}");
    }
}

async fn check(client: &reqwest::Client, site: &str, bucket: &Bucket) {
    let mut nonce = [0u8; 16];
    if let Err(e) = getrandom::fill(&mut nonce) {
        return log::warn!("site `{site}`: bucket check not run: {e}");
    }
    // A key nobody has written: the answer can only be "missing".
    let key = format!("origin-pull-check/{}", hex::encode(nonce));
    let path = bucket.object_path(&key);
    let signed = match bucket.sign("GET", &path, &[], Payload::Unsigned) {
        Ok(s) => s,
        Err(e) => return log::warn!("site `{site}`: bucket check not run: {e}"),
    };
    let mut req = client
        .get(format!("{}{path}", bucket.base_url()))
        .header("host", bucket.host());
    for (k, v) in &signed {
        req = req.header(k.as_str(), v.as_str());
    }
    let status = match req.send().await {
        Ok(resp) => resp.status().as_u16(),
        Err(e) => {
            return log::warn!(
                "site `{site}`: bucket `{}` not reachable at start-up: {e}",
                bucket.name
            )
        }
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
