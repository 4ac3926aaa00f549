//! The two ways to read a fill: as a client attached to it (which keeps
//! it attended) and through a cursor over its spool (clients via the fill
//! peer, and the write-back).

use super::{Fill, State};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::watch;

/// A client attached to a fill. While any exist the fill is attended;
/// when the last one goes, the unattended rules apply.
#[derive(Debug)]
pub struct Attached {
    pub fill: Arc<Fill>,
}

impl Attached {
    pub(super) fn attach(fill: Arc<Fill>) -> Attached {
        if fill.readers.fetch_add(1, Ordering::AcqRel) == 0
            && fill.unattended.swap(false, Ordering::AcqRel)
        {
            if let Some(f) = fill.fills.upgrade() {
                f.unattended.fetch_sub(1, Ordering::AcqRel);
            }
        }
        Attached { fill }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if self.fill.readers.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(f) = self.fill.fills.upgrade() {
                f.left_alone(&self.fill);
            }
        }
    }
}

/// A reading position in a fill's spool that follows the live edge.
pub struct Cursor {
    fill: Arc<Fill>,
    rx: watch::Receiver<State>,
    pub(super) pos: u64,
}

impl Cursor {
    pub fn new(fill: Arc<Fill>, pos: u64) -> Cursor {
        let rx = fill.subscribe();
        Cursor { fill, rx, pos }
    }

    /// Another cursor on the same fill at `pos`: the spool keeps every
    /// byte, so a failed write-back request can read its bytes again.
    pub fn at(&self, pos: u64) -> Cursor {
        Cursor::new(self.fill.clone(), pos)
    }

    /// Until the fill's state changes; an error when its writer is gone
    /// without a final state.
    async fn wait(&mut self) -> Result<(), String> {
        if self.rx.changed().await.is_err() && !self.rx.borrow().is_terminal() {
            return Err("the fill stopped".into());
        }
        Ok(())
    }

    /// Waits until the spool holds `want` bytes from `from` on, or the body
    /// ended (verified) before that. Returns how many bytes there are from
    /// `from` (at most `want`) and whether the body ends there. Reads
    /// nothing: the write-back sizes a part of an unknown-length body with
    /// it, then streams the part from the spool.
    pub async fn ready(&mut self, from: u64, want: u64) -> Result<(u64, bool), String> {
        loop {
            let state = self.rx.borrow_and_update().clone();
            match state {
                State::Body { written, .. } if written >= from.saturating_add(want) => {
                    return Ok((want, false))
                }
                State::Done { len, .. } => {
                    let left = len.saturating_sub(from);
                    return Ok((left.min(want), left <= want));
                }
                State::Failed(why) => return Err(why.to_string()),
                State::Answer(_) => return Err("the fill has no body".into()),
                State::Waiting | State::Body { .. } => self.wait().await?,
            }
        }
    }

    /// The next bytes (at most `max`) from the position, waiting for the
    /// fill when at its live edge; `None` at the end of a verified body.
    /// A broken fill is an error, never an end.
    pub async fn next(&mut self, max: usize) -> Result<Option<bytes::Bytes>, String> {
        loop {
            let state = self.rx.borrow_and_update().clone();
            let limit = match state {
                // The last byte of a sized body waits for the checks
                // (length, MD5): a client must never get a complete body
                // from a fill that then fails them.
                State::Body { head, written } if head.len == Some(written) && written > 0 => {
                    if written - 1 > self.pos {
                        written - 1
                    } else {
                        self.wait().await?;
                        continue;
                    }
                }
                State::Body { written, .. } if written > self.pos => written,
                State::Done { len, .. } if len > self.pos => len,
                State::Done { .. } => return Ok(None),
                State::Failed(why) => return Err(why.to_string()),
                State::Answer(_) => return Err("the fill has no body".into()),
                State::Waiting | State::Body { .. } => {
                    self.wait().await?;
                    continue;
                }
            };
            let chunk = self
                .fill
                .spool
                .read_at(self.pos, max, limit)
                .map_err(|e| format!("spool read: {e}"))?;
            self.pos += chunk.len() as u64;
            return Ok(Some(chunk));
        }
    }
}
