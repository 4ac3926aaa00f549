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

/// S3's bound on an object's user metadata: the bytes of every name
/// (without `x-amz-meta-`) and value together.
const USER_METADATA_BYTES: usize = 2048;

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
    let tag = (crate::proxy::TAG_META.to_string(), job.tag.clone());
    let meta: usize = h
        .iter()
        .chain(std::iter::once(&tag))
        .filter_map(|(k, v)| Some(k.strip_prefix("x-amz-meta-")?.len() + v.len()))
        .sum();
    if meta <= USER_METADATA_BYTES {
        h.push(tag);
    } else {
        // A long non-ASCII key's origin URL, encoded, can pass S3's bound
        // (AWS refuses the PUT with MetadataTooLarge): the object is worth
        // more than its `x-oss-tag`.
        log::info!(
            "write-back key={:?}: x-oss-tag left out ({meta} bytes of metadata, S3 takes {USER_METADATA_BYTES})",
            job.key
        );
    }
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

/// One AbortMultipartUpload: Ok(true) aborted, Ok(false) already gone
/// (`NoSuchUpload`: aborted, expired, or completed meanwhile).
pub async fn abort_once(job: &Job, upload_id: &str) -> Result<bool, WriteBackError> {
    let q = format!(
        "{}?uploadId={}",
        job.bucket.object_path(&job.key),
        enc(upload_id)
    );
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
        Ok(_) => Ok(true),
        Err(WriteBackError::Bucket(404, _)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Aborts a failed multipart upload, so its parts don't linger (and cost).
/// Retried with backoff; a final failure is logged, and the bucket's
/// `AbortIncompleteMultipartUpload` lifecycle rule is the safety net.
pub async fn abort(job: &Job, upload_id: &str) {
    let mut pause = ABORT_BACKOFF;
    for attempt in 1..=ABORT_ATTEMPTS {
        match abort_once(job, upload_id).await {
            Ok(_) => return,
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

/// At most `max` bytes of a bucket's error text, cut at a character
/// boundary (the text may echo a non-ASCII key: `String::truncate` in the
/// middle of a character panics).
fn clip(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
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
        .map_err(WriteBackError::Stalled)?
        .map_err(|e| WriteBackError::Http(crate::errors::chain(&e)))?;
    job.bucket.metrics.bucket_request(op, started.elapsed());
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let text = resp.text().await.unwrap_or_default();
        if already_exists(status, &text) {
            return Err(WriteBackError::AlreadyExists);
        }
        return Err(WriteBackError::Bucket(status, clip(text, 500)));
    }
    Ok(resp)
}

/// A bucket answer's body (XML documents are small).
async fn body_text(resp: reqwest::Response) -> Result<String, WriteBackError> {
    resp.text()
        .await
        .map_err(|e| WriteBackError::Http(e.to_string()))
}

#[cfg(test)]
#[path = "s3_tests.rs"]
mod tests;
