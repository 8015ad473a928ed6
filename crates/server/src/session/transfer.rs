//! Commands that set up or use a data connection: PASV, EPSV, PORT, EPRT (RFC 959, RFC 2428),
//! REST (RFC 3659 §5), RETR, STOR, APPE, STOU, LIST, NLST, MLSD, ABOR, TYPE.
//!
//! A transfer command checks everything it can up front (data plan set, path valid, file
//! opens) so errors arrive as one reply with no 150; then it answers 150 and hands the data
//! connection and the open file to a child task ([`RunningTransfer`]). The session loop reports
//! the child's result as 226 or an error reply, and can cancel it on ABOR.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use ferry_proto::command::{DataType, EpsvArg};
use ferry_proto::reply::Escaped;
use ferry_proto::{addr, Reply};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Flow, Session, State};
use crate::config::TlsMode;
use crate::data::{self, DataPlan};
use crate::error::{Error, Result};
use crate::quota::Usage;
use crate::storage::{Home, StorageError, UploadMode, UploadPlan};
use crate::stream::Stream;
use crate::tls::{SessionOwner, Tls};

/// Shortest time without data-channel progress before a transfer is declared stalled.
const MIN_STALL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StoreKind {
    Stor,
    Appe,
}

/// A transfer (or other long job, like HASH) running in its own task while the session keeps
/// reading commands. The task ends with the reply that reports it.
pub struct RunningTransfer {
    handle: JoinHandle<Result<Reply>>,
    progress: Arc<AtomicU64>,
    /// "RETR /path" for STAT and logs.
    label: String,
    started: Instant,
    /// Cancelled when the job is aborted or the session ends: blocking work that the task
    /// handed to another thread (hashing) checks it and stops, so nothing runs on unseen.
    cancel: CancellationToken,
    /// The job watches `cancel` itself and must run its clean-up (an upload settles the quota
    /// with what reached the disk), so it is never dropped half-way.
    graceful: bool,
}

impl RunningTransfer {
    /// Stops the transfer: a graceful job winds down on its own (detached), any other is
    /// dropped, which closes its data connection.
    pub fn cancel(self) {
        self.cancel.cancel();
        if !self.graceful {
            self.handle.abort();
        }
    }

    pub(super) fn status(&self) -> String {
        format!(
            "{}: {} bytes transferred in {:.1} s",
            self.label,
            self.progress.load(Ordering::Relaxed),
            self.started.elapsed().as_secs_f64()
        )
    }
}

/// What the session keeps of a child job besides its future.
pub(super) struct Job {
    /// "RETR /path" for STAT and logs.
    pub label: String,
    pub progress: Arc<AtomicU64>,
    /// See [`RunningTransfer`].
    pub cancel: CancellationToken,
    pub graceful: bool,
}

/// Commands answered at once even while a transfer runs (RFC 959 §4.1.3: ABOR, STAT; QUIT).
pub(super) fn is_urgent(line: &[u8]) -> bool {
    let verb: Vec<u8> = line
        .iter()
        .take_while(|b| **b != b' ')
        .map(u8::to_ascii_uppercase)
        .collect();
    matches!(verb.as_slice(), b"ABOR" | b"STAT" | b"QUIT" | b"NOOP")
}

/// Waits for the running transfer to end (pending forever when there is none). Cancel-safe.
pub(super) async fn wait(transfer: &mut Option<RunningTransfer>) -> Result<Reply> {
    match transfer {
        Some(t) => match (&mut t.handle).await {
            Ok(result) => result,
            Err(e) => Err(Error::TransferAborted(format!("Transfer failed: {e}"))),
        },
        None => std::future::pending().await,
    }
}

/// An upload stopped by ABOR or the end of its session.
fn aborted() -> Error {
    Error::TransferAborted("Transfer aborted".into())
}

/// Socket errors end a transfer as aborted (426); file errors keep their own code.
pub(super) fn classify(e: std::io::Error) -> Error {
    use std::io::ErrorKind::*;
    match e.kind() {
        BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof | TimedOut
        | NotConnected => Error::TransferAborted("Connection closed; transfer aborted".into()),
        _ => Error::Io(e),
    }
}

/// Gives the CPU back, once, just before the 227/229 reply is written (after the listener is
/// set up), so that a client on this host has returned from sending PASV/EPSV before the reply
/// is there.
///
/// Over loopback the client's send() delivers the command and wakes this worker inside the
/// client's own system call; when the worker is woken on the client's CPU it preempts the
/// client there, and wrote the reply before the client's send() had returned. curl 7.88
/// (Debian 12) polls the control connection without waiting right after sending EPSV (the DO
/// phase, `ftp_perform`); when the 229 is already complete there, it reads it, sets the data
/// connection up without starting to connect ("sit down, relax and wait a little while",
/// multi.c) and sleeps until its next timer: the control connection's 200 ms happy-eyeballs
/// timer, or 1 s on a reused connection. That was 10 to 15 of 20 fetches of a 4 KiB file, every
/// one with the worker on curl's CPU. A reply that comes after that poll wakes curl, which
/// connects at once. The yield lets the preempted client run on to its poll (or, for a blocking
/// client such as ftplib, to its recv), and the reply follows.
///
/// A yield and no hold time: it costs one system call when nothing else is runnable on this
/// CPU (a remote client, a client on the other CPU) and no timer wake-up; with ftplib (4 KiB
/// RETR) the time per transfer stayed within noise, where holding the reply 100 us on a timerfd
/// added 150-250 us and a tokio sleep (1 ms granularity) 1.2 ms. It is a hint, not a guarantee:
/// when the client has used up its time slice the scheduler may pick this thread again, and
/// about 1 curl 7.88 fetch in 100 still stalls on an idle machine (5 in 100 on a loaded one,
/// against 25-65 without the yield). Over a real link the reply cannot beat curl's poll: none
/// stalled through a proxy adding 50 us or 500 us each way.
fn yield_to_local_client() {
    std::thread::yield_now();
}

/// A transfer's data connection: already there, or still to accept or make.
enum DataConn {
    /// Accepted when the transfer command arrived (the usual case for passive mode).
    Ready(std::net::TcpStream),
    /// The client has not connected yet.
    Passive(data::PassiveListener),
    /// PROT P passive: accepted and handshaken by its own task since PASV/EPSV.
    PendingTls(data::PendingTls),
    Active(SocketAddr),
}

/// Everything a transfer task needs to get its data connection.
pub(super) struct DataTarget {
    conn: DataConn,
    /// PROT P: wrap the connection in TLS, resuming a session its control connection may use.
    protect: Option<(Arc<Tls>, SessionOwner)>,
    peer_ip: IpAddr,
    local_ip: IpAddr,
    timeout: Duration,
    /// Longest wait for the peer to make progress once connected.
    pub(super) stall: Duration,
}

impl DataTarget {
    /// Whether the connection stays plain TCP (no PROT P), so the kernel sees the bytes.
    fn is_plain(&self) -> bool {
        self.protect.is_none()
    }

    /// The plain TCP connection as it was accepted or connected: non-blocking and not yet
    /// registered with the event loop. Only for [`DataTarget::is_plain`] targets.
    async fn connect_plain(self) -> Result<std::net::TcpStream> {
        debug_assert!(self.is_plain());
        match self.conn {
            DataConn::Ready(stream) => Ok(stream),
            DataConn::Passive(listener) => {
                data::accept_from(listener, self.peer_ip, self.timeout).await
            }
            DataConn::Active(target) => {
                data::connect_active(self.local_ip, target, self.timeout).await
            }
            DataConn::PendingTls(_) => Err(Error::NoDataConnection(
                "The data connection was set up for PROT P; send PASV or EPSV again".into(),
            )),
        }
    }

    /// The data connection as a stream, TLS under PROT P.
    pub(super) async fn connect(mut self) -> Result<Stream> {
        let Some((tls, owner)) = self.protect.take() else {
            return Ok(Stream::Plain(TcpStream::from_std(
                self.connect_plain().await?,
            )?));
        };
        let timeout = self.timeout;
        let tcp = match self.conn {
            DataConn::PendingTls(pending) => return pending.wait(timeout).await,
            // PROT P came after PASV: the listener was not handed to a task yet.
            DataConn::Passive(listener) => {
                let accept = data::accept_tls(listener, tls, owner, timeout);
                return match tokio::time::timeout(timeout, accept).await {
                    Ok(result) => result,
                    Err(_) => Err(Error::NoDataConnection("Data connection timed out".into())),
                };
            }
            DataConn::Ready(stream) => stream,
            DataConn::Active(target) => {
                data::connect_active(self.local_ip, target, timeout).await?
            }
        };
        let stream = tls
            .accept_data(TcpStream::from_std(tcp)?, &owner, timeout)
            .await
            .map_err(Error::DataTls)?;
        Ok(Stream::Tls(Box::new(stream)))
    }
}

impl Session {
    pub(super) async fn set_type(&mut self, t: DataType) -> Result<Flow> {
        self.client()?.data_type = t;
        let text = match t {
            DataType::Ascii => "Switching to ASCII mode",
            DataType::Image => "Switching to Binary mode",
        };
        self.ok(200, text).await
    }

    pub(super) async fn rest(&mut self, offset: u64) -> Result<Flow> {
        self.client()?.rest = offset;
        self.ok(350, &format!("Restarting at {offset}. Send STOR or RETR"))
            .await
    }

    fn local_ip(&self) -> IpAddr {
        self.local.ip().to_canonical()
    }

    pub(super) async fn pasv(&mut self) -> Result<Flow> {
        if self.client()?.epsv_all {
            return Err(Error::EpsvAllOnly);
        }
        let local_ip = self.local_ip();
        let IpAddr::V4(bind_v4) = local_ip else {
            return Err(Error::NoDataConnection(
                "PASV is IPv4 only; use EPSV".into(),
            ));
        };
        let port = self.listen_passive(local_ip)?;
        let shown = match self.shared.config.passive_address {
            Some(IpAddr::V4(ip)) => ip,
            _ => bind_v4,
        };
        yield_to_local_client();
        self.ok(227, &addr::pasv_reply_text(shown, port)).await
    }

    pub(super) async fn epsv(&mut self, arg: EpsvArg) -> Result<Flow> {
        let local_ip = self.local_ip();
        match arg {
            EpsvArg::All => {
                self.client()?.epsv_all = true;
                return self.ok(200, "EPSV ALL ok").await;
            }
            EpsvArg::Protocol(p) if (p == 1) != local_ip.is_ipv4() => {
                return Err(Error::NetworkProtocol(if local_ip.is_ipv4() {
                    1
                } else {
                    2
                }));
            }
            _ => {}
        }
        let port = self.listen_passive(local_ip)?;
        yield_to_local_client();
        self.ok(229, &addr::epsv_reply_text(port)).await
    }

    /// Sets up the passive listener for the next transfer, the parked one if there is one;
    /// returns its port. Under PROT P the listener goes to a task that accepts and handshakes
    /// the client's connection as soon as it comes ([`data::PendingTls`]).
    fn listen_passive(&mut self, local_ip: IpAddr) -> Result<u16> {
        let protect = self.protection();
        let timeout = self.shared.config.data_timeout;
        let (ports, peer_ip) = (self.shared.ports.clone(), self.peer.ip());
        let client = self.client()?;
        // A PASV replaces any earlier data plan, whose listener closes here.
        client.data = None;
        let passive = match client.parked.take().and_then(|p| p.reuse()) {
            Some(reused) => reused,
            None => {
                let user: Arc<str> = Arc::from(client.account.name.as_str());
                ports.open(local_ip, &user, peer_ip)?
            }
        };
        let port = passive.port;
        client.data = Some(match protect {
            Some((tls, owner)) => {
                DataPlan::PassiveTls(data::PendingTls::start(passive, tls, owner, timeout))
            }
            None => DataPlan::Passive(passive),
        });
        Ok(port)
    }

    /// Under PROT P, the TLS set-up data connections use and whose they are.
    fn protection(&self) -> Option<(Arc<Tls>, SessionOwner)> {
        if !self.prot_private {
            return None;
        }
        let tls = self.shared.tls.clone()?;
        let user = match &self.state {
            State::LoggedIn(c) => Some(Arc::from(c.account.name.as_str())),
            _ => None,
        };
        let owner = SessionOwner {
            token: self.token,
            user,
            ip: self.peer.ip(),
        };
        Some((tls, owner))
    }

    /// Closes the passive listener kept from the last transfer once its time is up.
    pub(super) fn unpark_expired(&mut self, now: tokio::time::Instant) {
        if let State::LoggedIn(c) = &mut self.state {
            if c.parked.as_ref().is_some_and(|p| now >= p.until) {
                c.parked = None;
            }
        }
    }

    /// PORT or EPRT (`verb`), which differ only in how the address is written.
    pub(super) async fn port(&mut self, target: SocketAddr, verb: &str) -> Result<Flow> {
        if self.client()?.epsv_all {
            return Err(Error::EpsvAllOnly);
        }
        data::check_active_target(target, self.peer.ip())?;
        let client = self.client()?;
        client.parked = None;
        client.data = Some(DataPlan::Active(target));
        self.ok(200, &format!("{verb} command successful")).await
    }

    /// Takes the data plan for a transfer command; every transfer command consumes it, so a
    /// stale passive connection is never reused.
    pub(super) fn take_data_target(&mut self) -> Result<DataTarget> {
        let peer_ip = self.peer.ip();
        let local_ip = self.local_ip();
        let timeout = self.shared.config.data_timeout;
        // Kernel buffers let second-long gaps between writable events look like a stall to a
        // short timer even while the client reads steadily; only a long silence is a stall.
        let stall = self.shared.config.idle_timeout.max(MIN_STALL);
        if self.shared.config.tls == TlsMode::Required && !self.prot_private {
            return Err(Error::ProtRequired);
        }
        let protect = self.protection();
        if self.prot_private && protect.is_none() {
            return Err(Error::DataTls("TLS is not configured".into()));
        }
        // Matched directly (not through `client()`) so `self.shared` stays readable beside it.
        let State::LoggedIn(client) = &mut self.state else {
            return Err(Error::NotLoggedIn("Please login with USER and PASS"));
        };
        let plan = client
            .data
            .take()
            .ok_or_else(|| Error::NoDataConnection("Use PASV, EPSV, PORT or EPRT first".into()))?;
        let conn = match plan {
            // The client is usually connected by now: take its connection, and keep the
            // listener for the next PASV. An accept error is left to the transfer to report.
            DataPlan::Passive(passive) => match data::accept_queued(&passive.listener, peer_ip) {
                Ok(Some(stream)) => {
                    client.parked = data::ParkedListener::park(passive, &self.shared.ports);
                    DataConn::Ready(stream)
                }
                Ok(None) | Err(_) => DataConn::Passive(passive),
            },
            DataPlan::PassiveTls(pending) => {
                if protect.is_none() {
                    return Err(Error::NoDataConnection(
                        "The data connection was set up for PROT P; send PASV or EPSV again".into(),
                    ));
                }
                DataConn::PendingTls(pending)
            }
            DataPlan::Active(target) => DataConn::Active(target),
        };
        Ok(DataTarget {
            conn,
            protect,
            peer_ip,
            local_ip,
            timeout,
            stall,
        })
    }

    /// Answers 150 and starts the transfer, which reports 226 when it succeeds.
    pub(super) async fn start_transfer<F>(
        &mut self,
        preliminary: String,
        label: String,
        progress: Arc<AtomicU64>,
        task: F,
    ) -> Result<Flow>
    where
        F: std::future::Future<Output = Result<u64>> + Send + 'static,
    {
        let done = async move { task.await.map(|_| Reply::new(226, "Transfer complete")) };
        let job = Job {
            label,
            progress,
            cancel: CancellationToken::new(),
            graceful: false,
        };
        self.start_job(Some(Reply::new(150, preliminary)), job, done)
            .await?;
        Ok(Flow::Continue)
    }

    /// Runs `task` as the session's child job, after the `preliminary` reply (150) if it has
    /// one; the job's own reply is sent when it ends. ABOR cancels the job's token and, unless
    /// the job is graceful (it then stops by itself), the task.
    ///
    /// The job is polled once right here first: a small download whose client is already
    /// connected finishes in that poll (accept, one sendfile, close) and is reported at once,
    /// 150 and 226 in one write, without a task of its own or a wake-up across threads. That
    /// first poll is bounded (it sends at most one sendfile chunk before it has to wait), and
    /// the 150 goes out before any wait, so a client that waits for it is never held up. Only a
    /// job that has to wait becomes a task; it re-registers its wakers with the new task on its
    /// next poll.
    pub(super) async fn start_job<F>(
        &mut self,
        preliminary: Option<Reply>,
        job: Job,
        task: F,
    ) -> std::io::Result<()>
    where
        F: std::future::Future<Output = Result<Reply>> + Send + 'static,
    {
        let started = Instant::now();
        let mut task = Box::pin(task);
        let first = std::future::poll_fn(|cx| Poll::Ready(task.as_mut().poll(cx))).await;
        if let Poll::Ready(result) = first {
            let bytes = job.progress.load(Ordering::Relaxed);
            return self
                .report_job(preliminary, &job.label, bytes, started, result)
                .await;
        }
        if let Some(reply) = preliminary {
            self.reply(reply).await?;
        }
        self.transfer = Some(RunningTransfer {
            handle: tokio::spawn(task),
            progress: job.progress,
            label: job.label,
            started,
            cancel: job.cancel,
            graceful: job.graceful,
        });
        Ok(())
    }

    /// Reports the finished child job: 226, or the error's reply.
    pub(super) async fn finish_transfer(&mut self, result: Result<Reply>) -> std::io::Result<()> {
        let Some(t) = self.transfer.take() else {
            return Ok(());
        };
        let bytes = t.progress.load(Ordering::Relaxed);
        self.report_job(None, &t.label, bytes, t.started, result)
            .await
    }

    /// Sends a finished job's reply, after `preliminary` in the same write; one log line
    /// either way.
    async fn report_job(
        &mut self,
        preliminary: Option<Reply>,
        label: &str,
        bytes: u64,
        started: Instant,
        result: Result<Reply>,
    ) -> std::io::Result<()> {
        let secs = started.elapsed().as_secs_f64();
        let rate_mib_s = bytes as f64 / secs.max(1e-6) / (1024.0 * 1024.0);
        let user = match &self.state {
            super::State::LoggedIn(c) => c.account.name.as_str(),
            _ => "",
        };
        match &result {
            Ok(_) => {
                tracing::info!(
                    user,
                    transfer = %Escaped(label),
                    bytes,
                    secs,
                    rate_mib_s,
                    result = "ok",
                    "transfer"
                )
            }
            Err(e) => {
                tracing::info!(user, transfer = %Escaped(label), bytes, secs, rate_mib_s, result = %e, "transfer")
            }
        }
        let reply = match result {
            Ok(reply) => reply,
            Err(e) => e.reply(),
        };
        match preliminary {
            Some(first) => {
                let mut bytes = first.to_bytes();
                reply.write_to(&mut bytes);
                self.send(&bytes).await
            }
            None => self.reply(reply).await,
        }
    }

    pub(super) async fn abor(&mut self) -> Result<Flow> {
        match self.transfer.take() {
            Some(t) => {
                t.cancel.cancel();
                if !t.graceful {
                    t.handle.abort();
                }
                let label = t.label.clone();
                let bytes = t.progress.load(Ordering::Relaxed);
                let _ = t.handle.await;
                tracing::info!(transfer = %Escaped(&label), bytes, result = "aborted", "transfer");
                self.reply(Reply::new(426, "Connection closed; transfer aborted"))
                    .await?;
                self.ok(226, "ABOR successful").await
            }
            None => {
                if let Ok(c) = self.client() {
                    c.data = None;
                }
                self.ok(225, "No transfer to abort").await
            }
        }
    }

    pub(super) async fn retr(&mut self, arg: String) -> Result<Flow> {
        let target = self.take_data_target()?;
        let (files, path) = self.resolve(&arg)?;
        let client = self.client()?;
        let offset = std::mem::take(&mut client.rest);
        let ascii = client.data_type == DataType::Ascii;
        let (reader, size) = files.open_read(&path).await?;
        // RFC 959: an offset the file does not reach is an invalid REST parameter (554), not
        // an empty transfer that looks complete.
        if offset > size {
            return Err(Error::BadRestOffset(format!(
                "Invalid REST parameter: {path} has {size} bytes, REST was {offset}"
            )));
        }
        let progress = Arc::new(AtomicU64::new(0));
        let sent = progress.clone();
        let task = async move {
            let stall = target.stall;
            // Zero-copy only where the kernel sees the plain bytes. Closing the socket sends
            // the FIN after the queued data, as shutdown(2) would.
            if target.is_plain() && !ascii && reader.is_local() {
                let tcp = target.connect_plain().await?;
                return data::send_file_zero_copy(tcp, &reader, offset, size, &sent, stall)
                    .await
                    .map_err(classify);
            }
            let mut stream = target.connect().await?;
            let n = data::send_file_copy(&mut stream, reader, offset, ascii, &sent, stall)
                .await
                .map_err(classify)?;
            stream.shutdown().await.map_err(classify)?;
            Ok(n)
        };
        let mode = if ascii { "ASCII" } else { "BINARY" };
        let text = format!("Opening {mode} mode data connection for {path} ({size} bytes)");
        self.start_transfer(text, format!("RETR {path}"), progress, task)
            .await
    }

    pub(super) async fn stor(&mut self, arg: String, kind: StoreKind) -> Result<Flow> {
        let target = self.take_data_target()?;
        let (files, path) = self.resolve(&arg)?;
        let client = self.client()?;
        let rest = std::mem::take(&mut client.rest);
        let ascii = client.data_type == DataType::Ascii;
        let usage = client.usage.clone();
        let mode = match kind {
            StoreKind::Appe => UploadMode::Appe {
                offered: match client.resume_offer.take() {
                    Some((offered_path, received)) if offered_path == path => Some(received),
                    _ => None,
                },
            },
            StoreKind::Stor => UploadMode::Stor { rest },
        };
        // A file that does not exist yet takes a slot of the file limit up front.
        let creates = matches!(files.stat(&path).await, Err(e) if e.is_not_found());
        if creates && !usage.reserve_file() {
            return Err(StorageError::QuotaExceeded("file limit reached").into());
        }
        let plan = match files.open_upload(&path, mode).await {
            Ok(plan) => {
                usage.release_bytes(plan.released);
                if creates && !plan.new_file {
                    usage.release_file();
                }
                plan
            }
            Err(e) => {
                if creates {
                    usage.release_file();
                }
                return Err(e.into());
            }
        };
        let verb = if kind == StoreKind::Appe {
            "APPE"
        } else {
            "STOR"
        };
        let text = format!("Opening data connection for {path}");
        self.upload(
            target,
            plan,
            ascii,
            files,
            usage,
            format!("{verb} {path}"),
            text,
        )
        .await
    }

    pub(super) async fn stou(&mut self, arg: Option<String>) -> Result<Flow> {
        let target = self.take_data_target()?;
        let (files, base) = self.resolve(arg.as_deref().unwrap_or("ferry.upload"))?;
        let client = self.client()?;
        let ascii = client.data_type == DataType::Ascii;
        let usage = client.usage.clone();
        if !usage.reserve_file() {
            return Err(StorageError::QuotaExceeded("file limit reached").into());
        }
        let plan = match files.create_unique(&base).await {
            Ok(plan) => plan,
            Err(e) => {
                usage.release_file();
                return Err(e.into());
            }
        };
        let path = plan.written.clone();
        let text = format!("FILE: {path}");
        self.upload(
            target,
            plan,
            ascii,
            files,
            usage,
            format!("STOU {path}"),
            text,
        )
        .await
    }

    /// Runs an upload: receive within quota, then settle the quota with the real file size
    /// and, for an overwrite, move the completed part file over the original.
    #[allow(clippy::too_many_arguments)]
    async fn upload(
        &mut self,
        target: DataTarget,
        plan: UploadPlan,
        ascii: bool,
        files: Home,
        usage: Arc<Usage>,
        label: String,
        preliminary: String,
    ) -> Result<Flow> {
        let progress = Arc::new(AtomicU64::new(0));
        let received = progress.clone();
        let UploadPlan {
            writer,
            written,
            replaces,
            start_size,
            claim,
            new_file,
            ..
        } = plan;
        let sync = self.shared.config.sync_uploads;
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let threads = self.shared.upload_threads.all.clone();
        let user_threads = match &self.state {
            State::LoggedIn(c) => self.shared.upload_threads.of_user(&c.account.name),
            _ => return Err(Error::NotLoggedIn("Please login with USER and PASS")),
        };
        let task = async move {
            let reserved = Arc::new(AtomicU64::new(0));
            // Given back by the receiving side, for backends that complete through it.
            let mut handed_back = None;
            let result = async {
                let stall = target.stall;
                let meter = data::UploadMeter {
                    received: received.clone(),
                    stall,
                    quota: usage.clone(),
                    reserved: reserved.clone(),
                    stop: stop.clone(),
                    threads,
                    user_threads,
                };
                if target.is_plain() && !ascii && writer.is_local() {
                    let tcp = tokio::select! {
                        s = target.connect_plain() => s?,
                        _ = stop.cancelled() => return Err(aborted()),
                    };
                    return data::receive_plain(tcp, writer, &meter)
                        .await
                        .map_err(classify);
                }
                let mut stream = tokio::select! {
                    s = target.connect() => s?,
                    _ = stop.cancelled() => {
                        handed_back = Some(writer);
                        return Err(aborted());
                    }
                };
                let (writer, received) =
                    data::receive_file(&mut stream, writer, ascii, &meter).await;
                handed_back = writer;
                let n = received.map_err(classify)?;
                // Answer the client's TLS close_notify with ours (ftplib waits for it). The
                // upload is complete either way, so a failure here changes nothing.
                let _ = tokio::time::timeout(stall, stream.shutdown()).await;
                Ok::<u64, Error>(n)
            }
            .await;
            let reserved = reserved.load(Ordering::Relaxed);
            // With `sync_uploads`, a 226 promises that the bytes and the name they are under
            // are on stable storage (see `Home::complete_upload`).
            let completed = files
                .complete_upload(
                    handed_back,
                    &written,
                    replaces,
                    new_file,
                    result.is_ok(),
                    sync,
                )
                .await;
            match &completed {
                Ok(done) => {
                    usage.settle(reserved, done.size.saturating_sub(start_size));
                    usage.release_bytes(done.replaced);
                    if new_file && !done.target_exists {
                        usage.release_file();
                    }
                }
                // Size unknown: what was reserved stays counted (never under the real use;
                // a rescan corrects it).
                Err(_) => usage.settle(reserved, reserved),
            }
            usage.persist();
            drop(claim);
            result?;
            completed?;
            let c = usage.snapshot();
            Ok(match c.remaining_bytes() {
                Some(left) => Reply::new(
                    226,
                    format!(
                        "Transfer complete; {} of quota left",
                        crate::size::format_size(left)
                    ),
                ),
                None => Reply::new(226, "Transfer complete"),
            })
        };
        let job = Job {
            label,
            progress,
            cancel,
            graceful: true,
        };
        self.start_job(Some(Reply::new(150, preliminary)), job, task)
            .await?;
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgent_commands() {
        assert!(is_urgent(b"ABOR"));
        assert!(is_urgent(b"stat"));
        assert!(!is_urgent(b"RETR x"));
    }
}
