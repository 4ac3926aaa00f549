//! The origin side of a mirror (SPEC section 2): the URL asked of the
//! origin, the headers it receives, the headers the client gets back, and
//! the peer to connect to.

use crate::key::{encode_component, encode_key};
use crate::rules::{HeaderPolicy, OriginUrl};
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::upstreams::peer::HttpPeer;
use std::time::Duration;

/// The origin headers returned to the client and stored with the object.
pub const STORED_HEADERS: [&str; 7] = [
    "content-type",
    "content-encoding",
    "content-disposition",
    "cache-control",
    "expires",
    "content-language",
    "access-control-allow-origin",
];

/// Headers that stay with the origin answer because they frame the body.
const FRAMING: [&str; 2] = ["content-length", "transfer-encoding"];

/// Client headers that never reach the origin, whatever `pass`/`pass_all`
/// say: credentials, our own framing and range (we need whole objects to
/// store them), hop-by-hop headers and storage-specific ones. Also
/// `Accept-Encoding` and every `If-*`: the answer is stored for all later
/// clients, so it must be the plain, whole object, not one client's
/// encoding choice or a 304/412 to one client's condition.
pub(crate) fn never_passed(name: &str) -> bool {
    matches!(
        name,
        "authorization"
            | "cookie"
            | "host"
            | "range"
            | "content-length"
            | "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "expect"
            | "http2-settings"
            | "accept-encoding"
    ) || name.starts_with("if-")
        || name.starts_with("x-amz-")
        || name.starts_with("x-oss-")
}

/// Headers a rule may not `set` for the origin: a range or condition
/// makes every answer a 206, 304 or 412 that can't be stored (so every
/// miss would end in 424), framing or hop-by-hop headers are the
/// connection's, and `Host` is the origin URL's (SPEC section 2; a set
/// `Host` was accepted and never sent). (Credentials and
/// `Accept-Encoding` stay settable: the operator's value is the same for
/// every client.)
pub(crate) fn never_set(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "range"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "upgrade"
            | "expect"
            | "http2-settings"
    ) || name.starts_with("if-")
}

/// Names the client's `Connection` header lists: hop-by-hop for this one
/// connection (RFC 9110 7.6.1), so never forwarded either.
fn connection_listed(client: &HeaderMap) -> Vec<String> {
    client
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect()
}

/// Where one origin request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginTarget {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// `Host` header value.
    pub authority: String,
    /// Encoded path plus `?query` when passed.
    pub path_and_query: String,
    /// Absolute URL without the query, for `x-oss-tag` and logs.
    pub url: String,
    /// The rule's trust roots, kept across redirect hops.
    pub trust: crate::tls::TrustRoots,
}

impl OriginTarget {
    /// The URL asked of the origin, with the passed query (the fetch's
    /// URL, the `FillKey`'s, and an async mirror's `Location`).
    pub fn full_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.path_and_query)
    }
}

/// The URL of `key` under a configured origin: the origin's path kept, each
/// key segment percent-encoded, never resolved as a relative reference
/// (so a key cannot change the host, scheme or port).
pub fn origin_target(base: &OriginUrl, key: &str, query: Option<&str>) -> OriginTarget {
    let path = format!("{}{}", base.base_path, encode_key(key));
    let scheme = if base.tls { "https" } else { "http" };
    OriginTarget {
        tls: base.tls,
        host: base.host.clone(),
        port: base.port,
        authority: base.authority.clone(),
        trust: base.trust.clone(),
        url: format!("{scheme}://{}{path}", base.authority),
        path_and_query: match query {
            Some(q) if !q.is_empty() => format!("{path}?{q}"),
            _ => path,
        },
    }
}

/// A `Location` header as text for [`redirect_target`]. Raw non-ASCII
/// bytes (`/dest/été.txt` sent as UTF-8, which `HeaderValue::to_str`
/// refuses) are percent-encoded as browsers and curl do, so the hop is
/// followed instead of failing the miss.
pub fn location_text(v: &HeaderValue) -> std::borrow::Cow<'_, str> {
    match v.to_str() {
        Ok(s) => s.into(),
        Err(_) => percent_encoding::percent_encode(v.as_bytes(), percent_encoding::CONTROLS)
            .to_string()
            .into(),
    }
}

/// The next hop of an origin redirect: `location` resolved against the
/// URL that answered (RFC 3986, as browsers and curl do: `b.jpg`,
/// `../x`, `?v=2`, `//cdn.example/x` and absolute URLs alike). Only http
/// and https, and no user info; anything else is `None`.
pub fn redirect_target(current: &OriginTarget, location: &str) -> Option<OriginTarget> {
    let here = url::Url::parse(&current.full_url()).ok()?;
    let mut next = here.join(location.trim()).ok()?;
    next.set_fragment(None);
    // An empty or fragment-only `Location` names the URL that answered:
    // following it would ask the same URL until the hops run out.
    if next == here {
        return None;
    }
    let tls = match next.scheme() {
        "http" => false,
        "https" => true,
        _ => return None,
    };
    if !next.username().is_empty() || next.password().is_some() {
        return None;
    }
    // `host_str` keeps an IPv6 address's brackets, as `Host` wants them.
    let bracketed = next.host_str()?;
    let host = bracketed.trim_start_matches('[').trim_end_matches(']');
    let port = next.port_or_known_default()?;
    let authority = if (tls, host, port) == (current.tls, current.host.as_str(), current.port) {
        // Same origin: the `Host` it was asked with.
        current.authority.clone()
    } else {
        match next.port() {
            Some(p) => format!("{bracketed}:{p}"),
            None => bracketed.to_string(),
        }
    };
    let path = next.path();
    let scheme = if tls { "https" } else { "http" };
    Some(OriginTarget {
        tls,
        host: host.to_string(),
        port,
        url: format!("{scheme}://{authority}{path}"),
        path_and_query: match next.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        },
        authority,
        trust: current.trust.clone(),
    })
}

/// `x-oss-tag` value for an object mirrored from `url`.
pub fn oss_tag(url: &str) -> String {
    format!("MIRROR {}", encode_component(url))
}

/// The headers the origin receives (besides `Host`), per the rule's policy.
pub fn origin_request_headers(
    policy: &HeaderPolicy,
    client: &HeaderMap,
) -> Vec<(HeaderName, HeaderValue)> {
    let hop = connection_listed(client);
    let mut out: Vec<(HeaderName, HeaderValue)> = client
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            !never_passed(n)
                && !hop.iter().any(|h| h == n)
                && (policy.pass_all || policy.pass.iter().any(|p| p == n))
                && !policy.remove.iter().any(|r| r == n)
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    for (k, v) in &policy.set {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) else {
            continue;
        };
        if matches!(
            name.as_str(),
            "host" | "content-length" | "transfer-encoding"
        ) {
            continue;
        }
        out.retain(|(n, _)| n != name);
        out.push((name, value));
    }
    out
}

/// Strips an origin `200` down to the stored headers plus framing, and
/// tags it.
pub fn filter_origin_response(resp: &mut ResponseHeader, tag: &str) -> pingora::Result<()> {
    let drop: Vec<HeaderName> = resp
        .headers
        .keys()
        .filter(|n| !STORED_HEADERS.contains(&n.as_str()) && !FRAMING.contains(&n.as_str()))
        .cloned()
        .collect();
    for n in drop {
        resp.remove_header(&n);
    }
    resp.insert_header("x-oss-tag", tag)?;
    // The client talks to us: an HTTP/1.0 origin's status line is not
    // ours to repeat (`HTTP/1.0 200` beside `Connection: keep-alive`).
    resp.set_version(http::Version::HTTP_11);
    Ok(())
}

/// The stored headers of an origin answer, as (name, value) pairs.
///
/// `Expires` is stored as an IMF-fixdate: S3 takes it as a timestamp,
/// and a bucket that checks it (the embedded local bucket does) refused
/// the whole write-back for any other form, so the object was fetched
/// from the origin again on every read. A value that is no date at all
/// (`0`, `-1`: common on dynamic origins) means "already expired" (RFC
/// 9111 5.3) and is stored as the epoch, which says the same.
///
/// A list-valued header sent on several lines (`Cache-Control: public`
/// and `Cache-Control: max-age=60`) is stored as one line joined with
/// `, `, which means the same (RFC 9110 5.3): a bucket keeps one value per
/// header, and keeping the first line only dropped the rest.
pub fn stored_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    STORED_HEADERS
        .iter()
        .filter_map(|n| {
            let v = if LIST_VALUED.contains(n) {
                let lines: Vec<&str> = headers
                    .get_all(*n)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                if lines.is_empty() {
                    return None;
                }
                lines.join(", ")
            } else if *n == "content-disposition" {
                crate::disposition::ascii(headers.get(*n)?)?
            } else {
                headers.get(*n)?.to_str().ok()?.to_string()
            };
            if *n == "expires" {
                let at = httpdate::parse_http_date(v.trim()).unwrap_or(std::time::UNIX_EPOCH);
                return Some((n.to_string(), httpdate::fmt_http_date(at)));
            }
            // A tab is whitespace to the bucket when it checks the
            // signature (Garage, MinIO), not to aws-sigv4, which trims
            // spaces only: `public,\tmax-age=60` failed every write-back.
            let v = if v.contains('\t') {
                v.replace('\t', " ")
            } else {
                v
            };
            Some((n.to_string(), v))
        })
        .collect()
}

/// Stored headers whose value is a comma-separated list.
const LIST_VALUED: [&str; 3] = ["cache-control", "content-encoding", "content-language"];

/// The body length an origin answer announced (none when it has a
/// `Transfer-Encoding`: the framing then decides, as HTTP says).
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    if headers.contains_key(http::header::TRANSFER_ENCODING) {
        return None;
    }
    let v = headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim();
    match v.parse() {
        Ok(n) => Some(n),
        // `5000, 5000`: a list of one value repeated is that value (RFC
        // 9110 §8.6; HTTP clients and Pingora read it so); differing
        // values frame nothing.
        Err(_) => {
            let mut values = v.split(',').map(|p| p.trim().parse::<u64>().ok());
            let first = values.next()??;
            values.all(|n| n == Some(first)).then_some(first)
        }
    }
}

/// Whether an origin answer's body may be stored: its framing says where
/// it ends (a `Content-Length`, or `Transfer-Encoding: chunked` and no
/// other coding), so a cut body can't pass for a whole one. A body that
/// ends when the connection closes (HTTP/1.0 style) is served, never
/// stored (SPEC section 2): a connection the origin drops early looks
/// the same. Another transfer coding (`gzip, chunked`) is refused too:
/// the client library removes only the chunking, and the stored bytes
/// would be coded without a `Content-Encoding` saying so.
pub fn storable_framing(headers: &HeaderMap) -> bool {
    let mut codings = headers.get_all(http::header::TRANSFER_ENCODING).iter();
    match (codings.next(), codings.next()) {
        (None, _) => content_length(headers).is_some(),
        (Some(te), None) => te
            .to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked")),
        (Some(_), Some(_)) => false,
    }
}

/// The origin's `Content-MD5` (16 bytes), when it sent a valid one.
pub fn content_md5(headers: &HeaderMap) -> Option<[u8; 16]> {
    use base64::Engine;
    let v = headers.get("content-md5")?.to_str().ok()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .ok()?;
    <[u8; 16]>::try_from(bytes.as_slice()).ok()
}

/// The address to connect to for `target`, resolved asynchronously (an
/// origin may be any host a redirect names).
pub async fn resolve(target: &OriginTarget) -> std::io::Result<Vec<std::net::SocketAddr>> {
    let addrs: Vec<_> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await?
        .collect();
    if addrs.is_empty() {
        return Err(std::io::Error::other("no address"));
    }
    Ok(addrs)
}

/// A Pingora peer for `target` at `addr` (from [`resolve`], and checked
/// against the hop policy: the address checked is the one connected to).
pub fn peer_at(target: &OriginTarget, addr: std::net::SocketAddr, timeout: Duration) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, target.tls, target.host.clone());
    peer.options.ca = target.trust.pingora_ca();
    peer.options.connection_timeout = Some(timeout);
    peer.options.total_connection_timeout = Some(timeout);
    // Each read, the response header included, must make progress within
    // the timeout: the idle timeout on the body.
    peer.options.read_timeout = Some(timeout);
    peer.options.write_timeout = Some(timeout);
    peer
}

#[cfg(test)]
#[path = "mirror_tests.rs"]
mod tests;
