//! The accept loop: limits, one task per session, graceful shutdown.
//!
//! [`Server::serve`] takes an already-bound listener (tests bind port 0) and a cancellation
//! token. On cancellation it stops accepting at once; sessions that are idle answer 421 and
//! close, sessions with a running transfer finish it first, and after the grace period whatever
//! is left is dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ferry_proto::Reply;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::hammer::LoginGuard;
use crate::quota::QuotaRegistry;
use crate::session::Session;
use crate::tls::Tls;

/// What every session shares.
pub struct Shared {
    pub config: Config,
    pub auth: Authenticator,
    /// `None` when `tls = "off"`.
    pub tls: Option<Arc<Tls>>,
    pub guard: LoginGuard,
    pub quotas: QuotaRegistry,
    /// Where users' files live; opens their homes at login.
    pub storage: Arc<crate::storage::Storage>,
    /// The passive port range: shares per user and address, listeners parked between
    /// transfers.
    pub ports: Arc<crate::data::PassivePorts>,
    /// Blocking threads uploads may hold ([`Config::upload_threads`]); an upload past them
    /// waits for one, with its bytes queued in the kernel.
    pub upload_threads: Arc<UploadThreads>,
    pub shutdown: CancellationToken,
}

pub struct Server {
    shared: Arc<Shared>,
}

/// The blocking threads uploads may hold, server-wide and per user: a user's uploads hold at
/// most a quarter of them, so one user's many slow uploads cannot make another user's wait.
pub struct UploadThreads {
    pub all: Arc<Semaphore>,
    per_user: usize,
    users: Mutex<HashMap<String, std::sync::Weak<Semaphore>>>,
}

impl UploadThreads {
    fn new(threads: usize) -> UploadThreads {
        UploadThreads {
            all: Arc::new(Semaphore::new(threads)),
            per_user: (threads / 4).max(1),
            users: Mutex::new(HashMap::new()),
        }
    }

    /// `user`'s share, shared by all of the user's uploads while any of them runs.
    pub fn of_user(&self, user: &str) -> Arc<Semaphore> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(share) = users.get(user).and_then(std::sync::Weak::upgrade) {
            return share;
        }
        users.retain(|_, w| w.strong_count() > 0);
        let share = Arc::new(Semaphore::new(self.per_user));
        users.insert(user.to_owned(), Arc::downgrade(&share));
        share
    }
}

/// Counts sessions per client IP; a [`PerIpGuard`] gives its slot back on drop.
#[derive(Default)]
struct PerIp {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// The session's places under the global and per-IP limits, given back when it ends, and
/// until it logs in, its places under the limits of connections not logged in.
pub struct SessionLimits {
    _slot: tokio::sync::OwnedSemaphorePermit,
    _per_ip: PerIpGuard,
    unauthenticated: Option<(tokio::sync::OwnedSemaphorePermit, PerIpGuard)>,
}

impl SessionLimits {
    /// The session logged in: it leaves the budget of connections waiting to log in.
    pub fn logged_in(&mut self) {
        self.unauthenticated = None;
    }
}

struct PerIpGuard {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn try_enter(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<PerIpGuard> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PerIpGuard {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for PerIpGuard {
    fn drop(&mut self) {
        let mut counts = self.table.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

impl Server {
    pub fn new(
        config: Config,
        auth: Authenticator,
        tls: Option<Tls>,
        quotas: QuotaRegistry,
        storage: Arc<crate::storage::Storage>,
        shutdown: CancellationToken,
    ) -> Server {
        let guard = LoginGuard::new(config.max_login_failures, config.lockout);
        let ports = crate::data::PassivePorts::new(config.passive_ports);
        let upload_threads = Arc::new(UploadThreads::new(config.upload_threads()));
        Server {
            shared: Arc::new(Shared {
                config,
                auth,
                tls: tls.map(Arc::new),
                guard,
                quotas,
                storage,
                ports,
                upload_threads,
                shutdown,
            }),
        }
    }

    /// Accepts sessions until shutdown, then waits up to the grace period for them to end.
    /// `implicit` is the optional implicit-FTPS listener: its sessions start with a handshake.
    pub async fn serve(self, listener: TcpListener, implicit: Option<TcpListener>) {
        let shared = self.shared;
        // Usage true to the disk: the stored counters are not trusted at start (a crash leaves
        // unsettled uploads; files may have changed while the server was down). In the
        // background, so start-up does not wait on large homes; a user who logs in before
        // their turn is recounted by the login itself (`QuotaRegistry::attach`), and a scan
        // never runs while a session of its user exists (see `quota.rs`).
        let rescan = shared.clone();
        tokio::task::spawn_blocking(move || rescan.quotas.rescan_all());
        let tracker = TaskTracker::new();
        let slots = Arc::new(Semaphore::new(shared.config.max_sessions));
        let per_ip = Arc::new(PerIp::default());
        let unauthenticated = Arc::new(Semaphore::new(shared.config.max_unauthenticated));
        let unauthenticated_per_ip = Arc::new(PerIp::default());
        let next_id = AtomicU64::new(1);
        loop {
            let (accepted, implicit_tls) = tokio::select! {
                _ = shared.shutdown.cancelled() => break,
                a = listener.accept() => (a, false),
                a = accept_optional(implicit.as_ref()) => (a, true),
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let ip = peer.ip().to_canonical();
            if shared.guard.locked(ip).is_some() {
                tracing::warn!(%peer, "refused connection from a locked-out address");
                tracker.spawn(refuse(
                    stream,
                    "Too many failed logins from your address; try again later",
                ));
                continue;
            }
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracker.spawn(refuse(stream, "Too many users, try again later"));
                continue;
            };
            let Some(ip_guard) = per_ip.try_enter(ip, shared.config.max_sessions_per_ip) else {
                tracker.spawn(refuse(stream, "Too many connections from your address"));
                continue;
            };
            // Connections that have not logged in have a budget of their own, so a flood of
            // them (which costs nothing but a socket) cannot take the slots of real users.
            let Ok(waiting) = unauthenticated.clone().try_acquire_owned() else {
                tracker.spawn(refuse(stream, "Too many connections waiting to log in"));
                continue;
            };
            let Some(waiting_here) =
                unauthenticated_per_ip.try_enter(ip, shared.config.max_unauthenticated_per_ip)
            else {
                tracker.spawn(refuse(
                    stream,
                    "Too many connections waiting to log in from your address",
                ));
                continue;
            };
            let local = match stream.local_addr() {
                Ok(l) => l,
                Err(_) => continue,
            };
            configure_control(&stream);
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            let limits = SessionLimits {
                _slot: slot,
                _per_ip: ip_guard,
                unauthenticated: Some((waiting, waiting_here)),
            };
            let session = Session::new(
                id,
                shared.clone(),
                stream,
                peer,
                local,
                implicit_tls,
                limits,
            );
            // Spawned as is: wrapping it in another async block would store the (large)
            // session future twice in the task.
            tracker.spawn(session.run());
        }
        drop(listener);
        drop(implicit);
        tracker.close();
        let grace = shared.config.shutdown_grace;
        tracing::info!(
            sessions = tracker.len(),
            grace_secs = grace.as_secs(),
            "shutting down"
        );
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(
                sessions = tracker.len(),
                "grace period over, closing remaining sessions"
            );
        }
    }
}

/// Accepts on the implicit-TLS listener, or waits forever when there is none.
async fn accept_optional(
    listener: Option<&TcpListener>,
) -> std::io::Result<(TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Control connections carry small replies: send them at once. ABOR is sent by some clients
/// (Python's ftplib) as TCP urgent data; keep that byte in the stream so the line stays whole.
fn configure_control(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = nix::sys::socket::setsockopt(stream, nix::sys::socket::sockopt::OobInline, &true);
}

async fn refuse(mut stream: TcpStream, text: &str) {
    let bytes = Reply::new(421, text).to_bytes();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stream.write_all(&bytes)).await;
}
