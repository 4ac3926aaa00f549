//! The embedded local-disk bucket: a file put in its folder is served
//! through the same signed upstream path as a real bucket.

mod common;
use common::*;

#[test]
fn file_in_folder_is_served() {
    let data = tempfile::tempdir().unwrap();
    let folder = data.path().join("assets");
    std::fs::create_dir_all(folder.join("deep/dir")).unwrap();
    let body = pattern(300_000, 3);
    std::fs::write(folder.join("deep/dir/file name.bin"), &body).unwrap();
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: local\n    bucket: {{ local: \"{}\" }}\n",
        folder.display()
    );
    let proxy = Proxy::start(&yaml);
    let resp = client()
        .get(proxy.url("/deep/dir/file%20name.bin"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().unwrap().as_ref(), body.as_slice());
    let resp = client()
        .get(proxy.url("/deep/dir/missing.bin"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.text().unwrap().contains("<Code>NoSuchKey</Code>"));
}

/// `data/assets` is the bucket; `data/other` holds a secret, reachable
/// from the bucket folder through symlinks an operator left there.
struct Escape {
    data: tempfile::TempDir,
    abs: String,
    origin: Origin,
    proxy: Proxy,
}

fn escape_setup() -> Escape {
    let data = tempfile::tempdir().unwrap();
    let root = data.path().canonicalize().unwrap();
    let (assets, other) = (root.join("assets"), root.join("other"));
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("secret.txt"), "TOPSECRET").unwrap();
    std::os::unix::fs::symlink(&other, assets.join("out")).unwrap();
    std::os::unix::fs::symlink(other.join("secret.txt"), assets.join("s.txt")).unwrap();
    std::fs::write(assets.join("fine.txt"), "fine").unwrap();
    // Every key the origin knows is a miss the proxy would write back.
    let origin = Origin::start();
    let abs = root.display().to_string();
    for path in ["/out/new.txt", "/stored.txt"] {
        origin.set(path, Reply::ok(b"FROM-ORIGIN", "text/plain"));
    }
    origin.set(
        &format!("/{}/other/new.txt", abs.trim_start_matches('/')),
        Reply::ok(b"FROM-ORIGIN", "text/plain"),
    );
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: local\n    bucket: {{ local: \"{}\" }}\n    rules:\n      - mirror: {{ url: \"{}\" }}\n",
        assets.display(),
        origin.url()
    );
    let proxy = Proxy::start(&yaml);
    Escape {
        data,
        abs,
        origin,
        proxy,
    }
}

#[test]
fn keys_cannot_leave_the_bucket_folder() {
    let e = escape_setup();
    let abs = &e.abs;
    let rel = abs.trim_start_matches('/');
    // Reads: absolute keys, encoded slashes, dot segments in any
    // encoding, symlinks out of the folder.
    for path in [
        format!("/{abs}/other/secret.txt"),
        format!("/%2F{rel}/other/secret.txt"),
        format!("/%2f{rel}%2Fother%2Fsecret.txt"),
        "/..%2Fother/secret.txt".to_string(),
        "/%2e%2e/other/secret.txt".to_string(),
        "/%2E%2E%2Fother%2Fsecret.txt".to_string(),
        "/fine.txt/..%2F..%2Fother/secret.txt".to_string(),
        "/out/secret.txt".to_string(),
        "/s.txt".to_string(),
    ] {
        let (status, text) = raw_get(e.proxy.port, "e", &path);
        assert!(!text.contains("TOPSECRET"), "{path} read outside: {text}");
        assert!(
            [400, 403].contains(&status),
            "{path}: want a refusal, got {status}: {text}"
        );
    }
    // Writes: a miss on such a key must not store there either.
    for path in [
        format!("/{abs}/other/new.txt"),
        format!("/%2F{rel}/other/new.txt"),
        "/out/new.txt".to_string(),
    ] {
        let (status, text) = raw_get(e.proxy.port, "e", &path);
        assert!(
            [400, 403].contains(&status),
            "{path}: want a refusal, got {status}: {text}"
        );
    }
    // The folder still works, for reads and for write-back.
    let (status, text) = raw_get(e.proxy.port, "e", "/fine.txt");
    assert_eq!(status, 200, "{text}");
    let (status, _) = raw_get(e.proxy.port, "e", "/stored.txt");
    assert_eq!(status, 200);
    assert!(e
        .proxy
        .write_back_outcome("stored.txt")
        .contains("write-back stored"));
    let root = e.data.path();
    assert_eq!(
        std::fs::read(root.join("assets/stored.txt")).unwrap(),
        b"FROM-ORIGIN"
    );
    let others: Vec<_> = std::fs::read_dir(root.join("other"))
        .unwrap()
        .map(|d| d.unwrap().file_name())
        .collect();
    assert_eq!(others, vec!["secret.txt"], "written outside the folder");
    assert_eq!(e.origin.hits("/out/new.txt"), 0);
}

#[test]
fn each_local_bucket_has_its_own_root() {
    let data = tempfile::tempdir().unwrap();
    let origin = Origin::start();
    origin.set("/k.txt", Reply::ok(b"k", "text/plain"));
    let site = |name: &str| {
        format!(
            "  - name: {name}\n    hosts: [{name}]\n    bucket: {{ local: \"{}\" }}\n    rules:\n      - mirror: {{ url: \"{}\" }}\n",
            data.path().join(name).display(),
            origin.url()
        )
    };
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n{}{}",
        site("one"),
        site("two")
    );
    let p = Proxy::start(&yaml);
    assert_eq!(raw_get(p.port, "one", "/k.txt").0, 200);
    assert!(p.write_back_outcome("k.txt").contains("write-back stored"));
    assert!(data.path().join("one/k.txt").exists());
    // s3s-fs keeps metadata and temporary files in its root: each
    // bucket's own, never the shared parent (where one bucket's endpoint
    // could reach the other's folder).
    let loose: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".bucket-") || n.starts_with(".tmp."))
        .collect();
    assert!(loose.is_empty(), "metadata in the shared parent: {loose:?}");
    let meta = std::fs::read_dir(data.path().join(".one.origin-pull"))
        .unwrap()
        .filter(|d| {
            let name = d.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with(".bucket-")
        })
        .count();
    assert!(meta > 0, "the stored object's metadata is in its own root");
    // The stored copy keeps its tag (metadata found again on a hit).
    let (status, text) = raw_get(p.port, "one", "/k.txt");
    assert_eq!(status, 200);
    assert!(
        text.to_ascii_lowercase().contains("x-oss-tag: mirror"),
        "{text}"
    );
}

/// CPU time (clock ticks) used so far by the threads of `pid` named `name`.
fn thread_cpu_ticks(pid: u32, name: &str) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Fields after the `(comm)`: state is 3rd, utime 14th, stime 15th.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        total += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        total += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    total
}

fn set_nofile(pid: u32, limit: &str) {
    let out = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={limit}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "prlimit --nofile={limit}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn accept_loop_backs_off_when_out_of_file_descriptors() {
    let data = tempfile::tempdir().unwrap();
    let folder = data.path().join("assets");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("k.txt"), "k").unwrap();
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nthreads: 1\nsites:\n  - name: local\n    bucket: {{ local: \"{}\" }}\n",
        folder.display()
    );
    let p = Proxy::start(&yaml);
    let line = p.wait_log("embedded bucket `assets`");
    let port: u16 = line.rsplit(':').next().unwrap().trim().parse().unwrap();
    let pid = p.pid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    // The lowest free descriptor number: with the limit there, none is free.
    let fds: Vec<usize> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|d| d.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let open = (0..).find(|n| !fds.contains(n)).unwrap();
    // The soft limit only: it can go back up without privileges.
    let before = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap()
        .to_string();
    // No descriptor left: the kernel still completes our handshake, but
    // the bucket's accept() fails with EMFILE for as long as this lasts.
    set_nofile(pid, &format!("{open}:"));
    let _conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    p.wait_log("accept failed");
    // Measured over one second: a loop retrying at once would use about
    // all of it; backing off, almost none.
    let t0 = thread_cpu_ticks(pid, "local-bucket");
    std::thread::sleep(std::time::Duration::from_secs(1));
    let used = thread_cpu_ticks(pid, "local-bucket") - t0;
    set_nofile(pid, &format!("{before}:"));
    assert!(used < 30, "the accept loop spun: {used} ticks in 1 s");
    // Descriptors back: the bucket serves again.
    let (status, text) = raw_get(p.port, "e", "/k.txt");
    assert_eq!(status, 200, "{text}");
}

/// An origin's `Expires: 0` ("already expired", not a date) is stored as
/// the epoch, which says the same: the local bucket, like S3, takes
/// `Expires` as a timestamp and refused the whole write-back, so every
/// read went back to the origin.
#[test]
fn an_expires_that_is_not_a_date_does_not_stop_the_write_back() {
    let data = tempfile::tempdir().unwrap();
    let folder = data.path().join("assets");
    std::fs::create_dir_all(&folder).unwrap();
    let origin = Origin::start();
    let dated = "Wed, 21 Oct 2037 07:28:00 GMT";
    origin.set(
        "/zero.txt",
        Reply::ok(b"ZERO", "text/plain").header("Expires", "0"),
    );
    origin.set(
        "/dated.txt",
        Reply::ok(b"DATED", "text/plain").header("Expires", dated),
    );
    let proxy = Proxy::start(&mirror_yaml(&folder, &origin.url()));
    for (key, body) in [("zero.txt", "ZERO"), ("dated.txt", "DATED")] {
        let resp = client().get(proxy.url(&format!("/{key}"))).send().unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().unwrap(), body);
        let outcome = proxy.write_back_outcome(key);
        assert!(outcome.contains("write-back stored"), "{key}: {outcome}");
        assert_eq!(std::fs::read(folder.join(key)).unwrap(), body.as_bytes());
    }
    // The hits keep a real date, and "already expired".
    let resp = client().get(proxy.url("/dated.txt")).send().unwrap();
    assert_eq!(resp.headers()["expires"], dated);
    let resp = client().get(proxy.url("/zero.txt")).send().unwrap();
    assert_eq!(resp.headers()["expires"], "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(origin.hits("/dated.txt"), 1);
}

/// Keys the embedded bucket cannot hold as files are misses, never its
/// 500: a key naming a folder (`a` beside `a/b.txt`) is mirrored (not
/// stored), and a key too long for its metadata file name is served
/// with its headers every time, not stored without them.
#[test]
fn keys_that_cannot_be_files_are_served_from_the_origin() {
    let data = tempfile::tempdir().unwrap();
    let folder = data.path().join("assets");
    std::fs::create_dir_all(&folder).unwrap();
    let origin = Origin::start();
    // Over the 162 bytes a single PUT's metadata file name leaves for a
    // key in bucket "assets".
    let long = format!("gz/{}app.js", "assets-v2-00/".repeat(13));
    assert!(long.len() > 162 && long.len() < 200, "{}", long.len());
    origin.set(
        &format!("/{long}"),
        Reply::ok(b"GZIPPED", "application/javascript").header("Content-Encoding", "gzip"),
    );
    origin.set("/a/b.txt", Reply::ok(b"B", "text/plain"));
    origin.set("/a", Reply::ok(b"A", "text/plain"));
    let proxy = Proxy::start(&mirror_yaml(&folder, &origin.url()));
    for round in 0..2 {
        let resp = client().get(proxy.url(&format!("/{long}"))).send().unwrap();
        assert_eq!(resp.status(), 200, "round {round}");
        assert_eq!(resp.headers()["content-encoding"], "gzip", "round {round}");
        assert_eq!(resp.text().unwrap(), "GZIPPED");
        if round == 0 {
            let outcome = proxy.write_back_outcome(&long);
            assert!(outcome.contains("KeyTooLongError"), "{outcome}");
        }
    }
    assert_eq!(origin.hits(&format!("/{long}")), 2);
    assert!(!folder.join(&long).exists());

    let resp = client().get(proxy.url("/a/b.txt")).send().unwrap();
    assert_eq!(resp.text().unwrap(), "B");
    proxy.expect_stored("a/b.txt");
    let resp = client().get(proxy.url("/a")).send().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().unwrap(), "A");
    assert!(folder.join("a").is_dir());
    assert_eq!(origin.hits("/a"), 1);
}

/// One site on the embedded bucket in `folder`, every key mirrored from
/// `origin`.
fn mirror_yaml(folder: &std::path::Path, origin: &str) -> String {
    format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: local\n    bucket: {{ local: \"{}\" }}\n    rules:\n      - condition: {{ key_prefix: \"\" }}\n        mirror: {{ url: \"{origin}\" }}\n",
        folder.display()
    )
}
