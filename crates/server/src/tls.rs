//! TLS for FTPS (RFC 4217): the server certificate, the rustls configuration, and the
//! handshakes for control and data connections.
//!
//! Data-connection session reuse: every control connection gets a random 16-byte token, embedded
//! in the TLS session tickets it is issued (`set_resumption_data`). A data connection must
//! resume a session (`HandshakeKind::Resumed`) whose ticket carries the same token, so it can only
//! come from the client that owns this control connection — which is what vsftpd's
//! `require_ssl_reuse` promises, and what stops a third party from grabbing the transfer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerSessionMemoryCache;
use rustls::{HandshakeKind, ServerConfig};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Per-control-connection token bound into session tickets.
pub type SessionToken = [u8; 16];

pub struct Tls {
    acceptor: TlsAcceptor,
    /// The same keys and tickets, but it issues no session tickets: see [`Tls::new`].
    data_acceptor: TlsAcceptor,
    /// SHA-256 of the certificate (DER), "AB:CD:..." as clients show it.
    pub fingerprint: String,
    pub require_reuse: bool,
}

/// Where the certificate came from, for the start-up message.
pub enum CertSource {
    Configured(PathBuf),
    Existing(PathBuf),
    Created(PathBuf),
}

impl Tls {
    /// Loads the configured certificate, or the one in `<data_dir>/tls/`, creating a
    /// self-signed one there on first start.
    pub fn load(
        cert: Option<&Path>,
        key: Option<&Path>,
        data_dir: &Path,
        require_reuse: bool,
    ) -> Result<(Tls, CertSource), String> {
        let (cert_path, key_path, source) = match (cert, key) {
            (Some(c), Some(k)) => (
                c.to_path_buf(),
                k.to_path_buf(),
                CertSource::Configured(c.to_path_buf()),
            ),
            (None, None) => {
                let dir = data_dir.join("tls");
                let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
                if c.exists() && k.exists() {
                    (c.clone(), k, CertSource::Existing(c))
                } else {
                    create_self_signed(&dir, &c, &k)?;
                    (c.clone(), k, CertSource::Created(c))
                }
            }
            _ => return Err("tls_cert and tls_key must be set together".into()),
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
            .map_err(|e| format!("{}: {e}", cert_path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", cert_path.display()))?;
        let first = certs
            .first()
            .ok_or_else(|| format!("{}: no certificate in file", cert_path.display()))?;
        let fingerprint = fingerprint(first);
        let key = PrivateKeyDer::from_pem_file(&key_path)
            .map_err(|e| format!("{}: {e}", key_path.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS versions: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("TLS certificate/key: {e}"))?;
        // Stateless tickets can be presented more than once, so one control session can resume
        // for many data connections; the cache serves TLS 1.2 clients without tickets.
        config.ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|e| format!("TLS tickets: {e}"))?;
        config.session_storage = ServerSessionMemoryCache::new(4096);
        config.send_tls13_tickets = 4;
        // Data connections resume the control session and need no tickets of their own. Sent
        // after the handshake, tickets are bytes an uploading client never reads, and closing
        // a socket with unread bytes sends a reset that discards the end of the upload still
        // queued at the server (lftp's uploads failed with 426 that way).
        let mut data_config = config.clone();
        data_config.send_tls13_tickets = 0;
        Ok((
            Tls {
                acceptor: TlsAcceptor::from(Arc::new(config)),
                data_acceptor: TlsAcceptor::from(Arc::new(data_config)),
                fingerprint,
                require_reuse,
            },
            source,
        ))
    }

    /// Handshake on a control connection (after AUTH TLS, or at once on the implicit port).
    pub async fn accept_control(
        &self,
        tcp: TcpStream,
        token: SessionToken,
        timeout: Duration,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let accept = self
            .acceptor
            .accept_with(tcp, |conn| conn.set_resumption_data(&token));
        match tokio::time::timeout(timeout, accept).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }

    /// Handshake on a data connection; with reuse required, it must resume the control session.
    pub async fn accept_data(
        &self,
        tcp: TcpStream,
        token: SessionToken,
        timeout: Duration,
    ) -> Result<TlsStream<TcpStream>, String> {
        let accept = self
            .data_acceptor
            .accept_with(tcp, |conn| conn.set_resumption_data(&token));
        let stream = match tokio::time::timeout(timeout, accept).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("TLS handshake on data connection failed: {e}")),
            Err(_) => return Err("TLS handshake on data connection timed out".into()),
        };
        if self.require_reuse {
            let conn = stream.get_ref().1;
            let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
            if !resumed || conn.received_resumption_data() != Some(&token[..]) {
                return Err("TLS session reuse required: the data connection must resume the control connection's TLS session".into());
            }
        }
        Ok(stream)
    }
}

/// A fresh random token for one control connection.
pub fn new_token() -> SessionToken {
    rand::random()
}

/// "AB:CD:..." SHA-256 fingerprint of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn create_self_signed(dir: &Path, cert: &Path, key: &Path) -> Result<(), String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() && !names.iter().any(|n| n == host) {
            names.push(host.to_owned());
        }
    }
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot create a certificate: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    write_private(key, generated.key_pair.serialize_pem().as_bytes())?;
    std::fs::write(cert, generated.cert.pem()).map_err(|e| format!("{}: {e}", cert.display()))?;
    Ok(())
}

/// Writes a file readable only by its owner (a private key).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_load_creates_then_reuses_the_certificate() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (a, src) = Tls::load(None, None, tmp.path(), true).expect("create");
        assert!(matches!(src, CertSource::Created(_)));
        let (b, src) = Tls::load(None, None, tmp.path(), true).expect("reuse");
        assert!(matches!(src, CertSource::Existing(_)));
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.path().join("tls/key.pem"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "private key must not be readable by others"
        );
    }
}
