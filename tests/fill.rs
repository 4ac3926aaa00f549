//! Shared fills (SPEC section 2, the fill issue): one origin fetch per
//! missing object whoever asks, Range on a miss, keep-alive, async mode, and
//! a slow bucket that must not slow the client. Real Garage, the fault-mode
//! origin, the real binary.

mod common;
use common::fill::*;
use common::http::{download_compare, Conn};
use common::*;
use std::time::Duration;

#[test]
fn herd_of_100_on_a_missing_8_mib_key_is_one_origin_get() {
    let h = herd("herd8", 8 << 20, 50, 50);
    println!(
        "100 clients x 8 MiB: {:?}, peak RSS growth {} MiB",
        h.elapsed, h.rss_growth_mib
    );
}

#[test]
fn range_on_a_miss_is_served_from_the_whole_fill() {
    const LEN: usize = 300_000;
    let b = garage().bucket("range");
    let o = Origin::start();
    let body = pattern(LEN, 21);
    let p = fill_proxy(&b, &o.url(), "", "");
    let unsatisfiable = format!("bytes={LEN}-");
    // (key name, Range, status, the bytes of the object expected back)
    type Case<'a> = (&'a str, &'a str, u16, Option<(usize, usize)>);
    let cases: [Case; 4] = [
        ("mid", "bytes=1000-1999", 206, Some((1000, 1999))),
        ("suffix", "bytes=-100", 206, Some((LEN - 100, LEN - 1))),
        ("beyond", &unsatisfiable, 416, None),
        ("two", "bytes=0-1,5-9", 200, Some((0, LEN - 1))),
    ];
    for (name, range, status, span) in cases {
        let key = format!("range/{name}.bin");
        let path = format!("/{key}");
        o.set(&path, Reply::ok(&body, "application/octet-stream"));
        let (head, got) = Conn::open(p.port).get(&path, &[("Range", range)]);
        assert_eq!(head.status, status, "{range}");
        if status == 416 {
            // S3's answer: InvalidRange in XML, with the object's length.
            let text = String::from_utf8(got.as_ref().unwrap().clone()).unwrap();
            assert!(text.contains("<Code>InvalidRange</Code>"), "{text}");
            let want = format!("bytes */{LEN}");
            assert_eq!(head.header("content-range"), Some(want.as_str()));
        }
        if let Some((a, z)) = span {
            let got = got.unwrap_or_else(|e| panic!("{range}: {e}"));
            assert!(
                got == body[a..=z],
                "{range}: wrong bytes ({} long)",
                got.len()
            );
            if status == 206 {
                let want = format!("bytes {a}-{z}/{LEN}");
                assert_eq!(head.header("content-range"), Some(want.as_str()), "{range}");
            }
            // As a hit says it: ranges of this object are served.
            assert_eq!(head.header("accept-ranges"), Some("bytes"), "{range}");
        }
        let seen: Vec<_> = o.seen().into_iter().filter(|s| s.target == path).collect();
        assert_eq!(seen.len(), 1, "{range}: origin GETs");
        assert_eq!(
            seen[0].header("range"),
            None,
            "{range}: Range reached the origin"
        );
        let outcome = p.write_back_outcome(&key);
        assert!(outcome.contains("write-back stored"), "{range}: {outcome}");
        assert!(b.get(&key).body == body, "{range}: stored object differs");
    }
}

#[test]
fn first_client_and_joiner_keep_their_connections() {
    const LEN: usize = 2 << 20;
    let b = garage().bucket("keepalive");
    let o = Origin::start();
    let body = pattern(LEN, 22);
    o.set(
        "/ka.bin",
        Reply::ok(&body, "application/octet-stream").gate_at(LEN as u64 / 2),
    );
    o.set("/second.bin", Reply::ok(&body[..5000], "text/plain"));
    let p = fill_proxy(&b, &o.url(), "", "");

    // The first client's response starts; the origin then waits at its gate.
    let mut first = Conn::open(p.port);
    first.send("/ka.bin", &[]);
    let h1 = first.head().unwrap();
    // A joiner while the fill is live.
    let mut joiner = Conn::open(p.port);
    joiner.send("/ka.bin", &[]);
    let h2 = joiner.head().unwrap();
    assert_eq!((h1.status, h2.status), (200, 200));
    assert_eq!(o.hits("/ka.bin"), 1, "the joiner did not join the fill");
    o.release();
    for (name, conn, head) in [("first", &mut first, &h1), ("joiner", &mut joiner, &h2)] {
        let mut got = Vec::new();
        conn.body(head, |b| got.extend_from_slice(b))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got == body, "{name}: body differs");
        assert!(!head.closes(), "{name}: Connection: close");
        // A second request on the same socket.
        let (h, again) = conn.get("/second.bin", &[]);
        assert_eq!(h.status, 200, "{name}: second request");
        assert!(again.unwrap() == body[..5000], "{name}: second body");
    }
    assert_eq!(o.hits("/ka.bin"), 1);
}

#[test]
fn origin_404_and_failure_answers_keep_the_connection() {
    let b = garage().bucket("errka");
    let o = Origin::start();
    o.set("/gone.bin", Reply::status(404));
    o.set("/broken.bin", Reply::status(500));
    o.set("/fine.bin", Reply::ok(b"fine", "text/plain"));
    let p = fill_proxy(&b, &o.url(), "", "");
    let mut c = Conn::open(p.port);
    for (path, status, code) in [
        ("/gone.bin", 404, "NoSuchKey"),
        ("/broken.bin", 424, "MirrorFailed"),
    ] {
        let (h, body) = c.get(path, &[]);
        let body = String::from_utf8(body.unwrap()).unwrap();
        assert_eq!(h.status, status, "{path}: {body}");
        assert!(body.contains(&format!("<Code>{code}</Code>")), "{body}");
        // The id in the body is this request's, as in the header and
        // in the proxy's own log line for the request.
        let id = h.header("x-amz-request-id").unwrap();
        assert!(
            body.contains(&format!("<RequestId>{id}</RequestId>")),
            "{body}"
        );
        p.wait_log(&format!("{id} fill key=\"{}\" joined=", &path[1..]));
        assert_eq!(h.header("content-type"), Some("application/xml"));
        assert_eq!(h.header("x-fill-outcome"), None);
        assert!(!h.closes(), "{path}: Connection: close");
    }
    // Still the same connection.
    let (h, body) = c.get("/fine.bin", &[]);
    assert_eq!(h.status, 200);
    assert_eq!(body.unwrap(), b"fine");
    assert_eq!(o.hits("/gone.bin"), 1);
    let line = p.wait_log("fill key=\"broken.bin\" joined=");
    assert!(line.contains("status=424"), "{line}");
}

#[test]
fn async_mode_redirects_to_the_origin_and_stores_in_the_background() {
    let b = garage().bucket("async");
    let o = Origin::start();
    let body = pattern(200_000, 23);
    o.set(
        "/dir/a%20b.bin",
        Reply::ok(&body, "application/octet-stream"),
    );
    let p = fill_proxy(&b, &o.url(), ", mode: async", "");
    let (head, _) = Conn::open(p.port).get("/dir/a%20b.bin", &[]);
    assert_eq!(head.status, 302);
    let want = format!("http://127.0.0.1:{}/dir/a%20b.bin", o.port);
    assert_eq!(head.header("location"), Some(want.as_str()));
    // No further client request: the fill stores the object by itself.
    wait_until("the object in the bucket", Duration::from_secs(60), || {
        b.exists("dir/a b.bin")
    });
    assert!(b.get("dir/a b.bin").body == body);
    assert_eq!(o.hits("/dir/a%20b.bin"), 1);
    assert!(p
        .write_back_outcome("dir/a b.bin")
        .contains("write-back stored"));
}

/// An async object larger than the spool budget: nobody reads it, so it
/// goes from the origin straight into the bucket (one origin GET). It was
/// never stored: the fill stopped at the header, waiting for a client
/// that would take the plain path, and async has none.
#[test]
fn async_mode_stores_an_object_the_spool_cannot_hold() {
    let b = garage().bucket("asyncbig");
    use base64::Engine;
    let o = Origin::start();
    let body = pattern(12 << 20, 41);
    o.set(
        "/big.bin",
        Reply::ok(&body, "application/octet-stream").gate_at(6 << 20),
    );
    // A Content-MD5 the body does not have: checked, never stored.
    let wrong = base64::engine::general_purpose::STANDARD.encode([0u8; 16]);
    o.set(
        "/bad.bin",
        Reply::ok(&body, "application/octet-stream").header("Content-MD5", &wrong),
    );
    let (_spool, spool_cfg) = spool_dir();
    let p = fill_proxy(
        &b,
        &o.url(),
        ", mode: async, check_md5: true",
        &format!("{spool_cfg}, max_spool_bytes: 1000"),
    );
    let (head, _) = Conn::open(p.port).get("/big.bin", &[]);
    assert_eq!(head.status, 302);
    // While it streams into the bucket, a GET is answered as the first
    // was: 302, no second origin GET (it was served through the proxy,
    // with an upload of its own).
    o.wait("half of it sent", |o| o.sent("/big.bin") >= 6 << 20);
    let (head, _) = Conn::open(p.port).get("/big.bin", &[]);
    assert_eq!(head.status, 302);
    o.release();
    let outcome = p.write_back_outcome("big.bin");
    assert!(outcome.contains("write-back stored"), "{outcome}");
    assert_eq!(b.stored_matches("big.bin", &body), Ok(()));
    assert_eq!(o.hits("/big.bin"), 1);
    // And now a hit.
    let (head, got) = Conn::open(p.port).get("/big.bin", &[]);
    assert_eq!(head.status, 200);
    assert!(got.unwrap() == body, "body differs");
    assert_eq!(o.hits("/big.bin"), 1);

    let (head, _) = Conn::open(p.port).get("/bad.bin", &[]);
    assert_eq!(head.status, 302);
    let outcome = p.write_back_outcome("bad.bin");
    assert!(outcome.contains("failed"), "{outcome}");
    assert!(!b.exists("bad.bin"));

    // A body of unknown length skips the spool too: a chunked body grows
    // its reservation past the budget, which a fill nobody reads must
    // not do (a 1000-byte budget held 60 MiB of spool).
    o.set(
        "/chunked.bin",
        Reply::ok(&body, "application/octet-stream").chunked(),
    );
    let (head, _) = Conn::open(p.port).get("/chunked.bin", &[]);
    assert_eq!(head.status, 302);
    let outcome = p.write_back_outcome("chunked.bin");
    assert!(outcome.contains("write-back stored"), "{outcome}");
    assert_eq!(b.stored_matches("chunked.bin", &body), Ok(()));
    p.wait_log("fill key=\"chunked.bin\": background fill streams to the bucket without a spool (a body of unknown length)");

    // An origin that breaks off: nothing stored, counted as the spool
    // path counts it (the origin failed; not `abandoned`).
    o.set(
        "/cut.bin",
        Reply::ok(&body, "application/octet-stream").truncate_at(1 << 20),
    );
    let (head, _) = Conn::open(p.port).get("/cut.bin", &[]);
    assert_eq!(head.status, 302);
    let outcome = p.write_back_outcome("cut.bin");
    assert!(outcome.contains("the origin fetch failed"), "{outcome}");
    assert!(!b.exists("cut.bin"));
}

/// The bucket takes 10 MB/s (a throttling relay in front of Garage's S3
/// port); the origin and the client are on loopback. Asserted by what had
/// reached the bucket when the client finished (not by the clock): with
/// fills about 1-2 MB of 64 MiB (debug build, busy cores); when the client
/// is held to the bucket's pace, most of it.
#[test]
fn slow_bucket_does_not_slow_the_client() {
    const LEN: u64 = 64 << 20;
    const RATE: u64 = 10_000_000;
    let g = garage();
    let b = g.bucket("slowbucket");
    let relay = Throttle::start(g.s3_port, RATE);
    let bucket_yaml = b.yaml_via(relay.port);
    let o = Origin::start();
    let src = source(LEN as usize, 24);
    o.set("/slow.bin", Reply::shared(&src));
    let p = Proxy::start_env(&yaml(&bucket_yaml, &o.url(), "", ""), &b.proxy_env());

    let d = download_compare(p.port, "/slow.bin", &src, None);
    let uploaded = relay.passed_up();
    let stored_yet = b.exists("slow.bin");
    println!("client done; {uploaded} bytes had gone to the bucket");
    assert_eq!(d.end, Ok(()));
    assert_eq!((d.len, d.differs_at), (LEN, None));
    // The client has it all while the bucket has at most half of it: the
    // client was not held to the bucket's pace.
    assert!(!stored_yet, "stored before the client finished");
    assert!(!p.log().contains("write-back stored key=\"slow.bin\""));
    assert!(
        uploaded < LEN / 2,
        "{uploaded} bytes had reached the bucket when the client finished"
    );
    let outcome = p.write_back_outcome("slow.bin");
    assert!(
        outcome.contains("write-back stored"),
        "{outcome}\n{}",
        p.log()
    );
    assert_eq!(b.stored_matches("slow.bin", &src), Ok(()));
    assert_eq!(o.hits("/slow.bin"), 1);
}

#[test]
fn bucket_404_that_raced_the_write_back_asks_the_bucket_again() {
    // Client B's bucket 404 is held back while client A's miss fills the
    // object and stores it; when B's 404 arrives, the object is in the
    // bucket and its fill is gone. B must read the bucket again, not
    // fetch the object from the origin a second time.
    let g = garage();
    let b = g.bucket("recheck");
    let gate = Gate::start(g.s3_port, "/late.bin HTTP/1.1");
    let bucket_yaml = b.yaml_via(gate.port);
    let o = Origin::start();
    let body = pattern(100_000, 41);
    o.set("/late.bin", Reply::ok(&body, "application/x-late"));
    let p = Proxy::start_env(&yaml(&bucket_yaml, &o.url(), "", ""), &b.proxy_env());

    let late = {
        let url = p.url("/late.bin");
        std::thread::spawn(move || {
            let r = client().get(url).send().unwrap();
            let etag = r.headers().get("etag").is_some();
            (r.status(), etag, r.bytes().unwrap().to_vec())
        })
    };
    gate.wait_holding();
    let r = client().get(p.url("/late.bin")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().unwrap().as_ref() == body.as_slice());
    assert!(p
        .write_back_outcome("late.bin")
        .contains("write-back stored"));
    gate.release();

    let (status, etag, got) = late.join().unwrap();
    assert_eq!(status, 200);
    assert!(got == body, "the late client's body differs");
    assert!(
        etag,
        "the late client's answer is not the bucket's (no ETag)"
    );
    assert_eq!(o.hits("/late.bin"), 1, "the origin was asked twice");
    p.wait_log("asking the bucket again");
}
