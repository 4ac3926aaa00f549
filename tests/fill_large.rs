//! Shared fills of large objects: a herd on a 256 MiB miss (one origin GET)
//! with the proxy's memory bounded while 100 clients read one fill.

mod common;
use common::fill::*;

/// Half the clients ask before the origin sends anything, half after a
/// quarter of the body went out; all must overlap one fill.
#[test]
fn herd_of_100_on_a_missing_256_mib_key_is_one_origin_get_with_bounded_memory() {
    let h = herd("herd256", 256 << 20, 50, 50);
    println!(
        "100 clients x 256 MiB: {:?}, peak RSS growth {} MiB",
        h.elapsed, h.rss_growth_mib
    );
    assert!(
        h.rss_growth_mib < 100,
        "peak RSS grew by {} MiB with 100 readers",
        h.rss_growth_mib
    );
}
