//! `Stream`: a connection as the protocols read and write it, plain or TLS either side.

/// A connection as the protocols read and write it: plain TCP, or TLS over TCP as either side.
pub enum Stream {
    Plain(glommio::net::TcpStream),
    Server(Box<futures_rustls::server::TlsStream<glommio::net::TcpStream>>),
    Client(Box<futures_rustls::client::TlsStream<glommio::net::TcpStream>>),
}

impl Stream {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &glommio::net::TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Server(tls) => tls.get_ref().0,
            Stream::Client(tls) => tls.get_ref().0,
        }
    }
}

macro_rules! each_stream {
    ($self:ident, $inner:ident => $body:expr) => {
        match $self.get_mut() {
            Stream::Plain($inner) => {
                let $inner = std::pin::Pin::new($inner);
                $body
            }
            Stream::Server($inner) => {
                let $inner = std::pin::Pin::new(&mut **$inner);
                $body
            }
            Stream::Client($inner) => {
                let $inner = std::pin::Pin::new(&mut **$inner);
                $body
            }
        }
    };
}

impl futures::io::AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        each_stream!(self, inner => inner.poll_read(cx, buf))
    }
}

impl futures::io::AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        each_stream!(self, inner => inner.poll_write(cx, buf))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        each_stream!(self, inner => inner.poll_flush(cx))
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        each_stream!(self, inner => inner.poll_close(cx))
    }
}
