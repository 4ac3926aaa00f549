//! TLS towards clients: HTTPS listeners, HTTP/2 by ALPN, and the
//! certificate each handshake gets, picked by SNI and replaceable while
//! the server runs.
//!
//! Every TLS listener has one [`CertStore`], shared by all workers'
//! sockets for that address. It is the rustls `ResolvesServerCert` of
//! the listener (Pingora's `TlsSettings::set_cert_resolver`), and holds
//! the current [`CertSet`] behind an `ArcSwap`: a handshake loads the set
//! once, so [`EdgeTls::reload`] can swap in a new one at any time. New
//! handshakes use the new certificates; established connections keep
//! theirs (a certificate only matters during the handshake).
//!
//! The certificate files are read when `listen` is validated (config
//! load, `-t`, and a reload's validation), so what was checked is exactly
//! what is served: a reload whose certificates are broken fails
//! validation and the running set stays.

mod certs;

pub use certs::{CertError, CertSet, LoadedCert};

use crate::config::listen::{same_sockets, Listener};
use arc_swap::ArcSwap;
use pingora::listeners::tls::TlsSettings;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

/// A listener's certificates, as the TLS handshake sees them.
pub struct CertStore {
    current: ArcSwap<CertSet>,
}

impl CertStore {
    pub fn new(set: Arc<CertSet>) -> CertStore {
        CertStore {
            current: ArcSwap::new(set),
        }
    }

    /// The set new handshakes use.
    pub fn current(&self) -> Arc<CertSet> {
        self.current.load_full()
    }

    fn replace(&self, set: Arc<CertSet>) {
        self.current.store(set);
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().pick(hello.server_name()).clone())
    }
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertStore({:?})", self.current.load())
    }
}

/// Why a reload did not replace the certificates (nothing was replaced).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("`listen` changed ({0}); listeners change only with a restart")]
    ListenChanged(String),
}

/// The certificate stores of every TLS listener of a running server.
/// Clones share the stores.
#[derive(Clone, Default)]
pub struct EdgeTls {
    listen: Vec<Listener>,
    /// `(addr, store)` for each TLS listener, in `listen` order.
    stores: Vec<(String, Arc<CertStore>)>,
}

impl EdgeTls {
    pub fn new(listen: &[Listener]) -> EdgeTls {
        let stores = listen
            .iter()
            .filter_map(|l| {
                let tls = l.tls.as_ref()?;
                let proto = if tls.h2 { "h2, http/1.1" } else { "http/1.1" };
                log::info!("{}: TLS ({proto}), certificates {:?}", l.addr, tls.certs);
                Some((l.addr.clone(), Arc::new(CertStore::new(tls.certs.clone()))))
            })
            .collect();
        let edge = EdgeTls {
            listen: listen.to_vec(),
            stores,
        };
        edge.publish_expiry();
        edge
    }

    /// The expiry of every certificate served now, as a metric; those no
    /// longer served (replaced by a reload) leave it.
    fn publish_expiry(&self) {
        use std::sync::{Mutex, PoisonError};
        // The label pairs published last time: new values are set first and
        // only the stale ones removed, so a scrape never sees none.
        static PUBLISHED: Mutex<Vec<[String; 2]>> = Mutex::new(Vec::new());
        let gauge = &crate::metrics::METRICS.tls_certificate_expiry;
        let mut now = Vec::new();
        for (addr, store) in &self.stores {
            for cert in store.current().certs() {
                let labels = [addr.clone(), cert.cert_file.display().to_string()];
                gauge
                    .with_label_values(&[labels[0].as_str(), labels[1].as_str()])
                    .set(cert.not_after);
                now.push(labels);
            }
        }
        let mut published = PUBLISHED.lock().unwrap_or_else(PoisonError::into_inner);
        for old in published.iter().filter(|l| !now.contains(l)) {
            let _ = gauge.remove_label_values(&[old[0].as_str(), old[1].as_str()]);
        }
        *published = now;
    }

    /// The store serving `addr`, if it is a TLS listener.
    pub fn store(&self, addr: &str) -> Option<&Arc<CertStore>> {
        self.stores.iter().find(|(a, _)| a == addr).map(|(_, s)| s)
    }

    /// Pingora settings for TLS listener `l` (one per worker socket; they
    /// all share the listener's store). `None` for a plain listener.
    pub fn settings(&self, l: &Listener) -> Option<TlsSettings> {
        let tls = l.tls.as_ref()?;
        let store = self.store(&l.addr)?.clone();
        // With a resolver set, `build` ignores the (empty) file paths.
        let mut s = TlsSettings::intermediate("", "").ok()?;
        s.set_cert_resolver(store);
        if tls.h2 {
            s.enable_h2();
        }
        // Without h2 no ALPN is configured at all: a client offering only
        // `h2` then still gets HTTP/1.1 instead of a failed handshake.
        Some(s)
    }

    /// Serves the certificates of `listen` (a newly validated config's,
    /// whose files were read then) from now on. The listeners must be the
    /// running ones (same addresses, TLS and `h2` settings); otherwise
    /// nothing is replaced. Established connections are not touched.
    pub fn reload(&self, listen: &[Listener]) -> Result<(), ReloadError> {
        same_sockets(&self.listen, listen).map_err(ReloadError::ListenChanged)?;
        for l in listen {
            if let (Some(tls), Some(store)) = (&l.tls, self.store(&l.addr)) {
                store.replace(tls.certs.clone());
            }
        }
        for (addr, store) in &self.stores {
            log::info!("{addr}: serving certificates {:?}", store.current());
        }
        self.publish_expiry();
        Ok(())
    }
}

/// `https` when `session` arrived over TLS, else `http`: the scheme of
/// the request as the client sent it.
pub fn request_scheme(session: &pingora::proxy::Session) -> &'static str {
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    if tls {
        "https"
    } else {
        "http"
    }
}

#[cfg(test)]
mod tests;
