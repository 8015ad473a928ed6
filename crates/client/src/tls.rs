//! Certificate trust for explicit FTPS (RFC 4217): system roots, then trust on first use.
//!
//! A server certificate is accepted when
//! - its SHA-256 fingerprint equals the pin for `host:port` (from `--pin`, or remembered in the
//!   known-hosts file), or
//! - there is no pin and it chains to a system root for the host name (rustls-native-certs).
//!
//! A pinned host is held to its pin even if a CA would vouch for a new certificate: like ssh, a
//! changed key is refused loudly ([`crate::Error::CertChanged`]) until the user removes the
//! line or passes the new `--pin`. An unknown self-signed certificate is refused with its
//! fingerprint ([`crate::Error::CertUnknown`]); on a terminal the user is asked instead.
//!
//! The known-hosts file is `$FERRY_KNOWN_HOSTS`, else `~/.config/ferry/known_hosts`: one
//! `host:port sha256-hex` per line, `#` comments.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A SHA-256 certificate fingerprint.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn of(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }

    /// Accepts 64 hex digits, optionally with `:` separators and a `sha256:` prefix, any case
    /// (so both our own output and `openssl x509 -fingerprint -sha256` paste in).
    pub fn parse(s: &str) -> Option<Fingerprint> {
        let s = s.trim();
        let s = s
            .strip_prefix("sha256:")
            .or_else(|| s.strip_prefix("SHA256:"))
            .or_else(|| s.strip_prefix("sha256="))
            .or_else(|| s.strip_prefix("SHA256 Fingerprint="))
            .unwrap_or(s);
        let hex: String = s.chars().filter(|&c| c != ':').collect();
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Fingerprint(out))
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            let _ = write!(s, "{b:02x}");
        }
        f.write_str(&s)
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// The known-hosts file: remembered pins.
pub struct KnownHosts {
    pub path: PathBuf,
}

impl KnownHosts {
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os("FERRY_KNOWN_HOSTS") {
            return PathBuf::from(p);
        }
        dirs::home_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".config/ferry/known_hosts")
    }

    pub fn new(path: PathBuf) -> KnownHosts {
        KnownHosts { path }
    }

    /// The pin for `host_port`, if any. A missing file is an empty one.
    pub fn get(&self, host_port: &str) -> Result<Option<Fingerprint>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::local(&self.path, e)),
        };
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            if parts.next() == Some(host_port) {
                return Ok(parts.next().and_then(Fingerprint::parse));
            }
        }
        Ok(None)
    }

    /// Records (or replaces) the pin for `host_port`.
    pub fn set(&self, host_port: &str, fp: Fingerprint) -> Result<()> {
        let old = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::local(&self.path, e)),
        };
        let mut out = String::new();
        for line in old.lines() {
            if line.split_whitespace().next() != Some(host_port) {
                out.push_str(line);
                out.push('\n');
            }
        }
        let _ = writeln!(out, "{host_port} {fp}");
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::local(dir, e))?;
        }
        write_atomically(&self.path, out.as_bytes())
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::local(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::local(path, e))
}

/// The verifier behind every TLS connection of one FTP session (control and data).
#[derive(Debug)]
pub struct PinningVerifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    pin: Option<Fingerprint>,
    provider: Arc<CryptoProvider>,
    /// The fingerprint of the last certificate presented, to explain a failed handshake.
    seen: Mutex<Option<Fingerprint>>,
}

impl PinningVerifier {
    pub fn seen(&self) -> Option<Fingerprint> {
        self.seen.lock().ok().and_then(|g| *g)
    }
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let fp = Fingerprint::of(end_entity);
        if let Ok(mut g) = self.seen.lock() {
            *g = Some(fp);
        }
        match (self.pin, &self.webpki) {
            (Some(pin), _) if pin == fp => Ok(ServerCertVerified::assertion()),
            (Some(_), _) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            (None, Some(webpki)) => webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
            (None, None) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// System roots, loaded once per process.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: std::sync::OnceLock<Arc<RootCertStore>> = std::sync::OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut store = RootCertStore::empty();
            let loaded = rustls_native_certs::load_native_certs();
            for err in &loaded.errors {
                tracing::debug!("loading system certificates: {err}");
            }
            let (added, ignored) = store.add_parsable_certificates(loaded.certs);
            tracing::debug!("system roots: {added} loaded, {ignored} ignored");
            Arc::new(store)
        })
        .clone()
}

/// A client config for one FTP session: the same `Arc` is used for the control connection and
/// every data connection, so rustls' session cache resumes the control session on data
/// connections (servers that require TLS session reuse, like vsftpd's default, accept them).
pub fn client_config(
    pin: Option<Fingerprint>,
) -> Result<(Arc<ClientConfig>, Arc<PinningVerifier>)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = system_roots();
    let webpki = if roots.is_empty() {
        None
    } else {
        WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .ok()
    };
    let verifier = Arc::new(PinningVerifier {
        webpki,
        pin,
        provider: provider.clone(),
        seen: Mutex::new(None),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(format!("building the TLS configuration: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    Ok((Arc::new(config), verifier))
}

/// The rustls server name for a host from a URL (IP addresses are allowed).
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(host.to_owned())
        .map_err(|_| Error::Usage(format!("{host:?} is not a valid host name for TLS")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_formats() {
        let fp = Fingerprint::of(b"hello");
        let hex = fp.to_string();
        assert_eq!(hex.len(), 64);
        assert_eq!(Fingerprint::parse(&hex), Some(fp));
        let colons: Vec<String> = fp.0.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(
            Fingerprint::parse(&format!("SHA256 Fingerprint={}", colons.join(":"))),
            Some(fp)
        );
        assert_eq!(Fingerprint::parse(&format!("sha256:{hex}")), Some(fp));
        assert_eq!(Fingerprint::parse("abcd"), None);
        assert_eq!(Fingerprint::parse(&"zz".repeat(32)), None);
    }

    #[test]
    fn known_hosts_set_replace_get() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kh = KnownHosts::new(dir.path().join("sub/known_hosts"));
        assert_eq!(kh.get("h:21").expect("read"), None);
        let a = Fingerprint::of(b"a");
        let b = Fingerprint::of(b"b");
        kh.set("h:21", a).expect("set");
        kh.set("other:21", b).expect("set");
        assert_eq!(kh.get("h:21").expect("read"), Some(a));
        kh.set("h:21", b).expect("replace");
        assert_eq!(kh.get("h:21").expect("read"), Some(b));
        assert_eq!(kh.get("other:21").expect("read"), Some(b));
        let text = std::fs::read_to_string(&kh.path).expect("file");
        assert_eq!(text.lines().count(), 2);
    }
}
