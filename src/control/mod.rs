//! The control plane of the `origin-pull` binary, on a thread and runtime
//! of its own (never a Pingora worker): signals (SIGHUP reload, SIGTERM
//! drain, SIGUSR1 reopen the access log), the admin listener and the
//! background bucket probes that feed `/readyz`.
//!
//! Pingora traps SIGTERM, SIGINT and SIGQUIT itself. On SIGTERM it stops
//! accepting and then sleeps its grace period in full (pingora-core 0.9);
//! [`shutdown`] watches the work in flight instead and ends the process as
//! soon as there is none, so an idle proxy exits at once.

mod admin;
mod ready;
mod reload;
mod shutdown;

use crate::config::Config;
use crate::edge_tls::EdgeTls;
use crate::proxy::OriginPull;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("admin listener {0}: {1}")]
    Admin(std::net::SocketAddr, std::io::Error),
    #[error("control thread: {0}")]
    Thread(std::io::Error),
}

/// What the control tasks share.
pub struct Control {
    path: PathBuf,
    proxy: OriginPull,
    /// The TLS listeners' certificates (a reload re-reads them).
    edge: EdgeTls,
    /// The configuration in force (the last one that loaded).
    config: Mutex<Config>,
    /// What the process started with: what only a restart changes is
    /// judged against it (`reload::restart_only`).
    started: Config,
    draining: AtomicBool,
    /// Per site: the last probe's verdict (`Err` names why not ready).
    ready: Mutex<BTreeMap<String, Result<(), String>>>,
    /// One reload at a time (SIGHUP and `POST /-/reload`).
    reloading: tokio::sync::Mutex<()>,
}

impl Control {
    fn config(&self) -> std::sync::MutexGuard<'_, Config> {
        self.config.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// Starts the control thread for a proxy built from `config` (loaded from
/// `path`). The admin listener is bound before this returns, so a port
/// already in use is a start-up error.
pub fn start(
    path: &Path,
    config: Config,
    proxy: OriginPull,
    edge: EdgeTls,
) -> Result<Arc<Control>, ControlError> {
    let admin = match config.admin.as_ref().map(|a| a.listen) {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr).map_err(|e| ControlError::Admin(addr, e))?;
            l.set_nonblocking(true)
                .map_err(|e| ControlError::Admin(addr, e))?;
            Some(l)
        }
        None => None,
    };
    crate::access_log::configure(config.access_log.clone());
    crate::credentials::configure(&config);
    let control = Arc::new(Control {
        path: path.to_path_buf(),
        proxy,
        edge,
        started: config.clone(),
        config: Mutex::new(config),
        draining: AtomicBool::new(false),
        ready: Mutex::new(BTreeMap::new()),
        reloading: tokio::sync::Mutex::new(()),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ControlError::Thread)?;
    // Credentials from the AWS chain before the listeners open, so the
    // first requests are signed (bounded: a chain that does not answer is
    // logged, `/readyz` stays 503, and the probe rounds try again).
    rt.block_on(crate::credentials::refresh_if_due());
    let c = control.clone();
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            rt.block_on(async move {
                let signals = signals(c.clone());
                let probes = ready::probe_loop(c.clone());
                let admin = async {
                    if let Some(l) = admin {
                        admin::serve(c.clone(), l).await;
                    }
                };
                tokio::join!(signals, probes, admin);
            })
        })
        .map_err(ControlError::Thread)?;
    Ok(control)
}

async fn signals(c: Arc<Control>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (hup, term, quit, int, usr1) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::quit()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
    );
    let (Ok(mut hup), Ok(mut term), Ok(mut quit), Ok(mut int), Ok(mut usr1)) =
        (hup, term, quit, int, usr1)
    else {
        return log::error!("cannot watch signals: reload and prompt shutdown are off");
    };
    loop {
        tokio::select! {
            // Signals that arrive while a reload runs are merged into one.
            Some(()) = hup.recv() => {
                let _ = reload::run(&c).await;
            }
            Some(()) = term.recv() => {
                shutdown::drain(c.clone(), "SIGTERM");
            }
            Some(()) = quit.recv() => {
                shutdown::drain(c.clone(), "SIGQUIT");
            }
            Some(()) = int.recv() => {
                shutdown::stop_now(&c).await;
            }
            Some(()) = usr1.recv() => {
                log::info!("SIGUSR1: reopening the access log");
                crate::access_log::reopen();
            }
        }
    }
}

/// What Pingora's main loop waits for, in place of its own signal watch
/// (pass it in `RunArgs`): SIGTERM and SIGQUIT both start the graceful
/// stop, SIGQUIT as nginx means it. Pingora's own SIGQUIT hands the
/// listening sockets to a new process through a socket this binary never
/// sets up (`--share-port` is its upgrade): it closed the listeners
/// while `/readyz` said ready, waited the whole grace period and left
/// uploads open. SIGINT is not watched here: [`signals`] stops at once,
/// also during a drain, when Pingora's loop no longer listens.
pub struct PingoraSignals;

#[async_trait::async_trait]
impl pingora::server::ShutdownSignalWatch for PingoraSignals {
    async fn recv(&self) -> pingora::server::ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::quit())) {
            (Ok(mut term), Ok(mut quit)) => tokio::select! {
                _ = term.recv() => {}
                _ = quit.recv() => {}
            },
            // Not expected (the control thread watches the same signals):
            // the control thread still drains and exits.
            _ => std::future::pending::<()>().await,
        }
        pingora::server::ShutdownSignal::GracefulTerminate
    }
}
