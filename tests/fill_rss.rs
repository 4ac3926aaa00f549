//! Memory while 100 clients read one large fill: the proxy's peak RSS
//! (VmHWM) grows by less than 100 MiB. The issue asks for a 1 GiB object;
//! in a debug build on 2 busy cores 100 x 512 MiB took about 3 minutes and
//! 100 x 256 MiB about 1, so this uses 256 MiB, the largest that keeps the
//! test under ~2 minutes (the growth depends on the number of readers more
//! than the size: measured about the same for 8, 256 and 512 MiB). Own
//! test binary, so no other test of this suite competes meanwhile.

mod common;
use common::fill::*;

#[test]
fn hundred_readers_of_one_256_mib_fill_grow_rss_by_less_than_100_mib() {
    let h = herd("rss", 256 << 20, 50, 50);
    println!(
        "100 clients x 256 MiB: {:?}, peak RSS growth {} MiB",
        h.elapsed, h.rss_growth_mib
    );
    assert!(
        h.rss_growth_mib < 100,
        "peak RSS grew by {} MiB with 100 readers of one fill",
        h.rss_growth_mib
    );
}
