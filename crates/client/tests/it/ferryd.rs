//! Against our own server, `ferryd`.

use crate::common::{self, Srv};
use crate::harness::*;
use std::time::Duration;

fn srv(d: &Ferryd) -> Srv {
    std::fs::create_dir_all(d.home()).expect("home");
    Srv {
        port: d.port,
        root: d.home(),
        user: "alice",
        pw: ALICE_PW,
        // The cut proxy reads the control connection, so these runs stay in clear; TLS
        // against ferryd has its own test below.
        flags: vec!["--tls", "off"],
    }
}

#[test]
fn get_put_byte_exact() {
    let d = Ferryd::start();
    common::get_put_byte_exact(&srv(&d));
}

#[test]
fn mirror_both_ways_non_ascii() {
    let d = Ferryd::start();
    common::mirror_both_ways(&srv(&d));
}

#[test]
fn resume_get_after_cut_data_connection() {
    let d = Ferryd::start();
    common::resume_get_after_cut(&srv(&d));
}

#[test]
fn resume_put_after_cut_data_connection() {
    let d = Ferryd::start();
    common::resume_put_after_cut(&srv(&d));
}

#[test]
fn continue_partial_files() {
    let d = Ferryd::start();
    common::continue_partial_download(&srv(&d));
}

#[test]
fn exit_codes() {
    let d = Ferryd::start();
    common::exit_codes(&srv(&d));
}

/// ferryd offers AUTH TLS with a self-signed certificate: refused until pinned, then used for
/// control and data (PROT P), and remembered.
#[test]
fn tls_pinning() {
    let d = Ferryd::start();
    let s = srv(&d);
    let ctx = Ctx::new();
    let url = d.url("");
    let first = ctx.ferry(&["ls", &url]);
    if first.code() == Some(0) {
        // This ferryd build has no TLS yet: auto mode must have fallen back to clear, and
        // require mode must refuse.
        ctx.ferry(&["--tls", "require", "ls", &url]).code_is(5);
        return;
    }
    first.code_is(6);
    let fp = first
        .stderr
        .split("--pin ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no fingerprint in:\n{first}"))
        .to_owned();
    if let Some(printed) = &d.fingerprint {
        assert_eq!(
            ferry_client::tls::Fingerprint::parse(printed).map(|f| f.to_string()),
            Some(fp.clone()),
            "the fingerprint ferry shows is the one ferryd printed"
        );
    }
    let data = random_bytes(700_000);
    std::fs::write(ctx.work().join("t.bin"), &data).expect("write");
    ctx.ferry(&["--pin", &fp, "--tls", "require", "put", "t.bin", &url])
        .ok();
    assert_bytes_eq("put over TLS", &read(&s.root.join("t.bin")), &data);
    // Remembered: no --pin needed any more.
    ctx.ferry(&["--tls", "require", "get", &d.url("t.bin"), "back.bin"])
        .ok();
    assert_bytes_eq("get over TLS", &read(&ctx.work().join("back.bin")), &data);
}

/// A download into a pipe (what `/dev/null` and a shell's `>(sha256sum)` are): the bytes
/// arrive once and in order, and verification counts them against SIZE instead of reading
/// the pipe back (which would hang) or measuring it (a pipe's length is 0).
#[test]
fn get_into_a_pipe() {
    let d = Ferryd::start();
    let s = srv(&d);
    let ctx = Ctx::new();
    let data = random_bytes(3_000_000);
    std::fs::write(s.root.join("p.bin"), &data).expect("write");
    let fifo = mkfifo(&ctx.work().join("fifo"));
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo))
    };
    let url = s.url("p.bin");
    let out = ctx.ferry(&s.args(&["--json", "get", &url, "fifo"]));
    // Had ferry never opened the pipe, the reader would wait for a writer forever.
    if !wait_for(Duration::from_secs(10), || reader.is_finished()) {
        drop(std::fs::OpenOptions::new().write(true).open(&fifo));
    }
    let got = reader.join().expect("reader").expect("read fifo");
    out.ok();
    assert_bytes_eq("read from the pipe", &got, &data);
    let j = out.json();
    assert_eq!(j[0]["bytes"], 3_000_000, "{out}");
    let by = j[0]["verified_by"].as_str().unwrap_or_default();
    assert!(by.starts_with("SIZE"), "{out}");
}

/// An upload from a pipe (`ferry put /dev/stdin URL`): all of it arrives, and the check is the
/// byte count against SIZE (a pipe cannot be read again for a digest).
#[test]
fn put_from_a_pipe() {
    let d = Ferryd::start();
    let s = srv(&d);
    let ctx = Ctx::new();
    let data = random_bytes(3_000_000);
    let fifo = mkfifo(&ctx.work().join("fifo"));
    let writer = {
        let (fifo, data) = (fifo.clone(), data.clone());
        std::thread::spawn(move || std::fs::write(fifo, data))
    };
    let url = s.url("from-pipe.bin");
    let out = ctx.ferry(&s.args(&["--json", "put", "fifo", &url]));
    // Had ferry never opened the pipe, the writer would wait for a reader forever.
    if !wait_for(Duration::from_secs(10), || writer.is_finished()) {
        drop(std::fs::File::open(&fifo));
    }
    let _ = writer.join();
    out.ok();
    assert_bytes_eq(
        "uploaded from the pipe",
        &read(&s.root.join("from-pipe.bin")),
        &data,
    );
    let j = out.json();
    assert_eq!(j[0]["bytes"], 3_000_000, "{out}");
    let by = j[0]["verified_by"].as_str().unwrap_or_default();
    assert!(by.starts_with("SIZE"), "{out}");
}

fn mkfifo(path: &std::path::Path) -> std::path::PathBuf {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(made.success(), "mkfifo failed");
    path.to_owned()
}

/// `-` is standard output for a get and standard input for a put, as with curl and tar:
/// the bytes go through whole, the summary line moves to stderr (stdout is the data), and the
/// cases that cannot work are refused with a usage error before anything is transferred.
#[test]
fn dash_is_standard_output_and_input() {
    let d = Ferryd::start();
    let s = srv(&d);
    let ctx = Ctx::new();
    let data = random_bytes(2_500_000);
    std::fs::write(s.root.join("out.bin"), &data).expect("write");
    let out = ctx.ferry(&s.args(&["get", &s.url("out.bin"), "-"]));
    out.ok();
    assert_bytes_eq("ferry get URL - on stdout", &out.stdout_bytes, &data);
    assert!(out.stderr.contains("verified by SIZE"), "{out}");
    assert!(!ctx.work().join("-").exists(), "a file named - was made");

    let up = random_bytes(1_700_000);
    let mut cmd = ctx.ferry_cmd(&s.args(&["put", "-", &s.url("in.bin")]));
    let out = run_with_input(&mut cmd, Some(up.clone()), RUN_TIMEOUT);
    out.ok();
    assert_bytes_eq(
        "ferry put - URL from stdin",
        &read(&s.root.join("in.bin")),
        &up,
    );

    for (args, says) in [
        (vec!["--json", "get", &s.url("out.bin"), "-"], "--json"),
        (vec!["get", &s.url("*.bin"), "-"], "takes one"),
        (vec!["put", "-", &s.url("")], "name the remote file"),
    ] {
        let out = ctx.ferry(&s.args(&args));
        out.code_is(2);
        assert!(out.stderr.contains(says), "{out}");
    }
}
