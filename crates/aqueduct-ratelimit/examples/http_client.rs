//! The seed's `RateLimitedClient` for real: a reqwest client behind `Limited`, calling a local hyper server.
//!
//! The example starts an HTTP server on 127.0.0.1 that takes 20 ms per request and tracks how many requests
//! it serves at once, then fires 40 requests through a client limited to 4 in flight and 50 per second
//! (burst 10). Run it with `cargo run -p aqueduct-ratelimit --example http_client`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aqueduct_ratelimit::{Error, Limited, Limiter, Rate};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// What the server saw: requests in flight now, and the most at once.
#[derive(Default)]
struct ServerLoad {
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

async fn handle(
    request: Request<Incoming>,
    load: Arc<ServerLoad>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let now = load.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    load.peak.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    load.in_flight.fetch_sub(1, Ordering::SeqCst);
    Ok(Response::new(Full::new(Bytes::from(format!("hello from {}", request.uri().path())))))
}

/// Serves HTTP/1 on `listener` until the process ends.
async fn serve(listener: TcpListener, load: Arc<ServerLoad>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let load = Arc::clone(&load);
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, Arc::clone(&load)));
            if let Err(error) =
                http1::Builder::new().serve_connection(TokioIo::new(stream), service).await
            {
                eprintln!("connection error: {error}");
            }
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let load = Arc::new(ServerLoad::default());
    tokio::spawn(serve(listener, Arc::clone(&load)));

    // The seed: `RateLimitedClient(max_concurrent=4)`, plus a rate limit the seed could not express.
    let limiter =
        Limiter::builder().max_concurrent(4).rate(Rate::per_second(50)).burst(10).build()?;
    let client = Limited::new(reqwest::Client::new(), limiter);

    let start = Instant::now();
    let requests = (0..40).map(|index| {
        let client = &client;
        let url = format!("http://{address}/page/{index}");
        async move {
            let body: Result<String, Error<reqwest::Error>> =
                client.call(|http| async move { http.get(url).send().await?.text().await }).await;
            (index, start.elapsed(), body)
        }
    });
    let results = futures::future::join_all(requests).await;
    for (index, finished_after, body) in &results {
        match body {
            Ok(text) => eprintln!("request {index:>2} done after {finished_after:>10.1?}: {text}"),
            Err(error) => eprintln!("request {index:>2} failed: {error}"),
        }
    }
    let elapsed = start.elapsed();
    let peak = load.peak.load(Ordering::SeqCst);
    eprintln!("40 requests in {elapsed:.1?}; the server saw at most {peak} at once");
    assert!(peak <= 4, "the concurrency limit held");
    assert!(results.iter().all(|(_, _, body)| body.is_ok()));
    // 10 at once from the burst, then 30 more at 50/s: at least 600 ms.
    assert!(elapsed >= Duration::from_millis(580), "the rate limit held");
    Ok(())
}
