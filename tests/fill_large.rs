//! A herd on a 256 MiB miss: 100 clients, one origin GET. In a debug build
//! this takes about a minute on 2 busy cores (measured: 50 s for the 100
//! downloads), well under the 3 min limit, so all 100 clients stay.

mod common;
use common::fill::*;

/// Half the clients ask before the origin sends anything, half after a
/// quarter of the body went out; all must overlap one fill.
#[test]
fn herd_of_100_on_a_missing_256_mib_key_is_one_origin_get() {
    let h = herd("herd256", 256 << 20, 50, 50);
    println!(
        "100 clients x 256 MiB: {:?}, peak RSS growth {} MiB",
        h.elapsed, h.rss_growth_mib
    );
}
