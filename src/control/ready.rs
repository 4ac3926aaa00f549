//! Readiness: every few seconds each site's bucket of the routing state in
//! force gets one signed probe with a short timeout (`crate::probe`).
//! `/readyz` is 200 only when every site's last probe was answered and the
//! process is not draining.

use super::Control;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

const EVERY: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(2);
/// A probe `/readyz` makes itself: inside the 1 s a Kubernetes probe
/// waits by default, so a slow bucket is a 503, not a probe timeout.
const ASKED_TIMEOUT: Duration = Duration::from_millis(800);

/// Bucket endpoints are resolved again every this many probes (a minute).
const RESOLVE_EVERY: u32 = 30;

pub async fn probe_loop(c: Arc<Control>) {
    let mut round = 0u32;
    // What each site's last probe said, to log only changes.
    let mut last: std::collections::HashMap<String, Result<crate::probe::Answer, String>> =
        Default::default();
    loop {
        // Renews the AWS chain's credentials ahead of expiry (a no-op
        // without `credentials: aws_chain`).
        crate::credentials::refresh_if_due().await;
        let state = c.proxy.state();
        round = round.wrapping_add(1);
        if round.is_multiple_of(RESOLVE_EVERY) {
            let refreshes = state
                .sites
                .iter()
                .map(|s| s.bucket.refresh_addresses(&s.name));
            futures_util::future::join_all(refreshes).await;
        }
        let probes = state.sites.iter().map(|site| async move {
            let r = crate::probe::probe(&site.bucket, TIMEOUT).await;
            (site.clone(), r)
        });
        let results = futures_util::future::join_all(probes).await;
        let mut ready = std::collections::BTreeMap::new();
        for (site, r) in results {
            if last.get(&site.name) != Some(&r) {
                crate::probe::explain(&site.name, &site.bucket, &r);
            }
            let serving = crate::probe::serving(&r);
            site.metrics().bucket_up.set(i64::from(serving.is_ok()));
            ready.insert(site.name.clone(), serving);
            last.insert(site.name.clone(), r);
        }
        last.retain(|name, _| ready.contains_key(name));
        *c.ready.lock().unwrap_or_else(PoisonError::into_inner) = ready;
        tokio::time::sleep(EVERY).await;
    }
}

/// `/readyz`: `Ok` or the reasons, one line per site not ready. A site
/// no probe round has seen yet (the first seconds after start, or one a
/// reload just added) is probed now: a reload that adds a site no longer
/// turns every instance of a fleet unready until the next round.
pub async fn readiness(c: &Control) -> Result<(), String> {
    if c.draining() {
        return Err("draining: shutting down\n".into());
    }
    let state = c.proxy.state();
    let unseen: Vec<_> = {
        let ready = c.ready.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .sites
            .iter()
            .filter(|s| !ready.contains_key(&s.name))
            .cloned()
            .collect()
    };
    let probes = unseen.iter().map(|site| async move {
        let r = crate::probe::probe(&site.bucket, ASKED_TIMEOUT).await;
        (site.name.clone(), crate::probe::serving(&r))
    });
    let seen = futures_util::future::join_all(probes).await;
    let mut ready = c.ready.lock().unwrap_or_else(PoisonError::into_inner);
    for (name, r) in seen {
        ready.entry(name).or_insert(r);
    }
    let mut why = String::new();
    for site in &state.sites {
        match ready.get(&site.name) {
            Some(Ok(())) => {}
            Some(Err(e)) => why.push_str(&format!("site {}: {e}\n", site.name)),
            None => why.push_str(&format!("site {}: not probed yet\n", site.name)),
        }
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(why)
    }
}
