//! Workers each listen on a socket of their own (`SO_REUSEPORT`), so the
//! kernel spreads connections between them.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn each_worker_has_its_own_listening_socket() {
    let data = tempfile::tempdir().unwrap();
    let bucket = data.path().join("workers");
    std::fs::create_dir_all(&bucket).unwrap();
    std::fs::write(bucket.join("k.txt"), b"hello").unwrap();
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nthreads: 3\nsites:\n  - name: s\n    bucket: {{ local: \"{}\" }}\n",
        bucket.display()
    );
    let p = Proxy::start(&yaml);
    // Every worker binds before the process serves, but the port accepts
    // as soon as the first did: wait for all three.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while listening_sockets(p.port) < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(listening_sockets(p.port), 3, "{}", p.log());
    for _ in 0..6 {
        let (status, text) = raw_get(p.port, "e", "/k.txt");
        assert_eq!(status, 200, "{text}");
        assert!(text.ends_with("hello"));
    }
}

/// Another process on the port: refused at start, naming the address.
/// With `SO_REUSEPORT` a second origin-pull joined the port silently (the
/// kernel split connections between two configurations); a holder without
/// it made Pingora retry for 30 s and end the worker while the process
/// stayed up and ready.
#[test]
fn a_port_another_process_listens_on_is_refused_at_start() {
    let data = tempfile::tempdir().unwrap();
    let bucket = data.path().join("taken");
    std::fs::create_dir_all(&bucket).unwrap();
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nthreads: 1\nsites:\n  - name: s\n    bucket: {{ local: \"{}\" }}\n",
        bucket.display()
    );
    let first = Proxy::start(&yaml);
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held = holder.local_addr().unwrap().port();
    for port in [first.port, held] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("second.yaml");
        std::fs::write(&path, yaml.replace("{port}", &port.to_string())).unwrap();
        let mut child = Killed(
            std::process::Command::new(binary())
                .arg("-c")
                .arg(&path)
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let child = &mut child.0;
        let mut exited = None;
        wait_until(
            "the second start to give up",
            Duration::from_secs(20),
            || {
                exited = child.try_wait().unwrap();
                exited.is_some()
            },
        );
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(exited.and_then(|s| s.code()), Some(1), "{port}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "cannot listen on 127.0.0.1:{port}: another process listens there"
            )),
            "{stderr}"
        );
    }
    // The admin port: named as such, and not sharable.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.yaml");
    let admin_taken = yaml.replace("{port}", &free_port().to_string()).replace(
        "threads: 1",
        &format!("threads: 1\nadmin: {{ listen: \"127.0.0.1:{held}\" }}"),
    );
    std::fs::write(&path, admin_taken).unwrap();
    let out = std::process::Command::new(binary())
        .args(["--share-port", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("admin.listen: another process listens there"),
        "{stderr}"
    );
    // A binary upgrade starts the new process beside the old one.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upgrade.yaml");
    std::fs::write(&path, yaml.replace("{port}", &first.port.to_string())).unwrap();
    let _second = Killed(
        std::process::Command::new(binary())
            .args(["--share-port", "-c"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the upgrade's socket", Duration::from_secs(20), || {
        listening_sockets(first.port) == 2
    });
}

/// Killed on drop, so a failed assertion leaves no process behind.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
