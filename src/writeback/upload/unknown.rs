//! Objects whose origin sent no length (chunked): the parts' sizes are
//! known only as the bytes arrive.
//!
//! From a fill's spool (the miss path) nothing is held in memory: each
//! part is sized once the spool holds it, or the body ended, and then
//! streamed from the spool, so a failed part is sent again from there
//! ([`from_spool`]). From the plain path's tee the bytes exist only as they
//! pass: parts are buffered, one uploading while the next fills
//! ([`buffered`]).

use super::idle::Progress;
use super::{
    complete, create, finish_multipart, part_streamed, put_streamed, retry, s3, Shared, MAX_PARTS,
    PART, PARTS_PER_SIZE,
};
use crate::writeback::reader::Reader;
use crate::writeback::{Job, WriteBackError};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tokio::sync::Mutex;

pub(super) async fn upload(job: &Job, mut reader: Reader) -> Result<u64, WriteBackError> {
    match reader.ready(0, unknown_length_part(1)).await {
        Some(first) => from_spool(job, reader, first?).await,
        None => buffered(job, reader).await,
    }
}

/// A fill's body of unknown length, `first` = the first part's size and
/// whether the body ends there: one PUT when it does, else multipart,
/// each part streamed from the spool once the spool holds all of it.
async fn from_spool(job: &Job, reader: Reader, first: (u64, bool)) -> Result<u64, WriteBackError> {
    let mut shared: Shared = Arc::new(Mutex::new((reader, None)));
    if first.1 {
        return put_streamed(job, &mut shared, first.0).await;
    }
    let upload = create(job).await?;
    let upload_id = upload.id.as_str();
    let parts = async {
        let mut etags = Vec::new();
        let mut offset = 0;
        let (mut this, mut ended) = first;
        loop {
            let n = etags.len() + 1;
            if n as u64 > MAX_PARTS {
                return Err(too_many_parts());
            }
            if n > 1 {
                let size = unknown_length_part(n as u64);
                let ready = shared.lock().await.0.ready(offset, size).await;
                (this, ended) = ready.unwrap_or(Err(WriteBackError::Abandoned))?;
                if this == 0 {
                    break; // it ended on the last part's boundary
                }
            }
            let etag = part_streamed(job, &mut shared, upload_id, n, (offset, this), ended);
            etags.push(etag.await?);
            offset += this;
            if ended {
                break;
            }
        }
        complete(job, upload_id, &etags).await.map(|_| offset)
    }
    .await;
    finish_multipart(job, upload, parts).await
}

fn too_many_parts() -> WriteBackError {
    WriteBackError::Bucket(0, format!("object larger than {MAX_PARTS} parts"))
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
    let upload = create(job).await?;
    let upload_id = upload.id.as_str();
    let mut total = first.len() as u64;
    // The part being uploaded while the next one is read. Outside the loop
    // so a failure can stop it before the upload is aborted (below).
    let mut in_flight = Some(spawn_part(job, upload_id, 1, first));
    let parts = async {
        let mut etags = Vec::new();
        loop {
            let next = etags.len() as u64 + 2;
            if next > MAX_PARTS {
                return Err(too_many_parts());
            }
            let (buf, ended) = fill(&mut reader, unknown_length_part(next)).await?;
            if let Some(p) = in_flight.as_mut() {
                let etag = p.await;
                in_flight = None;
                etags.push(etag.map_err(|e| WriteBackError::Http(e.to_string()))??);
            }
            if !buf.is_empty() {
                total += buf.len() as u64;
                in_flight = Some(spawn_part(job, upload_id, etags.len() + 1, buf));
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
        complete(job, upload_id, &etags).await.map(|_| total)
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
    finish_multipart(job, upload, parts).await
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
}
