//! The fill's origin GET: redirect hops, the secondary origin, the
//! header policy and credentials, up to the origin's response header.

use super::*;

/// Asks the origin (hops, secondary) until it answers 200, with the URL
/// for `x-oss-tag`, or decides the outcome.
pub(super) async fn open(
    fills: &Fills,
    job: &FetchJob,
) -> Result<(reqwest::Response, String), Outcome> {
    let mut configured = job.primary.clone();
    let mut target = configured.clone();
    let mut auth = job.auth.as_ref();
    let mut on_secondary = false;
    let mut hops = 0u8;
    loop {
        let same = policy::same_origin(&configured, &target);
        let headers: &[_] = if same { &job.headers } else { &[] };
        // A hop from a public origin to another one connects to public
        // addresses only: the name was checked before the hop
        // (`check_hop`), and `PublicOnly` keeps the connect to what passes.
        let public_only = !same && !policy::is_internal(&configured).await;
        let client = fills
            .origin_client(&target.trust, public_only)
            .map_err(|e| Outcome::Failed(e.to_string()))?;
        let count = |r: OriginResult| job.metrics.as_ref().map(|m| m.origin(r));
        let creds = origin_auth::for_target(auth, &configured, &target);
        let why = match request(&client, &target, headers, creds, job.timeout).await {
            Ok(resp) => match resp.status().as_u16() {
                200 => return Ok((resp, configured.url.clone())),
                404 => {
                    count(OriginResult::NotFound);
                    return Err(Outcome::NotFound);
                }
                // S3's wrong-region answers: no Location to follow.
                s @ (301 | 400)
                    if creds.is_some_and(OriginAuth::is_sigv4)
                        && !resp.headers().contains_key(http::header::LOCATION) =>
                {
                    count(OriginResult::BadStatus);
                    let hint = origin_auth::region_hint(resp, job.timeout).await;
                    origin_auth::log_region_hint(
                        &format!("fill key={:?}", job.key),
                        s,
                        &target.url,
                        hint,
                    );
                    format!("origin answered {s}")
                }
                s @ (301 | 302 | 303 | 307 | 308) if job.follow_redirect && hops < MAX_HOPS => {
                    let next = resp
                        .headers()
                        .get(http::header::LOCATION)
                        .and_then(|l| redirect_target(&target, &location_text(l)));
                    // An attempt that ends here is a bad status like any
                    // other (it counted nothing before).
                    match next {
                        None => {
                            count(OriginResult::BadStatus);
                            format!("origin answered {s} without a usable Location")
                        }
                        Some(n) => match policy::check_hop(&configured, &n).await {
                            Ok(()) => {
                                hops += 1;
                                target = n;
                                continue;
                            }
                            Err(why) => {
                                count(OriginResult::BadStatus);
                                why
                            }
                        },
                    }
                }
                s => {
                    count(OriginResult::BadStatus);
                    format!("origin answered {s}")
                }
            },
            Err((timeout, why)) => {
                count(if timeout {
                    OriginResult::Timeout
                } else {
                    OriginResult::ConnectError
                });
                why
            }
        };
        match (&job.secondary, on_secondary) {
            (Some(sec), false) => {
                log::info!(
                    "fill key={:?}: primary failed ({why}), trying secondary",
                    job.key
                );
                on_secondary = true;
                hops = 0;
                auth = job.secondary_auth.as_ref();
                configured = sec.clone();
                target = sec.clone();
            }
            _ => return Err(Outcome::Failed(why)),
        }
    }
}

/// One origin GET, up to its response header, authenticated with `auth`
/// (signed afresh on every call); the error says whether it was the
/// timeout.
async fn request(
    client: &reqwest::Client,
    target: &OriginTarget,
    headers: &[(http::HeaderName, http::HeaderValue)],
    auth: Option<&OriginAuth>,
    timeout: Duration,
) -> Result<reqwest::Response, (bool, String)> {
    let mut sent = http::HeaderMap::new();
    // `Host` exactly as signed (reqwest would drop an explicit default port).
    let host =
        http::HeaderValue::from_str(&target.authority).map_err(|e| (false, e.to_string()))?;
    sent.insert(http::header::HOST, host);
    for (k, v) in headers {
        sent.append(k.clone(), v.clone());
    }
    if let Some(a) = auth {
        // The credential replaces a rule header of the same name.
        for (k, v) in a
            .headers("GET", target, headers)
            .map_err(|e| (false, e.to_string()))?
        {
            sent.insert(k, v);
        }
    }
    let req = client.get(target.full_url()).headers(sent);
    match tokio::time::timeout(timeout, req.send()).await {
        Err(_) => Err((true, format!("no answer within {timeout:?}"))),
        Ok(Err(e)) => {
            // A refused or failed connection, or an answer the client
            // could not read (e.g. hyper's 100-header bound: "message
            // head is too large"): say which.
            let what = if e.is_connect() {
                "cannot connect to the origin"
            } else {
                "no readable answer from the origin"
            };
            let why = crate::errors::chain(&e);
            let hint = crate::tls::hint(&why);
            Err((e.is_timeout(), format!("{what}: {why}{hint}")))
        }
        Ok(Ok(r)) => Ok(r),
    }
}
