//! Unit tests of the S3 calls of a write-back (`s3.rs`).

use super::*;
use crate::bucket::Bucket;
use crate::config::{Addressing, CredentialSource, Credentials, Endpoint, RemoteBucket};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn job_for(port: u16) -> Job {
    let cfg = RemoteBucket {
        endpoint: Endpoint {
            tls: false,
            host: "127.0.0.1".into(),
            port,
        },
        name: "b".into(),
        region: "us-east-1".into(),
        addressing: Addressing::Path,
        credentials: CredentialSource::Env(Credentials {
            access_key_id: "k".into(),
            secret_access_key: "s".into(),
            session_token: None,
        }),
        tls: crate::tls::TrustRoots::platform(),
    };
    let metrics = Arc::new(crate::metrics::SiteMetrics::new("test", 0));
    let bucket = Arc::new(Bucket::new(&cfg, metrics).unwrap());
    Job {
        bucket,
        key: "k".into(),
        headers: Vec::new(),
        tag: String::new(),
        expected_len: None,
        md5: None,
        request_id: None,
    }
}

fn is_stall(r: &Result<(), WriteBackError>) -> bool {
    matches!(r, Err(WriteBackError::Stalled(_)))
}

#[tokio::test]
async fn a_stalled_bucket_fails_the_request_after_the_idle_limit() {
    // Takes the connection and never reads: the body can't go out.
    let deaf = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = deaf.local_addr().unwrap().port();
    let held = std::thread::spawn(move || deaf.accept().map(|(s, _)| s));
    let job = job_for(port);
    let progress = Progress::with_limit(Duration::from_millis(300));
    let data = Bytes::from(vec![0u8; 64 << 20]);
    let len = data.len() as u64;
    let r = put_object(&job, body_of(data, &progress), len, &progress).await;
    assert!(is_stall(&r), "{r:?}");
    drop(held.join());

    // Reads everything and never answers.
    let mute = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = mute.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = mute.accept() {
            let _ = std::io::copy(&mut s, &mut std::io::sink());
        }
    });
    let job = job_for(port);
    let progress = Progress::with_limit(Duration::from_millis(300));
    let data = Bytes::from_static(b"small");
    let r = put_object(&job, body_of(data, &progress), 5, &progress).await;
    assert!(is_stall(&r), "{r:?}");
}

#[tokio::test]
async fn a_failed_abort_is_retried() {
    // Answers 500 to the first two requests, then 204.
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for conn in server.incoming().flatten() {
            let mut r = BufReader::new(&conn);
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let n = count.fetch_add(1, Ordering::SeqCst);
            let head = if n < 2 {
                "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
            };
            let _ = (&conn).write_all(head.as_bytes());
        }
    });
    abort(&job_for(port), "upload-1").await;
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

#[test]
fn precondition_answers_mean_already_there() {
    assert!(already_exists(412, ""));
    assert!(already_exists(
        409,
        "<Error><Code>ConditionalRequestConflict</Code></Error>"
    ));
    assert!(!already_exists(
        409,
        "<Error><Code>BucketNotEmpty</Code></Error>"
    ));
    assert!(!already_exists(403, ""));
    assert!(!already_exists(500, "PreconditionFailed"));
}

#[test]
fn error_text_is_clipped_at_a_character_boundary() {
    // 499 ASCII bytes, then a 3-byte character across byte 500.
    let text = format!("{}日本", "a".repeat(499));
    assert_eq!(clip(text.clone(), 500), "a".repeat(499));
    assert_eq!(clip("short".into(), 500), "short");
    assert_eq!(clip(text, 502).len(), 502);
}

#[test]
fn the_tag_is_left_out_rather_than_pass_s3s_metadata_bound() {
    let mut job = job_for(9);
    job.headers = vec![("access-control-allow-origin".into(), "*".into())];
    job.tag = format!("MIRROR {}", "%25E6".repeat(100));
    let names =
        |job: &Job| -> Vec<String> { object_headers(job).into_iter().map(|(k, _)| k).collect() };
    assert!(names(&job).contains(&"x-amz-meta-x-oss-tag".to_string()));
    // About 400 CJK characters of key: each byte is `%25XX` in the tag.
    job.tag = format!("MIRROR {}", "%25E6%2597%25A5".repeat(140));
    let kept = names(&job);
    assert!(
        !kept.contains(&"x-amz-meta-x-oss-tag".to_string()),
        "{kept:?}"
    );
    assert!(kept.contains(&"x-amz-meta-access-control-allow-origin".to_string()));
}
