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
//! asks Pingora to pause 1 ms before the next chunk (Pingora's own
//! throttle, no blocking), which lets the uploader catch up. The pauses of
//! one request add up to at most `MAX_PACING`; past that, or when the
//! channel is full, the write-back is abandoned and the client streams at
//! full speed again. Memory stays bounded by the channel either way.

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

/// One pause, and the most pausing one request may take for its write-back.
const PACE: Duration = Duration::from_millis(1);
pub const MAX_PACING: Duration = Duration::from_secs(10);

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
        if may_pause && tx.capacity() < CHANNEL_CHUNKS / 2 && self.paced < MAX_PACING {
            self.paced += PACE;
            return Some(PACE);
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
