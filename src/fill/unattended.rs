//! Fills nobody reads any more: kept going while small enough and few
//! enough, otherwise cancelled after a grace period (README "Clients
//! leaving").

use super::{Fill, Fills, State};
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Fills {
    /// The last reader left `fill`: it goes on while what remains is
    /// small enough and the unattended cap allows; otherwise it is
    /// cancelled after the grace period unless someone rejoins.
    pub(super) fn left_alone(self: &Arc<Self>, fill: &Arc<Fill>) {
        let state = fill.state();
        if state.is_terminal() {
            return;
        }
        let remaining = match &state {
            State::Body { head, written } => head
                .len
                .map_or(u64::MAX, |len| len.saturating_sub(*written)),
            _ => u64::MAX,
        };
        let room = self.unattended.load(Ordering::Acquire) < self.cfg.max_unattended;
        let small = fill.background || remaining <= self.cfg.unattended_max_bytes;
        let small = small && fill.stores;
        if room && small {
            if !fill.unattended.swap(true, Ordering::AcqRel) {
                self.unattended.fetch_add(1, Ordering::AcqRel);
            }
            return;
        }
        let grace = self.cfg.unattended_grace;
        let weak = Arc::downgrade(fill);
        // Only the timer of the latest departure may cancel: someone who
        // rejoined and left again gets a whole grace period too.
        let departure = fill.departures.fetch_add(1, Ordering::AcqRel) + 1;
        self.rt.spawn(async move {
            tokio::time::sleep(grace).await;
            if let Some(f) = weak.upgrade() {
                if f.readers.load(Ordering::Acquire) == 0
                    && f.departures.load(Ordering::Acquire) == departure
                    && !f.state().is_terminal()
                {
                    f.cancel.notify_one();
                }
            }
        });
    }
}
