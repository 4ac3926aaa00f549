//! The S3 requests of a write-back: PUT, multipart create / part /
//! complete / abort, each signed, each under the idle limit.
//!
//! Never overwrite: the PUT and CompleteMultipartUpload carry
//! `If-None-Match: *`, so an object written into the bucket directly
//! while the mirror streamed (a migration tool, say) is kept. Buckets that
//! honour it (AWS S3, the embedded s3s bucket) answer 412, or 409
//! `ConditionalRequestConflict` when a concurrent write raced ours; both
//! mean "already there", not a failure. Buckets that ignore the header
//! (Garage 2.x) simply overwrite, as before.

use super::idle::{within_idle_limit, Progress};
use crate::bucket::Payload;
use crate::metrics::BucketOp;
use crate::writeback::{Job, WriteBackError};
use bytes::Bytes;
use reqwest::Method;
use std::time::Duration;

/// Attempts at aborting a failed multipart upload.
const ABORT_ATTEMPTS: u32 = 3;
/// Pause before the second attempt; doubled for each later one.
const ABORT_BACKOFF: Duration = Duration::from_millis(500);

fn object_headers(job: &Job) -> Vec<(String, String)> {
    // S3-compatible buckets keep only their standard headers on PUT: the
    // CORS header OSS stores goes in user metadata, restored on hits.
    let mut h: Vec<(String, String)> = job
        .headers
        .iter()
        .map(|(k, v)| match k.as_str() {
            "access-control-allow-origin" => (crate::proxy::ACAO_META.to_string(), v.clone()),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    h.push(("x-amz-meta-x-oss-tag".into(), job.tag.clone()));
    h
}

fn create_only() -> (String, String) {
    ("if-none-match".into(), "*".into())
}

pub async fn put_object(
    job: &Job,
    body: reqwest::Body,
    len: u64,
    progress: &Progress,
) -> Result<(), WriteBackError> {
    let mut headers = object_headers(job);
    headers.push(create_only());
    if let Some(md5) = job.md5 {
        use base64::Engine;
        headers.push((
            "content-md5".into(),
            base64::engine::general_purpose::STANDARD.encode(md5),
        ));
    }
    let path = job.bucket.object_path(&job.key);
    send(job, Method::PUT, &path, &headers, body, Some(len), progress).await?;
    Ok(())
}

#[derive(serde::Deserialize)]
struct InitiateMultipartUploadResult {
    #[serde(rename = "UploadId")]
    upload_id: String,
}

pub async fn create(job: &Job) -> Result<String, WriteBackError> {
    let q = format!("{}?uploads=", job.bucket.object_path(&job.key));
    let resp = send(
        job,
        Method::POST,
        &q,
        &object_headers(job),
        reqwest::Body::from(""),
        Some(0),
        &Progress::bucket(),
    )
    .await?;
    let text = body_text(resp).await?;
    let r: InitiateMultipartUploadResult = quick_xml::de::from_str(&text).map_err(|e| {
        WriteBackError::Bucket(200, format!("unreadable CreateMultipartUpload answer: {e}"))
    })?;
    Ok(r.upload_id)
}

pub async fn upload_part(
    job: &Job,
    upload_id: &str,
    n: usize,
    body: reqwest::Body,
    len: u64,
    progress: &Progress,
) -> Result<String, WriteBackError> {
    let q = format!(
        "{}?partNumber={n}&uploadId={}",
        job.bucket.object_path(&job.key),
        enc(upload_id)
    );
    let resp = send(job, Method::PUT, &q, &[], body, Some(len), progress).await?;
    resp.headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| WriteBackError::Bucket(200, "UploadPart answer without ETag".into()))
}

pub async fn complete(job: &Job, upload_id: &str, etags: &[String]) -> Result<(), WriteBackError> {
    use quick_xml::escape::escape;
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (i, etag) in etags.iter().enumerate() {
        xml.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
            i + 1,
            escape(etag.as_str())
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    let q = format!(
        "{}?uploadId={}",
        job.bucket.object_path(&job.key),
        enc(upload_id)
    );
    let len = xml.len() as u64;
    let resp = send(
        job,
        Method::POST,
        &q,
        &[create_only()],
        reqwest::Body::from(xml),
        Some(len),
        &Progress::bucket(),
    )
    .await?;
    // S3 can answer 200 with an error document for Complete.
    let text = body_text(resp).await?;
    if text.contains("<Error>") {
        if already_exists(409, &text) || text.contains("<Code>PreconditionFailed</Code>") {
            return Err(WriteBackError::AlreadyExists);
        }
        return Err(WriteBackError::Bucket(200, text));
    }
    Ok(())
}

/// Aborts a failed multipart upload, so its parts don't linger (and cost).
/// Retried with backoff; a final failure is logged, and the bucket's
/// `AbortIncompleteMultipartUpload` lifecycle rule is the safety net.
pub async fn abort(job: &Job, upload_id: &str) {
    let q = format!(
        "{}?uploadId={}",
        job.bucket.object_path(&job.key),
        enc(upload_id)
    );
    let mut pause = ABORT_BACKOFF;
    for attempt in 1..=ABORT_ATTEMPTS {
        let r = send(
            job,
            Method::DELETE,
            &q,
            &[],
            reqwest::Body::from(""),
            None,
            &Progress::bucket(),
        )
        .await;
        match r {
            Ok(_) => return,
            // NoSuchUpload: already gone (aborted or expired).
            Err(WriteBackError::Bucket(404, _)) => return,
            Err(e) if attempt < ABORT_ATTEMPTS => {
                log::warn!(
                    "write-back abort key={:?} upload_id={upload_id} attempt {attempt}/{ABORT_ATTEMPTS} failed: {e}; retrying",
                    job.key
                );
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(e) => log::error!(
                "write-back abort key={:?} upload_id={upload_id} failed after {ABORT_ATTEMPTS} attempts: {e}; \
                 its parts stay until the bucket's AbortIncompleteMultipartUpload lifecycle rule removes them",
                job.key
            ),
        }
    }
}

fn enc(s: &str) -> String {
    crate::key::encode_component(s)
}

/// Whether an error answer means the object is already there: 412 to
/// `If-None-Match: *`, or 409 when a concurrent write of the same key won.
pub fn already_exists(status: u16, body: &str) -> bool {
    status == 412 || (status == 409 && body.contains("ConditionalRequestConflict"))
}

/// A body of `data` handed over in slices, each one counted as progress:
/// one large buffer would otherwise show no progress until all of it was
/// written.
pub fn body_of(data: Bytes, progress: &Progress) -> reqwest::Body {
    const SLICE: usize = 256 << 10;
    let progress = progress.clone();
    let stream = futures_util::stream::unfold(data, move |mut left| {
        let progress = progress.clone();
        async move {
            if left.is_empty() {
                return None;
            }
            progress.touch();
            let chunk = left.split_to(left.len().min(SLICE));
            Some((Ok::<_, std::io::Error>(chunk), left))
        }
    });
    reqwest::Body::wrap_stream(stream)
}

/// Which S3 operation a write-back request is (for its duration metric).
fn op_of(method: &Method, path_and_query: &str) -> BucketOp {
    let query = path_and_query.split_once('?').map_or("", |(_, q)| q);
    match *method {
        Method::POST if query.starts_with("uploads") => BucketOp::CreateMultipart,
        Method::POST => BucketOp::CompleteMultipart,
        Method::DELETE => BucketOp::AbortMultipart,
        Method::PUT if query.contains("partNumber=") => BucketOp::UploadPart,
        Method::HEAD => BucketOp::Head,
        Method::GET => BucketOp::Get,
        _ => BucketOp::Put,
    }
}

/// One signed request to the bucket, by its host name; non-2xx answers are
/// errors. Fails when the bucket makes no progress for the idle limit.
pub async fn send(
    job: &Job,
    method: Method,
    path_and_query: &str,
    headers: &[(String, String)],
    body: reqwest::Body,
    len: Option<u64>,
    progress: &Progress,
) -> Result<reqwest::Response, WriteBackError> {
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let signed = job
        .bucket
        .sign(method.as_str(), path_and_query, &refs, Payload::Unsigned)
        .map_err(|e| WriteBackError::Sign(e.to_string()))?;
    let url = format!("{}{}", job.bucket.base_url(), path_and_query);
    let method_name = method.clone();
    // The signed Host is the one sent (reqwest would derive the same).
    let mut req = job
        .bucket
        .client()
        .request(method, url)
        .header("host", job.bucket.host());
    for (k, v) in headers.iter().chain(signed.iter()) {
        req = req.header(k.as_str(), v.as_str());
    }
    if let Some(len) = len {
        req = req.header("content-length", len.to_string());
    }
    progress.touch();
    let (op, started) = (
        op_of(&method_name, path_and_query),
        std::time::Instant::now(),
    );
    let resp = within_idle_limit(req.body(body).send(), progress)
        .await
        .map_err(|limit| {
            WriteBackError::Http(format!(
                "the bucket made no progress for {} s",
                limit.as_secs_f32()
            ))
        })?
        .map_err(|e| WriteBackError::Http(error_chain(&e)))?;
    job.bucket.metrics.bucket_request(op, started.elapsed());
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let mut text = resp.text().await.unwrap_or_default();
        if already_exists(status, &text) {
            return Err(WriteBackError::AlreadyExists);
        }
        text.truncate(500);
        return Err(WriteBackError::Bucket(status, text));
    }
    Ok(resp)
}

/// reqwest's error with its causes (the TLS or connect reason is in
/// them, not in the top-level message).
fn error_chain(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A bucket answer's body (XML documents are small).
async fn body_text(resp: reqwest::Response) -> Result<String, WriteBackError> {
    resp.text()
        .await
        .map_err(|e| WriteBackError::Http(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::Bucket;
    use crate::config::{Addressing, Credentials, Endpoint, RemoteBucket};
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
            credentials: Credentials {
                access_key_id: "k".into(),
                secret_access_key: "s".into(),
            },
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
        matches!(r, Err(WriteBackError::Http(m)) if m.contains("no progress"))
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
}
