//! What reaches the origin (SPEC section 2): rewritten keys are checked,
//! client headers filtered, the rule's headers stay with the configured
//! origin; and answered requests are not errors in the log.

mod common;
use common::fill::{fill_proxy, plain_path_fill};
use common::*;

#[test]
fn a_hop_to_another_origin_carries_none_of_the_rule_headers() {
    let b = garage().bucket("hop-hdrs");
    let o = Origin::start();
    let other = Origin::start_on("127.0.0.2");
    let elsewhere = format!("http://127.0.0.2:{}/final", other.port);
    o.set("/away", Reply::status(302).header("Location", &elsewhere));
    o.set(
        "/here",
        Reply::status(302).header("Location", "/final-here"),
    );
    o.set("/final-here", Reply::ok(b"same origin", "text/plain"));
    other.set("/final", Reply::ok(b"other origin", "text/plain"));
    let extra = ", headers: { pass: [x-custom], set: { authorization: \"Bearer secret\" } }";
    let p = mirror_proxy(&b, &o.url(), extra);
    let get = |path: &str| {
        let r = client()
            .get(p.url(path))
            .header("x-custom", "mine")
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };

    assert_eq!(get("/away"), (200, "other origin".to_string()));
    let first = o.seen().into_iter().find(|s| s.target == "/away").unwrap();
    assert_eq!(first.header("authorization"), Some("Bearer secret"));
    assert_eq!(first.header("x-custom"), Some("mine"));
    let hop = &other.seen()[0];
    assert_eq!(hop.target, "/final");
    assert!(
        hop.header("authorization").is_none(),
        "credentials followed the hop"
    );
    assert!(hop.header("x-custom").is_none());

    // A hop on the same origin keeps them.
    assert_eq!(get("/here"), (200, "same origin".to_string()));
    let same = o
        .seen()
        .into_iter()
        .find(|s| s.target == "/final-here")
        .unwrap();
    assert_eq!(same.header("authorization"), Some("Bearer secret"));
    assert_eq!(same.header("x-custom"), Some("mine"));
    assert!(p.write_back_outcome("away").contains("write-back stored"));
}

#[test]
fn rewritten_keys_are_checked_before_the_origin() {
    let b = garage().bucket("rewrite");
    let o = Origin::start();
    o.set("/dir/.x", Reply::ok(b"fine", "text/plain"));
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: s\n    bucket: {}\n    rules:\n      - condition: {{ key_prefix: \"p\" }}\n        mirror: {{ url: \"{url}dir/\", replace_key_prefix_with: \".\" }}\n      - condition: {{ key_regex: \"^r(.*)$\" }}\n        mirror: {{ url: \"{url}dir/\", replace_key_with: \"$1\" }}\n",
        b.yaml(),
        url = o.url()
    );
    let p = Proxy::start_env(&yaml, &b.proxy_env());
    // `p./secret` → `../secret`: a fine key that the rule turns into a
    // climb out of `dir/`.
    let (status, text) = raw_get(p.port, "e", "/p./secret");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("<Code>InvalidURI</Code>"), "{text}");
    assert!(o.seen().is_empty(), "the origin was asked: {:?}", o.seen());
    // A rewrite that stays valid still mirrors.
    let (status, text) = raw_get(p.port, "e", "/px");
    assert_eq!(status, 200, "{text}");
    assert_eq!(o.seen()[0].target, "/dir/.x");
    // `r/x` → `/x`: an empty segment stays inside `dir/` (S3 keys may
    // have them), so the origin is asked for `dir//x`.
    let (status, _) = raw_get(p.port, "e", "/r/x");
    assert_eq!(status, 404);
    assert_eq!(o.seen()[1].target, "/dir//x");
}

#[test]
fn pass_all_keeps_hop_by_hop_encoding_and_conditionals() {
    let b = garage().bucket("passall");
    let o = Origin::start();
    o.set("/k", Reply::ok(b"x", "text/plain"));
    let p = mirror_proxy(&b, &o.url(), ", headers: { pass_all: true }");
    let (status, text) = raw_request(
        p.port,
        "GET /k HTTP/1.1\r\nHost: e\r\nConnection: close, x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nAccept-Encoding: gzip, br\r\nIf-None-Match: \"abc\"\r\nIf-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\nIf-Match: *\r\nX-Custom: yes\r\n\r\n",
    );
    assert_eq!(status, 200, "{text}");
    let s = &o.seen()[0];
    assert_eq!(s.header("x-custom"), Some("yes"));
    for h in [
        "x-hop",
        "keep-alive",
        "te",
        "accept-encoding",
        "if-none-match",
        "if-modified-since",
        "if-match",
    ] {
        assert!(s.header(h).is_none(), "{h} reached the origin: {s:?}");
    }
}

#[test]
fn answered_requests_are_not_logged_as_errors() {
    let b = garage().bucket("quiet");
    let o = Origin::start();
    o.set("/gone", Reply::status(404));
    o.set("/e500", Reply::status(500));
    let p = mirror_proxy(&b, &o.url(), ", follow_redirect: false");
    assert_eq!(raw_get(p.port, "e", "/gone").0, 404);
    assert_eq!(raw_get(p.port, "e", "/e500").0, 424);
    // Pingora logs its error line before the logging phase writes ours,
    // so once both mirror lines are there, any ERROR line would be too.
    p.wait_log("fill key=\"gone\"");
    p.wait_log("fill key=\"e500\"");
    let log = p.log();
    assert!(
        !log.lines().any(|l| l.contains("ERROR")),
        "answers logged as errors:\n{log}"
    );
}

/// An origin's `Location` is resolved against the URL that answered, as
/// browsers and curl do: a relative path and a scheme-relative URL
/// (`//host/path`, which names another origin) alike. On the fill and on
/// the plain path.
#[test]
fn relative_and_scheme_relative_locations_are_followed() {
    for plain in [false, true] {
        let b = garage().bucket(if plain { "loc-plain" } else { "loc-fill" });
        let o = Origin::start();
        let other = Origin::start();
        o.set("/dir/a.bin", Reply::status(302).header("Location", "b.bin"));
        let away = format!("//127.0.0.1:{}/c.bin", other.port);
        o.set("/dir/b.bin", Reply::status(302).header("Location", &away));
        other.set("/c.bin", Reply::ok(b"from the other origin", "text/plain"));
        let (_spool, fill) = plain_path_fill(plain);
        let p = fill_proxy(&b, &o.url(), "", &fill);
        let r = client().get(p.url("/dir/a.bin")).send().unwrap();
        assert_eq!(r.status(), 200, "plain: {plain}");
        assert_eq!(r.text().unwrap(), "from the other origin");
        assert!(p
            .write_back_outcome("dir/a.bin")
            .contains("write-back stored"));
        assert_eq!(b.get("dir/a.bin").body, b"from the other origin");
        // The scheme-relative URL went to the other origin, not to `o` as
        // a path.
        assert_eq!(o.hits("/dir/b.bin"), 1);
        assert_eq!(other.hits("/c.bin"), 1);
        assert!(o.seen().iter().all(|s| !s.target.starts_with("//")));
    }
}

/// The primary redirects to a server that drops the connection before
/// answering: that is the primary failing, so the secondary is asked (on
/// the plain path: HEAD with `allow_head`, and a GET when the spool can't
/// be used).
#[test]
fn a_hop_that_fails_before_answering_falls_back_to_the_secondary() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in dead.incoming() {
            drop(c); // closes without a response
        }
    });
    let b = garage().bucket("hop-second");
    let o = Origin::start();
    let second = Origin::start();
    let hop = format!("http://127.0.0.1:{dead_port}/k");
    o.set("/k", Reply::status(302).header("Location", &hop));
    second.set("/k", Reply::ok(b"from the secondary", "text/plain"));
    let (_spool, fill) = plain_path_fill(true);
    let extra = format!(", allow_head: true, secondary_url: \"{}\"", second.url());
    let p = fill_proxy(&b, &o.url(), &extra, &fill);
    let r = client().head(p.url("/k")).send().unwrap();
    assert_eq!(r.status(), 200);
    let r = client().get(p.url("/k")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "from the secondary");
    assert_eq!(second.hits("/k"), 2);
    assert!(p.write_back_outcome("k").contains("write-back stored"));
}
