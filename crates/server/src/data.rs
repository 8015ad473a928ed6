//! Data connections (RFC 959 §3.2, RFC 2428): setting them up and moving bytes over them.
//!
//! Passive: a listener on the control connection's local address, in the configured port range,
//! that accepts only a peer with the control connection's IP (a third party cannot steal the
//! transfer) and gives up after the data timeout. Active: a connection to the client, allowed
//! only to the control peer's IP and to a port >= 1024 (no FTP bounce, RFC 2577).
//! Plain binary downloads go out with sendfile(2): file pages go to the socket without passing
//! through user space.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ferry_proto::ascii::{FromNetwork, ToNetwork};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};
use crate::quota::Usage;
use crate::storage::{Reader, Writer};
use crate::stream::Stream;
use crate::tls::SessionOwner;
use tokio_util::sync::CancellationToken;

/// How the next transfer gets its data connection, set by PASV/EPSV/PORT/EPRT.
#[derive(Debug)]
pub enum DataPlan {
    /// A listener (and its port) not yet registered with the event loop: clients connect
    /// right after the 227/229 reply, so by the time RETR/STOR arrives the connection is
    /// usually queued and one accept4(2) takes it, with no epoll registration and no wait for
    /// a readiness event.
    Passive(PassiveListener),
    /// A passive listener under PROT P, handed to its own task at once: see [`PendingTls`].
    PassiveTls(PendingTls),
    Active(SocketAddr),
}

/// How many TLS handshakes one passive listener runs at once: a connection that never
/// finishes its handshake (or a second client racing for the port) must not keep the real
/// client's connection waiting in the queue.
const MAX_DATA_HANDSHAKES: usize = 4;
/// How many refused TLS data connections one passive listener takes before it gives up.
const MAX_REFUSED_HANDSHAKES: usize = 8;
/// How long a passive listener still waits for the right client after refusing a TLS data
/// connection. A thief races the client to the port, so the client's own connection follows
/// within milliseconds; a client that was refused itself (it does not resume sessions) gets
/// its 522 after this.
const REFUSED_GRACE: Duration = Duration::from_secs(1);

/// A PROT P passive data connection being accepted and TLS-handshaken by a task of its own
/// from the 227/229 reply on, rather than when the transfer command comes: some clients
/// (aioftp) start the handshake before they send LIST/STOR, and would wait forever for a
/// server that waits for the command. Dropping it (another PASV, ABOR, the session's end)
/// stops the task and closes the listener.
pub struct PendingTls {
    task: tokio::task::JoinHandle<Result<Stream>>,
}

impl std::fmt::Debug for PendingTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingTls")
    }
}

impl Drop for PendingTls {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PendingTls {
    pub fn start(
        listener: PassiveListener,
        tls: Arc<crate::tls::Tls>,
        owner: SessionOwner,
        timeout: Duration,
    ) -> PendingTls {
        PendingTls {
            task: tokio::spawn(accept_tls(listener, tls, owner, timeout)),
        }
    }

    /// The handshaken data connection; 425 if the client has not connected within
    /// `timeout` (counted from the transfer command, as for plain connections).
    pub async fn wait(mut self, timeout: Duration) -> Result<Stream> {
        match tokio::time::timeout(timeout, &mut self.task).await {
            Err(_) => Err(Error::NoDataConnection("Data connection timed out".into())),
            Ok(Err(e)) => Err(Error::NoDataConnection(format!(
                "Data connection failed: {e}"
            ))),
            Ok(Ok(result)) => result,
        }
    }
}

/// Accepts TLS data connections from the control connection's address until one completes a
/// handshake that resumes an allowed session ([`crate::tls::Tls::accept_data`]); connections
/// from other addresses are closed unread, refused handshakes are closed and logged, and the
/// real client's connection is served even while a racing one is still handshaking.
pub async fn accept_tls(
    passive: PassiveListener,
    tls: Arc<crate::tls::Tls>,
    owner: SessionOwner,
    timeout: Duration,
) -> Result<Stream> {
    let accept_failed =
        |e: io::Error| Error::NoDataConnection(format!("Cannot accept data connection: {e}"));
    // The port stays charged to its holder while this task waits on it.
    let PassiveListener {
        listener, _lease, ..
    } = passive;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(accept_failed)?;
    let mut handshakes = tokio::task::JoinSet::new();
    let mut refused: Option<String> = None;
    let mut refusals = 0;
    loop {
        let waiting_after_refusal = refused.is_some() && handshakes.is_empty();
        let give_up = async {
            match waiting_after_refusal {
                true => tokio::time::sleep(REFUSED_GRACE).await,
                false => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = listener.accept(), if handshakes.len() < MAX_DATA_HANDSHAKES => {
                let (tcp, from) = accepted.map_err(accept_failed)?;
                if from_peer(Some(from), owner.ip) {
                    let (tls, owner) = (tls.clone(), owner.clone());
                    handshakes.spawn(async move { tls.accept_data(tcp, &owner, timeout).await });
                }
            }
            Some(done) = handshakes.join_next() => match done {
                Ok(Ok(stream)) => return Ok(Stream::Tls(Box::new(stream))),
                Ok(Err(text)) => {
                    refusals += 1;
                    if refusals >= MAX_REFUSED_HANDSHAKES {
                        return Err(Error::DataTls(text));
                    }
                    refused = Some(text);
                }
                Err(e) => tracing::warn!(error = %e, "data connection handshake task failed"),
            },
            _ = give_up => {
                let text = refused.take().unwrap_or_default();
                return Err(Error::DataTls(text));
            }
        }
    }
}

/// How long a passive listener is kept after a transfer took its connection. A client that
/// fetches many files sends PASV before each; handing it the same port again spares a socket,
/// bind and listen per file. Kept briefly, so idle sessions hold no ports of the range.
pub const PARK_TIME: Duration = Duration::from_secs(1);

/// The passive port range, shared by every session: who holds how many of its ports, and the
/// listeners parked between transfers. Every user and every address is owed a quarter of the
/// range (its share): within its share it gets a port whenever one is free; beyond it, only
/// while a quarter of the range stays free for the others. So one user's sessions may use
/// most of an idle range, but hoarding PASV listeners cannot leave another user with 425.
/// Listeners waiting for a transfer, running ones and parked ones all count; when the range
/// runs out, parked listeners (an optimisation only) are closed first.
#[derive(Debug)]
pub struct PassivePorts {
    range: Option<(u16, u16)>,
    /// Ports in the range (`None`: the kernel's ephemeral range, no shares kept).
    total: Option<usize>,
    /// A user's or an address's share, and the ports kept free for others beyond it.
    share: usize,
    held: Mutex<Held>,
    /// Most listeners parked at once, server-wide: also a quarter of the range, so parked
    /// ports never crowd out the PASV of another session.
    max_parked: usize,
    parked: Mutex<Vec<Weak<ParkedSlot>>>,
}

#[derive(Debug, Default)]
struct Held {
    by: HashMap<PortHolder, usize>,
    in_use: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum PortHolder {
    User(Arc<str>),
    Address(IpAddr),
}

/// A parked listener's place: emptied by its session's next PASV, or by [`PassivePorts`]
/// when the range runs out.
type ParkedSlot = Mutex<Option<PassiveListener>>;

/// What a passive listener is charged to; given back when it drops.
#[derive(Debug)]
struct PortLease {
    ports: Arc<PassivePorts>,
    user: Arc<str>,
    ip: IpAddr,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        let mut held = self.ports.table();
        held.in_use = held.in_use.saturating_sub(1);
        for holder in [
            PortHolder::User(self.user.clone()),
            PortHolder::Address(self.ip),
        ] {
            if let Some(n) = held.by.get_mut(&holder) {
                *n -= 1;
                if *n == 0 {
                    held.by.remove(&holder);
                }
            }
        }
    }
}

/// A listening passive data port, charged to the user and address that asked for it.
#[derive(Debug)]
pub struct PassiveListener {
    pub listener: std::net::TcpListener,
    pub port: u16,
    _lease: PortLease,
}

impl PassivePorts {
    pub fn new(range: Option<(u16, u16)>) -> Arc<PassivePorts> {
        let total = range.map(|(lo, hi)| usize::from(hi - lo) + 1);
        let ports = total.unwrap_or(28_000);
        Arc::new(PassivePorts {
            range,
            total,
            share: (ports / 4).max(1),
            held: Mutex::new(Held::default()),
            max_parked: ports / 4,
            parked: Mutex::new(Vec::new()),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn parked_slots(&self) -> std::sync::MutexGuard<'_, Vec<Weak<ParkedSlot>>> {
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a passive listener on `bind` for `user` connected from `ip`: 425 when the user
    /// or the address already holds its share of the range, or the range is full even after
    /// closing the parked listeners.
    pub fn open(
        self: &Arc<Self>,
        bind: IpAddr,
        user: &Arc<str>,
        ip: IpAddr,
    ) -> Result<PassiveListener> {
        let lease = self.lease(user, ip)?;
        let (listener, port) = match open_passive(bind, self.range) {
            Ok(opened) => opened,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && self.close_parked() > 0 => {
                open_passive(bind, self.range).map_err(passive_failed)?
            }
            Err(e) => return Err(passive_failed(e)),
        };
        Ok(PassiveListener {
            listener,
            port,
            _lease: lease,
        })
    }

    fn lease(self: &Arc<Self>, user: &Arc<str>, ip: IpAddr) -> Result<PortLease> {
        let mut held = self.table();
        let (by_user, by_ip) = (PortHolder::User(user.clone()), PortHolder::Address(ip));
        let count = |h: &PortHolder| held.by.get(h).copied().unwrap_or(0);
        let within_share = count(&by_user) < self.share && count(&by_ip) < self.share;
        let others_keep_theirs = match self.total {
            Some(total) => held.in_use + 1 + self.share <= total,
            None => true,
        };
        if !within_share && !others_keep_theirs {
            tracing::warn!(user = %user, %ip, share = self.share, "passive port share used up");
            return Err(Error::NoDataConnection(format!(
                "Too many passive ports held by your sessions ({} of {} are yours to hold \
                 while others need them): finish or abort a transfer first",
                self.share,
                self.total.unwrap_or(0)
            )));
        }
        held.in_use += 1;
        *held.by.entry(by_user).or_insert(0) += 1;
        *held.by.entry(by_ip).or_insert(0) += 1;
        Ok(PortLease {
            ports: self.clone(),
            user: user.clone(),
            ip,
        })
    }

    /// Closes every parked listener; returns how many there were.
    fn close_parked(&self) -> usize {
        let slots: Vec<_> = self.parked_slots().drain(..).collect();
        let mut closed = 0;
        for slot in slots.iter().filter_map(Weak::upgrade) {
            if slot
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .is_some()
            {
                closed += 1;
            }
        }
        if closed > 0 {
            tracing::info!(closed, "passive range full: closed parked listeners");
        }
        closed
    }
}

/// A passive port could not be opened: the client gets 425, the operator a warning (a full
/// port range is a configuration problem, not the client's).
fn passive_failed(e: io::Error) -> Error {
    tracing::warn!(error = %e, "cannot open a passive port");
    Error::NoDataConnection(format!("Cannot open passive port: {e}"))
}

/// A passive listener kept between two transfers of one session, see [`PARK_TIME`]. The
/// listener sits in a slot [`PassivePorts`] can empty when the range runs out.
#[derive(Debug)]
pub struct ParkedListener {
    slot: Arc<ParkedSlot>,
    pub until: tokio::time::Instant,
}

impl ParkedListener {
    /// Parks the listener if the budget allows; otherwise it is closed.
    pub fn park(listener: PassiveListener, ports: &Arc<PassivePorts>) -> Option<ParkedListener> {
        let mut parked = ports.parked_slots();
        parked.retain(|w| w.strong_count() > 0);
        if parked.len() >= ports.max_parked {
            return None;
        }
        let slot = Arc::new(Mutex::new(Some(listener)));
        parked.push(Arc::downgrade(&slot));
        Some(ParkedListener {
            slot,
            until: tokio::time::Instant::now() + PARK_TIME,
        })
    }

    /// The listener for a new PASV/EPSV, unless it was closed meanwhile. Connections that
    /// queued while it was parked were not asked for by this PASV (a client connects only
    /// once it has the reply): closed.
    pub fn reuse(self) -> Option<PassiveListener> {
        let listener = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        loop {
            match try_accept(&listener.listener) {
                Ok(Some((stale, from))) => {
                    tracing::debug!(?from, "closed a data connection nobody asked for");
                    drop(stale);
                }
                Ok(None) => return Some(listener),
                Err(_) => return None,
            }
        }
    }
}

/// Chunk size for copies through user space (uploads, ASCII, listings).
pub const CHUNK: usize = 256 * 1024;
/// Runs one data-channel IO step, failing with `TimedOut` if the peer makes no progress for
/// `stall`: a client that stops reading or writing must not hold its session forever.
async fn step<T>(
    stall: Duration,
    io: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match tokio::time::timeout(stall, io).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "data connection stalled",
        )),
    }
}

/// Largest single sendfile call; keeps one call short so cancellation stays prompt.
const SENDFILE_CHUNK: usize = 4 * 1024 * 1024;

/// Opens a passive listener on `ip`, in `range` if one is configured; returns it with its port.
pub fn open_passive(
    ip: IpAddr,
    range: Option<(u16, u16)>,
) -> io::Result<(std::net::TcpListener, u16)> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let bind = |port: u16| -> io::Result<std::net::TcpListener> {
        let family = if ip.is_ipv4() {
            AddressFamily::INET
        } else {
            AddressFamily::INET6
        };
        let fd = rustix::net::socket_with(
            family,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )?;
        // The server usually closes data connections first, leaving them in TIME_WAIT for a
        // minute; without SO_REUSEADDR those ports could not listen again, and a busy server
        // would run through its whole passive range (425 for everyone).
        rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
        rustix::net::bind(&fd, &SocketAddr::new(ip, port))?;
        rustix::net::listen(&fd, 8)?;
        Ok(std::net::TcpListener::from(fd))
    };
    let Some((lo, hi)) = range else {
        let listener = bind(0)?;
        let port = listener.local_addr()?.port();
        return Ok((listener, port));
    };
    let span = u32::from(hi - lo) + 1;
    // Start at a random port so concurrent sessions do not all race for the first one.
    let start = rand::random::<u32>() % span;
    let mut last = io::Error::new(io::ErrorKind::AddrInUse, "passive port range exhausted");
    for i in 0..span {
        let port = lo + ((start + i) % span) as u16;
        match bind(port) {
            Ok(l) => return Ok((l, port)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// One non-blocking accept4(2): the connection and its peer, or `None` when none is queued.
fn try_accept(
    listener: &std::net::TcpListener,
) -> io::Result<Option<(std::net::TcpStream, Option<SocketAddr>)>> {
    use rustix::net::SocketFlags;
    match rustix::net::acceptfrom_with(listener, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC) {
        Ok((fd, from)) => {
            let from = from.and_then(|a| SocketAddr::try_from(a).ok());
            Ok(Some((std::net::TcpStream::from(fd), from)))
        }
        Err(rustix::io::Errno::AGAIN) => Ok(None),
        // The client gave up between queueing and our accept: wait for another.
        Err(rustix::io::Errno::CONNABORTED) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether a data connection comes from the control connection's peer; logs a refusal.
fn from_peer(from: Option<SocketAddr>, peer_ip: IpAddr) -> bool {
    match from {
        Some(from) if from.ip().to_canonical() == peer_ip.to_canonical() => true,
        _ => {
            tracing::warn!(?from, "refused data connection from a foreign address");
            false
        }
    }
}

/// The client's data connection if it is already queued, without waiting; connections from
/// other addresses are closed on the way.
pub fn accept_queued(
    listener: &std::net::TcpListener,
    peer_ip: IpAddr,
) -> io::Result<Option<std::net::TcpStream>> {
    while let Some((stream, from)) = try_accept(listener)? {
        if from_peer(from, peer_ip) {
            return Ok(Some(stream));
        }
    }
    Ok(None)
}

/// Accepts the data connection from `peer_ip`, dropping connections from anyone else. The
/// connection comes back non-blocking and not registered with the event loop, see
/// [`DataPlan::Passive`].
pub async fn accept_from(
    passive: PassiveListener,
    peer_ip: IpAddr,
    timeout: Duration,
) -> Result<std::net::TcpStream> {
    let accept_failed =
        |e: io::Error| Error::NoDataConnection(format!("Cannot accept data connection: {e}"));
    // The port stays charged to its holder while the transfer waits on it.
    let PassiveListener {
        listener, _lease, ..
    } = passive;
    if let Some(stream) = accept_queued(&listener, peer_ip).map_err(accept_failed)? {
        return Ok(stream);
    }
    // The client is late: wait for it on the event loop.
    let listener = tokio::net::TcpListener::from_std(listener).map_err(accept_failed)?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, listener.accept()).await {
            Err(_) => return Err(Error::NoDataConnection("Data connection timed out".into())),
            Ok(Err(e)) => return Err(accept_failed(e)),
            Ok(Ok((stream, from))) => {
                if from_peer(Some(from), peer_ip) {
                    return stream.into_std().map_err(accept_failed);
                }
            }
        }
    }
}

/// Checks a PORT/EPRT target before anything connects to it.
pub fn check_active_target(target: SocketAddr, control_peer: IpAddr) -> Result<()> {
    if target.ip().to_canonical() != control_peer.to_canonical() {
        return Err(Error::PortRefused(format!(
            "Illegal PORT command: data connections go only to {}",
            control_peer.to_canonical()
        )));
    }
    if target.port() < 1024 {
        return Err(Error::PortRefused(
            "Illegal PORT command: port below 1024".into(),
        ));
    }
    Ok(())
}

/// Connects to an active-mode client from the control connection's local address.
pub async fn connect_active(
    local_ip: IpAddr,
    target: SocketAddr,
    timeout: Duration,
) -> Result<std::net::TcpStream> {
    let connect = async {
        let socket = if target.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if local_ip.is_ipv4() == target.is_ipv4() {
            socket.bind(SocketAddr::new(local_ip, 0))?;
        }
        socket.connect(target).await?.into_std()
    };
    match tokio::time::timeout(timeout, connect).await {
        Err(_) => Err(Error::NoDataConnection("Data connection timed out".into())),
        Ok(Err(e)) => Err(Error::NoDataConnection(format!(
            "Cannot open data connection: {e}"
        ))),
        Ok(Ok(stream)) => Ok(stream),
    }
}

/// One sendfile(2) call of at most [`SENDFILE_CHUNK`] bytes from `off` towards `end`.
fn sendfile_chunk(
    socket: std::os::fd::BorrowedFd<'_>,
    file: &std::fs::File,
    off: &mut i64,
    end: i64,
) -> io::Result<usize> {
    let want = usize::try_from(end - *off)
        .unwrap_or(SENDFILE_CHUNK)
        .min(SENDFILE_CHUNK);
    nix::sys::sendfile::sendfile(socket, file.as_fd(), Some(off), want).map_err(io::Error::from)
}

/// Whether the byte at `at` is in the page cache: a one-byte read that fails with EAGAIN
/// rather than wait for the disk (RWF_NOWAIT). Any other failure (a file system without
/// RWF_NOWAIT says EOPNOTSUPP) counts as cached, which is how sendfile was always used.
fn in_page_cache(file: &std::fs::File, at: i64) -> bool {
    let mut byte = [0u8; 1];
    let at = u64::try_from(at).unwrap_or(0);
    let flags = rustix::io::ReadWriteFlags::NOWAIT;
    let read = rustix::io::preadv2(file, &mut [io::IoSliceMut::new(&mut byte)], at, flags);
    read != Err(rustix::io::Errno::AGAIN)
}

/// Whether the next [`sendfile_chunk`] from `off` can be served from the page cache: its first
/// and last bytes are there (readahead fills what lies between in order). A chunk within one
/// page (a small file) takes one probe.
fn chunk_cached(file: &std::fs::File, off: i64, end: i64) -> bool {
    const PAGE: i64 = 4096;
    let last = end.min(off.saturating_add(SENDFILE_CHUNK as i64)) - 1;
    in_page_cache(file, off) && (last / PAGE == off / PAGE || in_page_cache(file, last))
}

/// A [`sendfile_chunk`] whose file bytes must come from the disk, run on the blocking pool so
/// the worker thread does not wait for the disk (sendfile(2) reads missing pages
/// synchronously, even on a non-blocking socket). It works on duplicates of both descriptors:
/// when the transfer is dropped (ABOR) while the call runs, the call still owns what it uses.
async fn sendfile_chunk_from_disk(
    fds: &mut Option<(std::os::fd::OwnedFd, std::fs::File)>,
    socket: &TcpStream,
    file: &std::fs::File,
    off: &mut i64,
    end: i64,
) -> io::Result<usize> {
    let (sock, f) = match fds.take() {
        Some(dups) => dups,
        None => (socket.as_fd().try_clone_to_owned()?, file.try_clone()?),
    };
    let mut at = *off;
    let (result, at, sock, f) = tokio::task::spawn_blocking(move || {
        let result = sendfile_chunk(sock.as_fd(), &f, &mut at, end);
        (result, at, sock, f)
    })
    .await
    .map_err(|e| io::Error::other(format!("sendfile failed: {e}")))?;
    *off = at;
    *fds = Some((sock, f));
    if matches!(&result, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
        // The event loop still thinks the socket is writable: clear that, so the next wait
        // really waits for room.
        let _ = socket.try_io(Interest::WRITABLE, || {
            Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
        });
    }
    result
}

/// Sends `file` from `offset` to `len` with sendfile(2). Returns the bytes sent.
///
/// The first chunk is written straight away, and the socket is registered with the event loop
/// only if more remains: a file that fits the socket's send buffer (most small files) costs
/// one system call. A chunk whose bytes are not in the page cache is sent from the blocking
/// pool instead ([`sendfile_chunk_from_disk`]).
pub async fn send_file_zero_copy(
    stream: std::net::TcpStream,
    reader: &Reader,
    offset: u64,
    len: u64,
    sent: &AtomicU64,
    stall: Duration,
) -> io::Result<u64> {
    let Reader::Local(file) = reader else {
        // The caller sends other readers through user space (`send_file_copy`).
        return Err(io::Error::from(io::ErrorKind::Unsupported));
    };
    let mut off =
        i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let end = i64::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let start = off;
    // sendfile advances `off` by what it sent.
    let sent_so_far = |off: i64| (off - start) as u64;
    // One call only, so the caller's first poll stays short whatever the file's size.
    if off < end && chunk_cached(file, off, end) {
        match sendfile_chunk(stream.as_fd(), file, &mut off, end) {
            // The file shrank under us: send what there was.
            Ok(0) => return Ok(sent_so_far(off)),
            Ok(n) => sent.fetch_add(n as u64, Ordering::Relaxed),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
    }
    if off >= end {
        return Ok(sent_so_far(off));
    }
    let stream = TcpStream::from_std(stream)?;
    let mut dups = None;
    while off < end {
        step(stall, stream.writable()).await?;
        let res = if chunk_cached(file, off, end) {
            stream.try_io(Interest::WRITABLE, || {
                sendfile_chunk(stream.as_fd(), file, &mut off, end)
            })
        } else {
            sendfile_chunk_from_disk(&mut dups, &stream, file, &mut off, end).await
        };
        match res {
            Ok(0) => break,
            Ok(n) => sent.fetch_add(n as u64, Ordering::Relaxed),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
    }
    Ok(sent_so_far(off))
}

/// Sends a file through user space, converting line ends when `ascii` (TYPE A).
pub async fn send_file_copy(
    stream: &mut Stream,
    reader: Reader,
    offset: u64,
    ascii: bool,
    sent: &AtomicU64,
    stall: Duration,
) -> io::Result<u64> {
    let mut file = reader.into_stream(offset).await?;
    let mut buf = vec![0u8; CHUNK];
    let mut conv = ToNetwork::default();
    let mut converted = Vec::new();
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let out: &[u8] = if ascii {
            converted.clear();
            conv.convert(&buf[..n], &mut converted);
            &converted
        } else {
            &buf[..n]
        };
        step(stall, stream.write_all(out)).await?;
        total += out.len() as u64;
        sent.fetch_add(out.len() as u64, Ordering::Relaxed);
    }
    step(stall, stream.flush()).await?;
    Ok(total)
}

/// What every upload loop reports to and obeys, bundled: progress, the stall limit, the quota
/// it reserves from, what it has reserved so far, the token that stops it, and the blocking
/// threads uploads may hold (`Shared::upload_threads`). Owned (shared counters), so a plain
/// upload's blocking thread can carry a copy.
#[derive(Clone)]
pub struct UploadMeter {
    pub received: Arc<AtomicU64>,
    pub stall: Duration,
    pub quota: Arc<Usage>,
    pub reserved: Arc<AtomicU64>,
    pub stop: CancellationToken,
    pub threads: Arc<Semaphore>,
    /// The uploading user's share of `threads` (see `server::UploadThreads`).
    pub user_threads: Arc<Semaphore>,
}

/// One upload thread held: of the user's share and of the server's.
pub struct UploadThread {
    _user: OwnedSemaphorePermit,
    _all: OwnedSemaphorePermit,
}

impl UploadMeter {
    /// Waits for one of the blocking threads uploads may hold, within the user's share; the
    /// client's bytes queue in the kernel meanwhile. ABOR or the end of the session stop the
    /// wait.
    async fn thread(&self) -> io::Result<UploadThread> {
        let acquire = async {
            let user = self.user_threads.clone().acquire_owned().await;
            let all = self.threads.clone().acquire_owned().await;
            match (user, all) {
                (Ok(_user), Ok(_all)) => Ok(UploadThread { _user, _all }),
                _ => Err(aborted_upload()),
            }
        };
        tokio::select! {
            thread = acquire => thread,
            _ = self.stop.cancelled() => Err(aborted_upload()),
        }
    }

    /// Reserves up to `want` bytes of quota and counts the reservation.
    fn reserve(&self, want: u64) -> u64 {
        let granted = self.quota.reserve_bytes(want);
        self.reserved.fetch_add(granted, Ordering::Relaxed);
        granted
    }
}

/// Receives an upload into `file` until the client closes the data connection (TLS and TYPE A
/// uploads: the bytes pass through user space here; plain binary ones use [`receive_plain`]).
///
/// The socket is read on the event loop while the previous buffer is written on the blocking
/// pool, so network and disk overlap; each write is one short job holding one of the meter's
/// `threads` only while it runs. A client that trickles its bytes therefore holds no thread
/// between them (a writer thread kept for the whole upload let a few hundred slow TYPE A
/// uploads of one user take every upload thread). Two buffers of [`UPLOAD_CHUNK`] per upload:
/// one being filled, one being written.
///
/// Every buffer is reserved against the user's quota before it is written (`reserved` counts
/// it, for the caller to reconcile with the file's real size afterwards). When the quota runs
/// out, the part that still fits is written and the upload stops with `QuotaExceeded` (552):
/// the user ends at, never over, their limit.
///
/// The writer comes back (unless a write job died with it): completing the upload is the
/// storage's next step, and some backends keep their state in it.
pub async fn receive_file(
    stream: &mut Stream,
    writer: Writer,
    ascii: bool,
    meter: &UploadMeter,
) -> (Option<Writer>, io::Result<u64>) {
    let mut chunks = ChunkWriter {
        writer: Some(writer),
        writing: None,
        spare: Some(Vec::with_capacity(UPLOAD_CHUNK)),
    };
    let read_result = read_chunks(stream, ascii, meter, &mut chunks).await;
    // What was read is written, whatever ended the reading; a write error (disk full) is the
    // cause even when it made the reading side stop too.
    let written = chunks.finish().await;
    let result = match (written, read_result) {
        (Err(e), _) => Err(e),
        (Ok(()), read) => read,
    };
    (chunks.writer, result)
}

/// The write side of [`receive_file`]: at most one write job at a time, in order.
struct ChunkWriter {
    /// Away while a write job has it.
    writer: Option<Writer>,
    writing: Option<tokio::task::JoinHandle<WriteDone>>,
    /// The buffer not being filled or written.
    spare: Option<Vec<u8>>,
}

/// A finished write job: the writer and the buffer back, and how the write went.
type WriteDone = (Writer, Vec<u8>, io::Result<()>);

impl ChunkWriter {
    /// Waits for the running write job, if any; its buffer becomes the spare one.
    async fn settle(&mut self) -> io::Result<()> {
        let Some(job) = self.writing.take() else {
            return Ok(());
        };
        let (writer, mut buf, result) = job
            .await
            .map_err(|e| io::Error::other(format!("upload writer failed: {e}")))?;
        self.writer = Some(writer);
        buf.clear();
        self.spare = Some(buf);
        result
    }

    /// Starts writing `buf` (after the previous write): a file on the blocking pool with one
    /// of the uploads' threads, another backend as a task of its own; returns the buffer to
    /// fill next.
    async fn write(&mut self, buf: Vec<u8>, meter: &UploadMeter) -> io::Result<Vec<u8>> {
        self.settle().await?;
        let Some(writer) = self.writer.take() else {
            return Err(io::Error::other("upload writer lost its file"));
        };
        self.writing = Some(match writer {
            Writer::Local(mut file) => {
                let permit = match meter.thread().await {
                    Ok(permit) => permit,
                    Err(e) => {
                        self.writer = Some(Writer::Local(file));
                        return Err(e);
                    }
                };
                tokio::task::spawn_blocking(move || {
                    use std::io::Write;
                    let result = file.write_all(&buf);
                    drop(permit);
                    (Writer::Local(file), buf, result)
                })
            }
            // Sends a part when one is full: network, no blocking thread.
            Writer::S3(mut upload) => tokio::spawn(async move {
                let result = upload.write(&buf).await;
                (Writer::S3(upload), buf, result)
            }),
        });
        Ok(self
            .spare
            .take()
            .unwrap_or_else(|| Vec::with_capacity(UPLOAD_CHUNK)))
    }

    /// Waits for the last write.
    async fn finish(&mut self) -> io::Result<()> {
        self.settle().await
    }
}

/// How long a plain upload's thread waits for the client's next bytes before it goes back to
/// the pool; the upload then waits on the event loop and takes a thread again when bytes come.
const UPLOAD_IDLE_HOLD: Duration = Duration::from_millis(100);

/// Receives a plain binary upload on one blocking thread: read up to [`UPLOAD_CHUNK`] from the
/// socket, reserve it against the quota, write it, repeat. A client sends faster than one read
/// takes, so each read is large, and no buffer crosses threads (the split reader/writer of
/// [`receive_file`] spent more CPU per GiB on hand-offs than on copying).
///
/// The thread is one of the meter's `threads` (the uploads' share of the blocking pool), held
/// only while bytes come: after [`UPLOAD_IDLE_HOLD`] without any, the thread goes back to the
/// pool, the buffer is freed, and the upload waits for the socket on the event loop.
///
/// Quota as in [`receive_file`]: the part that fits is written, then `QuotaExceeded`. Silence
/// longer than the meter's `stall` fails. ABOR or the end of the session stop it through the
/// meter's `stop`: the socket's read side is shut, which ends a blocked read at once.
pub async fn receive_plain(
    tcp: std::net::TcpStream,
    writer: Writer,
    meter: &UploadMeter,
) -> io::Result<u64> {
    let Writer::Local(file) = writer else {
        // The caller receives into other writers with `receive_file`.
        return Err(io::Error::from(io::ErrorKind::Unsupported));
    };
    let (stall, stop) = (meter.stall, &meter.stop);
    let (mut tcp, mut file, mut total) = (tcp, file, 0u64);
    loop {
        let thread = meter.thread().await?;
        tcp.set_nonblocking(false)?;
        tcp.set_read_timeout(Some(UPLOAD_IDLE_HOLD.min(stall)))?;
        let tcp_shared = Arc::new(tcp);
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (socket, flag, meter) = (tcp_shared.clone(), stopped.clone(), meter.clone());
        let mut job = tokio::task::spawn_blocking(move || {
            let phase = receive_while_busy(&socket, &mut file, &meter, &flag);
            (phase, file)
        });
        let (phase, f) = tokio::select! {
            done = &mut job => done.map_err(|e| io::Error::other(format!("upload failed: {e}")))?,
            _ = stop.cancelled() => {
                stopped.store(true, Ordering::Release);
                let _ = tcp_shared.shutdown(std::net::Shutdown::Read);
                // What was read before the stop is written; then the thread ends.
                let _ = job.await;
                return Err(aborted_upload());
            }
        };
        drop(thread);
        file = f;
        match phase? {
            Phase::Ended(n) => return Ok(total + n),
            Phase::Idle(n) => total += n,
        }
        // The thread's clone is gone with its closure.
        tcp = Arc::try_unwrap(tcp_shared)
            .map_err(|_| io::Error::other("upload socket still shared"))?;
        tcp.set_nonblocking(true)?;
        let waiting = TcpStream::from_std(tcp)?;
        tokio::select! {
            ready = step(stall, waiting.readable()) => ready?,
            _ = stop.cancelled() => return Err(aborted_upload()),
        }
        tcp = waiting.into_std()?;
    }
}

/// How a stretch of a plain upload on its thread ended, with the bytes it received.
enum Phase {
    /// The client closed the connection: the upload is complete.
    Ended(u64),
    /// No bytes for [`UPLOAD_IDLE_HOLD`]: the thread goes back to the pool.
    Idle(u64),
}

/// Reads and writes until the client closes, goes quiet, or the upload is stopped.
fn receive_while_busy(
    socket: &std::net::TcpStream,
    file: &mut std::fs::File,
    meter: &UploadMeter,
    stopped: &std::sync::atomic::AtomicBool,
) -> io::Result<Phase> {
    use std::io::{Read, Write};
    // Allocated per stretch: an upload that waits holds no buffer either.
    let mut buf = vec![0u8; UPLOAD_CHUNK];
    let mut total = 0u64;
    loop {
        let n = match (&*socket).read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // SO_RCVTIMEO ran out.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Phase::Idle(total)),
            Err(e) => return Err(e),
        };
        if stopped.load(Ordering::Acquire) {
            return Err(aborted_upload());
        }
        if n == 0 {
            return Ok(Phase::Ended(total));
        }
        total += n as u64;
        meter.received.fetch_add(n as u64, Ordering::Relaxed);
        let granted = meter.reserve(n as u64);
        // granted <= n, so it fits in usize.
        let fits = usize::try_from(granted).unwrap_or(0);
        file.write_all(&buf[..fits])?;
        if fits < n {
            return Err(io::Error::new(
                io::ErrorKind::QuotaExceeded,
                "disk quota exceeded",
            ));
        }
    }
}

fn aborted_upload() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "transfer aborted")
}

/// Size of an upload's buffers.
const UPLOAD_CHUNK: usize = 1024 * 1024;

async fn read_chunks(
    stream: &mut Stream,
    ascii: bool,
    meter: &UploadMeter,
    writer: &mut ChunkWriter,
) -> io::Result<u64> {
    let (stall, stop) = (meter.stall, &meter.stop);
    let mut conv = FromNetwork::default();
    let mut raw = if ascii {
        vec![0u8; UPLOAD_CHUNK / 2]
    } else {
        Vec::new()
    };
    let mut buf = Vec::with_capacity(UPLOAD_CHUNK);
    let mut total = 0u64;
    loop {
        let mut at_end = false;
        let mut failed = None;
        let n = if ascii {
            let n = until_stopped(stop, read_step(stream, &mut raw, stall)).await?;
            conv.convert(&raw[..n], &mut buf);
            if n == 0 {
                conv.finish(&mut buf);
                at_end = true;
            }
            n
        } else {
            // Into the buffer's spare capacity: no zero-filling a megabyte per read. While the
            // previous buffer is still being written, this one keeps filling: fewer, fuller
            // writes when the client sends faster than the disk takes it; with the writer idle
            // each read goes out at once. A failed read still passes on what this buffer
            // holds: bytes that reached the server are written before the error is reported.
            let before = buf.len();
            loop {
                let read = until_stopped(stop, async {
                    end_of_upload(step(stall, stream.read_buf(&mut buf)).await)
                })
                .await;
                match read {
                    Ok(n) => at_end = n == 0,
                    Err(e) if buf.is_empty() => return Err(e),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
                let writer_busy = writer.writing.as_ref().is_some_and(|w| !w.is_finished());
                if at_end || !writer_busy || buf.capacity() - buf.len() < UPLOAD_CHUNK / 8 {
                    break;
                }
            }
            buf.len() - before
        };
        total += n as u64;
        meter.received.fetch_add(n as u64, Ordering::Relaxed);
        let granted = meter.reserve(buf.len() as u64);
        let over = granted < buf.len() as u64;
        // granted <= buf.len(), so it fits in usize.
        buf.truncate(usize::try_from(granted).unwrap_or(0));
        if !buf.is_empty() {
            buf = writer.write(buf, meter).await?;
        }
        if over {
            return Err(io::Error::new(
                io::ErrorKind::QuotaExceeded,
                "disk quota exceeded",
            ));
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if at_end {
            return Ok(total);
        }
    }
}

/// Runs `io` unless the upload is stopped first (ABOR, end of session): then the upload ends
/// as aborted, and its caller still finishes writing and settling what it has.
async fn until_stopped<T>(
    stop: &CancellationToken,
    io: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::select! {
        biased;
        _ = stop.cancelled() => Err(aborted_upload()),
        r = io => r,
    }
}

/// One read from the data connection; 0 at its end.
async fn read_step(stream: &mut Stream, buf: &mut [u8], stall: Duration) -> io::Result<usize> {
    end_of_upload(step(stall, stream.read(buf)).await)
}

/// A TLS client that closes without close_notify (common; vsftpd accepts it too by default)
/// has still sent its whole upload: that is its end, not an error.
fn end_of_upload(read: io::Result<usize>) -> io::Result<usize> {
    match read {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        other => other,
    }
}

/// Sends an in-memory listing and closes the connection.
pub async fn send_bytes(
    stream: &mut Stream,
    bytes: &[u8],
    sent: &AtomicU64,
    stall: Duration,
) -> io::Result<u64> {
    step(stall, stream.write_all(bytes)).await?;
    step(stall, stream.flush()).await?;
    sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    Ok(bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounce_targets_are_refused() {
        let peer: IpAddr = "127.0.0.1".parse().expect("ip");
        assert!(check_active_target("127.0.0.1:40000".parse().expect("a"), peer).is_ok());
        assert!(check_active_target("127.0.0.2:40000".parse().expect("a"), peer).is_err());
        assert!(check_active_target("127.0.0.1:25".parse().expect("a"), peer).is_err());
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
        assert!(check_active_target("127.0.0.1:40000".parse().expect("a"), mapped).is_ok());
    }

    #[test]
    fn passive_ports_stay_in_range() {
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        // A port the kernel just handed out and released, so the test needs no fixed port.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
        let port = probe.local_addr().expect("addr").port();
        drop(probe);
        let (a, told) = open_passive(ip, Some((port, port))).expect("first");
        assert_eq!(told, port);
        assert_eq!(a.local_addr().expect("a").port(), port);
        assert!(
            open_passive(ip, Some((port, port))).is_err(),
            "range of one port is now full"
        );
    }
}
