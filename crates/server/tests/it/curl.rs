//! Transfers and commands through curl, the way a user would script them.

use std::fs;
use std::path::Path;

use crate::harness::{
    assert_bytes_eq, assert_files_eq, curl, random_bytes, read, write_random_file, TestServer,
};

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ferry-curl-")
        .tempdir()
        .expect("temp dir")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

#[test]
fn list_shows_files_and_dirs() {
    let server = TestServer::start();
    let home = server.home("alice");
    fs::write(home.join("hello.txt"), b"hello").expect("plant file");
    fs::create_dir(home.join("sub")).expect("plant dir");

    let out = curl(&[&server.url("alice", "")]);
    out.assert_ok();
    let listing = out.stdout_str();
    let file_line = listing
        .lines()
        .find(|l| l.ends_with(" hello.txt"))
        .unwrap_or_else(|| panic!("LIST lacks hello.txt:\n{out}"));
    assert!(
        file_line.starts_with('-'),
        "file line should be ls -l style: {file_line:?}"
    );
    assert!(
        file_line.split_whitespace().any(|w| w == "5"),
        "file line should show size 5: {file_line:?}"
    );
    let dir_line = listing
        .lines()
        .find(|l| l.ends_with(" sub"))
        .unwrap_or_else(|| panic!("LIST lacks sub:\n{out}"));
    assert!(dir_line.starts_with('d'), "dir line: {dir_line:?}");

    // NLST via --list-only: bare names only.
    let out = curl(&["--list-only", &server.url("alice", "")]);
    out.assert_ok();
    let mut names: Vec<String> = out.stdout_str().lines().map(str::to_string).collect();
    names.sort();
    assert_eq!(names, ["hello.txt", "sub"], "NLST output:\n{out}");

    // Users are isolated: bob does not see alice's files.
    let out = curl(&["--list-only", &server.url("bob", "")]);
    out.assert_ok();
    assert!(
        out.stdout.is_empty(),
        "bob's fresh home should be empty:\n{out}"
    );
}

#[test]
fn upload_then_download_is_byte_exact() {
    let server = TestServer::start();
    let tmp = scratch();
    let data = random_bytes(100_000 + 17);
    let local = tmp.path().join("up.bin");
    fs::write(&local, &data).expect("write local");

    curl(&["-T", path_str(&local), &server.url("alice", "up.bin")]).assert_ok();
    assert_bytes_eq(
        "uploaded file on disk",
        &read(&server.home("alice").join("up.bin")),
        &data,
    );

    let dl = tmp.path().join("down.bin");
    curl(&["-o", path_str(&dl), &server.url("alice", "up.bin")]).assert_ok();
    assert_bytes_eq("downloaded file", &read(&dl), &data);

    // Upload into a subdirectory that curl has to create.
    curl(&[
        "--ftp-create-dirs",
        "-T",
        path_str(&local),
        &server.url("alice", "a/b/c.bin"),
    ])
    .assert_ok();
    assert_bytes_eq(
        "uploaded nested file",
        &read(&server.home("alice").join("a/b/c.bin")),
        &data,
    );
}

#[test]
fn quote_mkd_dele_rename() {
    let server = TestServer::start();
    let home = server.home("alice");
    let root = server.url("alice", "");

    // Without a '-' prefix curl sends the command before the transfer (here: the listing).
    curl(&["-Q", "MKD newdir", &root]).assert_ok();
    assert!(home.join("newdir").is_dir(), "MKD did not create newdir");

    fs::write(home.join("f.txt"), b"delete me").expect("plant f.txt");
    curl(&["-Q", "DELE f.txt", &root]).assert_ok();
    assert!(!home.join("f.txt").exists(), "DELE did not remove f.txt");

    // With '-' curl sends them after the transfer.
    fs::write(home.join("a.txt"), b"rename me").expect("plant a.txt");
    curl(&["-Q", "-RNFR a.txt", "-Q", "-RNTO b.txt", &root]).assert_ok();
    assert!(!home.join("a.txt").exists(), "RNFR/RNTO left a.txt");
    assert_bytes_eq("renamed file", &read(&home.join("b.txt")), b"rename me");

    // RMD of the directory made above.
    curl(&["-Q", "RMD newdir", &root]).assert_ok();
    assert!(!home.join("newdir").exists(), "RMD did not remove newdir");

    // A failing quote command is reported: 21 = CURLE_QUOTE_ERROR.
    curl(&["-Q", "DELE does-not-exist", &root]).assert_code(21);
    curl(&["-Q", "RNFR does-not-exist", "-Q", "RNTO x", &root]).assert_code(21);
}

#[test]
fn resume_download_with_continue_at() {
    let server = TestServer::start();
    let tmp = scratch();
    let data = random_bytes(300_000);
    fs::write(server.home("alice").join("big.bin"), &data).expect("plant big.bin");

    let local = tmp.path().join("big.bin");
    fs::write(&local, &data[..100_000]).expect("write partial");
    let out = curl(&[
        "-v",
        "-C",
        "-",
        "-o",
        path_str(&local),
        &server.url("alice", "big.bin"),
    ]);
    out.assert_ok();
    let log = out.stderr_str();
    assert!(
        log.contains("> REST 100000") && log.contains("< 350"),
        "curl should have resumed with REST 100000 / 350:\n{out}"
    );
    assert_bytes_eq("resumed download", &read(&local), &data);

    // Upload resume: the server has a prefix, curl -C - -T appends the rest (SIZE + APPE).
    let remote_part = server.home("alice").join("part.bin");
    fs::write(&remote_part, &data[..123_456]).expect("plant partial upload");
    curl(&[
        "-C",
        "-",
        "-T",
        path_str(&local),
        &server.url("alice", "part.bin"),
    ])
    .assert_ok();
    assert_bytes_eq("resumed upload", &read(&remote_part), &data);
}

#[test]
fn passive_and_active_modes() {
    let server = TestServer::start();
    let tmp = scratch();
    let data = random_bytes(200_000);
    fs::write(server.home("alice").join("m.bin"), &data).expect("plant m.bin");

    // (extra curl args, command that must have been used, command that must NOT appear,
    //  which would mean curl fell back because the server rejected the first choice)
    let modes: [(&[&str], &str, &str); 4] = [
        (&["--ftp-pasv"], "> EPSV", "> PASV"),
        (&["--ftp-pasv", "--disable-epsv"], "> PASV", "> EPSV"),
        (
            &["--ftp-port", "127.0.0.1"],
            "> EPRT |1|127.0.0.1|",
            "> PORT",
        ),
        (
            &["--ftp-port", "127.0.0.1", "--disable-eprt"],
            "> PORT 127,0,0,1,",
            "> EPRT",
        ),
    ];
    for (i, (extra, used, not_used)) in modes.iter().enumerate() {
        let dl = tmp.path().join(format!("dl{i}.bin"));
        let mut args: Vec<&str> = vec!["-v"];
        args.extend_from_slice(extra);
        let url = server.url("alice", "m.bin");
        args.extend(["-o", path_str(&dl), url.as_str()]);
        let out = curl(&args);
        out.assert_ok();
        let log = out.stderr_str();
        assert!(log.contains(used), "{extra:?}: expected `{used}`:\n{out}");
        assert!(
            !log.contains(not_used),
            "{extra:?}: curl fell back to `{not_used}`:\n{out}"
        );
        assert_bytes_eq(&format!("download with {extra:?}"), &read(&dl), &data);

        // Upload in the same mode.
        let name = format!("up{i}.bin");
        let mut args: Vec<&str> = extra.to_vec();
        let url = server.url("alice", &name);
        args.extend(["-T", path_str(&dl), url.as_str()]);
        curl(&args).assert_ok();
        assert_bytes_eq(
            &format!("upload with {extra:?}"),
            &read(&server.home("alice").join(&name)),
            &data,
        );
    }
}

#[test]
fn wrong_password_is_login_denied() {
    let server = TestServer::start();
    let url = format!("ftp://alice:wrong-password@127.0.0.1:{}/", server.port);
    // 67 = CURLE_LOGIN_DENIED
    curl(&[&url]).assert_code(67);
    let url = format!("ftp://nosuchuser:whatever@127.0.0.1:{}/", server.port);
    curl(&[&url]).assert_code(67);
}

#[test]
fn retr_missing_file_is_remote_file_not_found() {
    let server = TestServer::start();
    let tmp = scratch();
    let dl = tmp.path().join("nothing");
    // 78 = CURLE_REMOTE_FILE_NOT_FOUND
    curl(&["-o", path_str(&dl), &server.url("alice", "missing.bin")]).assert_code(78);
    curl(&["-o", path_str(&dl), &server.url("alice", "no/such/dir/x")]).assert_failed();
}

#[test]
fn ten_mib_random_round_trip() {
    let server = TestServer::start();
    let tmp = scratch();
    let local = tmp.path().join("ten.bin");
    write_random_file(&local, 10 * 1024 * 1024);

    curl(&["-T", path_str(&local), &server.url("alice", "ten.bin")]).assert_ok();
    assert_files_eq(&local, &server.home("alice").join("ten.bin"));

    let dl = tmp.path().join("ten.down");
    curl(&["-o", path_str(&dl), &server.url("alice", "ten.bin")]).assert_ok();
    assert_files_eq(&local, &dl);

    // SIZE as seen by curl (-I prints Content-Length for FTP).
    let head = curl(&["-I", &server.url("alice", "ten.bin")]);
    head.assert_ok();
    assert!(
        head.stdout_str().contains("Content-Length: 10485760"),
        "SIZE should report 10485760:\n{head}"
    );
}

#[test]
fn utf8_names_round_trip() {
    let server = TestServer::start();
    let tmp = scratch();
    let data = random_bytes(4096);
    let local = tmp.path().join("src.bin");
    fs::write(&local, &data).expect("write local");

    let names = ["résumé 数据 🚀.txt", "données/über straße.bin"];
    for name in names {
        curl(&[
            "--ftp-create-dirs",
            "-T",
            path_str(&local),
            &server.url("alice", name),
        ])
        .assert_ok();
        assert_bytes_eq(
            &format!("uploaded {name:?} on disk"),
            &read(&server.home("alice").join(name)),
            &data,
        );
        let dl = tmp.path().join("dl.bin");
        curl(&["-o", path_str(&dl), &server.url("alice", name)]).assert_ok();
        assert_bytes_eq(&format!("downloaded {name:?}"), &read(&dl), &data);
    }

    let out = curl(&["--list-only", &server.url("alice", "")]);
    out.assert_ok();
    let listed: Vec<String> = out.stdout_str().lines().map(str::to_string).collect();
    assert!(
        listed.iter().any(|l| l == "résumé 数据 🚀.txt") && listed.iter().any(|l| l == "données"),
        "NLST should list the UTF-8 names verbatim:\n{out}"
    );
}
