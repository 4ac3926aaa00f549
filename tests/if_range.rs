//! `If-Range` (RFC 9110 13.1.5): a client resuming a download asks for the
//! rest only of the version it has; any other version comes whole. S3 has
//! no If-Range, so a range forwarded without its validator would splice
//! another version's bytes into the client's file.

mod common;
use common::fill::*;
use common::http::Conn;
use common::*;

/// `Range: bytes=100-199` under `If-Range: <if_range>`: the status and
/// whether the body is `want` (bodies are not printed when they differ).
fn ranged(p: &Proxy, path: &str, if_range: &str, want: &[u8]) -> (u16, bool) {
    let (head, body) =
        Conn::open(p.port).get(path, &[("Range", "bytes=100-199"), ("If-Range", if_range)]);
    (head.status, body.unwrap() == want)
}

#[test]
fn a_hit_gives_the_range_only_of_the_version_the_client_has() {
    let b = garage().bucket("ifrange-hit");
    let o = Origin::start();
    let p = fill_proxy(&b, &o.url(), "", "");
    let v1 = pattern(10_000, 1);
    b.put("f.bin", &v1, None);
    let first = b.get("f.bin");
    let etag = first.headers["etag"].to_str().unwrap().to_string();
    let date = first.headers["last-modified"].to_str().unwrap().to_string();
    // The same version, by entity tag or by date: the range.
    assert_eq!(ranged(&p, "/f.bin", &etag, &v1[100..200]), (206, true));
    assert_eq!(ranged(&p, "/f.bin", &date, &v1[100..200]), (206, true));
    // Another version's validators: the whole object.
    assert_eq!(
        ranged(&p, "/f.bin", "\"0123456789abcdef\"", &v1),
        (200, true)
    );
    assert_eq!(
        ranged(&p, "/f.bin", "Mon, 01 Jan 2001 00:00:00 GMT", &v1),
        (200, true)
    );
    // A weak tag never matches (If-Range compares strongly), nor does garbage.
    assert_eq!(ranged(&p, "/f.bin", &format!("W/{etag}"), &v1), (200, true));
    assert_eq!(ranged(&p, "/f.bin", "yesterday", &v1), (200, true));
    // Overwritten in the bucket: the client's tag now names an old
    // version, so the new one comes whole, not its bytes 100-199.
    let v2 = pattern(12_000, 2);
    b.put("f.bin", &v2, None);
    assert_eq!(ranged(&p, "/f.bin", &etag, &v2), (200, true));
    // The client's own If-Match still decides on its own.
    let (head, _) = Conn::open(p.port).get(
        "/f.bin",
        &[
            ("Range", "bytes=0-9"),
            ("If-Range", &etag),
            ("If-Match", &etag),
        ],
    );
    assert_eq!(head.status, 412);
    // Without If-Range, a range is a range.
    let (head, body) = Conn::open(p.port).get("/f.bin", &[("Range", "bytes=100-199")]);
    assert_eq!(head.status, 206);
    assert!(body.unwrap() == v2[100..200]);
    assert_eq!(o.hits("/f.bin"), 0);
}

#[test]
fn a_miss_under_if_range_gives_the_whole_object() {
    let b = garage().bucket("ifrange-miss");
    let o = Origin::start();
    let body = pattern(50_000, 3);
    o.set("/m.bin", Reply::ok(&body, "application/octet-stream"));
    let p = fill_proxy(&b, &o.url(), "", "");
    // The client's validator is of a version the bucket no longer has; a
    // fill's answer has no validator to match it.
    assert_eq!(
        ranged(&p, "/m.bin", "\"0123456789abcdef\"", &body),
        (200, true)
    );
    let outcome = p.write_back_outcome("m.bin");
    assert!(outcome.contains("write-back stored"), "{outcome}");
    assert_eq!(o.hits("/m.bin"), 1);
}

/// The embedded local bucket ignores If-Match: its 206 of another version
/// is caught on the answer (its ETag), and the whole object is sent.
#[test]
fn a_bucket_that_ignores_the_condition_is_caught_on_its_answer() {
    let data = tempfile::tempdir().unwrap();
    let folder = data.path().join("assets");
    std::fs::create_dir_all(&folder).unwrap();
    let v1 = pattern(10_000, 4);
    std::fs::write(folder.join("f.bin"), &v1).unwrap();
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: local\n    bucket: {{ local: \"{}\" }}\n",
        folder.display()
    );
    let p = Proxy::start(&yaml);
    let (head, _) = Conn::open(p.port).get("/f.bin", &[]);
    let etag = head.header("etag").expect("an ETag").to_string();
    assert_eq!(ranged(&p, "/f.bin", &etag, &v1[100..200]), (206, true));
    let v2 = pattern(12_000, 5);
    std::fs::write(folder.join("f.bin"), &v2).unwrap();
    assert_eq!(ranged(&p, "/f.bin", &etag, &v2), (200, true));
}
