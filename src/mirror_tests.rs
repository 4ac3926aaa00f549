//! Unit tests of `mirror`: origin URLs, redirect targets, header policy.

use super::*;

fn base(s: &str) -> OriginUrl {
    crate::config::parse_origin_url(s).unwrap()
}

#[test]
fn builds_urls_without_resolving() {
    let t = origin_target(&base("http://www.example.com/dir1/"), "image/a b.jpg", None);
    assert_eq!(t.path_and_query, "/dir1/image/a%20b.jpg");
    // The tag encodes the URL as fetched, so decoding it once gives that URL.
    assert_eq!(
        oss_tag(&t.url),
        "MIRROR http%3A%2F%2Fwww.example.com%2Fdir1%2Fimage%2Fa%2520b.jpg"
    );
    let t = origin_target(&base("http://o:8080/"), "//evil.example/x", Some("a=1"));
    assert_eq!(t.authority, "o:8080");
    assert_eq!(t.path_and_query, "///evil.example/x?a=1");
}

#[test]
fn redirects() {
    let cur = origin_target(&base("http://o/"), "k", None);
    let r = redirect_target(&cur, "https://p:8443/x?y=1").unwrap();
    assert_eq!(
        (r.tls, r.port, r.path_and_query.as_str()),
        (true, 8443, "/x?y=1")
    );
    let r = redirect_target(&cur, "/other").unwrap();
    assert_eq!(
        (r.host.as_str(), r.path_and_query.as_str()),
        ("o", "/other")
    );
    assert!(redirect_target(&cur, "ftp://o/x").is_none());
    assert!(redirect_target(&cur, "http://user@p/x").is_none());
    // Relative references resolve against the URL that answered.
    let cur = origin_target(&base("http://o:8080/dir/"), "a/b.jpg", Some("q=1"));
    for (location, want) in [
        ("c.jpg", "http://o:8080/dir/a/c.jpg"),
        ("../x", "http://o:8080/dir/x"),
        ("?v=2", "http://o:8080/dir/a/b.jpg?v=2"),
        ("//cdn.example/x#frag", "http://cdn.example/x"),
        ("https://[::1]:8443/y", "https://[::1]:8443/y"),
    ] {
        let r = redirect_target(&cur, location).unwrap();
        assert_eq!(r.full_url(), want, "{location}");
    }
    for same in ["", " ", "#top"] {
        assert!(redirect_target(&cur, same).is_none(), "{same:?}");
    }
    let r = redirect_target(&cur, "//cdn.example/x").unwrap();
    assert_eq!((r.host.as_str(), r.port), ("cdn.example", 80));
    let r = redirect_target(&cur, "https://[::1]:8443/y").unwrap();
    assert_eq!(
        (r.host.as_str(), r.authority.as_str()),
        ("::1", "[::1]:8443")
    );
}

#[test]
fn header_policy() {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("authorization", "a"),
        ("cookie", "c"),
        ("x-custom", "x"),
        ("x-amz-date", "d"),
        ("accept", "*/*"),
    ] {
        h.insert(k, v.parse().unwrap());
    }
    let names = |p: &HeaderPolicy| -> Vec<String> {
        origin_request_headers(p, &h)
            .iter()
            .map(|(n, _)| n.to_string())
            .collect()
    };
    assert!(names(&HeaderPolicy::default()).is_empty());
    let pass = HeaderPolicy {
        pass: vec!["x-custom".into(), "authorization".into()],
        ..Default::default()
    };
    assert_eq!(names(&pass), vec!["x-custom"]);
    let all = HeaderPolicy {
        pass_all: true,
        remove: vec!["accept".into()],
        set: vec![("x-set".into(), "1".into())],
        ..Default::default()
    };
    assert_eq!(names(&all), vec!["x-custom", "x-set"]);
}

#[test]
fn pass_all_keeps_hop_by_hop_encoding_and_conditionals_back() {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("te", "trailers"),
        ("upgrade", "websocket"),
        ("accept-encoding", "gzip"),
        ("if-none-match", "\"e\""),
        ("if-modified-since", "Sat, 01 Jan 2000 00:00:00 GMT"),
        ("if-match", "*"),
        ("if-range", "\"e\""),
        ("x-custom", "x"),
    ] {
        h.insert(k, v.parse().unwrap());
    }
    let all = HeaderPolicy {
        pass_all: true,
        ..Default::default()
    };
    let names: Vec<String> = origin_request_headers(&all, &h)
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(names, vec!["x-custom"]);
}

#[test]
fn stored_headers_join_list_lines_and_normalize_expires() {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("cache-control", "public"),
        ("cache-control", "max-age=60"),
        ("content-type", "text/plain"),
        ("content-type", "text/html"),
        ("expires", "0"),
        ("set-cookie", "a=b"),
    ] {
        h.append(k, v.parse().unwrap());
    }
    assert_eq!(
        stored_headers(&h),
        vec![
            ("content-type".to_string(), "text/plain".to_string()),
            (
                "cache-control".to_string(),
                "public, max-age=60".to_string()
            ),
            (
                "expires".to_string(),
                "Thu, 01 Jan 1970 00:00:00 GMT".to_string()
            ),
        ]
    );
    // Any HTTP date form is stored as an IMF-fixdate.
    let mut h = HeaderMap::new();
    h.insert("expires", "Sunday, 06-Nov-94 08:49:37 GMT".parse().unwrap());
    assert_eq!(
        stored_headers(&h),
        vec![(
            "expires".to_string(),
            "Sun, 06 Nov 1994 08:49:37 GMT".to_string()
        )]
    );
}

#[test]
fn a_raw_utf8_disposition_is_stored_in_its_rfc8187_form() {
    let d = |raw: &str| {
        let mut h = HeaderMap::new();
        h.insert(
            "content-disposition",
            HeaderValue::from_bytes(raw.as_bytes()).unwrap(),
        );
        stored_headers(&h).into_iter().next().map(|(_, v)| v)
    };
    assert_eq!(
        d("attachment; filename=\"报告 1.pdf\"").as_deref(),
        Some("attachment; filename*=UTF-8''%E6%8A%A5%E5%91%8A%201.pdf")
    );
    // ASCII parameters stay as sent; a `;` inside quotes is not a split.
    assert_eq!(
        d("inline; name=\"a;b\"; filename=é.txt").as_deref(),
        Some("inline; name=\"a;b\"; filename*=UTF-8''%C3%A9.txt")
    );
    assert_eq!(
        d("attachment; filename=\"x.pdf\"").as_deref(),
        Some("attachment; filename=\"x.pdf\"")
    );
    // The sender's own extended form stands (no second `filename*`), and a
    // trailing `;` is no reason to drop the header.
    assert_eq!(
        d("attachment; filename=\"报告.pdf\"; filename*=UTF-8''%E6%8A%A5%E5%91%8A.pdf;").as_deref(),
        Some("attachment; filename*=UTF-8''%E6%8A%A5%E5%91%8A.pdf")
    );
    // Not UTF-8: left out, as before.
    let mut h = HeaderMap::new();
    h.insert(
        "content-disposition",
        HeaderValue::from_bytes(b"attachment; filename=\"\xff\"").unwrap(),
    );
    assert!(stored_headers(&h).is_empty());
}

#[test]
fn content_length_lists_of_one_value() {
    let cl = |v: &str| {
        let mut h = HeaderMap::new();
        h.insert("content-length", HeaderValue::from_str(v).unwrap());
        (content_length(&h), storable_framing(&h))
    };
    assert_eq!(cl("5000"), (Some(5000), true));
    assert_eq!(cl(" 5000 "), (Some(5000), true));
    assert_eq!(cl("5000, 5000"), (Some(5000), true));
    assert_eq!(cl("5000,5000,5000"), (Some(5000), true));
    assert_eq!(cl("5000, 5001"), (None, false));
    assert_eq!(cl("5000,"), (None, false));
    assert_eq!(cl(",5000"), (None, false));
    assert_eq!(cl("-1"), (None, false));
}
