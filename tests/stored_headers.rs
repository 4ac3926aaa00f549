//! The origin headers stored with an object as a bucket keeps them: one
//! ASCII value per header. A list sent on several lines is joined, a raw
//! UTF-8 `Content-Disposition` takes its RFC 8187 form; before, the first
//! lost its other lines and the second was dropped, for the fill's
//! clients and for every later hit.

mod common;
use common::fill::*;
use common::http::Conn;
use common::*;

#[test]
fn list_lines_and_utf8_file_names_survive_the_bucket() {
    let b = garage().bucket("stored-hdrs");
    let o = Origin::start();
    o.set(
        "/doc.pdf",
        Reply::ok(b"%PDF", "application/pdf")
            .header("Cache-Control", "public")
            .header("Cache-Control", "max-age=60")
            .header("Content-Disposition", "attachment; filename=\"报告.pdf\""),
    );
    let p = fill_proxy(&b, &o.url(), "", "");
    let disposition = "attachment; filename*=UTF-8''%E6%8A%A5%E5%91%8A.pdf";
    let check = |what: &str| {
        let (head, body) = Conn::open(p.port).get("/doc.pdf", &[]);
        assert_eq!(head.status, 200, "{what}");
        assert_eq!(body.unwrap(), b"%PDF", "{what}");
        assert_eq!(
            head.header("cache-control"),
            Some("public, max-age=60"),
            "{what}"
        );
        assert_eq!(
            head.header("content-disposition"),
            Some(disposition),
            "{what}"
        );
    };
    check("the fill");
    assert!(p
        .write_back_outcome("doc.pdf")
        .contains("write-back stored"));
    let stored = b.get("doc.pdf");
    assert_eq!(stored.headers["content-disposition"], disposition);
    check("a hit");
    assert_eq!(o.hits("/doc.pdf"), 1);
}

/// A tab inside a stored header's value: Garage counts it as whitespace
/// when it checks the write-back's signature, aws-sigv4 does not, so
/// every write-back of such an object was refused (403) and it was
/// fetched from the origin on every request.
#[test]
fn a_tab_in_a_stored_header_does_not_break_the_write_back() {
    let b = garage().bucket("stored-tab");
    let o = Origin::start();
    o.set(
        "/t.txt",
        Reply::ok(b"tab", "text/plain").header("Cache-Control", "public,\tmax-age=60"),
    );
    let p = fill_proxy(&b, &o.url(), "", "");
    let (head, body) = Conn::open(p.port).get("/t.txt", &[]);
    assert_eq!(head.status, 200);
    assert_eq!(body.unwrap(), b"tab");
    assert!(p.write_back_outcome("t.txt").contains("write-back stored"));
    let stored = b.get("t.txt");
    assert_eq!(stored.body, b"tab");
    assert_eq!(stored.headers["cache-control"], "public, max-age=60");
}
