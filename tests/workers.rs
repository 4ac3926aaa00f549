//! Workers each listen on a socket of their own (`SO_REUSEPORT`), so the
//! kernel spreads connections between them.

mod common;
use common::*;

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
