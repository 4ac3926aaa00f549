//! Write-back never replaces an object written into the bucket directly
//! while the mirror streamed (`If-None-Match: *`). Garage ignores that
//! header (it overwrites); the embedded s3s bucket honours it, so the
//! test runs against that.

mod common;
use common::*;
use std::io::Read;

#[test]
fn write_back_keeps_an_object_written_meanwhile() {
    let data = tempfile::tempdir().unwrap();
    let folder = data.path().join("assets");
    std::fs::create_dir_all(&folder).unwrap();
    let o = Origin::start();
    // Multipart (over the single-PUT size): the object is created by
    // CompleteMultipartUpload, after the origin body ended.
    let len: u64 = 20 << 20;
    o.set(
        "/big.bin",
        Reply {
            status: 200,
            headers: vec![("Content-Type".into(), "application/octet-stream".into())],
            body: Body::Pattern { len, seed: 4 },
            fault: Fault::Gate,
        },
    );
    let yaml = format!(
        "listen: [\"127.0.0.1:{{port}}\"]\nsites:\n  - name: s\n    bucket: {{ local: \"{}\" }}\n    rules:\n      - condition: {{ key_prefix: \"\" }}\n        mirror: {{ url: \"{}\", timeout_seconds: 10 }}\n",
        folder.display(),
        o.url()
    );
    let p = Proxy::start(&yaml);
    let mut r = client().get(p.url("/big.bin")).send().unwrap();
    assert_eq!(r.status(), 200);
    // The mirror is streaming (the origin holds the second half back):
    // now the object is written into the bucket directly.
    let mut first = vec![0u8; 1 << 20];
    r.read_exact(&mut first).unwrap();
    std::fs::write(folder.join("big.bin"), b"written directly").unwrap();
    o.release();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert_eq!(first.len() as u64 + rest.len() as u64, len);

    let line = p.write_back_outcome("big.bin");
    assert!(
        line.contains("write-back skipped") && line.contains("object already exists"),
        "{line}\n{}",
        p.log()
    );
    assert_eq!(
        std::fs::read(folder.join("big.bin")).unwrap(),
        b"written directly"
    );
    // And the bucket serves it: a hit, the origin not asked again.
    let r = client().get(p.url("/big.bin")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), b"written directly");
    assert_eq!(o.hits("/big.bin"), 1);
}
