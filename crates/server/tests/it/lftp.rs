//! lftp mirror of a nested tree with awkward names, up and back down.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::harness::{
    assert_trees_eq, password, random_bytes, require_tool, run, snapshot, Output, TestServer,
    TOOL_TIMEOUT,
};

/// Runs `lftp -c` with bounded retries/timeouts, no TLS, UTF-8 on both sides, logged in as
/// `user`, then `commands`. `home` is used as $HOME so no user rc / history interferes.
fn lftp(server: &TestServer, user: &str, commands: &str, home: &Path) -> Output {
    require_tool("lftp");
    let script = format!(
        "set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 10; \
         set net:reconnect-interval-base 1; set ftp:ssl-allow no; \
         set ftp:charset utf-8; set file:charset utf-8; \
         open -u {user},{pw} ftp://127.0.0.1:{port}; {commands}",
        pw = password(user),
        port = server.port,
    );
    let mut cmd = Command::new("lftp");
    cmd.arg("-c")
        .arg(script)
        .env("HOME", home)
        .env("LC_ALL", "C.UTF-8")
        .env_remove("ftp_proxy")
        .env_remove("FTP_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY");
    run(&mut cmd, None, TOOL_TIMEOUT)
}

fn build_tree(root: &Path) {
    let files: [(&str, usize); 10] = [
        ("top.txt", 13),
        ("empty.bin", 0),
        ("big one.bin", 1024 * 1024),
        ("with space.txt", 321),
        ("données/résumé.txt", 2000),
        ("données/niveau 2/tiefe ä.bin", 65_537),
        ("données/niveau 2/fin/deep.txt", 1),
        ("数据/文件.bin", 70_000),
        ("emoji 🚀/x.txt", 42),
        ("emoji 🚀/zero", 0),
    ];
    for (rel, size) in files {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir -p");
        fs::write(&p, random_bytes(size)).expect("write tree file");
    }
    fs::create_dir_all(root.join("empty dir")).expect("mkdir empty dir");
}

#[test]
fn mirror_nested_tree_up_and_down() {
    let server = TestServer::start();
    let tmp = tempfile::Builder::new()
        .prefix("ferry-lftp-")
        .tempdir()
        .expect("temp dir");
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    let lftp_home = tmp.path().join("lftp-home");
    fs::create_dir_all(&lftp_home).expect("mkdir lftp home");
    build_tree(&src);
    let expected = snapshot(&src);

    let up = lftp(
        &server,
        "alice",
        &format!("mirror -R \"{}\" remote", src.display()),
        &lftp_home,
    );
    up.assert_ok();
    let on_disk = server.home("alice").join("remote");
    assert_trees_eq(
        "server home after mirror -R",
        &snapshot(&on_disk),
        &expected,
    );

    let down = lftp(
        &server,
        "alice",
        &format!("mirror remote \"{}\"", dst.display()),
        &lftp_home,
    );
    down.assert_ok();
    assert_trees_eq("local copy after mirror", &snapshot(&dst), &expected);

    // Listings show the non-ASCII names: `cls` (lftp's parsed listing) and `ls` (raw LIST).
    let out = lftp(
        &server,
        "alice",
        "cls -1 remote/; ls remote/données",
        &lftp_home,
    );
    out.assert_ok();
    let text = out.stdout_str();
    for name in [
        "données/",
        "数据/",
        "emoji 🚀/",
        "with space.txt",
        "big one.bin",
        "empty dir/",
        "résumé.txt",
        "niveau 2",
    ] {
        assert!(text.contains(name), "listing lacks {name:?}:\n{out}");
    }
    let resume_line = text
        .lines()
        .find(|l| l.ends_with(" résumé.txt"))
        .unwrap_or_else(|| panic!("`ls remote/données` lacks résumé.txt line:\n{out}"));
    assert!(
        resume_line.split_whitespace().any(|w| w == "2000"),
        "ls line should show size 2000: {resume_line:?}"
    );
}

#[test]
fn lftp_wrong_password_fails() {
    let server = TestServer::start();
    let tmp = tempfile::Builder::new()
        .prefix("ferry-lftp-")
        .tempdir()
        .expect("temp dir");
    require_tool("lftp");
    let script = format!(
        "set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 5; \
         set ftp:ssl-allow no; open -u alice,wrong ftp://127.0.0.1:{}; ls",
        server.port
    );
    let mut cmd = Command::new("lftp");
    cmd.arg("-c").arg(script).env("HOME", tmp.path());
    let out = run(&mut cmd, None, TOOL_TIMEOUT);
    out.assert_failed();
    assert!(
        out.stderr_str().contains("530") || out.stderr_str().contains("Login failed"),
        "lftp should report the failed login:\n{out}"
    );
}
