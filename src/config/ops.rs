//! The operations sections (SPEC 5): `admin`, `access_log`,
//! `shutdown_timeout_seconds`. Kept apart from `validate` so each section
//! stays small.

use super::locate::FieldPath;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Pingora's own grace period, and nginx's usual worker_shutdown_timeout
/// order of magnitude: long enough for a large mirror to finish.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    pub path: String,
    #[serde(default)]
    pub format: LogFormat,
}

/// `access_log.format`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// nginx/Apache "combined", plus request id, duration and outcome.
    Combined,
}

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    pub target: LogTarget,
    pub format: LogFormat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

pub(super) fn admin(
    raw: Option<&RawAdmin>,
    path: &FieldPath,
) -> Result<Option<AdminConfig>, (FieldPath, String)> {
    let Some(raw) = raw else { return Ok(None) };
    let listen = raw.listen.parse::<SocketAddr>().map_err(|_| {
        (
            path.key("listen"),
            format!("`{}` is not an ip:port address", raw.listen),
        )
    })?;
    Ok(Some(AdminConfig { listen }))
}

/// The admin listener may not take a proxy listener's port: it binds
/// first, and the proxy's workers could then never bind theirs.
pub(super) fn admin_apart(admin: &AdminConfig, listen: &[super::Listener]) -> Result<(), String> {
    let a = admin.listen;
    for l in listen {
        let Ok(p) = l.addr.parse::<SocketAddr>() else {
            continue;
        };
        // An unspecified address covers its own family only (`0.0.0.0`
        // and `[::1]` don't clash).
        let same_family = a.is_ipv4() == p.is_ipv4();
        let overlap = a.ip() == p.ip()
            || (same_family && (a.ip().is_unspecified() || p.ip().is_unspecified()));
        if a.port() == p.port() && overlap {
            return Err(format!("`{a}` is also a `listen` address (`{}`)", l.addr));
        }
    }
    Ok(())
}

/// A relative file path is taken from the config file's folder, like
/// `local:` buckets.
pub(super) fn access_log(
    raw: Option<&RawAccessLog>,
    path: &FieldPath,
    base: &Path,
) -> Result<Option<AccessLogConfig>, (FieldPath, String)> {
    let Some(raw) = raw else { return Ok(None) };
    let target = match raw.path.as_str() {
        "stdout" | "-" => LogTarget::Stdout,
        "" => return Err((path.key("path"), "must be `stdout` or a file path".into())),
        p => {
            let p = base.join(p);
            if p.is_dir() {
                return Err((path.key("path"), format!("{} is a folder", p.display())));
            }
            match p.parent() {
                Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
                    return Err((
                        path.key("path"),
                        format!("folder {} does not exist", dir.display()),
                    ))
                }
                _ => LogTarget::File(p),
            }
        }
    };
    Ok(Some(AccessLogConfig {
        target,
        format: raw.format,
    }))
}

pub(super) fn shutdown_timeout(
    raw: Option<u64>,
    path: &FieldPath,
) -> Result<Duration, (FieldPath, String)> {
    match raw {
        None => Ok(DEFAULT_SHUTDOWN_TIMEOUT),
        Some(0) => Err((path.clone(), "must be at least 1".into())),
        Some(s) => Ok(Duration::from_secs(s)),
    }
}
