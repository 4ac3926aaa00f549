//! The `ProxyHttp` implementation: the request's phases in order.
//!
//! request_filter: site by `Host`, method, key (answered here when invalid).
//! upstream_peer / upstream_request_filter: the bucket, signed.
//! fail_to_proxy: every error becomes S3 XML through `errors`.

use crate::bucket::{Bucket, Payload};
use crate::config::{BucketSource, Config};
use crate::errors::{new_request_id, S3Error};
use crate::key::key_from_path;
use crate::rules::Rule;
use crate::site::HostTable;
use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;

/// Client headers forwarded to the bucket (SPEC 1.5); all others dropped.
const FORWARDED_TO_BUCKET: [&str; 5] = [
    "range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
];

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("site `{0}`: {1}")]
    Bucket(String, String),
}

/// One site, ready to serve.
#[derive(Debug)]
pub struct Site {
    pub name: String,
    pub bucket: Arc<Bucket>,
    pub rules: Vec<Rule>,
}

/// The proxy. Build it from a validated [`Config`] and hand it to
/// `pingora::proxy::http_proxy_service`.
pub struct OriginPull {
    sites: Vec<Arc<Site>>,
    hosts: HostTable,
}

/// Per-request state.
pub struct RequestCtx {
    pub request_id: String,
    pub site: Option<Arc<Site>>,
    /// The decoded object key.
    pub key: String,
    /// An error decided in a filter, answered by `fail_to_proxy`.
    pub failure: Option<S3Error>,
}

impl OriginPull {
    /// Resolves buckets and starts embedded local buckets.
    pub fn new(config: &Config) -> Result<OriginPull, StartError> {
        let mut sites = Vec::with_capacity(config.sites.len());
        for s in &config.sites {
            let fail =
                |e: &dyn std::fmt::Display| StartError::Bucket(s.name.clone(), e.to_string());
            let remote = match &s.bucket {
                BucketSource::Remote(r) => r.clone(),
                BucketSource::Local(dir) => crate::local::start(dir).map_err(|e| fail(&e))?,
            };
            let bucket = Bucket::new(&remote).map_err(|e| fail(&e))?;
            sites.push(Arc::new(Site {
                name: s.name.clone(),
                bucket: Arc::new(bucket),
                rules: s.rules.clone(),
            }));
        }
        let hosts = HostTable::new(config.sites.iter().map(|s| s.hosts.as_slice()));
        Ok(OriginPull { sites, hosts })
    }

    fn site_for(&self, req: &RequestHeader) -> Option<Arc<Site>> {
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.host());
        self.hosts.select(host).map(|i| self.sites[i].clone())
    }

    /// Answers `err` now and ends the request.
    async fn reject(&self, session: &mut Session, ctx: &RequestCtx, err: S3Error) -> Result<bool> {
        err.respond(session, &ctx.request_id).await?;
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for OriginPull {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            request_id: new_request_id(),
            site: None,
            key: String::new(),
            failure: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        let Some(site) = self.site_for(req) else {
            return self
                .reject(session, ctx, S3Error::NoSuchWebsiteConfiguration)
                .await;
        };
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            return self.reject(session, ctx, S3Error::MethodNotAllowed).await;
        }
        match key_from_path(req.uri.path()) {
            Ok(key) => ctx.key = key,
            Err(e) => return self.reject(session, ctx, S3Error::InvalidUri(e)).await,
        }
        ctx.site = Some(site);
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let site = ctx.site.as_ref().ok_or_else(|| Error::new(InternalError))?;
        Ok(Box::new(site.bucket.peer()))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let site = ctx.site.as_ref().ok_or_else(|| Error::new(InternalError))?;
        let bucket = &site.bucket;
        // Drop everything but the forwarded headers: the client's
        // credentials, cookies and the like never reach the bucket.
        let drop: Vec<http::HeaderName> = upstream
            .headers
            .keys()
            .filter(|n| !FORWARDED_TO_BUCKET.contains(&n.as_str()))
            .cloned()
            .collect();
        for name in drop {
            upstream.remove_header(&name);
        }
        let path = bucket.object_path(&ctx.key);
        let uri = path
            .parse::<http::Uri>()
            .map_err(|e| Error::because(InternalError, "object path", e))?;
        upstream.set_uri(uri);
        upstream.insert_header(http::header::HOST, bucket.host())?;
        let method = upstream.method.as_str().to_string();
        let signed = bucket
            .sign(&method, &path, &[], Payload::Unsigned)
            .map_err(|e| Error::because(InternalError, "signing", e))?;
        for (k, v) in signed {
            upstream.insert_header(k, v)?;
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let err = match ctx.failure.take() {
            Some(err) => err,
            None => match e.esource() {
                ErrorSource::Upstream => S3Error::BucketUnreachable(e.etype().as_str().to_string()),
                ErrorSource::Downstream => {
                    // The client is gone or sent garbage: nothing to answer.
                    return FailToProxy {
                        error_code: 0,
                        can_reuse_downstream: false,
                    };
                }
                _ => S3Error::Internal(e.etype().as_str().to_string()),
            },
        };
        let code = err.status();
        // Once the header went out, the only honest signal is to close
        // the connection without a valid end of body.
        if session.response_written().is_none() {
            if let Err(we) = err.respond(session, &ctx.request_id).await {
                log::debug!("{}: could not send error: {we}", ctx.request_id);
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}
