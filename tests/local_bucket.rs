//! The embedded local-disk bucket: a file put in its folder is served
//! through the same signed upstream path as a real bucket.

mod common;
use common::*;

#[test]
fn file_in_folder_is_served() {
    let data = tempfile::tempdir().unwrap();
    let folder = data.path().join("assets");
    std::fs::create_dir_all(folder.join("deep/dir")).unwrap();
    let body = pattern(300_000, 3);
    std::fs::write(folder.join("deep/dir/file name.bin"), &body).unwrap();
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: local\n    bucket: {{ local: \"{}\" }}\n",
        folder.display()
    );
    let proxy = Proxy::start(&yaml);
    let resp = client()
        .get(proxy.url("/deep/dir/file%20name.bin"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().unwrap().as_ref(), body.as_slice());
    let resp = client()
        .get(proxy.url("/deep/dir/missing.bin"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.text().unwrap().contains("<Code>NoSuchKey</Code>"));
}
