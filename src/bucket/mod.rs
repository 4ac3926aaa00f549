//! The bucket as an upstream: where it is, how its object URLs look (path or
//! virtual-host addressing) and SigV4 signing of every request sent to it.
//!
//! Every request names the bucket by its host name (URL, `Host`, TLS SNI
//! and certificate check), never by the resolved IP: a certificate is
//! issued for the name, so an IP URL fails TLS against any real https
//! endpoint. The addresses are resolved at start-up and refreshed every
//! minute in the background ([`dns`]; Pingora peer and reqwest resolver
//! read the same set), so no request waits on DNS.

mod dns;
mod reads;

use crate::config::{Addressing, CredentialSource, Endpoint, RemoteBucket};
use crate::key::encode_key_into;
use crate::sigv4::Signer;
pub use crate::sigv4::{Payload, SignedHeaders};
use crate::tls::TrustRoots;
use http::header::HOST;
use http::{HeaderName, HeaderValue, Method};
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
pub use reads::ReadHeaders;
use reads::ReadSignatures;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("cannot resolve bucket endpoint {0}: {1}")]
    Resolve(String, String),
    #[error("cannot sign the bucket request: {0}")]
    Sign(String),
    #[error("cannot build the write-back client: {0}")]
    Client(String),
}

/// A ready-to-use bucket: resolved address, host header, signing identity.
#[derive(Debug)]
pub struct Bucket {
    pub name: String,
    tls: bool,
    /// Resolved at start-up and refreshed in the background (DNS lookups
    /// are blocking in Pingora's peer constructor, so they stay off the
    /// request path).
    addrs: Arc<dns::Addresses>,
    /// `Host` header value (also the URL's authority).
    host: String,
    /// Host name for TLS SNI and the certificate check.
    sni: String,
    /// `scheme://host[:port]`, built once (it prefixes every signed URL).
    base_url: String,
    /// Roots trusted for TLS, shared with the write-back client.
    trust: TrustRoots,
    /// Write-back client: trusts `trust`, connects to `addr`.
    client: reqwest::Client,
    /// `/<bucket>` with path addressing, empty with virtual-host addressing.
    path_prefix: String,
    signer: Signer,
    reads: ReadSignatures,
    /// An embedded local bucket's endpoint runs while a `Bucket` (held by
    /// the routing state, a request or a write-back) still uses it.
    pub keep_alive: Option<std::sync::Arc<crate::local::LocalRun>>,
    /// The site's metric handles (the bucket belongs to one site).
    pub metrics: std::sync::Arc<crate::metrics::SiteMetrics>,
}

/// Connecting to the bucket (it is expected to be near).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for any one read from the bucket.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The host the bucket's requests go to: the endpoint's, or with
/// `addressing: virtual` the bucket's name under it.
pub fn host_name(cfg: &RemoteBucket) -> String {
    match cfg.addressing {
        Addressing::Path => cfg.endpoint.host.clone(),
        Addressing::Virtual => format!("{}.{}", cfg.name, cfg.endpoint.host),
    }
}

/// The bucket's first address, resolved now (blocking): what a start or a
/// reload connects to first, and what `-t` checks.
pub fn lookup(cfg: &RemoteBucket) -> Result<std::net::SocketAddr, BucketError> {
    let (host, port) = (host_name(cfg), cfg.endpoint.port);
    let target = format!("{host}:{port}");
    let found = if host.contains(':') {
        (host.as_str(), port).to_socket_addrs()
    } else {
        target.to_socket_addrs()
    };
    found
        .map_err(|e| BucketError::Resolve(target.clone(), e.to_string()))?
        .next()
        .ok_or_else(|| BucketError::Resolve(target, "no address".into()))
}

impl Bucket {
    /// A site's bucket, counting into the site's `metrics`.
    pub fn new(
        cfg: &RemoteBucket,
        metrics: std::sync::Arc<crate::metrics::SiteMetrics>,
    ) -> Result<Bucket, BucketError> {
        let Endpoint { tls, port, .. } = &cfg.endpoint;
        let host_name = host_name(cfg);
        let path_prefix = match cfg.addressing {
            Addressing::Path => format!("/{}", cfg.name),
            Addressing::Virtual => String::new(),
        };
        let default_port = if *tls { 443 } else { 80 };
        // An IPv6 literal is bracketed in a URL and a Host header.
        let host_part = if host_name.contains(':') {
            format!("[{host_name}]")
        } else {
            host_name.clone()
        };
        let host_header = if *port == default_port {
            host_part
        } else {
            format!("{host_part}:{port}")
        };
        let addr = lookup(cfg)?;
        let scheme = if *tls { "https" } else { "http" };
        let base_url = format!("{scheme}://{host_header}");
        let mut client = crate::tls::reqwest_client_builder(&cfg.tls)
            .connect_timeout(CONNECT_TIMEOUT)
            // Each read of an answer must make progress within this; the
            // uploader adds its own idle limit on what it sends.
            .read_timeout(READ_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(30))
            // A bucket never redirects a signed request anywhere useful.
            .redirect(reqwest::redirect::Policy::none());
        let by_name = host_name.parse::<IpAddr>().is_err();
        let addrs = Arc::new(dns::Addresses::new(
            addr,
            by_name.then(|| (host_name.clone(), *port)),
        ));
        if by_name {
            client = client.dns_resolver(Arc::new(dns::Resolver(addrs.clone())));
        }
        let client = client
            .build()
            .map_err(|e| BucketError::Client(e.to_string()))?;
        Ok(Bucket {
            base_url,
            trust: cfg.tls.clone(),
            client,
            name: cfg.name.clone(),
            tls: *tls,
            addrs,
            host: host_header,
            sni: host_name,
            path_prefix,
            signer: match &cfg.credentials {
                CredentialSource::Env(c) => Signer::new(
                    &c.access_key_id,
                    &c.secret_access_key,
                    c.session_token.as_deref(),
                    &cfg.region,
                    "s3",
                ),
                CredentialSource::AwsChain => Signer::aws_chain(&cfg.region, "s3"),
            },
            reads: ReadSignatures::default(),
            keep_alive: None,
            metrics,
        })
    }

    /// `Host` header to send.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Base URL (scheme, host name, port) for clients outside Pingora.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The write-back client for this bucket: same trust roots and
    /// addresses as [`Bucket::peer`].
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The embedded local-disk bucket (its objects are files).
    pub fn is_local(&self) -> bool {
        self.keep_alive.is_some()
    }

    /// Resolves the endpoint's name again (the control plane calls this
    /// every minute); logs a change. An IP endpoint does nothing.
    pub async fn refresh_addresses(&self, site: &str) {
        let before = self.addrs.first();
        // Bounded: the probes that feed `/readyz` wait for it.
        let lookup = tokio::time::timeout(Duration::from_secs(5), self.addrs.refresh());
        match lookup.await.unwrap_or_else(|_| Err("DNS lookup timed out".into())) {
            Ok(None) => {}
            Ok(Some(now)) => log::info!(
                "site `{site}`: bucket endpoint {}: {before} left its DNS answers, requests now go to {now}",
                self.sni
            ),
            Err(why) => log::warn!(
                "site `{site}`: bucket endpoint: {why}; keeping {:?}",
                self.addrs.all()
            ),
        }
    }

    /// The peer for Pingora. Timeouts: the bucket is expected to be near.
    pub fn peer(&self) -> HttpPeer {
        let mut peer = HttpPeer::new(self.addrs.first(), self.tls, self.sni.clone());
        peer.options.ca = self.trust.pingora_ca();
        peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
        peer.options.total_connection_timeout = Some(Duration::from_secs(10));
        peer.options.read_timeout = Some(READ_TIMEOUT);
        // No write timeout: a read request (GET or HEAD, no body) is a few
        // hundred bytes that the socket buffer always takes at once, and
        // each timeout is a timer armed per write (callgrind).
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        peer
    }

    /// Encoded request path of an object, e.g. `/assets/a%20b.txt`.
    pub fn object_path(&self, key: &str) -> String {
        let mut path = String::with_capacity(self.path_prefix.len() + key.len() + 16);
        path.push_str(&self.path_prefix);
        path.push('/');
        encode_key_into(&mut path, key);
        path
    }

    /// The signed request header for a GET or HEAD of `key` (no query, no
    /// client headers), reused for a while: see [`reads`].
    pub fn read_request(&self, method: &Method, key: &str) -> Result<ReadHeaders, BucketError> {
        self.reads.get_or_sign(method, key, || {
            let path = self.object_path(key);
            let signed = self.sign(method.as_str(), &path, &[], Payload::Unsigned)?;
            let fail = |e: &dyn std::fmt::Display| BucketError::Sign(e.to_string());
            let mut req = RequestHeader::build_no_case(method.clone(), path.as_bytes(), Some(4))
                .map_err(|e| fail(&e))?;
            req.insert_header(HOST, self.host.as_str())
                .map_err(|e| fail(&e))?;
            for (k, v) in signed {
                let name = HeaderName::try_from(k).map_err(|e| fail(&e))?;
                let mut value = HeaderValue::try_from(v).map_err(|e| fail(&e))?;
                // Never in Pingora's debug log of upstream headers.
                value.set_sensitive(crate::sigv4::is_secret(name.as_str()));
                req.insert_header(name, value).map_err(|e| fail(&e))?;
            }
            Ok(Arc::new(req))
        })
    }

    /// SigV4 headers (`authorization`, `x-amz-date`,
    /// `x-amz-content-sha256`) for a request to `path_and_query` that also
    /// carries `headers` (all of them are signed, so pass only what is sent).
    pub fn sign(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        payload: Payload,
    ) -> Result<SignedHeaders, BucketError> {
        let url = format!("{}{}", self.base_url, path_and_query);
        self.signer
            .sign(method, &url, &self.host, headers, payload)
            .map_err(|e| BucketError::Sign(e.to_string()))
    }
}
