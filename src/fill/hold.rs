//! Claims on a fill (see [`Hold`]).

use super::{Fill, Fills};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One holder's claim on a fill: the fetch task has one from the start
/// (`holds` begins at 1), each write-back takes another. The fill stays
/// joinable while any is held. Released on drop, so a task that ends in
/// any way, a panic included, still lets the fill leave the registry;
/// otherwise every later GET of its key would join a fill that can never
/// finish.
pub(super) struct Hold {
    pub(super) fills: Arc<Fills>,
    pub(super) fill: Arc<Fill>,
}

impl Hold {
    /// The fetch task's claim, counted when the fill was registered.
    pub(super) fn first(fills: Arc<Fills>, fill: Arc<Fill>) -> Hold {
        Hold { fills, fill }
    }

    /// Another claim on the same fill (a write-back's).
    pub(super) fn another(&self) -> Hold {
        self.fill.holds.fetch_add(1, Ordering::AcqRel);
        Hold {
            fills: self.fills.clone(),
            fill: self.fill.clone(),
        }
    }

    /// A write-back's claim, as the `settled` callback of its upload: the
    /// fill stays joinable until the object is in the bucket; once it
    /// is, the fill is remembered as stored (a bucket 404 that raced the
    /// commit asks the bucket again) and leaves the registry at once,
    /// even if the fetch task has not dropped its claim yet.
    pub(super) fn write_back(&self) -> impl FnOnce(bool) + Send + 'static {
        let upload = self.another();
        move |stored| {
            if stored {
                upload.fills.stored(&upload.fill);
                upload.fills.retire(&upload.fill);
            }
            drop(upload);
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.fills.release(&self.fill);
    }
}
