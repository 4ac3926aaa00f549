//! Prometheus metrics (`/metrics` on the admin listener), prefix
//! `origin_pull_`, base units (seconds, bytes).
//!
//! Label handles are resolved once per site when the routing state is
//! built ([`SiteMetrics::new`]), so the request path only bumps atomics:
//! no label hashing or registry lock per request. Labels are bounded:
//! site name, rule index and the fixed enums in [`labels`].

mod labels;

pub use labels::{BucketOp, OriginResult, Outcome, StatusClass, WriteBackResult};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use std::sync::LazyLock;
use std::time::Duration;

/// Everything origin-pull exports, in one registry of its own (an
/// embedding application keeps the default registry for itself).
pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    response_bytes: IntCounterVec,
    duration: HistogramVec,
    ttfb: HistogramVec,
    bucket_duration: HistogramVec,
    origin_requests: IntCounterVec,
    origin_bytes: IntCounterVec,
    writebacks: IntCounterVec,
    writeback_bytes: IntCounterVec,
    bucket_up: IntGaugeVec,
    reloads: IntCounterVec,
    pub requests_in_flight: IntGauge,
    pub writebacks_in_flight: IntGauge,
    pub fills_in_flight: IntGauge,
    pub access_log_dropped: IntCounter,
    /// Write-back requests sent again after the bucket failed them in
    /// passing (`crate::writeback` retries).
    pub writeback_retries: IntCounter,
    /// When each edge certificate expires (`not_after`, Unix seconds), by
    /// listener and certificate file: alert on it minus `time()`.
    pub tls_certificate_expiry: IntGaugeVec,
    /// Failed TLS handshakes on the edge listeners (counted by the
    /// binary's logger, which shows them at debug only).
    pub tls_handshake_failures: IntCounter,
}

/// Request and first-byte times: a hit on loopback takes ~0.2 ms, a large
/// mirror minutes.
const TIME_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(v.clone())).expect("unique metric");
    v
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(TIME_BUCKETS.to_vec());
    let v = HistogramVec::new(opts, labels).expect("valid metric");
    r.register(Box::new(v.clone())).expect("unique metric");
    v
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let v = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(v.clone())).expect("unique metric");
    v
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new_custom(Some("origin_pull".into()), None).expect("valid prefix");
        let build = gauge_vec(
            &r,
            "build_info",
            "Version of the running binary (always 1).",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let bucket_up = gauge_vec(
            &r,
            "bucket_up",
            "1 when the site's bucket answered its last background probe.",
            &["site"],
        );
        let tls_certificate_expiry = gauge_vec(
            &r,
            "tls_certificate_expiry_timestamp_seconds",
            "When each certificate an edge TLS listener serves expires (not_after), Unix seconds.",
            &["listen", "cert_file"],
        );
        Metrics {
            requests: counter(
                &r,
                "requests_total",
                "Requests answered, by site, outcome and status class.",
                &["site", "outcome", "status_class"],
            ),
            response_bytes: counter(
                &r,
                "response_bytes_total",
                "Response body bytes sent to clients.",
                &["site", "outcome"],
            ),
            duration: histogram(
                &r,
                "request_duration_seconds",
                "From the request header to the last byte sent.",
                &["site"],
            ),
            ttfb: histogram(
                &r,
                "time_to_first_byte_seconds",
                "From the request header to the response header sent.",
                &["site"],
            ),
            bucket_duration: histogram(
                &r,
                "bucket_request_duration_seconds",
                "Bucket requests, to the answer's header, by operation.",
                &["site", "operation"],
            ),
            origin_requests: counter(
                &r,
                "origin_requests_total",
                "Origin fetches, by result.",
                &["site", "rule", "result"],
            ),
            origin_bytes: counter(
                &r,
                "origin_bytes_total",
                "Body bytes read from origins (egress the migration still pays).",
                &["site", "rule"],
            ),
            writebacks: counter(
                &r,
                "writebacks_total",
                "Write-backs to the bucket, by result.",
                &["site", "result"],
            ),
            writeback_bytes: counter(
                &r,
                "writeback_bytes_total",
                "Bytes stored in the bucket by write-backs.",
                &["site"],
            ),
            bucket_up,
            tls_certificate_expiry,
            reloads: counter(
                &r,
                "config_reloads_total",
                "Configuration reloads, by result.",
                &["result"],
            ),
            requests_in_flight: gauge(&r, "requests_in_flight", "Client requests being answered."),
            writebacks_in_flight: gauge(&r, "writebacks_in_flight", "Write-backs not finished."),
            fills_in_flight: gauge(&r, "fills_in_flight", "Shared origin fetches not finished."),
            access_log_dropped: plain_counter(
                &r,
                "access_log_dropped_total",
                "Access log lines dropped: the writer fell behind, or the file could not be opened or written.",
            ),
            writeback_retries: plain_counter(
                &r,
                "writeback_retries_total",
                "Write-back requests sent again after a 5xx, SlowDown or a failed connection.",
            ),
            tls_handshake_failures: plain_counter(
                &r,
                "tls_handshake_failures_total",
                "Failed or timed-out TLS handshakes on the edge listeners.",
            ),
            registry: r,
        }
    }

    /// Counts a reload: `ok`, `failed` (invalid file) or `refused`
    /// (valid, but changes something only a restart can).
    pub fn reload(&self, result: &str) {
        self.reloads.with_label_values(&[result]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode_utf8(&self.registry.gather(), &mut out) {
            log::warn!("metrics: {e}");
        }
        out
    }
}

fn plain_counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

/// One site's handles, resolved when the routing state is built.
#[derive(Debug)]
pub struct SiteMetrics {
    /// The site's name (its `site` label), for log lines written away
    /// from a request (write-backs).
    pub site: String,
    /// `[outcome][status class]`.
    requests: Vec<Vec<IntCounter>>,
    response_bytes: Vec<IntCounter>,
    duration: Histogram,
    ttfb: Histogram,
    bucket: Vec<Histogram>,
    writebacks: Vec<IntCounter>,
    writeback_bytes: IntCounter,
    pub bucket_up: IntGauge,
    rules: Vec<RuleMetrics>,
}

/// One rule's origin handles (cheap to clone: each handle is an `Arc`).
#[derive(Debug, Clone)]
pub struct RuleMetrics {
    results: Vec<IntCounter>,
    pub bytes: IntCounter,
}

impl RuleMetrics {
    pub fn origin(&self, r: OriginResult) {
        self.results[r.index()].inc();
    }
}

impl SiteMetrics {
    pub fn new(site: &str, rules: usize) -> SiteMetrics {
        let m = &*METRICS;
        SiteMetrics {
            site: site.to_string(),
            requests: Outcome::ALL
                .iter()
                .map(|o| {
                    StatusClass::ALL
                        .iter()
                        .map(|c| {
                            m.requests
                                .with_label_values(&[site, o.as_str(), c.as_str()])
                        })
                        .collect()
                })
                .collect(),
            response_bytes: Outcome::ALL
                .iter()
                .map(|o| m.response_bytes.with_label_values(&[site, o.as_str()]))
                .collect(),
            duration: m.duration.with_label_values(&[site]),
            ttfb: m.ttfb.with_label_values(&[site]),
            bucket: BucketOp::ALL
                .iter()
                .map(|op| m.bucket_duration.with_label_values(&[site, op.as_str()]))
                .collect(),
            writebacks: WriteBackResult::ALL
                .iter()
                .map(|r| m.writebacks.with_label_values(&[site, r.as_str()]))
                .collect(),
            writeback_bytes: m.writeback_bytes.with_label_values(&[site]),
            bucket_up: m.bucket_up.with_label_values(&[site]),
            rules: (0..rules)
                .map(|i| {
                    let rule = i.to_string();
                    RuleMetrics {
                        results: OriginResult::ALL
                            .iter()
                            .map(|r| {
                                m.origin_requests
                                    .with_label_values(&[site, &rule, r.as_str()])
                            })
                            .collect(),
                        bytes: m.origin_bytes.with_label_values(&[site, &rule]),
                    }
                })
                .collect(),
        }
    }

    /// One answered request.
    pub fn request(
        &self,
        outcome: Outcome,
        status: u16,
        bytes: u64,
        took: Duration,
        ttfb: Option<Duration>,
    ) {
        self.requests[outcome.index()][StatusClass::of(status).index()].inc();
        self.response_bytes[outcome.index()].inc_by(bytes);
        self.duration.observe(took.as_secs_f64());
        if let Some(t) = ttfb {
            self.ttfb.observe(t.as_secs_f64());
        }
    }

    pub fn bucket_request(&self, op: BucketOp, took: Duration) {
        self.bucket[op.index()].observe(took.as_secs_f64());
    }

    pub fn writeback(&self, r: WriteBackResult, bytes: u64) {
        self.writebacks[r.index()].inc();
        self.writeback_bytes.inc_by(bytes);
    }

    /// Rule `idx`'s origin handles (a placeholder set when out of range).
    pub fn rule(&self, idx: usize) -> Option<&RuleMetrics> {
        self.rules.get(idx)
    }
}

/// Removes the series of what a reload dropped: every series of a site
/// no longer configured (`keep_rules: None`), or those of rules from
/// `keep_rules` on for a site that has fewer now (rules are labelled by
/// index). `/metrics` then shows what is configured: a removed site's
/// last `bucket_up 0` would otherwise stay, and alert, until a restart.
/// Requests of the old configuration still in flight count into
/// detached series, which are not exported.
pub fn forget(site: &str, rules_before: usize, keep_rules: Option<usize>) {
    let m = &*METRICS;
    for i in keep_rules.unwrap_or(0)..rules_before {
        let rule = i.to_string();
        for r in OriginResult::ALL {
            remove(&m.origin_requests, &[site, &rule, r.as_str()]);
        }
        remove(&m.origin_bytes, &[site, &rule]);
    }
    if keep_rules.is_some() {
        return;
    }
    for o in Outcome::ALL {
        for c in StatusClass::ALL {
            remove(&m.requests, &[site, o.as_str(), c.as_str()]);
        }
        remove(&m.response_bytes, &[site, o.as_str()]);
    }
    remove(&m.duration, &[site]);
    remove(&m.ttfb, &[site]);
    forget_bucket(site);
}

/// Removes a site's bucket series: write-backs, bucket requests and
/// `bucket_up`.
fn forget_bucket(site: &str) {
    let m = &*METRICS;
    for w in WriteBackResult::ALL {
        remove(&m.writebacks, &[site, w.as_str()]);
    }
    remove(&m.writeback_bytes, &[site]);
    for op in BucketOp::ALL {
        remove(&m.bucket_duration, &[site, op.as_str()]);
    }
    remove(&m.bucket_up, &[site]);
}

/// The metrics of requests that matched no site (`site="-"`): request
/// series only. It has no bucket, so a `bucket_up{site="-"} 0` would
/// fire a "bucket down" alert for ever.
pub fn no_site() -> SiteMetrics {
    let s = SiteMetrics::new("-", 0);
    forget_bucket("-");
    s
}

/// Removes one series of any metric family. `NotFound` (never created)
/// is fine: the point is that it is gone.
fn remove<T: prometheus::core::MetricVecBuilder>(
    v: &prometheus::core::MetricVec<T>,
    labels: &[&str],
) {
    drop(v.remove_label_values(labels));
}

/// Counts one unit of work in flight for as long as it lives.
pub struct InFlight(IntGauge);

impl InFlight {
    pub fn new(g: &IntGauge) -> InFlight {
        g.inc();
        InFlight(g.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Requests, write-backs and fills in flight (what a graceful stop waits for).
pub fn work_in_flight() -> i64 {
    let m = &*METRICS;
    m.requests_in_flight.get() + m.writebacks_in_flight.get() + m.fills_in_flight.get()
}
