//! Shared test plumbing: spawning `ferryd`, running external tools with a deadline, a raw FTP
//! control client, and byte-exact comparison helpers.
//!
//! Everything here is bounded in time: a hung server or client must turn into a failed test
//! with a useful message, never into a hung `cargo test`.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Path of the binary under test, built by cargo for this test target.
pub const FERRYD: &str = env!("CARGO_BIN_EXE_ferryd");

/// Default bound for any curl / lftp / CLI invocation.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// Passwords of the users every `TestServer::start*` creates. Only URL-safe characters so they
/// can be embedded in `ftp://user:pw@host/` URLs unencoded.
pub const ALICE_PW: &str = "alice-Secret.1";
pub const BOB_PW: &str = "bob-Secret.2";

pub fn password(user: &str) -> &'static str {
    match user {
        "alice" => ALICE_PW,
        "bob" => BOB_PW,
        other => panic!("no fixed password for test user {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// External commands with a deadline
// ---------------------------------------------------------------------------------------------

/// Result of a finished (or killed) external command.
pub struct Output {
    pub desc: String,
    /// `None` when the command had to be killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Panics unless the command exited 0.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(self.success(), "expected success:\n{self}");
        self
    }

    /// Panics unless the command exited with exactly `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), Some(code), "unexpected exit code:\n{self}");
        self
    }

    /// Panics unless the command ran to completion with a non-zero exit code.
    #[track_caller]
    pub fn assert_failed(&self) -> &Self {
        assert!(
            !self.timed_out && self.status.is_some_and(|s| !s.success()),
            "expected a non-zero exit:\n{self}"
        );
        self
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match (self.timed_out, self.status) {
            (true, _) => "KILLED AFTER TIMEOUT".to_string(),
            (false, Some(s)) => s.to_string(),
            (false, None) => "unknown".to_string(),
        };
        writeln!(f, "  command: {}", self.desc)?;
        writeln!(f, "  status:  {status}")?;
        writeln!(f, "  stdout:  {}", clip(&self.stdout_str()))?;
        write!(f, "  stderr:  {}", clip(&self.stderr_str()))
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 4000;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... [{} bytes total]", &s[..end], s.len())
}

/// A spawned external command whose stdout/stderr go to anonymous temp files (not pipes), so
/// a chatty or stuck child can never deadlock us on a full pipe buffer.
pub struct Background {
    desc: String,
    child: Child,
    out: File,
    err: File,
}

impl Background {
    #[track_caller]
    pub fn spawn(cmd: &mut Command, stdin: Option<&[u8]>) -> Background {
        let desc = format!("{cmd:?}");
        let out = tempfile::tempfile().expect("create stdout capture file");
        let err = tempfile::tempfile().expect("create stderr capture file");
        cmd.stdout(Stdio::from(out.try_clone().expect("clone stdout file")))
            .stderr(Stdio::from(err.try_clone().expect("clone stderr file")))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("failed to spawn {desc}: {e}"),
        };
        if let Some(input) = stdin {
            if let Some(mut pipe) = child.stdin.take() {
                // Inputs are tiny (a password line); a write error just means the child
                // exited early, which the exit status will show.
                let _ = pipe.write_all(input);
            }
        }
        Background {
            desc,
            child,
            out,
            err,
        }
    }

    /// Waits until the command exits or `timeout` passes (then kills it).
    pub fn wait(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let mut timed_out = false;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() >= deadline => {
                    timed_out = true;
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("waiting for {}: {e}", self.desc),
            }
        };
        Output {
            desc: self.desc.clone(),
            status,
            stdout: read_all(&mut self.out),
            stderr: read_all(&mut self.err),
            timed_out,
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn read_all(f: &mut File) -> Vec<u8> {
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(0)).is_ok() {
        let _ = f.read_to_end(&mut buf);
    }
    buf
}

/// Runs `cmd` to completion, bounded by `timeout`.
#[track_caller]
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    Background::spawn(cmd, stdin).wait(timeout)
}

/// Fails (does not skip) when a required client tool is missing.
#[track_caller]
pub fn require_tool(name: &str) {
    let ok = Command::new(name)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        ok,
        "`{name}` is required by the ferryd integration tests but was not found on PATH; \
         install it (e.g. `apt-get install -y {name}`) and re-run"
    );
}

/// Runs curl with quiet-but-show-errors output, no proxy, and bounded connect/total time.
#[track_caller]
pub fn curl(args: &[&str]) -> Output {
    require_tool("curl");
    let mut cmd = curl_command(args);
    run(&mut cmd, None, TOOL_TIMEOUT)
}

pub fn curl_command(args: &[&str]) -> Command {
    let mut cmd = Command::new("curl");
    for var in [
        "ftp_proxy",
        "FTP_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(["-sS", "--noproxy", "*", "--connect-timeout", "10"])
        .args(args);
    cmd
}

// ---------------------------------------------------------------------------------------------
// ferryd CLI
// ---------------------------------------------------------------------------------------------

/// `ferryd --data-dir DATA ...`, run from the data dir's parent so no stray `ferry.toml` in
/// the developer's cwd can influence the test.
pub fn ferryd_command(data_dir: &Path) -> Command {
    let mut cmd = Command::new(FERRYD);
    cmd.arg("--data-dir").arg(data_dir);
    if let Some(parent) = data_dir.parent() {
        cmd.current_dir(parent);
    }
    cmd
}

/// Runs an admin subcommand, e.g. `cli(d, &["user", "list"], None)`.
#[track_caller]
pub fn cli(data_dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = ferryd_command(data_dir);
    cmd.args(args);
    run(&mut cmd, stdin.map(str::as_bytes), TOOL_TIMEOUT)
}

/// `ferryd user add NAME --password-stdin [extra...]`, asserting success.
#[track_caller]
pub fn add_user(data_dir: &Path, name: &str, pw: &str, extra: &[&str]) {
    let mut args = vec!["user", "add", name, "--password-stdin"];
    args.extend_from_slice(extra);
    cli(data_dir, &args, Some(&format!("{pw}\n"))).assert_ok();
}

// ---------------------------------------------------------------------------------------------
// Server under test
// ---------------------------------------------------------------------------------------------

const LISTEN_PREFIX: &str = "ferryd listening on ";
const STARTUP_DEADLINE: Duration = Duration::from_secs(20);

pub struct TestServer {
    pub port: u16,
    pub data_dir: PathBuf,
    /// Lines printed on stdout before (and including) the `listening` line.
    pub startup_stdout: Vec<String>,
    stderr_path: PathBuf,
    child: Option<Child>,
    _tmp: Option<TempDir>,
}

static LOG_SEQ: AtomicU64 = AtomicU64::new(0);

impl TestServer {
    /// Server with default config and users alice / bob.
    pub fn start() -> TestServer {
        TestServer::start_with("")
    }

    /// Server with the given config file contents and users alice / bob.
    pub fn start_with(config_toml: &str) -> TestServer {
        let tmp = tempfile::Builder::new()
            .prefix("ferry-it-")
            .tempdir()
            .expect("create temp dir");
        let data_dir = tmp.path().join("data");
        fs::create_dir(&data_dir).expect("create data dir");
        // Sequential on purpose: concurrent first-time `user add`s on a fresh data dir are
        // covered by their own test (cli::concurrent_user_adds_on_fresh_data_dir).
        add_user(&data_dir, "alice", ALICE_PW, &[]);
        add_user(&data_dir, "bob", BOB_PW, &[]);
        let mut server = TestServer::launch_in(tmp.path(), config_toml);
        server._tmp = Some(tmp);
        server
    }

    /// Spawns `ferryd serve` with data dir `root/data` (which may be empty / missing) and the
    /// given config, without creating any users. The caller owns `root`.
    pub fn launch_in(root: &Path, config_toml: &str) -> TestServer {
        let data_dir = root.join("data");
        let config_path = root.join("ferry-test.toml");
        fs::write(&config_path, config_toml).expect("write config");
        let seq = LOG_SEQ.fetch_add(1, Ordering::Relaxed);
        let stderr_path = root.join(format!("ferryd-stderr-{seq}.log"));
        let stderr_file = File::create(&stderr_path).expect("create stderr log");

        let mut child = Command::new(FERRYD)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--config")
            .arg(&config_path)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr_file))
            .spawn()
            .expect("spawn ferryd serve");

        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel::<String>();
        // Keep draining stdout for the server's whole life so it can never block on a full
        // pipe; lines after the listening line are simply dropped.
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                        let _ = tx.send(line);
                    }
                }
            }
        });

        let mut server = TestServer {
            port: 0,
            data_dir,
            startup_stdout: Vec::new(),
            stderr_path,
            child: Some(child),
            _tmp: None,
        };

        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    server.startup_stdout.push(line.clone());
                    if let Some(rest) = line.strip_prefix(LISTEN_PREFIX) {
                        let addr: SocketAddr = match rest.trim().parse() {
                            Ok(a) => a,
                            Err(e) => server
                                .fail_startup(&format!("unparsable listening line {line:?}: {e}")),
                        };
                        assert_eq!(
                            addr.ip(),
                            Ipv4Addr::LOCALHOST,
                            "listening line must show the bound address: {line:?}"
                        );
                        assert_ne!(addr.port(), 0, "listening line shows port 0: {line:?}");
                        server.port = addr.port();
                        return server;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => server.fail_startup(&format!(
                    "no `{LISTEN_PREFIX}...` line on stdout within {STARTUP_DEADLINE:?}"
                )),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Give the process a moment to be reaped so the status is meaningful.
                    thread::sleep(Duration::from_millis(200));
                    let status = server
                        .child
                        .as_mut()
                        .and_then(|c| c.try_wait().ok().flatten());
                    server.fail_startup(&format!(
                        "ferryd closed stdout before printing the listening line (status {status:?})"
                    ))
                }
            }
        }
    }

    fn fail_startup(&mut self, why: &str) -> ! {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        panic!(
            "ferryd serve failed to start: {why}\nstdout so far: {:?}\nstderr log ({}):\n{}",
            self.startup_stdout,
            self.stderr_path.display(),
            self.stderr_log()
        );
    }

    pub fn home(&self, user: &str) -> PathBuf {
        self.data_dir.join("homes").join(user)
    }

    /// `ftp://user:pw@127.0.0.1:PORT/path` with `path` percent-encoded (slashes kept).
    pub fn url(&self, user: &str, path: &str) -> String {
        format!(
            "ftp://{user}:{}@127.0.0.1:{}/{}",
            password(user),
            self.port,
            pct_encode(path)
        )
    }

    /// `ftp://127.0.0.1:PORT/path` without credentials (use with `curl -u`).
    pub fn bare_url(&self, path: &str) -> String {
        format!("ftp://127.0.0.1:{}/{}", self.port, pct_encode(path))
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn stderr_log(&self) -> String {
        fs::read_to_string(&self.stderr_path)
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.stderr_path.display()))
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("server already reaped")
    }

    /// Sends SIGTERM (via kill(1): no libc in dev-deps).
    pub fn sigterm(&self) {
        let pid = self.pid().to_string();
        let st = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill -TERM");
        assert!(st.success(), "kill -TERM {pid} failed: {st}");
    }

    /// Polls for exit up to `timeout`; `None` if still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            match child.try_wait() {
                Ok(Some(st)) => return Some(st),
                Ok(None) if Instant::now() >= deadline => return None,
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(_) => return None,
            }
        }
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL. Returns the exit status if it exited by itself.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        self.sigterm();
        let st = self.wait_exit(Duration::from_secs(10));
        if st.is_none() {
            if let Some(c) = self.child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        st
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw FTP control connection
// ---------------------------------------------------------------------------------------------

pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// Minimal FTP control client: one command at a time, multi-line replies, 10 s timeouts.
pub struct FtpControl {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl FtpControl {
    /// Connects without reading the greeting.
    pub fn connect_raw(port: u16) -> io::Result<FtpControl> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, CONTROL_TIMEOUT)?;
        stream.set_read_timeout(Some(CONTROL_TIMEOUT))?;
        stream.set_write_timeout(Some(CONTROL_TIMEOUT))?;
        let writer = stream.try_clone()?;
        Ok(FtpControl {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Connects and asserts a 220 greeting.
    #[track_caller]
    pub fn connect(port: u16) -> FtpControl {
        let mut c = FtpControl::connect_raw(port).expect("connect control channel");
        let greet = c.read_reply().expect("read greeting");
        assert_eq!(greet.code, 220, "greeting: {greet}");
        c
    }

    /// Connects, asserts the greeting and logs in.
    #[track_caller]
    pub fn login(port: u16, user: &str, pw: &str) -> FtpControl {
        let mut c = FtpControl::connect(port);
        c.expect(&format!("USER {user}"), 331);
        c.expect(&format!("PASS {pw}"), 230);
        c
    }

    pub fn send(&mut self, line: &str) -> io::Result<()> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.writer.flush()
    }

    /// Reads one complete (possibly multi-line) reply.
    pub fn read_reply(&mut self) -> io::Result<Reply> {
        let first = self.read_line()?;
        let code = parse_code(&first).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad reply line {first:?}"),
            )
        })?;
        let multi = first.as_bytes().get(3) == Some(&b'-');
        let mut lines = vec![first];
        if multi {
            let end = format!("{code} ");
            loop {
                let line = self.read_line()?;
                let done = line.starts_with(&end) || line == code.to_string();
                lines.push(line);
                if done {
                    break;
                }
            }
        }
        Ok(Reply { code, lines })
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut buf = Vec::new();
        let n = self.reader.read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "control connection closed",
            ));
        }
        Ok(String::from_utf8_lossy(&buf)
            .trim_end_matches(['\r', '\n'])
            .to_string())
    }

    /// Sends a command and returns its reply, panicking on I/O errors.
    #[track_caller]
    pub fn cmd(&mut self, line: &str) -> Reply {
        if let Err(e) = self.send(line) {
            panic!("sending {line:?}: {e}");
        }
        match self.read_reply() {
            Ok(r) => r,
            Err(e) => panic!("reading reply to {line:?}: {e}"),
        }
    }

    /// Sends a command and asserts the reply code.
    #[track_caller]
    pub fn expect(&mut self, line: &str, code: u16) -> Reply {
        let r = self.cmd(line);
        assert_eq!(r.code, code, "reply to {line:?}: {r}");
        r
    }

    /// Enters extended passive mode and connects the data socket.
    #[track_caller]
    pub fn epsv_data(&mut self) -> TcpStream {
        let r = self.expect("EPSV", 229);
        let text = r.text();
        let port: u16 = text
            .split("|||")
            .nth(1)
            .and_then(|s| s.split('|').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unparsable EPSV reply {text:?}"));
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let s = TcpStream::connect_timeout(&addr, CONTROL_TIMEOUT).expect("connect data port");
        s.set_read_timeout(Some(CONTROL_TIMEOUT))
            .expect("set data timeout");
        s
    }
}

fn parse_code(line: &str) -> Option<u16> {
    let digits = line.get(..3)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Data helpers (random data, byte comparisons, URL encoding: ferry_testkit, shared with the client)
// ---------------------------------------------------------------------------------------------

pub use ferry_testkit::{assert_bytes_eq, pct_encode, random_bytes, read, Rng};

/// Writes `len` pseudo-random bytes to `path` without holding them all in memory.
pub fn write_random_file(path: &Path, len: u64) {
    let mut f = io::BufWriter::new(File::create(path).expect("create random file"));
    let mut rng = Rng::new();
    let mut left = len;
    let mut chunk = vec![0u8; 1 << 16];
    while left > 0 {
        rng.fill(&mut chunk);
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).expect("write random file");
        left -= n as u64;
    }
    f.flush().expect("flush random file");
}

/// Streams two files and asserts they are byte-identical.
#[track_caller]
pub fn assert_files_eq(a: &Path, b: &Path) {
    let open = |p: &Path| match File::open(p) {
        Ok(f) => io::BufReader::with_capacity(1 << 20, f),
        Err(e) => panic!("opening {}: {e}", p.display()),
    };
    let (mut ra, mut rb) = (open(a), open(b));
    let mut offset = 0u64;
    loop {
        let ba = ra.fill_buf().expect("read a").to_vec();
        let bb = rb.fill_buf().expect("read b");
        let n = ba.len().min(bb.len());
        if n == 0 {
            assert!(
                ba.is_empty() && bb.is_empty(),
                "{} and {} differ in length (one ends at offset {offset})",
                a.display(),
                b.display()
            );
            return;
        }
        // Fast memcmp path; only locate the offset when something differs.
        if ba[..n] != bb[..n] {
            let i = (0..n).find(|&i| ba[i] != bb[i]).unwrap_or(0);
            panic!(
                "{} and {} differ at offset {}",
                a.display(),
                b.display(),
                offset + i as u64
            );
        }
        ra.consume(n);
        rb.consume(n);
        offset += n as u64;
    }
}

/// A directory tree: relative path -> `None` for directories, `Some(bytes)` for files.
pub type Tree = BTreeMap<PathBuf, Option<Vec<u8>>>;

/// Snapshot of everything below `root` (root itself excluded). Symlinks are reported as a
/// failure: nothing in these tests should create them.
pub fn snapshot(root: &Path) -> Tree {
    let mut tree = Tree::new();
    walk(root, root, &mut tree);
    tree
}

fn walk(root: &Path, dir: &Path, tree: &mut Tree) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => panic!("listing {}: {e}", dir.display()),
    };
    for entry in entries {
        let entry = entry.expect("dir entry");
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .expect("entry under root")
            .to_path_buf();
        let meta = fs::symlink_metadata(&path).expect("stat entry");
        if meta.is_dir() {
            tree.insert(rel, None);
            walk(root, &path, tree);
        } else if meta.is_file() {
            tree.insert(rel, Some(read(&path)));
        } else {
            panic!("unexpected non-regular entry {}", path.display());
        }
    }
}

/// Asserts two trees have the same paths, kinds and bytes; reports the differing paths only.
#[track_caller]
pub fn assert_trees_eq(what: &str, got: &Tree, expected: &Tree) {
    let mut problems = Vec::new();
    for (p, want) in expected {
        match got.get(p) {
            None => problems.push(format!("missing: {}", p.display())),
            Some(have) => match (have, want) {
                (None, None) => {}
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) => problems.push(format!(
                    "content differs: {} ({} vs {} bytes)",
                    p.display(),
                    a.len(),
                    b.len()
                )),
                _ => problems.push(format!("file/dir mismatch: {}", p.display())),
            },
        }
    }
    for p in got.keys() {
        if !expected.contains_key(p) {
            problems.push(format!("unexpected: {}", p.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "{what}: trees differ:\n  {}",
        problems.join("\n  ")
    );
}
