//! A TCP proxy on 127.0.0.1 that can cut every connection and refuse new ones: a server restart,
//! simulated without touching the real server.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// Forwards every connection made to [`addr`](TcpProxy::addr) to a target address.
///
/// [`cut_all`](TcpProxy::cut_all) closes every forwarded connection at once (both sides), and
/// [`refuse_new`](TcpProxy::refuse_new) makes new connections close as soon as they are accepted,
/// until it is turned off again: together they look like a server restart to a client.
/// Dropping the proxy stops it and closes everything.
///
/// # Examples
///
/// ```
/// use aqueduct_testkit::TcpProxy;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let target = echo.local_addr()?;
/// tokio::spawn(async move {
///     while let Ok((mut socket, _)) = echo.accept().await {
///         tokio::spawn(async move {
///             let (mut reader, mut writer) = socket.split();
///             let _ = tokio::io::copy(&mut reader, &mut writer).await;
///         });
///     }
/// });
///
/// let proxy = TcpProxy::start(target).await?;
/// let mut client = tokio::net::TcpStream::connect(proxy.addr()).await?;
/// client.write_all(b"ping").await?;
/// let mut reply = [0; 4];
/// client.read_exact(&mut reply).await?;
/// assert_eq!(&reply, b"ping");
///
/// assert_eq!(proxy.cut_all(), 1);
/// let mut rest = Vec::new();
/// assert_eq!(client.read_to_end(&mut rest).await.unwrap_or(0), 0); // closed by the cut
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    accept: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct ProxyState {
    refusing: AtomicBool,
    accepted: AtomicUsize,
    connections: Mutex<Vec<AbortHandle>>,
}

impl TcpProxy {
    /// Listens on an ephemeral port of 127.0.0.1 and forwards to `target`.
    ///
    /// # Errors
    ///
    /// When the listening socket cannot be bound.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub async fn start(target: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ProxyState::default());
        let accept = tokio::spawn(accept_loop(listener, target, Arc::clone(&state)));
        Ok(Self { addr, state, accept })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every forwarded connection now; returns how many were open.
    pub fn cut_all(&self) -> usize {
        let mut connections = lock(&self.state.connections);
        let open = connections.iter().filter(|handle| !handle.is_finished()).count();
        for handle in connections.drain(..) {
            handle.abort();
        }
        open
    }

    /// While `true`, new connections are closed as soon as they are accepted.
    pub fn refuse_new(&self, refuse: bool) {
        self.state.refusing.store(refuse, Ordering::SeqCst);
    }

    /// How many connections are being forwarded now.
    pub fn active(&self) -> usize {
        lock(&self.state.connections).iter().filter(|handle| !handle.is_finished()).count()
    }

    /// How many connections were accepted and forwarded since the start (refused ones not counted).
    pub fn forwarded(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_all();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, state: Arc<ProxyState>) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        if state.refusing.load(Ordering::SeqCst) {
            drop(inbound);
            continue;
        }
        state.accepted.fetch_add(1, Ordering::SeqCst);
        let forward = tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
        let mut connections = lock(&state.connections);
        connections.retain(|handle| !handle.is_finished());
        connections.push(forward.abort_handle());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
