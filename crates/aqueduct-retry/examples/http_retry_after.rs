//! An HTTP client (reqwest) retried with `Retry-After`: a local hyper server answers 429 twice, then 200.
//!
//! Run it with `cargo run -p aqueduct-retry --example http_retry_after`. It takes about two seconds: the
//! server asks for one second before each retry, and the loop honours it instead of its own backoff.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aqueduct_retry::{
    Classify, Error, HintMode, RetryPolicy, Transience, parse_retry_after, retry,
};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What a call can fail with: an HTTP status the server sent, or a transport error.
#[derive(Debug)]
enum HttpError {
    Status { status: StatusCode, retry_after: Option<Duration> },
    Transport(reqwest::Error),
}

impl fmt::Display for HttpError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status { status, .. } => write!(formatter, "server answered {status}"),
            Self::Transport(_) => formatter.write_str("transport error"),
        }
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Transport(error) => Some(error),
            Self::Status { .. } => None,
        }
    }
}

/// Which failures are worth retrying, and the server's hint: this is all `retry` needs to know.
impl Classify for HttpError {
    fn transience(&self) -> Transience {
        match self {
            Self::Status { status, .. } => match status.as_u16() {
                408 | 429 | 500 | 502 | 503 | 504 => Transience::Transient,
                _ => Transience::Permanent,
            },
            Self::Transport(error) if error.is_connect() || error.is_timeout() => {
                Transience::Transient
            }
            Self::Transport(_) => Transience::Permanent,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            Self::Transport(_) => None,
        }
    }
}

/// One GET: a 2xx body, or the status with its `Retry-After` (seconds or an HTTP-date).
async fn get(client: &reqwest::Client, url: &str) -> Result<String, HttpError> {
    let response = client.get(url).send().await.map_err(HttpError::Transport)?;
    let status = response.status();
    if status.is_success() {
        return response.text().await.map_err(HttpError::Transport);
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, std::time::SystemTime::now()));
    Err(HttpError::Status { status, retry_after })
}

/// Serves `429 Too Many Requests` with `Retry-After: 1` to the first two requests, then `200 OK`.
async fn serve(listener: TcpListener, requests: Arc<AtomicU32>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let requests = Arc::clone(&requests);
        tokio::spawn(async move {
            let service = service_fn(move |_request| {
                let request = requests.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    let response = if request <= 2 {
                        Response::builder()
                            .status(StatusCode::TOO_MANY_REQUESTS)
                            .header("retry-after", "1")
                            .body(Full::new(Bytes::from_static(b"slow down")))
                    } else {
                        Response::builder()
                            .body(Full::new(Bytes::from(format!("hello on request {request}"))))
                    };
                    Ok::<_, Infallible>(response.expect("a valid response"))
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let requests = Arc::new(AtomicU32::new(0));
    tokio::spawn(serve(listener, Arc::clone(&requests)));

    let client = reqwest::Client::new();
    let policy = RetryPolicy::builder()
        .exponential(Duration::from_millis(100), 2.0)
        .max_attempts(5)
        .deadline(Duration::from_secs(30))
        .attempt_timeout(Duration::from_secs(5))
        // Honour the server, but never wait less than 100 ms or more than 10 s.
        .hints(HintMode::Clamp { min: Duration::from_millis(100), max: Duration::from_secs(10) })
        .build()?;

    let started = std::time::Instant::now();
    let body: Result<String, Error<HttpError>> = retry(&policy, || get(&client, &url))
        .classified()
        .notify(|state| {
            let error = state.error.map(ToString::to_string).unwrap_or_default();
            eprintln!(
                "attempt {} failed ({error}); retrying in {:?}",
                state.attempt, state.next_delay
            );
        })
        .await;
    let body = body?;
    eprintln!(
        "{body} after {:?} and {} requests",
        started.elapsed(),
        requests.load(Ordering::SeqCst)
    );
    Ok(())
}
