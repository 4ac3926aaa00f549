//! The bucket's addresses: resolved at start-up, and again every minute
//! by the control plane ([`Addresses::refresh`]), so a proxy that runs
//! for months follows the bucket's DNS (S3, R2 and OSS rotate their
//! address pools and retire old addresses) without a lookup on the
//! request path. Pingora's peer and the write-back client read the same
//! set, so they never disagree.

use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug)]
pub struct Addresses {
    /// Never empty; the first is the one connected to.
    current: ArcSwap<Vec<SocketAddr>>,
    /// The endpoint's host name and port; `None` for an IP endpoint.
    name: Option<(String, u16)>,
}

impl Addresses {
    pub fn new(first: SocketAddr, name: Option<(String, u16)>) -> Addresses {
        Addresses {
            current: ArcSwap::from_pointee(vec![first]),
            name,
        }
    }

    /// The address requests connect to.
    pub fn first(&self) -> SocketAddr {
        self.current.load()[0]
    }

    pub fn all(&self) -> Arc<Vec<SocketAddr>> {
        self.current.load_full()
    }

    /// Resolves the name again. `Ok(Some(new set))` when it changed; the
    /// address in use stays first while the name still resolves to it, so
    /// pooled connections stay useful.
    pub async fn refresh(&self) -> Result<Option<Arc<Vec<SocketAddr>>>, String> {
        let Some((host, port)) = &self.name else {
            return Ok(None);
        };
        let mut found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), *port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        if found.is_empty() {
            return Err(format!("{host} resolves to no address"));
        }
        let current = self.current.load();
        if found.len() == current.len() && found.iter().all(|a| current.contains(a)) {
            return Ok(None);
        }
        if let Some(i) = found.iter().position(|a| *a == current[0]) {
            found.swap(0, i);
        }
        let found = Arc::new(found);
        self.current.store(found.clone());
        Ok(Some(found))
    }

    #[cfg(test)]
    pub fn set(&self, addrs: Vec<SocketAddr>) {
        self.current.store(Arc::new(addrs));
    }
}

/// The write-back client's resolver: the bucket's current addresses
/// (the connector puts the URL's port on them).
pub struct Resolver(pub Arc<Addresses>);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let addrs = self.0.all();
        Box::pin(async move {
            let it: reqwest::dns::Addrs = Box::new(addrs.as_ref().clone().into_iter());
            Ok(it)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_new_answer_replaces_the_addresses_and_keeps_the_one_in_use_first() {
        let stale: SocketAddr = "192.0.2.7:9000".parse().unwrap();
        let a = Addresses::new(stale, Some(("localhost".into(), 9000)));
        // The endpoint moved: the next refresh follows it.
        let new = a.refresh().await.unwrap().expect("changed");
        assert!(!new.contains(&stale));
        assert!(new.iter().all(|s| s.ip().is_loopback() && s.port() == 9000));
        assert_eq!(a.first(), new[0]);
        // The same answer again: no change.
        assert!(a.refresh().await.unwrap().is_none());
        // A set that lost an address: the one in use stays first.
        a.set(vec![new[0], stale]);
        let again = a.refresh().await.unwrap().expect("changed");
        assert_eq!(again.as_slice(), new.as_slice());
        assert_eq!(a.first(), new[0]);
        // An IP endpoint is never resolved.
        let ip = Addresses::new(stale, None);
        assert!(ip.refresh().await.unwrap().is_none());
        assert_eq!(ip.first(), stale);
    }
}
