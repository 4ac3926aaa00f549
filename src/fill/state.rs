//! What a fill is for and where it stands: its key, the origin's head,
//! its state as readers see it.

use std::sync::Arc;

/// What makes two requests want the same bytes: the site, the bucket key,
/// the origin URL (with the passed query) and a digest of the header
/// values the rule passes to the origin. Two sites never share a fill,
/// and clients whose passed headers differ never get each other's variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FillKey {
    pub site: String,
    pub key: String,
    pub url: String,
    pub headers: [u8; 32],
}

impl FillKey {
    pub fn new(
        site: &str,
        key: &str,
        url: &str,
        headers: &[(http::HeaderName, http::HeaderValue)],
    ) -> FillKey {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for (k, v) in headers {
            // Length-prefixed, so ("ab","c") and ("a","bc") differ.
            let (k, v) = (k.as_str().as_bytes(), v.as_bytes());
            h.update((k.len() as u64).to_be_bytes());
            h.update(k);
            h.update((v.len() as u64).to_be_bytes());
            h.update(v);
        }
        FillKey {
            site: site.to_string(),
            key: key.to_string(),
            url: url.to_string(),
            headers: h.finalize().into(),
        }
    }
}

/// The origin's `200` as every reader of the fill answers it.
#[derive(Debug)]
pub struct Head {
    /// The stored origin headers plus `x-oss-tag`.
    pub headers: Vec<(String, String)>,
    /// The origin's Content-Length (`None`: chunked or close-delimited).
    pub len: Option<u64>,
}

/// Why a fill produced no body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The origin answered 404.
    NotFound,
    /// No usable answer (other status, connect error, timeout): 424.
    Failed(String),
    /// The spool could not take the body: serve this miss the plain way.
    Fallback,
}

/// A fill's progress, published to every reader.
#[derive(Debug, Clone)]
pub enum State {
    /// No origin header yet.
    Waiting,
    /// Body bytes `0..written` are in the spool.
    Body { head: Arc<Head>, written: u64 },
    /// The whole body is in the spool and passed the checks.
    Done { head: Arc<Head>, len: u64 },
    /// No body: the answer every attached client gets.
    Answer(Outcome),
    /// The body broke off (truncated, reset, stalled, MD5, cancelled):
    /// readers must end without a valid end of body.
    Failed(Arc<str>),
}

impl State {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            State::Done { .. } | State::Answer(_) | State::Failed(_)
        )
    }
}
