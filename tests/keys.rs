//! Keys with empty segments (`a//b`, `dir/`) and the site root: ordinary
//! S3 keys, refused only by the embedded bucket, whose objects are files.
//! A key starting with `/` is refused: Garage reads `/x` as `x`.

mod common;
use common::*;

/// `GET path` answers 200 with `body`.
fn serves(port: u16, path: &str, body: &str) {
    let (status, text) = raw_get(port, "e", path);
    assert_eq!(status, 200, "{path}: {text}");
    assert!(text.ends_with(body), "{path}: {text}");
}

#[test]
fn empty_segment_keys_are_read_mirrored_and_stored_under_the_same_key() {
    let b = garage().bucket("emptyseg");
    // Already in the bucket (written by other tools): served as they are.
    b.put("hit//double.txt", b"double", Some("text/plain"));
    b.put("hitdir/", b"folder marker", Some("text/plain"));
    let o = Origin::start();
    o.set("/o/a//b.txt", Reply::ok(b"a-double-b", "text/plain"));
    o.set("/o/blog/", Reply::ok(b"<html>index</html>", "text/html"));
    let p = mirror_proxy(&b, &format!("{}o/", o.url()), "");
    serves(p.port, "/hit//double.txt", "double");
    serves(p.port, "/hitdir/", "folder marker");
    assert!(
        o.seen().is_empty(),
        "hits went to the origin: {:?}",
        o.seen()
    );

    // Misses: the origin is asked for the same path, and the object is
    // stored under exactly the requested key (not `a/b`, not `blog`).
    for (path, key, body) in [
        ("/a//b.txt", "a//b.txt", "a-double-b"),
        ("/blog/", "blog/", "<html>index</html>"),
    ] {
        serves(p.port, path, body);
        assert!(
            p.write_back_outcome(key).contains("write-back stored"),
            "{key}"
        );
        assert_eq!(b.get(key).body, body.as_bytes(), "{key}");
    }
    let asked: Vec<String> = o.seen().iter().map(|s| s.target.clone()).collect();
    assert_eq!(asked, ["/o/a//b.txt", "/o/blog/"]);
    for alias in ["a/b.txt", "blog"] {
        assert_eq!(b.get(alias).status, 404, "{alias} was written");
    }
    // And the next read is a hit.
    serves(p.port, "/blog/", "<html>index</html>");
    assert_eq!(o.seen().len(), 2);
    // `//x` is the key `/x`, which Garage would store as `x`: refused,
    // neither bucket nor origin asked.
    b.put("x.txt", b"another object", None);
    let (status, text) = raw_get(p.port, "e", "//x.txt");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("<Code>InvalidURI</Code>"), "{text}");
    assert_eq!(o.seen().len(), 2);
}

#[test]
fn the_site_root_and_folders_take_immediate_redirects() {
    let (dead, env) = dead_bucket();
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: s\n    bucket: {dead}\n    rules:\n      - condition: {{ key_prefix: \"\" }}\n        redirect: {{ code: 301, protocol: https, host: www.new.example, pass_query_string: true }}\n"
    );
    let p = Proxy::start_env(&yaml, &env);
    for (path, want) in [
        ("/", "https://www.new.example/"),
        ("/?utm=1", "https://www.new.example/?utm=1"),
        ("/blog/", "https://www.new.example/blog/"),
    ] {
        let (status, text) = raw_get(p.port, "e", path);
        assert_eq!(status, 301, "{path}: {text}");
        assert!(
            text.lines()
                .any(|l| l.eq_ignore_ascii_case(&format!("location: {want}"))),
            "{path}: {text}"
        );
    }
    // No rule for the root: it is no key (S3 would list the bucket).
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: s\n    bucket: {dead}\n    rules:\n      - condition: {{ key_prefix: \"old/\" }}\n        redirect: {{ host: new.example }}\n"
    );
    let p = Proxy::start_env(&yaml, &env);
    let (status, text) = raw_get(p.port, "e", "/");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("<Code>InvalidURI</Code>"), "{text}");
    let (status, _) = raw_get(p.port, "e", "/old/");
    assert_eq!(status, 302);
}

#[test]
fn the_embedded_bucket_refuses_keys_that_name_no_file() {
    let data = tempfile::tempdir().unwrap();
    let folder = data.path().join("assets");
    std::fs::create_dir_all(folder.join("dir")).unwrap();
    std::fs::write(folder.join("dir/f.txt"), "file").unwrap();
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: local\n    bucket: {{ local: \"{}\" }}\n    rules:\n      - condition: {{ key_prefix: \"go/\" }}\n        redirect: {{ host: new.example }}\n",
        folder.display()
    );
    let p = Proxy::start(&yaml);
    let (status, text) = raw_get(p.port, "e", "/dir/f.txt");
    assert_eq!(status, 200, "{text}");
    // `dir//f.txt` would read `dir/f.txt`, `//x` the absolute `/x`.
    for path in ["/dir/", "/dir//f.txt", "//etc/hostname", "/"] {
        let (status, text) = raw_get(p.port, "e", path);
        assert_eq!(status, 400, "{path}: {text}");
        assert!(text.contains("<Code>InvalidURI</Code>"), "{path}: {text}");
    }
    // A redirect still answers a folder URL.
    let (status, _) = raw_get(p.port, "e", "/go/");
    assert_eq!(status, 302);
}
