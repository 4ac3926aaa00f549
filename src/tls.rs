//! Trust roots for every outgoing TLS connection: the one place that decides
//! which certificate authorities the proxy trusts.
//!
//! Two TLS clients talk to the same upstreams: Pingora's connector (bucket
//! reads, origin fetches) and reqwest (write-back, and the origin fetch
//! once it moves there). Left alone they disagree: Pingora loads the
//! platform store (honouring `SSL_CERT_FILE` / `SSL_CERT_DIR`), reqwest with
//! `rustls-tls` uses its bundled webpki roots. A bucket read could then
//! succeed while the write-back of the same bucket fails, or the reverse.
//! So both are fed from one [`TrustRoots`]: the platform store plus the
//! configured `tls.ca_file`s, nothing else.
//!
//! - Pingora: [`TrustRoots::pingora_ca`] goes in `PeerOptions::ca`. Without
//!   CA files it is `None`: the connector's own store is then exactly the
//!   platform store, loaded the same way as here. With CA files Pingora
//!   0.9 builds a root store and a client config from the list on every
//!   new connection (no TLS session resumption for such peers); pooled
//!   keep-alive connections make that rare on the hit path, but each miss
//!   drops its bucket connection (Pingora issue #866, README "Each miss
//!   costs one bucket connection"), so there a miss costs the next
//!   request one full handshake.
//! - reqwest: [`reqwest_client_builder`] (a rustls config with these roots,
//!   reqwest's bundled roots unused).
//! - Anything else speaking rustls: [`TrustRoots::client_config`].

use pingora::protocols::tls::CaType;
use pingora::utils::tls::WrappedX509;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read `{0}`: {1}")]
    Read(String, String),
    #[error("`{0}` holds no certificate (expected PEM `BEGIN CERTIFICATE` blocks)")]
    Empty(String),
    #[error("`{0}`: certificate #{1} is not usable as a trust root: {2}")]
    BadCert(String, usize, String),
}

/// A set of trusted roots: the platform store plus extra CA files.
/// Cheap to clone; equal when built from the same CA files holding the
/// same certificates.
#[derive(Clone)]
pub struct TrustRoots(Arc<Inner>);

struct Inner {
    ca_files: Vec<PathBuf>,
    /// A digest of what the CA files held when loaded: a reload that
    /// finds other certificates under the same paths (a rotated CA)
    /// builds new clients instead of keeping the old ones (`PartialEq`,
    /// asked on every miss: a digest, not a bundle's bytes, compared).
    digest: [u8; 16],
    store: Arc<RootCertStore>,
    /// The same certificates for Pingora's per-peer list, or `None` when
    /// there are no CA files (see the module notes).
    pingora: Option<Arc<CaType>>,
}

/// One root usable by both clients (kept only if both parsers accept it,
/// so the two stores hold the same certificates).
struct Root {
    der: CertificateDer<'static>,
}

impl TrustRoots {
    /// The platform store alone (what a config without `tls` gets). Loaded
    /// once per process: reading the system's CA folder takes milliseconds
    /// and every site and rule shares it.
    pub fn platform() -> TrustRoots {
        static PLATFORM: OnceLock<TrustRoots> = OnceLock::new();
        PLATFORM
            .get_or_init(|| {
                let roots = platform_roots();
                TrustRoots(Arc::new(Inner {
                    ca_files: Vec::new(),
                    digest: [0; 16],
                    store: Arc::new(store_of(roots)),
                    pingora: None,
                }))
            })
            .clone()
    }

    /// The platform store plus every certificate in `ca_files` (PEM). An
    /// unreadable file, a file without certificates or a certificate that
    /// is not a usable root is an error: a CA file that silently trusts
    /// nothing would fail only at the first upstream connection.
    pub fn load(ca_files: &[PathBuf]) -> Result<TrustRoots, TlsError> {
        if ca_files.is_empty() {
            return Ok(TrustRoots::platform());
        }
        let mut extra = Vec::new();
        for f in ca_files {
            extra.extend(read_ca_file(f)?);
        }
        let mut roots: Vec<&Root> = platform_roots().iter().collect();
        roots.extend(extra.iter());
        let pingora: Vec<WrappedX509> = roots
            .iter()
            .filter_map(|r| wrap(r.der.as_ref()).ok())
            .collect();
        Ok(TrustRoots(Arc::new(Inner {
            ca_files: ca_files.to_vec(),
            digest: digest(&extra),
            store: Arc::new(store_of(roots)),
            pingora: Some(Arc::from(pingora)),
        })))
    }

    /// The CA files beyond the platform store, as configured.
    pub fn ca_files(&self) -> &[PathBuf] {
        &self.0.ca_files
    }

    /// For `HttpPeer::options.ca`: `None` keeps Pingora's connector store,
    /// which is the platform store.
    pub fn pingora_ca(&self) -> Option<Arc<CaType>> {
        self.0.pingora.clone()
    }

    /// A rustls client config (TLS 1.2 and 1.3, no client certificate)
    /// that trusts exactly these roots.
    pub fn client_config(&self) -> rustls::ClientConfig {
        // The ring provider explicitly: Pingora installs ring as the
        // process default, but only once its first connector is built.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports rustls's default protocol versions")
            .with_root_certificates(self.0.store.clone())
            .with_no_client_auth()
    }
}

impl Default for TrustRoots {
    fn default() -> TrustRoots {
        TrustRoots::platform()
    }
}

impl PartialEq for TrustRoots {
    fn eq(&self, other: &TrustRoots) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.ca_files == other.0.ca_files && self.0.digest == other.0.digest)
    }
}

impl Eq for TrustRoots {}

impl std::fmt::Debug for TrustRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TrustRoots(platform + {:?}, {} roots)",
            self.0.ca_files,
            self.0.store.len()
        )
    }
}

/// MD5 over the certificates (length-prefixed): tells two loads of the
/// same files apart when their contents changed.
fn digest(certs: &[Root]) -> [u8; 16] {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    for c in certs {
        h.update((c.der.len() as u64).to_be_bytes());
        h.update(c.der.as_ref());
    }
    h.finalize().into()
}

/// What to do about a TLS failure whose text (`why`) names a cause users
/// meet when they trust a self-made certificate with `tls.ca_file`.
pub fn hint(why: &str) -> &'static str {
    if why.contains("CaUsedAsEndEntity") {
        // `openssl req -x509` marks its certificate CA:TRUE by default;
        // curl and nginx accept such a certificate as the server's own,
        // rustls (webpki) does not.
        "; the server's certificate is a CA certificate (basicConstraints CA:TRUE), \
         which is refused as a server's own: issue it with CA:FALSE (openssl: \
         -addext basicConstraints=critical,CA:FALSE), or sign it with a CA in ca_file"
    } else {
        ""
    }
}

/// A reqwest client builder whose TLS trusts exactly `roots`. Set the
/// rest (timeouts, pool, redirects) on the returned builder.
pub fn reqwest_client_builder(roots: &TrustRoots) -> reqwest::ClientBuilder {
    reqwest::Client::builder().use_preconfigured_tls(roots.client_config())
}

/// The platform's roots, read once (the same source as Pingora's default
/// connector: `rustls-native-certs`, which honours `SSL_CERT_FILE` and
/// `SSL_CERT_DIR`).
fn platform_roots() -> &'static [Root] {
    static ROOTS: OnceLock<Vec<Root>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let certs = match rustls_native_certs::load_native_certs() {
            Ok(c) => c,
            Err(e) => {
                log::warn!("cannot load the platform's CA certificates: {e}");
                Vec::new()
            }
        };
        let total = certs.len();
        let roots: Vec<Root> = certs.into_iter().filter_map(|der| root(der).ok()).collect();
        if roots.len() < total {
            log::warn!(
                "{} of the platform's {total} CA certificates are unusable and not trusted",
                total - roots.len()
            );
        }
        if roots.is_empty() {
            log::warn!(
                "no platform CA certificates found: https upstreams need `tls.ca_file` \
                 (or SSL_CERT_FILE)"
            );
        }
        roots
    })
}

fn read_ca_file(path: &Path) -> Result<Vec<Root>, TlsError> {
    let name = path.display().to_string();
    let pem = std::fs::read(path).map_err(|e| TlsError::Read(name.clone(), e.to_string()))?;
    let mut out = Vec::new();
    for (i, item) in rustls_pemfile::certs(&mut pem.as_slice()).enumerate() {
        let der = item.map_err(|e| TlsError::BadCert(name.clone(), i + 1, e.to_string()))?;
        out.push(root(der).map_err(|e| TlsError::BadCert(name.clone(), i + 1, e))?);
    }
    if out.is_empty() {
        return Err(TlsError::Empty(name));
    }
    Ok(out)
}

/// Checks `der` with both parsers that will see it: webpki (rustls's
/// root store, also used by Pingora at connect time) and x509-parser
/// (Pingora's `WrappedX509`, which would panic on what it can't parse).
fn root(der: CertificateDer<'static>) -> Result<Root, String> {
    RootCertStore::empty()
        .add(der.clone())
        .map_err(|e| e.to_string())?;
    wrap(der.as_ref())?;
    Ok(Root { der })
}

fn wrap(der: &[u8]) -> Result<WrappedX509, String> {
    WrappedX509::try_new(der.to_vec(), |raw| {
        x509_parser::parse_x509_certificate(raw)
            .map(|(_, cert)| cert)
            .map_err(|e| e.to_string())
    })
}

fn store_of<'a>(roots: impl IntoIterator<Item = &'a Root>) -> RootCertStore {
    let mut store = RootCertStore::empty();
    for r in roots {
        // Each was added to a store once already in `root`.
        let _ = store.add(r.der.clone());
    }
    store
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = TrustRoots::load(std::slice::from_ref(&missing)).unwrap_err();
        assert!(matches!(e, TlsError::Read(..)), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = TrustRoots::load(std::slice::from_ref(&empty)).unwrap_err();
        assert!(e.to_string().contains("empty.pem"), "{e}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = TrustRoots::load(std::slice::from_ref(&garbage)).unwrap_err();
        assert!(matches!(e, TlsError::BadCert(_, 1, _)), "{e}");
    }

    #[test]
    fn a_ca_file_reaches_both_clients() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, ca.pem()).unwrap();
        let roots = TrustRoots::load(std::slice::from_ref(&file)).unwrap();
        let platform = TrustRoots::platform();
        assert_eq!(roots.0.store.len(), platform.0.store.len() + 1);
        // Pingora's per-peer list holds exactly what reqwest trusts.
        assert_eq!(roots.pingora_ca().unwrap().len(), roots.0.store.len());
        assert_ne!(roots, platform);
        // reqwest takes the config (a rustls version mismatch would not).
        assert!(reqwest_client_builder(&roots).build().is_ok());
    }

    /// A CA rotated under the same path is another set of roots: a reload
    /// compared paths only, kept the fills' origin client built with the
    /// old CA and failed every https miss until a restart.
    #[test]
    fn roots_differ_when_a_ca_file_s_certificates_do() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        let ca = || {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.self_signed(&key).unwrap().pem()
        };
        std::fs::write(&file, ca()).unwrap();
        let first = TrustRoots::load(std::slice::from_ref(&file)).unwrap();
        assert_eq!(
            first,
            TrustRoots::load(std::slice::from_ref(&file)).unwrap()
        );
        std::fs::write(&file, ca()).unwrap();
        assert_ne!(
            first,
            TrustRoots::load(std::slice::from_ref(&file)).unwrap()
        );
    }

    #[test]
    fn a_ca_used_as_the_server_s_certificate_is_explained() {
        let why = "invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))";
        assert!(hint(why).contains("CA:FALSE"));
        assert_eq!(hint("connection refused"), "");
    }

    #[test]
    fn platform_roots_leave_pingora_on_its_own_store() {
        let p = TrustRoots::load(&[]).unwrap();
        assert!(p.pingora_ca().is_none());
        assert_eq!(p, TrustRoots::default());
    }
}
