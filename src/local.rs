//! The embedded local-disk bucket (`bucket: { local: ./dir }`): an
//! S3-compatible endpoint (s3s + s3s-fs) served in-process on an ephemeral
//! loopback port. The proxy reaches it through the same signed upstream
//! path as a real bucket, so the quickstart exercises the real code.
//!
//! Layout: the folder `./data/assets` is bucket `assets` of an s3s-fs root
//! at `./data`, so a file put in the folder is an object of the bucket.

use crate::config::{Addressing, Credentials, Endpoint, RemoteBucket};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use sha2::{Digest, Sha256};
use std::path::Path;

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

/// Starts the endpoint for `dir` on its own thread and runtime, and returns
/// the bucket description the proxy should use for it.
pub fn start(dir: &Path) -> Result<RemoteBucket, LocalError> {
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
    let root = dir
        .parent()
        .ok_or_else(|| setup(&"folder has no parent"))?
        .to_path_buf();
    let fs = s3s_fs::FileSystem::new(&root).map_err(|e| setup(&format!("{e:?}")))?;

    // Fresh credentials per process: the endpoint is only for us.
    let seed = format!(
        "{:?}{}{:?}",
        std::time::SystemTime::now(),
        std::process::id(),
        dir
    );
    let digest = hex::encode(Sha256::digest(seed.as_bytes()));
    let access_key_id = format!("OPLOCAL{}", &digest[..13].to_ascii_uppercase());
    let secret_access_key = digest[20..60].to_string();

    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(
        access_key_id.clone(),
        secret_access_key.clone(),
    ));
    let service = builder.build();

    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| setup(&e))?;
    listener.set_nonblocking(true).map_err(|e| setup(&e))?;
    let port = listener.local_addr().map_err(|e| setup(&e))?.port();
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
                loop {
                    let Ok((socket, _)) = listener.accept().await else {
                        continue;
                    };
                    let conn = http
                        .serve_connection(TokioIo::new(socket), service.clone())
                        .into_owned();
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
            })
        })
        .map_err(|e| setup(&e))?;
    log::info!(
        "embedded bucket `{name}` over {} on 127.0.0.1:{port}",
        dir.display()
    );
    Ok(RemoteBucket {
        endpoint: Endpoint {
            tls: false,
            host: "127.0.0.1".into(),
            port,
        },
        name,
        region: "us-east-1".into(),
        addressing: Addressing::Path,
        credentials: Credentials {
            access_key_id,
            secret_access_key,
        },
        tls: crate::tls::TrustRoots::platform(),
    })
}
