//! The bucket's addresses: resolved at start-up, and again every minute
//! by the control plane ([`Addresses::refresh`]), so a proxy that runs
//! for months follows the bucket's DNS (S3, R2 and OSS rotate their
//! address pools and retire old addresses) without a lookup on the
//! request path. Pingora's peer and the write-back client read the same
//! set, so they never disagree.

use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Lookups in a row that must lack the address in use before requests
/// move off it. S3 answers each query with a rotating subset of its
/// addresses, so "not in this answer" says little; an address that is
/// really retired stays out of every answer (and keeps working for a long
/// while after it left DNS). Moving on every rotation would drop every
/// worker's warm connections (the pool is keyed by address) each minute.
const MISSES_BEFORE_MOVE: u32 = 5;

#[derive(Debug)]
pub struct Addresses {
    /// Never empty; the first is the one connected to.
    current: ArcSwap<Vec<SocketAddr>>,
    /// The endpoint's host name and port; `None` for an IP endpoint.
    name: Option<(String, u16)>,
    /// Lookups in a row whose answer lacked the address in use.
    misses: AtomicU32,
}

impl Addresses {
    pub fn new(first: SocketAddr, name: Option<(String, u16)>) -> Addresses {
        Addresses {
            current: ArcSwap::from_pointee(vec![first]),
            name,
            misses: AtomicU32::new(0),
        }
    }

    /// The address requests connect to.
    pub fn first(&self) -> SocketAddr {
        self.current.load()[0]
    }

    pub fn all(&self) -> Arc<Vec<SocketAddr>> {
        self.current.load_full()
    }

    /// The endpoint's host name (`None` for an IP endpoint).
    pub fn name(&self) -> Option<&str> {
        self.name.as_ref().map(|(h, _)| h.as_str())
    }

    /// Resolves the name again. `Ok(Some(address))` when requests move to
    /// another address: the one in use stays first while the name still
    /// has it, and until [`MISSES_BEFORE_MOVE`] answers in a row lacked it.
    pub async fn refresh(&self) -> Result<Option<SocketAddr>, String> {
        let Some((host, port)) = &self.name else {
            return Ok(None);
        };
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), *port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        Ok(self.update(found))
    }

    /// [`Addresses::refresh`] with the answer in hand.
    fn update(&self, mut found: Vec<SocketAddr>) -> Option<SocketAddr> {
        if found.is_empty() {
            return None;
        }
        let in_use = self.first();
        match found.iter().position(|a| *a == in_use) {
            Some(i) => {
                self.misses.store(0, Ordering::Relaxed);
                found.swap(0, i);
                self.current.store(Arc::new(found));
                None
            }
            None if self.misses.fetch_add(1, Ordering::Relaxed) + 1 < MISSES_BEFORE_MOVE => {
                // Kept first; the rest of the answer is there for the
                // write-back client to try.
                found.insert(0, in_use);
                self.current.store(Arc::new(found));
                None
            }
            None => {
                self.misses.store(0, Ordering::Relaxed);
                let moved = found[0];
                self.current.store(Arc::new(found));
                Some(moved)
            }
        }
    }

    #[cfg(test)]
    pub fn set(&self, addrs: Vec<SocketAddr>) {
        self.current.store(Arc::new(addrs));
    }
}

/// The write-back client's resolver: the bucket's current addresses for
/// the bucket's own name (the connector puts the URL's port on them);
/// any other name (an HTTP proxy's, from `HTTPS_PROXY`) is looked up as
/// usual.
pub struct Resolver(pub Arc<Addresses>);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let ours = self
            .0
            .name()
            .is_some_and(|n| n.eq_ignore_ascii_case(name.as_str()));
        let addrs = self.0.all();
        let other = name.as_str().to_string();
        Box::pin(async move {
            let it: reqwest::dns::Addrs = if ours {
                Box::new(addrs.as_ref().clone().into_iter())
            } else {
                let found: Vec<SocketAddr> = tokio::net::lookup_host((other.as_str(), 0))
                    .await?
                    .collect();
                Box::new(found.into_iter())
            };
            Ok(it)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_address_in_use_stays_until_answers_lack_it_for_a_while() {
        let (a, b, c) = (
            at("192.0.2.1:443"),
            at("192.0.2.2:443"),
            at("192.0.2.3:443"),
        );
        let d = Addresses::new(a, Some(("s3.example".into(), 443)));
        // Still in the answer (rotated to the back): kept first.
        assert_eq!(d.update(vec![b, a]), None);
        assert_eq!(d.all().as_slice(), [a, b]);
        // Out of the answers: kept for MISSES_BEFORE_MOVE - 1 lookups...
        for _ in 1..MISSES_BEFORE_MOVE {
            assert_eq!(d.update(vec![b, c]), None);
            assert_eq!(d.first(), a);
        }
        // ...then requests move; the others stay for the write-back.
        assert_eq!(d.update(vec![c, b]), Some(c));
        assert_eq!(d.all().as_slice(), [c, b]);
        // Back in an answer resets the count.
        assert_eq!(d.update(vec![a]), None);
        assert_eq!(d.first(), c);
        assert_eq!(d.update(vec![b, c]), None);
        assert_eq!(d.update(vec![a]), None);
        assert_eq!(d.first(), c);
        assert_eq!(d.update(Vec::new()), None);
    }

    #[tokio::test]
    async fn refresh_resolves_the_name_and_ip_endpoints_never() {
        let stale = at("192.0.2.7:9000");
        let d = Addresses::new(stale, Some(("localhost".into(), 9000)));
        d.set(vec![stale]);
        for _ in 1..MISSES_BEFORE_MOVE {
            assert_eq!(d.refresh().await.unwrap(), None);
        }
        let moved = d.refresh().await.unwrap().expect("moved");
        assert!(moved.ip().is_loopback() && moved.port() == 9000, "{moved}");
        let ip = Addresses::new(stale, None);
        assert_eq!(ip.refresh().await.unwrap(), None);
        assert_eq!(ip.first(), stale);
    }
}
