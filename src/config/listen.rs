//! `listen:` (SPEC 5): plain `"ip:port"` entries, or
//! `{ addr, tls: { certificates: [{ cert, key }], h2 } }` for HTTPS.
//! Certificate files are read here, during validation, so a missing file,
//! a key that is not the certificate's or an unparsable certificate fails
//! `origin-pull -t` and a reload, never a handshake (see `crate::edge_tls`).

use super::locate::FieldPath;
use super::{HostPattern, SiteConfig};
use crate::edge_tls::{CertSet, LoadedCert};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One `listen` entry as written.
#[derive(Debug)]
pub enum RawListen {
    Plain(String),
    Full(RawListenFull),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenFull {
    pub addr: String,
    /// `Some(None)`: `tls:` written with no value, which would otherwise
    /// read as absent and give a plain listener where HTTPS was meant.
    #[serde(default, deserialize_with = "present")]
    pub tls: Option<Option<RawListenTls>>,
}

/// A field that is there, even as `null`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenTls {
    pub certificates: Vec<RawCertFiles>,
    /// HTTP/2 by ALPN. On by default: a TLS edge is where browsers and
    /// CDNs expect h2 (nginx needs `http2 on`, Caddy and pingap offer it
    /// by default); `h2: false` keeps HTTP/1.1 only.
    pub h2: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertFiles {
    pub cert: String,
    pub key: String,
}

// A string or a mapping. Written by hand rather than `untagged` so that a
// mistake inside the mapping (an unknown field, a missing `key`) keeps
// serde_yaml's own message and position.
impl<'de> Deserialize<'de> for RawListen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawListen, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawListen;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an \"ip:port\" string or { addr, tls }")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawListen, E> {
                Ok(RawListen::Plain(s.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawListen, A::Error> {
                RawListenFull::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawListen::Full)
            }
        }
        d.deserialize_any(V)
    }
}

/// A validated listener.
#[derive(Debug, Clone)]
pub struct Listener {
    /// `ip:port`, as written.
    pub addr: String,
    /// `None`: plain HTTP/1.1.
    pub tls: Option<TlsListener>,
}

#[derive(Debug, Clone)]
pub struct TlsListener {
    pub h2: bool,
    pub files: Vec<CertFiles>,
    /// The certificates as read during validation; the first is the default.
    pub certs: Arc<CertSet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Listener {
    pub fn plain(addr: &str) -> Listener {
        Listener {
            addr: addr.to_string(),
            tls: None,
        }
    }
}

/// A field at fault, and why.
type Problem = (FieldPath, String);

/// The validated listeners, plus warnings (expired certificates), or the
/// first error. Relative file names resolve against `base`.
pub(super) fn validate(
    raw: &[RawListen],
    path: &FieldPath,
    base: &Path,
) -> Result<(Vec<Listener>, Vec<Problem>), Problem> {
    if raw.is_empty() {
        return Err((path.clone(), "needs at least one address".into()));
    }
    let (mut out, mut warnings) = (Vec::<Listener>::new(), Vec::new());
    for (i, entry) in raw.iter().enumerate() {
        let at = path.index(i);
        let (addr, addr_at, tls) = match entry {
            RawListen::Plain(a) => (a, at.clone(), None),
            RawListen::Full(f) => match &f.tls {
                Some(None) => {
                    return Err((
                        at.key("tls"),
                        "is empty: give `certificates`, or remove `tls` for plain HTTP".into(),
                    ))
                }
                tls => (
                    &f.addr,
                    at.key("addr"),
                    tls.as_ref().and_then(Option::as_ref),
                ),
            },
        };
        if addr.parse::<std::net::SocketAddr>().is_err() {
            return Err((addr_at, format!("`{addr}` is not an ip:port address")));
        }
        if out.iter().any(|l| &l.addr == addr) {
            return Err((addr_at, format!("`{addr}` is listed twice")));
        }
        let tls = tls
            .map(|t| tls_listener(t, &at.key("tls"), base, &mut warnings))
            .transpose()?;
        out.push(Listener {
            addr: addr.clone(),
            tls,
        });
    }
    Ok((out, warnings))
}

fn tls_listener(
    raw: &RawListenTls,
    path: &FieldPath,
    base: &Path,
    warnings: &mut Vec<Problem>,
) -> Result<TlsListener, Problem> {
    let list = path.key("certificates");
    if raw.certificates.is_empty() {
        return Err((list, "needs at least one { cert, key }".into()));
    }
    let now = std::time::SystemTime::now();
    let (mut files, mut loaded) = (Vec::new(), Vec::new());
    for (j, c) in raw.certificates.iter().enumerate() {
        let at = list.index(j);
        for (field, name) in [("cert", &c.cert), ("key", &c.key)] {
            if name.trim().is_empty() {
                return Err((at.key(field), "must name a PEM file".into()));
            }
        }
        let f = CertFiles {
            cert: base.join(&c.cert),
            key: base.join(&c.key),
        };
        let cert =
            LoadedCert::load(&f.cert, &f.key).map_err(|e| (at.key(e.field()), e.to_string()))?;
        if let Some(why) = cert.validity_problem(now) {
            warnings.push((
                at.key("cert"),
                format!("`{}` is {why}: clients will refuse it", f.cert.display()),
            ));
        }
        if cert.names.is_empty() {
            let role = if j == 0 {
                "it is served only as the default"
            } else {
                "no SNI will ever select it"
            };
            warnings.push((
                at.key("cert"),
                format!(
                    "`{}` has no DNS name in its subjectAltName; {role}",
                    f.cert.display()
                ),
            ));
        }
        files.push(f);
        loaded.push(cert);
    }
    let certs =
        CertSet::new(loaded).ok_or((list, "needs at least one { cert, key }".to_string()))?;
    Ok(TlsListener {
        h2: raw.h2.unwrap_or(true),
        files,
        certs: Arc::new(certs),
    })
}

/// Warnings for site host names that no certificate of a TLS listener
/// covers: clients reaching that site over that listener get the default
/// certificate and refuse it. `sites` is the `sites` list's path.
pub(super) fn coverage(
    listen: &[Listener],
    sites: &[SiteConfig],
    path: &FieldPath,
) -> Vec<Problem> {
    let mut out = Vec::new();
    for l in listen {
        let Some(tls) = &l.tls else { continue };
        for (i, s) in sites.iter().enumerate() {
            for (j, h) in s.hosts.iter().enumerate() {
                // A `*.suffix` host needs a `*.suffix` certificate name;
                // probing with one label under it checks exactly that.
                let (probe, shown) = match h {
                    HostPattern::Exact(n) => (n.clone(), n.clone()),
                    HostPattern::Suffix(sfx) => (format!("x{sfx}"), format!("*{sfx}")),
                };
                if !tls.certs.certs().iter().any(|c| c.covers(&probe)) {
                    out.push((
                        path.index(i).key("hosts").index(j),
                        format!(
                            "no certificate of TLS listener `{}` covers `{shown}`; its clients get the default certificate",
                            l.addr
                        ),
                    ));
                }
            }
        }
    }
    out
}

/// Ok when `new` listens exactly where `old` does (same addresses in the
/// same order, each plain or TLS as before, same `h2`): what a reload
/// can take without new sockets. Certificates may differ.
pub fn same_sockets(old: &[Listener], new: &[Listener]) -> Result<(), String> {
    let shape = |ls: &[Listener]| -> Vec<(String, Option<bool>)> {
        ls.iter()
            .map(|l| (l.addr.clone(), l.tls.as_ref().map(|t| t.h2)))
            .collect()
    };
    let (a, b) = (shape(old), shape(new));
    if a == b {
        return Ok(());
    }
    let show = |s: &[(String, Option<bool>)]| {
        s.iter()
            .map(|(addr, tls)| match tls {
                None => addr.clone(),
                Some(true) => format!("{addr} tls+h2"),
                Some(false) => format!("{addr} tls"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(format!("running: [{}], new: [{}]", show(&a), show(&b)))
}
