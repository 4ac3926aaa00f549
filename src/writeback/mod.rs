//! Tee-to-bucket write-back (SPEC section 2).
//!
//! The response body filter pushes each origin chunk into a bounded
//! channel with `try_send` (it runs inline and must never wait). A
//! background task uploads what arrives. The object becomes visible only
//! when complete and verified: a single PUT whose last bytes are held back
//! until the end marker and checks passed, or a multipart upload completed
//! only then.
//!
//! Pacing: a bucket a little slower than the client (Garage on loopback
//! writes slower than a local client reads) would overflow any fixed
//! channel. So when the channel is more than half full, the body filter
//! asks Pingora to pause before the next chunk (Pingora's own throttle, no
//! blocking), longer the fuller it is, which lets the uploader catch up. The pauses of
//! one request may add up to [`pacing_budget`]: 10 s, plus one second per
//! 4 MiB already passed on, so a large object is stored as long as the
//! bucket keeps taking it at 4 MiB/s or more (the client is held to the
//! bucket's pace meanwhile, as nginx's `proxy_store` holds it to the
//! disk's). Past the budget, or when the channel is full, the write-back
//! is abandoned and the client streams at full speed again. Memory stays
//! bounded by the channel either way.
//!
//! Why grow with size: a flat 10 s abandoned every write-back when eight
//! clients each pulled a distinct 1 GiB object from one Garage (bench/,
//! memory row): each got about 20 MB/s of the bucket's ingest, so none
//! finished in 10 s, and every later GET would fetch from the origin again.

mod reader;
mod upload;

use crate::bucket::Bucket;
use crate::metrics::{inc, COUNTERS};
use bytes::Bytes;
use reader::Reader;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Chunks (each at most 64 KiB from Pingora) buffered between the client
/// stream and the uploader: 2 MiB per mirror at most.
pub const CHANNEL_CHUNKS: usize = 32;

/// The pause per queued chunk past half the channel, squared: 1 ms just
/// past half, 64 ms at three quarters, capped at 100 ms. A fixed 1 ms
/// pause capped the client at 64 MiB/s (one 64 KiB chunk per ms), so a
/// bucket slower than that still filled the channel and lost the
/// write-back (seen as a flaky 512 MiB test under load); growing with the
/// queue, the pause settles where the client matches the bucket's pace.
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
pub fn pacing_budget(passed: u64) -> Duration {
    BASE_PACING + Duration::from_secs_f64(passed as f64 / MIN_INGEST_BYTES_PER_SEC as f64)
}

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
    #[error("signing: {0}")]
    Sign(String),
    /// The bucket refused to overwrite (`If-None-Match: *`): the key was
    /// written meanwhile by someone else. Not a failure.
    #[error("object already exists")]
    AlreadyExists,
}

/// What to store, and how to check it.
pub struct Job {
    pub bucket: Arc<Bucket>,
    pub client: reqwest::Client,
    pub key: String,
    /// The stored origin headers.
    pub headers: Vec<(String, String)>,
    /// `x-oss-tag` value, kept as user metadata.
    pub tag: String,
    /// The origin's `Content-Length`, when it sent one.
    pub expected_len: Option<u64>,
    /// The origin's `Content-MD5` (16 bytes), when `check_md5` is on.
    pub md5: Option<[u8; 16]>,
}

/// The producer half, owned by the request.
pub struct Tee {
    tx: Option<mpsc::Sender<Msg>>,
    abandoned: bool,
    paced: Duration,
    passed: u64,
}

impl Tee {
    /// Starts the uploader task for `job` and returns the producer.
    pub fn start(job: Job) -> Tee {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        tokio::spawn(async move {
            let key = job.key.clone();
            let reader = Reader::new(rx, job.expected_len, job.md5);
            match upload::run(&job, reader).await {
                Ok(n) => {
                    inc(&COUNTERS.writebacks_stored);
                    log::info!("write-back stored key={key:?} bytes={n}");
                }
                Err(WriteBackError::Abandoned) => {
                    inc(&COUNTERS.writebacks_abandoned);
                    log::warn!("write-back abandoned key={key:?}");
                }
                Err(WriteBackError::AlreadyExists) => {
                    log::info!("write-back skipped key={key:?}: object already exists");
                }
                Err(e) => {
                    inc(&COUNTERS.writebacks_failed);
                    log::warn!("write-back failed key={key:?}: {e}");
                }
            }
        });
        Tee {
            tx: Some(tx),
            abandoned: false,
            paced: Duration::ZERO,
            passed: 0,
        }
    }

    /// Passes a chunk on without waiting; returns a pause for Pingora to
    /// take before the next chunk when the uploader lags, but only once
    /// the response header is out (`may_pause`): Pingora runs the filters
    /// of a whole batch of tasks before writing any of it, so a pause in
    /// the batch that holds the header would delay the client's first
    /// byte (measured: +3 ms on a 64 MiB miss while the multipart upload
    /// was still being created).
    pub fn push(&mut self, data: &Bytes, may_pause: bool) -> Option<Duration> {
        let tx = self.tx.as_ref()?;
        if data.is_empty() {
            return None;
        }
        if tx.try_send(Msg::Data(data.clone())).is_err() {
            // Full (bucket too slow) or closed (upload failed): drop the
            // sender so the uploader aborts rather than stores.
            self.tx = None;
            self.abandoned = true;
            return None;
        }
        self.passed += data.len() as u64;
        let pause = pace(CHANNEL_CHUNKS - tx.capacity());
        if may_pause && pause > Duration::ZERO && self.paced < pacing_budget(self.passed) {
            self.paced += pause;
            return Some(pause);
        }
        None
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

    #[test]
    fn pauses_grow_as_the_channel_fills() {
        assert_eq!(pace(0), Duration::ZERO);
        assert_eq!(pace(CHANNEL_CHUNKS / 2), Duration::ZERO);
        assert_eq!(pace(CHANNEL_CHUNKS / 2 + 1), Duration::from_millis(1));
        assert_eq!(pace(CHANNEL_CHUNKS * 3 / 4), Duration::from_millis(64));
        assert_eq!(pace(CHANNEL_CHUNKS), MAX_PAUSE);
    }
}
