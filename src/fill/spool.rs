//! The spool: the body of one fill on local disk, written once by the
//! fill task and read at their own offsets by every client and by the
//! write-back. The file is unlinked from birth (`tempfile` uses
//! `O_TMPFILE` or create-then-unlink), so a crash leaves nothing behind;
//! its space is freed when the last holder of the [`Spool`] drops it.
//!
//! A global [`Budget`] bounds the bytes all live spools may hold: a fill
//! reserves its Content-Length up front; a body without one (chunked)
//! grows its reservation as it is written, past the budget if it must
//! (it is already being served), but new fills fall back while the
//! budget is exceeded.

use bytes::{Bytes, BytesMut};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes all live spools may reserve together.
#[derive(Debug)]
pub struct Budget {
    max: u64,
    used: AtomicU64,
}

impl Budget {
    pub fn new(max: u64) -> Budget {
        Budget {
            max,
            used: AtomicU64::new(0),
        }
    }

    /// Reserves `n` bytes if they fit.
    fn try_reserve(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|t| *t <= self.max)
            })
            .is_ok()
    }

    fn release(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Whether a new fill may start at all.
    pub fn has_room(&self) -> bool {
        self.used.load(Ordering::Acquire) < self.max
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

/// One fill's body on disk.
#[derive(Debug)]
pub struct Spool {
    file: File,
    budget: Arc<Budget>,
    reserved: AtomicU64,
}

impl Spool {
    /// An empty, already unlinked file in `dir`.
    pub fn create(dir: &Path, budget: Arc<Budget>) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        Ok(Spool {
            file: tempfile::tempfile_in(dir)?,
            budget,
            reserved: AtomicU64::new(0),
        })
    }

    /// Reserves the whole body's length; false when the budget can't.
    pub fn reserve(&self, len: u64) -> bool {
        if !self.budget.try_reserve(len) {
            return false;
        }
        self.reserved.fetch_add(len, Ordering::AcqRel);
        true
    }

    /// Writes `data` at `offset`. A body of unknown length grows its
    /// reservation as it goes (`grow`).
    pub fn write_at(&self, offset: u64, data: &[u8], grow: bool) -> std::io::Result<()> {
        if grow {
            let n = data.len() as u64;
            self.budget.used.fetch_add(n, Ordering::AcqRel);
            self.reserved.fetch_add(n, Ordering::AcqRel);
        }
        // Page-cache writes of at most 64 KiB: cheap enough to do inline
        // on the fill runtime (never on a Pingora worker).
        self.file.write_all_at(data, offset)
    }

    /// Up to `max` bytes at `offset`, all of them below `end` (the
    /// published length: never read past what was written).
    pub fn read_at(&self, offset: u64, max: usize, end: u64) -> std::io::Result<Bytes> {
        let n = (end.saturating_sub(offset)).min(max as u64) as usize;
        let mut buf = BytesMut::zeroed(n);
        let mut got = 0;
        while got < n {
            let k = self.file.read_at(&mut buf[got..], offset + got as u64)?;
            if k == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "spool shorter than published",
                ));
            }
            got += k;
        }
        Ok(buf.freeze())
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.budget.release(*self.reserved.get_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_reserves_and_frees() {
        let dir = tempfile::tempdir().unwrap();
        let budget = Arc::new(Budget::new(100));
        let a = Spool::create(dir.path(), budget.clone()).unwrap();
        assert!(a.reserve(60));
        let b = Spool::create(dir.path(), budget.clone()).unwrap();
        assert!(!b.reserve(60), "over the budget");
        assert!(b.reserve(40));
        assert!(!budget.has_room());
        drop(a);
        assert_eq!(budget.used(), 40);
        b.write_at(0, b"hello", true).unwrap();
        assert_eq!(budget.used(), 45);
        assert_eq!(&b.read_at(1, 3, 5).unwrap()[..], b"ell");
        assert_eq!(b.read_at(4, 64, 5).unwrap().len(), 1);
        drop(b);
        assert_eq!(budget.used(), 0);
        // Unlinked from birth: nothing left in the folder.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
