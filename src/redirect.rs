//! Redirect rules (SPEC section 3): the `Location` is assembled from
//! configured parts and the request's own host and key. The key part is
//! percent-encoded per segment, so no key can change the scheme or host
//! (`//evil`, `\`, `@`, CR/LF all end up encoded inside the path).

use crate::key::{encode_key, KeyError};
use crate::rules::Redirect;

/// Why no `Location` can be built (both are the client's doing: 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocationError {
    /// The request's own `Host` is needed but is not a plain `host[:port]`.
    Host,
    /// The rewritten key fails the key check.
    Key(KeyError),
}

/// The request facts a redirect may reuse.
pub struct RequestParts<'a> {
    /// `http` or `https`, as the client reached us.
    pub scheme: &'a str,
    pub host: Option<&'a str>,
    pub key: &'a str,
    pub query: Option<&'a str>,
}

/// The `Location` for `r`.
pub fn location(
    r: &Redirect,
    req: &RequestParts,
    captures: &[String],
) -> Result<String, LocationError> {
    let scheme = r.protocol.as_deref().unwrap_or(req.scheme);
    let host = match &r.host {
        Some(h) => h.clone(),
        None => req
            .host
            .and_then(plain_authority)
            .ok_or(LocationError::Host)?,
    };
    let key = r
        .rewrite
        .apply(req.key, captures)
        .map_err(LocationError::Key)?;
    let mut loc = format!("{scheme}://{host}/{}", encode_key(&key));
    if r.pass_query_string {
        if let Some(q) = req.query.filter(|q| !q.is_empty()) {
            loc.push('?');
            loc.push_str(q);
        }
    }
    Ok(loc)
}

/// A client-sent `Host` accepted as a redirect target: an authority with
/// no user info, path or odd characters.
fn plain_authority(h: &str) -> Option<String> {
    let h = h.trim();
    let ok = !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        && h.parse::<http::uri::Authority>().is_ok();
    ok.then(|| h.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::KeyRewrite;

    fn r(host: Option<&str>, rewrite: KeyRewrite, q: bool) -> Redirect {
        Redirect {
            code: 302,
            protocol: None,
            host: host.map(Into::into),
            rewrite,
            pass_query_string: q,
        }
    }

    #[test]
    fn builds_locations() {
        let req = RequestParts {
            scheme: "http",
            host: Some("Edge.example.com:8080"),
            key: "a b/ü.txt",
            query: Some("x=1"),
        };
        assert_eq!(
            location(&r(None, KeyRewrite::Keep, false), &req, &[]).unwrap(),
            "http://edge.example.com:8080/a%20b/%C3%BC.txt"
        );
        assert_eq!(
            location(
                &r(
                    Some("o.example"),
                    KeyRewrite::Template("n/${key}".into()),
                    true
                ),
                &req,
                &[]
            )
            .unwrap(),
            "http://o.example/n/a%20b/%C3%BC.txt?x=1"
        );
    }

    #[test]
    fn keys_cannot_change_the_host() {
        for key in ["//evil.example/x", "\\evil", "@evil", "a\r\nSet-Cookie: x"] {
            let req = RequestParts {
                scheme: "https",
                host: Some("edge"),
                key,
                query: None,
            };
            let loc = location(&r(None, KeyRewrite::Keep, false), &req, &[]).unwrap();
            let uri: http::Uri = loc.parse().unwrap();
            assert_eq!(uri.authority().map(|a| a.as_str()), Some("edge"), "{loc}");
            assert!(!loc.contains(['\\', '@', '\r', '\n']), "{loc}");
        }
        let bad = RequestParts {
            scheme: "http",
            host: Some("evil.example/x@y"),
            key: "k",
            query: None,
        };
        assert_eq!(
            location(&r(None, KeyRewrite::Keep, false), &bad, &[]),
            Err(LocationError::Host)
        );
        let climb = KeyRewrite::Prefix {
            from: "p".into(),
            to: ".".into(),
        };
        let req = RequestParts {
            scheme: "http",
            host: Some("edge"),
            key: "p./x",
            query: None,
        };
        assert_eq!(
            location(&r(None, climb, false), &req, &[]),
            Err(LocationError::Key(KeyError::DotSegment))
        );
    }
}
