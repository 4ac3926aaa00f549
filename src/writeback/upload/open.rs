//! Multipart uploads begun and not yet completed or aborted, so a
//! shutdown that cannot wait for them (`shutdown_timeout_seconds` passed)
//! aborts them instead of leaving their parts in the bucket, billed until
//! a lifecycle rule removes them.

use super::s3;
use crate::bucket::Bucket;
use crate::errors::RequestId;
use crate::writeback::Job;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Bucket, key and upload id of an open upload, and the request that
/// caused it (an abort at shutdown is logged under its id).
type Entry = (Arc<Bucket>, String, String, Option<RequestId>);

static OPEN: Mutex<Option<HashMap<u64, Entry>>> = Mutex::new(None);
static NEXT: AtomicU64 = AtomicU64::new(0);

/// An upload id, registered while the upload is open: [`Self::close`]
/// (it was completed or aborted) takes it off the list. Dropped unclosed
/// (the upload's task panicked), it is aborted then.
pub struct OpenUpload {
    pub id: String,
    slot: u64,
    closed: bool,
}

impl OpenUpload {
    pub fn new(job: &Job, id: String) -> OpenUpload {
        let slot = NEXT.fetch_add(1, Ordering::Relaxed);
        let entry = (
            job.bucket.clone(),
            job.key.clone(),
            id.clone(),
            job.request_id,
        );
        let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
        open.get_or_insert_with(HashMap::new).insert(slot, entry);
        OpenUpload {
            id,
            slot,
            closed: false,
        }
    }

    /// The upload was completed or aborted.
    pub fn close(mut self) {
        self.closed = true;
    }
}

impl Drop for OpenUpload {
    fn drop(&mut self) {
        let entry = {
            let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
            open.as_mut().and_then(|m| m.remove(&self.slot))
        };
        if self.closed {
            return;
        }
        // Neither completed nor aborted: abort it now, or leave it for a
        // shutdown's `abort_all` where no runtime is at hand.
        let Some((bucket, key, id, request_id)) = entry else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move { s3::abort(&job_for(bucket, key), &id).await });
            }
            Err(_) => {
                let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
                open.get_or_insert_with(HashMap::new)
                    .insert(self.slot, (bucket, key, id, request_id));
            }
        }
    }
}

/// What an abort needs of a write-back: its bucket and key.
fn job_for(bucket: Arc<Bucket>, key: String) -> Job {
    Job {
        bucket,
        key,
        headers: Vec::new(),
        tag: String::new(),
        expected_len: None,
        md5: None,
        request_id: None,
    }
}

/// Aborts every open upload (one attempt each, all at once, `within` at
/// most) and logs each with its upload id; returns how many were open.
pub async fn abort_all(within: Duration) -> usize {
    let open: Vec<_> = {
        let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
        open.as_mut()
            .map(|m| m.drain().map(|(_, v)| v).collect())
            .unwrap_or_default()
    };
    let n = open.len();
    let aborts = open.into_iter().map(|(bucket, key, id, request_id)| async move {
        let job = job_for(bucket, key);
        let done = tokio::time::timeout(within, s3::abort_once(&job, &id)).await;
        if matches!(done, Ok(Ok(true))) {
            // The upload's own task never reports it: the process ends.
            let result = crate::metrics::WriteBackResult::Aborted;
            crate::writeback::record(&job.bucket, &job.key, request_id, result, 0);
        }
        match done {
            Ok(Ok(true)) => log::warn!(
                "shutdown: write-back key={:?} not finished; upload_id={id} aborted (not stored)",
                job.key
            ),
            Ok(Ok(false)) => log::info!(
                "shutdown: write-back key={:?}: upload_id={id} already gone (completed or \
                 aborted meanwhile)",
                job.key
            ),
            Ok(Err(e)) => log::error!(
                "shutdown: write-back key={:?} not finished; abort of upload_id={id} failed: {e}; \
                 its parts stay until the bucket's AbortIncompleteMultipartUpload rule removes them",
                job.key
            ),
            Err(_) => log::error!(
                "shutdown: write-back key={:?} not finished; abort of upload_id={id} got no answer \
                 within {within:?}; its parts stay until the bucket's lifecycle rule removes them",
                job.key
            ),
        }
    });
    futures_util::future::join_all(aborts).await;
    n
}
