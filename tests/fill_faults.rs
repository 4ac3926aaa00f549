//! Shared fills when things go wrong: clients leave, the origin breaks
//! mid-body, nobody is left to read, the spool budget is exhausted.

mod common;
use common::fill::*;
use common::http::{download, download_compare, Conn, Progress};
use common::*;
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn lone_client_leaves_and_the_object_is_still_stored() {
    const LEN: u64 = 4 << 20;
    let b = garage().bucket("leave");
    let o = Origin::start();
    let src = source(LEN as usize, 31);
    o.set("/leave.bin", Reply::shared(&src).gate_at(1 << 20));
    let p = fill_proxy(&b, &o.url(), "", "");
    let mut c = Conn::open(p.port);
    c.send("/leave.bin", &[]);
    assert_eq!(c.head().unwrap().status, 200);
    c.read_part(100_000);
    drop(c); // the only client goes away mid-body
    o.release();
    let outcome = p.write_back_outcome("leave.bin");
    assert!(
        outcome.contains("write-back stored"),
        "{outcome}\n{}",
        p.log()
    );
    assert_eq!(b.stored_matches("leave.bin", &src), Ok(()));
    assert_eq!(o.hits("/leave.bin"), 1);
    // The next GET is a bucket hit.
    let d = download_compare(p.port, "/leave.bin", &src, None);
    assert_eq!((d.head.status, d.len, d.differs_at), (200, LEN, None));
    assert_eq!(d.end, Ok(()));
    assert_eq!(o.hits("/leave.bin"), 1);
}

/// 10 clients attach to one fill (each has part of the body before the
/// origin, held at a gate, goes on), then the origin breaks the body.
fn failing_fill_reaches_every_waiter(tag: &str, reply: Reply, chunked: bool) {
    const LEN: u64 = 1 << 20;
    const WAITERS: usize = 10;
    let b = garage().bucket(tag);
    let o = Origin::start();
    let path = format!("/{tag}.bin");
    let key = format!("{tag}.bin");
    o.set(&path, reply.gate_at(256 << 10));
    let p = fill_proxy(&b, &o.url(), "", "");
    let progress = Progress::many(WAITERS);
    let clients: Vec<_> = (0..WAITERS)
        .map(|i| {
            let (progress, port, path) = (progress.clone(), p.port, path.clone());
            std::thread::spawn(move || download(port, &path, &[], Some(&progress[i])))
        })
        .collect();
    wait_until("every waiter to get part of the body", MINUTE, || {
        progress.iter().all(|p| p.body() > 0)
    });
    o.release();
    for (i, c) in clients.into_iter().enumerate() {
        let d = c.join().unwrap();
        assert_eq!(d.head.status, 200, "waiter {i}");
        assert!(
            d.end.is_err(),
            "waiter {i} got a clean end of body ({} bytes)",
            d.len
        );
        assert!(d.len < LEN, "waiter {i} got {} bytes", d.len);
        if chunked {
            assert!(
                d.head.content_length().is_none(),
                "waiter {i}: {:?}",
                d.head
            );
        } else if let Some(n) = d.head.content_length() {
            assert_eq!(n, LEN, "waiter {i}: announced length");
        }
    }
    assert_eq!(o.hits(&path), 1, "origin GETs for {WAITERS} waiters");
    p.wait_log(&format!("fill failed key={key:?}"));
    // The write-back started (the gate is past the first publish step)
    // and must end without storing.
    let outcome = p.write_back_outcome(&key);
    assert!(!outcome.contains("write-back stored"), "{outcome}");
    assert!(!b.exists(&key), "a broken body was stored");

    // The next GET starts a new fill.
    let good = source(LEN as usize, 32);
    o.set(&path, Reply::shared(&good));
    let d = download_compare(p.port, &path, &good, None);
    assert_eq!(d.end, Ok(()));
    assert_eq!((d.len, d.differs_at), (LEN, None));
    assert_eq!(o.hits(&path), 2);
    // (The failed fill's outcome came first: wait for this one's.)
    p.wait_log(&format!("write-back stored key={key:?}"));
}

#[test]
fn origin_truncating_a_sized_body_fails_every_waiter() {
    let reply = Reply::shared(&source(1 << 20, 33)).truncate_at(600_000);
    failing_fill_reaches_every_waiter("truncated", reply, false);
}

#[test]
fn origin_resetting_a_chunked_body_fails_every_waiter() {
    let reply = Reply::shared(&source(1 << 20, 34))
        .chunked()
        .reset_at(600_000);
    failing_fill_reaches_every_waiter("reset", reply, true);
}

#[test]
fn unattended_fill_beyond_the_bound_is_cancelled() {
    const LEN: u64 = 64 << 20;
    let b = garage().bucket("unattended");
    let o = Origin::start();
    o.set(
        "/un.bin",
        Reply::shared(&source(LEN as usize, 35)).gate_at(2 << 20),
    );
    let (spool, spool_cfg) = spool_dir();
    let fill = format!("{spool_cfg}, unattended_max_bytes: 1048576, unattended_grace_seconds: 1");
    let p = fill_proxy(&b, &o.url(), "", &fill);
    let mut c = Conn::open(p.port);
    c.send("/un.bin", &[]);
    assert_eq!(c.head().unwrap().status, 200);
    c.read_part(100_000);
    wait_until("a spool file under spool_dir", MINUTE, || {
        spool_fds(p.pid(), spool.path())
            .iter()
            .any(|f| f.ends_with(" (deleted)"))
    });
    drop(c); // 62 MiB left > unattended_max_bytes: cancelled after 1 s
    p.wait_log("fill cancelled key=\"un.bin\"");
    // Let the origin write again: its writes fail once the proxy dropped
    // the connection.
    o.release();
    o.wait("the origin to see its connection closed", |o| {
        o.closed_early("/un.bin") >= 1
    });
    wait_until("the spool file to be closed", MINUTE, || {
        spool_fds(p.pid(), spool.path()).is_empty()
    });
    let outcome = p.write_back_outcome("un.bin");
    assert!(!outcome.contains("write-back stored"), "{outcome}");
    assert!(!b.exists("un.bin"), "a cancelled fill was stored");
    assert_eq!(o.hits("/un.bin"), 1);
}

#[test]
fn exhausted_spool_budget_still_serves_and_stores() {
    let b = garage().bucket("budget");
    let o = Origin::start();
    let body = pattern(100_000, 36);
    o.set("/fb.bin", Reply::ok(&body, "application/octet-stream"));
    let (spool, spool_cfg) = spool_dir();
    let p = fill_proxy(
        &b,
        &o.url(),
        "",
        &format!("{spool_cfg}, max_spool_bytes: 1000"),
    );
    let (head, got) = Conn::open(p.port).get("/fb.bin", &[]);
    assert_eq!(head.status, 200);
    assert!(got.unwrap() == body, "body differs");
    p.wait_log("fill fallback key=\"fb.bin\"");
    let outcome = p.write_back_outcome("fb.bin");
    assert!(outcome.contains("write-back stored"), "{outcome}");
    assert!(b.get("fb.bin").body == body);
    assert!(spool_fds(p.pid(), spool.path()).is_empty());
}

/// The plain path's tee shares the request's worker thread with its
/// uploader: from an origin as fast as loopback, a 24 MiB object (three
/// multipart parts) outran the channel and was abandoned every time,
/// until the origin read was paced to the bucket.
#[test]
fn exhausted_spool_budget_stores_a_large_object_from_a_fast_origin() {
    let b = garage().bucket("budgetbig");
    let o = Origin::start();
    let body = pattern(24 << 20, 37);
    o.set("/big.bin", Reply::ok(&body, "application/octet-stream"));
    let (_spool, spool_cfg) = spool_dir();
    let p = fill_proxy(
        &b,
        &o.url(),
        "",
        &format!("{spool_cfg}, max_spool_bytes: 1000"),
    );
    let (head, got) = Conn::open(p.port).get("/big.bin", &[]);
    assert_eq!(head.status, 200);
    assert!(got.unwrap() == body, "body differs");
    p.wait_log("fill fallback key=\"big.bin\"");
    let outcome = p.write_back_outcome("big.bin");
    assert!(outcome.contains("write-back stored"), "{outcome}");
    assert_eq!(b.stored_matches("big.bin", &body), Ok(()));
    // The fill's GET stops at the header (the object cannot fit the
    // budget) and the plain path asks again.
    assert_eq!(o.hits("/big.bin"), 2);
}
