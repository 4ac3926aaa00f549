//! Write-backs survive a bucket that fails in passing (`503 SlowDown`,
//! `500 InternalError`, a dropped connection): each request is sent again
//! from the fill's spool, the object is stored once, the origin is asked
//! once. Refusals are not retried. The bucket is Garage behind a relay
//! that answers chosen requests with an S3 error itself.

mod common;
use common::fill::{source, yaml};
use common::s3fault::{Fault, FaultyBucket};
use common::*;

fn fault(method: &'static str, has: &'static str, status: u16, code: &'static str) -> Fault {
    Fault {
        method,
        target_has: has,
        target_lacks: "",
        status,
        code,
        times: 1,
    }
}

/// A proxy mirroring `o` into `b`, with the bucket behind `faults`, and
/// its admin port.
fn proxy(b: &TestBucket, faults: &FaultyBucket, o: &Origin) -> (Proxy, u16) {
    let admin = free_port();
    let y = format!(
        "admin: {{ listen: \"127.0.0.1:{admin}\" }}\n{}",
        yaml(&b.yaml_via(faults.port), &o.url(), "", "")
    );
    (Proxy::start_env(&y, &b.proxy_env()), admin)
}

/// The value of the (unlabelled) counter `name` on the admin port.
fn counter(admin: u16, name: &str) -> String {
    let text = client()
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or("absent")
        .to_string()
}

#[test]
fn slow_down_on_a_put_is_retried_from_the_spool() {
    let g = garage();
    let b = g.bucket("retryput");
    // A SlowDown, then a connection closed without an answer. (A single
    // PUT's target has no query; the relay's probe reads are GETs.)
    let faults = FaultyBucket::start(
        g.s3_port,
        vec![
            fault("PUT", "/small.bin", 503, "SlowDown"),
            fault("PUT", "/small.bin", 0, ""),
        ],
    );
    let o = Origin::start();
    let body = pattern(300 << 10, 7);
    o.set("/small.bin", Reply::ok(&body, "application/octet-stream"));
    let (p, admin) = proxy(&b, &faults, &o);

    let r = client().get(p.url("/small.bin")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), &body[..]);
    p.expect_stored("small.bin");
    assert_eq!(b.stored_matches("small.bin", &body), Ok(()));
    let puts = faults.seen("PUT", "/small.bin");
    assert_eq!(
        puts.iter().map(|s| s.failed).collect::<Vec<_>>(),
        [true, true, false],
        "{puts:?}"
    );
    assert!(p.log().contains("PUT attempt 2/4 failed"), "{}", p.log());
    assert_eq!(o.hits("/small.bin"), 1);
    assert_eq!(counter(admin, "origin_pull_writeback_retries_total"), "2");
}

/// A 20 MiB object goes up in three parts. Parts 2 and 3 (the last, whose
/// end is checked again) fail once, and so does the completion: each is
/// sent again, the parts re-read from the spool at their offsets, and the
/// stored object is the origin's byte for byte.
#[test]
fn a_failed_part_and_completion_are_sent_again() {
    const LEN: usize = 20 << 20;
    let g = garage();
    let b = g.bucket("retryparts");
    let faults = FaultyBucket::start(
        g.s3_port,
        vec![
            fault("PUT", "partNumber=2&", 500, "InternalError"),
            fault("PUT", "partNumber=3&", 503, "SlowDown"),
            fault("POST", "uploadId=", 503, "SlowDown"),
        ],
    );
    let o = Origin::start();
    let src = source(LEN, 31);
    o.set("/parts.bin", Reply::shared(&src));
    let (p, admin) = proxy(&b, &faults, &o);

    let d = http::download_compare(p.port, "/parts.bin", &src, None);
    assert_eq!(d.end, Ok(()));
    assert_eq!((d.len, d.differs_at), (LEN as u64, None));
    p.expect_stored("parts.bin");
    assert_eq!(b.stored_matches("parts.bin", &src), Ok(()));
    let part2 = faults.seen("PUT", "partNumber=2&");
    assert_eq!(part2.len(), 2, "{part2:?}");
    assert_eq!(faults.seen("PUT", "partNumber=3&").len(), 2);
    let completes: Vec<_> = faults
        .seen("POST", "uploadId=")
        .into_iter()
        .map(|s| s.failed)
        .collect();
    assert_eq!(completes, [true, false]);
    assert_eq!(counter(admin, "origin_pull_writeback_retries_total"), "3");
    assert_eq!(o.hits("/parts.bin"), 1);
}

/// An origin without a length: the parts are sized as the spool fills and
/// streamed from it, so one failed in passing (here the second and the
/// last) is sent again from the spool too.
#[test]
fn a_chunked_origin_s_parts_are_retried_from_the_spool() {
    const LEN: usize = 20 << 20;
    let g = garage();
    let b = g.bucket("retrychunked");
    let faults = FaultyBucket::start(
        g.s3_port,
        vec![
            fault("PUT", "partNumber=2&", 503, "SlowDown"),
            fault("PUT", "partNumber=3&", 0, ""),
        ],
    );
    let o = Origin::start();
    let src = source(LEN, 9);
    o.set("/chunked.bin", Reply::shared(&src).chunked());
    let (p, admin) = proxy(&b, &faults, &o);

    let d = http::download_compare(p.port, "/chunked.bin", &src, None);
    assert_eq!(d.end, Ok(()));
    assert_eq!((d.len, d.differs_at), (LEN as u64, None));
    p.expect_stored("chunked.bin");
    assert_eq!(b.stored_matches("chunked.bin", &src), Ok(()));
    assert_eq!(faults.seen("PUT", "partNumber=2&").len(), 2);
    assert_eq!(faults.seen("PUT", "partNumber=3&").len(), 2);
    assert_eq!(counter(admin, "origin_pull_writeback_retries_total"), "2");
    assert_eq!(o.hits("/chunked.bin"), 1);
}

/// A small chunked body goes up in one PUT streamed from the spool, and
/// a PUT refused in passing is sent again from there.
#[test]
fn a_small_chunked_origin_s_put_is_retried() {
    let g = garage();
    let b = g.bucket("retrychunkedput");
    let faults = FaultyBucket::start(
        g.s3_port,
        vec![fault("PUT", "/small-chunked.bin", 503, "SlowDown")],
    );
    let o = Origin::start();
    let body = pattern(200 << 10, 5);
    o.set(
        "/small-chunked.bin",
        Reply::ok(&body, "text/plain").chunked(),
    );
    let (p, admin) = proxy(&b, &faults, &o);

    let r = client().get(p.url("/small-chunked.bin")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), &body[..]);
    p.expect_stored("small-chunked.bin");
    assert_eq!(b.stored_matches("small-chunked.bin", &body), Ok(()));
    assert_eq!(faults.seen("PUT", "/small-chunked.bin").len(), 2);
    assert_eq!(counter(admin, "origin_pull_writeback_retries_total"), "1");
}

/// A chunked origin that breaks off after the first part went up: the
/// upload is aborted, nothing is stored (never a partial object).
#[test]
fn a_chunked_origin_that_breaks_off_stores_nothing() {
    const LEN: usize = 20 << 20;
    let g = garage();
    let b = g.bucket("chunkedbreak");
    let faults = FaultyBucket::start(g.s3_port, vec![]);
    let o = Origin::start();
    let src = source(LEN, 12);
    o.set(
        "/broken.bin",
        Reply::shared(&src).chunked().reset_at(12 << 20),
    );
    let (p, _admin) = proxy(&b, &faults, &o);

    let d = http::download_compare(p.port, "/broken.bin", &src, None);
    assert!(d.end.is_err(), "a broken body ended cleanly");
    let outcome = p.write_back_outcome("broken.bin");
    assert!(!outcome.contains("write-back stored"), "{outcome}");
    // How far the upload got depends on when the break is seen (before
    // the first part was sized, or during or after its upload); whatever
    // was started is aborted, never completed.
    let created = faults.seen("POST", "?uploads").len();
    assert_eq!(faults.seen("DELETE", "uploadId=").len(), created);
    assert_eq!(faults.seen("POST", "uploadId=").len(), 0, "completed");
    assert_eq!(faults.seen("PUT", "partNumber=2&").len(), 0);
    assert!(!b.exists("broken.bin"));
}

/// A refusal stays a refusal: one PUT, no retry, nothing stored.
#[test]
fn refusals_are_not_retried() {
    let g = garage();
    let b = g.bucket("retryrefused");
    let refuse = Fault {
        times: 5,
        ..fault("PUT", "/refused.bin", 403, "AccessDenied")
    };
    let faults = FaultyBucket::start(g.s3_port, vec![refuse]);
    let o = Origin::start();
    let body = pattern(10 << 10, 3);
    o.set("/refused.bin", Reply::ok(&body, "text/plain"));
    let (p, admin) = proxy(&b, &faults, &o);

    let r = client().get(p.url("/refused.bin")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), &body[..]);
    let outcome = p.write_back_outcome("refused.bin");
    assert!(outcome.contains("write-back failed"), "{outcome}");
    assert!(outcome.contains("403"), "{outcome}");
    assert_eq!(faults.seen("PUT", "/refused.bin").len(), 1);
    assert!(!p.log().contains("retrying"), "{}", p.log());
    assert_eq!(counter(admin, "origin_pull_writeback_retries_total"), "0");
    assert!(!b.exists("refused.bin"));
}
