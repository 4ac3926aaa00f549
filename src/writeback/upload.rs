//! Uploading one mirrored object: a single PUT for small objects, S3
//! multipart upload otherwise. Bodies stream straight from the tee when
//! the length is known; without a length (chunked origin) parts are
//! buffered, with one part uploading while the next fills.

use super::reader::Reader;
use super::{Job, WriteBackError};
use crate::bucket::Payload;
use bytes::{Bytes, BytesMut};
use reqwest::Method;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Objects up to this size go in one PUT.
const SINGLE_PUT_MAX: u64 = 8 << 20;
/// Part size (S3's minimum is 5 MiB); grown so no object needs more than
/// 10,000 parts.
const PART: u64 = 8 << 20;
const MAX_PARTS: u64 = 10_000;

type Shared = Arc<Mutex<(Reader, Option<WriteBackError>)>>;

pub(super) async fn run(job: &Job, reader: Reader) -> Result<u64, WriteBackError> {
    match job.expected_len {
        Some(len) if len <= SINGLE_PUT_MAX => {
            let shared: Shared = Arc::new(Mutex::new((reader, None)));
            let body = part_body(shared.clone(), len, true);
            let result = put_object(job, body, len).await;
            cause(&shared, result).await.map(|_| len)
        }
        Some(len) => multipart_streamed(job, reader, len).await,
        None => buffered(job, reader).await,
    }
}

/// Prefers the stream's own error (the real cause) over the HTTP error it
/// provoked.
async fn cause<T>(shared: &Shared, r: Result<T, WriteBackError>) -> Result<T, WriteBackError> {
    match r {
        Ok(v) => Ok(v),
        Err(e) => Err(shared.lock().await.1.take().unwrap_or(e)),
    }
}

/// A body of exactly `len` bytes taken from the reader. For the last part
/// the final chunk is released only after the end marker arrived and the
/// checks passed, so a bucket never receives a whole object that was not.
fn part_body(shared: Shared, len: u64, is_last: bool) -> reqwest::Body {
    let stream = futures_util::stream::unfold(
        (shared, len, false),
        move |(shared, mut left, done)| async move {
            if done {
                return None;
            }
            let mut g = shared.lock().await;
            let (reader, failure) = &mut *g;
            let step = if left == 0 {
                Ok(Bytes::new())
            } else {
                match reader.next(left as usize).await {
                    Ok(Some(chunk)) => Ok(chunk),
                    Ok(None) => Err(WriteBackError::Abandoned),
                    Err(e) => Err(e),
                }
            };
            let step = match step {
                Ok(chunk) => {
                    left -= chunk.len() as u64;
                    if left == 0 && is_last {
                        reader.finish().await.map(|_| chunk)
                    } else {
                        Ok(chunk)
                    }
                }
                Err(e) => Err(e),
            };
            let item = match step {
                Ok(chunk) => Ok(chunk),
                Err(e) => {
                    *failure = Some(e);
                    Err(std::io::Error::other("write-back stream failed"))
                }
            };
            let finished = left == 0 || item.is_err();
            drop(g);
            Some((item, (shared, left, finished)))
        },
    );
    reqwest::Body::wrap_stream(stream)
}

async fn multipart_streamed(job: &Job, reader: Reader, len: u64) -> Result<u64, WriteBackError> {
    let part = PART.max(len.div_ceil(MAX_PARTS));
    let upload_id = create(job).await?;
    let shared: Shared = Arc::new(Mutex::new((reader, None)));
    let parts = async {
        let mut etags = Vec::new();
        let mut offset = 0;
        while offset < len {
            let this = part.min(len - offset);
            let n = etags.len() + 1;
            let body = part_body(shared.clone(), this, offset + this == len);
            let etag = upload_part(job, &upload_id, n, body, this).await;
            etags.push(cause(&shared, etag).await?);
            offset += this;
        }
        complete(job, &upload_id, &etags).await
    }
    .await;
    finish_multipart(job, &upload_id, parts).await.map(|_| len)
}

async fn buffered(job: &Job, mut reader: Reader) -> Result<u64, WriteBackError> {
    let (first, ended) = fill(&mut reader).await?;
    if ended {
        let len = first.len() as u64;
        put_object(job, reqwest::Body::from(first), len).await?;
        return Ok(len);
    }
    let upload_id = create(job).await?;
    let parts = async {
        let mut total = first.len() as u64;
        let mut etags = Vec::new();
        let mut in_flight = Some(spawn_part(job, &upload_id, 1, first));
        loop {
            let (buf, ended) = fill(&mut reader).await?;
            if let Some(h) = in_flight.take() {
                etags.push(h.await.map_err(|e| WriteBackError::Http(e.to_string()))??);
            }
            if !buf.is_empty() {
                total += buf.len() as u64;
                in_flight = Some(spawn_part(job, &upload_id, etags.len() + 1, buf));
            }
            if ended {
                break;
            }
        }
        if let Some(h) = in_flight.take() {
            etags.push(h.await.map_err(|e| WriteBackError::Http(e.to_string()))??);
        }
        complete(job, &upload_id, &etags).await.map(|_| total)
    }
    .await;
    finish_multipart(job, &upload_id, parts).await
}

/// Up to one part's worth of bytes, and whether the stream ended.
async fn fill(reader: &mut Reader) -> Result<(Bytes, bool), WriteBackError> {
    let mut buf = BytesMut::new();
    while (buf.len() as u64) < PART {
        match reader.next(PART as usize - buf.len()).await? {
            Some(chunk) => buf.extend_from_slice(&chunk),
            None => return Ok((buf.freeze(), true)),
        }
    }
    Ok((buf.freeze(), false))
}

fn spawn_part(
    job: &Job,
    upload_id: &str,
    n: usize,
    data: Bytes,
) -> tokio::task::JoinHandle<Result<String, WriteBackError>> {
    let job = Job {
        bucket: job.bucket.clone(),
        client: job.client.clone(),
        key: job.key.clone(),
        headers: Vec::new(),
        tag: String::new(),
        expected_len: None,
        md5: None,
    };
    let upload_id = upload_id.to_string();
    tokio::spawn(async move {
        let len = data.len() as u64;
        upload_part(&job, &upload_id, n, reqwest::Body::from(data), len).await
    })
}

/// Aborts the upload when anything failed, so no parts linger.
async fn finish_multipart<T>(
    job: &Job,
    upload_id: &str,
    r: Result<T, WriteBackError>,
) -> Result<T, WriteBackError> {
    if r.is_err() {
        let q = format!(
            "{}?uploadId={}",
            job.bucket.object_path(&job.key),
            enc(upload_id)
        );
        if let Err(e) = send(job, Method::DELETE, &q, &[], reqwest::Body::from(""), None).await {
            log::warn!("abort of multipart upload for {:?} failed: {e}", job.key);
        }
    }
    r
}

fn object_headers(job: &Job) -> Vec<(String, String)> {
    let mut h = job.headers.clone();
    h.push(("x-amz-meta-x-oss-tag".into(), job.tag.clone()));
    h
}

async fn put_object(job: &Job, body: reqwest::Body, len: u64) -> Result<(), WriteBackError> {
    let mut headers = object_headers(job);
    if let Some(md5) = job.md5 {
        use base64::Engine;
        headers.push((
            "content-md5".into(),
            base64::engine::general_purpose::STANDARD.encode(md5),
        ));
    }
    send(
        job,
        Method::PUT,
        &job.bucket.object_path(&job.key),
        &headers,
        body,
        Some(len),
    )
    .await?;
    Ok(())
}

#[derive(serde::Deserialize)]
struct InitiateMultipartUploadResult {
    #[serde(rename = "UploadId")]
    upload_id: String,
}

async fn create(job: &Job) -> Result<String, WriteBackError> {
    let q = format!("{}?uploads=", job.bucket.object_path(&job.key));
    let resp = send(
        job,
        Method::POST,
        &q,
        &object_headers(job),
        reqwest::Body::from(""),
        Some(0),
    )
    .await?;
    let text = resp
        .text()
        .await
        .map_err(|e| WriteBackError::Http(e.to_string()))?;
    let r: InitiateMultipartUploadResult = quick_xml::de::from_str(&text).map_err(|e| {
        WriteBackError::Bucket(200, format!("unreadable CreateMultipartUpload answer: {e}"))
    })?;
    Ok(r.upload_id)
}

async fn upload_part(
    job: &Job,
    upload_id: &str,
    n: usize,
    body: reqwest::Body,
    len: u64,
) -> Result<String, WriteBackError> {
    let q = format!(
        "{}?partNumber={n}&uploadId={}",
        job.bucket.object_path(&job.key),
        enc(upload_id)
    );
    let resp = send(job, Method::PUT, &q, &[], body, Some(len)).await?;
    resp.headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| WriteBackError::Bucket(200, "UploadPart answer without ETag".into()))
}

async fn complete(job: &Job, upload_id: &str, etags: &[String]) -> Result<(), WriteBackError> {
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
        &[],
        reqwest::Body::from(xml),
        Some(len),
    )
    .await?;
    // S3 can answer 200 with an error document for Complete.
    let text = resp
        .text()
        .await
        .map_err(|e| WriteBackError::Http(e.to_string()))?;
    if text.contains("<Error>") {
        return Err(WriteBackError::Bucket(200, text));
    }
    Ok(())
}

fn enc(s: &str) -> String {
    crate::key::encode_component(s)
}

/// One signed request to the bucket; non-2xx answers are errors.
async fn send(
    job: &Job,
    method: Method,
    path_and_query: &str,
    headers: &[(String, String)],
    body: reqwest::Body,
    len: Option<u64>,
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
    let mut req = job
        .client
        .request(method, url)
        .header("host", job.bucket.host());
    for (k, v) in headers.iter().chain(signed.iter()) {
        req = req.header(k.as_str(), v.as_str());
    }
    if let Some(len) = len {
        req = req.header("content-length", len.to_string());
    }
    let resp = req
        .body(body)
        .send()
        .await
        .map_err(|e| WriteBackError::Http(e.to_string()))?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let mut text = resp.text().await.unwrap_or_default();
        text.truncate(500);
        return Err(WriteBackError::Bucket(status, text));
    }
    Ok(resp)
}
