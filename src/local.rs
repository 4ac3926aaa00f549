//! The embedded local-disk bucket (`bucket: { local: ./dir }`): an
//! S3-compatible endpoint (s3s + s3s-fs) served in-process on an ephemeral
//! loopback port. The proxy reaches it through the same signed upstream
//! path as a real bucket, so the quickstart exercises the real code.
//!
//! Layout: the folder `./data/assets` is bucket `assets`, so a file put in
//! the folder is an object of the bucket. s3s-fs wants `<root>/<bucket>`
//! and keeps its metadata and temporary files in `<root>`, so each bucket
//! gets a root of its own beside the folder, `./data/.assets.origin-pull/`,
//! holding one symlink `assets` to the folder. Sharing the parent as the
//! root (as before) let one bucket's endpoint reach every sibling folder.
//! [`guard`] keeps every key inside the folder.

mod guard;

use crate::config::{Addressing, CredentialSource, Credentials, Endpoint, RemoteBucket};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("local bucket {0}: {1}")]
    Setup(String, String),
}

/// S3 bucket naming rules, which s3s enforces.
pub fn valid_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
}

/// The bucket's own s3s-fs root: `<parent>/.<name>.origin-pull/`, with the
/// symlink `<name>` → the folder (re-made when it points elsewhere, e.g.
/// after the folder moved).
fn private_root(dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    let parent = dir
        .parent()
        .ok_or_else(|| std::io::Error::other("folder has no parent"))?;
    let root = parent.join(format!(".{name}.origin-pull"));
    std::fs::create_dir_all(&root)?;
    let link = root.join(name);
    match std::fs::read_link(&link) {
        Ok(target) if target == dir => {}
        Ok(_) => {
            std::fs::remove_file(&link)?;
            std::os::unix::fs::symlink(dir, &link)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::os::unix::fs::symlink(dir, &link)?;
        }
        Err(e) => return Err(e),
    }
    Ok(root)
}

/// Fresh credentials per process from the OS random generator: the
/// endpoint listens on loopback, where any local user could try keys.
fn random_credentials() -> Result<Credentials, getrandom::Error> {
    let mut bytes = [0u8; 30];
    getrandom::fill(&mut bytes)?;
    let hex = hex::encode(bytes);
    Ok(Credentials {
        access_key_id: format!("OPLOCAL{}", hex[..13].to_ascii_uppercase()),
        secret_access_key: hex[20..60].to_string(),
        session_token: None,
    })
}

/// A running embedded endpoint. Dropping the last `Arc` stops it: the
/// accept loop ends and its thread exits once open connections close.
#[derive(Debug)]
pub struct LocalRun {
    bucket: RemoteBucket,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl LocalRun {
    /// How the proxy reaches this endpoint.
    pub fn bucket(&self) -> &RemoteBucket {
        &self.bucket
    }
}

/// The embedded endpoints by folder, so a reload that keeps a `local:`
/// bucket keeps its endpoint (and the write-backs going to it).
#[derive(Default)]
pub struct LocalBuckets {
    running: std::sync::Mutex<std::collections::HashMap<PathBuf, std::sync::Weak<LocalRun>>>,
}

impl LocalBuckets {
    /// The running endpoint for `dir`, started when none is.
    pub fn start(&self, dir: &Path) -> Result<std::sync::Arc<LocalRun>, LocalError> {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        running.retain(|_, w| w.strong_count() > 0);
        if let Some(run) = running.get(dir).and_then(std::sync::Weak::upgrade) {
            return Ok(run);
        }
        let run = std::sync::Arc::new(start(dir)?);
        running.insert(dir.to_path_buf(), std::sync::Arc::downgrade(&run));
        Ok(run)
    }
}

/// Starts the endpoint for `dir` on its own thread and runtime.
fn start(dir: &Path) -> Result<LocalRun, LocalError> {
    let setup =
        |e: &dyn std::fmt::Display| LocalError::Setup(dir.display().to_string(), e.to_string());
    std::fs::create_dir_all(dir).map_err(|e| setup(&e))?;
    let dir = dir.canonicalize().map_err(|e| setup(&e))?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| valid_bucket_name(n))
        .ok_or_else(|| setup(&"folder name is not a valid bucket name"))?
        .to_string();
    let root = private_root(&dir, &name).map_err(|e| setup(&e))?;
    let fs = s3s_fs::FileSystem::new(&root).map_err(|e| setup(&format!("{e:?}")))?;
    let credentials = random_credentials().map_err(|e| setup(&e))?;

    let mut builder = S3ServiceBuilder::new(guard::Guarded {
        inner: fs,
        bucket: name.clone(),
        dir: dir.clone(),
    });
    builder.set_auth(SimpleAuth::from_single(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.clone(),
    ));
    let service = builder.build();

    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| setup(&e))?;
    listener.set_nonblocking(true).map_err(|e| setup(&e))?;
    let port = listener.local_addr().map_err(|e| setup(&e))?.port();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("local-bucket")
        .enable_all()
        .build()
        .map_err(|e| setup(&e))?;
    std::thread::Builder::new()
        .name("local-bucket".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        log::error!("local bucket listener: {e}");
                        return;
                    }
                };
                let http = ConnBuilder::new(TokioExecutor::new());
                let serve = accept_loop(
                    || async { listener.accept().await.map(|(s, _)| Some(s)) },
                    |socket| {
                        let conn = http
                            .serve_connection(TokioIo::new(socket), service.clone())
                            .into_owned();
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                    },
                    tokio::time::sleep,
                );
                // Stopped when no bucket uses this endpoint any more.
                tokio::select! {
                    _ = serve => {}
                    _ = &mut stop_rx => {}
                }
            })
        })
        .map_err(|e| setup(&e))?;
    log::info!(
        "embedded bucket `{name}` over {} on 127.0.0.1:{port}",
        dir.display()
    );
    let bucket = RemoteBucket {
        endpoint: Endpoint {
            tls: false,
            host: "127.0.0.1".into(),
            port,
        },
        name,
        region: "us-east-1".into(),
        addressing: Addressing::Path,
        credentials: CredentialSource::Env(credentials),
        tls: crate::tls::TrustRoots::platform(),
    };
    Ok(LocalRun {
        bucket,
        _stop: stop_tx,
    })
}

/// First and longest pause after failed accepts.
const BACKOFF_FIRST: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Accepts connections until `accept` yields `None` (tests only). A failed
/// accept pauses, twice as long each time in a row (up to a second): the
/// usual causes, EMFILE/ENFILE (out of file descriptors), last until some
/// connection closes, and retrying at once would spin a core and starve
/// the very connections that could free one.
async fn accept_loop<S, A, AF, P, PF>(mut accept: A, mut serve: impl FnMut(S), mut pause: P)
where
    A: FnMut() -> AF,
    AF: Future<Output = std::io::Result<Option<S>>>,
    P: FnMut(Duration) -> PF,
    PF: Future<Output = ()>,
{
    let mut next = BACKOFF_FIRST;
    loop {
        match accept().await {
            Ok(Some(socket)) => {
                next = BACKOFF_FIRST;
                serve(socket);
            }
            Ok(None) => return,
            Err(e) => {
                if next == BACKOFF_FIRST {
                    log::warn!("embedded bucket: accept failed ({e}); backing off");
                }
                pause(next).await;
                next = (next * 2).min(BACKOFF_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn accept_errors_back_off_and_success_resets() {
        // Script of accept results: 12 EMFILEs, a connection, 2 EMFILEs, end.
        let mut script: Vec<std::io::Result<Option<u32>>> = Vec::new();
        for _ in 0..12 {
            script.push(Err(std::io::Error::from_raw_os_error(24)));
        }
        script.push(Ok(Some(7)));
        for _ in 0..2 {
            script.push(Err(std::io::Error::from_raw_os_error(24)));
        }
        script.push(Ok(None));
        script.reverse();
        let script = RefCell::new(script);
        let pauses = RefCell::new(Vec::new());
        let served = RefCell::new(Vec::new());
        let run = accept_loop(
            || {
                let next = script.borrow_mut().pop().unwrap_or(Ok(None));
                std::future::ready(next)
            },
            |s| served.borrow_mut().push(s),
            |d| {
                pauses.borrow_mut().push(d.as_millis() as u64);
                std::future::ready(())
            },
        );
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(run);
        assert_eq!(served.into_inner(), vec![7]);
        assert_eq!(
            pauses.into_inner(),
            vec![5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000, 1000, 5, 10]
        );
    }

    #[test]
    fn credentials_are_random_and_well_formed() {
        let a = random_credentials().unwrap();
        let b = random_credentials().unwrap();
        assert_ne!(a.secret_access_key, b.secret_access_key);
        assert_ne!(a.access_key_id, b.access_key_id);
        assert_eq!(a.secret_access_key.len(), 40);
        assert!(a.access_key_id.starts_with("OPLOCAL") && a.access_key_id.len() == 20);
    }
}
