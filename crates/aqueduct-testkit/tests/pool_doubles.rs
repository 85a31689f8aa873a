//! The pool test doubles (`FakeDatabase`, `TcpProxy`) do what they promise.

use std::time::Duration;

use aqueduct_testkit::{FakeDatabase, FakeError, TcpProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn fake_database_counts_connections_latency_refusal_and_kills() {
    let database = FakeDatabase::new();
    database.set_connect_latency(Duration::from_millis(150));
    let started = Instant::now();
    let first = database.connect().await.expect("accepts");
    assert_eq!(started.elapsed(), Duration::from_millis(150));
    let second = database.connect().await.expect("accepts");
    assert_ne!(first.id(), second.id());
    assert_eq!((database.open(), database.opened(), database.attempts()), (2, 2, 2));

    database.set_refusing(true);
    assert_eq!(database.connect().await.unwrap_err(), FakeError::Refused);
    assert_eq!(database.attempts(), 3);
    database.set_refusing(false);

    database.kill_all();
    assert_eq!(first.ping().await, Err(FakeError::Dead));
    let third = database.connect().await.expect("accepts after a restart");
    assert_eq!(third.ping().await, Ok(()));
    assert_eq!(database.pings(), 2);
    drop((first, second, third));
    assert_eq!(database.open(), 0);
}

async fn echo_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("has an address");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = socket.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    addr
}

async fn round_trip(stream: &mut tokio::net::TcpStream) -> std::io::Result<[u8; 4]> {
    stream.write_all(b"ping").await?;
    let mut reply = [0; 4];
    stream.read_exact(&mut reply).await?;
    Ok(reply)
}

#[tokio::test]
async fn tcp_proxy_forwards_cuts_and_refuses_then_resumes() {
    let proxy = TcpProxy::start(echo_server().await).await.expect("starts");
    let mut first = tokio::net::TcpStream::connect(proxy.addr()).await.expect("connects");
    assert_eq!(&round_trip(&mut first).await.expect("forwards"), b"ping");
    assert_eq!(proxy.active(), 1);
    assert_eq!(proxy.forwarded(), 1);

    assert_eq!(proxy.cut_all(), 1);
    assert!(round_trip(&mut first).await.is_err(), "a cut connection is closed");

    proxy.refuse_new(true);
    let mut refused =
        tokio::net::TcpStream::connect(proxy.addr()).await.expect("the listener still accepts");
    assert!(round_trip(&mut refused).await.is_err(), "a refused connection is closed at once");
    assert_eq!(proxy.forwarded(), 1);

    proxy.refuse_new(false);
    let mut resumed = tokio::net::TcpStream::connect(proxy.addr()).await.expect("connects");
    assert_eq!(&round_trip(&mut resumed).await.expect("forwards again"), b"ping");
    assert_eq!(proxy.forwarded(), 2);
}
