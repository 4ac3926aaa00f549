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
    assert!(p.write_back_outcome("doc.pdf").contains("stored"));
    let stored = b.get("doc.pdf");
    assert_eq!(stored.headers["content-disposition"], disposition);
    check("a hit");
    assert_eq!(o.hits("/doc.pdf"), 1);
}
