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

pub async fn run(c: &Control) -> Result<(), ReloadError> {
    let _one = c.reloading.lock().await;
    let path = c.path.clone();
    // Reading files and starting local buckets is blocking work.
    let loaded = tokio::task::spawn_blocking(move || Config::load(&path))
        .await
        .map_err(|e| ReloadError::Start(e.to_string()));
    let result = match loaded {
        Err(e) => Err(e),
        Ok(Err(e)) => Err(ReloadError::Invalid(e.to_string())),
        Ok(Ok(new)) => apply(c, new),
    };
    match &result {
        Ok(()) => {
            METRICS.reload("ok");
            log::info!("reload: {} is in force", c.path.display());
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

fn apply(c: &Control, new: Config) -> Result<(), ReloadError> {
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
        if old.fill != new.fill {
            log::warn!("reload: `fill` changes take effect at the next restart");
        }
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
    Ok(())
}
