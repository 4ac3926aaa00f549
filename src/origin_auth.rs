//! Private origins (`mirror.auth`, `mirror.secondary_auth`): the
//! credentials a mirror rule sends to its configured origin, on both miss
//! paths (the shared fill's reqwest client and Pingora's plain reroute).
//!
//! Credentials go to the configured origin only: a redirect hop to another
//! origin (scheme, host or port differ) carries none, like the rule's other
//! headers (`crate::fill::policy::same_origin`). A SigV4 request is signed
//! again on every attempt (retry, same-origin hop, secondary), so its date
//! is always fresh and its signature covers the URL actually asked.

use crate::fill::policy::same_origin;
use crate::mirror::{origin_target, OriginTarget};
use crate::rules::OriginUrl;
use crate::sigv4::{canonical_query_where, Payload, SignError, Signer};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub enum OriginAuth {
    /// Every request signed with these keys (S3 rules for service `s3`).
    SigV4(Arc<Signer>),
    /// A static header, e.g. `authorization: Bearer …`, from the environment.
    Header {
        name: HeaderName,
        /// Marked sensitive: never indexed by HPACK, `Debug` hides it.
        value: HeaderValue,
    },
}

impl std::fmt::Debug for OriginAuth {
    // A config dump or a debug log must not carry the credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OriginAuth::SigV4(s) => write!(f, "SigV4({s:?})"),
            OriginAuth::Header { name, .. } => write!(f, "Header({name}: ***)"),
        }
    }
}

impl OriginAuth {
    pub fn header(name: HeaderName, mut value: HeaderValue) -> OriginAuth {
        value.set_sensitive(true);
        OriginAuth::Header { name, value }
    }

    pub fn is_sigv4(&self) -> bool {
        matches!(self, OriginAuth::SigV4(_))
    }

    /// The headers that authenticate `method target` (already carrying
    /// `sent`, besides `Host: target.authority`). Only `x-amz-*` headers
    /// of `sent` are signed: S3 requires those signed, and other headers
    /// (a rule's `headers.set`) stay free to change on the way.
    pub fn headers(
        &self,
        method: &str,
        target: &OriginTarget,
        sent: &[(HeaderName, HeaderValue)],
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let signer = match self {
            OriginAuth::Header { name, value } => return Ok(vec![(name.clone(), value.clone())]),
            OriginAuth::SigV4(s) => s,
        };
        // Those the signature sets itself replace the rule's, unsigned.
        let own = ["x-amz-date", "x-amz-content-sha256", "x-amz-security-token"];
        let amz: Vec<(&str, &str)> = sent
            .iter()
            .filter(|(n, _)| n.as_str().starts_with("x-amz-") && !own.contains(&n.as_str()))
            .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
            .collect();
        // A GET or HEAD has no body: its hash is the empty string's, which
        // every S3 implementation accepts (not all take UNSIGNED-PAYLOAD).
        let signed = signer.sign(
            method,
            &target.full_url(),
            &target.authority,
            &amz,
            Payload::Bytes(&[]),
        )?;
        signed
            .into_iter()
            .map(|(k, v)| {
                let name = HeaderName::try_from(k).map_err(|e| SignError::new(e.to_string()))?;
                let mut value =
                    HeaderValue::try_from(v).map_err(|e| SignError::new(e.to_string()))?;
                value.set_sensitive(crate::sigv4::is_secret(name.as_str()));
                Ok((name, value))
            })
            .collect()
    }
}

/// The credentials for a request to `target` while `configured` is the
/// origin being tried: none on a hop to another origin.
pub fn for_target<'a>(
    auth: Option<&'a OriginAuth>,
    configured: &OriginTarget,
    target: &OriginTarget,
) -> Option<&'a OriginAuth> {
    auth.filter(|_| same_origin(configured, target))
}

/// The URL of `key` under a configured origin. With SigV4 the passed
/// query is sent in the form it is signed in (see `canonical_query`),
/// without S3's control parameters ([`s3_control`]).
pub fn configured_target(
    base: &OriginUrl,
    auth: Option<&OriginAuth>,
    key: &str,
    query: Option<&str>,
) -> OriginTarget {
    match (auth, query) {
        (Some(OriginAuth::SigV4(_)), Some(q)) => {
            let q = canonical_query_where(q, |name| !s3_control(name));
            origin_target(base, key, Some(&q))
        }
        _ => origin_target(base, key, query),
    }
}

/// S3 query parameters that change what a GET returns rather than name
/// the object: response header overrides, another version or part, a
/// sub-resource (ACL, tags, torrent...), presigning fields. A client's
/// query never carries them to a SigV4 origin: the proxy's signature would
/// make S3 honour them (`?response-content-type=text/html`, `?versionId=`
/// of a deleted version, `?acl`), and the answer is stored under the key
/// for every later client.
pub fn s3_control(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("response-")
        || n.starts_with("x-amz-")
        || matches!(
            n.as_str(),
            "versionid"
                | "partnumber"
                | "uploadid"
                | "uploads"
                | "acl"
                | "tagging"
                | "torrent"
                | "attributes"
                | "legal-hold"
                | "retention"
                | "restore"
                | "select"
                | "select-type"
                | "object-lock"
                | "policy"
                | "cors"
                | "website"
                | "lifecycle"
                | "versions"
                | "versioning"
                | "location"
                | "logging"
                | "encryption"
                | "replication"
                | "notification"
                | "requestpayment"
                | "ownershipcontrols"
                | "publicaccessblock"
                | "list-type"
                | "delete"
        )
}

/// The region an S3 origin names when asked in the wrong one: the
/// `x-amz-bucket-region` header, else `<Region>` or `<Endpoint>` of the
/// XML error body (`PermanentRedirect`, `AuthorizationHeaderMalformed`).
pub fn s3_region_hint(headers: &HeaderMap, body: Option<&[u8]>) -> Option<String> {
    if let Some(r) = headers
        .get("x-amz-bucket-region")
        .and_then(|v| v.to_str().ok())
    {
        return Some(format!("region {r}"));
    }
    #[derive(serde::Deserialize)]
    struct ErrorDoc {
        #[serde(rename = "Region")]
        region: Option<String>,
        #[serde(rename = "Endpoint")]
        endpoint: Option<String>,
    }
    let text = std::str::from_utf8(body?).ok()?;
    let doc: ErrorDoc = quick_xml::de::from_str(text).ok()?;
    doc.region
        .map(|r| format!("region {r}"))
        .or(doc.endpoint.map(|e| format!("endpoint {e}")))
}

/// [`s3_region_hint`] of a fill's answer: its header, else the start of
/// its XML body (read for at most `timeout`; error bodies are small).
pub async fn region_hint(resp: reqwest::Response, timeout: Duration) -> Option<String> {
    if let Some(h) = s3_region_hint(resp.headers(), None) {
        return Some(h);
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    let read = async {
        while let Some(Ok(chunk)) = stream.next().await {
            body.extend_from_slice(&chunk);
            if body.len() >= 8 << 10 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, read).await;
    s3_region_hint(&http::HeaderMap::new(), Some(&body))
}

/// The log line for an origin's 301 or 400 that names another region.
pub fn log_region_hint(what: &str, status: u16, url: &str, hint: Option<String>) {
    if let Some(h) = hint {
        log::warn!(
            "{what}: origin {url} answered {status}: the S3 bucket lives elsewhere ({h}); set the rule's `auth.region` and `url` to it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(s: &str) -> OriginUrl {
        crate::config::parse_origin_url(s).unwrap()
    }

    #[test]
    fn debug_hides_credentials() {
        let h = OriginAuth::header(
            HeaderName::from_static("authorization"),
            HeaderValue::from_static("Bearer hunter2"),
        );
        let s = OriginAuth::SigV4(Arc::new(Signer::new("AK", "s3cret", None, "r", "s3")));
        for a in [h, s] {
            let d = format!("{a:?}");
            assert!(!d.contains("hunter2") && !d.contains("s3cret"), "{d}");
        }
    }

    #[test]
    fn credentials_stay_with_the_configured_origin() {
        let auth = OriginAuth::SigV4(Arc::new(Signer::new("AK", "s", None, "garage", "s3")));
        let cfg = configured_target(&base("http://o:9000/b/"), Some(&auth), "k", Some("a=1+2"));
        assert_eq!(cfg.path_and_query, "/b/k?a=1%202");
        // S3's control parameters stay out; others keep their order.
        let q = "response-content-type=text%2Fhtml&a=1&versionId=3&X-Amz-Expires=9&acl&b=2";
        let cfg = configured_target(&base("http://o:9000/b/"), Some(&auth), "k", Some(q));
        assert_eq!(cfg.path_and_query, "/b/k?a=1&b=2");
        let cfg = configured_target(&base("http://o:9000/b/"), Some(&auth), "k", Some("acl"));
        assert_eq!(cfg.path_and_query, "/b/k");
        // Other origins get the query as the client sent it.
        let cfg = configured_target(&base("http://o:9000/b/"), None, "k", Some(q));
        assert!(cfg.path_and_query.ends_with(q));
        let here = crate::mirror::redirect_target(&cfg, "/b/k2").unwrap();
        let away = crate::mirror::redirect_target(&cfg, "http://p:9000/b/k").unwrap();
        assert!(for_target(Some(&auth), &cfg, &here).is_some());
        assert!(for_target(Some(&auth), &cfg, &away).is_none());
        let sent = [(
            HeaderName::from_static("x-amz-request-payer"),
            HeaderValue::from_static("requester"),
        )];
        let h = auth.headers("GET", &here, &sent).unwrap();
        let authz = h.iter().find(|(n, _)| n == "authorization").unwrap();
        assert!(authz.1.is_sensitive());
        let v = authz.1.to_str().unwrap();
        assert!(
            v.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-request-payer")
        );
    }

    #[test]
    fn region_hints() {
        let mut h = HeaderMap::new();
        let xml = b"<?xml version=\"1.0\"?><Error><Code>PermanentRedirect</Code><Bucket>b</Bucket><Endpoint>b.s3.eu-west-1.amazonaws.com</Endpoint></Error>";
        assert_eq!(
            s3_region_hint(&h, Some(xml)).as_deref(),
            Some("endpoint b.s3.eu-west-1.amazonaws.com")
        );
        let xml =
            b"<Error><Code>AuthorizationHeaderMalformed</Code><Region>eu-west-1</Region></Error>";
        assert_eq!(
            s3_region_hint(&h, Some(xml)).as_deref(),
            Some("region eu-west-1")
        );
        assert_eq!(s3_region_hint(&h, Some(b"not xml")), None);
        h.insert(
            "x-amz-bucket-region",
            HeaderValue::from_static("ap-south-1"),
        );
        assert_eq!(
            s3_region_hint(&h, None).as_deref(),
            Some("region ap-south-1")
        );
    }
}
