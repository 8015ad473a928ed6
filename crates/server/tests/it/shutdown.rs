//! Graceful shutdown on SIGTERM.

use std::fs;
use std::io;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{
    assert_files_eq, curl_command, require_tool, write_random_file, Background, FtpControl,
    TestServer, ALICE_PW,
};

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

#[test]
fn sigterm_with_idle_logged_in_client_exits_within_grace() {
    let mut server = TestServer::start_with("shutdown_grace_secs = 2\n");
    let mut client = FtpControl::login(server.port, "alice", ALICE_PW);
    client.expect("NOOP", 200);

    let t0 = Instant::now();
    server.sigterm();
    // Grace is 2 s; allow a little scheduling slack on top, nothing more.
    let status = server.wait_exit(Duration::from_millis(3500));
    let took = t0.elapsed();
    let Some(status) = status else {
        panic!(
            "ferryd still running {took:?} after SIGTERM with shutdown_grace_secs = 2\nstderr:\n{}",
            server.stderr_log()
        );
    };
    assert!(
        status.success(),
        "ferryd should exit 0 after SIGTERM, got {status}\nstderr:\n{}",
        server.stderr_log()
    );

    // The idle client is told (421) or just disconnected; it must not be left hanging.
    match client.read_reply() {
        Ok(r) => assert_eq!(r.code, 421, "idle client got unexpected reply: {r}"),
        Err(e) => assert!(
            is_disconnect(&e),
            "idle client: expected 421 or EOF, got {e}"
        ),
    }

    // Nothing listens any more.
    let conn = TcpStream::connect_timeout(&server.addr(), Duration::from_secs(5));
    assert!(
        conn.as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionRefused),
        "connect after exit should be refused, got {conn:?}"
    );
}

#[test]
fn sigterm_lets_running_download_finish() {
    require_tool("curl");
    let mut server = TestServer::start_with("shutdown_grace_secs = 30\n");
    let tmp = tempfile::Builder::new()
        .prefix("ferry-shutdown-")
        .tempdir()
        .expect("temp dir");

    const SIZE: u64 = 200 * 1024 * 1024;
    let remote = server.home("alice").join("large.bin");
    write_random_file(&remote, SIZE);
    let local = tmp.path().join("large.down");
    let url = server.url("alice", "large.bin");
    let local_str = local.to_str().expect("UTF-8 temp path");
    // ~4 s at 50 MB/s: long enough to signal in the middle of the transfer.
    let mut cmd = curl_command(&["--limit-rate", "50M", "-o", local_str, &url]);
    let download = Background::spawn(&mut cmd, None);

    // Wait until data is actually flowing.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = fs::metadata(&local).map(|m| m.len()).unwrap_or(0);
        if got >= 1024 * 1024 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "download did not start within 20 s (got {got} bytes); stderr:\n{}",
            server.stderr_log()
        );
        thread::sleep(Duration::from_millis(20));
    }

    server.sigterm();
    let at_signal = fs::metadata(&local).map(|m| m.len()).unwrap_or(0);
    assert!(
        at_signal < SIZE,
        "download finished before SIGTERM; the test proves nothing (raise SIZE)"
    );

    // New sessions are not accepted after the signal: connection refused, or (tolerated)
    // an immediate 421 / close. A 220 greeting is a failure.
    thread::sleep(Duration::from_millis(500));
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "ferryd exited while a download was still running\nstderr:\n{}",
        server.stderr_log()
    );
    match FtpControl::connect_raw(server.port) {
        Err(e) => assert_eq!(
            e.kind(),
            io::ErrorKind::ConnectionRefused,
            "new connection after SIGTERM: {e}"
        ),
        Ok(mut c) => match c.read_reply() {
            Ok(r) => assert_eq!(
                r.code, 421,
                "new connection after SIGTERM was served (expected refused): {r}"
            ),
            Err(e) => assert!(is_disconnect(&e), "new connection after SIGTERM: {e}"),
        },
    }

    let out = download.wait(Duration::from_secs(60));
    out.assert_ok();
    assert_files_eq(&remote, &local);

    let status = server.wait_exit(Duration::from_secs(15));
    let Some(status) = status else {
        panic!(
            "ferryd did not exit after the last transfer finished\nstderr:\n{}",
            server.stderr_log()
        );
    };
    assert!(status.success(), "ferryd exit status {status}");
}
