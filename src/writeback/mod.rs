//! Tee-to-bucket write-back (SPEC section 2).
//!
//! Two sources feed the same uploader (`upload`): a shared fill's spool
//! (the normal miss path: the uploader reads it at the bucket's own pace,
//! so a slow bucket delays only the commit, never a client), and, on the
//! plain path (spool budget exhausted, `mirror_on_bucket_error`), a tee:
//! the response body filter pushes each origin chunk into a bounded
//! channel with `try_send` (it runs inline and must never wait); when
//! the channel is full the write-back is abandoned, never the client
//! slowed. The object becomes visible only when complete and verified: a
//! single PUT whose last bytes are held back until the end was verified,
//! or a multipart upload completed only then.

mod reader;
mod upload;

use crate::bucket::Bucket;
use crate::errors::RequestId;
use crate::metrics::{InFlight, WriteBackResult, METRICS};
use bytes::Bytes;
use reader::Reader;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Chunks (each at most 64 KiB from Pingora) buffered between the client
/// stream and the uploader on the plain path: 2 MiB per mirror at most.
pub const CHANNEL_CHUNKS: usize = 32;

pub(crate) enum Msg {
    Data(Bytes),
    /// The origin body ended cleanly.
    End,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteBackError {
    #[error("abandoned: the stream stopped before its end (client gone, origin failed, or bucket too slow)")]
    Abandoned,
    #[error("length mismatch: got {got} bytes, the origin announced {want}")]
    Length { got: u64, want: u64 },
    #[error("MD5 mismatch with the origin's Content-MD5")]
    Md5,
    #[error("bucket answered {0}: {1}")]
    Bucket(u16, String),
    #[error("bucket request failed: {0}")]
    Http(String),
    /// The bucket took nothing and answered nothing for the idle limit.
    #[error("the bucket made no progress for {} s", .0.as_secs_f32())]
    Stalled(std::time::Duration),
    #[error("signing: {0}")]
    Sign(String),
    #[error("the origin fetch failed: {0}")]
    Fill(String),
    /// The bucket refused to overwrite (`If-None-Match: *`): the key was
    /// written meanwhile by someone else. Not a failure.
    #[error("object already exists")]
    AlreadyExists,
}

/// What to store, and how to check it.
pub struct Job {
    pub bucket: Arc<Bucket>,
    pub key: String,
    /// The stored origin headers.
    pub headers: Vec<(String, String)>,
    /// `x-oss-tag` value, kept as user metadata.
    pub tag: String,
    /// The origin's `Content-Length`, when it sent one.
    pub expected_len: Option<u64>,
    /// The origin's `Content-MD5` (16 bytes), when `check_md5` is on.
    pub md5: Option<[u8; 16]>,
    /// The request that caused it: the final result is logged again
    /// (access log) under the same id.
    pub request_id: Option<RequestId>,
}

/// The producer half, owned by the request.
pub struct Tee {
    tx: Option<mpsc::Sender<Msg>>,
    abandoned: bool,
}

impl Tee {
    /// Starts the uploader task for `job` and returns the producer.
    pub fn start(job: Job) -> Tee {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let reader = Reader::new(rx, job.expected_len, job.md5);
        let counted = InFlight::new(&METRICS.writebacks_in_flight);
        tokio::spawn(async move {
            upload_logged(job, reader, counted, |_| ()).await;
        });
        Tee {
            tx: Some(tx),
            abandoned: false,
        }
    }

    /// Passes a chunk on without waiting. A full channel (the bucket is
    /// slower than the client) abandons the write-back: the client is
    /// never slowed for it.
    pub fn push(&mut self, data: &Bytes) {
        let Some(tx) = self.tx.as_ref() else { return };
        if data.is_empty() {
            return;
        }
        if tx.try_send(Msg::Data(data.clone())).is_err() {
            // Full or closed (upload failed): drop the sender so the
            // uploader aborts rather than stores.
            self.tx = None;
            self.abandoned = true;
        }
    }

    /// The tee gave up (channel full or uploader gone).
    pub fn abandoned(&self) -> bool {
        self.abandoned
    }

    /// Marks a clean end of the origin body.
    pub fn finish(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.try_send(Msg::End);
        }
    }
}

/// Stores a fill's object from its spool (see `crate::fill`).
/// `counted` is taken before the task is spawned, so a shutdown never
/// sees a moment with nothing in flight. `retire` gets whether the object
/// is in the bucket (stored, or found there) and runs before the outcome
/// is logged: the fill leaves the
/// registry first, so once "write-back stored" is in the log the next
/// request reads the bucket, not the spool (tests and operators rely on
/// that order).
pub async fn store_from_fill(
    job: Job,
    cursor: crate::fill::Cursor,
    counted: InFlight,
    retire: impl FnOnce(bool),
) {
    let reader = Reader::from_fill(cursor, job.expected_len);
    upload_logged(job, reader, counted, retire).await;
}

/// A write-back in flight (see [`store_from_fill`]).
pub fn counted() -> InFlight {
    InFlight::new(&METRICS.writebacks_in_flight)
}

/// Runs the upload, tells `settled` whether the object is in the bucket, then reports
/// the outcome (metrics, access log, log line).
async fn upload_logged(job: Job, reader: Reader, _counted: InFlight, settled: impl FnOnce(bool)) {
    let key = job.key.clone();
    let done = upload::run(&job, reader).await;
    // "Skipped: already exists" also means the object is in the bucket.
    settled(matches!(done, Ok(_) | Err(WriteBackError::AlreadyExists)));
    let (result, bytes) = match &done {
        Ok(n) => (WriteBackResult::Stored, *n),
        Err(e) => (result_of(e), 0),
    };
    record(&job.bucket, &key, job.request_id, result, bytes);
    match done {
        Ok(n) => log::info!("write-back stored key={key:?} bytes={n}"),
        Err(WriteBackError::Abandoned) => log::warn!("write-back abandoned key={key:?}"),
        Err(WriteBackError::AlreadyExists) => {
            log::info!("write-back skipped key={key:?}: object already exists")
        }
        Err(e) => log::warn!("write-back failed key={key:?}: {e}"),
    }
}

/// A write-back not attempted because the origin's body has no length
/// framing ([`crate::mirror::storable_framing`]): counted and logged like
/// the others, so "why is this object never stored" has an answer.
pub fn unframed(bucket: &Bucket, key: &str, request_id: Option<RequestId>) {
    record(bucket, key, request_id, WriteBackResult::Unframed, 0);
    log::info!(
        "write-back skipped key={key:?}: the origin's body has no length framing \
         (served, not stored)"
    );
}

/// A write-back's result in the metrics and the access log.
fn record(
    bucket: &Bucket,
    key: &str,
    request_id: Option<RequestId>,
    result: WriteBackResult,
    bytes: u64,
) {
    bucket.metrics.writeback(result, bytes);
    crate::access_log::writeback(request_id, &bucket.metrics.site, key, result, bytes);
}

/// The metric label of a failed write-back.
fn result_of(e: &WriteBackError) -> WriteBackResult {
    match e {
        WriteBackError::Abandoned => WriteBackResult::Abandoned,
        WriteBackError::Length { .. } => WriteBackResult::LengthMismatch,
        WriteBackError::Md5 => WriteBackResult::Md5Mismatch,
        WriteBackError::Bucket(s, _) if (400..500).contains(s) => WriteBackResult::Refused,
        WriteBackError::Bucket(..)
        | WriteBackError::Http(_)
        | WriteBackError::Stalled(_)
        | WriteBackError::Sign(_) => WriteBackResult::Failed,
        WriteBackError::Fill(_) => WriteBackResult::Aborted,
        WriteBackError::AlreadyExists => WriteBackResult::Exists,
    }
}
