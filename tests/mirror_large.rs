//! A 512 MiB miss: memory stays bounded while it streams and is written
//! back, and the stored object is intact.

mod common;
use common::fill::peak_rss_kib;
use common::*;
use md5::{Digest, Md5};
use std::io::Read;

fn md5_of(mut r: impl Read) -> (u64, [u8; 16]) {
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        n += k as u64;
        h.update(&buf[..k]);
    }
    (n, h.finalize().into())
}

#[test]
fn half_gib_miss_has_bounded_memory() {
    const LEN: u64 = 512 << 20;
    let b = garage().bucket("large");
    let o = Origin::start();
    o.set(
        "/big.bin",
        Reply {
            status: 200,
            headers: vec![],
            body: Body::Pattern { len: LEN, seed: 42 },
            fault: Fault::None,
        },
    );
    let p = mirror_proxy(&b, &o.url(), "");
    // Warm up (threads, pools, the first mirror) before the baseline.
    o.set("/warm", Reply::ok(&pattern(1 << 20, 1), "text/plain"));
    client()
        .get(p.url("/warm"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    p.write_back_outcome("warm");
    let before = peak_rss_kib(p.pid());

    let r = client().get(p.url("/big.bin")).send().unwrap();
    assert_eq!(r.status(), 200);
    let (n, via_proxy) = md5_of(r);
    assert_eq!(n, LEN);
    let outcome = p.write_back_outcome("big.bin");
    assert!(
        outcome.contains("write-back stored"),
        "{outcome}\n{}",
        p.log()
    );
    // VmHWM is not monotonic to the byte: since Linux 6.2 the RSS counters
    // are per-CPU and read approximately, so a later read can come out a
    // little lower than `before` (CI saw it). No growth is then 0.
    let growth_mib = peak_rss_kib(p.pid()).saturating_sub(before) / 1024;
    println!(
        "peak RSS growth for a 512 MiB miss: {growth_mib} MiB (baseline {} MiB)",
        before / 1024
    );
    assert!(growth_mib < 64, "peak RSS grew by {growth_mib} MiB");

    let (n, origin) = md5_of(Gen::reader(LEN, 42));
    assert_eq!((n, origin), (LEN, via_proxy));
    let stored = b.get("big.bin");
    assert_eq!(stored.body.len() as u64, LEN);
    let stored_md5: [u8; 16] = Md5::digest(&stored.body).into();
    assert_eq!(
        stored_md5, origin,
        "stored object differs from the origin's"
    );
}

/// The origin's pattern as a reader, to hash it without holding it.
struct Gen {
    left: u64,
    x: u32,
}

impl Gen {
    fn reader(len: u64, seed: u8) -> Gen {
        Gen {
            left: len,
            x: 0x9E37_79B9 ^ seed as u32,
        }
    }
}

impl Read for Gen {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for b in &mut buf[..n] {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 17;
            self.x ^= self.x << 5;
            *b = self.x as u8;
        }
        self.left -= n as u64;
        Ok(n)
    }
}
