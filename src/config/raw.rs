//! The YAML schema as written by users (SPEC section 5). Every struct denies
//! unknown fields so a typo is an error, not a silently ignored setting.
//! These types carry no invariants; `validate` turns them into the model.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Vec<super::listen::RawListen>,
    #[serde(default)]
    pub threads: Option<usize>,
    #[serde(default)]
    pub admin: Option<super::ops::RawAdmin>,
    #[serde(default)]
    pub access_log: Option<super::ops::RawAccessLog>,
    #[serde(default)]
    pub shutdown_timeout_seconds: Option<u64>,
    #[serde(default)]
    pub fill: Option<RawFill>,
    pub limits: Option<super::limits::RawLimits>,
    pub sites: Vec<RawSite>,
}

/// `fill:` (shared fills, see `crate::fill`).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawFill {
    pub spool_dir: Option<String>,
    pub max_spool_bytes: Option<u64>,
    pub unattended_max_bytes: Option<u64>,
    pub unattended_grace_seconds: Option<u64>,
    pub max_unattended: Option<usize>,
}

/// `mirror.mode`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MirrorMode {
    /// Stream the origin's answer to the client (and store it).
    #[default]
    Sync,
    /// Answer 302 to the origin URL; fill and store in the background.
    Async,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    pub name: String,
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
    pub bucket: RawBucket,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Addressing {
    Path,
    Virtual,
}

/// `bucket.credentials`: where the keys come from.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawCredentials {
    /// The `*_env` variables (the default).
    Env,
    /// The AWS SDKs' default provider chain, renewed before expiry.
    AwsChain,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBucket {
    pub endpoint: Option<String>,
    pub name: Option<String>,
    pub region: Option<String>,
    pub addressing: Option<Addressing>,
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
    pub session_token_env: Option<String>,
    pub credentials: Option<RawCredentials>,
    pub local: Option<String>,
    pub tls: Option<super::tls::RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(default)]
    pub condition: RawCondition,
    pub mirror: Option<RawMirror>,
    pub redirect: Option<RawRedirect>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    pub key_prefix: Option<String>,
    pub key_suffix: Option<String>,
    pub key_regex: Option<String>,
    pub http_error_code: Option<u16>,
    #[serde(default)]
    pub include_headers: Vec<RawHeaderCondition>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderCondition {
    pub key: String,
    pub equals: Option<String>,
    pub starts_with: Option<String>,
    pub ends_with: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMirror {
    pub url: String,
    pub secondary_url: Option<String>,
    #[serde(default)]
    pub pass_query_string: bool,
    /// OSS `MirrorFollowRedirect` defaults to true; so does ours.
    #[serde(default = "yes")]
    pub follow_redirect: bool,
    #[serde(default)]
    pub check_md5: bool,
    #[serde(default)]
    pub allow_head: bool,
    #[serde(default)]
    pub mirror_on_bucket_error: bool,
    pub replace_key_prefix_with: Option<String>,
    pub replace_key_with: Option<String>,
    #[serde(default)]
    pub headers: RawMirrorHeaders,
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub mode: MirrorMode,
    pub tls: Option<super::tls::RawTls>,
    /// Credentials for `url` (see `super::auth`).
    pub auth: Option<super::auth::RawAuth>,
    /// Credentials for `secondary_url`.
    pub secondary_auth: Option<super::auth::RawAuth>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMirrorHeaders {
    #[serde(default)]
    pub pass_all: bool,
    #[serde(default)]
    pub pass: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
    #[serde(default)]
    pub set: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedirect {
    pub code: Option<u16>,
    pub protocol: Option<String>,
    pub host: Option<String>,
    pub replace_key_prefix_with: Option<String>,
    pub replace_key_with: Option<String>,
    #[serde(default)]
    pub pass_query_string: bool,
}

fn yes() -> bool {
    true
}
