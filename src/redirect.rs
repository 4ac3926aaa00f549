//! Redirect rules (SPEC section 3): the `Location` is assembled from
//! configured parts and the request's own host and key. The key part is
//! percent-encoded per segment, so no key can change the scheme or host
//! (`//evil`, `\`, `@`, CR/LF all end up encoded inside the path).

use crate::key::{encode_key, KeyError};
use crate::rules::Redirect;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

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
        None => {
            let own = req
                .host
                .and_then(plain_authority)
                .ok_or(LocationError::Host)?;
            // Another scheme is another port: `http://h:8080/x` becomes
            // `https://h/x` (nginx's `$host` has no port either), not an
            // https request to the plain listener's port.
            if scheme != req.scheme {
                without_port(&own)
            } else {
                own
            }
        }
    };
    let key = r
        .rewrite
        .apply(req.key, captures)
        .map_err(LocationError::Key)?;
    let mut loc = format!("{scheme}://{host}/{}", encode_key(&key));
    if r.pass_query_string {
        if let Some(q) = req.query.filter(|q| !q.is_empty()) {
            loc.push('?');
            // Raw UTF-8 and the bytes a URL may not carry are encoded;
            // the client's own escapes stay as they are.
            loc.extend(utf8_percent_encode(q, QUERY));
        }
    }
    Ok(loc)
}

/// Bytes of a query that a `Location` must carry percent-encoded (the
/// URL standard's query set; non-ASCII always is).
const QUERY: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'`');

/// Whether `location` is the URL the request itself asked for (same
/// scheme, host and port, key and query): answering with it would make
/// the client ask the same again, for ever (a "force https" rule on the
/// https listener, a 404 redirect with nothing to change).
pub fn is_own_url(location: &str, req: &RequestParts) -> bool {
    let own = Redirect {
        code: 302,
        protocol: None,
        host: None,
        rewrite: crate::rules::KeyRewrite::Keep,
        pass_query_string: true,
    };
    let Ok(own) = crate::redirect::location(&own, req, &[]) else {
        return false;
    };
    // Scheme and host compare without case; path and query exactly.
    let split = |u: &str| {
        let after = u.find("://").map_or(0, |i| i + 3);
        let at = u[after..].find('/').map_or(u.len(), |i| after + i);
        (u[..at].to_ascii_lowercase(), u[at..].to_string())
    };
    split(location) == split(&own)
}

/// A client-sent `Host` accepted as a redirect target: an authority with
/// no user info, path or odd characters, and a numeric port if any.
fn plain_authority(h: &str) -> Option<String> {
    let h = h.trim();
    let ok = !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        && h.parse::<http::uri::Authority>().is_ok_and(|a| {
            let port = &a.as_str()[a.host().len()..];
            port.is_empty()
                || port
                    .strip_prefix(':')
                    .is_some_and(|p| p.parse::<u16>().is_ok())
        });
    ok.then(|| h.to_ascii_lowercase())
}

/// `host[:port]` without its port (`[::1]:8080` → `[::1]`).
fn without_port(authority: &str) -> String {
    authority
        .parse::<http::uri::Authority>()
        .map_or_else(|_| authority.to_string(), |a| a.host().to_string())
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
    fn another_scheme_drops_the_port_and_own_urls_are_seen() {
        let req = RequestParts {
            scheme: "http",
            host: Some("H.test:8080"),
            key: "force/a.html",
            query: Some("q=ü&a=%20b c"),
        };
        let mut https = r(None, KeyRewrite::Keep, true);
        https.protocol = Some("https".into());
        let loc = location(&https, &req, &[]).unwrap();
        assert_eq!(loc, "https://h.test/force/a.html?q=%C3%BC&a=%20b%20c");
        assert!(!is_own_url(&loc, &req));
        // The same rule on the https listener points at the request.
        let tls = RequestParts {
            scheme: "https",
            ..req
        };
        let loc = location(&https, &tls, &[]).unwrap();
        assert_eq!(loc, "https://h.test:8080/force/a.html?q=%C3%BC&a=%20b%20c");
        assert!(is_own_url(&loc, &tls));
        assert!(is_own_url(
            "HTTPS://H.TEST:8080/force/a.html?q=%C3%BC&a=%20b%20c",
            &tls
        ));
        assert!(!is_own_url(
            "https://h.test:8080/Force/a.html?q=%C3%BC&a=%20b%20c",
            &tls
        ));
        // Without the query it is another URL (one more hop, then own).
        let strip = location(&r(None, KeyRewrite::Keep, false), &tls, &[]).unwrap();
        assert!(!is_own_url(&strip, &tls));
        let v6 = RequestParts {
            host: Some("[::1]:8080"),
            ..req
        };
        assert_eq!(
            location(&https, &v6, &[]).unwrap().split('?').next(),
            Some("https://[::1]/force/a.html")
        );
        for bad in ["main.test:abc", "main.test:", "main.test:99999"] {
            let req = RequestParts {
                host: Some(bad),
                ..req
            };
            assert_eq!(
                location(&https, &req, &[]),
                Err(LocationError::Host),
                "{bad}"
            );
        }
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
