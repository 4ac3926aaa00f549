//! Tee-to-bucket write-back (SPEC section 2).
//!
//! Two sources feed the same uploader (`upload`): a shared fill's spool
//! (the normal miss path: the uploader reads it at the bucket's own pace,
//! so a slow bucket delays only the commit, never a client), and, on the
//! plain path (spool budget exhausted, `mirror_on_bucket_error`), a tee:
//! the upstream body filter pushes each origin chunk into a bounded
//! channel with `try_send` (it runs inline and must never wait). The
//! object becomes visible only when complete and verified: a single PUT
//! whose last bytes are held back until the end was verified, or a
//! multipart upload completed only then.
//!
//! Pacing (the tee only): a bucket is slower than a client on loopback,
//! so any fixed channel overflows (without pacing, and with the uploader
//! on the request's worker thread, every plain-path object over about
//! 4 MB from a fast origin was abandoned). When the channel is more
//! than half full, the filter asks Pingora to pause before the next chunk
//! (its own throttle, no blocking), longer the fuller it is, which lets
//! the uploader catch up. The pauses of one request may add up to
//! [`pacing_budget`]: 10 s, plus one second per 4 MiB already passed on,
//! so a large object is stored as long as the bucket keeps taking it at
//! 4 MiB/s or more (the client is held to the bucket's pace meanwhile,
//! as nginx's `proxy_store` holds it to the disk's). Past the budget, or
//! when the channel is full, the write-back is abandoned and the client
//! streams at full speed again. Memory stays bounded by the channel.

mod reader;
mod upload;

pub use upload::abort_all as abort_open_uploads;

use crate::bucket::Bucket;
use crate::errors::RequestId;
use crate::metrics::{InFlight, WriteBackResult, METRICS};
use bytes::Bytes;
use reader::Reader;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Chunks (each at most 64 KiB from Pingora) buffered between the client
/// stream and the uploader on the plain path: 2 MiB per mirror at most.
pub const CHANNEL_CHUNKS: usize = 32;

/// The pause per queued chunk past half the channel, squared: 1 ms just
/// past half, 64 ms at three quarters, capped at 100 ms. A fixed 1 ms
/// pause would cap the client at 64 MiB/s (one 64 KiB chunk per ms) and a
/// slower bucket would still fill the channel; growing with the queue,
/// the pause settles where the client matches the bucket's pace.
const PACE: Duration = Duration::from_millis(1);
const MAX_PAUSE: Duration = Duration::from_millis(100);

fn pace(queued: usize) -> Duration {
    let over = queued.saturating_sub(CHANNEL_CHUNKS / 2) as u32;
    (PACE * over * over).min(MAX_PAUSE)
}

/// Pausing any write-back may take, whatever its size.
const BASE_PACING: Duration = Duration::from_secs(10);
/// The slowest bucket ingest a large write-back is waited for.
const MIN_INGEST_BYTES_PER_SEC: u64 = 4 << 20;

/// The most pausing a request may have taken once `passed` bytes went by.
/// Growing with size: a flat 10 s abandoned every write-back when eight
/// clients each pulled a distinct 1 GiB object from one Garage, each at
/// about 20 MB/s of the bucket's ingest.
fn pacing_budget(passed: u64) -> Duration {
    BASE_PACING + Duration::from_secs_f64(passed as f64 / MIN_INGEST_BYTES_PER_SEC as f64)
}

pub(crate) enum Msg {
    Data(Bytes),
    /// The origin body ended cleanly.
    End,
    /// The origin fetch failed: counted `aborted`, as on the spool path
    /// (a channel closed without either is `abandoned`: the tee gave up).
    Failed,
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
    /// Pauses asked for so far, and the bytes passed on.
    paced: Duration,
    passed: u64,
}

impl Tee {
    /// Starts the uploader task for `job` on `rt` and returns the
    /// producer. Not on the request's own worker thread: there the
    /// uploader would run only while the request's task waits, and the
    /// channel would fill in one read burst.
    pub fn start(job: Job, rt: &tokio::runtime::Handle) -> Tee {
        Tee::start_settled(job, rt, |_| ())
    }

    /// [`Tee::start`], telling `settled` whether the object is in the
    /// bucket before the outcome is logged (see [`store_from_fill`]).
    pub fn start_settled(
        job: Job,
        rt: &tokio::runtime::Handle,
        settled: impl FnOnce(bool) + Send + 'static,
    ) -> Tee {
        let (tee, rx) = Tee::channel();
        let reader = Reader::new(rx, job.expected_len, job.md5);
        let counted = InFlight::new(&METRICS.writebacks_in_flight);
        rt.spawn(async move {
            upload_logged(job, reader, counted, settled).await;
        });
        tee
    }

    /// The producer and the uploader's end. One slot more than the data
    /// may take: the end marker always finds room, so a body whose last
    /// chunk filled the channel is not taken for an abandoned one.
    fn channel() -> (Tee, mpsc::Receiver<Msg>) {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS + 1);
        let tee = Tee {
            tx: Some(tx),
            abandoned: false,
            paced: Duration::ZERO,
            passed: 0,
        };
        (tee, rx)
    }

    fn give_up(&mut self) {
        // Dropping the sender makes the uploader abort rather than store.
        self.tx = None;
        self.abandoned = true;
    }

    /// Passes a chunk on without waiting, and says how long the origin
    /// read should pause for the uploader to catch up (see the module
    /// doc). Pauses only once the response header is out (`may_pause`):
    /// Pingora runs the filters of a whole batch of tasks before writing
    /// any of it, so a pause in the batch that holds the header would
    /// delay the client's first byte. A full channel abandons the
    /// write-back.
    pub fn push(&mut self, data: &Bytes, may_pause: bool) -> Option<Duration> {
        let tx = self.tx.as_ref()?;
        if data.is_empty() {
            return None;
        }
        // Full (the end marker's slot aside) or closed (upload failed).
        if tx.capacity() <= 1 || tx.try_send(Msg::Data(data.clone())).is_err() {
            self.give_up();
            return None;
        }
        self.passed += data.len() as u64;
        let pause = pace(CHANNEL_CHUNKS + 1 - tx.capacity());
        if may_pause && pause > Duration::ZERO && self.paced < pacing_budget(self.passed) {
            self.paced += pause;
            return Some(pause);
        }
        None
    }

    /// Passes a chunk on, waiting while the channel is full: for a
    /// transfer no client waits for, whose origin read may follow the
    /// bucket's pace. False when the uploader is gone (it failed).
    pub async fn send(&mut self, data: Bytes) -> bool {
        let Some(tx) = self.tx.as_ref() else {
            return false;
        };
        // Room for this chunk and the end marker after it.
        let sent = match tx.reserve_many(2).await {
            Ok(mut permits) => permits.next().map(|p| p.send(Msg::Data(data))).is_some(),
            Err(_) => false,
        };
        if !sent {
            self.give_up();
        }
        sent
    }

    /// The tee gave up (channel full or uploader gone).
    pub fn abandoned(&self) -> bool {
        self.abandoned
    }

    /// Marks a failed origin fetch (the end marker's slot takes it).
    pub fn fail(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.try_send(Msg::Failed);
        }
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
        // The fill's own check failed (its reason is the fill's).
        WriteBackError::Fill(why) if why.starts_with("MD5") => WriteBackResult::Md5Mismatch,
        WriteBackError::Fill(_) => WriteBackResult::Aborted,
        WriteBackError::AlreadyExists => WriteBackResult::Exists,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_budget_grows_with_what_went_by() {
        assert_eq!(pacing_budget(0), Duration::from_secs(10));
        assert_eq!(pacing_budget(40 << 20), Duration::from_secs(20));
        // 1 GiB: waited for as long as the bucket takes >= 4 MiB/s.
        assert_eq!(pacing_budget(1 << 30), Duration::from_secs(10 + 256));
    }

    /// The end marker after a body whose last chunk filled the channel:
    /// it was dropped (`try_send` on a full channel), and the uploader
    /// took the complete body for an abandoned one.
    #[test]
    fn the_end_marker_fits_after_a_full_channel() {
        let (mut tee, mut rx) = Tee::channel();
        let chunk = Bytes::from_static(b"x");
        for _ in 0..CHANNEL_CHUNKS {
            tee.push(&chunk, false);
        }
        assert!(!tee.abandoned());
        tee.finish();
        let mut got = Vec::new();
        while let Ok(m) = rx.try_recv() {
            got.push(matches!(m, Msg::End));
        }
        assert_eq!(got.len(), CHANNEL_CHUNKS + 1);
        assert_eq!(got.last(), Some(&true), "no end marker");
        // One more chunk than the channel holds gives up instead.
        let (mut tee, _rx) = Tee::channel();
        for _ in 0..=CHANNEL_CHUNKS {
            tee.push(&chunk, false);
        }
        assert!(tee.abandoned());
    }

    #[tokio::test]
    async fn send_leaves_room_for_the_end_marker() {
        let (mut tee, mut rx) = Tee::channel();
        let chunk = Bytes::from_static(b"x");
        for _ in 0..CHANNEL_CHUNKS {
            assert!(tee.send(chunk.clone()).await);
        }
        tee.finish();
        let mut n = 0;
        while let Ok(m) = rx.try_recv() {
            n += 1;
            if n == CHANNEL_CHUNKS + 1 {
                assert!(matches!(m, Msg::End), "no end marker");
            }
        }
        assert_eq!(n, CHANNEL_CHUNKS + 1);
    }

    #[test]
    fn pauses_grow_as_the_channel_fills() {
        assert_eq!(pace(0), Duration::ZERO);
        assert_eq!(pace(CHANNEL_CHUNKS / 2), Duration::ZERO);
        assert_eq!(pace(CHANNEL_CHUNKS / 2 + 1), Duration::from_millis(1));
        assert_eq!(pace(CHANNEL_CHUNKS * 3 / 4), Duration::from_millis(64));
        assert_eq!(pace(CHANNEL_CHUNKS), MAX_PAUSE);
    }
}
