//! Origins that send no length (chunked): the write-back of a shared fill
//! streams each part from the spool instead of holding it in memory. Six
//! such 24 MiB misses at once, with the bucket behind a 40 MB/s link so
//! the uploads overlap, grow the proxy's peak RSS by far less than the
//! two 8 MiB parts per upload (96 MiB) that buffering them took. Each is
//! stored byte for byte (24 MiB is three whole parts: the body ends on a
//! part boundary). Own test binary, so no other test competes for memory.

mod common;
use common::fill::{peak_rss_kib, source, yaml};
use common::http::download_compare;
use common::*;

#[test]
fn chunked_write_backs_stream_from_the_spool() {
    const LEN: usize = 24 << 20;
    const N: usize = 6;
    let g = garage();
    let b = g.bucket("chunkedspool");
    let link = Throttle::start(g.s3_port, 40_000_000);
    let o = Origin::start();
    let p = Proxy::start_env(
        &yaml(&b.yaml_via(link.port), &o.url(), "", ""),
        &b.proxy_env(),
    );
    // Warm up (threads, pools, one chunked write-back) before the baseline.
    let warm = source(1 << 20, 1);
    o.set("/warm", Reply::shared(&warm).chunked());
    assert_eq!(download_compare(p.port, "/warm", &warm, None).end, Ok(()));
    p.expect_stored("warm");
    let before = peak_rss_kib(p.pid());

    let sources: Vec<_> = (0..N).map(|i| source(LEN, 10 + i as u8)).collect();
    for (i, src) in sources.iter().enumerate() {
        o.set(&format!("/c/{i}.bin"), Reply::shared(src).chunked());
    }
    let clients: Vec<_> = sources
        .iter()
        .enumerate()
        .map(|(i, src)| {
            let (src, port) = (src.clone(), p.port);
            std::thread::spawn(move || download_compare(port, &format!("/c/{i}.bin"), &src, None))
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        let d = c.join().unwrap();
        assert_eq!(d.end, Ok(()), "client {i}");
        assert_eq!((d.len, d.differs_at), (LEN as u64, None), "client {i}");
    }
    for (i, src) in sources.iter().enumerate() {
        let key = format!("c/{i}.bin");
        p.expect_stored(&key);
        assert_eq!(b.stored_matches(&key, src), Ok(()));
        assert_eq!(o.hits(&format!("/c/{i}.bin")), 1);
    }
    let growth_mib = peak_rss_kib(p.pid()).saturating_sub(before) / 1024;
    println!(
        "{N} chunked {} MiB misses: peak RSS growth {growth_mib} MiB",
        LEN >> 20
    );
    assert!(growth_mib < 48, "peak RSS grew by {growth_mib} MiB");
}
