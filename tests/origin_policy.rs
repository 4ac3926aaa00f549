//! Where origin redirects may lead (SPEC section 2): the rule's headers
//! stay with the configured origin.

mod common;
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
    assert!(p.write_back_outcome("away").contains("stored"));
}
