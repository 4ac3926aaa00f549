//! A `mode: async` object the spool budget cannot hold, or one of
//! unknown length (chunked), which could outgrow it: no client reads it,
//! so nothing needs the spool. The origin's body goes straight into
//! the bucket, the origin read following the upload's pace. (A fill a
//! client reads falls back to the plain path instead, which streams to
//! that client with a tee.) Without this, such an object was never
//! stored: every later miss was another 302 and another origin GET.

use super::hold::Hold;
use super::FetchJob;
use futures_util::StreamExt;
use md5::{Digest, Md5};

/// Streams `resp`'s body into the write-back `wb`. Ok(true): the origin's
/// body was passed on whole (the uploader checks its length and MD5 and
/// stores it or not); Ok(false): the uploader stopped first (its failure
/// is logged and counted by the write-back); Err: the origin broke off.
pub(super) async fn store(
    hold: &Hold,
    job: &FetchJob,
    resp: reqwest::Response,
    wb: crate::writeback::Job,
    why: &str,
) -> Result<bool, String> {
    // The uploader checks the MD5 too (and stores nothing on a mismatch);
    // checked here as well, so the origin's metrics count it as the spool
    // path does.
    let want_md5 = wb.md5;
    let mut md5 = Md5::new();
    log::info!(
        "fill key={:?}: background fill streams to the bucket without a spool ({why})",
        job.key
    );
    let mut tee = crate::writeback::Tee::start_settled(wb, &hold.fills.rt, hold.write_back());
    let mut body = resp.bytes_stream();
    loop {
        let next = match tokio::time::timeout(job.timeout, body.next()).await {
            Ok(n) => n,
            Err(_) => {
                tee.fail();
                return Err(format!("origin stalled for {:?}", job.timeout));
            }
        };
        let chunk = match next {
            None => break,
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                tee.fail(); // the upload is aborted, counted as on the spool path
                return Err(format!("origin body: {}", crate::errors::chain(&e)));
            }
        };
        if let Some(m) = &job.metrics {
            m.bytes.inc_by(chunk.len() as u64);
        }
        if want_md5.is_some() {
            md5.update(&chunk);
        }
        if !tee.send(chunk).await {
            return Ok(false);
        }
    }
    tee.finish();
    if want_md5.is_some_and(|want| md5.finalize().as_slice() != want) {
        return Err("MD5 mismatch with the origin's Content-MD5".into());
    }
    Ok(true)
}
