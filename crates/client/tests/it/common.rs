//! Test bodies run against both servers.

use std::fs;
use std::path::PathBuf;

use crate::harness::*;

/// What a test needs to know about a running server.
pub struct Srv {
    pub port: u16,
    pub root: PathBuf,
    pub user: &'static str,
    pub pw: &'static str,
    /// Flags every ferry invocation gets for this server.
    pub flags: Vec<&'static str>,
}

impl Srv {
    pub fn url(&self, path: &str) -> String {
        format!(
            "ftp://{}:{}@127.0.0.1:{}/{}",
            self.user,
            self.pw,
            self.port,
            pct_encode(path)
        )
    }

    pub fn args<'a>(&'a self, rest: &[&'a str]) -> Vec<&'a str> {
        let mut v = self.flags.clone();
        v.extend_from_slice(rest);
        v
    }
}

pub fn get_put_byte_exact(s: &Srv) {
    let ctx = Ctx::new();
    let data = random_bytes(2_500_000);
    fs::write(ctx.work().join("up load.bin"), &data).expect("write");
    let url = s.url("");
    let out = ctx.ferry(&s.args(&["--json", "put", "up load.bin", &url]));
    out.ok();
    assert_bytes_eq("uploaded", &read(&s.root.join("up load.bin")), &data);
    let j = out.json();
    assert_eq!(j.len(), 1, "{out}");
    assert_eq!(j[0]["result"], "ok");
    assert_eq!(j[0]["bytes"], 2_500_000);
    assert!(j[0]["verified_by"].is_string(), "{out}");

    let url = s.url("up load.bin");
    let out = ctx.ferry(&s.args(&["--json", "get", &url, "down.bin"]));
    out.ok();
    assert_bytes_eq("downloaded", &read(&ctx.work().join("down.bin")), &data);
    assert_eq!(
        out.json()[0]["verified_by"].as_str().map(|v| v != "none"),
        Some(true),
        "{out}"
    );

    // Active mode, both ways.
    let out = ctx.ferry(&s.args(&["--active", "get", &url, "active.bin"]));
    out.ok();
    assert_bytes_eq("active get", &read(&ctx.work().join("active.bin")), &data);
    let url = s.url("active-up.bin");
    ctx.ferry(&s.args(&["--active", "put", "active.bin", &url]))
        .ok();
    assert_bytes_eq("active put", &read(&s.root.join("active-up.bin")), &data);

    // Several files into a directory that mkdir -p creates; an empty file too.
    fs::write(ctx.work().join("a.txt"), b"aaa").expect("write");
    fs::write(ctx.work().join("empty"), b"").expect("write");
    let dir = s.url("x/y/");
    ctx.ferry(&s.args(&["mkdir", "-p", &dir])).ok();
    ctx.ferry(&s.args(&["put", "a.txt", "empty", &dir])).ok();
    assert_eq!(read(&s.root.join("x/y/a.txt")), b"aaa");
    assert_eq!(read(&s.root.join("x/y/empty")), b"");

    // ls shows them; mv and rm change the server.
    let out = ctx.ferry(&s.args(&["ls", &dir]));
    out.ok();
    assert!(
        out.stdout.contains("a.txt") && out.stdout.contains("empty"),
        "{out}"
    );
    ctx.ferry(&s.args(&["mv", &s.url("x/y/a.txt"), "x/b.txt"]))
        .ok();
    assert_eq!(read(&s.root.join("x/b.txt")), b"aaa");
    ctx.ferry(&s.args(&["rm", &s.url("x/b.txt")])).ok();
    assert!(!s.root.join("x/b.txt").exists());
}

pub fn mirror_both_ways(s: &Srv) {
    let ctx = Ctx::new();
    let src = ctx.work().join("src");
    make_tree(&src);
    let want = snapshot(&src);
    let url = s.url("mirrored/");
    let out = ctx.ferry(&s.args(&["--json", "mirror", "--reverse", "src", &url]));
    out.ok();
    assert_trees_eq(
        "server after mirror --reverse",
        &snapshot(&s.root.join("mirrored")),
        &want,
    );
    assert_eq!(out.json().len(), 5, "one line per file:\n{out}");

    let out = ctx.ferry(&s.args(&["--json", "mirror", &url, "dst"]));
    out.ok();
    assert_trees_eq(
        "local after mirror",
        &snapshot(&ctx.work().join("dst")),
        &want,
    );
    assert_eq!(out.json().len(), 5, "{out}");

    // Second runs find everything up to date.
    let out = ctx.ferry(&s.args(&["--json", "mirror", &url, "dst"]));
    out.ok();
    assert!(out.json().is_empty(), "nothing to transfer:\n{out}");
    let out = ctx.ferry(&s.args(&["--json", "mirror", "--reverse", "src", &url]));
    out.ok();
    assert!(out.json().is_empty(), "nothing to transfer:\n{out}");

    // A changed file (other size) is sent again.
    fs::write(src.join("données/résumé.txt"), b"changed, longer\n").expect("write");
    let out = ctx.ferry(&s.args(&["--json", "mirror", "--reverse", "src", &url]));
    out.ok();
    let j = out.json();
    assert_eq!(j.len(), 1, "{out}");
    assert_eq!(
        read(&s.root.join("mirrored/données/résumé.txt")),
        b"changed, longer\n"
    );
}

pub fn resume_get_after_cut(s: &Srv) {
    let ctx = Ctx::new();
    let data = random_bytes(12_000_000);
    fs::write(s.root.join("big.bin"), &data).expect("write");
    let proxy = CutProxy::start(s.port, 3_000_000, 1);
    let url = proxy.url(s.user, s.pw, "big.bin");
    let out = ctx.ferry(&s.args(&["--json", "get", &url, "big.bin"]));
    out.ok();
    assert_eq!(
        proxy.cuts_done.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the proxy should have cut one data connection:\n{out}"
    );
    assert_bytes_eq(
        "resumed download",
        &read(&ctx.work().join("big.bin")),
        &data,
    );
    let j = &out.json()[0];
    let from = j["resumed_from"].as_u64().unwrap_or(0);
    assert!(from > 0, "the retry should continue, not restart:\n{out}");
    assert!(
        j["bytes"].as_u64().unwrap_or(u64::MAX) < 12_000_000 + 3_000_000,
        "{out}"
    );
    assert!(out.stderr.contains("retrying"), "{out}");
}

pub fn resume_put_after_cut(s: &Srv) {
    let ctx = Ctx::new();
    let data = random_bytes(16_000_000);
    fs::write(ctx.work().join("big.bin"), &data).expect("write");
    let proxy = CutProxy::start(s.port, 3_000_000, 1);
    let url = proxy.url(s.user, s.pw, "big-up.bin");
    let out = ctx.ferry(&s.args(&["--json", "put", "big.bin", &url]));
    out.ok();
    assert_eq!(
        proxy.cuts_done.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "{out}"
    );
    assert_bytes_eq("resumed upload", &read(&s.root.join("big-up.bin")), &data);
    let j = &out.json()[0];
    assert!(
        j["resumed_from"].as_u64().unwrap_or(0) > 0,
        "the retry should append, not restart:\n{out}"
    );
}

pub fn continue_partial_download(s: &Srv) {
    let ctx = Ctx::new();
    let data = random_bytes(1_000_000);
    fs::write(s.root.join("part.bin"), &data).expect("write");
    fs::write(ctx.work().join("part.bin"), &data[..400_000]).expect("write");
    let url = s.url("part.bin");
    let out = ctx.ferry(&s.args(&["--json", "get", "-c", &url]));
    out.ok();
    assert_bytes_eq("continued", &read(&ctx.work().join("part.bin")), &data);
    assert_eq!(out.json()[0]["resumed_from"], 400_000, "{out}");
    assert_eq!(out.json()[0]["bytes"], 600_000, "{out}");

    // put -c appends to a partial upload.
    fs::write(s.root.join("part-up.bin"), &data[..250_000]).expect("write");
    let url = s.url("part-up.bin");
    let out = ctx.ferry(&s.args(&["--json", "put", "-c", "part.bin", &url]));
    out.ok();
    assert_bytes_eq(
        "continued upload",
        &read(&s.root.join("part-up.bin")),
        &data,
    );
    assert_eq!(out.json()[0]["resumed_from"], 250_000, "{out}");
}

pub fn exit_codes(s: &Srv) {
    let ctx = Ctx::new();
    ctx.ferry(&s.args(&["get", &s.url("no such file")]))
        .code_is(7);
    let bad = format!("ftp://{}:wrong@127.0.0.1:{}/", s.user, s.port);
    let out = ctx.ferry(&s.args(&["ls", &bad]));
    out.code_is(4);
    assert!(
        out.stderr.contains("530"),
        "server's reply text shown:\n{out}"
    );
    assert!(
        !out.stderr.contains("wrong"),
        "password never printed:\n{out}"
    );
    let out = ctx.ferry(&s.args(&["put", "missing.bin", &s.url("")]));
    out.code_is(8);
    ctx.ferry(&s.args(&["ls", "http://127.0.0.1/"])).code_is(2);
    ctx.ferry(&s.args(&["--pin", "xyz", "ls", &s.url("")]))
        .code_is(2);
    // A port nobody listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    ctx.ferry(&s.args(&[
        "--retries",
        "0",
        "ls",
        &format!("ftp://u:p@127.0.0.1:{free}/"),
    ]))
    .code_is(3);
    // No password and no terminal: a clear login error, not a hang.
    let nopw = format!("ftp://{}@127.0.0.1:{}/", s.user, s.port);
    let out = ctx.ferry(&s.args(&["ls", &nopw]));
    out.code_is(4);
    assert!(out.stderr.contains("no password"), "{out}");
    // FERRY_PASSWORD fills it in.
    let mut cmd = ctx.ferry_cmd(&s.args(&["ls", &nopw]));
    cmd.env("FERRY_PASSWORD", s.pw);
    run(&mut cmd, RUN_TIMEOUT).ok();
    // So does ~/.netrc.
    fs::write(
        ctx.home().join(".netrc"),
        format!("machine 127.0.0.1 login {} password {}\n", s.user, s.pw),
    )
    .expect("netrc");
    ctx.ferry(&s.args(&["ls", &format!("ftp://127.0.0.1:{}/", s.port)]))
        .ok();
}
