//! Reload in place (SIGHUP, `POST /-/reload`): the file is validated like
//! `-t`; on any error the running config stays. Otherwise the whole
//! routing state is rebuilt and swapped (see `OriginPull::reload`):
//! requests keep the site they started with, write-backs their bucket.

use super::Control;
use crate::config::Config;
use crate::metrics::METRICS;

/// Why a reload did not take.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file did not validate (the message names `file:line:column`).
    #[error("{0}")]
    Invalid(String),
    #[error("{0} changed: this needs a restart; the running configuration stays")]
    NeedsRestart(&'static str),
    #[error("{0}")]
    Start(String),
}

/// Reloads the file. Ok carries what the file changed that only a restart
/// applies (empty: all of it is in force).
pub async fn run(c: &Control) -> Result<Vec<&'static str>, ReloadError> {
    let _one = c.reloading.lock().await;
    let path = c.path.clone();
    // Reading files and starting local buckets is blocking work.
    let loaded = tokio::task::spawn_blocking(move || Config::load(&path))
        .await
        .map_err(|e| ReloadError::Start(e.to_string()));
    let result = match loaded {
        Err(e) => Err(e),
        Ok(Err(e)) => Err(ReloadError::Invalid(e.to_string())),
        Ok(Ok(new)) => {
            // Credentials for the new buckets before they take requests
            // (a reload that first brings `credentials: aws_chain`).
            crate::credentials::configure(&new);
            crate::credentials::refresh_if_due().await;
            apply(c, new)
        }
    };
    if result.is_err() {
        // The config in force stays: so does whether the chain is used.
        crate::credentials::configure(&c.config());
    }
    match &result {
        Ok(kept) if kept.is_empty() => {
            METRICS.reload("ok");
            log::info!("reload: {} is in force", c.path.display());
        }
        Ok(kept) => {
            METRICS.reload("ok");
            log::warn!(
                "reload: {} is in force, except {} (kept until a restart)",
                c.path.display(),
                kept.join(", ")
            );
        }
        Err(e) => {
            METRICS.reload(match e {
                ReloadError::NeedsRestart(_) => "refused",
                _ => "failed",
            });
            log::error!("reload refused: {e}");
        }
    }
    result
}

fn apply(c: &Control, mut new: Config) -> Result<Vec<&'static str>, ReloadError> {
    let kept;
    {
        let old = c.config();
        // Certificates may change; addresses, TLS on/off and h2 may not.
        if crate::config::listen::same_sockets(&old.listen, &new.listen).is_err() {
            return Err(ReloadError::NeedsRestart("`listen`"));
        }
        if old.threads != new.threads {
            return Err(ReloadError::NeedsRestart("`threads`"));
        }
        if old.admin != new.admin {
            return Err(ReloadError::NeedsRestart("`admin`"));
        }
        kept = restart_only(&c.started, &mut new);
    }
    c.proxy
        .reload(&new)
        .map_err(|e| ReloadError::Start(e.to_string()))?;
    // The certificate files were read (and checked) by `Config::load`;
    // new handshakes use them from here on, open connections keep theirs.
    c.edge
        .reload(&new.listen)
        .map_err(|e| ReloadError::Start(e.to_string()))?;
    crate::access_log::configure(new.access_log.clone());
    *c.config() = new;
    Ok(kept)
}

/// What a reload takes but only a restart applies, judged against what
/// the process `started` with: the fill registry and its spool settings,
/// the client listeners' buffers, HTTP/2's idle bound (set on the
/// listeners at start), and a shutdown timeout longer than the start's
/// (Pingora's grace period is fixed at start as that value + 5 s, so a
/// longer one would be cut short). `new` keeps the started values of
/// those it can (HTTP/1.1 takes the new idle bound), so the configuration
/// in force says what is in force; the names are returned, at every
/// reload until a restart.
fn restart_only(old: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut kept = Vec::new();
    if old.fill != new.fill {
        new.fill = old.fill.clone();
        kept.push("`fill`");
    }
    let (o, n) = (old.limits, &mut new.limits);
    if (
        o.downstream_write_buffer_bytes,
        o.downstream_read_buffer_bytes,
    ) != (
        n.downstream_write_buffer_bytes,
        n.downstream_read_buffer_bytes,
    ) {
        n.downstream_write_buffer_bytes = o.downstream_write_buffer_bytes;
        n.downstream_read_buffer_bytes = o.downstream_read_buffer_bytes;
        kept.push("`limits.downstream_*_buffer_bytes`");
    }
    if o.client_idle_timeout_seconds != n.client_idle_timeout_seconds {
        // HTTP/1.1 connections take the new bound from the next request.
        kept.push("`limits.client_idle_timeout_seconds` for HTTP/2");
    }
    if new.shutdown_timeout > old.shutdown_timeout {
        new.shutdown_timeout = old.shutdown_timeout;
        kept.push("a longer `shutdown_timeout_seconds`");
    }
    kept
}
