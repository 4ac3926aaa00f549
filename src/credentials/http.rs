//! The AWS credential providers' HTTP client: reqwest, with the proxy's
//! trust roots (rustls and ring), instead of aws-config's default client
//! (hyper with aws-lc, a second TLS stack and a C build). Their requests
//! are small (IMDS, the container endpoint, STS), so bodies are buffered.

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Reqwest(reqwest::Client);

impl Reqwest {
    pub fn new() -> Result<Reqwest, String> {
        // IMDS answers within a millisecond where it exists; the providers
        // add their own, shorter, bounds (`http_connector`).
        client(Some(Duration::from_secs(2)), None)
            .map(Reqwest)
            .map_err(|e| crate::errors::chain(&e))
    }
}

/// The providers' client: the platform's roots, no redirects, 10 s per
/// request, and the `connect` and `read` bounds given.
fn client(connect: Option<Duration>, read: Option<Duration>) -> reqwest::Result<reqwest::Client> {
    let mut b = crate::tls::reqwest_client_builder(&crate::tls::TrustRoots::platform())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10));
    if let Some(t) = connect {
        b = b.connect_timeout(t);
    }
    if let Some(t) = read {
        b = b.read_timeout(t);
    }
    b.build()
}

impl HttpConnector for Reqwest {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.0.clone();
        HttpConnectorFuture::new(async move {
            let io = |e: reqwest::Error| {
                if e.is_timeout() {
                    ConnectorError::timeout(e.into())
                } else {
                    ConnectorError::io(e.into())
                }
            };
            let other = |m: String| ConnectorError::other(m.into(), None);
            let method = reqwest::Method::from_bytes(request.method().as_bytes())
                .map_err(|e| other(e.to_string()))?;
            let mut req = client.request(method, request.uri());
            for (k, v) in request.headers().iter() {
                req = req.header(k, v);
            }
            // The providers send small bodies held in memory (STS's
            // form); a streaming one is refused rather than sent empty.
            let body = request
                .body()
                .bytes()
                .ok_or_else(|| other("a streaming request body".into()))?
                .to_vec();
            let resp = req.body(body).send().await.map_err(io)?;
            let status =
                StatusCode::try_from(resp.status().as_u16()).map_err(|e| other(e.to_string()))?;
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await.map_err(io)?;
            let mut out = HttpResponse::new(status, SdkBody::from(bytes));
            for (k, v) in headers.iter() {
                if let Ok(v) = v.to_str() {
                    let _ = out
                        .headers_mut()
                        .try_append(k.as_str().to_string(), v.to_string());
                }
            }
            Ok(out)
        })
    }
}

impl HttpClient for Reqwest {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        // The providers' own bounds (IMDS: 1 s to connect and read) are
        // shorter than the client's: keep them.
        match client(settings.connect_timeout(), settings.read_timeout()) {
            Ok(c) => SharedHttpConnector::new(Reqwest(c)),
            Err(e) => {
                log::warn!("credentials: HTTP client with the provider's timeouts: {e}");
                SharedHttpConnector::new(self.clone())
            }
        }
    }
}
