//! The `ferry` command line: arguments (clap) and the one-shot commands.
//!
//! Arguments are parsed raw by clap, then turned into typed options ([`Global::connect_options`],
//! [`Global::transfer_options`]) before anything touches the network.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::conn::{Conn, ConnectOptions, TlsMode};
use crate::error::{Error, Result};
use crate::hash;
use crate::listing::{self, Kind, RemoteEntry};
use crate::mirror;
use crate::progress::Progress;
use crate::target::{basename, join, Target};
use crate::tls::{Fingerprint, KnownHosts};
use crate::transfer::{is_stdio, local_target, Client, TransferOptions};

const ABOUT: &str = "FTP/FTPS client with progress bars, automatic resume and verified transfers.

URLs look like ftp://user:password@host:port/path (ftps:// requires TLS). Paths are relative to
the login directory. Without a subcommand, `ferry URL` opens an interactive shell.

Credentials: the URL, --user USER[:PASS], FERRY_PASSWORD, ~/.netrc, else a no-echo prompt.
TLS: explicit FTPS (AUTH TLS) is used whenever the server offers it (--tls auto). Certificates
are checked against the system roots; a self-signed certificate must be pinned once with
--pin SHA256 (or confirmed at the prompt) and is then remembered in
~/.config/ferry/known_hosts ($FERRY_KNOWN_HOSTS); a changed certificate is refused.";

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "FTP/FTPS client with progress bars, automatic resume and verified transfers",
    long_about = ABOUT,
    after_help = crate::exit::HELP,
    subcommand_precedence_over_arg = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,

    #[command(subcommand)]
    pub command: Option<Cmd>,

    /// Open an interactive shell on this server (ftp://user@host:port/dir)
    pub url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// User name, optionally with the password (USER[:PASS])
    #[arg(short = 'u', long, global = true, value_name = "USER[:PASS]")]
    pub user: Option<String>,

    /// When to use explicit FTPS (AUTH TLS)
    #[arg(long, value_enum, default_value = "auto", global = true)]
    pub tls: TlsMode,

    /// Trust the server certificate with this SHA-256 fingerprint (and remember it)
    #[arg(long, global = true, value_name = "SHA256")]
    pub pin: Option<String>,

    /// Known-hosts file for pinned certificates [default: $FERRY_KNOWN_HOSTS or
    /// ~/.config/ferry/known_hosts]
    #[arg(long, global = true, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,

    /// Active mode: the server connects back (EPRT, then PORT)
    #[arg(long, global = true)]
    pub active: bool,

    /// No progress and no per-file lines; errors only
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// One JSON object per transferred file on stdout
    #[arg(long, global = true)]
    pub json: bool,

    /// Skip the check against the server's HASH/SIZE after each transfer
    #[arg(long, global = true)]
    pub no_verify: bool,

    /// Reconnect-and-resume attempts after a dropped connection
    #[arg(long, global = true, default_value_t = 3, value_name = "N")]
    pub retries: u32,

    /// Seconds to wait for the server at any step
    #[arg(long, global = true, default_value_t = 30, value_name = "SECS")]
    pub timeout: u64,

    /// Bandwidth limit per transfer, bytes per second (K, M, G suffixes: 500K)
    #[arg(long, global = true, value_parser = parse_rate, value_name = "RATE")]
    pub limit: Option<u64>,

    /// More logging on stderr (-v: notices, -vv: the FTP conversation, never passwords)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Cmd {
    /// List a remote directory
    Ls { url: String },
    /// Download a file (or files matching a * pattern) to DEST (- for standard output)
    Get {
        url: String,
        dest: Option<PathBuf>,
        /// Continue a partial local file (checked with HASH+RANG when the server has them)
        #[arg(short = 'c', long = "continue")]
        resume: bool,
        /// TYPE A: convert line ends (no resume, no digest check)
        #[arg(long)]
        ascii: bool,
    },
    /// Upload files: ferry put FILE... URL (URL ending in / is a directory)
    Put {
        /// Local files (- for standard input, to a named remote file), then the destination URL
        #[arg(required = true, num_args = 2.., value_name = "FILE... URL")]
        args: Vec<String>,
        /// Continue a partial remote file with APPE
        #[arg(short = 'c', long = "continue")]
        resume: bool,
        /// TYPE A: convert line ends (no resume, no digest check)
        #[arg(long)]
        ascii: bool,
    },
    /// Copy a remote tree to DIR, or with --reverse a local DIR to the server
    Mirror {
        /// Upload: ferry mirror --reverse DIR URL
        #[arg(short = 'R', long)]
        reverse: bool,
        /// URL (or DIR with --reverse)
        source: String,
        /// DIR (or URL with --reverse)
        dest: String,
        /// Continue partial files
        #[arg(short = 'c', long = "continue")]
        resume: bool,
    },
    /// Delete a remote file
    Rm { url: String },
    /// Create a remote directory
    Mkdir {
        url: String,
        /// Create missing parents too
        #[arg(short, long)]
        parents: bool,
    },
    /// Remove an empty remote directory
    Rmdir { url: String },
    /// Rename a remote file or directory (NEW is a path on the same server)
    Mv { url: String, new: String },
    /// Print the server's digest of a file (HASH, XSHA256, XMD5 or XCRC)
    Hash { url: String },
    /// Show the user's quota (SITE QUOTA)
    Quota { url: String },
}

/// `500K`, `2M`, `1G`, `12345`.
pub fn parse_rate(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1024),
        Some((i, 'm' | 'M')) => (&s[..i], 1024 * 1024),
        Some((i, 'g' | 'G')) => (&s[..i], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a rate like 500K"))?;
    n.checked_mul(mult)
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("{s:?} is out of range"))
}

impl Global {
    pub fn connect_options(&self) -> Result<ConnectOptions> {
        let pin = match &self.pin {
            Some(p) => Some(Fingerprint::parse(p).ok_or_else(|| {
                Error::Usage(format!(
                    "--pin {p:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
                ))
            })?),
            None => None,
        };
        Ok(ConnectOptions {
            tls: self.tls,
            pin,
            known_hosts: self
                .known_hosts
                .clone()
                .unwrap_or_else(KnownHosts::default_path),
            active: self.active,
            timeout: Duration::from_secs(self.timeout.max(1)),
            interactive: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
        })
    }

    pub fn transfer_options(&self, resume: bool, ascii: bool) -> TransferOptions {
        TransferOptions {
            resume,
            retries: self.retries,
            verify: !self.no_verify,
            limit: self.limit,
            ascii,
        }
    }

    /// Resolves credentials and connects.
    pub async fn client(
        &self,
        target: &Target,
        topts: TransferOptions,
        progress: Arc<Progress>,
    ) -> Result<Client> {
        let opts = self.connect_options()?;
        let creds = crate::creds::resolve(target, self.user.as_deref())?;
        Client::connect(target.clone(), creds, opts, topts, progress).await
    }
}

/// Runs one subcommand to completion.
pub async fn run(cmd: Cmd, g: &Global) -> Result<()> {
    let data_on_stdout = matches!(&cmd, Cmd::Get { dest: Some(d), .. } if is_stdio(d));
    if data_on_stdout && g.json {
        return Err(Error::Usage(
            "--json and DEST - both write to standard output: choose one".into(),
        ));
    }
    let progress = Arc::new(Progress::new(g.quiet, g.json, data_on_stdout));
    match cmd {
        Cmd::Ls { url } => {
            let t = Target::parse(&url)?;
            let mut c = g
                .client(&t, g.transfer_options(false, false), progress.clone())
                .await?;
            let entries = list_or_stat(&mut c, &t.path).await;
            let entries = c.check(entries)?;
            for e in &entries {
                progress.println(&format_entry(e, g.json));
            }
            c.close().await;
            Ok(())
        }
        Cmd::Get {
            url,
            dest,
            resume,
            ascii,
        } => {
            let t = Target::parse(&url)?;
            let mut c = g
                .client(&t, g.transfer_options(resume, ascii), progress)
                .await?;
            let r = get_paths(&mut c, &t.path, dest.as_deref()).await;
            c.close().await;
            r
        }
        Cmd::Put {
            mut args,
            resume,
            ascii,
        } => {
            let url = args
                .pop()
                .ok_or_else(|| Error::Usage("put needs FILE... URL".into()))?;
            let files: Vec<PathBuf> = args.into_iter().map(PathBuf::from).collect();
            let t = Target::parse(&url)?;
            for f in &files {
                if f.is_dir() {
                    return Err(Error::Usage(format!(
                        "{} is a directory: use `ferry mirror --reverse {} URL`",
                        f.display(),
                        f.display()
                    )));
                }
                // Not only regular files: `ferry put /dev/stdin URL` uploads a pipe.
                if !f.exists() && !is_stdio(f) {
                    return Err(Error::local(
                        f,
                        std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                    ));
                }
            }
            let mut c = g
                .client(&t, g.transfer_options(resume, ascii), progress)
                .await?;
            let r = put_paths(&mut c, &files, &t.path).await;
            c.close().await;
            r
        }
        Cmd::Mirror {
            reverse,
            source,
            dest,
            resume,
        } => {
            let (url, dir) = if reverse {
                (dest, source)
            } else {
                (source, dest)
            };
            let t = Target::parse(&url)?;
            let mut c = g
                .client(&t, g.transfer_options(resume, false), progress.clone())
                .await?;
            let r = if reverse {
                mirror::mirror_up(&mut c, Path::new(&dir), &t.path).await
            } else {
                mirror::mirror_down(&mut c, &t.path, Path::new(&dir)).await
            };
            c.close().await;
            let s = r?;
            if !g.json {
                progress.note(&format!(
                    "mirror: {} transferred, {} up to date",
                    s.transferred, s.skipped
                ));
            }
            Ok(())
        }
        Cmd::Rm { url } => simple(g, &url, progress, Simple::Rm).await,
        Cmd::Rmdir { url } => simple(g, &url, progress, Simple::Rmdir).await,
        Cmd::Mkdir { url, parents } => simple(g, &url, progress, Simple::Mkdir { parents }).await,
        Cmd::Mv { url, new } => {
            let new_path = if new.contains("://") {
                Target::parse(&new)?.path
            } else {
                new
            };
            simple(g, &url, progress, Simple::Mv(new_path)).await
        }
        Cmd::Hash { url } => simple(g, &url, progress, Simple::Hash).await,
        Cmd::Quota { url } => simple(g, &url, progress, Simple::Quota).await,
    }
}

enum Simple {
    Rm,
    Rmdir,
    Mkdir { parents: bool },
    Mv(String),
    Hash,
    Quota,
}

async fn simple(g: &Global, url: &str, progress: Arc<Progress>, what: Simple) -> Result<()> {
    let t = Target::parse(url)?;
    let mut c = g
        .client(&t, g.transfer_options(false, false), progress.clone())
        .await?;
    let r = {
        let conn = c.conn().await?;
        run_simple(conn, &t.path, what, &progress).await
    };
    let r = c.check(r);
    c.close().await;
    r
}

/// Commands on one path that need no transfer; shared with the shell.
async fn run_simple(conn: &mut Conn, path: &str, what: Simple, progress: &Progress) -> Result<()> {
    match what {
        Simple::Rm => conn.dele(path).await,
        Simple::Rmdir => conn.rmd(path).await,
        Simple::Mkdir { parents: false } => conn.mkd(path).await,
        Simple::Mkdir { parents: true } => mkdir_parents(conn, path).await,
        Simple::Mv(new) => conn.rename(path, &new).await,
        Simple::Hash => {
            let line = hash_line(conn, path).await?;
            progress.println(&line);
            Ok(())
        }
        Simple::Quota => {
            let text = quota(conn).await?;
            progress.println(&text);
            Ok(())
        }
    }
}

pub async fn mkdir_parents(conn: &mut Conn, path: &str) -> Result<()> {
    let trimmed = path.trim_end_matches('/');
    let mut prefix = String::new();
    let parts: Vec<&str> = trimmed.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 || trimmed.starts_with('/') {
            prefix.push('/');
        }
        prefix.push_str(part);
        if part.is_empty() {
            continue;
        }
        let last = i + 1 == parts.len();
        match conn.mkd(&prefix).await {
            Ok(()) => {}
            // Already there (or not ours to create): only the last component must succeed,
            // and only if it is not already a directory.
            Err(e @ Error::Server { .. }) if last => {
                if !is_remote_dir(conn, &prefix).await? {
                    return Err(e);
                }
            }
            Err(Error::Server { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `SHA-256 <hex>  <path>` from the strongest command the server has.
pub async fn hash_line(conn: &mut Conn, path: &str) -> Result<String> {
    match hash::remote_digest(conn, path, None).await? {
        Some(d) => Ok(format!("{} {}  {}", d.algo.hash_name(), d.hex, path)),
        None => Err(Error::Unsupported(
            "the server offers no HASH, XSHA256, XMD5 or XCRC command".into(),
        )),
    }
}

/// The text of `SITE QUOTA`.
pub async fn quota(conn: &mut Conn) -> Result<String> {
    let r = conn
        .cmd(&ferry_proto::Command::Site("QUOTA".into()))
        .await?;
    match r.code {
        200..=299 => Ok(r.lines.join("\n")),
        500 | 501 | 502 | 504 => Err(Error::Unsupported(format!(
            "the server does not support SITE QUOTA ({} {})",
            r.code,
            r.text()
        ))),
        _ => Err(Error::server("SITE QUOTA", r)),
    }
}

/// Whether `path` is a directory on the server: MLST when offered, else a CWD round trip.
pub async fn is_remote_dir(conn: &mut Conn, path: &str) -> Result<bool> {
    if path.is_empty() || path == "/" || path == "." {
        return Ok(true);
    }
    if conn.features.has("MLST") {
        let r = conn
            .cmd(&ferry_proto::Command::Mlst(Some(path.to_owned())))
            .await?;
        if r.code != 250 {
            return Ok(false);
        }
        return Ok(r
            .lines
            .iter()
            .skip(1)
            .filter_map(|l| listing::parse_mlsd_line(l.trim_start()))
            .any(|e| e.kind == Kind::Dir));
    }
    let back = conn.pwd().await?;
    if conn.cwd(path).await.is_ok() {
        conn.cwd(&back).await?;
        Ok(true)
    } else {
        Ok(false)
    }
}

/// A directory listing, or the single entry when `path` is a file.
pub async fn list_or_stat(c: &mut Client, path: &str) -> Result<Vec<RemoteEntry>> {
    let conn = c.conn().await?;
    match conn.list_dir(path).await {
        Ok(v) => Ok(v),
        Err(e @ Error::Server { .. }) => match conn.size(path).await {
            Ok(Some(n)) => Ok(vec![RemoteEntry {
                name: path.to_owned(),
                kind: Kind::File,
                size: Some(n),
                mtime: conn.mdtm(path).await.ok().flatten(),
            }]),
            _ => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// `d          -  2024-01-02 03:04  name/` (or a JSON object with `--json`).
pub fn format_entry(e: &RemoteEntry, json: bool) -> String {
    if json {
        return serde_json::json!({
            "name": e.name,
            "type": match e.kind { Kind::File => "file", Kind::Dir => "dir", Kind::Link => "link", Kind::Other => "other" },
            "size": e.size,
            "modify": e.mtime,
        })
        .to_string();
    }
    let kind = match e.kind {
        Kind::File => '-',
        Kind::Dir => 'd',
        Kind::Link => 'l',
        Kind::Other => '?',
    };
    let size = match (e.kind, e.size) {
        (Kind::Dir, _) | (_, None) => "-".to_owned(),
        (_, Some(n)) => n.to_string(),
    };
    let when = e
        .mtime
        .map(|t| {
            let s = ferry_proto::listing::format_mdtm(t);
            format!(
                "{}-{}-{} {}:{}",
                &s[0..4],
                &s[4..6],
                &s[6..8],
                &s[8..10],
                &s[10..12]
            )
        })
        .unwrap_or_else(|| "                ".to_owned());
    let slash = if e.kind == Kind::Dir { "/" } else { "" };
    format!("{kind} {size:>12}  {when}  {}{slash}", e.name)
}

/// `get`: one file, or every file matching a pattern in the last component.
pub async fn get_paths(c: &mut Client, remote: &str, dest: Option<&Path>) -> Result<()> {
    let name = basename(remote);
    if !listing::has_glob(name) {
        if remote.is_empty() || remote.ends_with('/') {
            return Err(Error::Usage(format!(
                "{} is a directory: use `ferry mirror URL DIR`",
                if remote.is_empty() { "/" } else { remote }
            )));
        }
        let local = local_target(remote, dest);
        c.get(remote, &local).await?;
        return Ok(());
    }
    let dir = &remote[..remote.len() - name.len()];
    let dir = dir.trim_end_matches('/');
    let entries = {
        let r = c.conn().await?.list_dir(dir).await;
        c.check(r)?
    };
    let matches: Vec<RemoteEntry> = entries
        .into_iter()
        .filter(|e| e.kind == Kind::File && listing::glob_match(name, &e.name))
        .filter(|e| !e.name.contains(['/', '\\']))
        .collect();
    if matches.is_empty() {
        return Err(Error::Usage(format!("no remote file matches {remote}")));
    }
    if dest.is_some_and(is_stdio) {
        return Err(Error::Usage(format!(
            "{remote} may match several files: DEST - (standard output) takes one"
        )));
    }
    let dest_dir = dest
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."));
    if !dest_dir.is_dir() {
        return Err(Error::Usage(format!(
            "{} must be a directory for several files",
            dest_dir.display()
        )));
    }
    let total = matches.iter().filter_map(|e| e.size).sum();
    c.progress.start_overall(matches.len() as u64, total);
    let mut first = None;
    for e in matches {
        let r = join(dir, &e.name);
        if let Err(err) = c.get(&r, &dest_dir.join(&e.name)).await {
            eprintln!("ferry: error: {err}");
            first.get_or_insert(err);
        }
    }
    c.progress.finish_overall();
    first.map_or(Ok(()), Err)
}

/// `put`: files into a remote directory, or one file to a remote name.
pub async fn put_paths(c: &mut Client, files: &[PathBuf], remote: &str) -> Result<()> {
    let into_dir = files.len() > 1 || remote.is_empty() || remote.ends_with('/') || {
        let r = is_remote_dir(c.conn().await?, remote).await;
        c.check(r)?
    };
    if into_dir && files.iter().any(|f| is_stdio(f)) {
        return Err(Error::Usage(format!(
            "standard input has no file name: name the remote file, as in `ferry put - {}`",
            join(remote, "NAME")
        )));
    }
    let total = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    c.progress.start_overall(files.len() as u64, total);
    let mut first = None;
    for f in files {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Usage(format!("{}: file name is not UTF-8", f.display())))?;
        let dest = if into_dir {
            join(remote, name)
        } else {
            remote.to_owned()
        };
        if let Err(err) = c.put(f, &dest).await {
            eprintln!("ferry: error: {err}");
            first.get_or_insert(err);
        }
    }
    c.progress.finish_overall();
    first.map_or(Ok(()), Err)
}

/// The shell's access to the single-path commands.
pub async fn shell_simple(c: &mut Client, path: &str, cmd: &str, arg: Option<&str>) -> Result<()> {
    let what = match cmd {
        "rm" => Simple::Rm,
        "rmdir" => Simple::Rmdir,
        "mkdir" => Simple::Mkdir { parents: false },
        "mv" => Simple::Mv(arg.unwrap_or_default().to_owned()),
        "hash" => Simple::Hash,
        "quota" => Simple::Quota,
        other => return Err(Error::Usage(format!("unknown command {other}"))),
    };
    let progress = c.progress.clone();
    let r = {
        let conn = c.conn().await?;
        run_simple(conn, path, what, &progress).await
    };
    c.check(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("500K"), Ok(512_000));
        assert_eq!(parse_rate("2m"), Ok(2 * 1024 * 1024));
        assert_eq!(parse_rate("123"), Ok(123));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn url_or_subcommand() {
        let c = Cli::try_parse_from(["ferry", "--tls", "off", "ftp://h/"]).expect("shell form");
        assert!(c.command.is_none() && c.url.as_deref() == Some("ftp://h/"));
        let c = Cli::try_parse_from(["ferry", "get", "ftp://h/a", "--no-verify", "-c"])
            .expect("get form");
        assert!(c.global.no_verify);
        assert!(matches!(c.command, Some(Cmd::Get { resume: true, .. })));
        let c = Cli::try_parse_from(["ferry", "--json", "get", "ftp://h/a"]).expect("flag first");
        assert!(c.global.json && matches!(c.command, Some(Cmd::Get { .. })));
        let c = Cli::try_parse_from(["ferry", "put", "a", "b", "ftp://h/d/"]).expect("put form");
        assert!(matches!(c.command, Some(Cmd::Put { ref args, .. }) if args.len() == 3));
    }
}
