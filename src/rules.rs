//! Rules (SPEC sections 2, 3 and 5): conditions, actions, first-match
//! selection and key rewriting. Shared by the mirror and redirect phases.

use http::HeaderMap;
use pingora::http::RequestHeader;
use regex::Regex;
use std::time::Duration;

mod rewrite;
pub use rewrite::{pieces, Piece};

#[derive(Debug, Clone)]
pub struct Rule {
    pub condition: Condition,
    pub action: Action,
}

#[derive(Debug, Clone, Default)]
pub struct Condition {
    pub key_prefix: Option<String>,
    pub key_suffix: Option<String>,
    pub key_regex: Option<Regex>,
    /// `None`: the rule is answered from the request filter (redirects
    /// only; mirror rules always carry 404).
    pub http_error_code: Option<u16>,
    pub include_headers: Vec<HeaderCondition>,
}

#[derive(Debug, Clone)]
pub struct HeaderCondition {
    /// Lower-case header name.
    pub name: String,
    pub test: HeaderTest,
}

#[derive(Debug, Clone)]
pub enum HeaderTest {
    Equals(String),
    StartsWith(String),
    EndsWith(String),
}

#[derive(Debug, Clone)]
pub enum Action {
    Mirror(Box<Mirror>),
    Redirect(Redirect),
}

/// How the object key becomes the key sent to the origin or put in a
/// `Location`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRewrite {
    Keep,
    /// Replace the condition's `key_prefix` with this.
    Prefix {
        from: String,
        to: String,
    },
    /// `${key}`, `$1`..`$9` and `${N}` (from `key_regex`) are substituted.
    Template(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginUrl {
    /// As configured, e.g. `http://origin.example.com/dir1/`.
    pub raw: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Value for the `Host` header: the host, plus the port when not default.
    pub authority: String,
    /// Path part, always ending in `/`.
    pub base_path: String,
    /// Roots trusted when this URL is https (the rule's `tls.ca_file`).
    pub trust: crate::tls::TrustRoots,
}

#[derive(Debug, Clone)]
pub struct Mirror {
    pub url: OriginUrl,
    pub secondary_url: Option<OriginUrl>,
    pub pass_query_string: bool,
    pub follow_redirect: bool,
    pub check_md5: bool,
    pub allow_head: bool,
    pub mirror_on_bucket_error: bool,
    pub rewrite: KeyRewrite,
    pub headers: HeaderPolicy,
    pub timeout: Duration,
    pub mode: crate::config::MirrorMode,
    /// Credentials for `url` (`mirror.auth`).
    pub auth: Option<crate::origin_auth::OriginAuth>,
    /// Credentials for `secondary_url`; none when absent (credentials are
    /// per origin, the primary's never go to the secondary).
    pub secondary_auth: Option<crate::origin_auth::OriginAuth>,
}

#[derive(Debug, Clone, Default)]
pub struct HeaderPolicy {
    pub pass_all: bool,
    /// Lower-case names.
    pub pass: Vec<String>,
    pub remove: Vec<String>,
    pub set: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Redirect {
    pub code: u16,
    pub protocol: Option<String>,
    pub host: Option<String>,
    pub rewrite: KeyRewrite,
    pub pass_query_string: bool,
}

/// What a request looks like to the matcher.
pub struct Probe<'a> {
    pub key: &'a str,
    pub headers: &'a HeaderMap,
    /// The authority of the request's target: HTTP/2's `:authority`,
    /// which usually comes without a Host header (or an absolute-form
    /// HTTP/1 target).
    pub authority: Option<&'a str>,
    /// `None` in the request filter; the bucket's status afterwards.
    pub status: Option<u16>,
}

impl<'a> Probe<'a> {
    pub fn new(key: &'a str, req: &'a RequestHeader, status: Option<u16>) -> Probe<'a> {
        Probe {
            key,
            headers: &req.headers,
            // Not the Host header: it is looked up only by a rule that
            // asks (a hit pays no header lookup for it).
            authority: target_authority(req),
            status,
        }
    }
}

/// The host a request names: its `Host` header, else the authority of
/// its target (HTTP/2's `:authority`, or an absolute-form HTTP/1 target).
pub fn request_host(req: &RequestHeader) -> Option<&str> {
    // The target is looked at only without a Host header.
    host_of(&req.headers, None).or_else(|| target_authority(req))
}

/// The authority of a request's target: HTTP/2's `:authority`, or that
/// of an absolute-form HTTP/1 target (`GET http://h/k`). Pingora keeps
/// only the path of the latter in the `Uri` (and refuses a `Host` that
/// differs from it), so an HTTP/1.0 request without `Host` names its host
/// only there (RFC 9112 §3.2.2).
pub fn target_authority(req: &RequestHeader) -> Option<&str> {
    req.uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| absolute_form_authority(req.raw_path()))
}

fn absolute_form_authority(raw: &[u8]) -> Option<&str> {
    // Origin-form (`/k`), nearly every request: one byte compared.
    if raw.first() == Some(&b'/') {
        return None;
    }
    let s = std::str::from_utf8(raw).ok()?;
    let scheme_end = s.find("://")?;
    if !["http", "https"]
        .iter()
        .any(|p| s[..scheme_end].eq_ignore_ascii_case(p))
    {
        return None;
    }
    let rest = &s[scheme_end + 3..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|a| !a.is_empty())
}

fn host_of<'a>(headers: &'a HeaderMap, authority: Option<&'a str>) -> Option<&'a str> {
    headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(authority)
}

/// The rules whose condition matches, in order, each with its index and
/// the regex captures (if the rule has a `key_regex`) needed to rewrite
/// the key.
pub fn matching<'r, 'p>(
    rules: &'r [Rule],
    probe: &'p Probe,
) -> impl Iterator<Item = (usize, &'r Rule, Vec<String>)> + use<'r, 'p> {
    rules.iter().enumerate().filter_map(move |(i, rule)| {
        let caps = rule.condition.matches(probe)?;
        Some((i, rule, caps))
    })
}

/// The first rule whose condition matches ([`matching`]).
pub fn first_match<'r>(rules: &'r [Rule], probe: &Probe) -> Option<(usize, &'r Rule, Vec<String>)> {
    matching(rules, probe).next()
}

impl Condition {
    /// `Some(captures)` when it matches (captures empty without a regex).
    pub fn matches(&self, p: &Probe) -> Option<Vec<String>> {
        if self.http_error_code != p.status {
            return None;
        }
        if let Some(prefix) = &self.key_prefix {
            if !p.key.starts_with(prefix.as_str()) {
                return None;
            }
        }
        if let Some(suffix) = &self.key_suffix {
            if !p.key.ends_with(suffix.as_str()) {
                return None;
            }
        }
        if !self.include_headers.iter().all(|h| h.matches(p)) {
            return None;
        }
        match &self.key_regex {
            None => Some(Vec::new()),
            Some(re) => {
                let caps = re.captures(p.key)?;
                Some(
                    caps.iter()
                        .map(|m| m.map(|m| m.as_str().to_string()).unwrap_or_default())
                        .collect(),
                )
            }
        }
    }
}

impl HeaderCondition {
    fn matches(&self, p: &Probe) -> bool {
        // `host` is the request's host whichever way it came: HTTP/2
        // carries it in `:authority`, usually without a Host header.
        if self.name == "host" {
            return host_of(p.headers, p.authority).is_some_and(|h| self.test.holds(h));
        }
        // A header sent several times matches when any value does.
        p.headers
            .get_all(self.name.as_str())
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| self.test.holds(v)))
    }
}

impl HeaderTest {
    fn holds(&self, v: &str) -> bool {
        match self {
            HeaderTest::Equals(s) => v == s,
            HeaderTest::StartsWith(s) => v.starts_with(s.as_str()),
            HeaderTest::EndsWith(s) => v.ends_with(s.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyError;

    fn redirect_rule(cond: Condition) -> Rule {
        Rule {
            condition: cond,
            action: Action::Redirect(Redirect {
                code: 302,
                protocol: None,
                host: None,
                rewrite: KeyRewrite::Keep,
                pass_query_string: false,
            }),
        }
    }

    #[test]
    fn absolute_form_targets_name_their_authority() {
        assert_eq!(absolute_form_authority(b"/k"), None);
        assert_eq!(
            absolute_form_authority(b"http://h.example/k"),
            Some("h.example")
        );
        assert_eq!(absolute_form_authority(b"HTTPS://h:8443?q"), Some("h:8443"));
        assert_eq!(
            absolute_form_authority(b"http://h.example"),
            Some("h.example")
        );
        assert_eq!(absolute_form_authority(b"ftp://h/k"), None);
        assert_eq!(absolute_form_authority(b"http:///k"), None);
        assert_eq!(absolute_form_authority(b"*"), None);
    }

    #[test]
    fn first_match_respects_order_and_status() {
        let rules = vec![
            redirect_rule(Condition {
                key_prefix: Some("a/".into()),
                http_error_code: Some(404),
                ..Default::default()
            }),
            redirect_rule(Condition {
                key_prefix: Some("a/".into()),
                ..Default::default()
            }),
        ];
        let h = HeaderMap::new();
        let probe = |status| Probe {
            key: "a/x",
            headers: &h,
            authority: None,
            status,
        };
        let (i, r, _) = first_match(&rules, &probe(None)).unwrap();
        assert_eq!(i, 1);
        assert!(r.condition.http_error_code.is_none());
        let (i, r, _) = first_match(&rules, &probe(Some(404))).unwrap();
        assert_eq!(i, 0);
        assert_eq!(r.condition.http_error_code, Some(404));
        assert!(first_match(&rules, &probe(Some(500))).is_none());
    }

    #[test]
    fn header_conditions() {
        let cond = Condition {
            include_headers: vec![HeaderCondition {
                name: "x-from".into(),
                test: HeaderTest::StartsWith("app".into()),
            }],
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        let probe = |h: &HeaderMap| {
            cond.matches(&Probe {
                key: "k",
                headers: h,
                authority: None,
                status: None,
            })
            .is_some()
        };
        assert!(!probe(&h));
        h.insert("x-from", "application".parse().unwrap());
        assert!(probe(&h));
    }

    #[test]
    fn rewrites() {
        let re = Regex::new("^images/(.*)\\.(jpg)$").unwrap();
        let cond = Condition {
            key_regex: Some(re),
            ..Default::default()
        };
        let h = HeaderMap::new();
        let caps = cond
            .matches(&Probe {
                key: "images/a b.jpg",
                headers: &h,
                authority: None,
                status: None,
            })
            .unwrap();
        let t = KeyRewrite::Template("img/$1.$2?${key}$x$".into());
        assert_eq!(
            t.apply("images/a b.jpg", &caps).unwrap(),
            "img/a b.jpg?images/a b.jpg$x$"
        );
        let p = KeyRewrite::Prefix {
            from: "old/".into(),
            to: "new/".into(),
        };
        assert_eq!(p.apply("old/x/y", &[]).unwrap(), "new/x/y");
    }

    #[test]
    fn rewritten_keys_are_checked_like_client_keys() {
        let dot = KeyRewrite::Prefix {
            from: "p".into(),
            to: ".".into(),
        };
        // `p./x` is a fine client key; rewritten it would climb a level.
        assert_eq!(dot.apply("p./x", &[]), Err(KeyError::DotSegment));
        // Empty segments and the empty key are S3 keys: the rewritten key
        // goes into an origin URL or a `Location`, whose authority is
        // already fixed (a site's root: `replace_key_with: ""`).
        let slash = KeyRewrite::Prefix {
            from: "img".into(),
            to: "x/".into(),
        };
        assert_eq!(slash.apply("img/a", &[]).unwrap(), "x//a");
        let t = KeyRewrite::Template("x\r\ny/${key}".into());
        assert_eq!(t.apply("k", &[]), Err(KeyError::Control));
        assert_eq!(
            KeyRewrite::Template(String::new()).apply("k", &[]).unwrap(),
            ""
        );
        // Untouched keys were checked on the way in.
        assert_eq!(dot.apply("q/x", &[]).unwrap(), "q/x");
        // A legal 1,024-byte key may grow past S3's bound under a longer
        // prefix (the origin need not be S3), up to twice it.
        let longer = KeyRewrite::Prefix {
            from: "rw/".into(),
            to: "rewritten/longer/prefix/".into(),
        };
        let key = format!("rw/{}", "a".repeat(1021));
        assert_eq!(longer.apply(&key, &[]).unwrap().len(), 1045);
        let thrice = KeyRewrite::Template("${key}${key}${key}".into());
        assert_eq!(thrice.apply(&key, &[]), Err(KeyError::TooLong));
    }
}
