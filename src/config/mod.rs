//! Configuration: one YAML file (SPEC section 5), parsed into `raw` structs
//! and validated into the model below before anything binds. Every error
//! names `file:line:column` and the field.

mod auth;
mod fill;
pub mod limits;
pub mod listen;
mod locate;
mod ops;
mod raw;
mod tls;
pub(crate) mod validate;

pub use fill::FillConfig;
pub use limits::Limits;
pub use listen::Listener;
pub use locate::{FieldPath, Seg};
pub use ops::{AccessLogConfig, AdminConfig, LogFormat, LogTarget};
pub use raw::{Addressing, MirrorMode};
pub use validate::parse_http_url as parse_origin_url;

use crate::rules::Rule;
use std::path::{Path, PathBuf};

/// Most rules a site may have (the OSS limit).
pub const MAX_RULES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<Listener>,
    pub threads: Option<usize>,
    pub admin: Option<AdminConfig>,
    pub access_log: Option<AccessLogConfig>,
    /// SIGTERM: exit as soon as nothing is in flight, at the latest after this.
    pub shutdown_timeout: std::time::Duration,
    pub fill: FillConfig,
    pub limits: Limits,
    pub sites: Vec<SiteConfig>,
    /// `file:line:column: field: message` for what is served but
    /// probably wrong (an expired certificate, a site no certificate
    /// covers). `Config::load` logs them.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct SiteConfig {
    pub name: String,
    /// Empty: the default site.
    pub hosts: Vec<HostPattern>,
    pub bucket: BucketSource,
    pub rules: Vec<Rule>,
}

/// A `hosts` entry, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// `*.cdn.example.com` is kept as `.cdn.example.com`: it matches any
    /// name ending in it (one or more labels), not the bare suffix itself.
    Suffix(String),
}

#[derive(Debug, Clone)]
pub enum BucketSource {
    Remote(RemoteBucket),
    /// The embedded local-disk bucket: objects are the files in this folder.
    Local(PathBuf),
}

#[derive(Debug, Clone)]
pub struct RemoteBucket {
    pub endpoint: Endpoint,
    pub name: String,
    pub region: String,
    pub addressing: Addressing,
    pub credentials: CredentialSource,
    /// Roots trusted for an https endpoint (`tls.ca_file`).
    pub tls: crate::tls::TrustRoots,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

/// Where a bucket's keys come from (`credentials:`).
#[derive(Debug, Clone)]
pub enum CredentialSource {
    /// From the environment variables the bucket names, read at start and
    /// reload (`credentials: env`, the default).
    Env(Credentials),
    /// The AWS SDKs' default chain, renewed before expiry
    /// (`credentials: aws_chain`, see `crate::credentials`).
    AwsChain,
}

#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Temporary credentials' token (STS, SSO), sent as
    /// `x-amz-security-token`.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    // Never print the secret, even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.access_key_id)
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: file.clone(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let config = Config::parse(&src, &file, base, &|name| std::env::var(name).ok())?;
        for w in &config.warnings {
            log::warn!("{w}");
        }
        Ok(config)
    }

    /// Resolves every site's bucket endpoint as a start does (blocking)
    /// and names those that do not resolve: (`file:line:column: field`,
    /// the resolver's error). `-t` warns with them (like `nginx -t`, which
    /// checks upstream hosts) but passes, since a file is often checked on
    /// a machine outside the network it is meant for (CI, a compose
    /// service name); a start that failed on one names it at its line.
    /// Origins are not resolved: each miss resolves its own.
    pub fn unresolved_endpoints(&self, path: &Path) -> Vec<(String, String)> {
        // Looked up side by side (a resolver that times out costs its
        // timeout once, not once per site), each endpoint once, at most
        // `LOOKUPS` at a time; inline when no thread can be made.
        const LOOKUPS: usize = 16;
        let remote: Vec<(usize, &RemoteBucket)> = self
            .sites
            .iter()
            .enumerate()
            .filter_map(|(i, site)| match &site.bucket {
                BucketSource::Remote(b) => Some((i, b)),
                BucketSource::Local(_) => None,
            })
            .collect();
        let target = |b: &RemoteBucket| (crate::bucket::host_name(b), b.endpoint.port);
        let mut endpoints: Vec<&RemoteBucket> = Vec::new();
        for (_, b) in &remote {
            if !endpoints.iter().any(|e| target(e) == target(b)) {
                endpoints.push(b);
            }
        }
        let mut results: Vec<Option<String>> = Vec::new();
        for batch in endpoints.chunks(LOOKUPS) {
            std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .iter()
                    .map(|b| {
                        let b = *b;
                        std::thread::Builder::new()
                            .spawn_scoped(scope, move || crate::bucket::lookup(b))
                            .map_err(|_| b)
                    })
                    .collect();
                for h in handles {
                    let r = match h {
                        Ok(h) => h.join().unwrap_or_else(|_| {
                            Err(crate::bucket::BucketError::Resolve(
                                String::new(),
                                "the lookup failed".into(),
                            ))
                        }),
                        Err(b) => crate::bucket::lookup(b),
                    };
                    results.push(r.err().map(|e| e.to_string()));
                }
            });
        }
        let failed: Vec<(usize, String)> = remote
            .iter()
            .filter_map(|(i, b)| {
                let at = endpoints.iter().position(|e| target(e) == target(b))?;
                results.get(at)?.clone().map(|why| (*i, why))
            })
            .collect();
        if failed.is_empty() {
            return Vec::new();
        }
        let src = std::fs::read_to_string(path).unwrap_or_default();
        failed
            .into_iter()
            .map(|(i, why)| {
                let at = locate::FieldPath::default()
                    .key("sites")
                    .index(i)
                    .key("bucket")
                    .key("endpoint");
                let (line, column) = locate::locate(&src, &at).unwrap_or((1, 1));
                (format!("{}:{line}:{column}: {at}", path.display()), why)
            })
            .collect()
    }

    /// Parses and validates YAML text. `file` only names the source in
    /// errors; relative `local:` folders resolve against `base`; `env`
    /// looks up credential variables (injectable for tests).
    pub fn parse(
        src: &str,
        file: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        validate::parse(src, file, base, env)
    }
}
