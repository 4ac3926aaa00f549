//! One real Garage server per test binary (single node, free loopback
//! ports), with a read-write and a read-only key; a fresh bucket per test.

use super::net::{free_port, wait_for_port};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

pub struct Garage {
    /// The watchdog shell that owns the server process.
    _watchdog: std::process::Child,
    _dir: tempfile::TempDir,
    pub bin: PathBuf,
    pub config: PathBuf,
    pub s3_port: u16,
    pub web_port: u16,
    pub key_id: String,
    pub secret: String,
    pub ro_key_id: String,
    pub ro_secret: String,
}

pub fn garage() -> &'static Garage {
    static G: OnceLock<Garage> = OnceLock::new();
    G.get_or_init(Garage::start)
}

fn garage_bin() -> PathBuf {
    if let Ok(p) = std::env::var("GARAGE_BIN") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".local/garage/bin/garage")
}

impl Garage {
    fn start() -> Garage {
        let bin = garage_bin();
        assert!(
            bin.exists(),
            "Garage not found at {} (run scripts/install-garage.sh)",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let (rpc, s3, web, admin) = (free_port(), free_port(), free_port(), free_port());
        let secret: String = super::pattern(32, 7)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let d = dir.path().display();
        let config = dir.path().join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\n\
                 replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
                 [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                 root_domain = \".s3.garage.localhost\"\n\
                 [s3_web]\nbind_addr = \"127.0.0.1:{web}\"\nroot_domain = \".web.garage.localhost\"\n\
                 [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n"
            ),
        )
        .unwrap();
        // The server outlives no test process: a watchdog shell kills it
        // once this test binary exits, then removes its folder (statics
        // are never dropped, so the TempDir never is: each run left up to
        // 500 MB of bucket data behind).
        let script = format!(
            "\"$0\" -c \"$1\" server >\"$2\" 2>&1 & g=$!; \
             while kill -0 {me} 2>/dev/null && kill -0 $g 2>/dev/null; do sleep 0.5; done; \
             kill $g 2>/dev/null; wait $g 2>/dev/null; rm -rf \"$3\"",
            me = std::process::id()
        );
        let watchdog = Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg(&bin)
            .arg(&config)
            .arg(dir.path().join("garage.log"))
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start garage");
        assert!(
            wait_for_port(rpc, || true) && wait_for_port(s3, || true),
            "garage did not start"
        );
        let mut g = Garage {
            _watchdog: watchdog,
            _dir: dir,
            bin,
            config,
            s3_port: s3,
            web_port: web,
            key_id: String::new(),
            secret: String::new(),
            ro_key_id: String::new(),
            ro_secret: String::new(),
        };
        let id = g.cli(&["node", "id", "-q"]);
        let id = id.trim().split('@').next().unwrap().to_string();
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
        g.cli(&["layout", "apply", "--version", "1"]);
        (g.key_id, g.secret) = g.new_key("rw");
        (g.ro_key_id, g.ro_secret) = g.new_key("ro");
        g
    }

    /// Creates a key (no access to any bucket until allowed): (id, secret).
    pub fn new_key(&self, name: &str) -> (String, String) {
        let out = self.cli(&["key", "create", name]);
        let field = |label: &str| {
            out.lines()
                .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_string()))
                .unwrap_or_else(|| panic!("no {label} in: {out}"))
        };
        (field("Key ID:"), field("Secret key:"))
    }

    /// Runs a Garage CLI command, retrying briefly while the node settles.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut last = String::new();
        for _ in 0..50 {
            let out = Command::new(&self.bin)
                .arg("-c")
                .arg(&self.config)
                .args(args)
                .output()
                .unwrap();
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).to_string();
            }
            last = String::from_utf8_lossy(&out.stderr).to_string();
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("garage {args:?} failed: {last}");
    }

    /// A new, empty bucket that only this test uses.
    pub fn bucket(&'static self, tag: &str) -> TestBucket {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("t-{tag}-{}", N.fetch_add(1, Ordering::Relaxed));
        self.cli(&["bucket", "create", &name]);
        self.cli(&[
            "bucket", "allow", "--read", "--write", "--owner", &name, "--key", "rw",
        ]);
        self.cli(&["bucket", "allow", "--read", &name, "--key", "ro"]);
        TestBucket { name, garage: self }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Environment for a proxy using the read-write key.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
        ]
    }
}

pub struct TestBucket {
    pub name: String,
    pub garage: &'static Garage,
}

/// What a direct S3 read returned.
pub struct Object {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl TestBucket {
    fn s3(&self) -> (Bucket, Credentials) {
        let url = self.garage.endpoint().parse().unwrap();
        let b = Bucket::new(url, UrlStyle::Path, self.name.clone(), "garage").unwrap();
        (
            b,
            Credentials::new(self.garage.key_id.clone(), self.garage.secret.clone()),
        )
    }

    /// The `bucket:` section of a proxy config for this bucket, using the
    /// env variables OP_KEY / OP_SECRET (see `proxy_env`).
    pub fn yaml(&self) -> String {
        format!(
            "{{ endpoint: \"{}\", name: \"{}\", region: garage, access_key_id_env: OP_KEY, secret_access_key_env: OP_SECRET }}",
            self.garage.endpoint(),
            self.name
        )
    }

    /// [`Self::yaml`] with the bucket reached through a relay on `port`
    /// (one in front of Garage's S3 port).
    pub fn yaml_via(&self, port: u16) -> String {
        self.yaml()
            .replace(&self.garage.endpoint(), &format!("http://127.0.0.1:{port}"))
    }

    pub fn proxy_env(&self) -> [(&'static str, &'static str); 2] {
        [
            ("OP_KEY", self.garage.key_id.as_str()),
            ("OP_SECRET", self.garage.secret.as_str()),
        ]
    }

    pub fn put(&self, key: &str, body: &[u8], content_type: Option<&str>) {
        let (b, c) = self.s3();
        let url = b.put_object(Some(&c), key).sign(Duration::from_secs(600));
        let mut req = super::client().put(url).body(body.to_vec());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().unwrap();
        assert!(
            resp.status().is_success(),
            "put {key}: {}",
            resp.text().unwrap_or_default()
        );
    }

    /// PUT with extra headers (signed, e.g. `x-amz-meta-*`).
    pub fn put_with(&self, key: &str, body: &[u8], headers: &[(&str, &str)]) {
        let (b, c) = self.s3();
        let mut action = b.put_object(Some(&c), key);
        for (k, v) in headers {
            action.headers_mut().insert(k.to_string(), v.to_string());
        }
        let url = action.sign(Duration::from_secs(600));
        let mut req = super::client().put(url).body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().unwrap();
        assert!(
            resp.status().is_success(),
            "put {key}: {}",
            resp.text().unwrap_or_default()
        );
    }

    pub fn get(&self, key: &str) -> Object {
        let (b, c) = self.s3();
        let url = b.get_object(Some(&c), key).sign(Duration::from_secs(600));
        let resp = super::client().get(url).send().unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        Object {
            status,
            headers,
            body: resp.bytes().unwrap().to_vec(),
        }
    }

    /// Whether multipart upload `upload_id` of `key` is still open
    /// (ListParts answers; an aborted or completed one is `NoSuchUpload`).
    pub fn upload_open(&self, key: &str, upload_id: &str) -> bool {
        let (b, c) = self.s3();
        let url = b
            .list_parts(Some(&c), key, upload_id)
            .sign(Duration::from_secs(600));
        let status = super::client().get(url).send().unwrap().status().as_u16();
        assert!(matches!(status, 200 | 404), "ListParts answered {status}");
        status == 200
    }

    pub fn exists(&self, key: &str) -> bool {
        self.get(key).status == 200
    }

    /// Compares a stored object with `expected` as it streams in (no
    /// copy kept): Err says it is missing, or where it differs.
    pub fn stored_matches(&self, key: &str, expected: &[u8]) -> Result<(), String> {
        use std::io::Read;
        let (b, c) = self.s3();
        let url = b.get_object(Some(&c), key).sign(Duration::from_secs(600));
        let mut resp = super::client().get(url).send().unwrap();
        if resp.status() != 200 {
            return Err(format!("{key}: status {}", resp.status()));
        }
        let (mut off, mut buf) = (0usize, vec![0u8; 1 << 20]);
        loop {
            let k = resp.read(&mut buf).unwrap();
            if k == 0 {
                break;
            }
            if expected.get(off..off + k) != Some(&buf[..k]) {
                return Err(format!("{key}: differs in bytes {off}..{}", off + k));
            }
            off += k;
        }
        if off != expected.len() {
            return Err(format!("{key}: {off} bytes stored of {}", expected.len()));
        }
        Ok(())
    }
}
