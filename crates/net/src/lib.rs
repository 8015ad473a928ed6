//! The connection type `ferryd` and `ferry` share: a TCP stream that may be upgraded to TLS
//! (AUTH TLS on a control connection, PROT P on a data connection). Generic over the TLS
//! stream, because rustls has one type for each side of the handshake; everything else, the
//! plain stream, the hand-over to a handshake and the IO, is the same on both sides.
//! `ferry-proto` stays free of IO; this crate holds the one piece of IO both programs need.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream, clear or inside TLS (`T`: `tokio_rustls::{server,client}::TlsStream`).
pub enum MaybeTls<T> {
    Plain(TcpStream),
    Tls(Box<T>),
    /// Left behind while the TCP stream is inside a TLS handshake; any IO on it fails.
    Detached,
}

impl<T> MaybeTls<T> {
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }

    /// Takes the plain TCP stream out for a TLS handshake, leaving [`MaybeTls::Detached`].
    /// `None`, and the stream left as it was, when it is not plain.
    pub fn take_plain(&mut self) -> Option<TcpStream> {
        match std::mem::replace(self, MaybeTls::Detached) {
            MaybeTls::Plain(tcp) => Some(tcp),
            other => {
                *self = other;
                None
            }
        }
    }
}

fn detached() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection is inside a TLS handshake",
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            MaybeTls::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            MaybeTls::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            MaybeTls::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            MaybeTls::Detached => Poll::Ready(Err(detached())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// The TLS side is irrelevant here; a plain stream stands in for its type.
    type Stream = MaybeTls<TcpStream>;

    async fn pair() -> (Stream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (
            MaybeTls::Plain(client.expect("connect")),
            accepted.expect("accept").0,
        )
    }

    #[tokio::test]
    async fn plain_stream_carries_bytes_both_ways() {
        let (mut ours, mut theirs) = pair().await;
        assert!(!ours.is_tls());
        ours.write_all(b"NOOP\r\n").await.expect("write");
        let mut got = [0u8; 6];
        theirs.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"NOOP\r\n");
        theirs.write_all(b"200 ok\r\n").await.expect("write");
        let mut back = [0u8; 8];
        ours.read_exact(&mut back).await.expect("read");
        assert_eq!(&back, b"200 ok\r\n");
    }

    #[tokio::test]
    async fn taken_for_a_handshake_it_refuses_io_and_a_second_take() {
        let (mut ours, _theirs) = pair().await;
        assert!(ours.take_plain().is_some());
        assert!(
            ours.take_plain().is_none(),
            "a detached stream has nothing to give"
        );
        let err = ours.write_all(b"x").await.expect_err("IO while detached");
        assert_eq!(err.kind(), io::ErrorKind::NotConnected);
        let err = ours.read_u8().await.expect_err("IO while detached");
        assert_eq!(err.kind(), io::ErrorKind::NotConnected);
    }

    #[tokio::test]
    async fn a_tls_stream_is_not_taken() {
        let (inner, _theirs) = pair().await;
        let mut s: Stream = MaybeTls::Tls(Box::new(match inner {
            MaybeTls::Plain(t) => t,
            _ => unreachable!("pair() gives a plain stream"),
        }));
        assert!(s.is_tls());
        assert!(s.take_plain().is_none());
        assert!(s.is_tls(), "left as it was");
    }
}
