//! The per-user jail, probed with a raw control connection.

use std::fs;
use std::io::Read;
use std::os::unix::fs::symlink;

use crate::harness::{FtpControl, TestServer, ALICE_PW};

/// Sends a transfer command after opening a passive data connection and returns the first
/// reply. A refused transfer must be refused up front (no 150 and no bytes).
fn transfer_reply(c: &mut FtpControl, command: &str) -> (u16, String, Vec<u8>) {
    let mut data = c.epsv_data();
    let r = c.cmd(command);
    let mut bytes = Vec::new();
    if r.code == 150 || r.code == 125 {
        let _ = data.read_to_end(&mut bytes);
        let fin = c.read_reply().expect("final transfer reply");
        return (fin.code, format!("{r}\n{fin}"), bytes);
    }
    (r.code, r.text(), bytes)
}

#[test]
fn symlink_and_dotdot_cannot_escape_home() {
    let server = TestServer::start();
    let home = server.home("alice");
    fs::write(home.join("hello.txt"), b"hello").expect("plant file");
    symlink("/etc", home.join("escape")).expect("plant symlink");
    assert!(
        fs::metadata("/etc/passwd").is_ok(),
        "test assumes /etc/passwd exists"
    );

    let mut c = FtpControl::login(server.port, "alice", ALICE_PW);
    // Binary mode first: some servers refuse SIZE in ASCII mode, which is not what we test.
    c.expect("TYPE I", 200);
    // Positive control: the jail does serve real files.
    let r = c.expect("SIZE hello.txt", 213);
    assert_eq!(r.text(), "213 5");

    c.expect("CWD /escape", 550);
    c.expect("PWD", 257);
    c.expect("SIZE escape/passwd", 550);
    c.expect("SIZE /escape/passwd", 550);

    let (code, text, bytes) = transfer_reply(&mut c, "RETR escape/passwd");
    assert_eq!(code, 550, "RETR through symlink: {text}");
    assert!(
        bytes.is_empty(),
        "RETR through symlink leaked {} bytes",
        bytes.len()
    );

    let (code, text, bytes) = transfer_reply(&mut c, "RETR ../../../../etc/passwd");
    assert_eq!(code, 550, "RETR with ..: {text}");
    assert!(
        bytes.is_empty(),
        "RETR with .. leaked {} bytes",
        bytes.len()
    );

    let (code, text, bytes) = transfer_reply(&mut c, "LIST escape");
    assert!(
        code >= 400 && !String::from_utf8_lossy(&bytes).contains("passwd"),
        "LIST through symlink must not show /etc: code {code}: {text}"
    );

    // `..` at the root stays at the root.
    c.expect("CWD ..", 250);
    let pwd = c.expect("PWD", 257);
    assert!(
        pwd.text().starts_with("257 \"/\""),
        "PWD after CWD .. at root: {pwd}"
    );
    c.expect("CWD ../../..", 250);
    let pwd = c.expect("PWD", 257);
    assert!(pwd.text().starts_with("257 \"/\""), "PWD: {pwd}");

    // Writes through the symlink are refused too, and nothing lands in /etc.
    c.expect("MKD escape/ferry-jail-test", 550);
    assert!(!std::path::Path::new("/etc/ferry-jail-test").exists());
    c.expect("QUIT", 221);
}

#[test]
fn commands_before_login_are_rejected() {
    let server = TestServer::start();
    let mut c = FtpControl::connect(server.port);
    c.expect("PWD", 530);
    c.expect("CWD /", 530);
    c.expect("LIST", 530);
    c.expect("NOOP", 200);
    c.expect("USER alice", 331);
    c.expect("PASS wrong", 530);
    c.expect("PWD", 530);
    c.expect("USER alice", 331);
    c.expect(&format!("PASS {ALICE_PW}"), 230);
    c.expect("PWD", 257);
    c.expect("XYZZY", 502);
    c.expect("QUIT", 221);
}
