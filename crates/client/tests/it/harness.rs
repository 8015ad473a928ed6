//! Test plumbing: the `ferry` binary under test, the servers it talks to (`ferryd` and a
//! pyftpdlib server), a TCP proxy that cuts data connections, and file-tree helpers.
//!
//! Every wait is bounded: a hung client or server turns into a failed test with its output,
//! never a hung `cargo test`. Servers listen on 127.0.0.1 port 0.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const STARTUP: Duration = Duration::from_secs(30);

pub const ALICE_PW: &str = "alice-Secret.1";

// ---------------------------------------------------------------------------------------------
// Processes with deadlines
// ---------------------------------------------------------------------------------------------

pub struct Output {
    pub desc: String,
    pub status: Option<ExitStatus>,
    pub stdout: String,
    /// stdout as it was written (for binary output).
    pub stdout_bytes: Vec<u8>,
    pub stderr: String,
    pub timed_out: bool,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert!(
            self.status.is_some_and(|s| s.success()),
            "expected success:\n{self}"
        );
        self
    }

    #[track_caller]
    pub fn code_is(&self, code: i32) -> &Self {
        assert_eq!(self.code(), Some(code), "unexpected exit code:\n{self}");
        self
    }

    /// The `--json` lines on stdout.
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
            .collect()
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  command: {}", self.desc)?;
        writeln!(
            f,
            "  status:  {}",
            if self.timed_out {
                "KILLED AFTER TIMEOUT".to_owned()
            } else {
                format!("{:?}", self.status)
            }
        )?;
        writeln!(f, "  stdout:  {}", self.stdout)?;
        write!(f, "  stderr:  {}", self.stderr)
    }
}

/// Runs `cmd` with stdin closed, output to temp files (no pipe deadlocks), killed at `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    run_with_input(cmd, None, timeout)
}

/// [`run`], with `input` written to the command's stdin through a pipe (then closed).
pub fn run_with_input(cmd: &mut Command, input: Option<Vec<u8>>, timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let mut out = tempfile::tempfile().expect("stdout file");
    let mut err = tempfile::tempfile().expect("stderr file");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::from(out.try_clone().expect("clone")))
    .stderr(Stdio::from(err.try_clone().expect("clone")));
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    // A writer thread: a child that stops reading cannot block the deadline below.
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("wait {desc}: {e}"),
        }
    };
    let read = |f: &mut File| {
        let _ = f.seek(SeekFrom::Start(0));
        let mut b = Vec::new();
        let _ = f.read_to_end(&mut b);
        b
    };
    let stdout_bytes = read(&mut out);
    Output {
        desc,
        status,
        stdout: String::from_utf8_lossy(&stdout_bytes).into_owned(),
        stdout_bytes,
        stderr: String::from_utf8_lossy(&read(&mut err)).into_owned(),
        timed_out,
    }
}

/// A private HOME (no ~/.netrc, own known_hosts) and a working directory for one test.
pub struct Ctx {
    pub tmp: TempDir,
}

impl Ctx {
    pub fn new() -> Ctx {
        let tmp = tempfile::Builder::new()
            .prefix("ferry-client-it-")
            .tempdir()
            .expect("tempdir");
        fs::create_dir_all(tmp.path().join("home")).expect("home");
        fs::create_dir_all(tmp.path().join("work")).expect("work");
        Ctx { tmp }
    }

    pub fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    pub fn work(&self) -> PathBuf {
        self.tmp.path().join("work")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.tmp.path().join("known_hosts")
    }

    /// `ferry ARGS` in the work directory, not on a terminal.
    pub fn ferry_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(FERRY);
        cmd.args(args)
            .current_dir(self.work())
            .env("HOME", self.home())
            .env("FERRY_KNOWN_HOSTS", self.known_hosts())
            .env_remove("FERRY_PASSWORD")
            .env_remove("NETRC")
            .env_remove("FERRY_LOG");
        cmd
    }

    pub fn ferry(&self, args: &[&str]) -> Output {
        run(&mut self.ferry_cmd(args), RUN_TIMEOUT)
    }
}

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

/// Spawns a server whose stdout announces its port; returns the child, the stdout lines up to
/// the announcement, and the port.
fn spawn_announcing(mut cmd: Command, marker: &str, log: &Path) -> (Child, Vec<String>, u16) {
    let log_file = File::create(log).expect("server log");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel::<String>();
    thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            let _ = tx.send(line.trim_end().to_owned());
            line.clear();
        }
    });
    let deadline = Instant::now() + STARTUP;
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.split(marker).nth(1) {
                    let port = rest
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or_else(|| panic!("no port in {line:?}"));
                    lines.push(line);
                    return (child, lines, port);
                }
                lines.push(line);
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server {cmd:?} did not announce its port; stdout {lines:?}; log:\n{}",
                    fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
    }
}

fn ferryd_path() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = Path::new(FERRY).parent().expect("target dir").to_owned();
            let path = dir.join(format!("ferryd{}", std::env::consts::EXE_SUFFIX));
            // Build (a no-op when fresh) so the server matches its sources; a binary of
            // another package has no CARGO_BIN_EXE_ here.
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let out = run(
                Command::new(cargo)
                    .args(["build", "-p", "ferry-server", "--bin", "ferryd"])
                    .current_dir(env!("CARGO_MANIFEST_DIR")),
                Duration::from_secs(900),
            );
            assert!(
                path.exists(),
                "ferryd not found at {} and building it failed:\n{out}",
                path.display()
            );
            path
        })
        .clone()
}

pub struct Ferryd {
    pub port: u16,
    pub data: PathBuf,
    /// SHA-256 fingerprint ferryd printed for its TLS certificate, if it has one.
    pub fingerprint: Option<String>,
    child: Child,
    _tmp: TempDir,
}

impl Ferryd {
    pub fn start() -> Ferryd {
        let tmp = tempfile::Builder::new()
            .prefix("ferry-client-ferryd-")
            .tempdir()
            .expect("tempdir");
        let data = tmp.path().join("data");
        fs::create_dir_all(&data).expect("data dir");
        let bin = ferryd_path();
        let mut add = Command::new(&bin);
        add.arg("--data-dir")
            .arg(&data)
            .args(["user", "add", "alice", "--password-stdin"])
            .current_dir(tmp.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = add.spawn().expect("ferryd user add");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = writeln!(stdin, "{ALICE_PW}");
        }
        let deadline = Instant::now() + STARTUP;
        loop {
            match child.try_wait() {
                Ok(Some(s)) => {
                    assert!(s.success(), "ferryd user add failed: {s}");
                    break;
                }
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    panic!("ferryd user add hung");
                }
                _ => thread::sleep(Duration::from_millis(20)),
            }
        }
        fs::write(tmp.path().join("ferry.toml"), "").expect("empty config");
        let mut cmd = Command::new(&bin);
        cmd.arg("--data-dir")
            .arg(&data)
            .arg("--config")
            .arg(tmp.path().join("ferry.toml"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .current_dir(tmp.path());
        let (child, lines, port) =
            spawn_announcing(cmd, "ferryd listening on ", &tmp.path().join("ferryd.log"));
        let fingerprint = lines
            .iter()
            .find_map(|l| l.split("sha256=").nth(1))
            .map(|s| s.split_whitespace().next().unwrap_or("").to_owned());
        Ferryd {
            port,
            data,
            fingerprint,
            child,
            _tmp: tmp,
        }
    }

    pub fn home(&self) -> PathBuf {
        self.data.join("homes").join("alice")
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "ftp://alice:{ALICE_PW}@127.0.0.1:{}/{}",
            self.port,
            pct_encode(path)
        )
    }
}

impl Drop for Ferryd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const PY_PW: &str = "alice-pw";

pub struct PyFtpd {
    pub port: u16,
    pub root: PathBuf,
    child: Child,
    _tmp: TempDir,
}

impl PyFtpd {
    /// pyftpdlib with `extra` launcher options (see tests/pyftpd.py).
    pub fn start(extra: &[&str]) -> PyFtpd {
        let tmp = tempfile::Builder::new()
            .prefix("ferry-client-py-")
            .tempdir()
            .expect("tempdir");
        let root = tmp.path().join("root");
        fs::create_dir_all(&root).expect("root");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pyftpd.py");
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .arg("--root")
            .arg(&root)
            .args(["--password", PY_PW])
            .args(extra)
            .current_dir(tmp.path());
        let (child, _, port) = spawn_announcing(cmd, "PORT ", &tmp.path().join("py.log"));
        PyFtpd {
            port,
            root,
            child,
            _tmp: tmp,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "ftp://alice:{PY_PW}@127.0.0.1:{}/{}",
            self.port,
            pct_encode(path)
        )
    }
}

impl Drop for PyFtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for 127.0.0.1/localhost: (cert PEM path, key PEM path, SHA-256).
pub fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("generate certificate");
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    fs::write(&cert, ck.cert.pem()).expect("write cert");
    fs::write(&key, ck.key_pair.serialize_pem()).expect("write key");
    let fp = ferry_client::tls::Fingerprint::of(ck.cert.der()).to_string();
    (cert, key, fp)
}

// ---------------------------------------------------------------------------------------------
// A proxy that cuts data connections
// ---------------------------------------------------------------------------------------------

/// Sits between ferry and a server: control lines pass unchanged except 229/227 replies,
/// which are rewritten to point at a data proxy. The first `cuts` data connections that carry
/// more than `cut_after` bytes are closed abruptly at that point (both directions), as a
/// network failure would.
pub struct CutProxy {
    pub port: u16,
    pub cuts_done: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl CutProxy {
    pub fn start(upstream: u16, cut_after: u64, cuts: usize) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let left = Arc::new(AtomicUsize::new(cuts));
        let cuts_done = Arc::new(AtomicUsize::new(0));
        let (s, l, d) = (stop.clone(), left.clone(), cuts_done.clone());
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (s, l, d) = (s.clone(), l.clone(), d.clone());
                        thread::spawn(move || control(client, upstream, cut_after, l, d, s));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        CutProxy {
            port,
            cuts_done,
            stop,
        }
    }

    pub fn url(&self, user: &str, pw: &str, path: &str) -> String {
        format!(
            "ftp://{user}:{pw}@127.0.0.1:{}/{}",
            self.port,
            pct_encode(path)
        )
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn control(
    client: TcpStream,
    upstream: u16,
    cut_after: u64,
    left: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let _ = client.set_nonblocking(false);
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    for s in [&client, &server] {
        let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    }
    let (Ok(mut c2s_from), Ok(mut c2s_to)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    thread::spawn(move || {
        let _ = std::io::copy(&mut c2s_from, &mut c2s_to);
        let _ = c2s_to.shutdown(Shutdown::Write);
    });
    let mut reader = BufReader::new(server);
    let mut to_client = client;
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let rewritten = if line.starts_with("229 ") {
            let port: Option<u16> = line
                .split("|||")
                .nth(1)
                .and_then(|r| r.split('|').next())
                .and_then(|p| p.parse().ok());
            port.map(|p| {
                let q = data_proxy(p, cut_after, left.clone(), done.clone(), stop.clone());
                format!("229 Entering Extended Passive Mode (|||{q}|)\r\n")
            })
        } else if line.starts_with("227 ") {
            let nums: Vec<u16> = line
                .split(['(', ')'])
                .nth(1)
                .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
                .unwrap_or_default();
            (nums.len() == 6).then(|| {
                let p = nums[4] * 256 + nums[5];
                let q = data_proxy(p, cut_after, left.clone(), done.clone(), stop.clone());
                format!(
                    "227 Entering Passive Mode (127,0,0,1,{},{})\r\n",
                    q / 256,
                    q % 256
                )
            })
        } else {
            None
        };
        let out = rewritten.unwrap_or_else(|| line.clone());
        if to_client.write_all(out.as_bytes()).is_err() {
            break;
        }
    }
    let _ = to_client.shutdown(Shutdown::Both);
}

/// Listens once; pumps to the server's data port, cutting after `cut_after` bytes if a cut is
/// still due.
fn data_proxy(
    upstream: u16,
    cut_after: u64,
    left: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("data proxy bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        let _ = listener.set_nonblocking(true);
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                return;
            }
            match listener.accept() {
                Ok((c, _)) => break c,
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        };
        let _ = client.set_nonblocking(false);
        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
            return;
        };
        for s in [&client, &server] {
            let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
        }
        let moved = Arc::new(AtomicU64::new(0));
        let cut = Arc::new(AtomicBool::new(false));
        let pump = |mut from: TcpStream,
                    mut to: TcpStream,
                    moved: Arc<AtomicU64>,
                    cut: Arc<AtomicBool>| {
            let left = left.clone();
            let done = done.clone();
            let others = (from.try_clone(), to.try_clone());
            thread::spawn(move || {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match from.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let before = moved.fetch_add(n as u64, Ordering::SeqCst);
                    if before + n as u64 > cut_after && !cut.load(Ordering::SeqCst) {
                        let claim = left
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                            .is_ok();
                        if claim {
                            cut.store(true, Ordering::SeqCst);
                            let keep = cut_after.saturating_sub(before) as usize;
                            let _ = to.write_all(&buf[..keep.min(n)]);
                            done.fetch_add(1, Ordering::SeqCst);
                            if let (Ok(a), Ok(b)) = &others {
                                let _ = a.shutdown(Shutdown::Both);
                                let _ = b.shutdown(Shutdown::Both);
                            }
                            break;
                        }
                    }
                    if cut.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to.shutdown(Shutdown::Write);
            });
        };
        if let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) {
            pump(client, server, moved.clone(), cut.clone());
            pump(s2, c2, moved, cut);
        }
    });
    port
}

// ---------------------------------------------------------------------------------------------
// Files and trees (random data, byte comparisons, URL encoding: ferry_testkit, shared with the server)
// ---------------------------------------------------------------------------------------------

pub use ferry_testkit::{assert_bytes_eq, pct_encode, random_bytes, read};

/// The nested non-ASCII tree used by the mirror tests.
pub fn make_tree(root: &Path) {
    let files: [(&str, Vec<u8>); 5] = [
        ("données/résumé.txt", b"r\xc3\xa9sum\xc3\xa9\n".to_vec()),
        ("数据/文件.bin", random_bytes(200_000)),
        ("emoji 🚀/x.txt", b"rocket\n".to_vec()),
        ("données/sous dossier/ñandú.dat", random_bytes(3_000)),
        ("top.txt", b"top\n".to_vec()),
    ];
    for (p, bytes) in files {
        let path = root.join(p);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, bytes).expect("write");
    }
    fs::create_dir_all(root.join("vide ∅")).expect("empty dir");
}

pub type Tree = BTreeMap<PathBuf, Option<Vec<u8>>>;

pub fn snapshot(root: &Path) -> Tree {
    fn walk(root: &Path, dir: &Path, t: &mut Tree) {
        for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("list {}: {e}", dir.display())) {
            let p = e.expect("entry").path();
            let rel = p.strip_prefix(root).expect("under root").to_owned();
            if p.is_dir() {
                t.insert(rel, None);
                walk(root, &p, t);
            } else {
                t.insert(rel, Some(read(&p)));
            }
        }
    }
    let mut t = Tree::new();
    walk(root, root, &mut t);
    t
}

#[track_caller]
pub fn assert_trees_eq(what: &str, got: &Tree, want: &Tree) {
    let names = |t: &Tree| {
        t.keys()
            .map(|k| k.display().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(got), names(want), "{what}: different entries");
    for (k, v) in want {
        assert!(got.get(k) == Some(v), "{what}: {} differs", k.display());
    }
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
