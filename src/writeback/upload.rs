//! Uploading one mirrored object: a single PUT for small objects, S3
//! multipart upload otherwise. Bodies stream straight from the tee when
//! the length is known; without a length (chunked origin) parts are
//! buffered, with one part uploading while the next fills.
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
mod retry;
mod s3;

use super::reader::Reader;
use super::{Job, WriteBackError};
use bytes::{Bytes, BytesMut};
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
/// Uploads running at once, process-wide: each holds a bucket connection
/// and up to two parts of memory (unknown length).
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
            let mut shared: Shared = Arc::new(Mutex::new((reader, None)));
            let put = |body, progress: Progress| async move {
                s3::put_object(job, body, len, &progress).await
            };
            send_streamed(job, &mut shared, 0, len, true, "PUT", put)
                .await
                .map(|_| len)
        }
        Some(len) => multipart_streamed(job, reader, len).await,
        None => buffered(job, reader).await,
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
    let upload_id = create(job).await?;
    let mut shared: Shared = Arc::new(Mutex::new((reader, None)));
    let parts = async {
        let mut etags = Vec::new();
        let mut offset = 0;
        while offset < len {
            let this = part.min(len - offset);
            let n = etags.len() + 1;
            let id = upload_id.as_str();
            let send = |body, progress: Progress| async move {
                s3::upload_part(job, id, n, body, this, &progress).await
            };
            let what = format!("UploadPart {n}");
            let is_last = offset + this == len;
            let etag = send_streamed(job, &mut shared, offset, this, is_last, &what, send).await;
            etags.push(etag?);
            offset += this;
        }
        complete(job, &upload_id, &etags).await
    }
    .await;
    finish_multipart(job, &upload_id, parts).await.map(|_| len)
}

/// Size of part `n` (from 1) of a body of unknown length: [`PART`],
/// doubled after every [`PARTS_PER_SIZE`] parts, so 10,000 parts hold
/// more than S3's largest object (5 TiB) while no part passes S3's
/// largest part (5 GiB), and small objects keep small buffers.
fn unknown_length_part(n: u64) -> u64 {
    let doublings = (n.saturating_sub(1) / PARTS_PER_SIZE).min(9);
    PART << doublings
}

async fn buffered(job: &Job, mut reader: Reader) -> Result<u64, WriteBackError> {
    let (first, ended) = fill(&mut reader, unknown_length_part(1)).await?;
    if ended {
        let len = first.len() as u64;
        retry::retried(job, "PUT", || {
            let progress = Progress::bucket();
            let body = s3::body_of(first.clone(), &progress);
            async move { s3::put_object(job, body, len, &progress).await }
        })
        .await?;
        return Ok(len);
    }
    let upload_id = create(job).await?;
    let mut total = first.len() as u64;
    // The part being uploaded while the next one is read. Outside the loop
    // so a failure can stop it before the upload is aborted (below).
    let mut in_flight = Some(spawn_part(job, &upload_id, 1, first));
    let parts = async {
        let mut etags = Vec::new();
        loop {
            let next = etags.len() as u64 + 2;
            if next > MAX_PARTS {
                return Err(WriteBackError::Bucket(
                    0,
                    format!("object larger than {MAX_PARTS} parts"),
                ));
            }
            let (buf, ended) = fill(&mut reader, unknown_length_part(next)).await?;
            if let Some(p) = in_flight.as_mut() {
                let etag = p.await;
                in_flight = None;
                etags.push(etag.map_err(|e| WriteBackError::Http(e.to_string()))??);
            }
            if !buf.is_empty() {
                total += buf.len() as u64;
                in_flight = Some(spawn_part(job, &upload_id, etags.len() + 1, buf));
            }
            if ended {
                break;
            }
        }
        if let Some(p) = in_flight.as_mut() {
            let etag = p.await;
            in_flight = None;
            etags.push(etag.map_err(|e| WriteBackError::Http(e.to_string()))??);
        }
        complete(job, &upload_id, &etags).await.map(|_| total)
    }
    .await;
    if let Some(p) = in_flight.take() {
        // Failed while a part was in flight: dropping its handle would leave
        // the task running, and a part the bucket completes after the abort
        // outlives it (billed, until a lifecycle rule removes it). Stop it
        // and wait until it has stopped.
        p.abort();
        let _ = p.await;
    }
    finish_multipart(job, &upload_id, parts).await
}

/// Up to `size` bytes, and whether the stream ended.
async fn fill(reader: &mut Reader, size: u64) -> Result<(Bytes, bool), WriteBackError> {
    let mut buf = BytesMut::new();
    while (buf.len() as u64) < size {
        match reader.next((size - buf.len() as u64) as usize).await? {
            Some(chunk) => buf.extend_from_slice(&chunk),
            None => return Ok((buf.freeze(), true)),
        }
    }
    Ok((buf.freeze(), false))
}

fn spawn_part(
    job: &Job,
    upload_id: &str,
    n: usize,
    data: Bytes,
) -> tokio::task::JoinHandle<Result<String, WriteBackError>> {
    let job = Job {
        request_id: job.request_id,
        bucket: job.bucket.clone(),
        key: job.key.clone(),
        headers: Vec::new(),
        tag: String::new(),
        expected_len: None,
        md5: None,
    };
    let upload_id = upload_id.to_string();
    tokio::spawn(async move {
        let len = data.len() as u64;
        let (job, id) = (&job, upload_id.as_str());
        retry::retried(job, &format!("UploadPart {n}"), || {
            let progress = Progress::bucket();
            let body = s3::body_of(data.clone(), &progress);
            async move { s3::upload_part(job, id, n, body, len, &progress).await }
        })
        .await
    })
}

/// CreateMultipartUpload, retried. An attempt whose answer was lost
/// leaves an upload nobody completes: the bucket's
/// `AbortIncompleteMultipartUpload` lifecycle rule removes it.
async fn create(job: &Job) -> Result<String, WriteBackError> {
    retry::retried(job, "CreateMultipartUpload", || s3::create(job)).await
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

/// Aborts the upload when anything failed, so no parts linger.
async fn finish_multipart<T>(
    job: &Job,
    upload_id: &str,
    r: Result<T, WriteBackError>,
) -> Result<T, WriteBackError> {
    if r.is_err() {
        s3::abort(job, upload_id).await;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_length_parts_grow_before_the_part_limit() {
        assert_eq!(unknown_length_part(1), PART);
        assert_eq!(unknown_length_part(1_000), PART);
        assert_eq!(unknown_length_part(1_001), 2 * PART);
        assert_eq!(unknown_length_part(2_001), 4 * PART);
        // Never past S3's 5 GiB part limit.
        assert!(unknown_length_part(MAX_PARTS) <= 5 << 30);
        assert_eq!(unknown_length_part(u64::MAX), PART << 9);
        // 10,000 parts hold more than S3's largest object, 5 TiB.
        let total: u64 = (1..=MAX_PARTS).map(unknown_length_part).sum();
        assert!(total >= 5 << 40, "{total}");
        // Up to 8 GB the parts stay at 8 MiB.
        let first_size: u64 = (1..=PARTS_PER_SIZE).map(unknown_length_part).sum();
        assert_eq!(first_size, PARTS_PER_SIZE * PART);
    }

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
