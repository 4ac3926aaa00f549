//! A test PKI (a CA and a leaf for `localhost`, made fresh per test) and a
//! TLS-terminating relay that puts https in front of a plain loopback
//! server (Garage's S3 port, a test origin).

use std::net::{Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;

/// A CA whose certificate is written to `ca_file`, and a leaf certificate
/// it signed for the name `localhost` only (no IP address: a client that
/// connects by IP fails the check, as against a real https endpoint).
pub struct TestPki {
    dir: tempfile::TempDir,
    leaf_der: Vec<u8>,
    leaf_key_der: Vec<u8>,
}

impl TestPki {
    pub fn new() -> TestPki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "origin-pull test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");

        let leaf_key = KeyPair::generate().expect("leaf key");
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).expect("leaf params");
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_cert = leaf
            .signed_by(&leaf_key, &ca_cert, &ca_key)
            .expect("leaf certificate");

        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).expect("write ca.pem");
        TestPki {
            dir,
            leaf_der: leaf_cert.der().to_vec(),
            leaf_key_der: leaf_key.serialize_der(),
        }
    }

    /// A self-signed certificate for `localhost` marked CA:TRUE, used as
    /// the server's own and as the `ca_file` (what `openssl req -x509`
    /// makes by default).
    pub fn self_signed_ca_leaf() -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("write ca.pem");
        TestPki {
            dir,
            leaf_der: cert.der().to_vec(),
            leaf_key_der: key.serialize_der(),
        }
    }

    /// PEM file with the CA certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn server_config(&self) -> rustls::ServerConfig {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.leaf_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key_der.clone())),
            )
            .expect("server certificate")
    }
}

impl Default for TestPki {
    fn default() -> TestPki {
        TestPki::new()
    }
}

/// https on `port`, relayed as plain TCP to 127.0.0.1:`target`.
pub struct TlsRelay {
    pub port: u16,
    /// The SNI of every completed handshake, in order.
    handshakes: Arc<Mutex<Vec<String>>>,
    acceptor: Arc<Mutex<tokio_rustls::TlsAcceptor>>,
}

impl TlsRelay {
    pub fn start(target: u16, pki: &TestPki) -> TlsRelay {
        let v4 = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let port = v4.local_addr().expect("relay address").port();
        // `localhost` may resolve to ::1 first on some machines: listen
        // there too when the same port is free.
        let v6 = TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))).ok();
        let acceptor = Arc::new(Mutex::new(tokio_rustls::TlsAcceptor::from(Arc::new(
            pki.server_config(),
        ))));
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        for listener in std::iter::once(v4).chain(v6) {
            let acceptor = acceptor.clone();
            let seen = handshakes.clone();
            listener.set_nonblocking(true).expect("nonblocking");
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("relay runtime");
                rt.block_on(relay(listener, acceptor, target, seen));
            });
        }
        TlsRelay {
            port,
            handshakes,
            acceptor,
        }
    }

    /// Serves `pki`'s certificate from the next handshake on (a rotation).
    pub fn rotate(&self, pki: &TestPki) {
        *self.acceptor.lock().unwrap() =
            tokio_rustls::TlsAcceptor::from(Arc::new(pki.server_config()));
    }

    /// SNI names of the handshakes so far.
    pub fn handshakes(&self) -> Vec<String> {
        self.handshakes.lock().unwrap().clone()
    }
}

async fn relay(
    listener: TcpListener,
    acceptor: Arc<Mutex<tokio_rustls::TlsAcceptor>>,
    target: u16,
    seen: Arc<Mutex<Vec<String>>>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        let Ok((down, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.lock().unwrap().clone();
        let seen = seen.clone();
        tokio::spawn(async move {
            // A client that rejects our certificate ends here.
            let Ok(mut tls) = acceptor.accept(down).await else {
                return;
            };
            let sni = tls.get_ref().1.server_name().unwrap_or("").to_string();
            seen.lock().unwrap().push(sni);
            let Ok(mut up) = TcpStream::connect(("127.0.0.1", target)).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
        });
    }
}

/// `tls: { ca_file: ... }` for a config.
pub fn tls_yaml(ca_file: &Path) -> String {
    format!("tls: {{ ca_file: \"{}\" }}", ca_file.display())
}

/// A test CA that issues server certificates for any names, for the
/// edge TLS tests (origin-pull serving HTTPS).
pub struct TestCa {
    dir: tempfile::TempDir,
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "origin-pull edge test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = ca.self_signed(&key).expect("CA certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("write ca.pem");
        TestCa { dir, cert, key }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn ca_pem(&self) -> String {
        self.cert.pem()
    }

    /// Writes a leaf for `names` as `dir/stem.pem` and `dir/stem.key`.
    pub fn issue(&self, dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        self.issue_with(dir, stem, names, |_| {})
    }

    /// Like `issue`, with the leaf's parameters edited first (validity...).
    pub fn issue_with(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
        edit: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> (PathBuf, PathBuf) {
        use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair};
        let key = KeyPair::generate().expect("leaf key");
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("leaf params");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        edit(&mut p);
        let cert = p
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf certificate");
        let (c, k) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        // Written whole and renamed, as a certificate manager would: a
        // running server never sees half a file.
        for (path, text) in [(&c, cert.pem()), (&k, key.serialize_pem())] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).expect("write certificate");
            std::fs::rename(&tmp, path).expect("rename certificate");
        }
        (c, k)
    }
}

impl Default for TestCa {
    fn default() -> TestCa {
        TestCa::new()
    }
}
