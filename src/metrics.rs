//! Process-wide counters (exported by the admin endpoint when configured).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Counters {
    pub mirrors: AtomicU64,
    pub mirror_failures: AtomicU64,
    pub writebacks_stored: AtomicU64,
    pub writebacks_failed: AtomicU64,
    pub writebacks_abandoned: AtomicU64,
    pub bytes_mirrored: AtomicU64,
}

pub static COUNTERS: Counters = Counters {
    mirrors: AtomicU64::new(0),
    mirror_failures: AtomicU64::new(0),
    writebacks_stored: AtomicU64::new(0),
    writebacks_failed: AtomicU64::new(0),
    writebacks_abandoned: AtomicU64::new(0),
    bytes_mirrored: AtomicU64::new(0),
};

pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}
