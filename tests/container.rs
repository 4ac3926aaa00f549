//! The container pieces, as far as a machine without a Docker engine can
//! check them: the compose file and Dockerfiles hold together, the Garage
//! init script really sets up a bucket and key, and the binary serves from
//! an otherwise empty root holding only its libraries, config and CA bundle.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn read(p: &str) -> String {
    std::fs::read_to_string(repo(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

#[test]
fn compose_file_and_dockerfiles_hold_together() {
    let compose: serde_yaml::Value = serde_yaml::from_str(&read("docker/compose.yaml")).unwrap();
    let services = &compose["services"];
    for name in ["garage", "origin", "origin-pull"] {
        assert!(services[name].is_mapping(), "service {name} missing");
        assert!(
            services[name]["healthcheck"]["test"].is_sequence(),
            "{name}: no healthcheck"
        );
    }
    let op = &services["origin-pull"];
    let test: Vec<&str> = op["healthcheck"]["test"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        &test[..3],
        ["CMD", "/usr/local/bin/origin-pull", "healthcheck"]
    );
    // Liveness on the image config's admin port; readiness (503 while the
    // bucket is away or the process drains) is for load balancers.
    let image_conf: serde_yaml::Value =
        serde_yaml::from_str(&read("docker/origin-pull.yaml")).unwrap();
    let admin = image_conf["admin"]["listen"].as_str().unwrap();
    let port = admin.rsplit(':').next().unwrap();
    let health = format!("http://127.0.0.1:{port}/healthz");
    assert_eq!(test[3], health);
    assert!(read("docker/Dockerfile").contains(&format!("\"healthcheck\", \"{health}\"")));
    // Time to drain (shutdown_timeout_seconds, 300 by default), not 10 s.
    assert_eq!(op["stop_grace_period"].as_str(), Some("330s"));
    for dep in ["garage", "origin"] {
        assert_eq!(
            op["depends_on"][dep]["condition"].as_str(),
            Some("service_healthy")
        );
    }
    let context = repo("docker").join(op["build"]["context"].as_str().unwrap());
    assert!(context
        .join(op["build"]["dockerfile"].as_str().unwrap())
        .is_file());
    let garage_ctx = repo("docker").join(services["garage"]["build"]["context"].as_str().unwrap());
    for f in ["Dockerfile", "init.sh", "ready.sh", "garage.toml"] {
        assert!(garage_ctx.join(f).is_file(), "docker/garage/{f} missing");
    }
    let df = read("docker/Dockerfile");
    assert!(
        df.contains("AS build") && df.contains("COPY --from=build"),
        "not multi-stage"
    );
    assert!(df.contains("ENTRYPOINT [\"/usr/local/bin/origin-pull\"]"));
    assert!(df.contains("USER nonroot"));
    assert!(df.contains("COPY docker/origin-pull.yaml /etc/origin-pull/origin-pull.yaml"));
    // The image's config validates with the compose environment.
    let env = &services["origin-pull"]["environment"];
    let out = Command::new(binary())
        .args(["-t", "-c"])
        .arg(repo("docker/origin-pull.yaml"))
        .env_clear()
        .env(
            "AWS_ACCESS_KEY_ID",
            env["AWS_ACCESS_KEY_ID"].as_str().unwrap(),
        )
        .env(
            "AWS_SECRET_ACCESS_KEY",
            env["AWS_SECRET_ACCESS_KEY"].as_str().unwrap(),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs docker/garage/init.sh `setup` against the test Garage.
fn garage_init(bucket: &str, key: &str, secret: &str, ready: &Path) {
    let g = garage();
    let out = Command::new("sh")
        .arg(repo("docker/garage/init.sh"))
        .arg("setup")
        .env(
            "GARAGE",
            format!("{} -c {}", g.bin.display(), g.config.display()),
        )
        .env("BUCKET", bucket)
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("READY", ready)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "init.sh: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn garage_init_makes_a_bucket_and_key_origin_pull_can_use() {
    let (key, secret) = (
        "GK00112233445566778899aabb",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    );
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    garage_init("compose-assets", key, secret, &ready);
    garage_init("compose-assets", key, secret, &ready); // idempotent
    assert!(ready.exists());
    let origin = Origin::start();
    origin.set(
        "/hello.txt",
        Reply::ok(b"hello from the origin", "text/plain"),
    );
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: a\n    bucket: {{ endpoint: \"{}\", name: compose-assets, region: garage }}\n    rules:\n      - mirror: {{ url: \"{}\" }}\n",
        garage().endpoint(),
        origin.url()
    );
    let proxy = Proxy::start_env(
        &yaml,
        &[
            ("AWS_ACCESS_KEY_ID", key),
            ("AWS_SECRET_ACCESS_KEY", secret),
        ],
    );
    let get = || {
        client()
            .get(proxy.url("/hello.txt"))
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    assert_eq!(get(), "hello from the origin");
    proxy.write_back_outcome("hello.txt");
    assert_eq!(get(), "hello from the origin");
    assert_eq!(
        origin.hits("/hello.txt"),
        1,
        "second read came from the bucket"
    );
}

#[test]
fn the_binary_serves_from_a_root_with_only_its_libraries_config_and_ca_bundle() {
    assert!(
        Command::new("id").arg("-u").output().unwrap().stdout == b"0\n",
        "this test needs root (chroot); CI runs as root"
    );
    let bucket = garage().bucket("chroot");
    bucket.put(
        "in-bucket.txt",
        b"served from an empty root",
        Some("text/plain"),
    );
    let (port, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: [\"127.0.0.1:{port}\"]\nadmin: {{ listen: \"127.0.0.1:{admin}\" }}\nsites:\n  - name: s\n    bucket: {}\n",
            bucket.yaml()
        ),
    )
    .unwrap();
    let root = dir.path().join("root");
    let made = Command::new(repo("docker/rootfs.sh"))
        .arg(binary())
        .arg(&config)
        .arg(&root)
        .status()
        .unwrap();
    assert!(made.success());
    let in_root = |args: &[&str]| {
        let mut c = Command::new("/usr/sbin/chroot");
        c.arg(&root)
            .arg("/usr/local/bin/origin-pull")
            .args(args)
            .env_clear();
        for (k, v) in bucket.proxy_env() {
            c.env(k, v);
        }
        c
    };
    let mut server = in_root(&["-c", "/etc/origin-pull/origin-pull.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready_url = format!("http://127.0.0.1:{admin}/readyz");
    wait_until(
        "ready, checked from inside the root",
        Duration::from_secs(30),
        || {
            in_root(&["healthcheck", &ready_url])
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success()
        },
    );
    let body = client()
        .get(format!("http://127.0.0.1:{port}/in-bucket.txt"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(body, "served from an empty root");
    // A failed check says why (reqwest's own text alone, "error sending
    // request", did not tell a refused connection from a timeout).
    let out = in_root(&["healthcheck", &ready_url]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Connection refused"), "{stderr}");
}
