//! File transfers that survive dropped connections and check their result.
//!
//! [`Client`] owns the (re)connection: a broken control or data connection, a timeout or a
//! transient 4xx reply drops the connection, waits (1 s, 2 s, 4 s... up to 30 s) and tries
//! again, up to `--retries` times. A retried download continues with `REST offset` + `RETR`
//! (RFC 3659 §5), a retried upload with `APPE` from the size the server already has. Before
//! continuing, the part already transferred is checked with `HASH` + `RANG` when the server
//! offers them; if it differs the file restarts from zero. `-c/--continue` does the same for a
//! partial file left by an earlier run.
//!
//! After each transfer [`crate::hash::verify`] compares the result with the server (unless
//! `--no-verify`).

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_proto::ascii::{FromNetwork, ToNetwork};
use ferry_proto::command::DataType;
use ferry_proto::Command;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::conn::{Conn, ConnectOptions, Stream};
use crate::creds::Credentials;
use crate::error::{Error, Result};
use crate::hash::{self, Verification};
use crate::progress::{FileBar, FileReport, Progress};
use crate::target::Target;

const CHUNK: usize = 128 * 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct TransferOptions {
    /// Continue a partial local (get) or remote (put) file left by an earlier run.
    pub resume: bool,
    /// Reconnect-and-continue attempts after a dropped connection.
    pub retries: u32,
    pub verify: bool,
    /// Bytes per second, per transfer.
    pub limit: Option<u64>,
    /// TYPE A with line-end conversion (no resume, no digest check).
    pub ascii: bool,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            resume: false,
            retries: 3,
            verify: true,
            limit: None,
            ascii: false,
        }
    }
}

/// A server session that reconnects on demand (same credentials, same directory).
pub struct Client {
    pub target: Target,
    creds: Credentials,
    opts: ConnectOptions,
    conn: Option<Conn>,
    /// Directory to return to after a reconnect (the shell's `cd`).
    pub cwd: Option<String>,
    pub topts: TransferOptions,
    pub progress: Arc<Progress>,
}

fn backoff(attempt: u32) -> Duration {
    let secs = 1u64 << attempt.saturating_sub(1).min(5);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// One file to move, in either direction (what a retry repeats).
#[derive(Clone, Copy)]
enum Job<'a> {
    Get {
        remote: &'a str,
        local: &'a Path,
    },
    Put {
        local: &'a Path,
        remote: &'a str,
        size: u64,
    },
}

impl Job<'_> {
    /// Whether a failed attempt may be repeated (see [`is_regular`]).
    fn can_retry(&self) -> bool {
        match self {
            Job::Get { local, .. } | Job::Put { local, .. } => is_regular(local),
        }
    }
}

impl Client {
    /// Connects now, so that login and certificate problems show up before anything else.
    pub async fn connect(
        target: Target,
        creds: Credentials,
        opts: ConnectOptions,
        topts: TransferOptions,
        progress: Arc<Progress>,
    ) -> Result<Client> {
        let mut client = Client {
            target,
            creds,
            opts,
            conn: None,
            cwd: None,
            topts,
            progress,
        };
        client.conn().await?;
        Ok(client)
    }

    /// The live connection, reconnecting (and returning to `cwd`) if it was dropped.
    pub async fn conn(&mut self) -> Result<&mut Conn> {
        if self.conn.is_none() {
            let mut c = Conn::connect(&self.target, &self.creds, &self.opts).await?;
            if let Some(dir) = &self.cwd {
                c.cwd(dir).await?;
            }
            self.conn = Some(c);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| Error::Network("not connected".into()))
    }

    /// Forgets the connection after an error that may have left it in an unknown state.
    pub fn drop_conn(&mut self) {
        self.conn = None;
    }

    /// Drops the connection if `e` says it cannot be trusted any more; passes `e` on.
    pub fn check<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            if !e.conn_is_usable() {
                self.drop_conn();
            }
        }
        r
    }

    pub async fn close(&mut self) {
        if let Some(c) = self.conn.take() {
            c.quit().await;
        }
    }

    /// Waits before retry `attempt` and says why.
    async fn pause_before_retry(&mut self, e: &Error, attempt: u32) {
        self.drop_conn();
        let wait = backoff(attempt);
        self.progress.note(&format!(
            "{e}; retrying in {}s ({attempt}/{})",
            wait.as_secs(),
            self.topts.retries
        ));
        tokio::time::sleep(wait).await;
    }

    /// Times a finished transfer, records its error, and shows or prints its report.
    fn finish_report(
        &self,
        started: Instant,
        mut report: FileReport,
        result: Result<()>,
    ) -> Result<FileReport> {
        report.seconds = started.elapsed().as_secs_f64();
        if let Err(e) = &result {
            report.error = Some(e.to_string());
        }
        self.progress.report(&report);
        result.map(|()| report)
    }

    // -----------------------------------------------------------------------------------------
    // Download
    // -----------------------------------------------------------------------------------------

    /// Downloads `remote` to `local` ([`STDIO`]: standard output), resuming and retrying as
    /// configured, then verifies.
    pub async fn get(&mut self, remote: &str, local: &Path) -> Result<FileReport> {
        let started = Instant::now();
        let mut report = FileReport::new("get", remote, local);
        let result = self.get_inner(remote, local, &mut report).await;
        self.finish_report(started, report, result)
    }

    async fn get_inner(
        &mut self,
        remote: &str,
        local: &Path,
        report: &mut FileReport,
    ) -> Result<()> {
        self.with_retries(Job::Get { remote, local }, report)
            .await?;
        if !is_regular(local) {
            report.size = report.bytes;
            return self.verify_count(remote, local, report).await;
        }
        report.size = file_len(local)?;
        self.verify_into(remote, local, report).await
    }

    /// Verification for a local side that cannot be read again (`/dev/null`, a pipe): the count
    /// of bytes that went through it against the server's SIZE.
    async fn verify_count(
        &mut self,
        remote: &str,
        local: &Path,
        report: &mut FileReport,
    ) -> Result<()> {
        if !self.topts.verify || self.topts.ascii {
            return Ok(());
        }
        let size = self.conn().await?.size(remote).await;
        report.verified_by = Some(match self.check(size)? {
            Some(n) if n == report.bytes => "SIZE (byte count; not a regular file)".into(),
            Some(n) => {
                return Err(Error::Verify(format!(
                    "{remote}: SIZE differs: server {n} bytes, {} bytes through {}",
                    report.bytes,
                    local.display()
                )))
            }
            None => "none".into(),
        });
        Ok(())
    }

    /// Runs attempts of `job` until one succeeds: errors that can be retried are, up to the
    /// configured count with backoff, and every attempt after the first resumes.
    async fn with_retries(&mut self, job: Job<'_>, report: &mut FileReport) -> Result<()> {
        let mut bar: Option<FileBar> = None;
        let mut attempt = 0;
        loop {
            let resume = self.topts.resume || attempt > 0;
            let result = match job {
                Job::Get { remote, local } => {
                    self.get_attempt(remote, local, resume, &mut bar, report)
                        .await
                }
                Job::Put {
                    local,
                    remote,
                    size,
                } => {
                    self.put_attempt(local, remote, size, resume, &mut bar, report)
                        .await
                }
            };
            match result {
                Ok(()) => break,
                Err(e) if e.is_retryable() && attempt < self.topts.retries && job.can_retry() => {
                    attempt += 1;
                    self.pause_before_retry(&e, attempt).await;
                }
                Err(e) => {
                    if e.is_retryable() && !job.can_retry() {
                        self.progress
                            .note("not retried: the destination is not a regular file");
                    }
                    self.drop_conn();
                    return Err(e);
                }
            }
        }
        if let Some(b) = &bar {
            b.finish();
        }
        Ok(())
    }

    /// Compares the transferred file with the server's copy (unless switched off) and records
    /// how.
    async fn verify_into(
        &mut self,
        remote: &str,
        local: &Path,
        report: &mut FileReport,
    ) -> Result<()> {
        if self.topts.verify && !self.topts.ascii {
            let v = {
                let conn = self.conn().await?;
                hash::verify(conn, remote, local).await
            };
            let v: Verification = self.check(v)?;
            report.verified_by = Some(v.method);
            report.hash = v.hash;
        }
        Ok(())
    }

    async fn get_attempt(
        &mut self,
        remote: &str,
        local: &Path,
        resume: bool,
        bar: &mut Option<FileBar>,
        report: &mut FileReport,
    ) -> Result<()> {
        let progress = self.progress.clone();
        let topts = self.topts.clone();
        let conn = self.conn().await?;
        let remote_size = match conn.size(remote).await {
            Err(Error::Server { reply, .. }) => {
                return Err(Error::server(format!("get {remote}"), reply))
            }
            other => other?,
        };
        let existing = match std::fs::metadata(local) {
            Ok(m) if m.is_file() && !is_stdio(local) => m.len(),
            _ => 0,
        };
        let mut offset = 0;
        if resume && existing > 0 && !topts.ascii {
            if remote_size.is_some_and(|s| existing > s) {
                progress.note(&format!(
                    "{}: local file is longer than the server's; downloading it again",
                    local.display()
                ));
            } else {
                match hash::prefix_matches(conn, remote, local, existing).await? {
                    Some(true) => {
                        offset = existing;
                        progress.note(&format!(
                            "resuming {remote} at byte {existing} (existing part checked with HASH)"
                        ));
                    }
                    Some(false) => progress.note(&format!(
                        "{}: the part already downloaded differs from the server's file; starting over",
                        local.display()
                    )),
                    None => {
                        offset = existing;
                        progress.note(&format!(
                            "resuming {remote} at byte {existing} (the server cannot check the existing part)"
                        ));
                    }
                }
            }
        }
        show_bar(bar, &progress, remote, remote_size, offset);
        report.resumed_from = offset;
        if offset > 0 && remote_size == Some(offset) {
            return Ok(());
        }
        let moved = download(conn, remote, local, offset, bar.as_ref(), &topts).await;
        let moved = match moved {
            Err(Error::Unsupported(why)) if offset > 0 => {
                progress.note(&format!("{why}; downloading {remote} from the start"));
                report.resumed_from = 0;
                if let Some(b) = bar.as_ref() {
                    b.rewind(0);
                }
                download(conn, remote, local, 0, bar.as_ref(), &topts).await
            }
            other => other,
        };
        let moved = moved?;
        report.bytes += moved;
        let got = if is_regular(local) {
            file_len(local)?
        } else {
            offset + moved
        };
        if let Some(expected) = remote_size.filter(|_| !topts.ascii) {
            if got < expected {
                return Err(Error::Network(format!(
                    "transfer of {remote} ended early: {got} of {expected} bytes"
                )));
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Upload
    // -----------------------------------------------------------------------------------------

    /// Uploads `local` ([`STDIO`]: standard input) to `remote`, resuming and retrying as
    /// configured, then verifies.
    pub async fn put(&mut self, local: &Path, remote: &str) -> Result<FileReport> {
        let started = Instant::now();
        let mut report = FileReport::new("put", remote, local);
        // A regular file behind `< file` is read (and checked) again through /dev/stdin.
        let source = if is_stdio(local) {
            Path::new("/dev/stdin")
        } else {
            local
        };
        let result = self.put_inner(source, remote, &mut report).await;
        self.finish_report(started, report, result)
    }

    async fn put_inner(
        &mut self,
        local: &Path,
        remote: &str,
        report: &mut FileReport,
    ) -> Result<()> {
        let size = file_len(local)?;
        report.size = size;
        self.with_retries(
            Job::Put {
                local,
                remote,
                size,
            },
            report,
        )
        .await?;
        if !is_regular(local) {
            report.size = report.bytes;
            return self.verify_count(remote, local, report).await;
        }
        self.verify_into(remote, local, report).await
    }

    async fn put_attempt(
        &mut self,
        local: &Path,
        remote: &str,
        size: u64,
        resume: bool,
        bar: &mut Option<FileBar>,
        report: &mut FileReport,
    ) -> Result<()> {
        let progress = self.progress.clone();
        let topts = self.topts.clone();
        let conn = self.conn().await?;
        let mut offset = 0;
        // A pipe's start cannot be read again, to check it or to skip it.
        let regular = is_regular(local);
        if resume && !topts.ascii && regular {
            let remote_size = match conn.size(remote).await {
                Ok(s) => s,
                // 550: not there yet.
                Err(Error::Server { reply, .. }) if reply.code == 550 => Some(0),
                Err(e) => return Err(e),
            };
            match remote_size {
                Some(0) | None => {}
                Some(have) if have > size => progress.note(&format!(
                    "{remote}: the server's file is longer than {}; uploading it again",
                    local.display()
                )),
                Some(have) => match hash::prefix_matches(conn, remote, local, have).await? {
                    Some(true) => {
                        offset = have;
                        progress.note(&format!(
                            "resuming {remote} at byte {have} (existing part checked with HASH)"
                        ));
                    }
                    Some(false) => progress.note(&format!(
                        "{remote}: the part already on the server differs; starting over"
                    )),
                    None => {
                        offset = have;
                        progress.note(&format!(
                            "resuming {remote} at byte {have} (the server cannot check the existing part)"
                        ));
                    }
                },
            }
        }
        show_bar(bar, &progress, remote, regular.then_some(size), offset);
        report.resumed_from = offset;
        if offset > 0 && offset == size {
            return Ok(());
        }
        let sent = upload(conn, local, remote, offset, bar.as_ref(), &topts).await?;
        report.bytes += sent;
        let size = if regular { size } else { sent };
        // A cut connection can look like a clean end of file to the server, which then
        // answers 226 for a short file: compare sizes so that case is retried, not "verified".
        if !topts.ascii {
            if let Ok(Some(have)) = conn.size(remote).await {
                if have < size {
                    return Err(Error::Network(format!(
                        "upload of {remote} ended early: the server has {have} of {size} bytes"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Whether a transfer's local side is (or, for a download, will be created as) a regular file.
/// A device or a pipe (`/dev/null`, a FIFO, `/dev/stdin`) cannot be measured, read again or
/// resumed: its bytes are counted as they go, and a failed transfer is not retried (a retry
/// would write the start again, or find the start of the input gone).
fn is_regular(local: &Path) -> bool {
    !is_stdio(local) && std::fs::metadata(local).map_or(true, |m| m.is_file())
}

/// `-` as a local file: standard output for a get (`ferry get URL - | tar x`), standard input
/// for a put (`tar c . | ferry put - URL`).
pub const STDIO: &str = "-";

pub fn is_stdio(local: &Path) -> bool {
    local.as_os_str() == STDIO
}

fn file_len(p: &Path) -> Result<u64> {
    std::fs::metadata(p)
        .map(|m| m.len())
        .map_err(|e| Error::local(p, e))
}

/// Paces a transfer to `limit` bytes per second.
struct Throttle {
    limit: Option<u64>,
    start: Instant,
    bytes: u64,
}

impl Throttle {
    fn new(limit: Option<u64>) -> Throttle {
        Throttle {
            limit: limit.filter(|&l| l > 0),
            start: Instant::now(),
            bytes: 0,
        }
    }

    fn chunk(&self) -> usize {
        match self.limit {
            // About ten writes a second, so the bar moves smoothly.
            Some(l) => (l / 10).clamp(1, CHUNK as u64) as usize,
            None => CHUNK,
        }
    }

    async fn account(&mut self, n: usize) {
        self.bytes += n as u64;
        if let Some(limit) = self.limit {
            let due = Duration::from_secs_f64(self.bytes as f64 / limit as f64);
            let elapsed = self.start.elapsed();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            }
        }
    }
}

fn timeout_err(what: &str, limit: Duration) -> Error {
    Error::Timeout {
        what: what.to_owned(),
        secs: limit.as_secs(),
    }
}

/// One RETR into `local` from `offset`; returns the bytes received.
async fn download(
    conn: &mut Conn,
    remote: &str,
    local: &Path,
    offset: u64,
    bar: Option<&FileBar>,
    topts: &TransferOptions,
) -> Result<u64> {
    if topts.ascii {
        conn.ok(&Command::Type(DataType::Ascii), "TYPE A").await?;
    }
    let mut file = open_for_download(local, offset).await?;
    let rest = (offset > 0).then_some(offset);
    let opened = conn
        .open_data(&Command::Retr(remote.to_owned()), rest)
        .await;
    let stream = match opened {
        Err(Error::Server { what, reply }) if what.starts_with("REST") && rest.is_some() => {
            return Err(Error::Unsupported(format!(
                "the server refused to resume ({} {})",
                reply.code,
                reply.text()
            )))
        }
        other => other?,
    };
    let mut moved = 0u64;
    if let Some(mut stream) = stream {
        let limit = conn.timeout;
        let mut throttle = Throttle::new(topts.limit);
        let mut buf = vec![0u8; CHUNK];
        let mut conv = FromNetwork::default();
        let mut converted = Vec::new();
        loop {
            let want = throttle.chunk();
            let n = match tokio::time::timeout(limit, stream.read(&mut buf[..want])).await {
                Err(_) => return Err(timeout_err(&format!("receiving {remote}"), limit)),
                Ok(Ok(n)) => n,
                // TLS without close_notify: the final reply and the size check decide.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Ok(Err(e)) => {
                    flush(&mut file, local).await?;
                    return Err(Error::Network(format!(
                        "data connection lost while receiving {remote}: {e}"
                    )));
                }
            };
            if n == 0 {
                break;
            }
            let data = if topts.ascii {
                converted.clear();
                conv.convert(&buf[..n], &mut converted);
                &converted[..]
            } else {
                &buf[..n]
            };
            file.write_all(data)
                .await
                .map_err(|e| Error::local(local, e))?;
            moved += n as u64;
            if let Some(b) = bar {
                b.inc(n as u64);
            }
            throttle.account(n).await;
        }
        if topts.ascii {
            converted.clear();
            conv.finish(&mut converted);
            file.write_all(&converted)
                .await
                .map_err(|e| Error::local(local, e))?;
        }
        flush(&mut file, local).await?;
        drop(stream);
    }
    conn.finish_data(&format!("RETR {remote}")).await?;
    if topts.ascii {
        conn.ok(&Command::Type(DataType::Image), "TYPE I").await?;
    }
    Ok(moved)
}

async fn flush(file: &mut tokio::fs::File, local: &Path) -> Result<()> {
    file.flush().await.map_err(|e| Error::local(local, e))
}

async fn open_for_download(local: &Path, offset: u64) -> Result<tokio::fs::File> {
    if is_stdio(local) {
        // Its own descriptor: std's buffered stdout is never written while it is the data's.
        let out = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::local(local, e))?;
        return Ok(tokio::fs::File::from_std(std::fs::File::from(out)));
    }
    if offset == 0 {
        return tokio::fs::File::create(local)
            .await
            .map_err(|e| Error::local(local, e));
    }
    let mut f = tokio::fs::OpenOptions::new()
        .write(true)
        .open(local)
        .await
        .map_err(|e| Error::local(local, e))?;
    // Anything past the offset is not trusted: cut it, then append.
    f.set_len(offset)
        .await
        .map_err(|e| Error::local(local, e))?;
    f.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|e| Error::local(local, e))?;
    Ok(f)
}

/// One STOR (or APPE from `offset`); returns the bytes sent.
async fn upload(
    conn: &mut Conn,
    local: &Path,
    remote: &str,
    offset: u64,
    bar: Option<&FileBar>,
    topts: &TransferOptions,
) -> Result<u64> {
    if topts.ascii {
        conn.ok(&Command::Type(DataType::Ascii), "TYPE A").await?;
    }
    let mut file = tokio::fs::File::open(local)
        .await
        .map_err(|e| Error::local(local, e))?;
    if offset > 0 {
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| Error::local(local, e))?;
    }
    let command = if offset > 0 {
        Command::Appe(remote.to_owned())
    } else {
        Command::Stor(remote.to_owned())
    };
    let what = format!("{} {remote}", command.verb());
    let Some(mut stream) = conn.open_data(&command, None).await? else {
        return Err(Error::Protocol(format!(
            "{what}: the server finished before receiving any data"
        )));
    };
    let limit = conn.timeout;
    let mut throttle = Throttle::new(topts.limit);
    let mut buf = vec![0u8; CHUNK];
    let mut conv = ToNetwork::default();
    let mut converted = Vec::new();
    let mut moved = 0u64;
    loop {
        let want = throttle.chunk();
        let n = file
            .read(&mut buf[..want])
            .await
            .map_err(|e| Error::local(local, e))?;
        if n == 0 {
            break;
        }
        let data = if topts.ascii {
            converted.clear();
            conv.convert(&buf[..n], &mut converted);
            &converted[..]
        } else {
            &buf[..n]
        };
        write_data(&mut stream, data, limit, remote).await?;
        moved += n as u64;
        if let Some(b) = bar {
            b.inc(n as u64);
        }
        throttle.account(n).await;
    }
    // Ends the data stream: TLS close_notify, then FIN; the server treats EOF as end of file.
    match tokio::time::timeout(limit, stream.shutdown()).await {
        Err(_) => return Err(timeout_err(&format!("finishing {remote}"), limit)),
        Ok(Err(e)) => {
            return Err(Error::Network(format!(
                "data connection lost while sending {remote}: {e}"
            )))
        }
        Ok(Ok(())) => {}
    }
    // Closed only after the server's reply: a server may have sent bytes on it that were never
    // read (TLS 1.3 session tickets), and closing a socket with unread bytes sends a reset,
    // which throws away whatever the kernel had not yet sent of the upload.
    conn.finish_data(&what).await?;
    drop(stream);
    if topts.ascii {
        conn.ok(&Command::Type(DataType::Image), "TYPE I").await?;
    }
    Ok(moved)
}

async fn write_data(stream: &mut Stream, data: &[u8], limit: Duration, remote: &str) -> Result<()> {
    match tokio::time::timeout(limit, stream.write_all(data)).await {
        Err(_) => Err(timeout_err(&format!("sending {remote}"), limit)),
        Ok(Err(e)) => Err(Error::Network(format!(
            "data connection lost while sending {remote}: {e}"
        ))),
        Ok(Ok(())) => Ok(()),
    }
}

/// Where `get` writes: into `dest` if it is a directory (or ends with `/`), else `dest`
/// itself; without `dest`, the remote name in the current directory.
pub fn local_target(remote: &str, dest: Option<&Path>) -> PathBuf {
    let name = crate::target::basename(remote);
    match dest {
        None => PathBuf::from(name),
        Some(d) if d.is_dir() || d.to_string_lossy().ends_with('/') => d.join(name),
        Some(d) => d.to_owned(),
    }
}

/// The file's bar at `offset`: made on the first attempt, moved back to where a retry resumes.
fn show_bar(
    bar: &mut Option<FileBar>,
    progress: &Progress,
    remote: &str,
    total: Option<u64>,
    offset: u64,
) {
    match bar {
        Some(b) => b.rewind(offset),
        None => *bar = Some(progress.file(crate::target::basename(remote), total, offset)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }

    #[test]
    fn local_targets() {
        assert_eq!(local_target("a/b.txt", None), PathBuf::from("b.txt"));
        assert_eq!(
            local_target("a/b.txt", Some(Path::new("x/"))),
            PathBuf::from("x/b.txt")
        );
        assert_eq!(
            local_target("a/b.txt", Some(Path::new("c.txt"))),
            PathBuf::from("c.txt")
        );
    }
}
