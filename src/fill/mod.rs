//! Shared fills: one origin fetch per object at a time, whoever asks and
//! whoever leaves (SPEC section 2, `FILL-DESIGN.md`).
//!
//! A [`Fill`] is one origin fetch, run by a task of its own on the fill
//! runtime (not by any client), that writes the body into a [`Spool`] and
//! publishes its progress on a `watch` channel. Clients read the spool
//! through the fill peer (`serve`: a small HTTP server on a Unix socket
//! that Pingora proxies to like any upstream, so every client keeps its
//! keep-alive connection and a failed fill reaches it as an upstream body
//! error, never as a clean end). The write-back reads the same spool at
//! the bucket's pace. The [`Fills`] registry maps a [`FillKey`] to the
//! live fill so later clients join it instead of asking the bucket.

mod answers;
mod direct;
mod fetch;
mod hold;
pub mod policy;
pub mod range;
mod reader;
mod serve;
mod spool;
mod state;
mod unattended;

use crate::config::FillConfig;
pub use answers::ParkedAnswer;
pub use fetch::FetchJob;
use hold::Hold;
pub use reader::{Attached, Cursor};
pub use serve::{ANSWERED, ANSWER_PATH, OUTCOME, REQUEST_ID};
use spool::{Budget, Spool};
pub use state::{FillKey, Head, Outcome, State};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One live fill.
#[derive(Debug)]
pub struct Fill {
    /// Unguessable id: the fill peer's path is `/fill/<id>`.
    pub id: String,
    pub key: FillKey,
    state: watch::Receiver<State>,
    spool: Arc<Spool>,
    readers: AtomicUsize,
    /// Times the last reader left (a grace timer acts on the latest only).
    departures: AtomicUsize,
    /// The fetch, plus the write-back while one runs: the fill leaves the
    /// registry when the last of them ends (or at once when it fails).
    holds: AtomicUsize,
    /// Counted in `Fills::unattended` while nobody reads it.
    unattended: AtomicBool,
    /// Background fills (`mode: async`) are never cancelled for size.
    background: bool,
    /// It writes the object back (not while the bucket is unreachable):
    /// one that doesn't is of no use once nobody reads it.
    stores: bool,
    cancel: tokio::sync::Notify,
    fills: Weak<Fills>,
}

impl Drop for Fill {
    fn drop(&mut self) {
        if let Some(f) = self.fills.upgrade() {
            lock(&f.inner).by_id.remove(&self.id);
        }
    }
}

impl Fill {
    /// Whether the object is written back (see `stores`).
    pub fn stores(&self) -> bool {
        self.stores
    }

    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }

    fn subscribe(&self) -> watch::Receiver<State> {
        self.state.clone()
    }
}

/// The registry of live fills, the fill runtime and the fill peer.
#[derive(Debug)]
pub struct Fills {
    cfg: FillConfig,
    /// Entries in `by_key`: the cheap check a hit pays.
    live: AtomicUsize,
    inner: Mutex<Inner>,
    budget: Arc<Budget>,
    unattended: AtomicUsize,
    rt: tokio::runtime::Handle,
    socket: PathBuf,
    /// One origin client per set of trust roots (a rule's `tls.ca_file`);
    /// Pingora's bucket connector trusts the same roots (`crate::tls`).
    /// Per trust roots and "public addresses only" (`policy::PublicOnly`).
    origin_clients: Mutex<Vec<(crate::tls::TrustRoots, bool, reqwest::Client)>>,
    /// Error answers waiting for the fill peer to write them.
    answers: answers::Answers,
}

#[derive(Debug, Default)]
struct Inner {
    by_key: HashMap<FillKey, Arc<Fill>>,
    by_id: HashMap<String, Weak<Fill>>,
    /// Bucket keys with a live fill (any site, any variant), so a hit
    /// whose key has none skips building its `FillKey`.
    names: HashMap<String, usize>,
    /// Fills whose object was stored moments ago: a bucket 404 that was
    /// in flight while the upload committed re-reads the bucket once
    /// instead of starting a second fill.
    stored: HashMap<FillKey, Instant>,
}

/// How long a committed fill is remembered for that re-read.
const STORED_MEMORY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum FillError {
    #[error("fill runtime: {0}")]
    Setup(#[from] std::io::Error),
    #[error("fill client: {0}")]
    Client(String),
}

impl Fills {
    /// The fill runtime (2 threads, never a Pingora worker's), which also
    /// runs the plain path's uploads.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.rt
    }

    /// Starts the fill runtime and the fill peer's socket.
    pub fn start(cfg: &FillConfig) -> Result<Arc<Fills>, FillError> {
        let origin_client = origin_client(&crate::tls::TrustRoots::platform(), false)?;
        let (rt, socket, listener) = serve::bind()?;
        let fills = Arc::new(Fills {
            cfg: cfg.clone(),
            live: AtomicUsize::new(0),
            inner: Mutex::new(Inner::default()),
            budget: Arc::new(Budget::new(cfg.max_spool_bytes)),
            unattended: AtomicUsize::new(0),
            rt,
            socket,
            origin_clients: Mutex::new(vec![(
                crate::tls::TrustRoots::platform(),
                false,
                origin_client,
            )]),
            answers: answers::Answers::default(),
        });
        fills
            .rt
            .spawn(serve::serve(listener, Arc::downgrade(&fills)));
        Ok(fills)
    }

    /// The origin client trusting `roots`; with `public_only`, one that
    /// connects to public addresses only (a redirect hop that must not lead
    /// inside, see `policy::PublicOnly`).
    fn origin_client(
        &self,
        roots: &crate::tls::TrustRoots,
        public_only: bool,
    ) -> Result<reqwest::Client, FillError> {
        let mut clients = lock(&self.origin_clients);
        let found = clients
            .iter()
            .find(|(r, p, _)| r == roots && *p == public_only);
        if let Some((_, _, c)) = found {
            return Ok(c.clone());
        }
        let c = origin_client(roots, public_only)?;
        clients.push((roots.clone(), public_only, c.clone()));
        Ok(c)
    }

    /// The fill peer's socket path.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// Removes the fill peer's socket and its private folder, as the
    /// process ends (it exits without running destructors): each stop
    /// left one `origin-pull-<pid>-*` folder in the temp dir.
    pub fn remove_socket(&self) {
        let _ = std::fs::remove_file(&self.socket);
        if let Some(dir) = self.socket.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }

    /// Whether any fill is live (one atomic load: what a hit pays).
    pub fn any_live(&self) -> bool {
        self.live.load(Ordering::Acquire) > 0
    }

    /// Whether some live fill is for bucket key `key` (cheap pre-check).
    pub fn has_key(&self, key: &str) -> bool {
        lock(&self.inner).names.contains_key(key)
    }

    /// Whether the object of `key` was stored by a fill moments ago.
    pub fn recently_stored(&self, key: &FillKey) -> bool {
        lock(&self.inner)
            .stored
            .get(key)
            .is_some_and(|at| at.elapsed() < STORED_MEMORY)
    }

    /// Joins the live fill for `key`, if there is one.
    pub fn join(&self, key: &FillKey) -> Option<Attached> {
        let fill = lock(&self.inner).by_key.get(key)?.clone();
        Some(Attached::attach(fill))
    }

    /// Joins the live fill for `job`'s key or starts one (true: started
    /// here). `None` when no fill can take it (spool budget or disk):
    /// serve it the plain way.
    pub fn join_or_start(self: &Arc<Self>, job: FetchJob) -> Option<(Attached, bool)> {
        self.start_fill(job, false)
            .map(|(fill, started)| (Attached::attach(fill), started))
    }

    /// `mode: async`: starts (or finds) the fill with nobody reading it.
    pub fn start_background(self: &Arc<Self>, job: FetchJob) -> bool {
        if self.unattended.load(Ordering::Acquire) >= self.cfg.max_unattended {
            return false;
        }
        match self.start_fill(job, true) {
            Some((fill, _)) => {
                if fill.readers.load(Ordering::Acquire) == 0 {
                    self.left_alone(&fill);
                }
                true
            }
            None => false,
        }
    }

    fn start_fill(self: &Arc<Self>, job: FetchJob, background: bool) -> Option<(Arc<Fill>, bool)> {
        if let Some(f) = lock(&self.inner).by_key.get(&job.fill_key) {
            return Some((f.clone(), false));
        }
        if !self.budget.has_room() {
            return None;
        }
        // The spool file is made outside the registry lock: it is file
        // system work, and every hit takes that lock while fills live.
        let spool = match Spool::create(&self.cfg.spool_dir, self.budget.clone()) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                log::warn!("fill spool in {}: {e}", self.cfg.spool_dir.display());
                return None;
            }
        };
        let mut inner = lock(&self.inner);
        // Another miss of the same object may have started it meanwhile:
        // join that one (this spool, still empty, goes away).
        if let Some(f) = inner.by_key.get(&job.fill_key) {
            return Some((f.clone(), false));
        }
        let (tx, rx) = watch::channel(State::Waiting);
        let fill = Arc::new(Fill {
            id: random_id(),
            key: job.fill_key.clone(),
            state: rx,
            spool,
            readers: AtomicUsize::new(0),
            departures: AtomicUsize::new(0),
            holds: AtomicUsize::new(1),
            unattended: AtomicBool::new(false),
            background,
            stores: job.store.is_some(),
            cancel: tokio::sync::Notify::new(),
            fills: Arc::downgrade(self),
        });
        inner.by_key.insert(fill.key.clone(), fill.clone());
        inner.by_id.insert(fill.id.clone(), Arc::downgrade(&fill));
        *inner.names.entry(fill.key.key.clone()).or_default() += 1;
        self.live.fetch_add(1, Ordering::AcqRel);
        drop(inner);
        let me = self.clone();
        let f = fill.clone();
        self.rt.spawn(async move {
            fetch::run(me, f, job, fetch::Publisher::new(tx)).await;
        });
        Some((fill, true))
    }

    /// The write-back of `fill` committed its object.
    fn stored(&self, fill: &Fill) {
        let mut inner = lock(&self.inner);
        inner.stored.retain(|_, at| at.elapsed() < STORED_MEMORY);
        inner.stored.insert(fill.key.clone(), Instant::now());
    }

    /// One holder of `fill` (fetch or write-back) is done with it: see
    /// [`Hold`], the only caller.
    fn release(&self, fill: &Fill) {
        if fill.holds.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.retire(fill);
        }
    }

    /// Removes `fill` from the registry (if it is still the live one for
    /// its key): later requests go to the bucket again.
    fn retire(&self, fill: &Fill) {
        let mut inner = lock(&self.inner);
        let ours = inner
            .by_key
            .get(&fill.key)
            .is_some_and(|f| std::ptr::eq(Arc::as_ptr(f), fill));
        // Dropped after the lock is released (it may be the last `Arc`).
        let mut removed = None;
        if ours {
            removed = inner.by_key.remove(&fill.key);
            self.live.fetch_sub(1, Ordering::AcqRel);
            if let Some(n) = inner.names.get_mut(&fill.key.key) {
                *n -= 1;
                if *n == 0 {
                    inner.names.remove(&fill.key.key);
                }
            }
        }
        drop(inner);
        drop(removed);
        if fill.unattended.swap(false, Ordering::AcqRel) {
            self.unattended.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn by_id(&self, id: &str) -> Option<Arc<Fill>> {
        lock(&self.inner).by_id.get(id)?.upgrade()
    }
}

fn origin_client(
    roots: &crate::tls::TrustRoots,
    public_only: bool,
) -> Result<reqwest::Client, FillError> {
    let mut b = crate::tls::reqwest_client_builder(roots)
        // Hops are followed by the fill itself, under its policy.
        .redirect(reqwest::redirect::Policy::none())
        // Nothing but what the rule's header policy sends.
        .default_headers(http::HeaderMap::new())
        .pool_idle_timeout(Duration::from_secs(30));
    if public_only {
        // The addresses connected to are the checked ones; no proxy in
        // between (its address would be the one connected to).
        b = b.dns_resolver(Arc::new(policy::PublicOnly)).no_proxy();
    }
    b.build().map_err(|e| FillError::Client(e.to_string()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section leaves the maps consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// 128 random bits from the OS, hex.
fn random_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Never expected; the socket's folder is private anyway.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = t.to_le_bytes();
    }
    hex::encode(b)
}

#[cfg(test)]
mod tests;
