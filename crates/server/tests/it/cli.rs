//! `ferryd user ...` admin CLI, plus the effect of CLI changes on logins of a running server.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use std::time::Duration;

use crate::harness::{
    add_user, cli, curl, ferryd_command, run, Background, FtpControl, TestServer, ALICE_PW, BOB_PW,
};

fn data_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix("ferry-cli-")
        .tempdir()
        .expect("temp dir");
    let data = tmp.path().join("data");
    fs::create_dir(&data).expect("create data dir");
    (tmp, data)
}

/// Lines of `user list` that mention `name` as a whole word.
fn list_lines_for(list: &str, name: &str) -> Vec<String> {
    list.lines()
        .filter(|l| {
            l.split(|c: char| c.is_whitespace() || c == ',' || c == '|' || c == '=')
                .any(|w| w == name)
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn user_add_list_passwd_del_round_trip() {
    let (_tmp, data) = data_dir();
    add_user(&data, "carol", "pw-one", &[]);

    let home = data.join("homes").join("carol");
    let meta = fs::metadata(&home).expect("default home <data>/homes/carol is created");
    assert!(meta.is_dir(), "home is not a directory");
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o700,
        "home must be created with mode 0700"
    );

    let list = cli(&data, &["user", "list"], None);
    list.assert_ok();
    let out = list.stdout_str();
    let lines = list_lines_for(&out, "carol");
    assert_eq!(lines.len(), 1, "user list should show carol once:\n{list}");
    assert!(
        lines[0].contains(&home.display().to_string()) || lines[0].contains("homes/carol"),
        "user list should show carol's home {}:\n{list}",
        home.display()
    );
    assert!(
        !out.contains("pw-one") && !out.contains("$argon2"),
        "user list must not reveal passwords or hashes:\n{list}"
    );

    cli(
        &data,
        &["user", "passwd", "carol", "--password-stdin"],
        Some("pw-two\n"),
    )
    .assert_ok();
    cli(&data, &["user", "del", "carol"], None).assert_ok();

    let list = cli(&data, &["user", "list"], None);
    list.assert_ok();
    assert!(
        list_lines_for(&list.stdout_str(), "carol").is_empty(),
        "carol still listed after del:\n{list}"
    );

    // Deleting / changing a user that does not exist is an error, not a silent success.
    cli(&data, &["user", "del", "carol"], None).assert_failed();
    cli(
        &data,
        &["user", "passwd", "carol", "--password-stdin"],
        Some("x\n"),
    )
    .assert_failed();
}

#[test]
fn user_add_duplicate_is_rejected() {
    let (_tmp, data) = data_dir();
    add_user(&data, "dave", "pw", &[]);
    let dup = cli(
        &data,
        &["user", "add", "dave", "--password-stdin"],
        Some("other\n"),
    );
    dup.assert_code(1);
    assert!(
        dup.stderr_str().contains("already exists"),
        "duplicate add should say `already exists`:\n{dup}"
    );
    assert!(
        dup.stderr_str().contains("ferryd: error:"),
        "errors are printed as `ferryd: error: ...`:\n{dup}"
    );
}

#[test]
fn user_add_rejects_invalid_names() {
    let (_tmp, data) = data_dir();
    // Boundary: exactly 32 allowed characters is fine (also creates the database, so the
    // `user list` below has something to read).
    let max = format!("A.b_c-{}", "z".repeat(26));
    assert_eq!(max.len(), 32);
    add_user(&data, &max, "pw", &[]);

    let too_long = "a".repeat(40);
    for name in ["", "-x", "a/b", "../x", ".hidden", "a b", too_long.as_str()] {
        let out = cli(
            &data,
            &["user", "add", name, "--password-stdin"],
            Some("pw\n"),
        );
        out.assert_failed();
        assert!(
            !out.stderr.is_empty(),
            "rejecting {name:?} should explain why on stderr:\n{out}"
        );
    }
    // `../x` must not have created anything next to the homes dir.
    assert!(
        !data.join("x").exists(),
        "user add ../x created a directory outside homes/"
    );
    let list = cli(&data, &["user", "list"], None);
    list.assert_ok();
    for bad in ["a/b", "../x", too_long.as_str()] {
        assert!(
            !list.stdout_str().contains(bad),
            "invalid name {bad:?} was stored:\n{list}"
        );
    }
    assert_eq!(
        list_lines_for(&list.stdout_str(), &max).len(),
        1,
        "32-char name should be listed:\n{list}"
    );
}

#[test]
fn user_add_quota() {
    let (_tmp, data) = data_dir();
    add_user(&data, "erin", "pw", &["--quota", "512MiB"]);
    let list = cli(&data, &["user", "list"], None);
    list.assert_ok();
    let lines = list_lines_for(&list.stdout_str(), "erin");
    assert_eq!(lines.len(), 1, "erin should be listed once:\n{list}");
    // Accept any faithful rendering: 512MiB, "512.0 MiB", 536870912.
    let squashed = lines[0].replace(' ', "");
    assert!(
        squashed.contains("512MiB")
            || squashed.contains("512.0MiB")
            || squashed.contains("536870912"),
        "quota 512MiB should be shown in the list line {:?}",
        lines[0]
    );

    let bogus = cli(
        &data,
        &[
            "user",
            "add",
            "frank",
            "--quota",
            "bogus",
            "--password-stdin",
        ],
        Some("pw\n"),
    );
    bogus.assert_failed();
    assert!(
        bogus.stderr_str().to_lowercase().contains("error"),
        "bad quota should print an error:\n{bogus}"
    );
    let list = cli(&data, &["user", "list"], None);
    assert!(
        list_lines_for(&list.stdout_str(), "frank").is_empty(),
        "user with a bogus quota must not be created:\n{list}"
    );
}

#[test]
fn passwd_changes_login_of_running_server() {
    let server = TestServer::start();
    let url = server.bare_url("");
    curl(&["-u", &format!("alice:{ALICE_PW}"), &url]).assert_ok();

    cli(
        &server.data_dir,
        &["user", "passwd", "alice", "--password-stdin"],
        Some("brand-new-pw\n"),
    )
    .assert_ok();

    curl(&["-u", "alice:brand-new-pw", &url]).assert_ok();
    // 67 = CURLE_LOGIN_DENIED
    curl(&["-u", &format!("alice:{ALICE_PW}"), &url]).assert_code(67);
}

#[test]
fn del_prevents_login_on_running_server() {
    let server = TestServer::start();
    let url = server.bare_url("");
    curl(&["-u", &format!("bob:{BOB_PW}"), &url]).assert_ok();
    cli(&server.data_dir, &["user", "del", "bob"], None).assert_ok();
    curl(&["-u", &format!("bob:{BOB_PW}"), &url]).assert_code(67);
    // Other users are unaffected.
    curl(&["-u", &format!("alice:{ALICE_PW}"), &url]).assert_ok();
}

#[test]
fn serve_on_empty_data_dir_creates_first_user_once() {
    let tmp = tempfile::Builder::new()
        .prefix("ferry-first-")
        .tempdir()
        .expect("temp dir");

    fs::create_dir(tmp.path().join("data")).expect("create empty data dir");
    let mut server = TestServer::launch_in(tmp.path(), "");
    let created: Vec<&String> = server
        .startup_stdout
        .iter()
        .filter(|l| l.starts_with("created first user:"))
        .collect();
    assert_eq!(
        created.len(),
        1,
        "expected one `created first user:` line, stdout was {:?}",
        server.startup_stdout
    );
    let line = created[0].clone();
    let field = |key: &str| -> String {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
            .to_string()
    };
    assert_eq!(field("name="), "ferry", "{line}");
    let pw = field("password=");
    assert!(pw.len() >= 12, "generated password too short: {line}");
    let home = line
        .split(" home=")
        .nth(1)
        .unwrap_or_else(|| panic!("no home= in {line:?}"));
    let home = std::path::Path::new(home);
    assert!(home.is_absolute(), "home must be absolute: {line}");
    assert!(home.is_dir(), "home {} does not exist", home.display());

    let url = server.bare_url("");
    curl(&["-u", &format!("ferry:{pw}"), &url]).assert_ok();
    curl(&["-u", "ferry:not-the-password", &url]).assert_code(67);

    let st = server.stop();
    assert!(
        st.is_some_and(|s| s.success()),
        "ferryd should exit 0 on SIGTERM, got {st:?}\n{}",
        server.stderr_log()
    );
    drop(server);

    let server = TestServer::launch_in(tmp.path(), "");
    assert!(
        !server
            .startup_stdout
            .iter()
            .any(|l| l.starts_with("created first user")),
        "second start must not create another first user: {:?}",
        server.startup_stdout
    );
    curl(&["-u", &format!("ferry:{pw}"), &server.bare_url("")]).assert_ok();
}

/// Several admins (or provisioning scripts) adding users at the same moment to a data dir
/// that has no database yet must all succeed: SQLite contention has to be waited out, not
/// reported as `database is locked`. The race window is small, so try several rounds.
#[test]
fn concurrent_user_adds_on_fresh_data_dir() {
    const ROUNDS: usize = 20;
    const WRITERS: usize = 6;
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let (_tmp, data) = data_dir();
        let jobs: Vec<Background> = (0..WRITERS)
            .map(|i| {
                let mut cmd = ferryd_command(&data);
                cmd.args(["user", "add", &format!("u{i}"), "--password-stdin"]);
                Background::spawn(&mut cmd, Some(b"pw\n"))
            })
            .collect();
        for job in jobs {
            let out = job.wait(Duration::from_secs(60));
            if !out.success() {
                failures.push(format!("round {round}:\n{out}"));
            }
        }
        if failures.is_empty() {
            let list = cli(&data, &["user", "list"], None);
            list.assert_ok();
            for i in 0..WRITERS {
                assert_eq!(
                    list_lines_for(&list.stdout_str(), &format!("u{i}")).len(),
                    1,
                    "round {round}: u{i} missing:\n{list}"
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} concurrent `user add`s failed:\n{}",
        failures.len(),
        ROUNDS * WRITERS,
        failures.join("\n")
    );
}

/// Config values near integer limits used to be accepted and then panic a session or the
/// server (`Instant + 2^63 s`, a semaphore of 2^62 permits, 100 argon2 areas of 19 MiB). Each
/// out-of-range value, and a bad `--listen` flag, must stop `ferryd serve` at once, before it
/// listens, with an error naming the key and its range; values at both ends of every range
/// start a server that serves a login.
#[test]
fn serve_rejects_config_values_out_of_range() {
    // (config file, --listen flag, what stderr must say)
    let mut cases: Vec<(String, &str, String)> = [
        ("idle_timeout_secs = 9223372036854775807", "(1..=86400)"),
        ("idle_timeout_secs = 0", "(1..=86400)"),
        ("data_timeout_secs = 86401", "(1..=86400)"),
        ("shutdown_grace_secs = 9223372036854775807", "(0..=86400)"),
        ("lockout_secs = 9223372036854775807", "(1..=604800)"),
        ("max_sessions = 4611686018427387904", "(1..=1000000)"),
        ("max_sessions_per_ip = 0", "(1..=1000000)"),
        ("blocking_threads = 4611686018427387904", "(4..=4096)"),
        ("blocking_threads = 3", "(4..=4096)"),
        ("max_parallel_logins = 100", "(1..=64)"),
        ("max_parallel_logins = 0", "(1..=64)"),
        ("max_line = 0", "(512..=1048576)"),
        ("max_line = 1073741824", "(512..=1048576)"),
        ("max_login_failures = 0", "(1..=10000)"),
    ]
    .into_iter()
    .map(|(line, range)| {
        let want = format!("{line} is out of range {range}");
        (line.to_owned(), "127.0.0.1:0", want)
    })
    .collect();
    for ports in ["2000-1000", "0-1000", "1000-70000"] {
        let line = format!("passive_ports = \"{ports}\"");
        let want = format!("{line} is not a port range");
        cases.push((line, "127.0.0.1:0", want));
    }
    let flag = "listen address '127.0.0.1:99999' is not IP:PORT".to_owned();
    cases.push((String::new(), "127.0.0.1:99999", flag));

    let (tmp, data) = data_dir();
    let config = tmp.path().join("limits.toml");
    let mut failures = Vec::new();
    for (toml, listen, want) in &cases {
        fs::write(&config, toml).expect("write config");
        let mut cmd = ferryd_command(&data);
        cmd.arg("--config").arg(&config);
        cmd.args(["serve", "--listen", listen]);
        let started = std::time::Instant::now();
        let out = run(&mut cmd, None, Duration::from_secs(20));
        let took = started.elapsed();
        if out.success() || out.timed_out || out.status.is_none() {
            failures.push(format!("{toml:?}: did not fail:\n{out}"));
        } else if !out.stderr_str().contains(want.as_str()) {
            failures.push(format!("{toml:?}: stderr lacks {want:?}:\n{out}"));
        } else if out.stdout_str().contains("listening on") || took > Duration::from_secs(5) {
            failures.push(format!("{toml:?}: failed only after {took:?}:\n{out}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // Both ends of every range, in two servers. max_parallel_logins = 64 would take 1.2 GiB of
    // argon2 memory for a test, so only its low end is started (config.rs checks the high end).
    let highest = "idle_timeout_secs = 86400\ndata_timeout_secs = 86400\n\
                   shutdown_grace_secs = 86400\nlockout_secs = 604800\nmax_sessions = 1000000\n\
                   max_sessions_per_ip = 1000000\nmax_line = 1048576\nblocking_threads = 4096\n\
                   max_login_failures = 10000\npassive_ports = \"1-65535\"\n";
    let lowest = "idle_timeout_secs = 1\ndata_timeout_secs = 1\nshutdown_grace_secs = 0\n\
                  lockout_secs = 1\nmax_sessions = 1\nmax_sessions_per_ip = 1\nmax_line = 512\n\
                  blocking_threads = 4\nmax_parallel_logins = 1\nmax_login_failures = 1\n\
                  passive_ports = \"65535-65535\"\n";
    for bounds in [highest, lowest] {
        let mut server = TestServer::start_with(bounds);
        let mut c = FtpControl::login(server.port, "alice", ALICE_PW);
        c.expect("NOOP", 200);
        c.expect("QUIT", 221);
        drop(c);
        let st = server.stop();
        assert!(
            st.is_some_and(|s| s.success()),
            "ferryd with {bounds:?} should exit 0 on SIGTERM, got {st:?}\n{}",
            server.stderr_log()
        );
    }
}
