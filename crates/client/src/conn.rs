//! One FTP control connection: connect, greeting, FEAT, explicit FTPS, login, and data
//! connections (passive or active, clear or TLS).
//!
//! - Replies are framed by `ferry_proto::LineFramer` and assembled by `ReplyParser`
//!   (RFC 959 §4.2 multi-line rules); commands are `ferry_proto::Command`s printed in wire
//!   form, plus the extension verbs the protocol crate does not model (AUTH, PBSZ, PROT, HASH,
//!   RANG, XSHA256...), sent as text.
//! - Extensions are discovered with FEAT (RFC 2389) before login.
//! - FTPS is explicit (RFC 4217): `AUTH TLS` (§4), then after login `PBSZ 0` and `PROT P`
//!   (§8, §9). Data connections use the control connection's rustls config, so its session
//!   cache lets the server resume the control session on each data connection.
//! - Passive is EPSV (RFC 2428 §3) then PASV; the address in a 227 reply is ignored in favour of
//!   the control connection's peer (NAT-broken servers, and no bouncing to third hosts).
//!   Active is EPRT (RFC 2428 §2) then PORT.
//! - Every read, connect and accept is bounded by the `--timeout`.

use std::io::{self, IsTerminal, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_proto::addr::{parse_epsv_reply, parse_pasv_reply};
use ferry_proto::command::{DataType, EpsvArg, Secret};
use ferry_proto::reply::ReplyParser;
use ferry_proto::{Command, LineFramer, Reply};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use crate::creds::Credentials;
use crate::error::{Error, Result};
use crate::listing::{self, RemoteEntry};
use crate::target::Target;
use crate::tls::{self, Fingerprint, KnownHosts};

/// Longest reply line accepted; longer is a protocol error, not unbounded memory.
const MAX_REPLY_LINE: usize = 64 * 1024;
/// Largest directory listing read into memory.
const MAX_LISTING: usize = 256 * 1024 * 1024;

/// `--tls`: when to use explicit FTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsMode {
    /// Use TLS when the server offers AUTH TLS in FEAT.
    Auto,
    /// Fail unless the control and data connections are protected.
    Require,
    /// Never use TLS.
    Off,
}

/// How to connect; one per invocation, shared by every connection it opens.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub tls: TlsMode,
    pub pin: Option<Fingerprint>,
    pub known_hosts: PathBuf,
    pub active: bool,
    pub timeout: Duration,
    /// A person is at a terminal and can be asked to trust a certificate.
    pub interactive: bool,
}

/// The FEAT reply (RFC 2389 §3.2), by upper-case feature name.
#[derive(Debug, Clone, Default)]
pub struct Features {
    lines: Vec<(String, String)>,
}

impl Features {
    pub fn parse(reply: &Reply) -> Features {
        let n = reply.lines.len();
        let lines = reply
            .lines
            .iter()
            .enumerate()
            // The first and last lines are "Features:" and "End".
            .filter(|(i, _)| *i != 0 && *i + 1 != n)
            .filter_map(|(_, l)| {
                let l = l.trim();
                let (name, arg) = l.split_once(' ').unwrap_or((l, ""));
                (!name.is_empty()).then(|| (name.to_ascii_uppercase(), arg.trim().to_owned()))
            })
            .collect();
        Features { lines }
    }

    pub fn has(&self, name: &str) -> bool {
        self.lines.iter().any(|(n, _)| n == name)
    }

    pub fn arg(&self, name: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.as_str())
    }

    pub fn auth_tls(&self) -> bool {
        self.lines.iter().any(|(n, a)| {
            n == "AUTH"
                && a.split([';', ' ', ','])
                    .any(|m| m.eq_ignore_ascii_case("TLS"))
        })
    }

    /// Algorithms listed by `HASH` (draft-bryan-ftpext-hash §3), upper-case, `*` removed.
    pub fn hash_algorithms(&self) -> Vec<String> {
        self.arg("HASH")
            .map(|a| {
                a.split(';')
                    .map(|s| s.trim().trim_end_matches('*').to_ascii_uppercase())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The algorithm HASH uses now (marked `*`).
    pub fn hash_selected(&self) -> Option<String> {
        self.arg("HASH")?
            .split(';')
            .find(|s| s.trim().ends_with('*'))
            .map(|s| s.trim().trim_end_matches('*').to_ascii_uppercase())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(|(n, _)| n.as_str())
    }
}

/// A TCP stream, clear or inside TLS (the enum and its IO are shared with the server).
pub type Stream = ferry_net::MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

struct TlsSession {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

/// A logged-in control connection.
pub struct Conn {
    stream: Stream,
    framer: LineFramer,
    parser: ReplyParser,
    peer: SocketAddr,
    local: SocketAddr,
    pub features: Features,
    tls: Option<TlsSession>,
    /// PROT P in force: data connections are TLS too.
    prot_p: bool,
    epsv: bool,
    eprt: bool,
    active: bool,
    pub timeout: Duration,
    /// The algorithm last chosen with `OPTS HASH`.
    pub hash_algo: Option<String>,
    /// The server's 230 text.
    pub welcome: String,
}

impl Conn {
    /// Connects, secures and logs in, asking a person at a terminal to trust an unknown
    /// certificate (and remembering the answer), or failing with its fingerprint otherwise.
    pub async fn connect(
        target: &Target,
        creds: &Credentials,
        opts: &ConnectOptions,
    ) -> Result<Conn> {
        let known = KnownHosts::new(opts.known_hosts.clone());
        let mut trusted_now = None;
        loop {
            match Conn::connect_once(target, creds, opts, &known, trusted_now).await {
                Err(Error::CertUnknown { fingerprint, .. })
                    if opts.interactive && trusted_now.is_none() =>
                {
                    let fp = Fingerprint::parse(&fingerprint)
                        .ok_or_else(|| Error::Tls("bad fingerprint".into()))?;
                    if !ask_trust(&target.host_port(), &fingerprint)? {
                        return Err(Error::Tls(format!(
                            "certificate of {} not trusted",
                            target.host_port()
                        )));
                    }
                    known.set(&target.host_port(), fp)?;
                    eprintln!(
                        "ferry: pinned {} in {}",
                        target.host_port(),
                        known.path.display()
                    );
                    trusted_now = Some(fp);
                }
                other => return other,
            }
        }
    }

    async fn connect_once(
        target: &Target,
        creds: &Credentials,
        opts: &ConnectOptions,
        known: &KnownHosts,
        trusted_now: Option<Fingerprint>,
    ) -> Result<Conn> {
        let tcp = connect_tcp(&target.host, target.port, opts.timeout).await?;
        let peer = tcp.peer_addr().map_err(|e| net("control connection", e))?;
        let local = tcp.local_addr().map_err(|e| net("control connection", e))?;
        let mut c = Conn {
            stream: Stream::Plain(tcp),
            framer: LineFramer::new(MAX_REPLY_LINE),
            parser: ReplyParser::new(),
            peer,
            local,
            features: Features::default(),
            tls: None,
            prot_p: false,
            epsv: true,
            eprt: true,
            active: opts.active,
            timeout: opts.timeout,
            hash_algo: None,
            welcome: String::new(),
        };
        let mut greeting = c.read_reply().await?;
        if greeting.code == 120 {
            greeting = c.read_reply().await?;
        }
        match greeting.code {
            220 => {}
            421 => {
                return Err(Error::Network(format!(
                    "{} refused the connection: {}",
                    target.host_port(),
                    greeting.text()
                )))
            }
            _ => return Err(Error::server("greeting", greeting)),
        }
        let feat = c.cmd(&Command::Feat).await?;
        if feat.code == 211 {
            c.features = Features::parse(&feat);
        }
        let require = opts.tls == TlsMode::Require || target.require_tls;
        let want = require || (opts.tls == TlsMode::Auto && c.features.auth_tls());
        if want {
            let r = c.cmd(&Command::Auth("TLS".into())).await?;
            if r.code == 234 {
                c.start_tls(target, opts, known, trusted_now).await?;
            } else if require {
                return Err(Error::Tls(format!(
                    "TLS is required but the server refused AUTH TLS: {} {}",
                    r.code,
                    r.text()
                )));
            } else {
                tracing::warn!("server refused AUTH TLS ({}); continuing in clear", r.code);
            }
        } else if opts.tls == TlsMode::Auto && !peer.ip().is_loopback() {
            tracing::warn!(
                "{} offers no AUTH TLS: the password and the files travel in clear",
                target.host_port()
            );
        }
        c.login(creds).await?;
        if c.tls.is_some() {
            let pbsz = c.cmd(&Command::Pbsz(0)).await?;
            let prot = c.cmd(&Command::Prot('P')).await?;
            if pbsz.is_success() && prot.is_success() {
                c.prot_p = true;
            } else if require {
                return Err(Error::Tls(format!(
                    "TLS is required but the server refused to protect data connections: {} {}",
                    prot.code,
                    prot.text()
                )));
            }
        }
        if c.features.has("UTF8") {
            let _ = c.cmd(&Command::Opts("UTF8 ON".into())).await?;
        }
        c.ok(&Command::Type(DataType::Image), "TYPE I").await?;
        Ok(c)
    }

    async fn start_tls(
        &mut self,
        target: &Target,
        opts: &ConnectOptions,
        known: &KnownHosts,
        trusted_now: Option<Fingerprint>,
    ) -> Result<()> {
        let host_port = target.host_port();
        let remembered = known.get(&host_port)?;
        let pin = opts.pin.or(trusted_now).or(remembered);
        let (config, verifier) = tls::client_config(pin)?;
        let name = tls::server_name(&target.host)?;
        let Some(tcp) = self.stream.take_plain() else {
            return Err(Error::Protocol("AUTH TLS twice".into()));
        };
        let connector = TlsConnector::from(config.clone());
        let handshake = tokio::time::timeout(self.timeout, connector.connect(name.clone(), tcp));
        let tls = match handshake.await {
            Err(_) => {
                return Err(Error::Timeout {
                    what: "in the TLS handshake".into(),
                    secs: self.timeout.as_secs(),
                })
            }
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let cert_problem = e
                    .get_ref()
                    .and_then(|i| i.downcast_ref::<rustls::Error>())
                    .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
                let known_hosts = known.path.display().to_string();
                return Err(match (verifier.seen(), pin) {
                    (Some(got), Some(p)) if cert_problem && got != p => {
                        if opts.pin == Some(p) {
                            Error::Tls(format!(
                                "the certificate of {host_port} has fingerprint {got}, not the {p} given with --pin"
                            ))
                        } else {
                            Error::CertChanged {
                                host: host_port,
                                expected: p.to_string(),
                                got: got.to_string(),
                                known_hosts,
                            }
                        }
                    }
                    (Some(got), None) if cert_problem => Error::CertUnknown {
                        host: host_port,
                        fingerprint: got.to_string(),
                        known_hosts,
                    },
                    _ => Error::Tls(format!("handshake with {host_port} failed: {e}")),
                });
            }
        };
        if let Some(p) = opts.pin {
            if remembered != Some(p) {
                known.set(&host_port, p)?;
            }
        }
        self.stream = Stream::Tls(Box::new(tls));
        self.tls = Some(TlsSession { config, name });
        Ok(())
    }

    async fn login(&mut self, creds: &Credentials) -> Result<()> {
        let r = self.cmd(&Command::User(creds.user.clone())).await?;
        let r = match r.code {
            230 => r,
            331 | 332 => {
                let pass = Command::Pass(Secret(creds.password.0.clone()));
                self.cmd(&pass).await?
            }
            _ => return Err(Error::Login(format!("{} {}", r.code, r.text()))),
        };
        match r.code {
            230 | 202 => {
                self.welcome = r.text();
                Ok(())
            }
            332 => Err(Error::Login(
                "the server asks for an account (ACCT), which ferry does not support".into(),
            )),
            421 => Err(Error::Network(format!(
                "server closed the session: {}",
                r.text()
            ))),
            _ => Err(Error::Login(format!(
                "{} {} (user {})",
                r.code,
                r.text(),
                creds.user
            ))),
        }
    }

    /// Whether the control connection is protected by TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn data_protected(&self) -> bool {
        self.prot_p
    }

    // -----------------------------------------------------------------------------------------
    // Commands and replies
    // -----------------------------------------------------------------------------------------

    async fn send(&mut self, line: &str) -> Result<()> {
        if line.contains(['\r', '\n']) {
            return Err(Error::Usage(format!(
                "refusing to send a command with a line break: {:?}",
                line.split(' ').next().unwrap_or("")
            )));
        }
        if line.starts_with("PASS ") {
            tracing::debug!("> PASS ****");
        } else {
            tracing::debug!("> {line}");
        }
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        let write = async {
            self.stream.write_all(&bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Err(_) => Err(Error::Timeout {
                what: "sending a command".into(),
                secs: self.timeout.as_secs(),
            }),
            Ok(Err(e)) => Err(net("control connection", e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    pub async fn read_reply(&mut self) -> Result<Reply> {
        self.read_reply_within(self.timeout).await
    }

    async fn read_reply_within(&mut self, limit: Duration) -> Result<Reply> {
        let mut buf = [0u8; 4096];
        loop {
            while let Some(line) = self
                .framer
                .next_line()
                .map_err(|_| Error::Protocol("reply line too long".into()))?
            {
                let text = String::from_utf8_lossy(&line);
                if let Some(r) = self
                    .parser
                    .feed(&text)
                    .map_err(|e| Error::Protocol(e.to_string()))?
                {
                    tracing::debug!("< {} {}", r.code, r.lines.join(" | "));
                    return Ok(r);
                }
            }
            let n = match tokio::time::timeout(limit, self.stream.read(&mut buf)).await {
                Err(_) => {
                    return Err(Error::Timeout {
                        what: "waiting for the server's reply".into(),
                        secs: limit.as_secs(),
                    })
                }
                Ok(Err(e)) => return Err(net("control connection", e)),
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                return Err(Error::Network(
                    "the server closed the control connection".into(),
                ));
            }
            self.framer.push(&buf[..n]);
        }
    }

    /// Sends one command line and returns its reply, whatever the code.
    pub async fn cmd(&mut self, command: &Command) -> Result<Reply> {
        self.send(&command.to_string()).await?;
        self.read_reply().await
    }

    /// Sends one command line; a non-2xx reply is an error naming `what`.
    pub async fn ok(&mut self, command: &Command, what: &str) -> Result<Reply> {
        let r = self.cmd(command).await?;
        if r.is_success() {
            Ok(r)
        } else {
            Err(Error::server(what, r))
        }
    }

    pub async fn pwd(&mut self) -> Result<String> {
        let r = self.ok(&Command::Pwd, "PWD").await?;
        parse_257(&r.text())
            .ok_or_else(|| Error::Protocol(format!("unparsable PWD reply: {}", r.text())))
    }

    pub async fn cwd(&mut self, path: &str) -> Result<()> {
        self.ok(&Command::Cwd(path.to_owned()), &format!("cd {path}"))
            .await
            .map(drop)
    }

    pub async fn mkd(&mut self, path: &str) -> Result<()> {
        self.ok(&Command::Mkd(path.to_owned()), &format!("mkdir {path}"))
            .await
            .map(drop)
    }

    pub async fn rmd(&mut self, path: &str) -> Result<()> {
        self.ok(&Command::Rmd(path.to_owned()), &format!("rmdir {path}"))
            .await
            .map(drop)
    }

    pub async fn dele(&mut self, path: &str) -> Result<()> {
        self.ok(&Command::Dele(path.to_owned()), &format!("rm {path}"))
            .await
            .map(drop)
    }

    pub async fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        let r = self.cmd(&Command::Rnfr(from.to_owned())).await?;
        if r.code != 350 {
            return Err(Error::server(format!("mv {from}"), r));
        }
        self.ok(&Command::Rnto(to.to_owned()), &format!("mv {from} {to}"))
            .await
            .map(drop)
    }

    /// SIZE (RFC 3659 §4): `Ok(None)` when the server does not implement it.
    pub async fn size(&mut self, path: &str) -> Result<Option<u64>> {
        let r = self.cmd(&Command::Size(path.to_owned())).await?;
        match r.code {
            213 => r
                .text()
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| Error::Protocol(format!("unparsable SIZE reply: {}", r.text()))),
            500 | 502 | 504 => Ok(None),
            _ => Err(Error::server(format!("SIZE {path}"), r)),
        }
    }

    /// MDTM (RFC 3659 §3) as unix seconds; `None` when unsupported or unparsable.
    pub async fn mdtm(&mut self, path: &str) -> Result<Option<i64>> {
        let r = self.cmd(&Command::Mdtm(path.to_owned())).await?;
        Ok(match r.code {
            213 => ferry_proto::listing::parse_mdtm(r.text().trim()),
            _ => None,
        })
    }

    /// Ends the session politely; errors are irrelevant at this point.
    pub async fn quit(mut self) {
        let limit = Duration::from_secs(2).min(self.timeout);
        if self.send("QUIT").await.is_ok() {
            let _ = self.read_reply_within(limit).await;
        }
        let _ = tokio::time::timeout(limit, self.stream.shutdown()).await;
    }

    // -----------------------------------------------------------------------------------------
    // Data connections
    // -----------------------------------------------------------------------------------------

    /// Opens a data connection for `command` (RETR, STOR, APPE, LIST, MLSD...), after `REST
    /// offset` when given. Returns `None` when the server answered 2xx without opening one
    /// (some servers do so for an empty listing).
    pub async fn open_data(
        &mut self,
        command: &Command,
        rest: Option<u64>,
    ) -> Result<Option<Stream>> {
        enum Pending {
            Connected(TcpStream),
            Listening(TcpListener),
        }
        let pending = if self.active {
            Pending::Listening(self.listen_active().await?)
        } else {
            let addr = self.passive_addr().await?;
            Pending::Connected(self.connect_data(addr).await?)
        };
        if let Some(offset) = rest {
            let r = self.cmd(&Command::Rest(offset)).await?;
            if r.code != 350 {
                return Err(Error::server(format!("REST {offset}"), r));
            }
        }
        let r = self.cmd(command).await?;
        if r.is_success() {
            return Ok(None);
        }
        if !r.is_preliminary() {
            return Err(Error::server(command.to_string(), r));
        }
        let tcp = match pending {
            Pending::Connected(t) => t,
            Pending::Listening(l) => match tokio::time::timeout(self.timeout, l.accept()).await {
                Err(_) => {
                    return Err(Error::Timeout {
                        what: "waiting for the server to connect (active mode)".into(),
                        secs: self.timeout.as_secs(),
                    })
                }
                Ok(Err(e)) => return Err(net("data connection", e)),
                Ok(Ok((t, from))) => {
                    if from.ip() != self.peer.ip() {
                        return Err(Error::Network(format!(
                            "data connection from {from}, not from the server {}",
                            self.peer.ip()
                        )));
                    }
                    t
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        match (&self.tls, self.prot_p) {
            (Some(tls), true) => {
                let connector = TlsConnector::from(tls.config.clone());
                let handshake = connector.connect(tls.name.clone(), tcp);
                match tokio::time::timeout(self.timeout, handshake).await {
                    Err(_) => Err(Error::Timeout {
                        what: "in the data connection's TLS handshake".into(),
                        secs: self.timeout.as_secs(),
                    }),
                    Ok(Err(e)) => Err(Error::Tls(format!("data connection handshake: {e}"))),
                    Ok(Ok(s)) => Ok(Some(Stream::Tls(Box::new(s)))),
                }
            }
            _ => Ok(Some(Stream::Plain(tcp))),
        }
    }

    /// Reads the reply that ends a transfer (226/250). Servers may take a while after the
    /// last byte (flushing a large upload), so this waits longer than other replies.
    pub async fn finish_data(&mut self, what: &str) -> Result<Reply> {
        let r = self.read_reply_within(self.timeout * 4).await?;
        if r.is_success() {
            Ok(r)
        } else {
            Err(Error::server(what, r))
        }
    }

    async fn passive_addr(&mut self) -> Result<SocketAddr> {
        if self.epsv {
            let r = self.cmd(&Command::Epsv(EpsvArg::Any)).await?;
            if r.code == 229 {
                let port = parse_epsv_reply(&r.text()).ok_or_else(|| {
                    Error::Protocol(format!("unparsable EPSV reply: {}", r.text()))
                })?;
                return Ok(SocketAddr::new(self.peer.ip(), port));
            }
            if !(500..600).contains(&r.code) {
                return Err(Error::server("EPSV", r));
            }
            self.epsv = false;
        }
        let r = self.cmd(&Command::Pasv).await?;
        if r.code != 227 {
            return Err(Error::server("PASV", r));
        }
        let announced = parse_pasv_reply(&r.text())
            .ok_or_else(|| Error::Protocol(format!("unparsable PASV reply: {}", r.text())))?;
        if announced.ip() != self.peer.ip() {
            tracing::debug!(
                "PASV announced {}, using the control peer {} instead",
                announced.ip(),
                self.peer.ip()
            );
        }
        Ok(SocketAddr::new(self.peer.ip(), announced.port()))
    }

    async fn connect_data(&self, addr: SocketAddr) -> Result<TcpStream> {
        match tokio::time::timeout(self.timeout, TcpStream::connect(addr)).await {
            Err(_) => Err(Error::Timeout {
                what: format!("connecting the data connection to {addr}"),
                secs: self.timeout.as_secs(),
            }),
            Ok(Err(e)) => Err(Error::Network(format!(
                "cannot open the data connection to {addr}: {e}"
            ))),
            Ok(Ok(s)) => Ok(s),
        }
    }

    async fn listen_active(&mut self) -> Result<TcpListener> {
        let listener = TcpListener::bind(SocketAddr::new(self.local.ip(), 0))
            .await
            .map_err(|e| net("listening for the data connection", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| net("listening for the data connection", e))?;
        if self.eprt {
            let r = self.cmd(&Command::Eprt(addr)).await?;
            if r.is_success() {
                return Ok(listener);
            }
            if !(500..600).contains(&r.code) {
                return Err(Error::server("EPRT", r));
            }
            self.eprt = false;
        }
        if !addr.is_ipv4() {
            return Err(Error::Unsupported(
                "active mode over IPv6 needs EPRT, which the server refused".into(),
            ));
        }
        self.ok(&Command::Port(addr), "PORT").await?;
        Ok(listener)
    }

    /// Lists a directory: MLSD when the server has MLST (RFC 3659 §7), else LIST parsed
    /// leniently (Unix `ls -l` and DOS formats).
    pub async fn list_dir(&mut self, path: &str) -> Result<Vec<RemoteEntry>> {
        let arg = (!path.is_empty()).then(|| path.to_owned());
        let mlsd = self.features.has("MLST");
        let command = if mlsd {
            Command::Mlsd(arg)
        } else {
            Command::List(arg)
        };
        let what = if path.is_empty() { "." } else { path };
        let data = self.read_data(&command, &format!("listing {what}")).await?;
        let text = String::from_utf8_lossy(&data);
        let entries = text
            .split('\n')
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.is_empty())
            .filter_map(|l| {
                if mlsd {
                    listing::parse_mlsd_line(l)
                } else {
                    listing::parse_list_line(l)
                }
            })
            .filter(|e| e.name != "." && e.name != "..")
            .collect();
        Ok(entries)
    }

    /// Runs a command whose data connection delivers a small payload (listings).
    pub async fn read_data(&mut self, command: &Command, what: &str) -> Result<Vec<u8>> {
        let Some(mut stream) = self.open_data(command, None).await? else {
            return Ok(Vec::new());
        };
        let mut data = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match tokio::time::timeout(self.timeout, stream.read(&mut buf)).await {
                Err(_) => {
                    return Err(Error::Timeout {
                        what: what.to_owned(),
                        secs: self.timeout.as_secs(),
                    })
                }
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => {
                    if data.len() + n > MAX_LISTING {
                        return Err(Error::Protocol(format!("{what}: listing too large")));
                    }
                    data.extend_from_slice(&buf[..n]);
                }
                // A TLS peer that closes without close_notify: the 226 decides.
                Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Ok(Err(e)) => return Err(net("data connection", e)),
            }
        }
        drop(stream);
        self.finish_data(what).await?;
        Ok(data)
    }
}

/// Parses the quoted path of a 257 reply (RFC 959 Appendix II: `""` is a literal quote).
pub fn parse_257(text: &str) -> Option<String> {
    let start = text.find('"')? + 1;
    let mut out = String::new();
    let mut chars = text[start..].chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            if chars.peek() == Some(&'"') {
                chars.next();
                out.push('"');
            } else {
                return Some(out);
            }
        } else {
            out.push(c);
        }
    }
    None
}

fn net(what: &str, e: io::Error) -> Error {
    Error::Network(format!("{what}: {e}"))
}

async fn connect_tcp(host: &str, port: u16, limit: Duration) -> Result<TcpStream> {
    let addr = format!("{host}:{port}");
    let resolve = tokio::net::lookup_host((host, port));
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(limit, resolve).await {
        Err(_) => {
            return Err(Error::Connect {
                addr,
                reason: "name resolution timed out".into(),
            })
        }
        Ok(Err(e)) => {
            return Err(Error::Connect {
                addr,
                reason: e.to_string(),
            })
        }
        Ok(Ok(a)) => a.collect(),
    };
    let mut last = String::from("no address");
    for a in addrs {
        match tokio::time::timeout(limit, TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = format!("timed out after {}s", limit.as_secs()),
        }
    }
    Err(Error::Connect { addr, reason: last })
}

/// Asks on the terminal whether to trust a certificate.
fn ask_trust(host_port: &str, fingerprint: &str) -> Result<bool> {
    if !io::stdin().is_terminal() {
        return Ok(false);
    }
    let mut err = io::stderr();
    let _ = writeln!(
        err,
        "The certificate of {host_port} is not signed by a trusted authority.\n\
         SHA-256 fingerprint: {fingerprint}\n\
         Compare it with the fingerprint the server's administrator gave you."
    );
    let _ = write!(err, "Trust it and remember it for {host_port}? [y/N] ");
    let _ = err.flush();
    let mut line = String::new();
    io::stdin()
        .read_line(&mut line)
        .map_err(|e| Error::Tls(format!("reading the answer: {e}")))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pwd_replies() {
        assert_eq!(
            parse_257("\"/a b\" is the current directory"),
            Some("/a b".into())
        );
        assert_eq!(
            parse_257("\"/say \"\"hi\"\"\" ok"),
            Some("/say \"hi\"".into())
        );
        assert_eq!(parse_257("no quotes"), None);
    }

    #[test]
    fn features_from_feat_reply() {
        let r = Reply::multi(
            211,
            vec![
                "Features:".into(),
                "AUTH TLS".into(),
                "HASH SHA-256*;SHA-512;MD5".into(),
                "MLST type*;size*;".into(),
                "UTF8".into(),
                "End".into(),
            ],
        );
        let f = Features::parse(&r);
        assert!(f.auth_tls());
        assert!(f.has("MLST") && f.has("UTF8") && !f.has("XSHA256"));
        assert_eq!(f.hash_algorithms(), vec!["SHA-256", "SHA-512", "MD5"]);
        assert_eq!(f.hash_selected().as_deref(), Some("SHA-256"));
    }
}
