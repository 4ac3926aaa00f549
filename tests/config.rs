//! Bad configurations: non-zero exit, `file:line:column` and the field in
//! the message, nothing bound. No external services needed.

mod common;
use common::*;
use std::net::TcpStream;
use std::process::Command;

/// Runs the binary (not `-t`: it must refuse before binding) and returns
/// (exit code, stderr, whether the listen port got bound).
fn run_bad(yaml: &str) -> (i32, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, yaml.replace("{port}", &port.to_string())).unwrap();
    let mut child = Command::new(binary())
        .arg("-c")
        .arg(&path)
        .env("OP_KEY", "k")
        .env_remove("OP_MISSING")
        .env("OP_SECRET", "s")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A config that is (wrongly) accepted runs for ever: give up on it
    // as "started" (exit code 0) instead of hanging the test.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if std::time::Instant::now() > deadline {
            break 0;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let bound = TcpStream::connect(("127.0.0.1", port)).is_ok();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "FILE");
    (code, stderr, bound)
}

fn site(rest: &str) -> String {
    format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: a\n    bucket:\n      endpoint: \"http://127.0.0.1:9\"\n      name: b\n      access_key_id_env: OP_KEY\n      secret_access_key_env: OP_SECRET\n{rest}"
    )
}

fn assert_bad(yaml: &str, location: &str, words: &str) {
    let (code, stderr, bound) = run_bad(yaml);
    assert_ne!(code, 0, "accepted:\n{yaml}");
    assert!(!bound, "port bound despite bad config");
    assert!(
        stderr.contains(&format!("FILE:{location}:")),
        "want FILE:{location}: in {stderr:?}"
    );
    assert!(stderr.contains(words), "want {words:?} in {stderr:?}");
}

#[test]
fn unknown_field() {
    assert_bad(&site("    colour: blue\n"), "9:5", "unknown field `colour`");
}

#[test]
fn wrong_type() {
    let yaml = site("").replace("sites:", "threads: many\nsites:");
    assert_bad(&yaml, "2:10", "threads");
}

#[test]
fn invalid_regex() {
    let rules = "    rules:\n      - condition: { key_regex: \"(unclosed\" }\n        mirror: { url: \"http://o/\" }\n";
    assert_bad(
        &site(rules),
        "10:33",
        "sites[0].rules[0].condition.key_regex: invalid regex",
    );
}

#[test]
fn bad_mirror_urls() {
    for (url, words) in [
        ("ftp://o/", "absolute http"),
        ("/relative/", "absolute http"),
        ("http://o/dir", "must end with `/`"),
    ] {
        let rules = format!("    rules:\n      - mirror:\n          url: \"{url}\"\n");
        assert_bad(&site(&rules), "11:16", words);
    }
}

#[test]
fn duplicate_host() {
    let yaml = "listen: [\"127.0.0.1:{port}\"]\nsites:\n  - name: a\n    hosts: [\"x.example.com\"]\n    bucket: { local: \"a-bucket\" }\n  - name: b\n    hosts: [\"X.example.com\"]\n    bucket: { local: \"b-bucket\" }\n";
    assert_bad(
        yaml,
        "7:13",
        "host `x.example.com` is already claimed; site `a` has it",
    );
    // A fully qualified name (trailing dot) is the same host.
    assert_bad(
        &yaml.replace("\"X.example.com\"", "\"x.example.com.\""),
        "7:13",
        "host `x.example.com` is already claimed; site `a` has it",
    );
}

#[test]
fn duplicate_or_reserved_site_name() {
    // The name keys metrics, readiness, fills and reloads.
    let yaml = "listen: [\"127.0.0.1:{port}\"]\nsites:\n  - name: a\n    hosts: [\"x.example.com\"]\n    bucket: { local: \"a-bucket\" }\n  - name: a\n    hosts: [\"y.example.com\"]\n    bucket: { local: \"b-bucket\" }\n";
    assert_bad(yaml, "6:11", "`a` is already the name of another site");
    let yaml = site("").replace("name: a", "name: \"-\"");
    assert_bad(&yaml, "3:11", "`-` is reserved");
}

#[test]
fn missing_credentials_variable() {
    let yaml = site("").replace("access_key_id_env: OP_KEY", "access_key_id_env: OP_MISSING");
    assert_bad(
        &yaml,
        "7:26",
        "environment variable `OP_MISSING` is not set",
    );
    let token = site("").replace(
        "      secret_access_key_env: OP_SECRET\n",
        "      secret_access_key_env: OP_SECRET\n      session_token_env: OP_MISSING\n",
    );
    assert_bad(
        &token,
        "9:26",
        "environment variable `OP_MISSING` is not set",
    );
}

#[test]
fn duplicate_keys_point_at_the_duplicate() {
    // serde_yaml points at the mapping (1:1 for a top-level key); the
    // error names the second occurrence, where the mistake was typed.
    let top = format!("{}listen: [\"127.0.0.1:9\"]\n", site(""));
    let line = top.lines().count();
    assert_bad(&top, &format!("{line}:9"), "duplicate field `listen`");
    let nested = site("").replace("      name: b\n", "      name: b\n      name: c\n");
    assert_bad(&nested, "7:13", "sites[0].bucket: duplicate field `name`");
}

#[test]
fn aws_chain_takes_no_key_variables() {
    // `credentials: aws_chain` reads the environment itself: naming
    // variables beside it would say two things.
    let yaml = site("").replace(
        "      secret_access_key_env: OP_SECRET\n",
        "      secret_access_key_env: OP_SECRET\n      credentials: aws_chain\n",
    );
    assert_bad(&yaml, "7:26", "does not go with `credentials: aws_chain`");
    let unknown = site("").replace(
        "      secret_access_key_env: OP_SECRET\n",
        "      secret_access_key_env: OP_SECRET\n      credentials: instance\n",
    );
    assert_bad(&unknown, "9:20", "unknown variant `instance`");
}

#[test]
fn rule_shape_errors() {
    let both =
        "    rules:\n      - mirror: { url: \"http://o/\" }\n        redirect: { code: 301 }\n";
    assert_bad(&site(both), "10:9", "has both `mirror` and `redirect`");
    let code = "    rules:\n      - redirect: { code: 303 }\n";
    assert_bad(&site(code), "10:27", "303 is not one of 301, 302, 307");
    let prefix =
        "    rules:\n      - mirror: { url: \"http://o/\", replace_key_prefix_with: \"x/\" }\n";
    assert_bad(&site(prefix), "10:62", "needs `condition.key_prefix`");
    let status = "    rules:\n      - condition: { http_error_code: 500 }\n        mirror: { url: \"http://o/\" }\n";
    assert_bad(&site(status), "10:39", "mirror rules only act on 404");
    let many = format!(
        "    rules:\n{}",
        "      - redirect: { code: 301, host: n.example }\n".repeat(21)
    );
    assert_bad(&site(&many), "10:7", "at most 20");
    let nothing = "    rules:\n      - redirect: { code: 301 }\n";
    assert_bad(&site(nothing), "10:19", "changes nothing");
}

#[test]
fn settings_that_would_fail_at_run_time() {
    let bucket = |endpoint: &str, name: &str| {
        format!(
            "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: a\n    bucket:\n      endpoint: \"{endpoint}\"\n      name: {name}\n      addressing: virtual\n      access_key_id_env: OP_KEY\n      secret_access_key_env: OP_SECRET\n"
        )
    };
    // `<bucket>.<ip>` is no host name.
    assert_bad(
        &bucket("http://127.0.0.1:9", "b"),
        "7:19",
        "an IP endpoint takes `path`",
    );
    // `*.s3.example` does not cover `my.bucket.s3.example`.
    assert_bad(
        &bucket("https://s3.example", "my.bucket"),
        "7:19",
        "wildcard certificate does not cover it",
    );
    // `tls:` with no value read as plain HTTP on the port meant for HTTPS.
    let empty_tls = "listen:\n  - { addr: \"127.0.0.1:{port}\", tls: }\nsites:\n  - name: a\n    bucket: { local: /tmp }\n";
    assert_bad(empty_tls, "2:37", "is empty");
    // An access log path that is a folder dropped every line.
    assert_bad(&site("access_log: { path: /tmp }\n"), "9:21", "is a folder");
}

#[test]
fn key_rewrite_errors() {
    let redirect = |r: &str| site(&format!("    rules:\n      - {r}\n"));
    assert_bad(
        &redirect("redirect: { replace_key_with: \"/notice.html\" }"),
        "10:39",
        "starts with `/`",
    );
    assert_bad(
        &redirect("condition: { key_prefix: \"a/\" }\n        redirect: { replace_key_prefix_with: \"/docs/\" }"),
        "11:46",
        "starts with `/`",
    );
    assert_bad(
        &redirect("redirect: { host: n.example, replace_key_with: \"x/$1\" }"),
        "10:56",
        "uses `$1` but the condition has no `key_regex`",
    );
    assert_bad(
        &redirect("condition: { key_regex: \"^(a)/(.*)$\" }\n        mirror: { url: \"http://o/\", replace_key_with: \"${3}-$2\" }"),
        "11:55",
        "uses `$3` but `key_regex` has 2 group(s)",
    );
}

#[test]
fn origin_auth_errors() {
    let rule = |auth: &str| {
        site(&format!(
            "    rules:\n      - mirror:\n          url: \"http://o/\"\n          auth:\n{auth}"
        ))
    };
    let missing = "            type: sigv4\n            region: garage\n            access_key_id_env: OP_MISSING\n            secret_access_key_env: OP_SECRET\n";
    assert_bad(
        &rule(missing),
        "15:32",
        "sites[0].rules[0].mirror.auth.access_key_id_env: environment variable `OP_MISSING` is not set",
    );
    let header = "            type: header\n            name: authorization\n            value_env: OP_MISSING\n";
    assert_bad(&rule(header), "15:24", "`OP_MISSING` is not set");
    let unknown = "            type: basic\n            name: authorization\n";
    assert_bad(
        &rule(unknown),
        "13:19",
        "mirror.auth.type: `basic` is not an auth type; use `sigv4` or `header`",
    );
    let no_region = "            type: sigv4\n            access_key_id_env: OP_KEY\n            secret_access_key_env: OP_SECRET\n";
    assert_bad(&rule(no_region), "13:13", "`type: sigv4` needs `region`");
    let no_secondary = "    rules:\n      - mirror: { url: \"http://o/\", secondary_auth: { type: header, name: x-t, value_env: OP_KEY } }\n";
    assert_bad(&site(no_secondary), "10:53", "needs `secondary_url`");
    let asynchronous = "    rules:\n      - mirror: { url: \"http://o/\", mode: async, auth: { type: header, name: x-t, value_env: OP_KEY } }\n";
    assert_bad(&site(asynchronous), "10:43", "cannot pass on `auth`");
    let cookie =
        "    rules:\n      - mirror: { url: \"http://o/\", headers: { pass: [x-ok, Cookie] } }\n";
    assert_bad(
        &site(cookie),
        "10:61",
        "`Cookie` is never passed to the origin",
    );
    let range = "    rules:\n      - mirror: { url: \"http://o/\", headers: { set: { Range: \"bytes=0-1\" } } }\n";
    assert_bad(&site(range), "10:62", "`Range` can't be set");
    // It was accepted and never sent: the origin's Host is its URL's.
    let host = "    rules:\n      - mirror: { url: \"http://o/\", headers: { set: { Host: virt.example } } }\n";
    assert_bad(&site(host), "10:61", "`host` can't be set");
}

#[test]
fn admin_on_a_listen_address_is_refused() {
    for admin in ["127.0.0.1:{port}", "0.0.0.0:{port}"] {
        assert_bad(
            &site(&format!("admin: {{ listen: \"{admin}\" }}\n")),
            "9:18",
            "is also a `listen` address",
        );
    }
}

#[test]
fn limits_errors() {
    let low = site("").replace("sites:", "limits:\n  max_request_header_bytes: 10\nsites:");
    assert_bad(
        &low,
        "3:29",
        "limits.max_request_header_bytes: 10 is outside 1024..=1048575 bytes",
    );
    let buffer = site("").replace(
        "sites:",
        "limits:\n  downstream_write_buffer_bytes: 2000000\nsites:",
    );
    assert_bad(
        &buffer,
        "3:34",
        "limits.downstream_write_buffer_bytes: 2000000 is outside 0..=1048576 bytes",
    );
    let never = site("").replace(
        "sites:",
        "limits:\n  client_idle_timeout_seconds: 0\nsites:",
    );
    assert_bad(
        &never,
        "3:32",
        "limits.client_idle_timeout_seconds: 0 is outside 1..=3600 seconds",
    );
    let unknown = site("").replace("sites:", "limits: { max_headers: 3 }\nsites:");
    assert_bad(&unknown, "2:11", "unknown field `max_headers`");
}

#[test]
fn shipped_configs_validate() {
    for f in [
        "reference.yaml",
        "quickstart.yaml",
        "garage.yaml",
        "redirect-migration.yaml",
        "redirect-hide-prefix.yaml",
        "redirect-error-pages.yaml",
    ] {
        let path = std::path::PathBuf::from(format!("{}/conf/{f}", env!("CARGO_MANIFEST_DIR")));
        let env = [
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ];
        let (ok, err) = check_config(&path, &env);
        assert!(ok, "{f}: {err}");
    }
}

/// A bucket endpoint that does not resolve: the start refuses it at the
/// endpoint's line (before binding); `-t` names it as a warning and
/// passes (a file is often checked outside the network it is meant for).
#[test]
fn an_endpoint_that_does_not_resolve() {
    let yaml = site("").replace("http://127.0.0.1:9", "http://no-such-host.invalid:3900");
    assert_bad(
        &yaml,
        "5:17",
        "cannot resolve bucket endpoint no-such-host.invalid:3900",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, yaml.replace("{port}", "1")).unwrap();
    let (ok, err) = check_config(&path, &[("OP_KEY", "k"), ("OP_SECRET", "s")]);
    assert!(ok, "{err}");
    assert!(
        err.contains("warning: FILE:5:17: sites[0].bucket.endpoint: cannot resolve"),
        "{err}"
    );
}

/// A byte-order mark (as Windows editors write) is not content: the file
/// validates, and errors are located as an editor shows the lines. A YAML
/// merge key gets a message saying so, at its line.
#[test]
fn byte_order_mark_and_merge_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bom.yaml");
    std::fs::write(
        &path,
        format!("\u{feff}{}", site("")).replace("{port}", "1"),
    )
    .unwrap();
    let (ok, err) = check_config(&path, &[("OP_KEY", "k"), ("OP_SECRET", "s")]);
    assert!(ok, "{err}");
    assert_bad(
        &format!("\u{feff}{}", site("    colour: blue\n")),
        "9:5",
        "unknown field `colour`",
    );
    let merge = site(
        "    rules:\n      - condition: { key_prefix: \"a/\" }\n        mirror: &m { url: \"http://o/\" }\n      - condition: { key_prefix: \"b/\" }\n        mirror:\n          <<: *m\n          timeout_seconds: 3\n",
    );
    assert_bad(
        &merge,
        "14:11",
        "sites[0].rules[1].mirror: YAML merge keys (`<<: *anchor`) are not supported",
    );
}
