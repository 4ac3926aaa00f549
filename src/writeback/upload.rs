//! Uploading one mirrored object: a single PUT for small objects, S3
//! multipart upload otherwise. Bodies stream from the fill's spool or the
//! tee when the length is known; without a length (chunked origin) see
//! [`unknown`]: from the spool each part is sized, then streamed; from
//! the tee parts are buffered, one uploading while the next fills.
//!
//! Limits: at most [`MAX_UPLOADS`] uploads run at once in the process
//! (more wait for a slot: while they wait their tee fills, and one that
//! waits too long is abandoned by the tee, never stored half); every
//! bucket request fails once the bucket makes no progress for
//! [`idle::BUCKET_IDLE`]; a request the bucket failed in passing (5xx,
//! `SlowDown`, a reset) is sent again when its body can be (see
//! [`retry`]); a failed multipart upload is aborted, with retries (see
//! [`s3::abort`]).

mod idle;
mod open;
mod retry;
mod s3;
mod unknown;

pub use open::abort_all;
use open::OpenUpload;

use super::reader::Reader;
use super::{Job, WriteBackError};
use bytes::Bytes;
use idle::Progress;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{Mutex, Semaphore};

/// Objects up to this size go in one PUT.
const SINGLE_PUT_MAX: u64 = 8 << 20;
/// Part size (S3's minimum is 5 MiB); grown so no object needs more than
/// 10,000 parts.
const PART: u64 = 8 << 20;
const MAX_PARTS: u64 = 10_000;
/// Unknown length: the part size doubles after every this many parts.
const PARTS_PER_SIZE: u64 = 1_000;
/// Uploads running at once, process-wide: each holds a bucket connection,
/// and, for a tee's body of unknown length, up to two parts of memory.
const MAX_UPLOADS: usize = 64;

static UPLOADS: Semaphore = Semaphore::const_new(MAX_UPLOADS);

type Shared = Arc<Mutex<(Reader, Option<WriteBackError>)>>;

pub(super) async fn run(job: &Job, reader: Reader) -> Result<u64, WriteBackError> {
    let _slot = match UPLOADS.try_acquire() {
        Ok(p) => p,
        Err(_) => {
            log::info!(
                "write-back waits for an upload slot key={:?} ({MAX_UPLOADS} running)",
                job.key
            );
            UPLOADS
                .acquire()
                .await
                .map_err(|e| WriteBackError::Http(format!("upload slots: {e}")))?
        }
    };
    match job.expected_len {
        Some(len) if len <= SINGLE_PUT_MAX => {
            put_streamed(job, &mut Arc::new(Mutex::new((reader, None))), len).await
        }
        Some(len) => multipart_streamed(job, reader, len).await,
        None => unknown::upload(job, reader).await,
    }
}

/// Prefers the stream's own error (the real cause) over the HTTP error it
/// provoked.
async fn cause<T>(shared: &Shared, r: Result<T, WriteBackError>) -> Result<T, WriteBackError> {
    match r {
        Ok(v) => Ok(v),
        Err(e) => Err(shared.lock().await.1.take().unwrap_or(e)),
    }
}

/// Sends `len` bytes of the reader from `offset` as the body of `send`'s
/// request, again while the failure is worth it ([`retry::retryable`])
/// and the reader can start over at `offset` (a fill's spool can; the
/// tee cannot). A retry replaces `shared` with the rewound reader, which
/// the later parts go on from.
async fn send_streamed<T, F, Fut>(
    job: &Job,
    shared: &mut Shared,
    offset: u64,
    len: u64,
    is_last: bool,
    what: &str,
    send: F,
) -> Result<T, WriteBackError>
where
    F: Fn(reqwest::Body, Progress) -> Fut,
    Fut: Future<Output = Result<T, WriteBackError>>,
{
    let mut attempt = 1;
    loop {
        // Taken before the request: after a failure the HTTP client may
        // still hold the body, and with it the lock, waiting on the origin.
        let spare = shared.lock().await.0.rewound(offset);
        let progress = Progress::bucket();
        let body = part_body(shared.clone(), len, is_last, &progress);
        let e = match cause(shared, send(body, progress).await).await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let Some(rewound) = spare else {
            return Err(e);
        };
        if !retry::again(job, what, attempt, &e).await {
            return Err(e);
        }
        *shared = Arc::new(Mutex::new((rewound, None)));
        attempt += 1;
    }
}

/// The whole object, `len` bytes of the reader, in one PUT ([`send_streamed`]).
async fn put_streamed(job: &Job, shared: &mut Shared, len: u64) -> Result<u64, WriteBackError> {
    let put =
        |body, progress: Progress| async move { s3::put_object(job, body, len, &progress).await };
    send_streamed(job, shared, 0, len, true, "PUT", put)
        .await
        .map(|_| len)
}

/// Part `n` of upload `upload_id`: `len` bytes of the reader from
/// `offset` ([`send_streamed`]); its ETag.
async fn part_streamed(
    job: &Job,
    shared: &mut Shared,
    upload_id: &str,
    n: usize,
    (offset, len): (u64, u64),
    is_last: bool,
) -> Result<String, WriteBackError> {
    let send = |body, progress: Progress| async move {
        s3::upload_part(job, upload_id, n, body, len, &progress).await
    };
    let what = format!("UploadPart {n}");
    send_streamed(job, shared, offset, len, is_last, &what, send).await
}

/// A body of exactly `len` bytes taken from the reader. For the last part
/// the final chunk is released only after the end marker arrived and the
/// checks passed, so a bucket never receives a whole object that was not.
fn part_body(shared: Shared, len: u64, is_last: bool, progress: &Progress) -> reqwest::Body {
    let progress = progress.clone();
    let stream =
        futures_util::stream::unfold((shared, len, false), move |(shared, mut left, done)| {
            let progress = progress.clone();
            async move {
                if done {
                    return None;
                }
                // Waiting for the origin's bytes is not the bucket idling.
                progress.waiting_on_source(true);
                let mut g = shared.lock().await;
                let (reader, failure) = &mut *g;
                let step = if left == 0 {
                    Ok(Bytes::new())
                } else {
                    match reader.next(left as usize).await {
                        Ok(Some(chunk)) => Ok(chunk),
                        Ok(None) => Err(WriteBackError::Abandoned),
                        Err(e) => Err(e),
                    }
                };
                let step = match step {
                    Ok(chunk) => {
                        left -= chunk.len() as u64;
                        if left == 0 && is_last {
                            reader.finish().await.map(|_| chunk)
                        } else {
                            Ok(chunk)
                        }
                    }
                    Err(e) => Err(e),
                };
                progress.waiting_on_source(false);
                let item = match step {
                    Ok(chunk) => Ok(chunk),
                    Err(e) => {
                        *failure = Some(e);
                        Err(std::io::Error::other("write-back stream failed"))
                    }
                };
                let finished = left == 0 || item.is_err();
                drop(g);
                Some((item, (shared, left, finished)))
            }
        });
    reqwest::Body::wrap_stream(stream)
}

async fn multipart_streamed(job: &Job, reader: Reader, len: u64) -> Result<u64, WriteBackError> {
    let part = PART.max(len.div_ceil(MAX_PARTS));
    let upload = create(job).await?;
    let upload_id = upload.id.as_str();
    let mut shared: Shared = Arc::new(Mutex::new((reader, None)));
    let parts = async {
        let mut etags = Vec::new();
        let mut offset = 0;
        while offset < len {
            let this = part.min(len - offset);
            let n = etags.len() + 1;
            let is_last = offset + this == len;
            let etag = part_streamed(job, &mut shared, upload_id, n, (offset, this), is_last);
            etags.push(etag.await?);
            offset += this;
        }
        complete(job, upload_id, &etags).await
    }
    .await;
    finish_multipart(job, upload, parts).await.map(|_| len)
}

/// CreateMultipartUpload, retried. An attempt whose answer was lost
/// leaves an upload nobody completes: the bucket's
/// `AbortIncompleteMultipartUpload` lifecycle rule removes it.
async fn create(job: &Job) -> Result<OpenUpload, WriteBackError> {
    let id = retry::retried(job, "CreateMultipartUpload", || s3::create(job)).await?;
    Ok(OpenUpload::new(job, id))
}

/// CompleteMultipartUpload, retried. When an attempt's answer was lost
/// after the bucket completed the upload, the next one gets `NoSuchUpload`
/// and the write-back counts as failed although the object is stored:
/// the next request reads it from the bucket.
async fn complete(job: &Job, upload_id: &str, etags: &[String]) -> Result<(), WriteBackError> {
    retry::retried(job, "CompleteMultipartUpload", || {
        s3::complete(job, upload_id, etags)
    })
    .await
}

/// Aborts the upload when anything failed, so no parts linger; either
/// way the upload is no longer open.
async fn finish_multipart<T>(
    job: &Job,
    upload: OpenUpload,
    r: Result<T, WriteBackError>,
) -> Result<T, WriteBackError> {
    if r.is_err() {
        s3::abort(job, &upload.id).await;
    }
    upload.close();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn uploads_past_the_cap_wait_for_a_slot() {
        let slots = Semaphore::const_new(MAX_UPLOADS);
        let held: Vec<_> = (0..MAX_UPLOADS)
            .map(|_| slots.try_acquire().expect("a free slot"))
            .collect();
        assert!(slots.try_acquire().is_err());
        let waiter = slots.acquire();
        tokio::pin!(waiter);
        assert!(futures_util::poll!(&mut waiter).is_pending());
        drop(held);
        assert!(waiter.await.is_ok());
    }
}
