//! The admin listener (`admin: { listen }`): `/metrics` (Prometheus text),
//! `/healthz` (alive), `/readyz` (ready to serve), `POST /-/reload`.
//! Nothing else: other paths are 404. It runs on the control thread, so it
//! keeps answering while the proxy drains (`/readyz` then says 503).

use super::{ready, reload, Control};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;

type Answer = Response<Full<Bytes>>;

pub async fn serve(c: Arc<Control>, listener: std::net::TcpListener) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return log::error!("admin listener: {e}"),
    };
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                log::warn!("admin listener: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let c = c.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let c = c.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&c, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>, content_type: &str) -> Answer {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

const PLAIN: &str = "text/plain; charset=utf-8";

async fn route(c: &Control, req: Request<hyper::body::Incoming>) -> Answer {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => text(
            StatusCode::OK,
            crate::metrics::METRICS.render(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n", PLAIN),
        (&Method::GET, "/readyz") => match ready::readiness(c).await {
            Ok(()) => text(StatusCode::OK, "ready\n", PLAIN),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, why, PLAIN),
        },
        (&Method::POST, "/-/reload") => match reload::run(c).await {
            Ok(kept) if kept.is_empty() => text(StatusCode::OK, "reloaded\n", PLAIN),
            Ok(kept) => text(
                StatusCode::OK,
                format!("reloaded; kept until a restart: {}\n", kept.join(", ")),
                PLAIN,
            ),
            Err(e @ reload::ReloadError::NeedsRestart(_)) => {
                text(StatusCode::CONFLICT, format!("{e}\n"), PLAIN)
            }
            Err(e) => text(StatusCode::UNPROCESSABLE_ENTITY, format!("{e}\n"), PLAIN),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n", PLAIN),
    }
}
