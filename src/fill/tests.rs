//! Unit tests of fills: readers, writers, the registry.

use super::*;

/// A fill outside any registry, with its writer's end.
fn bare_fill(dir: &std::path::Path) -> (Arc<Fill>, fetch::Publisher) {
    let (tx, rx) = watch::channel(State::Waiting);
    let budget = Arc::new(Budget::new(1 << 20));
    let fill = Arc::new(Fill {
        id: random_id(),
        key: FillKey::new("s", "k", "u", &[]),
        state: rx,
        spool: Arc::new(Spool::create(dir, budget).unwrap()),
        readers: AtomicUsize::new(0),
        departures: AtomicUsize::new(0),
        holds: AtomicUsize::new(1),
        unattended: AtomicBool::new(false),
        background: false,
        stores: true,
        cancel: tokio::sync::Notify::new(),
        fills: Weak::new(),
    });
    (fill, fetch::Publisher::new(tx))
}

#[tokio::test]
async fn a_dropped_writer_is_an_error_never_an_end() {
    let dir = tempfile::tempdir().unwrap();
    let (fill, publisher) = bare_fill(dir.path());
    let head = Arc::new(Head {
        headers: vec![],
        len: Some(10),
    });
    fill.spool.write_at(0, b"01234", false).unwrap();
    publisher.set(State::Body { head, written: 5 });
    let mut c = Cursor::new(fill.clone(), 0);
    assert_eq!(&c.next(64).await.unwrap().unwrap()[..], b"01234");
    // The writer goes away (error, panic, cancel) mid-body.
    let waiting = tokio::spawn(async move { c.next(64).await });
    drop(publisher);
    assert!(waiting.await.unwrap().is_err());
    assert!(matches!(fill.state(), State::Failed(_)));
    // A reader that arrives later gets the error too.
    assert!(Cursor::new(fill, 0).next(64).await.is_err());
}

#[tokio::test]
async fn a_reader_follows_the_live_edge_to_a_verified_end() {
    let dir = tempfile::tempdir().unwrap();
    let (fill, publisher) = bare_fill(dir.path());
    let head = Arc::new(Head {
        headers: vec![],
        len: Some(6),
    });
    let mut c = Cursor::new(fill.clone(), 0);
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(b) = c.next(4).await.unwrap() {
            got.extend_from_slice(&b);
        }
        got
    });
    for (i, part) in [&b"abc"[..], b"def"].iter().enumerate() {
        fill.spool.write_at(3 * i as u64, part, false).unwrap();
        publisher.set(State::Body {
            head: head.clone(),
            written: 3 * (i as u64 + 1),
        });
        tokio::task::yield_now().await;
    }
    publisher.set(State::Done { head, len: 6 });
    assert_eq!(reader.await.unwrap(), b"abcdef");
}

#[test]
fn racing_starts_make_one_fill() {
    // An origin that accepts and never answers: the fill stays live.
    let origin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = origin.local_addr().unwrap().port();
    let spool = tempfile::tempdir().unwrap();
    let cfg = FillConfig {
        spool_dir: spool.path().to_path_buf(),
        ..FillConfig::default()
    };
    let fills = Fills::start(&cfg).unwrap();
    let url = crate::config::parse_origin_url(&format!("http://127.0.0.1:{port}/")).unwrap();
    let job = || FetchJob {
        fill_key: FillKey::new("s", "k", "u", &[]),
        key: "k".into(),
        primary: crate::mirror::origin_target(&url, "k", None),
        secondary: None,
        headers: vec![],
        auth: None,
        secondary_auth: None,
        follow_redirect: false,
        timeout: Duration::from_secs(30),
        check_md5: false,
        store: None,
        metrics: None,
        request_id: None,
    };
    let got: Vec<(String, bool)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let (att, started) = fills.join_or_start(job()).unwrap();
                    (att.fill.id.clone(), started)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(got.iter().all(|(i, _)| *i == got[0].0), "{got:?}");
    // One of them started it; the access log says `fill` for that one
    // only (it said so for every request whose bucket 404 came first).
    assert_eq!(
        got.iter().filter(|(_, started)| *started).count(),
        1,
        "{got:?}"
    );
    assert!(fills.any_live() && fills.has_key("k"));
    let other = FillKey::new("other-site", "k", "u", &[]);
    assert!(fills.join(&other).is_none());

    // A holder whose task panics still lets go (its claim is a guard): the
    // fill leaves the registry when the last claim is gone, instead of
    // every later GET joining a fill that never finishes.
    let fill = fills.join(&job().fill_key).unwrap().fill.clone();
    let panics = |claim: Hold| {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _claim = claim;
            panic!("a write-back task panicked");
        }));
        assert!(r.is_err());
    };
    fill.holds.fetch_add(1, Ordering::AcqRel);
    panics(Hold::first(fills.clone(), fill.clone()));
    assert!(fills.has_key("k"), "the fetch task's claim keeps it");
    // Standing in for the fetch task's own claim (it waits on the origin).
    panics(Hold::first(fills.clone(), fill.clone()));
    assert!(!fills.has_key("k") && !fills.any_live());
    drop(origin);
}

#[test]
fn fill_keys_separate_sites_and_passed_headers() {
    let hv = |k: &str, v: &str| (k.parse().unwrap(), http::HeaderValue::from_str(v).unwrap());
    let h = |v: &str| vec![hv("x-variant", v)];
    let a = FillKey::new("a", "k", "http://o/k", &h("1"));
    assert_eq!(a, FillKey::new("a", "k", "http://o/k", &h("1")));
    assert_ne!(a, FillKey::new("b", "k", "http://o/k", &h("1")));
    assert_ne!(a, FillKey::new("a", "k", "http://o/k", &h("2")));
    assert_ne!(a, FillKey::new("a", "k", "http://o/k?q", &h("1")));
    let split = |k: &str, v: &str| vec![hv(k, v)];
    assert_ne!(
        FillKey::new("a", "k", "u", &split("ab", "c")),
        FillKey::new("a", "k", "u", &split("a", "bc"))
    );
}

#[tokio::test]
async fn the_last_byte_waits_for_the_checks() {
    let dir = tempfile::tempdir().unwrap();
    let (fill, publisher) = bare_fill(dir.path());
    let head = Arc::new(Head {
        headers: vec![],
        len: Some(4),
    });
    fill.spool.write_at(0, b"abcd", false).unwrap();
    // Every byte is in, not yet verified.
    publisher.set(State::Body { head, written: 4 });
    let mut c = Cursor::new(fill, 0);
    assert_eq!(&c.next(64).await.unwrap().unwrap()[..], b"abc");
    let last = tokio::spawn(async move { c.next(64).await });
    tokio::task::yield_now().await;
    // The MD5 check fails: the reader never gets a complete body.
    publisher.set(State::Failed("MD5 mismatch".into()));
    assert!(last.await.unwrap().is_err());
}
