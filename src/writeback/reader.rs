//! The uploader's view of the object's bytes (a fill's spool, or the tee
//! channel of the plain path): chunks cut to part boundaries, and the
//! checks that decide whether the stream was complete.

use super::{Msg, WriteBackError};
use bytes::Bytes;
use md5::{Digest, Md5};
use tokio::sync::mpsc;

/// Where the bytes come from.
enum Source {
    /// The plain path's tee: an explicit end marker after the last chunk.
    Channel(mpsc::Receiver<Msg>),
    /// A fill's spool, read at the bucket's pace; it ends only when the
    /// fill ended verified.
    Fill(crate::fill::Cursor),
}

/// Spool bytes taken per read: the uploader's memory besides a part.
const FILL_READ: usize = 256 << 10;

pub(crate) struct Reader {
    source: Source,
    pending: Option<Bytes>,
    received: u64,
    expected: Option<u64>,
    want_md5: Option<[u8; 16]>,
    md5: Md5,
    ended: bool,
}

impl Reader {
    pub fn new(
        rx: mpsc::Receiver<Msg>,
        expected: Option<u64>,
        want_md5: Option<[u8; 16]>,
    ) -> Reader {
        Reader::with(Source::Channel(rx), expected, want_md5)
    }

    pub fn from_fill(cursor: crate::fill::Cursor, expected: Option<u64>) -> Reader {
        Reader::with(Source::Fill(cursor), expected, None)
    }

    /// A reader of the same bytes from `offset`, for another attempt at a
    /// bucket request: a fill's spool still holds them; the tee's channel
    /// does not (`None`).
    pub fn rewound(&self, offset: u64) -> Option<Reader> {
        let Source::Fill(cursor) = &self.source else {
            return None;
        };
        // A fill checked the origin's MD5 itself; its reader has none to
        // carry over.
        debug_assert!(self.want_md5.is_none());
        let mut r = Reader::with(Source::Fill(cursor.at(offset)), self.expected, None);
        r.received = offset;
        Some(r)
    }

    /// For a fill's spool: how many bytes (at most `want`) there are from
    /// `from` on, once there are that many or the body ended, and whether
    /// it ends there (see `Cursor::ready`). `None` for the tee's channel,
    /// whose bytes are known only once taken.
    pub async fn ready(
        &mut self,
        from: u64,
        want: u64,
    ) -> Option<Result<(u64, bool), WriteBackError>> {
        let Source::Fill(cursor) = &mut self.source else {
            return None;
        };
        Some(cursor.ready(from, want).await.map_err(WriteBackError::Fill))
    }

    fn with(source: Source, expected: Option<u64>, want_md5: Option<[u8; 16]>) -> Reader {
        Reader {
            source,
            pending: None,
            received: 0,
            expected,
            want_md5,
            md5: Md5::new(),
            ended: false,
        }
    }

    /// The next chunk of at most `max` bytes; `None` at the verified end.
    pub async fn next(&mut self, max: usize) -> Result<Option<Bytes>, WriteBackError> {
        let mut chunk = match self.pending.take() {
            Some(p) => p,
            None => match self.recv().await? {
                Some(b) => b,
                None => return Ok(None),
            },
        };
        if chunk.len() > max {
            self.pending = Some(chunk.split_off(max));
        }
        Ok(Some(chunk))
    }

    /// After all bytes were taken: waits for the end marker and verifies.
    pub async fn finish(&mut self) -> Result<u64, WriteBackError> {
        if self.pending.as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(self.too_long());
        }
        if self.recv().await?.is_some() {
            return Err(self.too_long());
        }
        Ok(self.received)
    }

    fn too_long(&self) -> WriteBackError {
        WriteBackError::Length {
            got: self.received,
            want: self.expected.unwrap_or(0),
        }
    }

    /// One chunk from the channel, `None` once the end was verified.
    async fn recv(&mut self) -> Result<Option<Bytes>, WriteBackError> {
        if self.ended {
            return Ok(None);
        }
        let msg = match &mut self.source {
            Source::Channel(rx) => rx.recv().await,
            Source::Fill(cursor) => match cursor.next(FILL_READ).await {
                Ok(Some(b)) => Some(Msg::Data(b)),
                Ok(None) => Some(Msg::End),
                Err(why) => return Err(WriteBackError::Fill(why)),
            },
        };
        match msg {
            Some(Msg::Data(b)) => {
                self.received += b.len() as u64;
                if self.expected.is_some_and(|want| self.received > want) {
                    return Err(self.too_long());
                }
                // Only a tee's body is checked here; a fill checked its own.
                if self.want_md5.is_some() {
                    self.md5.update(&b);
                }
                Ok(Some(b))
            }
            Some(Msg::Failed) => Err(WriteBackError::Fill("the origin fetch failed".into())),
            Some(Msg::End) => {
                self.ended = true;
                if let Some(want) = self.expected {
                    if want != self.received {
                        return Err(WriteBackError::Length {
                            got: self.received,
                            want,
                        });
                    }
                }
                if let Some(want) = self.want_md5 {
                    if self.md5.clone().finalize().as_slice() != want {
                        return Err(WriteBackError::Md5);
                    }
                }
                Ok(None)
            }
            None => Err(WriteBackError::Abandoned),
        }
    }
}
