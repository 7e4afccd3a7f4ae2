//! hyper's runtime on a glommio core: the connection's I/O (through the `:authority` filter),
//! the timer for keep-alive pings and the executor for per-stream tasks.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use futures::io::{AsyncRead, AsyncWrite};

use crate::server::authority::AuthorityFilter;
use crate::tls::Stream;

/// hyper's timer (keep-alive pings) on the current core's timers.
#[derive(Clone, Copy, Debug)]
pub(in crate::server) struct CoreTimer;

impl hyper::rt::Timer for CoreTimer {
    fn sleep(&self, duration: std::time::Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(CoreSleep::until(std::time::Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(CoreSleep::until(deadline))
    }
}

/// A deadline hyper waits for. hyper wants it `Send + Sync` although it is only polled on
/// the core that made it: the core's timer runs in a task of its own that wakes whichever
/// waker was registered last (one task per sleep, armed at its first poll).
struct CoreSleep {
    deadline: std::time::Instant,
    waker: Option<std::sync::Arc<futures::task::AtomicWaker>>,
}

impl CoreSleep {
    fn until(deadline: std::time::Instant) -> CoreSleep {
        CoreSleep {
            deadline,
            waker: None,
        }
    }
}

impl Future for CoreSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let now = std::time::Instant::now();
        if now >= self.deadline {
            return Poll::Ready(());
        }
        match &self.waker {
            Some(waker) => waker.register(cx.waker()),
            None => {
                let waker = std::sync::Arc::new(futures::task::AtomicWaker::new());
                waker.register(cx.waker());
                let (timer_waker, wait) = (waker.clone(), self.deadline - now);
                glommio::spawn_local(async move {
                    glommio::timer::sleep(wait).await;
                    timer_waker.wake();
                })
                .detach();
                self.waker = Some(waker);
            }
        }
        Poll::Pending
    }
}

impl hyper::rt::Sleep for CoreSleep {}

/// Spawns hyper's per-stream tasks on the current core.
#[derive(Clone, Copy, Debug)]
pub(in crate::server) struct LocalExecutor;

impl<F> hyper::rt::Executor<F> for LocalExecutor
where
    F: Future + 'static,
{
    fn execute(&self, future: F) {
        glommio::spawn_local(future).detach();
    }
}

/// A glommio TCP stream as hyper's I/O. What the client sends passes through an
/// [`AuthorityFilter`] (starting with the bytes read ahead) until the filter has seen that the
/// connection needs no mending, and is then read straight into hyper's buffers.
pub(in crate::server) struct GlommioIo {
    stream: Stream,
    /// `None` for HTTP/1, which has no `:authority` to mend.
    filter: Option<AuthorityFilter>,
    /// Filtered bytes hyper has not read yet.
    ready: BytesMut,
    /// Where the filter's input is read into.
    scratch: Vec<u8>,
    /// The filter refused the input: the connection ends.
    refused: Option<io::Error>,
}

impl GlommioIo {
    pub(in crate::server) fn new(stream: Stream, read_ahead: &[u8]) -> GlommioIo {
        let mut io = GlommioIo {
            stream,
            filter: Some(AuthorityFilter::new()),
            ready: BytesMut::new(),
            scratch: Vec::new(),
            refused: None,
        };
        if let Some(Err(error)) = io
            .filter
            .as_mut()
            .map(|f| f.feed(read_ahead, &mut io.ready))
        {
            io.refused = Some(io::Error::new(io::ErrorKind::InvalidData, error));
        }
        io
    }

    /// The stream with nothing between it and hyper but the bytes read ahead.
    pub(in crate::server) fn plain(stream: Stream, read_ahead: &[u8]) -> GlommioIo {
        GlommioIo {
            stream,
            filter: None,
            ready: BytesMut::from(read_ahead),
            scratch: Vec::new(),
            refused: None,
        }
    }
}

/// Most bytes asked of the socket per read: hyper offers large buffers, and the part handed
/// to the socket is zeroed first.
const READ_CHUNK: usize = 64 << 10;

impl hyper::rt::Read for GlommioIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if let Some(error) = this.refused.take() {
                return Poll::Ready(Err(error));
            }
            let Some(filter) = this.filter.as_mut().filter(|f| !f.passes_through()) else {
                return read_into(&mut this.stream, cx, buf);
            };
            this.scratch.resize(READ_CHUNK, 0);
            match Pin::new(&mut this.stream).poll_read(cx, &mut this.scratch) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(n)) => {
                    if let Err(error) = filter.feed(&this.scratch[..n], &mut this.ready) {
                        this.refused = Some(io::Error::new(io::ErrorKind::InvalidData, error));
                    }
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Reads from the socket straight into hyper's buffer.
fn read_into(
    stream: &mut Stream,
    cx: &mut Context<'_>,
    mut buf: hyper::rt::ReadBufCursor<'_>,
) -> Poll<io::Result<()>> {
    // SAFETY: the first `len` bytes of the cursor's unfilled part are zeroed before they are
    // viewed as initialized, and `advance` is told only how many the read filled.
    unsafe {
        let unfilled = buf.as_mut();
        let len = unfilled.len().min(READ_CHUNK);
        let start = unfilled.as_mut_ptr().cast::<u8>();
        std::ptr::write_bytes(start, 0, len);
        let slice = std::slice::from_raw_parts_mut(start, len);
        match Pin::new(stream).poll_read(cx, slice) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl hyper::rt::Write for GlommioIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}
