//! The demo's deliberately flaky HTTP server: latency, 5 % errors, 429 with `Retry-After`, and slow answers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the server did, counted as it answered.
#[derive(Debug, Default)]
pub(crate) struct ServerCounts {
    pub(crate) requests: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) throttled: AtomicU64,
    pub(crate) slow: AtomicU64,
}

/// Starts the server on a free loopback port and returns its address; it runs until the runtime stops.
pub(crate) async fn start(counts: Arc<ServerCounts>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let counts = Arc::clone(&counts);
            tokio::spawn(async move {
                let service = service_fn(move |request| answer(request, Arc::clone(&counts)));
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(address)
}

/// Answers `GET /page/N`: usually a page after 1 to 20 ms, sometimes an error, a 429 or a very slow page.
async fn answer(
    request: Request<hyper::body::Incoming>,
    counts: Arc<ServerCounts>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let serial = counts.requests.fetch_add(1, Ordering::Relaxed);
    let page: u64 = request
        .uri()
        .path()
        .strip_prefix("/page/")
        .and_then(|number| number.parse().ok())
        .unwrap_or(0);
    // Each request draws its fate from its own seed, so a retry of the same page may succeed.
    let mut rng = fastrand::Rng::with_seed(page.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ serial);
    let roll = rng.u32(0..1000);
    let latency = Duration::from_millis(rng.u64(1..=20));
    if roll < 50 {
        counts.errors.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(latency).await;
        return Ok(status(StatusCode::INTERNAL_SERVER_ERROR, None));
    }
    if roll < 70 {
        counts.throttled.fetch_add(1, Ordering::Relaxed);
        return Ok(status(StatusCode::TOO_MANY_REQUESTS, Some("1")));
    }
    if roll < 80 {
        counts.slow.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(2)).await;
    } else {
        tokio::time::sleep(latency).await;
    }
    let body: String =
        (0..200).map(|line| format!("page {page} line {line} {}\n", rng.u64(..))).collect();
    Ok(Response::new(Full::new(Bytes::from(body))))
}

fn status(code: StatusCode, retry_after: Option<&str>) -> Response<Full<Bytes>> {
    let mut builder = Response::builder().status(code);
    if let Some(seconds) = retry_after {
        builder = builder.header("retry-after", seconds);
    }
    builder.body(Full::new(Bytes::new())).unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
