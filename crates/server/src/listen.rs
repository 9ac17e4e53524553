//! The accept loop: [`serve`] with the connection limits a public HTTP
//! service needs, which `axum::serve` does not set.
//!
//! - **Connections**: at most [`ConnLimits::max_connections`] at once; the
//!   next is accepted when one closes (it waits in the kernel's backlog).
//! - **Idle**: a kept-alive connection that carries nothing for
//!   [`ConnLimits::idle`] is closed.
//! - **Headers**: once the first byte of a request has arrived, the whole
//!   header must follow within [`ConnLimits::header_read`] (a slow sender
//!   cannot hold a connection by dripping bytes).
//! - **Body**: the whole request body must arrive within
//!   [`ConnLimits::body_read`] of the request's start, or the request is
//!   answered 408 and the connection closed.
//!
//! A handler that takes long to answer (`?wait=`) is not affected: while a
//! request is in progress only the body deadline applies.
//!
//! The connection's state is shared between its I/O wrapper ([`Guarded`])
//! and the service that sees each request, through one [`ConnState`] per
//! connection: no process-wide lock.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::ApiError;

/// Connection limits. The defaults are those of the security issue:
/// headers 10 s, body 30 s, idle keep-alive 60 s, 1,024 connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// From a request's first byte to the end of its header.
    pub header_read: Duration,
    /// From a request's start to the end of its body.
    pub body_read: Duration,
    /// How long a connection may carry nothing between requests.
    pub idle: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> ConnLimits {
        ConnLimits {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
            idle: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// Serves `app` on `listener` with `limits` until `shutdown` resolves, then
/// lets in-flight requests finish. Handlers see the peer address as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Each connection holds a receiver; shutdown is done when all are gone.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off a
                    // little instead of spinning, as axum does.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::new(ConnState::new());
        let io = TokioIo::new(Guarded::new(stream, state.clone(), limits));
        let service = hyper::service::service_fn({
            let app = app.clone();
            move |req: Request<hyper::body::Incoming>| {
                let app = app.clone();
                let state = state.clone();
                async move {
                    let _request = state.request_started();
                    let late = Arc::new(AtomicBool::new(false));
                    let mut req =
                        req.map(|b| Body::new(Deadline::new(b, limits.body_read, late.clone())));
                    req.extensions_mut().insert(ConnectInfo(peer));
                    let res = match app.oneshot(req).await {
                        Ok(res) => res,
                        Err(never) => match never {},
                    };
                    if late.load(Ordering::Relaxed) {
                        // The handler saw a broken body; say what broke it,
                        // and end the connection (its framing is lost).
                        let mut res = ApiError::RequestTimeout.into_response();
                        res.headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                        return Ok::<Response, Infallible>(res);
                    }
                    Ok(res)
                }
            }
        });
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(None);
            let conn = builder.serve_connection(io, service);
            let mut conn = std::pin::pin!(conn);
            loop {
                tokio::select! {
                    res = conn.as_mut() => {
                        if let Err(e) = res {
                            tracing::debug!(error = %e, "connection ended");
                        }
                        break;
                    }
                    _ = stop.changed() => conn.as_mut().graceful_shutdown(),
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(stop_rx);
    // Every connection task holds a receiver until it ends.
    stop_tx.closed().await;
    Ok(())
}

/// One connection's clock: whether a request is being served, when the
/// connection last carried anything, and when the current request's header
/// began. Times are milliseconds since `epoch`.
#[derive(Debug)]
struct ConnState {
    epoch: Instant,
    in_request: AtomicUsize,
    last_activity: AtomicU64,
    /// 0: no header under way.
    header_started: AtomicU64,
    /// The read waiting on the socket; a request's end wakes it so it
    /// waits again with the idle deadline.
    parked_read: Mutex<Option<Waker>>,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            epoch: Instant::now(),
            in_request: AtomicUsize::new(0),
            last_activity: AtomicU64::new(0),
            header_started: AtomicU64::new(0),
            parked_read: Mutex::new(None),
        }
    }

    fn now(&self) -> u64 {
        // +1 keeps 0 free for "no header under way".
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn request_started(self: &Arc<Self>) -> InRequest {
        self.in_request.fetch_add(1, Ordering::Relaxed);
        self.header_started.store(0, Ordering::Relaxed);
        InRequest(self.clone())
    }

    /// The moment a waiting read must give up, if any.
    fn read_deadline(&self, limits: &ConnLimits) -> Option<Instant> {
        if self.in_request.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let at = |ms: u64, d: Duration| Some(self.epoch + Duration::from_millis(ms) + d);
        match self.header_started.load(Ordering::Relaxed) {
            0 => at(self.last_activity.load(Ordering::Relaxed), limits.idle),
            started => at(started, limits.header_read),
        }
    }

    fn read(&self, bytes: usize) {
        let now = self.now();
        self.last_activity.store(now, Ordering::Relaxed);
        if bytes > 0
            && self.in_request.load(Ordering::Relaxed) == 0
            && self.header_started.load(Ordering::Relaxed) == 0
        {
            self.header_started.store(now, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.last_activity.store(self.now(), Ordering::Relaxed);
    }
}

/// Held while a request is in the service; its drop restarts the idle clock.
struct InRequest(Arc<ConnState>);

impl Drop for InRequest {
    fn drop(&mut self) {
        self.0.wrote();
        self.0.in_request.fetch_sub(1, Ordering::Relaxed);
        let parked = self.0.parked_read.lock().ok().and_then(|mut w| w.take());
        if let Some(waker) = parked {
            waker.wake();
        }
    }
}

/// The socket, failing a read that waits past the connection's deadline.
struct Guarded<S> {
    inner: S,
    state: Arc<ConnState>,
    limits: ConnLimits,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> Guarded<S> {
    fn new(inner: S, state: Arc<ConnState>, limits: ConnLimits) -> Guarded<S> {
        Guarded {
            inner,
            state,
            limits,
            timer: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(res) => {
                let n = buf.filled().len() - before;
                self.state.read(n);
                Poll::Ready(res)
            }
            Poll::Pending => {
                // Parked first, so a request that ends after the deadline
                // is computed still wakes this read to compute it again.
                if let Ok(mut parked) = self.state.parked_read.lock() {
                    *parked = Some(cx.waker().clone());
                }
                let Some(deadline) = self.state.read_deadline(&self.limits) else {
                    return Poll::Pending;
                };
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent nothing in time",
                )))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res
            && n > 0
        {
            self.state.wrote();
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = res
            && n > 0
        {
            self.state.wrote();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A request body that must end by its deadline.
struct Deadline<B> {
    inner: B,
    sleep: Pin<Box<Sleep>>,
    /// Set when the deadline passed before the body ended.
    fired: Arc<AtomicBool>,
}

impl<B> Deadline<B> {
    fn new(inner: B, limit: Duration, fired: Arc<AtomicBool>) -> Deadline<B> {
        Deadline {
            inner,
            sleep: Box::pin(tokio::time::sleep(limit)),
            fired,
        }
    }
}

/// The error a late body ends with. Whatever the handler made of it, the
/// request is answered 408 (see [`serve`]).
#[derive(Debug)]
struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimedOut {}

impl<B> HttpBody for Deadline<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        ready!(self.sleep.as_mut().poll(cx));
        self.fired.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
