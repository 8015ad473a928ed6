//! Against a third-party server: pyftpdlib.

use std::fs;

use crate::common::{self, Srv};
use crate::harness::*;

fn srv(p: &PyFtpd) -> Srv {
    Srv {
        port: p.port,
        root: p.root.clone(),
        user: "alice",
        pw: PY_PW,
        flags: vec![],
    }
}

#[test]
fn get_put_byte_exact() {
    let p = PyFtpd::start(&[]);
    common::get_put_byte_exact(&srv(&p));
}

#[test]
fn get_put_byte_exact_with_hash() {
    let p = PyFtpd::start(&["--hash", "hash"]);
    common::get_put_byte_exact(&srv(&p));
}

#[test]
fn mirror_both_ways_non_ascii() {
    let p = PyFtpd::start(&["--hash", "hash"]);
    common::mirror_both_ways(&srv(&p));
}

#[test]
fn resume_get_after_cut_data_connection() {
    let p = PyFtpd::start(&["--hash", "hash"]);
    common::resume_get_after_cut(&srv(&p));
}

#[test]
fn resume_put_after_cut_data_connection() {
    let p = PyFtpd::start(&[]);
    common::resume_put_after_cut(&srv(&p));
}

#[test]
fn continue_partial_files() {
    let p = PyFtpd::start(&["--hash", "hash"]);
    common::continue_partial_download(&srv(&p));
}

#[test]
fn exit_codes() {
    let p = PyFtpd::start(&[]);
    common::exit_codes(&srv(&p));
    let ctx = Ctx::new();
    // Neither SITE QUOTA nor any digest command: "unsupported", with the server's reply.
    let out = ctx.ferry(&["quota", &p.url("")]);
    out.code_is(10);
    assert!(
        out.stderr.contains("SITE QUOTA") && out.stderr.contains("500"),
        "{out}"
    );
    fs::write(p.root.join("f"), b"x").expect("write");
    ctx.ferry(&["hash", &p.url("f")]).code_is(10);
    // TLS required but not offered.
    ctx.ferry(&["--tls", "require", "ls", &p.url("")])
        .code_is(5);
    ctx.ferry(&["ls", &format!("ftps://alice:{PY_PW}@127.0.0.1:{}/", p.port)])
        .code_is(5);
}

/// A corrupt partial file must not be continued: HASH + RANG shows the prefix differs.
#[test]
fn continue_checks_the_existing_part_with_hash_rang() {
    let p = PyFtpd::start(&["--hash", "hash"]);
    let ctx = Ctx::new();
    let data = random_bytes(800_000);
    fs::write(p.root.join("f.bin"), &data).expect("write");
    let mut bad = data[..300_000].to_vec();
    bad[1234] ^= 0x55;
    fs::write(ctx.work().join("f.bin"), &bad).expect("write");
    let out = ctx.ferry(&["--json", "get", "-c", &p.url("f.bin")]);
    out.ok();
    assert_bytes_eq("restarted", &read(&ctx.work().join("f.bin")), &data);
    assert_eq!(out.json()[0]["resumed_from"], 0, "{out}");
    assert_eq!(out.json()[0]["verified_by"], "SHA-256 (HASH)", "{out}");
}

/// The server changes the file right after sending it (same size, first byte flipped): the
/// digest check after the transfer must catch it and fail with exit code 9.
#[test]
fn verification_catches_a_file_changed_on_the_server_hash() {
    let p = PyFtpd::start(&["--hash", "hash", "--mutate-after-send", "flip"]);
    let ctx = Ctx::new();
    fs::write(p.root.join("v.bin"), random_bytes(300_000)).expect("write");
    let out = ctx.ferry(&["--json", "get", &p.url("v.bin")]);
    out.code_is(9);
    assert!(out.stderr.contains("SHA-256 (HASH) differs"), "{out}");
    assert_eq!(out.json()[0]["result"], "error", "{out}");
    // Without verification the same download "succeeds": the check is what failed it.
    ctx.ferry(&["--no-verify", "get", &p.url("v.bin"), "v2.bin"])
        .ok();
}

/// Same with only the legacy XSHA256 command.
#[test]
fn verification_catches_a_file_changed_on_the_server_xsha256() {
    let p = PyFtpd::start(&["--hash", "xsha", "--mutate-after-send", "flip"]);
    let ctx = Ctx::new();
    fs::write(p.root.join("v.bin"), random_bytes(100_000)).expect("write");
    let out = ctx.ferry(&["get", &p.url("v.bin")]);
    out.code_is(9);
    assert!(out.stderr.contains("SHA-256 (XSHA256) differs"), "{out}");
}

/// A server with no digest command: SIZE is the check, and it catches a changed length.
#[test]
fn verification_falls_back_to_size() {
    let p = PyFtpd::start(&["--mutate-after-send", "append"]);
    let ctx = Ctx::new();
    fs::write(p.root.join("v.bin"), random_bytes(100_000)).expect("write");
    let out = ctx.ferry(&["get", &p.url("v.bin")]);
    out.code_is(9);
    assert!(out.stderr.contains("SIZE differs"), "{out}");
    // Unchanged file: verified by SIZE, and the summary says so.
    let p = PyFtpd::start(&[]);
    fs::write(p.root.join("ok.bin"), random_bytes(1000)).expect("write");
    let out = ctx.ferry(&["get", &p.url("ok.bin")]);
    out.ok();
    assert!(out.stdout.contains("verified by SIZE"), "{out}");
}

/// TLS against pyftpdlib: unknown self-signed certificate refused without a terminal, pinned
/// with --pin, transfers over PROT P, and a changed certificate refused loudly.
#[test]
fn tls_pinning() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key, fp) = self_signed(certs.path(), "a");
    let p = PyFtpd::start(&[
        "--tls",
        cert.to_str().expect("utf8"),
        key.to_str().expect("utf8"),
        "--hash",
        "hash",
    ]);
    let ctx = Ctx::new();
    let url = p.url("");

    let out = ctx.ferry(&["ls", &url]);
    out.code_is(6);
    assert!(out.stderr.contains(&fp), "fingerprint shown:\n{out}");
    assert!(
        !ctx.known_hosts().exists(),
        "nothing pinned without consent"
    );

    let wrong = "00".repeat(32);
    ctx.ferry(&["--pin", &wrong, "ls", &url]).code_is(5);

    ctx.ferry(&["--pin", &fp, "ls", &url]).ok();
    let kh = fs::read_to_string(ctx.known_hosts()).expect("known_hosts written");
    assert!(kh.contains(&format!("127.0.0.1:{} {fp}", p.port)), "{kh}");

    // Pinned now: transfers with protected data connections, byte-exact, verified.
    let data = random_bytes(1_500_000);
    fs::write(ctx.work().join("s.bin"), &data).expect("write");
    let out = ctx.ferry(&["--tls", "require", "--json", "put", "s.bin", &url]);
    out.ok();
    assert_bytes_eq("put over TLS", &read(&p.root.join("s.bin")), &data);
    let out = ctx.ferry(&[
        "--tls",
        "require",
        "--json",
        "get",
        &p.url("s.bin"),
        "back.bin",
    ]);
    out.ok();
    assert_bytes_eq("get over TLS", &read(&ctx.work().join("back.bin")), &data);
    assert_eq!(out.json()[0]["verified_by"], "SHA-256 (HASH)", "{out}");

    // Another server with another certificate at an address pinned to the first one: the
    // pinned certificate "changed".
    let (cert2, key2, fp2) = self_signed(certs.path(), "b");
    let p2 = PyFtpd::start(&[
        "--tls",
        cert2.to_str().expect("utf8"),
        key2.to_str().expect("utf8"),
    ]);
    fs::write(
        ctx.known_hosts(),
        format!("{kh}127.0.0.1:{} {fp}\n", p2.port),
    )
    .expect("pin");
    let out = ctx.ferry(&["ls", &p2.url("")]);
    out.code_is(6);
    assert!(out.stderr.contains("HAS CHANGED"), "{out}");
    assert!(out.stderr.contains(&fp2), "{out}");
    // --tls off is the only way around it, and it is explicit.
    ctx.ferry(&["--tls", "off", "ls", &p2.url("")]).ok();
}
