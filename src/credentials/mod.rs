//! `credentials: aws_chain`: a bucket's or a private origin's keys
//! (`mirror.auth`) from the AWS SDKs' default provider chain (aws-config),
//! renewed before they expire.
//!
//! Keys in environment variables are read at start and reload and never
//! change; temporary credentials from an instance profile (EC2), a web
//! identity (EKS IRSA), the container endpoint (ECS, EKS Pod Identity) or
//! a profile expire within hours, and a proxy that keeps the first ones
//! is refused by the bucket from then on. The chain is the process's, not
//! a bucket's (one role, one instance profile), so there is one current
//! set of credentials, read by every signer of an `aws_chain` bucket or origin
//! ([`current`]) and renewed by the control thread ([`refresh_if_due`],
//! once before the listeners open, before a reload swaps its buckets in,
//! and at each readiness round): a reload keeps the credentials in hand.
//! [`configure`] says, from the config in force, whether any bucket or origin uses
//! the chain. An application embedding the proxy without the binary's
//! control thread calls both itself (`configure` with its config, then
//! `refresh_if_due` every few seconds); until then such a bucket's
//! requests cannot be signed.
//!
//! A renewal that fails keeps the credentials in hand (they may still be
//! valid: the chain's sources renew well before expiry) and is tried
//! again after [`RETRY_AFTER`].

mod http;

use arc_swap::ArcSwapOption;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_runtime_api::client::identity::Identity;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// Renew when the credentials in hand expire within this (the AWS SDKs
/// refresh 5 minutes ahead too; every source hands out new ones by then).
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);
/// Credentials without an expiry (a profile's static keys) are read again
/// this often, so a rotated file is picked up.
const REREAD_EVERY: Duration = Duration::from_secs(5 * 60);
/// After a failed attempt, the next one waits this long.
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// Bound on one attempt (IMDS, STS): the readiness round waits for it.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The credentials in hand.
pub struct Current {
    pub identity: Identity,
    pub access_key_id: String,
    expires: Option<SystemTime>,
    fetched: Instant,
}

static CURRENT: ArcSwapOption<Current> = ArcSwapOption::const_empty();
/// Whether a bucket of the config in force has `credentials: aws_chain`.
static IN_USE: AtomicBool = AtomicBool::new(false);
/// The region of the first such bucket: the chain's STS calls use it when
/// neither `AWS_REGION` nor the profile names one.
static REGION: Mutex<Option<String>> = Mutex::new(None);
/// The chain, built at the first fetch. Built again to read keys without
/// an expiry (a profile's): aws-config keeps the files it parsed.
static PROVIDER: tokio::sync::Mutex<Option<SharedCredentialsProvider>> =
    tokio::sync::Mutex::const_new(None);
static LAST_FAILURE: Mutex<Option<Instant>> = Mutex::new(None);

/// The credentials in hand, if the chain has answered yet.
pub fn current() -> Option<Arc<Current>> {
    CURRENT.load_full()
}

/// Takes from `config` whether any bucket or private origin
/// (`mirror.auth: { type: sigv4, credentials: aws_chain }`) uses the
/// chain, and the region of the first that does (at start and at each
/// reload): a bucket's before an origin's.
pub fn configure(config: &crate::config::Config) {
    use crate::config::{BucketSource, CredentialSource};
    use crate::origin_auth::OriginAuth;
    use crate::rules::Action;
    let bucket = config.sites.iter().find_map(|s| match &s.bucket {
        BucketSource::Remote(b) if matches!(b.credentials, CredentialSource::AwsChain) => {
            Some(b.region.clone())
        }
        _ => None,
    });
    let origin = || {
        let mirrors = config
            .sites
            .iter()
            .flat_map(|s| &s.rules)
            .filter_map(|r| match &r.action {
                Action::Mirror(m) => Some(m),
                Action::Redirect(_) => None,
            });
        mirrors
            .flat_map(|m| [&m.auth, &m.secondary_auth])
            .find_map(|a| match a {
                Some(OriginAuth::SigV4(s)) if s.uses_chain() => Some(s.region().to_string()),
                _ => None,
            })
    };
    let region = bucket.or_else(origin);
    IN_USE.store(region.is_some(), Ordering::Release);
    if region.is_some() {
        *REGION.lock().unwrap_or_else(PoisonError::into_inner) = region;
    }
}

/// Whether any bucket or origin of this process uses the chain.
pub fn in_use() -> bool {
    IN_USE.load(Ordering::Acquire)
}

/// Asks the chain for credentials when none are in hand or they are due
/// for renewal; a no-op when no bucket uses it.
pub async fn refresh_if_due() {
    if !in_use() || !due(current().as_deref(), SystemTime::now()) {
        return;
    }
    let recent_failure = LAST_FAILURE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .is_some_and(|t| t.elapsed() < RETRY_AFTER);
    if recent_failure {
        return;
    }
    let outcome = tokio::time::timeout(ATTEMPT_TIMEOUT, fetch())
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())));
    let mut last_failure = LAST_FAILURE.lock().unwrap_or_else(PoisonError::into_inner);
    let Err(why) = outcome else {
        *last_failure = None;
        return;
    };
    *last_failure = Some(Instant::now());
    let again = RETRY_AFTER.as_secs();
    match current() {
        None => log::error!(
            "AWS credentials (aws_chain): none yet: {why}; requests signed with them fail \
             until the chain answers (tried again in {again} s)"
        ),
        Some(_) => log::warn!(
            "AWS credentials (aws_chain): renewal failed: {why}; keeping the ones in hand \
             (tried again in {again} s)"
        ),
    }
}

async fn fetch() -> Result<(), String> {
    let provider = {
        let mut slot = PROVIDER.lock().await;
        let reread = current().is_some_and(|c| c.expires.is_none());
        match slot.as_ref() {
            Some(p) if !reread => p.clone(),
            _ => {
                let p = provider().await?;
                *slot = Some(p.clone());
                p
            }
        }
    };
    let c = provider
        .provide_credentials()
        .await
        .map_err(|e| crate::errors::chain(&e))?;
    let fresh = Current {
        access_key_id: c.access_key_id().to_string(),
        expires: c.expiry(),
        fetched: Instant::now(),
        identity: c.into(),
    };
    let expires = fresh.expires.map_or("never".to_string(), |t| {
        chrono::DateTime::<chrono::Utc>::from(t)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    });
    let key = fresh.access_key_id.clone();
    let before = CURRENT.swap(Some(Arc::new(fresh)));
    if before.is_none() {
        log::info!("AWS credentials (aws_chain): access key {key}, expire {expires}");
    } else {
        log::info!("AWS credentials (aws_chain): renewed, access key {key}, expire {expires}");
    }
    Ok(())
}

/// The chain, with reqwest as its HTTP client. Its region (web identity
/// calls STS there) is the environment's or the profile's, else the
/// bucket's. (aws-config's `RegionProviderChain::default_provider()`
/// would look it up with a client of its own, which this build has not.)
async fn provider() -> Result<SharedCredentialsProvider, String> {
    let http = http::Reqwest::new()?;
    let load = |region: Option<aws_config::Region>| {
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http.clone());
        if let Some(r) = region {
            loader = loader.region(r);
        }
        loader.load()
    };
    let mut config = load(None).await;
    if config.region().is_none() {
        let fallback = REGION
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // A bucket elsewhere than AWS has a region of its own (`garage`,
        // `auto`) that names no STS endpoint.
        let region = fallback
            .filter(|r| looks_like_aws_region(r))
            .unwrap_or_else(|| "us-east-1".into());
        config = load(Some(aws_config::Region::new(region))).await;
    }
    config
        .credentials_provider()
        .ok_or_else(|| "the AWS default chain has no provider".to_string())
}

/// `eu-west-1`, `us-gov-east-1`, `ap-southeast-3`: two letters, words,
/// a final number.
fn looks_like_aws_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    let Some((last, words)) = parts.split_last() else {
        return false;
    };
    parts[0].len() == 2
        && words.len() >= 2
        && words
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && last.parse::<u8>().is_ok()
}

/// Whether `c` should be renewed at `now`.
fn due(c: Option<&Current>, now: SystemTime) -> bool {
    let Some(c) = c else { return true };
    match c.expires {
        Some(at) => at
            .duration_since(now)
            .map_or(true, |left| left < REFRESH_BEFORE),
        None => c.fetched.elapsed() >= REREAD_EVERY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(expires: Option<SystemTime>) -> Current {
        let c = aws_credential_types::Credentials::new("AK", "SK", None, expires, "test");
        Current {
            identity: c.into(),
            access_key_id: "AK".into(),
            expires,
            fetched: Instant::now(),
        }
    }

    #[test]
    fn renewed_ahead_of_expiry() {
        let now = SystemTime::now();
        assert!(due(None, now));
        let hour = Duration::from_secs(3600);
        assert!(!due(Some(&creds(Some(now + hour))), now));
        assert!(due(Some(&creds(Some(now + Duration::from_secs(240)))), now));
        assert!(due(Some(&creds(Some(now - hour))), now));
        // No expiry: read again only after a while.
        assert!(!due(Some(&creds(None)), now));
    }

    #[test]
    fn aws_regions_are_told_from_others() {
        for r in ["eu-west-1", "us-gov-east-1", "ap-southeast-3", "us-east-1"] {
            assert!(looks_like_aws_region(r), "{r}");
        }
        for r in ["garage", "auto", "us-east", "", "eu-west-x", "EU-west-1"] {
            assert!(!looks_like_aws_region(r), "{r}");
        }
    }
}
