//! AWS Signature V4 for every request the proxy signs: the bucket's reads,
//! write-back and probes, and private origins (`mirror.auth`). One signer
//! per identity (keys, region, service); the signing itself is `aws-sigv4`.

use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use std::time::SystemTime;

#[derive(Debug, thiserror::Error)]
#[error("cannot sign the request: {0}")]
pub struct SignError(String);

impl SignError {
    pub fn new(why: impl Into<String>) -> SignError {
        SignError(why.into())
    }
}

/// Header name/value pairs a signature adds to a request.
pub type SignedHeaders = Vec<(String, String)>;

/// Payload hash mode for a signed request.
pub enum Payload<'a> {
    /// `UNSIGNED-PAYLOAD`: bodies that stream (PUT parts stream through).
    Unsigned,
    /// The hash of these bytes (`&[]` for a GET or HEAD: the empty hash).
    Bytes(&'a [u8]),
}

/// Where a signer's keys come from.
enum Keys {
    /// Fixed at start and reload (environment variables).
    Fixed {
        identity: Identity,
        access_key_id: String,
    },
    /// The AWS default chain's, renewed in the background
    /// (`crate::credentials`).
    Chain,
}

/// Keys, region and service of one signing identity.
pub struct Signer {
    keys: Keys,
    region: String,
    service: String,
    /// S3's rules: the path signed as sent (encoded once, never
    /// normalised) and `x-amz-content-sha256` on every request. Other
    /// services sign the doubly encoded, normalised path.
    s3: bool,
}

impl std::fmt::Debug for Signer {
    // Never print the secret or the session token, even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = match &self.keys {
            Keys::Fixed { access_key_id, .. } => access_key_id.as_str(),
            Keys::Chain => "aws_chain",
        };
        write!(f, "Signer({key}, ***, {}, {})", self.region, self.service)
    }
}

impl Signer {
    pub fn new(
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<&str>,
        region: &str,
        service: &str,
    ) -> Signer {
        let identity = aws_credential_types::Credentials::new(
            access_key_id,
            secret_access_key,
            session_token.map(str::to_string),
            None,
            "origin-pull",
        )
        .into();
        Signer::with(
            Keys::Fixed {
                identity,
                access_key_id: access_key_id.to_string(),
            },
            region,
            service,
        )
    }

    /// A signer with the AWS default chain's current keys (see
    /// `crate::credentials`); until the chain has answered, signing fails.
    pub fn aws_chain(region: &str, service: &str) -> Signer {
        Signer::with(Keys::Chain, region, service)
    }

    /// Whether the keys are the AWS default chain's.
    pub fn uses_chain(&self) -> bool {
        matches!(self.keys, Keys::Chain)
    }

    /// The region signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    fn with(keys: Keys, region: &str, service: &str) -> Signer {
        Signer {
            keys,
            region: region.to_string(),
            service: service.to_string(),
            s3: service == "s3",
        }
    }

    /// SigV4 headers (`authorization`, `x-amz-date`, `x-amz-content-sha256`
    /// for S3, `x-amz-security-token` with a session token) for a request
    /// to `url` (absolute, with its query) whose `Host` header is `host`
    /// and that also carries `headers` (all of them are signed, so pass
    /// only what is sent).
    pub fn sign(
        &self,
        method: &str,
        url: &str,
        host: &str,
        headers: &[(&str, &str)],
        payload: Payload,
    ) -> Result<SignedHeaders, SignError> {
        let mut settings = SigningSettings::default();
        if self.s3 {
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        let chain;
        let identity = match &self.keys {
            Keys::Fixed { identity, .. } => identity,
            Keys::Chain => {
                chain = crate::credentials::current().ok_or_else(|| {
                    SignError::new("no credentials yet: the AWS default chain has not answered")
                })?;
                &chain.identity
            }
        };
        let params = v4::SigningParams::builder()
            .identity(identity)
            .region(&self.region)
            .name(&self.service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| SignError(e.to_string()))?
            .into();
        let all = std::iter::once(("host", host)).chain(headers.iter().copied());
        let body = match payload {
            Payload::Unsigned => SignableBody::UnsignedPayload,
            Payload::Bytes(b) => SignableBody::Bytes(b),
        };
        let req =
            SignableRequest::new(method, url, all, body).map_err(|e| SignError(e.to_string()))?;
        let (instructions, _) = sign(req, &params)
            .map_err(|e| SignError(e.to_string()))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }
}

/// Signed headers to mark sensitive (`HeaderValue::set_sensitive`): a
/// signature can be replayed for minutes and a session token is a key.
/// Pingora's debug log prints request headers; sensitive ones as
/// `Sensitive`.
pub fn is_secret(name: &str) -> bool {
    name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("x-amz-security-token")
}

/// A query string in the form the signer signs it: each `name=value`
/// pair decoded as a form would be (`+` is a space), then every byte but
/// RFC 3986's unreserved characters percent-encoded, order kept. A query
/// sent in this form means what it is signed as, whatever the origin makes
/// of `+` or of characters a client left unencoded.
pub fn canonical_query(query: &str) -> String {
    canonical_query_where(query, |_| true)
}

/// [`canonical_query`] of the pairs whose (decoded) name `keep` accepts.
pub fn canonical_query_where(query: &str, keep: impl Fn(&str) -> bool) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let mut out = String::with_capacity(query.len());
    for (k, v) in form_pairs(query).filter(|(k, _)| keep(k)) {
        if !out.is_empty() {
            out.push('&');
        }
        out.extend(utf8_percent_encode(&k, UNRESERVED));
        out.push('=');
        out.extend(utf8_percent_encode(&v, UNRESERVED));
    }
    out
}

/// `application/x-www-form-urlencoded` pairs, as `aws-sigv4` reads a query.
fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(k), form_decode(v))
    })
}

fn form_decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_sent_as_signed() {
        assert_eq!(canonical_query("a=1&b"), "a=1&b=");
        assert_eq!(
            canonical_query("response-content-type=text/plain&x=a+b%2Bc"),
            "response-content-type=text%2Fplain&x=a%20b%2Bc"
        );
        assert_eq!(canonical_query("&&k=%7e~"), "k=~~");
    }

    #[test]
    fn debug_hides_the_secret() {
        let s = Signer::new("AKID", "very-secret", Some("tok3n"), "garage", "s3");
        let d = format!("{s:?}");
        assert!(d.contains("AKID") && !d.contains("very-secret") && !d.contains("tok3n"));
    }

    #[test]
    fn s3_signs_the_path_as_sent() {
        let s = Signer::new("AKID", "secret", Some("tok"), "us-east-1", "s3");
        let h = s
            .sign("GET", "http://h/b/a%20b?x=1", "h", &[], Payload::Bytes(&[]))
            .unwrap();
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert!(get("authorization")
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256 Credential=AKID/"));
        // The empty body's hash, as S3 wants for a GET.
        assert_eq!(
            get("x-amz-content-sha256"),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(get("x-amz-security-token"), Some("tok"));
    }
}
