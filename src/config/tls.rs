//! `tls: { ca_file }` of a bucket or a mirror rule: extra trust roots on
//! top of the platform store (see `crate::tls`). The CA file is read here,
//! during validation, so a missing or broken file fails `origin-pull -t`
//! and a reload instead of the first upstream connection.

use crate::tls::TrustRoots;
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM file with one or more CA certificates; relative paths resolve
    /// against the config file's folder.
    pub ca_file: Option<String>,
}

/// The roots for an optional `tls` block. Errors are about `ca_file`.
pub(super) fn trust_roots(raw: Option<&RawTls>, base: &Path) -> Result<TrustRoots, String> {
    let Some(file) = raw.and_then(|t| t.ca_file.as_deref()) else {
        return Ok(TrustRoots::platform());
    };
    if file.trim().is_empty() {
        return Err("must name a PEM file".into());
    }
    TrustRoots::load(&[base.join(file)]).map_err(|e| e.to_string())
}
