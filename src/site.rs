//! Site selection by `Host` (SPEC 1.1): exact names first, then the longest
//! matching `*.suffix`, then the default site (one without `hosts`).

use crate::config::HostPattern;
use std::collections::HashMap;

#[derive(Debug, Default, Clone)]
pub struct HostTable {
    exact: HashMap<String, usize>,
    /// `(".suffix", site)`, longest first so the most specific wins.
    suffixes: Vec<(String, usize)>,
    default: Option<usize>,
}

impl HostTable {
    /// `sites[i]` is the host list of site `i` (empty: the default site).
    /// Duplicates were already refused by config validation.
    pub fn new<'a>(sites: impl IntoIterator<Item = &'a [HostPattern]>) -> HostTable {
        let mut t = HostTable::default();
        for (i, hosts) in sites.into_iter().enumerate() {
            if hosts.is_empty() {
                t.default.get_or_insert(i);
            }
            for h in hosts {
                match h {
                    HostPattern::Exact(n) => {
                        t.exact.entry(n.clone()).or_insert(i);
                    }
                    HostPattern::Suffix(s) => t.suffixes.push((s.clone(), i)),
                }
            }
        }
        t.suffixes.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        t
    }

    /// The site index for a `Host` header value (port and trailing dot
    /// ignored, case-insensitive).
    pub fn select(&self, host: Option<&str>) -> Option<usize> {
        // One default site and no names (a single-bucket edge): nothing to
        // look up, and no lower-cased copy of the header to make.
        if self.exact.is_empty() && self.suffixes.is_empty() {
            return self.default;
        }
        let Some(name) = host.map(normalize) else {
            return self.default;
        };
        if let Some(i) = self.exact.get(name.as_ref()) {
            return Some(*i);
        }
        self.suffixes
            .iter()
            .find(|(s, _)| name.len() > s.len() && name.ends_with(s.as_str()))
            .map(|(_, i)| *i)
            .or(self.default)
    }
}

/// `Example.COM:8080` → `example.com`; `[::1]:80` → `[::1]`. Borrowed when
/// already lower case (the usual `Host`).
fn normalize(host: &str) -> std::borrow::Cow<'_, str> {
    let host = host.trim();
    let no_port = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let name = no_port.trim_end_matches('.');
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        name.to_ascii_lowercase().into()
    } else {
        name.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_order() {
        let a = vec![HostPattern::Exact("a.example.com".into())];
        let w = vec![HostPattern::Suffix(".cdn.example.com".into())];
        let w2 = vec![HostPattern::Suffix(".img.cdn.example.com".into())];
        let t = HostTable::new([a.as_slice(), w.as_slice(), w2.as_slice()]);
        assert_eq!(t.select(Some("A.Example.com:8080")), Some(0));
        assert_eq!(t.select(Some("x.cdn.example.com")), Some(1));
        assert_eq!(t.select(Some("x.img.cdn.example.com.")), Some(2));
        assert_eq!(t.select(Some("cdn.example.com")), None);
        assert_eq!(t.select(Some("other")), None);
        let d: Vec<HostPattern> = vec![];
        let t = HostTable::new([a.as_slice(), d.as_slice()]);
        assert_eq!(t.select(Some("other")), Some(1));
        assert_eq!(t.select(None), Some(1));
        assert_eq!(normalize("[::1]:80"), "[::1]");
    }
}
