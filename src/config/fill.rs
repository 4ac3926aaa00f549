//! The `fill:` section: where shared fills spool and how much they may
//! hold (SPEC section 5, `crate::fill`).

use super::locate::FieldPath;
use super::raw::RawFill;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillConfig {
    /// Spool files are created (and unlinked at once) here.
    pub spool_dir: PathBuf,
    /// All live spools together reserve at most this many bytes.
    pub max_spool_bytes: u64,
    /// A fill nobody reads any more still completes while what remains
    /// is at most this.
    pub unattended_max_bytes: u64,
    /// Otherwise it is cancelled this long after its last reader left.
    pub unattended_grace: Duration,
    /// At most this many fills run without readers at once.
    pub max_unattended: usize,
}

impl Default for FillConfig {
    fn default() -> FillConfig {
        FillConfig {
            spool_dir: std::env::temp_dir().join("origin-pull-spool"),
            max_spool_bytes: 10 << 30,
            unattended_max_bytes: 1 << 30,
            unattended_grace: Duration::from_secs(30),
            max_unattended: 64,
        }
    }
}

/// Raw → model; an error names the field it is about.
pub(super) fn validate(
    path: &FieldPath,
    raw: Option<&RawFill>,
    base: &Path,
) -> Result<FillConfig, (FieldPath, String)> {
    let mut c = FillConfig::default();
    let Some(raw) = raw else { return Ok(c) };
    if let Some(dir) = &raw.spool_dir {
        if dir.trim().is_empty() {
            return Err((path.key("spool_dir"), "must not be empty".into()));
        }
        c.spool_dir = base.join(dir);
    }
    if let Some(n) = raw.max_spool_bytes {
        c.max_spool_bytes = n;
    }
    if let Some(n) = raw.unattended_max_bytes {
        c.unattended_max_bytes = n;
    }
    if let Some(s) = raw.unattended_grace_seconds {
        c.unattended_grace = Duration::from_secs(s);
    }
    if let Some(n) = raw.max_unattended {
        c.max_unattended = n;
    }
    Ok(c)
}
