//! The certificates a TLS listener serves: each one loaded from a PEM
//! chain and a PEM key, checked (the key must match, the names come from
//! the certificate's own subjectAltName), and a set of them that picks
//! one by SNI.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a certificate/key pair can't be served. [`CertError::field`] says
/// which of the two config fields it is about.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read `{0}`: {1}")]
    ReadCert(String, String),
    #[error("cannot read `{0}`: {1}")]
    ReadKey(String, String),
    #[error("`{0}` holds no certificate (expected PEM `BEGIN CERTIFICATE` blocks)")]
    NoCert(String),
    #[error("`{0}`: the first certificate is not valid X.509: {1}")]
    BadCert(String, String),
    #[error("`{0}` holds no private key (expected a PEM `PRIVATE KEY` block)")]
    NoKey(String),
    #[error("`{0}`: unsupported private key: {1}")]
    BadKey(String, String),
    #[error("key `{key}` does not match certificate `{cert}`")]
    Mismatch { cert: String, key: String },
}

impl CertError {
    /// `cert` or `key`: the config field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            CertError::ReadCert(..) | CertError::NoCert(..) | CertError::BadCert(..) => "cert",
            _ => "key",
        }
    }
}

/// One certificate ready to serve.
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    pub cert_file: PathBuf,
    /// DNS names of the leaf's subjectAltName, lower-cased; wildcards
    /// keep their `*.` prefix.
    pub names: Vec<String>,
    /// Validity of the leaf, seconds since the epoch.
    pub not_before: i64,
    pub not_after: i64,
}

impl LoadedCert {
    /// Reads `cert` (the leaf first, then its chain) and `key` (PKCS#8,
    /// PKCS#1 or SEC1). The key must be the leaf's.
    pub fn load(cert: &Path, key: &Path) -> Result<LoadedCert, CertError> {
        let cname = cert.display().to_string();
        let kname = key.display().to_string();
        let pem =
            std::fs::read(cert).map_err(|e| CertError::ReadCert(cname.clone(), e.to_string()))?;
        let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| CertError::BadCert(cname.clone(), e.to_string()))?;
        let Some(leaf) = chain.first() else {
            return Err(CertError::NoCert(cname));
        };
        let (names, not_before, not_after) =
            leaf_facts(leaf).map_err(|e| CertError::BadCert(cname.clone(), e))?;
        let pem =
            std::fs::read(key).map_err(|e| CertError::ReadKey(kname.clone(), e.to_string()))?;
        let der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut pem.as_slice())
            .map_err(|e| CertError::BadKey(kname.clone(), e.to_string()))?
            .ok_or_else(|| {
                // An encrypted key is a PEM block rustls does not read:
                // "holds no private key" sent people looking elsewhere.
                if pem.windows(23).any(|w| w == b"ENCRYPTED PRIVATE KEY--") {
                    CertError::BadKey(
                        kname.clone(),
                        "it is encrypted; store it decrypted (`openssl pkey -in KEY -out PLAIN`) \
                         with permissions only the proxy's user can read"
                            .into(),
                    )
                } else {
                    CertError::NoKey(kname.clone())
                }
            })?;
        // The same provider Pingora installs for its listeners.
        let signing = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(der)
            .map_err(|e| CertError::BadKey(kname.clone(), e.to_string()))?;
        let certified = CertifiedKey::new(chain, signing);
        // Every key type ring loads can say its public key, so "unknown"
        // is a mismatch too: a pair we can't check is not served.
        if certified.keys_match().is_err() {
            return Err(CertError::Mismatch {
                cert: cname,
                key: kname,
            });
        }
        Ok(LoadedCert {
            key: Arc::new(certified),
            cert_file: cert.to_path_buf(),
            names,
            not_before,
            not_after,
        })
    }

    /// Why clients would refuse this certificate today, if they would:
    /// expired or not yet valid (a warning, not an error: clocks differ,
    /// and a renewal may be under way).
    pub fn validity_problem(&self, now: SystemTime) -> Option<String> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let when = |t: i64| {
            x509_parser::time::ASN1Time::from_timestamp(t)
                .map_or_else(|_| t.to_string(), |a| a.to_string())
        };
        if now > self.not_after {
            Some(format!("expired on {}", when(self.not_after)))
        } else if now < self.not_before {
            Some(format!("not valid before {}", when(self.not_before)))
        } else {
            None
        }
    }

    /// Whether this certificate is valid for `host` (a lower-cased DNS
    /// name): an exact name, or a `*.` name for its parent (one label, as
    /// clients check it).
    pub fn covers(&self, host: &str) -> bool {
        let parent = host.split_once('.').map(|(_, p)| p);
        self.names.iter().any(|n| match n.strip_prefix("*.") {
            Some(w) => parent == Some(w),
            None => n == host,
        })
    }
}

/// DNS subjectAltNames and validity of a leaf certificate.
fn leaf_facts(der: &CertificateDer<'_>) -> Result<(Vec<String>, i64, i64), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Some(san) = cert.subject_alternative_name().map_err(|e| e.to_string())? {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.trim_end_matches('.').to_ascii_lowercase());
            }
        }
    }
    let v = cert.validity();
    Ok((names, v.not_before.timestamp(), v.not_after.timestamp()))
}

/// A listener's certificates, the first being the default: what a
/// handshake without SNI, or with a name no certificate has, gets.
pub struct CertSet {
    certs: Vec<LoadedCert>,
    /// Exact name → index of the first certificate naming it.
    exact: HashMap<String, usize>,
    /// `example.com` for `*.example.com` → first certificate naming it.
    wildcard: HashMap<String, usize>,
}

impl CertSet {
    /// `None` for an empty list (config validation refuses those).
    pub fn new(certs: Vec<LoadedCert>) -> Option<CertSet> {
        if certs.is_empty() {
            return None;
        }
        let (mut exact, mut wildcard) = (HashMap::new(), HashMap::new());
        for (i, c) in certs.iter().enumerate() {
            for n in &c.names {
                // First listed wins a name two certificates share.
                match n.strip_prefix("*.") {
                    Some(w) => wildcard.entry(w.to_string()).or_insert(i),
                    None => exact.entry(n.clone()).or_insert(i),
                };
            }
        }
        Some(CertSet {
            certs,
            exact,
            wildcard,
        })
    }

    /// The certificate for a ClientHello's SNI: an exact name first, then
    /// a wildcard for the name's parent, then the default.
    pub fn pick(&self, sni: Option<&str>) -> &Arc<CertifiedKey> {
        &self.certs[self.index(sni)].key
    }

    fn index(&self, sni: Option<&str>) -> usize {
        let Some(name) = sni.map(|s| s.trim_end_matches('.').to_ascii_lowercase()) else {
            return 0;
        };
        if let Some(i) = self.exact.get(&name) {
            return *i;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .copied()
            .unwrap_or(0)
    }

    pub fn certs(&self) -> &[LoadedCert] {
        &self.certs
    }
}

impl std::fmt::Debug for CertSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.certs
                    .iter()
                    .map(|c| (c.cert_file.display().to_string(), &c.names)),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `names`, written as `stem.pem` and
    /// `stem.key` in `dir`.
    pub(crate) fn write_cert(dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn leaf_names(k: &CertifiedKey) -> Vec<String> {
        leaf_facts(&k.cert[0]).unwrap().0
    }

    #[test]
    fn picks_by_sni() {
        let d = tempfile::tempdir().unwrap();
        let load = |stem, names: &[&str]| {
            let (c, k) = write_cert(d.path(), stem, names);
            LoadedCert::load(&c, &k).unwrap()
        };
        let set = CertSet::new(vec![
            load("default", &["default.test"]),
            load("a", &["a.test", "*.wild.test"]),
            load("b", &["B.test"]),
            load("a2", &["a.test"]),
        ])
        .unwrap();
        let pick = |sni| leaf_names(set.pick(sni));
        assert_eq!(pick(Some("a.test")), ["a.test", "*.wild.test"]);
        assert_eq!(pick(Some("A.TEST.")), ["a.test", "*.wild.test"]);
        assert_eq!(pick(Some("b.test")), ["b.test"]);
        assert_eq!(pick(Some("x.wild.test")), ["a.test", "*.wild.test"]);
        // A wildcard covers one label, as clients check it.
        assert_eq!(pick(Some("y.x.wild.test")), ["default.test"]);
        assert_eq!(pick(Some("wild.test")), ["default.test"]);
        assert_eq!(pick(Some("unknown.test")), ["default.test"]);
        assert_eq!(pick(None), ["default.test"]);
        assert!(set.certs()[1].covers("x.wild.test"));
        assert!(!set.certs()[1].covers("wild.test"));
    }

    #[test]
    fn load_errors_name_the_field() {
        let d = tempfile::tempdir().unwrap();
        let (c, k) = write_cert(d.path(), "one", &["one.test"]);
        let (_, k2) = write_cert(d.path(), "two", &["two.test"]);
        let missing = d.path().join("missing.pem");
        let e = LoadedCert::load(&missing, &k).err().unwrap();
        assert_eq!(e.field(), "cert");
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let e = LoadedCert::load(&c, &missing).err().unwrap();
        assert_eq!(e.field(), "key");
        let e = LoadedCert::load(&k, &k).err().unwrap();
        assert!(matches!(e, CertError::NoCert(_)), "{e}");
        let e = LoadedCert::load(&c, &c).err().unwrap();
        assert!(matches!(e, CertError::NoKey(_)), "{e}");
        let e = LoadedCert::load(&c, &k2).err().unwrap();
        assert!(matches!(e, CertError::Mismatch { .. }), "{e}");
        assert_eq!(e.field(), "key");
        // An encrypted key says so (the body needs no real encryption:
        // rustls does not read the block at all).
        let enc = d.path().join("enc.key");
        std::fs::write(
            &enc,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = LoadedCert::load(&c, &enc).err().unwrap();
        assert_eq!(e.field(), "key");
        assert!(e.to_string().contains("it is encrypted"), "{e}");
    }

    #[test]
    fn validity() {
        let d = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["old.test".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2001, 1, 1);
        params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (d.path().join("c.pem"), d.path().join("k.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        let l = LoadedCert::load(&c, &k).unwrap();
        let why = l.validity_problem(SystemTime::now()).unwrap();
        assert!(why.contains("expired") && why.contains("2002"), "{why}");
        let then = UNIX_EPOCH + std::time::Duration::from_secs(978_307_200 - 1);
        assert!(l
            .validity_problem(then)
            .unwrap()
            .contains("not valid before"));
        let (c, k) = write_cert(d.path(), "now", &["now.test"]);
        let l = LoadedCert::load(&c, &k).unwrap();
        assert_eq!(l.validity_problem(SystemTime::now()), None);
    }
}
