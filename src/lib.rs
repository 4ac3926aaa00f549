//! origin-pull: a back-to-origin edge proxy for S3-compatible buckets.
//!
//! Serve from the bucket first; on 404 fetch from the rule's origin, stream
//! it to the client and write it back (see `SPEC.md`). Use [`OriginPull`]
//! as a Pingora `ProxyHttp`, or run the `origin-pull` binary.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod bucket;
pub mod config;
pub mod control;
pub mod credentials;
pub mod disposition;
pub mod edge_tls;
pub mod errors;
pub mod fill;
pub mod key;
pub mod local;
pub mod metrics;
pub mod mirror;
pub mod origin_auth;
pub mod probe;
pub mod proxy;
pub mod redirect;
pub mod rules;
pub mod server;
pub mod sigv4;
pub mod site;
pub mod tls;
pub mod writeback;

pub use config::Config;
pub use proxy::OriginPull;
