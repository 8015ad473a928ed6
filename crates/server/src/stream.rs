//! The server's connections: a TCP connection that may have been upgraded to TLS, the control
//! connection after AUTH TLS or a data connection under PROT P. One type for both, so handlers
//! do not care which; the enum and its IO are `ferry_net::MaybeTls`, shared with the client.

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub type Stream = ferry_net::MaybeTls<TlsStream<TcpStream>>;
