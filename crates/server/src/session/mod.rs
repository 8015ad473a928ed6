//! One FTP session: the task that owns a control connection from greeting to close.
//!
//! The session is a state machine ([`State`]: awaiting USER, awaiting PASS, logged in) driven by
//! one `select!` loop over: the next control line, the running transfer's completion, the idle
//! timer and server shutdown. Transfers run as a child task, so ABOR, STAT and QUIT are answered
//! while bytes flow; any other command that arrives meanwhile waits its turn, in order. The one
//! `match` in [`Session::dispatch`] maps each command to its handler; handlers live in
//! `login.rs`, `files.rs`, `transfer.rs` and `info.rs` by what they touch.

mod files;
mod info;
mod integrity;
mod listing;
mod login;
mod security;
mod transfer;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use ferry_proto::command::{DataType, HashAlgo};
use ferry_proto::{Command, LineError, LineFramer, Reply, VirtualPath};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::Instrument;

use crate::auth::Account;
use crate::data::DataPlan;
use crate::error::{Error, Result};
use crate::server::Shared;
use crate::storage::{Home, StorageError};
use crate::stream::Stream;
use crate::tls::SessionToken;

pub use transfer::RunningTransfer;

/// Lines that may wait behind a running transfer before the client is considered abusive.
const MAX_DEFERRED: usize = 32;
/// Room made in the framer's buffer before a control read. Commands are short, and the buffer
/// belongs to every idle session; a longer burst grows it (the buffer doubles as needed).
const READ_ROOM: usize = 64;

/// Login state; each variant holds only what is valid in it.
enum State {
    AwaitingUser,
    AwaitingPass { user: String },
    LoggedIn(Box<Client>),
}

/// Everything that exists only once a user is logged in.
struct Client {
    account: Account,
    files: Home,
    cwd: VirtualPath,
    data_type: DataType,
    /// Offset from REST, used by the next RETR/STOR.
    rest: u64,
    rename_from: Option<VirtualPath>,
    epsv_all: bool,
    data: Option<DataPlan>,
    /// The passive listener of the last transfer, offered again to the next PASV/EPSV.
    parked: Option<crate::data::ParkedListener>,
    /// Algorithm chosen with OPTS HASH.
    hash_algo: HashAlgo,
    /// Byte range from RANG, used by the next HASH.
    range: Option<(u64, u64)>,
    /// Quota counters, shared with the user's other sessions.
    usage: Arc<crate::quota::Usage>,
    /// The last SIZE answered from an interrupted overwrite: that path and the bytes of it
    /// received. An APPE of the same path continues the upload from there (curl `-C -`).
    resume_offer: Option<(VirtualPath, u64)>,
}

/// What the loop does after a command.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

pub struct Session {
    id: u64,
    shared: Arc<Shared>,
    stream: Stream,
    framer: LineFramer,
    /// Bound into this control connection's TLS tickets; data connections must present it.
    token: SessionToken,
    /// This connection's entry among the TLS ones (from its handshake on): whose sessions
    /// the data connections of the user's other connections may resume.
    tls_sessions: Option<crate::tls::Registration>,
    /// Start with a TLS handshake (implicit FTPS).
    implicit_tls: bool,
    /// PROT P: data connections are TLS.
    prot_private: bool,
    /// Facts chosen with OPTS MLST for MLSD/MLST.
    mlst_facts: ferry_proto::listing::Facts,
    peer: SocketAddr,
    local: SocketAddr,
    state: State,
    transfer: Option<RunningTransfer>,
    deferred: VecDeque<Vec<u8>>,
    /// QUIT arrived during a transfer: close once it has been reported.
    quit_after_transfer: bool,
    /// What the client called itself with CLNT, made safe to log and show (see `info.rs`).
    client_name: Option<Box<str>>,
    /// Held for the session's life: its places under the server's connection limits.
    limits: crate::server::SessionLimits,
}

impl Session {
    pub fn new(
        id: u64,
        shared: Arc<Shared>,
        stream: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        implicit_tls: bool,
        limits: crate::server::SessionLimits,
    ) -> Session {
        let max_line = shared.config.max_line;
        Session {
            id,
            shared,
            stream: Stream::Plain(stream),
            framer: LineFramer::new(max_line),
            token: crate::tls::new_token(),
            tls_sessions: None,
            implicit_tls,
            // Implicit FTPS clients expect protected data without asking (RFC 4217 §2 history).
            prot_private: implicit_tls,
            mlst_facts: ferry_proto::listing::Facts::ALL,
            peer,
            local,
            state: State::AwaitingUser,
            transfer: None,
            deferred: VecDeque::new(),
            quit_after_transfer: false,
            client_name: None,
            limits,
        }
    }

    /// Runs the session to its end. Never panics on client input; IO errors just end it.
    ///
    /// Every idle session is this future, so its size is watched: the session is owned by the
    /// `async move` block alone (an `async fn` taking `mut self` would hold it twice, as its
    /// argument and as a local), and rare deep awaits (TLS handshake, reporting a transfer)
    /// are boxed so their state exists only while they run.
    pub fn run(mut self) -> impl std::future::Future<Output = ()> + Send {
        let span = tracing::info_span!("session", id = self.id, peer = %self.peer, user = tracing::field::Empty);
        async move { self.run_logged().await }.instrument(span)
    }

    async fn run_logged(&mut self) {
        let started = std::time::Instant::now();
        tracing::info!("session start");
        let result = self.serve().await;
        if let Some(t) = self.transfer.take() {
            t.cancel();
        }
        let user = match &self.state {
            State::LoggedIn(c) => c.account.name.as_str(),
            _ => "-",
        };
        match result {
            Ok(()) => tracing::info!(user, secs = started.elapsed().as_secs_f64(), "session end"),
            Err(e) => {
                tracing::info!(user, secs = started.elapsed().as_secs_f64(), error = %e, "session end")
            }
        }
    }

    async fn serve(&mut self) -> std::io::Result<()> {
        if self.implicit_tls {
            Box::pin(self.start_tls()).await?;
        }
        self.reply(Reply::new(220, "Ferry FTP server ready"))
            .await?;
        let shutdown = self.shared.shutdown.clone();
        let mut idle_deadline = Instant::now() + self.shared.config.idle_timeout;
        let login_deadline = Instant::now() + self.shared.config.login_timeout;
        let mut shutting_down = false;
        loop {
            // Work already buffered comes first: deferred lines once no transfer runs, then
            // lines already framed, so pipelined commands are answered in order.
            if self.transfer.is_none() {
                if let Some(line) = self.deferred.pop_front() {
                    if self.handle_line(&line).await? == Flow::Close {
                        return Ok(());
                    }
                    continue;
                }
            }
            match self.framer.next_line() {
                Ok(Some(line)) => {
                    idle_deadline = Instant::now() + self.shared.config.idle_timeout;
                    if self.transfer.is_some() && !transfer::is_urgent(&line) {
                        if self.deferred.len() >= MAX_DEFERRED {
                            self.reply(Reply::new(421, "Too many commands during a transfer"))
                                .await?;
                            return Ok(());
                        }
                        self.deferred.push_back(line);
                    } else if self.handle_line(&line).await? == Flow::Close {
                        return Ok(());
                    }
                    continue;
                }
                Err(LineError::TooLong) => {
                    self.reply(Reply::new(500, "Command line too long")).await?;
                    return Ok(());
                }
                Ok(None) => {}
            }
            let transfer_running = self.transfer.is_some();
            // One timer for both deadlines: the idle timeout (not while a transfer runs) and
            // the end of a parked passive listener's time.
            let parked_until = match &self.state {
                State::LoggedIn(c) => c.parked.as_ref().map(|p| p.until),
                _ => None,
            };
            let logged_in = matches!(self.state, State::LoggedIn(_));
            // Before login, the login deadline comes first (a connection that never logs in
            // holds a place in the budget of those waiting to).
            let quiet_until = if logged_in {
                idle_deadline
            } else {
                idle_deadline.min(login_deadline)
            };
            let wake_at = match (transfer_running, parked_until) {
                (false, Some(p)) => Some(p.min(quiet_until)),
                (false, None) => Some(quiet_until),
                (true, parked) => parked,
            };
            tokio::select! {
                _ = shutdown.cancelled(), if !shutting_down => {
                    shutting_down = true;
                    if !transfer_running {
                        self.reply(Reply::new(421, "Server shutting down")).await?;
                        return Ok(());
                    }
                }
                outcome = transfer::wait(&mut self.transfer), if transfer_running => {
                    Box::pin(self.finish_transfer(outcome)).await?;
                    // Time spent transferring is not idle time.
                    idle_deadline = Instant::now() + self.shared.config.idle_timeout;
                    if shutting_down {
                        self.reply(Reply::new(421, "Server shutting down")).await?;
                        return Ok(());
                    }
                    if self.quit_after_transfer {
                        self.reply(Reply::new(221, "Goodbye")).await?;
                        return Ok(());
                    }
                }
                // Straight into the framer's buffer: an idle session carries no read buffer
                // of its own, only the framer's, sized by the longest line it has seen.
                read = self.stream.read_buf(self.framer.input(READ_ROOM)) => {
                    if read? == 0 {
                        return Ok(());
                    }
                    // Reads stop just before an urgent byte, and every urgent sequence in
                    // use (ftplib's OOB "ABOR\r\n", lftp's and RFC 959's IAC IP IAC + DM)
                    // leaves the read ending mid-line there; a read that ends a line needs
                    // no extra system call.
                    if !self.framer.ends_line() {
                        self.drain_after_urgent_mark();
                    }
                }
                _ = tokio::time::sleep_until(wake_at.unwrap_or(idle_deadline)), if wake_at.is_some() => {
                    let now = Instant::now();
                    self.unpark_expired(now);
                    if !logged_in && now >= login_deadline {
                        self.reply(Reply::new(421, "Login timed out, closing control connection")).await?;
                        return Ok(());
                    }
                    if !transfer_running && now >= idle_deadline {
                        self.reply(Reply::new(421, "Idle timeout, closing control connection")).await?;
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Clients such as Python's ftplib send ABOR as TCP urgent data. With SO_OOBINLINE the
    /// byte stays in the stream, but a read stops at the urgent mark and tokio, having seen a
    /// short read, waits for a readiness edge that never comes: the line end would sit unread
    /// until the client sent more. Reading on until the socket is empty picks it up.
    fn drain_after_urgent_mark(&mut self) {
        let Stream::Plain(tcp) = &self.stream else {
            return;
        };
        // tokio's `try_read` would consult the readiness it just cleared and not even try, so
        // ask the socket directly, without blocking. Bounded: the framer enforces the line limit
        // between reads.
        use std::os::fd::AsRawFd;
        let fd = tcp.as_raw_fd();
        let mut buf = [0u8; 512];
        for _ in 0..4 {
            match nix::sys::socket::recv(fd, &mut buf, nix::sys::socket::MsgFlags::MSG_DONTWAIT) {
                Ok(0) | Err(_) => return,
                Ok(n) => self.framer.push(&buf[..n]),
            }
        }
    }

    /// Parses and runs one line; any failure becomes its reply here.
    async fn handle_line(&mut self, line: &[u8]) -> std::io::Result<Flow> {
        let outcome = match Command::parse(line) {
            Ok(cmd) => {
                tracing::debug!(cmd = %CommandForLog(&cmd), "command");
                // Boxed: a future is as large as its largest await state, and the handlers'
                // (login, uploads, listings) would otherwise be carried by every idle session.
                // This way their state exists only while a command runs.
                Box::pin(self.dispatch(cmd)).await
            }
            Err(e) => Err(Error::Parse(e)),
        };
        match outcome {
            Ok(flow) => Ok(flow),
            Err(e) => {
                self.reply(e.reply()).await?;
                Ok(Flow::Continue)
            }
        }
    }

    /// The one place that maps a command to its handler.
    async fn dispatch(&mut self, cmd: Command) -> Result<Flow> {
        use Command::*;
        // RFC 959: RNTO must come right after RNFR; any other command forgets the RNFR.
        if !matches!(cmd, Rnfr(_) | Rnto(_)) {
            if let State::LoggedIn(c) = &mut self.state {
                c.rename_from = None;
            }
        }
        // Commands allowed before login; everything else needs a logged-in user.
        match cmd {
            User(name) => return self.user(name).await,
            Pass(pass) => return self.pass(pass).await,
            Quit => return self.quit().await,
            Noop => return self.ok(200, "NOOP ok").await,
            Syst => return self.ok(215, "UNIX Type: L8").await,
            Feat => return self.feat().await,
            Help(topic) => return self.help(topic).await,
            Opts(opt) => return self.opts(opt).await,
            Auth(mechanism) => return self.auth(mechanism).await,
            Pbsz(size) => return self.pbsz(size).await,
            Prot(level) => return self.prot(level).await,
            Ccc => return self.ccc().await,
            Clnt(name) => return self.clnt(name).await,
            _ => {}
        }
        if !matches!(self.state, State::LoggedIn(_)) {
            return Err(Error::NotLoggedIn("Please login with USER and PASS"));
        }
        match cmd {
            Acct(_) => self.ok(202, "ACCT not needed").await,
            Stat(None) => self.stat_server().await,
            Stat(Some(path)) => self.stat_path(path).await,
            Pwd => self.pwd().await,
            Cwd(path) => self.cwd(&path).await,
            Cdup => self.cwd("..").await,
            Mkd(path) => self.mkd(path).await,
            Rmd(path) => self.rmd(path).await,
            Dele(path) => self.dele(path).await,
            Rnfr(path) => self.rnfr(path).await,
            Rnto(path) => self.rnto(path).await,
            Size(path) => self.size(path).await,
            Mdtm(path) => self.mdtm(path).await,
            Mlst(path) => self.mlst(path).await,
            Mfmt { time, path } => self.mfmt(time, path).await,
            Mff { modify, path } => self.mff(modify, path).await,
            Type(t) => self.set_type(t).await,
            Mode => self.ok(200, "Mode set to S").await,
            Stru => self.ok(200, "Structure set to F").await,
            Allo(arg) => self.allo(arg).await,
            Site(arg) => self.site(arg).await,
            Rest(offset) => self.rest(offset).await,
            Pasv => self.pasv().await,
            Epsv(arg) => self.epsv(arg).await,
            Port(addr) => self.port(addr, "PORT").await,
            Eprt(addr) => self.port(addr, "EPRT").await,
            List(arg) => self.list(arg, listing::ListKind::List).await,
            Nlst(arg) => self.list(arg, listing::ListKind::Nlst).await,
            Mlsd(arg) => self.list(arg, listing::ListKind::Mlsd).await,
            Retr(path) => self.retr(path).await,
            Stor(path) => self.stor(path, transfer::StoreKind::Stor).await,
            Appe(path) => self.stor(path, transfer::StoreKind::Appe).await,
            Stou(path) => self.stou(path).await,
            Abor => self.abor().await,
            Hash(path) => self.hash(path).await,
            Rang(start, end) => self.rang(start, end).await,
            XHash { algo, path, range } => self.xhash(algo, path, range).await,
            User(_) | Pass(_) | Quit | Noop | Syst | Feat | Help(_) | Opts(_) | Auth(_)
            | Pbsz(_) | Prot(_) | Ccc | Clnt(_) => Ok(Flow::Continue),
        }
    }

    async fn quit(&mut self) -> Result<Flow> {
        if self.transfer.is_some() {
            // RFC 959: the transfer's result is still reported, then the server closes.
            self.quit_after_transfer = true;
            return Ok(Flow::Continue);
        }
        self.reply(Reply::new(221, "Goodbye")).await?;
        Ok(Flow::Close)
    }

    /// Sends a one-line reply and continues.
    async fn ok(&mut self, code: u16, text: &str) -> Result<Flow> {
        self.reply(Reply::new(code, text)).await?;
        Ok(Flow::Continue)
    }

    async fn reply(&mut self, reply: Reply) -> std::io::Result<()> {
        self.send(&reply.to_bytes()).await
    }

    /// Writes formatted replies to the control connection.
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let write = self.stream.write_all(bytes);
        match tokio::time::timeout(self.shared.config.idle_timeout, write).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "client stopped reading replies",
            )),
        }
    }

    /// The logged-in client, or the 530 a command before login gets.
    fn client(&mut self) -> Result<&mut Client> {
        match &mut self.state {
            State::LoggedIn(c) => Ok(c),
            _ => Err(Error::NotLoggedIn("Please login with USER and PASS")),
        }
    }

    /// Resolves a path argument against the current directory. Names of upload part files
    /// are refused here, for every command: they hold unfinished overwrites whose bytes the
    /// quota counts through the upload, so a DELE, rename, RETR or STOR of one from another
    /// session would free or hide bytes behind the counter's back.
    fn resolve(&mut self, arg: &str) -> Result<(Home, VirtualPath)> {
        let c = self.client()?;
        let path = c.cwd.resolve(arg)?;
        if path.as_str().split('/').any(crate::storage::is_part_name) {
            return Err(StorageError::ReservedName.into());
        }
        Ok((c.files.clone(), path))
    }
}

/// Shows a command for debug logs: any password masked, the client's text escaped
/// ([`ferry_proto::reply::Escaped`]) so it cannot forge log lines or act on a terminal.
struct CommandForLog<'a>(&'a Command);

impl std::fmt::Display for CommandForLog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Command::Pass(_) => f.write_str("PASS ****"),
            // Formatted only when debug logging is on.
            other => std::fmt::Display::fmt(&ferry_proto::reply::Escaped(&other.to_string()), f),
        }
    }
}
