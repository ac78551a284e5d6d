//! The edge: the accept loop in front of the router, where hostile and broken clients
//! meet the guard. It
//!
//! - caps concurrent connections below the process's file-descriptor limit: a connection
//!   over the cap gets a JSON 503 and is closed at once, so the guard keeps the
//!   descriptors it needs for Redis, KMS and the upstream instead of failing `accept`;
//! - gives a client `header_timeout` to send a request head, from the moment a new
//!   connection is accepted and from the first byte of each later request, and closes a
//!   keep-alive connection left idle for `idle_timeout` (longer, so a load balancer that
//!   keeps its connections to the guard open for a minute never sends a request on one
//!   the guard is closing: that race is a 502 for the client);
//! - on shutdown, tells every open connection to close after its current response and
//!   closes the idle ones, keeps accepting through the drain delay, stops, waits for
//!   in-flight requests up to the shutdown timeout and then drops what is left, so the
//!   process exits (and flushes its audit lines) before Kubernetes sends SIGKILL.
//!
//! Body read timeouts are per request and live with the router ([`crate::http::body`]).

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tower::ServiceExt;

/// File descriptors kept back from the connection cap for everything else the guard
/// opens: Redis and upstream connections, key files, KMS.
const RESERVED_FDS: u64 = 1024;

/// How the edge treats connections; the CLI documents each default.
#[derive(Clone, Debug)]
pub(crate) struct EdgeLimits {
    pub header_timeout: Duration,
    /// At least `header_timeout`.
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// When the edge stops: draining starts with `shutdown`, lasts `drain_delay` (the
/// endpoints take a moment to drop the pod), then in-flight requests get
/// `shutdown_timeout` before their connections are dropped.
pub(crate) struct Stop<F> {
    pub shutdown: F,
    pub on_drain: Box<dyn FnOnce() + Send>,
    pub drain_delay: Duration,
    pub shutdown_timeout: Duration,
}

/// Connections the kernel may queue before they are accepted (it caps this at
/// `net.core.somaxconn`): tokio's default of 1024 overflows under a burst of connects,
/// and an overflowing queue drops SYNs, which clients retry only after a second.
const BACKLOG: u32 = 4096;

/// Binds the guard's listening socket.
pub(crate) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Raises the soft file-descriptor limit to the hard one (as Go's runtime does) and
/// returns the connection cap that leaves [`RESERVED_FDS`] free.
pub(crate) fn connection_cap(configured: usize) -> usize {
    // SAFETY: getrlimit/setrlimit with a valid, initialised rlimit struct.
    #[allow(unsafe_code)]
    let soft = unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return configured;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        limit.rlim_cur
    };
    let room = usize::try_from(soft.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX).max(1);
    if configured > room {
        tracing::warn!(
            configured,
            cap = room,
            fd_limit = soft,
            "connection cap lowered to fit the file-descriptor limit"
        );
    }
    configured.min(room)
}

/// Serves `app` on `listener` until `stop` has run its course.
pub(crate) async fn serve<F: Future<Output = ()>>(
    listener: TcpListener,
    app: Router,
    limits: &EdgeLimits,
    stop: Stop<F>,
) {
    let mut builder = http1::Builder::new();
    // hyper's head timer runs from the end of one response to the end of the next head:
    // the idle timeout. `HeadDeadline` adds the shorter header timeout.
    builder.timer(TokioTimer::new()).header_read_timeout(limits.idle_timeout.max(limits.header_timeout));
    let (close_tx, close_rx) = watch::channel(false);
    let mut acceptor = Acceptor {
        listener: &listener,
        permits: Arc::new(Semaphore::new(limits.max_connections)),
        builder,
        header_timeout: limits.header_timeout,
        app,
        close: close_rx,
        connections: JoinSet::new(),
    };
    acceptor.accept_until(stop.shutdown).await;

    (stop.on_drain)();
    close_tx.send_replace(true);
    tracing::info!(
        delay_ms = stop.drain_delay.as_millis() as u64,
        open = acceptor.connections.len(),
        "shutdown signal: readiness off, connections told to close, draining"
    );
    acceptor.accept_until(tokio::time::sleep(stop.drain_delay)).await;
    let mut connections = acceptor.connections;
    drop(listener);

    tracing::info!(open = connections.len(), "no longer accepting connections; finishing in-flight requests");
    let finished =
        tokio::time::timeout(stop.shutdown_timeout, async { while connections.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        tracing::warn!(
            open = connections.len(),
            "in-flight requests did not finish in time; dropping their connections"
        );
        connections.shutdown().await;
    }
}

/// The accept loop's state: the connections it serves, and what each needs.
struct Acceptor<'a> {
    listener: &'a TcpListener,
    permits: Arc<Semaphore>,
    builder: http1::Builder,
    header_timeout: Duration,
    app: Router,
    close: watch::Receiver<bool>,
    connections: JoinSet<()>,
}

impl Acceptor<'_> {
    /// Accepts connections (serving those under the cap, shedding the rest) and reaps
    /// finished ones until `until` resolves.
    async fn accept_until(&mut self, until: impl Future<Output = ()>) {
        tokio::pin!(until);
        loop {
            tokio::select! {
                () = &mut until => return,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => self.take(stream),
                    Err(e) => accept_error(e).await,
                },
                Some(_) = self.connections.join_next(), if !self.connections.is_empty() => {}
            }
        }
    }

    fn take(&mut self, stream: TcpStream) {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let served = connection(
                    HeadDeadline::new(stream, self.header_timeout),
                    permit,
                    self.builder.clone(),
                    self.app.clone(),
                    self.close.clone(),
                );
                self.connections.spawn(served);
            }
            Err(_) => {
                tokio::spawn(shed(stream));
            }
        }
    }
}

/// One connection: served until the client leaves, a timeout closes it, or shutdown
/// tells it to finish its current response and close.
async fn connection(
    stream: HeadDeadline,
    _permit: OwnedSemaphorePermit,
    builder: http1::Builder,
    app: Router,
    mut close: watch::Receiver<bool>,
) {
    let _ = stream.inner.set_nodelay(true);
    let awaiting = stream.awaiting.clone();
    let service = hyper::service::service_fn(move |request| {
        // The head is in: the header timeout is over until this response has gone out.
        awaiting.store(false, Ordering::Relaxed);
        let (awaiting, response) = (awaiting.clone(), app.clone().oneshot(request));
        async move {
            let response = response.await;
            awaiting.store(true, Ordering::Relaxed);
            response
        }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    // A connection accepted while draining is served normally: the router marks each of
    // its responses `Connection: close`. Only connections open when draining started
    // need telling.
    let result = if *close.borrow_and_update() {
        conn.await
    } else {
        tokio::select! {
            result = conn.as_mut() => result,
            _ = close.changed() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// A client connection whose reads fail once a request head has taken longer than the
/// header timeout: counted from the accept for the first request (a client that connects
/// and sends nothing), and from the first byte of each later one (between requests the
/// connection is idle, which hyper's own timer bounds). Its service says when a head is
/// complete and when the response is done.
struct HeadDeadline {
    inner: TcpStream,
    timeout: Duration,
    /// Between a response and the next head: set by the service, read here.
    awaiting: Arc<AtomicBool>,
    deadline: Pin<Box<Sleep>>,
    running: bool,
}

impl HeadDeadline {
    fn new(inner: TcpStream, timeout: Duration) -> Self {
        let deadline = Box::pin(tokio::time::sleep(timeout));
        Self { inner, timeout, awaiting: Arc::new(AtomicBool::new(true)), deadline, running: true }
    }
}

impl AsyncRead for HeadDeadline {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if !this.awaiting.load(Ordering::Relaxed) {
            this.running = false;
        } else if this.running && this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(ErrorKind::TimedOut, "request head not received in time")));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if !this.running && this.awaiting.load(Ordering::Relaxed) && buf.filled().len() > before {
            // The first byte of the next request: its head has the header timeout.
            this.running = true;
            let at = tokio::time::Instant::now() + this.timeout;
            this.deadline.as_mut().reset(at);
            // Polled once so that the deadline wakes this connection's task.
            let _ = this.deadline.as_mut().poll(cx);
        }
        read
    }
}

impl AsyncWrite for HeadDeadline {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Over the cap: a short JSON answer written without waiting, then the socket closes.
async fn shed(mut stream: TcpStream) {
    const BODY: &str = r#"{"error":{"code":"too_many_connections","type":"server_error","message":"the guard is at its connection limit; retry shortly"}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_millis(100), stream.write_all(response.as_bytes())).await;
}

/// `accept` fails when the process is out of descriptors (or a connection was reset
/// before it was accepted); back off briefly rather than spin.
async fn accept_error(e: std::io::Error) {
    if e.kind() != ErrorKind::ConnectionAborted {
        tracing::warn!(error = %e, "accept failed; backing off");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
