//! Property tests (bounded case counts, so the suite stays fast) for the
//! three places where a client's bytes become something we send: the key
//! parser, the origin URL and the redirect `Location`.

use origin_pull::config::parse_origin_url;
use origin_pull::key::{encode_key, key_from_path};
use origin_pull::mirror::origin_target;
use origin_pull::redirect::{location, RequestParts};
use origin_pull::rules::{KeyRewrite, Redirect};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Paths as a client could send them: literal characters mixed with
/// percent-escapes of any byte (`%2F`, `%2e`, `%00`, `%ff`...), and the
/// pieces attacks are made of.
fn request_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z0-9 ._~+@!$&'()*,;=:-]{1,4}",
        Just("/".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2E%2E".to_string()),
        Just("%2F".to_string()),
        Just("\\".to_string()),
        any::<u8>().prop_map(|b| format!("%{b:02X}")),
        any::<char>().prop_map(|c| c.to_string()),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|v| format!("/{}", v.concat()))
}

/// Keys the parser accepts: no dot segments, no control characters (any
/// other Unicode is fine; empty segments are S3 keys too).
fn valid_key() -> impl Strategy<Value = String> {
    let segment = "[^/\\p{Cc}]{0,12}".prop_filter("dot segment", |s| s != "." && s != "..");
    proptest::collection::vec(segment, 1..6).prop_map(|v| v.join("/"))
}

/// Any string at all, to feed builders that must stay safe whatever the key.
fn any_key() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[/\\\\@:?#%. a-z\r\n]{0,24}", valid_key(),]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parsed_keys_are_always_clean(path in request_path()) {
        if let Ok(key) = key_from_path(&path) {
            // Exactly the bytes sent: nothing lossily replaced.
            let raw: Vec<u8> = percent_encoding::percent_decode_str(&path[1..]).collect();
            prop_assert_eq!(raw.as_slice(), key.as_bytes());
            prop_assert!(key.len() <= 1024);
            prop_assert!(!key.chars().any(char::is_control), "{key:?}");
            for seg in key.split('/') {
                prop_assert!(seg != "." && seg != "..", "dot segment in {key:?}");
            }
        }
    }

    #[test]
    fn keys_survive_encode_and_decode(key in valid_key()) {
        let path = format!("/{}", encode_key(&key));
        prop_assert_eq!(key_from_path(&path), Ok(key));
    }

    #[test]
    fn origin_url_never_leaves_the_origin(
        key in any_key(),
        base in prop_oneof![
            Just("http://origin.example.com/"),
            Just("https://origin.example.com:8443/dir1/"),
            Just("http://127.0.0.1:8081/a%20b/"),
        ],
        query in proptest::option::of("[a-z0-9=&%]{0,12}"),
    ) {
        let base = parse_origin_url(base).unwrap();
        let t = origin_target(&base, &key, query.as_deref());
        prop_assert_eq!((t.tls, &t.host, t.port), (base.tls, &base.host, base.port));
        // As any URL parser reads it, too.
        let url = url::Url::parse(&t.url).unwrap();
        prop_assert_eq!(url.scheme(), if base.tls { "https" } else { "http" });
        prop_assert_eq!(url.host_str(), Some(base.host.as_str()));
        prop_assert_eq!(url.port_or_known_default(), Some(base.port));
        prop_assert!(t.path_and_query.starts_with(&base.base_path));
        let uri: http::Uri = t.path_and_query.parse().unwrap();
        prop_assert!(uri.authority().is_none());
    }

    #[test]
    fn location_host_is_fixed_and_has_no_line_breaks(
        key in valid_key(),
        configured in proptest::option::of(Just("cdn.example.com".to_string())),
        rewrite in prop_oneof![
            Just(KeyRewrite::Keep),
            "[a-z./]{0,4}".prop_map(|to| KeyRewrite::Prefix { from: String::new(), to }),
            "[a-z./$]{0,4}(\\$\\{key\\})?".prop_map(KeyRewrite::Template),
        ],
        query in proptest::option::of("[a-z0-9=&%]{0,12}"),
    ) {
        let r = Redirect {
            code: 302,
            protocol: None,
            host: configured.clone(),
            rewrite,
            pass_query_string: true,
        };
        let req = RequestParts {
            scheme: "https",
            host: Some("edge.example.com"),
            key: &key,
            query: query.as_deref(),
        };
        if let Ok(loc) = location(&r, &req, &[]) {
            prop_assert!(!loc.contains(['\r', '\n']), "{loc:?}");
            let url = url::Url::parse(&loc).unwrap();
            let want = configured.as_deref().unwrap_or("edge.example.com");
            prop_assert_eq!(url.host_str(), Some(want), "{}", loc);
            let path = loc.split('?').next().unwrap_or("");
            let path = &path[path.find(want).unwrap_or(0) + want.len()..];
            for seg in path.split('/').skip(1) {
                prop_assert!(seg != "." && seg != "..", "{loc:?}");
            }
        }
    }
}
