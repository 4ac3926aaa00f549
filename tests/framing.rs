//! Origin bodies whose framing does not say where they end (SPEC section
//! 2: "A body without Content-Length or chunked framing is served, never
//! stored"), on both miss paths: a connection the origin drops early
//! would otherwise be stored as a whole object.

mod common;
use common::fill::*;
use common::http::Conn;
use common::*;

/// A miss answered by the origin with `reply` (a 100 kB body): the client
/// gets every byte, the write-back is skipped as unframed, the bucket
/// stays without the object. `plain`: the spool can't be used, so the
/// miss takes the plain (Pingora-proxied, tee) path instead of a fill.
fn served_not_stored(tag: &str, reply: fn(Reply) -> Reply, plain: bool) {
    let b = garage().bucket(tag);
    let o = Origin::start();
    let body = pattern(100_000, 41);
    let path = format!("/{tag}.bin");
    let key = format!("{tag}.bin");
    o.set(&path, reply(Reply::ok(&body, "application/octet-stream")));
    let (_spool, fill) = plain_path_fill(plain);
    let p = fill_proxy(&b, &o.url(), "", &fill);
    let (head, got) = Conn::open(p.port).get(&path, &[]);
    assert_eq!(head.status, 200);
    assert!(got.unwrap() == body, "body differs");
    if plain {
        p.wait_log("fill spool in");
    }
    let outcome = p.write_back_outcome(&key);
    assert!(outcome.contains("no length framing"), "{outcome}");
    assert_eq!(b.get(&key).status, 404, "stored an unframed body");
}

#[test]
fn unframed_body_on_a_fill_is_served_not_stored() {
    served_not_stored("unframed-fill", Reply::unframed, false);
}

#[test]
fn unframed_body_on_the_plain_path_is_served_not_stored() {
    served_not_stored("unframed-plain", Reply::unframed, true);
}

/// Another transfer coding before the chunking: the client library takes
/// off only the chunks, so the stored bytes would still be coded.
#[test]
fn gzip_chunked_body_is_served_not_stored() {
    served_not_stored(
        "gzip-chunked",
        |r| r.transfer_encoding("gzip, chunked"),
        false,
    );
}

/// The control: plain chunked framing is stored, on either path.
#[test]
fn chunked_body_is_stored_on_either_path() {
    for plain in [false, true] {
        let tag = if plain {
            "chunked-plain"
        } else {
            "chunked-fill"
        };
        let b = garage().bucket(tag);
        let o = Origin::start();
        let body = pattern(100_000, 42);
        o.set(
            "/c.bin",
            Reply::ok(&body, "application/octet-stream").transfer_encoding("chunked"),
        );
        let (_spool, fill) = plain_path_fill(plain);
        let p = fill_proxy(&b, &o.url(), "", &fill);
        let (head, got) = Conn::open(p.port).get("/c.bin", &[]);
        assert_eq!(head.status, 200);
        assert!(got.unwrap() == body, "body differs");
        let outcome = p.write_back_outcome("c.bin");
        assert!(outcome.contains("write-back stored"), "{plain}: {outcome}");
        assert!(b.get("c.bin").body == body);
    }
}

/// HTTP/1.1 pipelining (RFC 9112 §9.3.2; apt pipelines by default): a
/// hit, a miss (fill), a 404 and a 400 sent in one write are all
/// answered, in order, on the same connection. Pingora's default closed
/// the connection after the first answer.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let b = garage().bucket("pipelined");
    let o = Origin::start();
    let hit = pattern(5_000, 42);
    let miss = pattern(70_000, 43);
    b.put("hit.bin", &hit, None);
    o.set("/miss.bin", Reply::ok(&miss, "application/octet-stream"));
    o.set("/gone.bin", Reply::status(404));
    let p = fill_proxy(&b, &o.url(), "", "");
    let mut c = Conn::open(p.port);
    c.pipeline(&[
        "/hit.bin",
        "/miss.bin",
        "/gone.bin",
        "/a/%2e%2e/x",
        "/hit.bin",
    ]);
    let want: [(u16, Option<&[u8]>); 5] = [
        (200, Some(&hit)),
        (200, Some(&miss)),
        (404, None),
        (400, None),
        (200, Some(&hit)),
    ];
    for (i, (status, body)) in want.into_iter().enumerate() {
        let head = c
            .head()
            .unwrap_or_else(|e| panic!("response {i}: {e}\n{}", p.log()));
        assert_eq!(head.status, status, "response {i}");
        let mut got = Vec::new();
        c.body(&head, |d| got.extend_from_slice(d)).unwrap();
        if let Some(body) = body {
            assert!(got == body, "response {i}: body differs");
        }
    }
    assert!(!c.closed_within(std::time::Duration::from_millis(200)));
    assert_eq!(o.hits("/miss.bin"), 1);
}

/// An HTTP/1.0 client must not get chunked transfer coding (RFC 9112
/// §6.1): a chunked origin's body reaches it close-delimited, on either
/// miss path and on the hit afterwards (stored with a length); an HTTP/1.1
/// client still gets chunks.
#[test]
fn http10_clients_get_no_chunked_coding() {
    use std::io::{Read, Write};
    let b = garage().bucket("http10");
    let o = Origin::start();
    let body = pattern(150_000, 44);
    for plain in [false, true] {
        let path = format!("/c{plain}.bin");
        o.set(
            &path,
            Reply::ok(&body, "application/octet-stream").chunked(),
        );
        let (_spool, fill) = plain_path_fill(plain);
        let p = fill_proxy(&b, &o.url(), "", &fill);
        // A 1.1 client on the miss: chunked.
        let (head, got) = Conn::open(p.port).get(&path, &[]);
        assert!(head.chunked(), "plain={plain}");
        assert!(got.unwrap() == body);
        // A 1.0 client, on a second key's miss and then on the hit.
        let path10 = format!("/d{plain}.bin");
        o.set(
            &path10,
            Reply::ok(&body, "application/octet-stream").chunked(),
        );
        for round in ["miss", "hit"] {
            if round == "hit" {
                p.expect_stored(path10.trim_start_matches('/'));
            }
            let mut s = std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
                .unwrap();
            write!(s, "GET {path10} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let head = String::from_utf8_lossy(&all[..split]).to_ascii_lowercase();
            assert!(
                head.starts_with("http/1.1 200"),
                "{round} plain={plain}: {head}"
            );
            assert!(
                !head.contains("transfer-encoding"),
                "{round} plain={plain}: {head}"
            );
            assert!(
                &all[split + 4..] == body.as_slice(),
                "{round} plain={plain}: body differs"
            );
        }
    }
}
