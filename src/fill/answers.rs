//! Error answers the fill peer writes for the proxy.
//!
//! Pingora 0.9 closes the client's connection after any answer written
//! from `fail_to_proxy`, so an S3 error decided while proxying (502 for an
//! unreachable bucket, 424 or 404 on the plain path, 500) would cost the
//! client a reconnect, and a TLS handshake on an HTTPS listener, on every
//! such request: during a bucket outage, on all of them. Instead the
//! proxy parks the error here under the request's id and reroutes the
//! request to the fill peer's `/answer`, which writes it; Pingora passes
//! that on like any response and keeps the connection, as nginx does.

use super::Fills;
use crate::errors::S3Error;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub(super) struct Answers(Mutex<HashMap<String, S3Error>>);

impl Answers {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, S3Error>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The answer parked for request `id`, once.
    pub(super) fn take(&self, id: &str) -> Option<S3Error> {
        self.map().remove(id)
    }
}

/// An answer parked for the fill peer. Dropped with the request, so an
/// answer the peer never fetched (the client left first) does not stay.
#[derive(Debug)]
pub struct ParkedAnswer {
    fills: Arc<Fills>,
    id: String,
}

impl Fills {
    /// Parks `e` for the fill peer's `/answer` with request id `id`.
    pub fn park_answer(self: &Arc<Self>, id: String, e: S3Error) -> ParkedAnswer {
        self.answers.map().insert(id.clone(), e);
        ParkedAnswer {
            fills: self.clone(),
            id,
        }
    }
}

impl Drop for ParkedAnswer {
    fn drop(&mut self) {
        self.fills.answers.take(&self.id);
    }
}
