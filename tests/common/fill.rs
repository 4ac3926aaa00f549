//! Helpers for the shared-fill tests: proxy configs with a `fill:` section,
//! the proxy's spool files and memory as /proc shows them, and the state of
//! the proxy's client sockets.

use super::{Proxy, TestBucket};
use std::path::{Path, PathBuf};

/// A proxy config: one site on `bucket_yaml`, one mirror rule to
/// `origin_url` (extra rule fields in `mirror_extra`, e.g. `, mode: async`)
/// and, unless `fill` is empty, `fill: { <fill> }`. The stall timeout is
/// long: tests hold the origin at gates while they set things up.
pub fn yaml(bucket_yaml: &str, origin_url: &str, mirror_extra: &str, fill: &str) -> String {
    let mut y = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: s\n    bucket: {bucket_yaml}\n    rules:\n      - condition: {{ key_prefix: \"\" }}\n        mirror: {{ url: \"{origin_url}\", timeout_seconds: 30 {mirror_extra} }}\n"
    );
    if !fill.is_empty() {
        y.push_str(&format!("fill: {{ {fill} }}\n"));
    }
    y
}

/// A proxy for `bucket` mirroring `origin_url` (see `yaml`).
pub fn fill_proxy(bucket: &TestBucket, origin_url: &str, mirror_extra: &str, fill: &str) -> Proxy {
    Proxy::start_env(
        &yaml(&bucket.yaml(), origin_url, mirror_extra, fill),
        &bucket.proxy_env(),
    )
}

/// The spool directory a proxy uses when the config names none.
pub fn default_spool_dir() -> PathBuf {
    std::env::temp_dir().join("origin-pull-spool")
}

/// A fresh spool directory and its `fill:` setting (canonical path, so it
/// matches what /proc shows).
pub fn spool_dir() -> (tempfile::TempDir, String) {
    let d = tempfile::tempdir().expect("spool dir");
    let path = d.path().canonicalize().unwrap().display().to_string();
    (d, format!("spool_dir: \"{path}\""))
}

/// Targets of `pid`'s open files under `dir` (spool files show as
/// `<dir>/... (deleted)`).
pub fn spool_fds(pid: u32, dir: &Path) -> Vec<String> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let prefix = format!("{}/", dir.display());
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| t.display().to_string())
        .filter(|t| t.starts_with(&prefix))
        .collect()
}

/// Peak resident memory of `pid` (VmHWM), KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Established connections to local `port` whose received bytes have all
/// been read by the server (rx_queue 0): once a client wrote its request,
/// this says the proxy took it in.
pub fn requests_taken(port: u16) -> usize {
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let want = format!(":{port:04X}");
    tcp.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 4
                && f[1].ends_with(&want)
                && f[3] == "01"
                && f[4]
                    .split(':')
                    .nth(1)
                    .is_some_and(|rx| u64::from_str_radix(rx, 16) == Ok(0))
        })
        .count()
}

/// What `herd` measured.
pub struct Herd {
    /// Peak RSS growth of the proxy over the herd, MiB (after a warm-up).
    pub rss_growth_mib: u64,
    pub elapsed: std::time::Duration,
}

/// `early + late` concurrent clients GET one missing key of `len` bytes.
/// The `early` ones ask before the origin sent anything (it holds its
/// header until the proxy has read all their requests); the `late` ones
/// ask once a quarter of the body went out (the origin then waits at a
/// gate until every client got part of the body, so all of them overlap
/// one fill). Asserts: 1 origin GET; every client got a valid 200 equal
/// to the source byte for byte (compared as it streams, no copies kept);
/// the stored object equals the source; the next GET is a bucket hit;
/// the spool file is gone afterwards.
pub fn herd(tag: &str, len: u64, early: usize, late: usize) -> Herd {
    use super::http::{download, download_compare, Progress};
    use super::*;
    use std::time::{Duration, Instant};

    let seed = 3;
    let b = garage().bucket(tag);
    let o = Origin::start();
    let p = fill_proxy(&b, &o.url(), "", "");
    o.set("/warm", Reply::shared(&source(1 << 20, 1)));
    assert_eq!(download(p.port, "/warm", &[], None).end, Ok(()));
    assert!(p.write_back_outcome("warm").contains("write-back stored"));
    let rss_before = peak_rss_kib(p.pid());
    let src = source(len as usize, seed);
    let start = Instant::now();

    let path = "/herd/object.bin";
    let key = "herd/object.bin";
    o.set(path, Reply::shared(&src).hold_header().gate_at(len / 4));
    let progress = Progress::many(early + late);
    let spawn = |i: usize| {
        let (progress, src, port) = (progress.clone(), src.clone(), p.port);
        std::thread::spawn(move || download_compare(port, path, &src, Some(&progress[i])))
    };
    let mut clients: Vec<_> = (0..early).map(spawn).collect();
    let minute = Duration::from_secs(60);
    wait_until("the origin GET", minute, || o.hits(path) >= 1);
    wait_until("the proxy to read every early request", minute, || {
        progress[..early].iter().all(|p| p.sent()) && requests_taken(p.port) >= early
    });
    assert_eq!(
        o.sent(path),
        0,
        "the origin sent body bytes before its header"
    );
    o.release_header();
    wait_until("a quarter of the body to go out", minute, || {
        o.sent(path) >= len / 4
    });
    clients.extend((early..early + late).map(spawn));
    wait_until("every client to get part of the body", minute * 3, || {
        progress.iter().all(|p| p.body() > 0)
    });
    o.release();

    for (i, c) in clients.into_iter().enumerate() {
        let d = c.join().unwrap();
        assert_eq!(d.head.status, 200, "client {i}");
        assert_eq!(d.end, Ok(()), "client {i}: body did not end validly");
        assert_eq!(
            (d.len, d.differs_at),
            (len, None),
            "client {i}: body differs"
        );
    }
    let elapsed = start.elapsed();
    assert_eq!(o.hits(path), 1, "origin GETs for {} clients", early + late);
    let outcome = p.write_back_outcome(key);
    assert!(outcome.contains("write-back stored"), "{outcome}");
    assert_eq!(b.stored_matches(key, &src), Ok(()), "stored object");
    let rss_growth_mib = (peak_rss_kib(p.pid()).saturating_sub(rss_before)) / 1024;

    let d = download_compare(p.port, path, &src, None);
    assert_eq!((d.head.status, d.len, d.differs_at), (200, len, None));
    assert_eq!(o.hits(path), 1, "the GET after the fill went to the origin");
    let spool = default_spool_dir();
    wait_until("the spool file to be closed", minute, || {
        spool_fds(p.pid(), &spool).is_empty()
    });
    Herd {
        rss_growth_mib,
        elapsed,
    }
}

/// `super::pattern(len, seed)` (same bytes), generated faster in a debug
/// build and shared: the source of a large object, its origin body and
/// what every client compares with.
pub fn source(len: usize, seed: u8) -> std::sync::Arc<Vec<u8>> {
    let mut v = vec![0u8; len];
    let mut x: u32 = 0x9E37_79B9 ^ seed as u32;
    for b in v.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    std::sync::Arc::new(v)
}

/// The `fill:` setting that sends every miss down the plain path (when
/// `plain`), or none: a spool directory under a regular file can't be
/// created, even by root, so misses fall back to Pingora's reroute with a
/// tee. Keep the returned file as long as the proxy.
pub fn plain_path_fill(plain: bool) -> (tempfile::NamedTempFile, String) {
    let not_a_dir = tempfile::NamedTempFile::new().expect("temp file");
    let fill = if plain {
        format!("spool_dir: \"{}/spool\"", not_a_dir.path().display())
    } else {
        String::new()
    };
    (not_a_dir, fill)
}
