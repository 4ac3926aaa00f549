//! Helpers for the edge TLS tests: a proxy with a plain and a TLS
//! listener (certificates from a test CA), HTTPS clients that trust only
//! that CA, and a raw handshake that reports the certificate served.

use super::tls::TestCa;
use super::{free_port, Origin, Proxy};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The names the test certificates are for, resolved to the proxy.
pub const NAMES: [&str; 4] = ["default.test", "a.test", "b.test", "x.b.test"];

/// A proxy serving a local bucket with a mirror rule to `origin`, on a
/// plain port and a TLS port (`proxy.port`).
pub struct Edge {
    pub ca: TestCa,
    pub certs: tempfile::TempDir,
    pub data: tempfile::TempDir,
    pub origin: Origin,
    pub plain: u16,
    /// The admin listener (`/metrics`).
    pub admin: u16,
    pub proxy: Proxy,
}

impl Edge {
    /// Certificates: `default` (default.test, the first, so the default),
    /// `a` (a.test), `b` (b.test and *.b.test). `threads` workers.
    pub fn start(threads: usize) -> Edge {
        Edge::start_env(threads, &[])
    }

    /// [`Edge::start`] with extra environment (e.g. `RUST_LOG`).
    pub fn start_env(threads: usize, env: &[(&str, &str)]) -> Edge {
        let ca = TestCa::new();
        let certs = tempfile::tempdir().expect("cert dir");
        ca.issue(certs.path(), "default", &["default.test"]);
        ca.issue(certs.path(), "a", &["a.test"]);
        ca.issue(certs.path(), "b", &["b.test", "*.b.test"]);
        let data = tempfile::tempdir().expect("data dir");
        std::fs::create_dir_all(data.path().join("edge")).expect("bucket dir");
        let origin = Origin::start();
        let (plain, admin) = (free_port(), free_port());
        let yaml = edge_yaml(certs.path(), data.path(), &origin.url(), plain, threads);
        let yaml = format!("admin: {{ listen: \"127.0.0.1:{admin}\" }}\n{yaml}");
        let proxy = Proxy::start_env(&yaml, env);
        Edge {
            ca,
            certs,
            data,
            origin,
            plain,
            admin,
            proxy,
        }
    }

    /// The bucket's folder.
    pub fn bucket(&self) -> std::path::PathBuf {
        self.data.path().join("edge")
    }

    /// `https://<name>:<tls port><path>`.
    pub fn url(&self, name: &str, path: &str) -> String {
        format!("https://{name}:{}{path}", self.proxy.port)
    }

    /// A client trusting only the test CA; HTTP/2 by ALPN unless `h1`.
    pub fn client(&self, h1: bool) -> reqwest::blocking::Client {
        let ca = reqwest::Certificate::from_pem(self.ca.ca_pem().as_bytes()).expect("CA");
        let mut b = reqwest::blocking::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60));
        for n in NAMES {
            b = b.resolve(n, SocketAddr::from(([127, 0, 0, 1], self.proxy.port)));
        }
        if h1 {
            b = b.http1_only();
        }
        b.build().expect("https client")
    }
}

/// The proxy config `Edge` runs (`{port}` is the TLS port).
pub fn edge_yaml(certs: &Path, data: &Path, origin: &str, plain: u16, threads: usize) -> String {
    let c = |stem: &str| {
        format!(
            "{{ cert: \"{0}/{stem}.pem\", key: \"{0}/{stem}.key\" }}",
            certs.display()
        )
    };
    format!(
        "listen:\n  - \"127.0.0.1:{plain}\"\n  - addr: \"127.0.0.1:{{port}}\"\n    tls:\n      h2: true\n      certificates:\n        - {}\n        - {}\n        - {}\nthreads: {threads}\nsites:\n  - name: s\n    bucket: {{ local: \"{}/edge\" }}\n    rules:\n      - condition: {{ key_prefix: \"byhost/\", include_headers: [{{ key: host, starts_with: a.test }}] }}\n        redirect: {{ host: a-site.example }}\n      - condition: {{ key_prefix: \"old/\" }}\n        redirect: {{ replace_key_prefix_with: \"new/\" }}\n      - condition: {{ key_prefix: \"moved/\", http_error_code: 404 }}\n        redirect: {{ host: elsewhere.example }}\n      - condition: {{ key_prefix: \"\" }}\n        mirror: {{ url: \"{origin}\", timeout_seconds: 30 }}\n",
        c("default"),
        c("a"),
        c("b"),
        data.display()
    )
}

/// What one TLS handshake with the proxy came to.
pub struct Handshake {
    /// DNS subjectAltNames of the leaf served.
    pub names: Vec<String>,
    pub alpn: Option<Vec<u8>>,
}

/// A handshake on `port` with SNI `sni` (`None`: no SNI, as when a client
/// connects by IP). With `ca` the chain and name are verified against it;
/// without, any certificate is taken (to see what an unknown name gets).
pub fn handshake(port: u16, sni: Option<&str>, ca: Option<&TestCa>) -> Result<Handshake, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let mut config = match ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            let pem = ca.ca_pem();
            for c in rustls_pemfile::certs(&mut pem.as_bytes()) {
                roots.add(c.expect("CA pem")).expect("CA root");
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_string()).map_err(|e| e.to_string())?,
        None => ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let conn = tls.get_ref().1;
        let leaf = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or("no peer certificate")?;
        Ok(Handshake {
            names: san_names(leaf.as_ref()),
            alpn: conn.alpn_protocol().map(|p| p.to_vec()),
        })
    })
}

/// DNS subjectAltNames of a DER certificate.
pub fn san_names(der: &[u8]) -> Vec<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("x509");
    let Some(san) = cert.subject_alternative_name().expect("SAN") else {
        return vec![];
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

/// Takes any certificate (signatures are still checked).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
