//! TLS for FTPS (RFC 4217): the server certificate, the rustls configuration, and the
//! handshakes for control and data connections.
//!
//! Data-connection session reuse: every control connection gets a random 16-byte token, and
//! every TLS session it is issued carries that token: a session ticket (TLS 1.3, and TLS 1.2
//! with tickets) has it sealed inside, a TLS 1.2 session-ID cache entry stores it beside the
//! session. [`TaggedTickets`] and [`TaggedSessions`] wrap rustls' ticketer and cache to do that;
//! they learn which control connection a handshake belongs to from [`HandshakeScope`], a
//! thread-local set around each poll of the handshake (rustls calls the ticketer and the cache
//! synchronously inside that poll). rustls' own `received_resumption_data` is not used: it is
//! only filled in on TLS 1.3 resumption, which locked every TLS 1.2 client out.
//!
//! A data connection must resume a session (`HandshakeKind::Resumed`) whose token is its own
//! control connection's, or that of another live, logged-in control connection of the same user
//! from the same address ([`Sessions`]): rclone keeps one TLS session cache per host for all its
//! parallel connections, and a client sharing sessions between its own connections steals
//! nothing from itself. Anyone else (another user, another address, a client that does not
//! resume at all) is refused, which is what vsftpd's `require_ssl_reuse` promises: the data
//! connection cannot be taken by a third party that races the client to the passive port.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
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
    /// Logged-in control connections by token: whose sessions a data connection may resume.
    pub sessions: Arc<Sessions>,
}

/// The text of a 522 for a data connection that did not resume an allowed session. It names
/// the client-side fix and the server-side switch, since the person who reads it may be
/// either.
pub const REUSE_REQUIRED: &str = "TLS session reuse required: the data connection must resume \
the TLS session of this control connection (or of another of your logged-in connections from \
the same address). Use a client that resumes sessions (curl, lftp, FileZilla, WinSCP, rclone); \
for Python ftplib pass session=self.sock.session when wrapping the data socket; or ask the \
administrator to set tls_require_session_reuse = false";

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
        config.ticketer = Arc::new(TaggedTickets(
            rustls::crypto::ring::Ticketer::new().map_err(|e| format!("TLS tickets: {e}"))?,
        ));
        config.session_storage = Arc::new(TaggedSessions(ServerSessionMemoryCache::new(4096)));
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
                sessions: Arc::new(Sessions::default()),
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
        let accept = HandshakeScope::new(token, self.acceptor.accept(tcp));
        match tokio::time::timeout(timeout, accept).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }

    /// Handshake on a data connection of the control connection `owner`; with reuse
    /// required, it must resume a session that `owner` may use (see the module doc). Every
    /// error is the text of a 522.
    pub async fn accept_data(
        &self,
        tcp: TcpStream,
        owner: &SessionOwner,
        timeout: Duration,
    ) -> Result<TlsStream<TcpStream>, String> {
        let mut accept = HandshakeScope::new(owner.token, self.data_acceptor.accept(tcp));
        let stream = match tokio::time::timeout(timeout, &mut accept).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("TLS handshake on data connection failed: {e}")),
            Err(_) => return Err("TLS handshake on data connection timed out".into()),
        };
        if self.require_reuse {
            let resumed = stream.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
            let allowed = match accept.presented {
                Some(presented) if resumed => self.sessions.may_resume(owner, &presented).await,
                _ => false,
            };
            if !allowed {
                tracing::info!(
                    resumed,
                    presented_known = accept.presented.is_some(),
                    "data connection refused: TLS session reuse required"
                );
                return Err(REUSE_REQUIRED.into());
            }
        }
        Ok(stream)
    }
}

/// Who a data connection belongs to: its control connection's token, and the user and
/// address that connection logged in as (`None` before login).
#[derive(Debug, Clone)]
pub struct SessionOwner {
    pub token: SessionToken,
    pub user: Option<Arc<str>>,
    pub ip: IpAddr,
}

/// The live TLS control connections by token: their address, and their user once logged in.
/// A connection is entered before its handshake (its sessions exist from then on) and leaves
/// when its [`Registration`] drops.
#[derive(Debug, Default)]
pub struct Sessions {
    live: Mutex<HashMap<SessionToken, Holder>>,
    /// Woken on every login and every end, for data connections waiting on a login.
    changed: tokio::sync::Notify,
}

#[derive(Debug)]
struct Holder {
    ip: IpAddr,
    user: Option<Arc<str>>,
}

/// Longest wait for the connection whose session a data connection presents to log in.
/// rclone opens several control connections at once and shares their sessions: a data
/// connection may resume the session of a sibling whose password is still being checked.
const SIBLING_LOGIN_WAIT: Duration = Duration::from_secs(10);

impl Sessions {
    /// Enters a control connection about to start TLS; dropping the result removes it.
    pub fn register(self: &Arc<Self>, token: SessionToken, ip: IpAddr) -> Registration {
        self.table().insert(token, Holder { ip, user: None });
        Registration {
            sessions: self.clone(),
            token,
        }
    }

    /// Whether a data connection of `owner` may resume a session issued to `presented`: its
    /// own, or one of another live connection logged in as the same user from the same
    /// address. A sibling from the same address that has not logged in yet is waited for
    /// (up to [`SIBLING_LOGIN_WAIT`]): it passes only once it has proven to be the same user.
    pub async fn may_resume(&self, owner: &SessionOwner, presented: &SessionToken) -> bool {
        if *presented == owner.token {
            return true;
        }
        let Some(user) = &owner.user else {
            return false;
        };
        let deadline = tokio::time::Instant::now() + SIBLING_LOGIN_WAIT;
        loop {
            // Interest first, then the look: a login between the two still wakes us.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.table().get(presented) {
                None => return false,
                Some(h) if h.ip != owner.ip => return false,
                Some(Holder { user: Some(u), .. }) => return u == user,
                Some(Holder { user: None, .. }) => {}
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return false;
            }
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<SessionToken, Holder>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A control connection's entry in [`Sessions`], removed when dropped (the session ends).
#[derive(Debug)]
pub struct Registration {
    sessions: Arc<Sessions>,
    token: SessionToken,
}

impl Registration {
    /// The connection logged in as `user`: its sessions now serve that user's other
    /// connections from the same address.
    pub fn logged_in(&self, user: &str) {
        if let Some(h) = self.sessions.table().get_mut(&self.token) {
            h.user = Some(Arc::from(user));
        }
        self.sessions.changed.notify_waiters();
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sessions.table().remove(&self.token);
        self.sessions.changed.notify_waiters();
    }
}

thread_local! {
    /// The token of the control connection whose handshake this thread is running right now.
    static ISSUING: Cell<Option<SessionToken>> = const { Cell::new(None) };
    /// The token found in the session the client presented during that handshake.
    static PRESENTED: Cell<Option<SessionToken>> = const { Cell::new(None) };
}

/// A TLS handshake future run with its control connection's token in [`ISSUING`] during each
/// poll, so the ticketer and the session cache (called by rustls inside the poll, on this
/// thread) tag new sessions with it and report which token a resumed one carried.
pub struct HandshakeScope<F> {
    inner: F,
    token: SessionToken,
    /// The token of the session the client offered and rustls could open, if any.
    pub presented: Option<SessionToken>,
}

impl<F> HandshakeScope<F> {
    fn new(token: SessionToken, inner: F) -> Self {
        HandshakeScope {
            inner,
            token,
            presented: None,
        }
    }
}

impl<F: Future + Unpin> Future for HandshakeScope<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        ISSUING.set(Some(this.token));
        PRESENTED.set(this.presented);
        let out = Pin::new(&mut this.inner).poll(cx);
        this.presented = PRESENTED.take();
        ISSUING.set(None);
        out
    }
}

/// Length of the token prefix sealed into every ticket and cache entry.
const TAG: usize = std::mem::size_of::<SessionToken>();

/// Seals a tagged session value: the issuing connection's token, then rustls' bytes. Outside a
/// [`HandshakeScope`] (never, in practice) the tag is all zeros, which no live connection has.
fn tag(plain: &[u8]) -> Vec<u8> {
    let token = ISSUING.get().unwrap_or([0; TAG]);
    let mut tagged = Vec::with_capacity(TAG + plain.len());
    tagged.extend_from_slice(&token);
    tagged.extend_from_slice(plain);
    tagged
}

/// Opens a tagged session value: records its token as the one presented, returns rustls'
/// bytes.
fn untag(mut tagged: Vec<u8>) -> Option<Vec<u8>> {
    let token: SessionToken = tagged.get(..TAG)?.try_into().ok()?;
    PRESENTED.set(Some(token));
    tagged.drain(..TAG);
    Some(tagged)
}

/// rustls' ticketer with the issuing connection's token sealed inside each ticket (encrypted
/// and authenticated with the rest, so a client can neither read nor change it).
#[derive(Debug)]
struct TaggedTickets(Arc<dyn ProducesTickets>);

impl ProducesTickets for TaggedTickets {
    fn enabled(&self) -> bool {
        self.0.enabled()
    }
    fn lifetime(&self) -> u32 {
        self.0.lifetime()
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.0.encrypt(&tag(plain))
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        untag(self.0.decrypt(cipher)?)
    }
}

/// rustls' session-ID cache (TLS 1.2 clients without tickets) with the issuing connection's
/// token stored beside each session; the cache stays on the server, so the client never sees
/// it.
#[derive(Debug)]
struct TaggedSessions(Arc<ServerSessionMemoryCache>);

impl StoresServerSessions for TaggedSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.0.put(key, tag(&value))
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        untag(self.0.get(key)?)
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        untag(self.0.take(key)?)
    }
    fn can_cache(&self) -> bool {
        self.0.can_cache()
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
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A client configuration trusting `cert`, limited to one TLS version, that keeps and
    /// offers sessions as curl and lftp do (one store for all its connections).
    fn client_config(
        cert: &Path,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(cert).expect("cert") {
            roots.add(c.expect("pem")).expect("add");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[version])
                .expect("version")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    struct Rig {
        tls: Arc<Tls>,
        listener: tokio::net::TcpListener,
        cert: PathBuf,
        _dir: tempfile::TempDir,
    }

    impl Rig {
        async fn new() -> Rig {
            let dir = tempfile::tempdir().expect("tempdir");
            let (tls, _) = Tls::load(None, None, dir.path(), true).expect("tls");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            Rig {
                tls: Arc::new(tls),
                listener,
                cert: dir.path().join("tls/cert.pem"),
                _dir: dir,
            }
        }

        /// A control connection for `token`: handshake, then one byte each way so the client
        /// has read the session tickets sent after a TLS 1.3 handshake.
        async fn control(&self, client: &Arc<rustls::ClientConfig>, token: SessionToken) {
            let addr = self.listener.local_addr().expect("addr");
            let connector = tokio_rustls::TlsConnector::from(client.clone());
            let name = ServerName::try_from("localhost").expect("name");
            let (client_side, server_side) = tokio::join!(
                async {
                    let tcp = TcpStream::connect(addr).await.expect("connect");
                    let mut s = connector
                        .connect(name, tcp)
                        .await
                        .expect("client handshake");
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b).await.expect("read");
                    s
                },
                async {
                    let (tcp, _) = self.listener.accept().await.expect("accept");
                    let mut s = self
                        .tls
                        .accept_control(tcp, token, Duration::from_secs(5))
                        .await
                        .expect("server handshake");
                    s.write_all(b"x").await.expect("write");
                    s.flush().await.expect("flush");
                    s
                }
            );
            drop((client_side, server_side));
        }

        /// A data connection of `owner` from a client using `client`: what the server decides.
        async fn data(
            &self,
            client: &Arc<rustls::ClientConfig>,
            owner: &SessionOwner,
        ) -> Result<(), String> {
            let addr = self.listener.local_addr().expect("addr");
            let connector = tokio_rustls::TlsConnector::from(client.clone());
            let name = ServerName::try_from("localhost").expect("name");
            let (_, server) = tokio::join!(
                async {
                    let tcp = TcpStream::connect(addr).await.expect("connect");
                    connector.connect(name, tcp).await.ok()
                },
                async {
                    let (tcp, _) = self.listener.accept().await.expect("accept");
                    self.tls
                        .accept_data(tcp, owner, Duration::from_secs(5))
                        .await
                        .map(|_| ())
                }
            );
            server
        }
    }

    fn owner(token: SessionToken, user: &str) -> SessionOwner {
        SessionOwner {
            token,
            user: Some(Arc::from(user)),
            ip: "127.0.0.1".parse().expect("ip"),
        }
    }

    /// TLS 1.2 and 1.3 alike: a data connection resuming its own control session is accepted,
    /// one resuming the session of another live connection of the same user and address is
    /// accepted (rclone), another user's or a finished connection's session is refused, and a
    /// fresh handshake is refused with the text that says what to change.
    #[tokio::test]
    async fn data_connections_resume_only_sessions_their_user_may_use() {
        for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
            let rig = Rig::new().await;
            let ip: IpAddr = "127.0.0.1".parse().expect("ip");
            let (alice_a, alice_b, bob) = (new_token(), new_token(), new_token());
            let reg_a = rig.tls.sessions.register(alice_a, ip);
            let reg_b = rig.tls.sessions.register(alice_b, ip);
            let reg_bob = rig.tls.sessions.register(bob, ip);
            reg_a.logged_in("alice");
            reg_b.logged_in("alice");
            reg_bob.logged_in("bob");

            // Alice's client, connection A: its own data connection resumes.
            let alice = client_config(&rig.cert, version);
            rig.control(&alice, alice_a).await;
            assert_eq!(
                rig.data(&alice, &owner(alice_a, "alice")).await,
                Ok(()),
                "{version:?}"
            );
            // The same client's session, used by its connection B: still alice, same address.
            rig.control(&alice, alice_a).await;
            assert_eq!(
                rig.data(&alice, &owner(alice_b, "alice")).await,
                Ok(()),
                "{version:?}"
            );

            // Bob's session offered for alice's transfer: refused.
            let thief = client_config(&rig.cert, version);
            rig.control(&thief, bob).await;
            let refused = rig.data(&thief, &owner(alice_a, "alice")).await;
            assert_eq!(refused, Err(REUSE_REQUIRED.to_owned()), "{version:?}");

            // A client that does not resume (a fresh configuration has no sessions): refused,
            // and the text names the switch.
            let fresh = client_config(&rig.cert, version);
            let refused = rig.data(&fresh, &owner(alice_a, "alice")).await;
            assert!(refused.is_err_and(|t| t.contains("tls_require_session_reuse")));

            // A sibling still logging in (rclone opens its connections at once): its session
            // is accepted once it has logged in as alice, refused if it turns out to be bob.
            for (late_user, expected) in
                [("alice", Ok(())), ("bob", Err(REUSE_REQUIRED.to_owned()))]
            {
                let late = new_token();
                let reg_late = rig.tls.sessions.register(late, ip);
                let client = client_config(&rig.cert, version);
                rig.control(&client, late).await;
                let login = async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    reg_late.logged_in(late_user);
                };
                let alice = owner(alice_a, "alice");
                let (decided, ()) = tokio::join!(rig.data(&client, &alice), login);
                assert_eq!(decided, expected, "{version:?} {late_user}");
            }

            // Once connection B has ended, its sessions no longer serve anyone else.
            let gone = new_token();
            let reg_gone = rig.tls.sessions.register(gone, ip);
            reg_gone.logged_in("alice");
            let client = client_config(&rig.cert, version);
            rig.control(&client, gone).await;
            drop(reg_gone);
            let refused = rig.data(&client, &owner(alice_a, "alice")).await;
            assert_eq!(refused, Err(REUSE_REQUIRED.to_owned()), "{version:?}");
        }
    }

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
