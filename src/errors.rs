//! Every error the proxy answers itself, as S3-style XML (SPEC section 4).
//! The mapping from error to HTTP status and S3 code lives only here.

use crate::key::KeyError;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use std::sync::atomic::{AtomicU64, Ordering};

/// An error and its causes, `: `-joined ("error sending request" alone
/// hides "unknown CA" or "connection refused").
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum S3Error {
    #[error("no site is configured for this host")]
    NoSuchWebsiteConfiguration,
    #[error("only GET and HEAD are served; write to the bucket directly")]
    MethodNotAllowed,
    #[error("{0}")]
    InvalidUri(#[from] KeyError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("the specified key does not exist")]
    NoSuchKey,
    #[error("the requested range is not satisfiable")]
    InvalidRange,
    #[error("the request header is larger than {0} bytes")]
    RequestHeaderTooLarge(usize),
    #[error("the origin did not provide the object: {0}")]
    MirrorFailed(String),
    #[error("the bucket could not be reached: {0}")]
    BucketUnreachable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl S3Error {
    pub fn status(&self) -> u16 {
        match self {
            S3Error::NoSuchWebsiteConfiguration | S3Error::NoSuchKey => 404,
            S3Error::MethodNotAllowed => 405,
            S3Error::InvalidUri(_) | S3Error::InvalidArgument(_) => 400,
            S3Error::MirrorFailed(_) => 424,
            S3Error::RequestHeaderTooLarge(_) => 431,
            S3Error::InvalidRange => 416,
            S3Error::BucketUnreachable(_) => 502,
            S3Error::Internal(_) => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            S3Error::NoSuchWebsiteConfiguration => "NoSuchWebsiteConfiguration",
            S3Error::MethodNotAllowed => "MethodNotAllowed",
            S3Error::InvalidUri(_) => "InvalidURI",
            S3Error::InvalidArgument(_) => "InvalidArgument",
            S3Error::NoSuchKey => "NoSuchKey",
            S3Error::MirrorFailed(_) => "MirrorFailed",
            S3Error::InvalidRange => "InvalidRange",
            // The code S3 uses for the same refusal.
            S3Error::RequestHeaderTooLarge(_) => "RequestHeaderSectionTooLarge",
            S3Error::BucketUnreachable(_) => "BadGateway",
            S3Error::Internal(_) => "InternalError",
        }
    }

    /// The XML document S3 would send.
    pub fn body(&self, request_id: impl std::fmt::Display) -> String {
        use quick_xml::escape::escape;
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><RequestId>{}</RequestId></Error>",
            self.code(),
            escape(self.to_string().as_str()),
            request_id
        )
    }

    /// This error's response header and XML body (the fill peer's
    /// answers are built from it too).
    pub fn response(
        &self,
        request_id: impl std::fmt::Display,
    ) -> pingora::Result<(ResponseHeader, Bytes)> {
        let body = Bytes::from(self.body(&request_id));
        let mut resp = ResponseHeader::build(self.status(), Some(4))?;
        resp.insert_header("content-type", "application/xml")?;
        resp.insert_header("content-length", body.len().to_string())?;
        resp.insert_header("x-amz-request-id", request_id.to_string())?;
        if matches!(self, S3Error::MethodNotAllowed) {
            resp.insert_header("allow", "GET, HEAD")?;
        }
        Ok((resp, body))
    }

    /// Writes this error as the whole response (no body for HEAD).
    pub async fn respond(
        &self,
        session: &mut Session,
        request_id: RequestId,
    ) -> pingora::Result<()> {
        let (resp, body) = self.response(request_id)?;
        let head = session.req_header().method == http::Method::HEAD;
        session.write_response_header(Box::new(resp), head).await?;
        if !head {
            session.write_response_body(Some(body), true).await?;
        }
        Ok(())
    }
}

/// A short unique id per request, for the `RequestId` of our errors and
/// logs. A number until shown: most requests (hits) never show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId(u64);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let start = *START.get_or_init(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
        write!(f, "{start:X}{:08X}", self.0)
    }
}

pub fn new_request_id() -> RequestId {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    RequestId(NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_is_escaped_and_coded() {
        let e = S3Error::MirrorFailed("origin said <500> & left".into());
        let id = new_request_id();
        let b = e.body(id);
        assert!(b.contains(&format!("<RequestId>{id}</RequestId>")));
        assert!(b.contains("<Code>MirrorFailed</Code>"));
        assert!(b.contains("&lt;500&gt; &amp; left"));
        assert_eq!(e.status(), 424);
        assert_eq!(S3Error::InvalidUri(KeyError::Empty).code(), "InvalidURI");
    }
}
