//! The proxy's routing state (sites, hosts, limits) and its construction
//! and reload; the request phases are in `mod.rs`.

use crate::bucket::Bucket;
use crate::config::{BucketSource, Config, Limits};
use crate::metrics::SiteMetrics;
use crate::rules::Rule;
use crate::site::HostTable;
use arc_swap::ArcSwap;
use pingora::http::RequestHeader;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("site `{0}`: {1}")]
    Bucket(String, String),
    #[error("cannot listen on {0}: {1}")]
    Listen(String, String),
}

/// One site, ready to serve.
#[derive(Debug)]
pub struct Site {
    pub name: String,
    pub bucket: Arc<Bucket>,
    pub rules: Vec<Rule>,
}

impl Site {
    /// The site's metric handles (held by its bucket, which write-backs
    /// reach without the site).
    pub fn metrics(&self) -> &SiteMetrics {
        &self.bucket.metrics
    }
}

/// The proxy. Build it from a validated [`Config`] and hand it to
/// `pingora::proxy::http_proxy_service`, on a server whose
/// `ServerConf::max_retries` is at least [`MAX_TRIES`](super::MAX_TRIES):
/// every reroute (bucket 404 to origin, redirect hops, the secondary)
/// is one of Pingora's tries, and its default of 16 ends the longest
/// routes the rules allow in a 500 (`server::build` sets it). Clones share the routing state,
/// buckets (with their write-back clients) and the fills (one clone per
/// worker, see `server`).
///
/// The routing state (sites, hosts, limits) sits behind an `ArcSwap` so a
/// reload replaces it whole ([`OriginPull::reload`]). A request takes its
/// `Arc<Site>` once, in the request filter, and keeps it to its end:
/// retries, the origin reroute and the write-back all use the site (and
/// bucket) the request started with, whatever was swapped in meanwhile.
#[derive(Clone)]
pub struct OriginPull {
    pub(super) state: Arc<ArcSwap<State>>,
    pub(super) fills: Arc<crate::fill::Fills>,
    locals: Arc<crate::local::LocalBuckets>,
}

/// Everything a reload replaces at once.
pub struct State {
    pub sites: Vec<Arc<Site>>,
    hosts: HostTable,
    pub(super) limits: Limits,
}

impl OriginPull {
    /// Resolves buckets and starts embedded local buckets.
    pub fn new(config: &Config) -> Result<OriginPull, StartError> {
        let locals = Arc::new(crate::local::LocalBuckets::default());
        let state = build_state(config, &locals)?;
        let fills = crate::fill::Fills::start(&config.fill)
            .map_err(|e| StartError::Bucket("*".into(), e.to_string()))?;
        Ok(OriginPull {
            state: Arc::new(ArcSwap::from_pointee(state)),
            fills,
            locals,
        })
    }

    /// Builds the whole routing state from `config` (a validated one) and
    /// swaps it in; on any error the running state stays. Embedded local
    /// buckets are reused by folder; one no site uses any more stops when
    /// the last request or write-back holding it ends.
    pub fn reload(&self, config: &Config) -> Result<(), StartError> {
        let state = build_state(config, &self.locals)?;
        let old = self.state.swap(Arc::new(state));
        for site in &old.sites {
            let now = config.sites.iter().find(|s| s.name == site.name);
            let kept = now.map(|s| s.rules.len());
            if kept.is_none_or(|n| n < site.rules.len()) {
                crate::metrics::forget(&site.name, site.rules.len(), kept);
            }
        }
        Ok(())
    }

    /// The routing state now in force.
    pub fn state(&self) -> Arc<State> {
        self.state.load_full()
    }

    /// The shared fills (live ones count as work in flight at shutdown).
    pub fn fills(&self) -> &Arc<crate::fill::Fills> {
        &self.fills
    }
}

fn build_state(config: &Config, locals: &crate::local::LocalBuckets) -> Result<State, StartError> {
    let mut sites = Vec::with_capacity(config.sites.len());
    for s in &config.sites {
        let fail = |e: &dyn std::fmt::Display| StartError::Bucket(s.name.clone(), e.to_string());
        let (remote, keep) = match &s.bucket {
            BucketSource::Remote(r) => (r.clone(), None),
            BucketSource::Local(dir) => {
                let run = locals.start(dir).map_err(|e| fail(&e))?;
                (run.bucket().clone(), Some(run))
            }
        };
        let metrics = Arc::new(SiteMetrics::new(&s.name, s.rules.len()));
        let mut bucket = Bucket::new(&remote, metrics).map_err(|e| fail(&e))?;
        bucket.keep_alive = keep;
        sites.push(Arc::new(Site {
            name: s.name.clone(),
            bucket: Arc::new(bucket),
            rules: s.rules.clone(),
        }));
    }
    let hosts = HostTable::new(config.sites.iter().map(|s| s.hosts.as_slice()));
    Ok(State {
        sites,
        hosts,
        limits: config.limits,
    })
}

impl State {
    pub(super) fn site_for(&self, req: &RequestHeader) -> Option<Arc<Site>> {
        let host = crate::rules::request_host(req);
        self.hosts.select(host).map(|i| self.sites[i].clone())
    }
}
