//! Redirect rules: answered from the request filter, or on a bucket error.

mod common;
use common::*;

fn proxy_with_rules(bucket_yaml: &str, env: &[(&str, &str)], rules: &str) -> Proxy {
    let yaml = format!("listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: s\n    bucket: {bucket_yaml}\n    rules:\n{rules}");
    Proxy::start_env(&yaml, env)
}

fn location(p: &Proxy, host: &str, path: &str) -> (u16, String) {
    let (status, text) = raw_get(p.port, host, path);
    let loc = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .unwrap_or("")
        .to_string();
    (status, loc)
}

#[test]
fn migration_redirect_on_bucket_404() {
    let b = garage().bucket("migr");
    b.put("here.txt", b"in the bucket", None);
    let rules = "      - condition: { http_error_code: 404 }\n        redirect: { protocol: https, host: old-origin.example.com, pass_query_string: true }\n";
    let p = proxy_with_rules(&b.yaml(), &b.proxy_env(), rules);
    assert_eq!(
        location(&p, "edge.example.com", "/dir/a%20b%20%C3%BC.txt?v=2"),
        (
            302,
            "https://old-origin.example.com/dir/a%20b%20%C3%BC.txt?v=2".to_string()
        )
    );
    let (status, text) = raw_get(p.port, "edge.example.com", "/here.txt");
    assert_eq!(status, 200);
    assert!(text.ends_with("in the bucket"));
}

#[test]
fn hidden_prefix_never_touches_the_bucket() {
    // The bucket endpoint is a closed port: any contact would be a 502.
    let (dead, env) = dead_bucket();
    let rules = "      - condition: { key_prefix: \"private/\" }\n        redirect: { replace_key_with: \"notice.html\" }\n      - condition: { key_prefix: \"old/\" }\n        redirect: { code: 301, replace_key_prefix_with: \"new/\" }\n      - condition: { key_regex: \"^img/(.*)\\\\.(png)$\" }\n        redirect: { code: 307, host: \"cdn.example.com\", replace_key_with: \"$2/$1/${key}\" }\n";
    let p = proxy_with_rules(&dead, &env, rules);
    assert_eq!(
        location(&p, "edge.example.com:8080", "/private/x?y=1"),
        (302, "http://edge.example.com:8080/notice.html".into())
    );
    assert_eq!(
        location(&p, "edge.example.com", "/old/a/b.txt?q=1"),
        (301, "http://edge.example.com/new/a/b.txt".into())
    );
    assert_eq!(
        location(&p, "e", "/img/a%20b.png"),
        (307, "http://cdn.example.com/png/a%20b/img/a%20b.png".into())
    );
    // Proof the bucket is unreachable: a key no rule covers gets 502.
    assert_eq!(raw_get(p.port, "e", "/other").0, 502);
}

#[test]
fn error_pages_for_bucket_404_and_500() {
    // A stand-in bucket that answers 500 for one key (it ignores signatures).
    let fake = Origin::start();
    fake.set("/b/broken", Reply::status(500));
    let bucket = format!(
        "{{ endpoint: \"http://127.0.0.1:{}\", name: b, access_key_id_env: OP_KEY, secret_access_key_env: OP_SECRET }}",
        fake.port
    );
    let env = [("OP_KEY", "k"), ("OP_SECRET", "s")];
    let rules = "      - condition: { http_error_code: 500 }\n        redirect: { host: \"status.example.com\", replace_key_with: \"500.html\" }\n      - condition: { http_error_code: 404 }\n        redirect: { host: \"status.example.com\", replace_key_with: \"404.html\" }\n";
    let p = proxy_with_rules(&bucket, &env, rules);
    let (status, text) = raw_get(p.port, "e", "/broken");
    assert_eq!(status, 302);
    assert!(text.contains("ocation: http://status.example.com/500.html"));
    assert!(!text.contains("status 500"), "bucket body leaked: {text}");
    assert_eq!(
        location(&p, "e", "/missing"),
        (302, "http://status.example.com/404.html".into())
    );
}

#[test]
fn header_condition_selects_rule() {
    let (dead, env) = dead_bucket();
    let rules = "      - condition: { include_headers: [{ key: x-from, equals: app }] }\n        redirect: { host: app.example.com }\n      - condition: { key_prefix: \"\" }\n        redirect: { host: web.example.com }\n";
    let p = proxy_with_rules(&dead, &env, rules);
    let (_, app) = raw_request(
        p.port,
        "GET /k HTTP/1.1\r\nHost: e\r\nX-From: app\r\nConnection: close\r\n\r\n",
    );
    assert!(app.contains("ocation: http://app.example.com/k"), "{app}");
    assert_eq!(location(&p, "e", "/k").1, "http://web.example.com/k");
}

#[test]
fn open_redirect_attempts_stay_on_host() {
    let (dead, env) = dead_bucket();
    let rules = "      - condition: { key_prefix: \"\" }\n        redirect: { code: 301, protocol: https }\n";
    let p = proxy_with_rules(&dead, &env, rules);
    let mut redirected = 0;
    for path in [
        "//evil.example/x",
        "/%2F%2Fevil.example",
        "/\\evil",
        "/%5Cevil",
        "/@evil.example",
        "/a%0d%0aSet-Cookie:%20x",
    ] {
        let (status, text) = raw_get(p.port, "edge.example.com", path);
        if status == 400 {
            continue; // refused as an invalid key: no Location at all
        }
        assert_eq!(status, 301, "{path}: {text}");
        let loc = text
            .lines()
            .find_map(|l| l.strip_prefix("location: "))
            .unwrap_or("");
        assert!(
            loc.starts_with("https://edge.example.com/"),
            "{path}: {loc}"
        );
        assert!(!loc.contains(['\\', '@']), "{path}: {loc}");
        assert!(
            !text.to_ascii_lowercase().contains("set-cookie"),
            "{path}: header split: {text}"
        );
        redirected += 1;
    }
    // Only the CR/LF key is refused (400); `//evil.example/x` and
    // `/%2F%2Fevil.example` are keys with empty segments, redirected on
    // the configured host (`https://edge.example.com//evil.example/x`).
    assert_eq!(
        redirected, 5,
        "the other attempts must be answered with a safe redirect"
    );
    let (status, _) = raw_get(p.port, "evil.example/x@y", "/k");
    assert_eq!(status, 400);
}

#[test]
fn order_decides_between_redirect_and_mirror() {
    let b = garage().bucket("order");
    let o = Origin::start();
    o.set("/k", Reply::ok(b"from origin", "text/plain"));
    let redirect = "      - condition: { key_prefix: \"k\", http_error_code: 404 }\n        redirect: { host: r.example.com }\n";
    let mirror = format!(
        "      - condition: {{ key_prefix: \"k\" }}\n        mirror: {{ url: \"{}\" }}\n",
        o.url()
    );
    let p = proxy_with_rules(&b.yaml(), &b.proxy_env(), &format!("{redirect}{mirror}"));
    assert_eq!(
        location(&p, "e", "/k"),
        (302, "http://r.example.com/k".into())
    );
    assert_eq!(o.hits("/k"), 0);
    let p = proxy_with_rules(&b.yaml(), &b.proxy_env(), &format!("{mirror}{redirect}"));
    let (status, text) = raw_get(p.port, "e", "/k");
    assert_eq!(status, 200);
    assert!(text.ends_with("from origin"));
    assert_eq!(o.hits("/k"), 1);
}

#[test]
fn rewritten_keys_are_checked_before_the_location() {
    let (dead, env) = dead_bucket();
    let rules = "      - condition: { key_prefix: \"p\" }\n        redirect: { replace_key_prefix_with: \".\" }\n      - condition: { key_regex: \"^r(.*)$\" }\n        redirect: { host: r.example.com, replace_key_with: \"$1\" }\n";
    let p = proxy_with_rules(&dead, &env, rules);
    // `p./secret` → `../secret`: refused.
    let (status, text) = raw_get(p.port, "e", "/p./secret");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("<Code>InvalidURI</Code>"), "{text}");
    assert!(!text.to_ascii_lowercase().contains("location:"), "{text}");
    // `r/x` → `/x`: an empty segment after the configured host.
    assert_eq!(
        location(&p, "e", "/r/x"),
        (302, "http://r.example.com//x".into())
    );
    assert_eq!(location(&p, "e", "/px"), (302, "http://e/.x".into()));
    assert_eq!(
        location(&p, "e", "/rx/y"),
        (302, "http://r.example.com/x/y".into())
    );
}

/// A redirect whose `Location` is the request's own URL would loop: the
/// rule passes and the next one, or the bucket, answers. Another scheme
/// drops the request's port (nginx's `$host` has none either).
#[test]
fn redirects_to_the_request_itself_pass() {
    let b = garage().bucket("selfredir");
    b.put("k", b"in the bucket", None);
    let rules = "      - condition: { key_prefix: \"k\" }\n        redirect: { protocol: http }\n      - condition: { key_prefix: \"s\" }\n        redirect: { code: 301, protocol: https }\n      - condition: { http_error_code: 404 }\n        redirect: { protocol: http, pass_query_string: true }\n";
    let p = proxy_with_rules(&b.yaml(), &b.proxy_env(), rules);
    // "Force http" on the plain listener: the bucket serves.
    let (status, text) = raw_get(p.port, "e", "/k");
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("in the bucket"));
    // "Force https": to the https port, not the plain listener's.
    assert_eq!(
        location(&p, "edge.example:8080", "/s/x"),
        (301, "https://edge.example/s/x".into())
    );
    // A 404 redirect with nothing to change: the bucket's 404.
    let (status, text) = raw_get(p.port, "e", "/missing?a=1");
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("<Code>NoSuchKey</Code>"), "{text}");
}

/// A redirect that would answer with the request's own URL passes on
/// every path that picks a rule, not only after a bucket 404: with the
/// bucket unreachable, the mirror rule behind it serves from the origin
/// (`mirror_on_bucket_error`) instead of the redirect rule making it a 502.
#[test]
fn a_self_redirect_passes_when_the_bucket_is_unreachable() {
    let (dead, env) = dead_bucket();
    let o = Origin::start();
    o.set("/f/x", Reply::ok(b"from the origin", "text/plain"));
    let rules = format!(
        "      - condition: {{ http_error_code: 404 }}\n        redirect: {{ protocol: http }}\n      - condition: {{ http_error_code: 404 }}\n        mirror: {{ url: \"{}f/\", mirror_on_bucket_error: true }}\n",
        o.url()
    );
    let p = proxy_with_rules(&dead, &env, &rules);
    let (status, text) = raw_get(p.port, "e", "/x");
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("from the origin"), "{text}");
    assert_eq!(o.hits("/f/x"), 1);
}

/// `${N}` is a capture like `$N`, and a raw UTF-8 query is encoded.
#[test]
fn braced_captures_and_encoded_queries() {
    let (dead, env) = dead_bucket();
    let rules = "      - condition: { key_regex: \"^v/(.*)$\" }\n        redirect: { host: cdn.example, replace_key_with: \"${1}-x/k\", pass_query_string: true }\n";
    let p = proxy_with_rules(&dead, &env, rules);
    let (status, text) = raw_request(
        p.port,
        "GET /v/a?q=\u{fc} HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 302, "{text}");
    assert!(
        text.contains("ocation: http://cdn.example/a-x/k?q=%C3%BC"),
        "{text}"
    );
}

/// Clients send an internationalised host in its ASCII form: a site's
/// `hosts` written in Unicode never matched.
#[test]
fn unicode_host_names_match_their_ascii_form() {
    let (dead, env) = dead_bucket();
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: idn\n    hosts: [\"bücher.example\", \"*.bücher.test\"]\n    bucket: {dead}\n    rules:\n      - condition: {{ key_prefix: \"\" }}\n        redirect: {{ host: found.example }}\n"
    );
    let p = Proxy::start_env(&yaml, &env);
    for host in ["xn--bcher-kva.example", "a.xn--bcher-kva.test"] {
        assert_eq!(
            location(&p, host, "/k"),
            (302, "http://found.example/k".into()),
            "{host}"
        );
    }
    let (status, text) = raw_get(p.port, "other.example", "/k");
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("NoSuchWebsiteConfiguration"), "{text}");
}
