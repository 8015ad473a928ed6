//! `ferryd user add|list|set|passwd|rescan|del`: account administration on the command line, and the
//! first-user bootstrap that `ferryd serve` runs on an empty store.
//!
//! Everything here is blocking and meant to run before (or instead of) the async server.
//! Results go to stdout; errors are returned as text for main to print as
//! `ferryd: error: <text>`. Passwords are read from the terminal without echo or from one line
//! of stdin, and are never printed.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use crate::auth::{generate_password, hash_password, validate_username};
use crate::config::StorageConfig;
use crate::size::{format_size, parse_size};
use crate::storage::Storage;
use crate::store::{Limit, NewUser, Store, StoreError, UserRecord, DB_FILE_NAME};

/// Name of the account `serve` creates when the store is empty.
pub const FIRST_USER_NAME: &str = "ferry";

/// Longest accepted password. A longer one could never be sent anyway: `PASS <pw>\r\n` must
/// fit in the FTP control line limit.
pub const MAX_PASSWORD_LEN: usize = 1024;

#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user
    Add {
        name: String,
        /// Home directory (default: <data-dir>/homes/<NAME>); created if missing
        #[arg(long)]
        home: Option<PathBuf>,
        /// Disk quota, e.g. 512MiB, 5GiB, 10MB or unlimited (default: the server's default_quota)
        #[arg(long)]
        quota: Option<String>,
        /// Most files the user may have, or unlimited (default: the server's default_max_files)
        #[arg(long)]
        max_files: Option<String>,
        /// Read the password from the first line of stdin instead of prompting
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users with their quotas and usage
    List,
    /// Change a user's quota ("default" goes back to the server's default)
    Set {
        name: String,
        /// Disk quota, e.g. 5GiB, unlimited or default
        #[arg(long)]
        quota: Option<String>,
        /// Most files, e.g. 100000, unlimited or default
        #[arg(long)]
        max_files: Option<String>,
    },
    /// Recount a user's usage from the files in their home (after changes made outside ferryd)
    Rescan { name: String },
    /// Change a user's password
    Passwd {
        name: String,
        /// Read the password from the first line of stdin instead of prompting
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user (their files stay on disk)
    Del { name: String },
}

/// Runs one subcommand; Err(message) is printed by main as "ferryd: error: {message}" with exit 1.
pub fn run(cmd: UserCommand, data_dir: &Path, storage: &StorageConfig) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    run_with(cmd, data_dir, storage, &mut TerminalPasswords, &mut out)
}

/// Called by `serve` on start: if the store has no users, create user "ferry" with a generated
/// password and default home, and return (name, password, home) for main to print once.
pub fn ensure_first_user(
    store: &Store,
    data_dir: &Path,
) -> Result<Option<(String, String, PathBuf)>, String> {
    if store.count_users().map_err(|e| e.to_string())? > 0 {
        return Ok(None);
    }
    let name = FIRST_USER_NAME.to_owned();
    let home = create_home(&default_home(data_dir, &name)?)?;
    let password = generate_password();
    let password_hash = hash_password(&password).map_err(|e| e.to_string())?;
    let new = NewUser {
        name: name.clone(),
        password_hash,
        home: home.clone(),
        quota_bytes: Limit::Default,
        quota_files: Limit::Default,
    };
    match store.add_user(&new) {
        Ok(()) => Ok(Some((name, password, home))),
        // Another ferryd (or `user add`) got there between our count and insert: the store is
        // no longer empty, which is all this function promises.
        Err(StoreError::Duplicate(_)) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Where passwords come from; a trait so tests can drive `run_with` without a terminal.
trait PasswordInput {
    /// The first line of stdin, without its line ending.
    fn stdin_line(&mut self) -> Result<String, String>;
    fn is_terminal(&self) -> bool;
    /// Prompts on the terminal and reads a password without echo.
    fn prompt(&mut self, prompt: &str) -> Result<String, String>;
}

struct TerminalPasswords;

impl PasswordInput for TerminalPasswords {
    fn stdin_line(&mut self) -> Result<String, String> {
        read_first_line(&mut std::io::stdin().lock())
    }

    fn is_terminal(&self) -> bool {
        std::io::stdin().is_terminal()
    }

    fn prompt(&mut self, prompt: &str) -> Result<String, String> {
        rpassword::prompt_password(prompt).map_err(|e| format!("reading password: {e}"))
    }
}

/// Reads one line (bounded, so `--password-stdin < /dev/zero` cannot eat all memory) and strips
/// the trailing `\n` / `\r\n`.
fn read_first_line(input: &mut impl BufRead) -> Result<String, String> {
    let mut buf = Vec::new();
    input
        .take(MAX_PASSWORD_LEN as u64 + 2)
        .read_until(b'\n', &mut buf)
        .map_err(|e| format!("reading password from stdin: {e}"))?;
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    // Checked before UTF-8 decoding: the cut made by `take` may split a character.
    if buf.len() > MAX_PASSWORD_LEN {
        return Err(format!(
            "password is too long (max {MAX_PASSWORD_LEN} bytes)"
        ));
    }
    String::from_utf8(buf).map_err(|_| "password is not valid UTF-8".to_owned())
}

fn read_new_password(from_stdin: bool, input: &mut dyn PasswordInput) -> Result<String, String> {
    let password = if from_stdin {
        input.stdin_line()?
    } else {
        if !input.is_terminal() {
            return Err("no terminal to prompt for a password; use --password-stdin".to_owned());
        }
        let first = input.prompt("Password: ")?;
        if first.is_empty() {
            return Err("empty password".to_owned());
        }
        let again = input.prompt("Again: ")?;
        if first != again {
            return Err("passwords do not match".to_owned());
        }
        first
    };
    if password.is_empty() {
        return Err("empty password".to_owned());
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!(
            "password is too long (max {MAX_PASSWORD_LEN} bytes)"
        ));
    }
    Ok(password)
}

/// What `ferryd user rescan` counts for a user: the local home, or the user's objects (the
/// bucket connected here, on a runtime of its own).
fn scan_usage(config: &StorageConfig, home: &Path, name: &str) -> Result<(u64, u64), String> {
    match config {
        StorageConfig::Local => Storage::local()
            .scan_usage(home, name)
            .map_err(|e| format!("cannot scan {}: {e}", home.display())),
        StorageConfig::S3(_) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start runtime: {e}"))?;
            let (home, name) = (home.to_path_buf(), name.to_owned());
            runtime.block_on(async move {
                let storage = Storage::from_config(config)
                    .await
                    .map_err(|e| format!("storage: {e}"))?;
                // The scan blocks: on the blocking pool, where it may wait for the runtime.
                let user = name.clone();
                tokio::task::spawn_blocking(move || storage.scan_usage(&home, &user))
                    .await
                    .map_err(|e| format!("scan failed: {e}"))?
                    .map_err(|e| format!("cannot scan the objects of '{name}': {e}"))
            })
        }
    }
}

fn run_with(
    cmd: UserCommand,
    data_dir: &Path,
    storage: &StorageConfig,
    passwords: &mut dyn PasswordInput,
    out: &mut dyn Write,
) -> Result<(), String> {
    match cmd {
        UserCommand::Add {
            name,
            home,
            quota,
            max_files,
            password_stdin,
        } => {
            validate_username(&name)?;
            // Check everything that can fail before asking for the password, so the operator
            // does not type it twice only to hit a typo in --quota.
            let quota_bytes =
                parse_limit(quota.as_deref(), "--quota", parse_size_limit)?.unwrap_or_default();
            let quota_files = parse_limit(max_files.as_deref(), "--max-files", parse_count_limit)?
                .unwrap_or_default();
            let store = Store::open(data_dir).map_err(|e| e.to_string())?;
            if store.get_user(&name).map_err(|e| e.to_string())?.is_some() {
                return Err(StoreError::Duplicate(name).to_string());
            }
            let home = match home {
                Some(h) => absolute_home(&h)?,
                None => default_home(data_dir, &name)?,
            };
            let password = read_new_password(password_stdin, passwords)?;
            let password_hash = hash_password(&password).map_err(|e| e.to_string())?;
            let home = create_home(&home)?;
            store
                .add_user(&NewUser {
                    name: name.clone(),
                    password_hash,
                    home: home.clone(),
                    quota_bytes,
                    quota_files,
                })
                .map_err(|e| e.to_string())?;
            let quota_note = match quota_bytes {
                Limit::Max(q) => format!(", quota {}", format_size(q)),
                Limit::Unlimited => ", quota unlimited".to_owned(),
                Limit::Default => String::new(),
            };
            say(
                out,
                &format!("added user '{name}' (home {}{quota_note})", home.display()),
            )
        }
        UserCommand::List => {
            let store = open_existing(data_dir)?;
            let users = store.list_users().map_err(|e| e.to_string())?;
            say(out, &format_table(&users))
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let store = open_existing(data_dir)?;
            if store.get_user(&name).map_err(|e| e.to_string())?.is_none() {
                return Err(StoreError::NotFound(name).to_string());
            }
            let password = read_new_password(password_stdin, passwords)?;
            let password_hash = hash_password(&password).map_err(|e| e.to_string())?;
            store
                .set_password_hash(&name, &password_hash)
                .map_err(|e| e.to_string())?;
            say(out, &format!("changed password for user '{name}'"))
        }
        UserCommand::Set {
            name,
            quota,
            max_files,
        } => {
            let bytes = parse_limit(quota.as_deref(), "--quota", parse_size_limit)?;
            let files = parse_limit(max_files.as_deref(), "--max-files", parse_count_limit)?;
            if bytes.is_none() && files.is_none() {
                return Err("nothing to change: give --quota and/or --max-files".into());
            }
            let store = open_existing(data_dir)?;
            store
                .set_limits(&name, bytes, files)
                .map_err(|e| e.to_string())?;
            say(
                out,
                &format!("updated user '{name}' (applies from their next login)"),
            )
        }
        UserCommand::Rescan { name } => {
            let store = open_existing(data_dir)?;
            let user = store
                .get_user(&name)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| StoreError::NotFound(name.clone()).to_string())?;
            let (bytes, files) = scan_usage(storage, &user.home, &user.name)?;
            store
                .set_usage(&name, bytes, files)
                .map_err(|e| e.to_string())?;
            say(
                out,
                &format!(
                    "user '{name}' uses {} in {files} files (was {} in {} files)",
                    format_size(bytes),
                    format_size(user.used_bytes),
                    user.used_files
                ),
            )
        }
        UserCommand::Del { name } => {
            let store = open_existing(data_dir)?;
            let user = store
                .get_user(&name)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| StoreError::NotFound(name.clone()).to_string())?;
            store.delete_user(&name).map_err(|e| e.to_string())?;
            say(
                out,
                &format!(
                    "deleted user '{name}' (files left in {})",
                    user.home.display()
                ),
            )
        }
    }
}

/// Parses an optional limit flag with `parse`, naming the flag in errors.
fn parse_limit(
    value: Option<&str>,
    flag: &str,
    parse: fn(&str) -> Result<Limit, String>,
) -> Result<Option<Limit>, String> {
    value
        .map(|v| parse(v).map_err(|e| format!("invalid {flag} '{v}': {e}")))
        .transpose()
}

fn parse_size_limit(v: &str) -> Result<Limit, String> {
    if v.eq_ignore_ascii_case("default") {
        return Ok(Limit::Default);
    }
    match parse_size(v).map_err(|e| e.to_string())? {
        Some(n) => Ok(Limit::Max(n)),
        None => Ok(Limit::Unlimited),
    }
}

fn parse_count_limit(v: &str) -> Result<Limit, String> {
    match v.to_ascii_lowercase().as_str() {
        "default" => Ok(Limit::Default),
        "unlimited" => Ok(Limit::Unlimited),
        n => n
            .parse()
            .map(Limit::Max)
            .map_err(|_| "expected a number of files, unlimited or default".to_owned()),
    }
}

fn describe_limit(limit: Limit, show: impl Fn(u64) -> String) -> String {
    match limit {
        Limit::Default => "default".to_owned(),
        Limit::Unlimited => "unlimited".to_owned(),
        Limit::Max(n) => show(n),
    }
}

/// Opens the store for commands that only make sense on an existing one, so a mistyped
/// `--data-dir` is reported instead of silently creating an empty database there.
fn open_existing(data_dir: &Path) -> Result<Store, String> {
    let db = data_dir.join(DB_FILE_NAME);
    if !db.exists() {
        return Err(format!(
            "no user database at {} (check --data-dir; `ferryd user add` or `ferryd serve` creates it)",
            db.display()
        ));
    }
    Store::open(data_dir).map_err(|e| e.to_string())
}

fn say(out: &mut dyn Write, text: &str) -> Result<(), String> {
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing to stdout: {e}"))
}

/// `<data_dir>/homes/<name>`, absolute. The data dir is created first because canonicalize
/// needs it to exist.
fn default_home(data_dir: &Path, name: &str) -> Result<PathBuf, String> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("creating data directory {}: {e}", data_dir.display()))?;
    let data_dir = data_dir
        .canonicalize()
        .map_err(|e| format!("resolving data directory {}: {e}", data_dir.display()))?;
    Ok(data_dir.join("homes").join(name))
}

fn absolute_home(home: &Path) -> Result<PathBuf, String> {
    if home.as_os_str().is_empty() {
        return Err("--home must not be empty".to_owned());
    }
    let abs = std::path::absolute(home)
        .map_err(|e| format!("resolving home directory {}: {e}", home.display()))?;
    if abs.exists() && !abs.is_dir() {
        return Err(format!(
            "home {} exists and is not a directory",
            abs.display()
        ));
    }
    Ok(abs)
}

/// Creates the home directory (mode 0700 for every component it creates) and returns its
/// canonical path, which is what the server will open the user's jail at.
fn create_home(home: &Path) -> Result<PathBuf, String> {
    create_private_dir_all(home)
        .map_err(|e| format!("creating home directory {}: {e}", home.display()))?;
    home.canonicalize()
        .map_err(|e| format!("resolving home directory {}: {e}", home.display()))
}

#[cfg(unix)]
fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

fn format_table(users: &[UserRecord]) -> String {
    if users.is_empty() {
        return "no users".to_owned();
    }
    let header = [
        "NAME".to_owned(),
        "HOME".to_owned(),
        "QUOTA".to_owned(),
        "USED".to_owned(),
    ];
    let mut rows = vec![header];
    for u in users {
        let quota = format!(
            "{} / {} files",
            describe_limit(u.quota_bytes, format_size),
            describe_limit(u.quota_files, |n| n.to_string())
        );
        rows.push([
            u.name.clone(),
            u.home.display().to_string(),
            quota,
            format!("{} / {} files", format_size(u.used_bytes), u.used_files),
        ]);
    }
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let line = row
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ");
            line.trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::verify_password;
    use std::collections::VecDeque;

    /// Scripted password input: `stdin` is what `--password-stdin` reads, `prompts` answers
    /// terminal prompts in order.
    #[derive(Default)]
    struct FakeInput {
        stdin: Option<String>,
        terminal: bool,
        prompts: VecDeque<String>,
        prompted: Vec<String>,
    }

    impl PasswordInput for FakeInput {
        fn stdin_line(&mut self) -> Result<String, String> {
            let raw = self.stdin.take().unwrap_or_default();
            read_first_line(&mut raw.as_bytes())
        }
        fn is_terminal(&self) -> bool {
            self.terminal
        }
        fn prompt(&mut self, prompt: &str) -> Result<String, String> {
            self.prompted.push(prompt.to_owned());
            self.prompts
                .pop_front()
                .ok_or_else(|| "no more scripted answers".to_owned())
        }
    }

    fn stdin(s: &str) -> FakeInput {
        FakeInput {
            stdin: Some(s.to_owned()),
            ..FakeInput::default()
        }
    }

    fn exec(cmd: UserCommand, data: &Path, input: &mut FakeInput) -> Result<String, String> {
        let mut out = Vec::new();
        run_with(cmd, data, &StorageConfig::Local, input, &mut out)?;
        String::from_utf8(out).map_err(|e| e.to_string())
    }

    fn add(name: &str) -> UserCommand {
        UserCommand::Add {
            name: name.to_owned(),
            home: None,
            quota: None,
            max_files: None,
            password_stdin: true,
        }
    }

    #[test]
    fn add_list_passwd_del() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");

        let msg = exec(add("alice"), &data, &mut stdin("pw-one\r\n")).expect("add");
        let canon = data.canonicalize().expect("canon");
        let home = canon.join("homes/alice");
        assert_eq!(
            msg,
            format!("added user 'alice' (home {})\n", home.display())
        );
        assert!(home.is_dir());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&home).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }

        let store = Store::open(&data).expect("open");
        let rec = store.get_user("alice").expect("get").expect("exists");
        assert_eq!(rec.home, home);
        assert_eq!(rec.quota_bytes, Limit::Default);
        // The \r\n was stripped: the password is exactly "pw-one".
        assert!(verify_password("pw-one", &rec.password_hash));
        assert!(!verify_password("pw-one\r", &rec.password_hash));

        let msg = exec(
            UserCommand::Add {
                name: "bob".to_owned(),
                home: Some(dir.path().join("elsewhere/bob")),
                quota: Some("5GiB".to_owned()),
                max_files: None,
                password_stdin: true,
            },
            &data,
            &mut stdin("pw-two"),
        )
        .expect("add bob");
        assert!(msg.contains("quota 5.0 GiB"), "{msg}");
        let bob = store.get_user("bob").expect("get").expect("exists");
        assert_eq!(bob.quota_bytes, Limit::Max(5 << 30));
        assert_eq!(
            bob.home,
            dir.path()
                .canonicalize()
                .expect("canon")
                .join("elsewhere/bob")
        );
        assert!(bob.home.is_dir());

        let listing = exec(UserCommand::List, &data, &mut FakeInput::default()).expect("list");
        let lines: Vec<_> = listing.lines().collect();
        assert_eq!(lines.len(), 3, "{listing}");
        assert!(lines[0].starts_with("NAME"), "{listing}");
        assert!(
            lines[0].contains("HOME") && lines[0].contains("QUOTA"),
            "{listing}"
        );
        assert!(lines[1].starts_with("alice "), "{listing}");
        assert!(lines[1].contains("default"), "{listing}");
        assert!(lines[1].ends_with("0 B / 0 files"), "{listing}");
        assert!(lines[2].starts_with("bob "), "{listing}");
        assert!(lines[2].contains("5.0 GiB"), "{listing}");
        // Columns line up: HOME starts at the same offset on every line.
        let col = lines[0].find("HOME").expect("HOME column");
        assert_eq!(lines[1].find(home.to_str().expect("utf8")), Some(col));

        let msg = exec(
            UserCommand::Passwd {
                name: "alice".to_owned(),
                password_stdin: true,
            },
            &data,
            &mut stdin("pw-new\n"),
        )
        .expect("passwd");
        assert_eq!(msg, "changed password for user 'alice'\n");
        let rec = store.get_user("alice").expect("get").expect("exists");
        assert!(verify_password("pw-new", &rec.password_hash));
        assert!(!verify_password("pw-one", &rec.password_hash));

        let msg = exec(
            UserCommand::Del {
                name: "alice".to_owned(),
            },
            &data,
            &mut FakeInput::default(),
        )
        .expect("del");
        assert!(msg.starts_with("deleted user 'alice'"), "{msg}");
        assert!(store.get_user("alice").expect("get").is_none());
        assert!(home.is_dir(), "files stay on disk");
    }

    #[test]
    fn add_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        exec(add("alice"), &data, &mut stdin("pw")).expect("add");

        let e = exec(add("alice"), &data, &mut stdin("pw")).expect_err("dup");
        assert_eq!(e, "user 'alice' already exists");

        let e = exec(add("-rf"), &data, &mut stdin("pw")).expect_err("bad name");
        assert!(e.contains("must not start with"), "{e}");

        let e = exec(add("bob"), &data, &mut stdin("\n")).expect_err("empty");
        assert_eq!(e, "empty password");
        let e = exec(add("bob"), &data, &mut stdin("")).expect_err("eof");
        assert_eq!(e, "empty password");

        let e = exec(
            UserCommand::Add {
                name: "bob".to_owned(),
                home: None,
                quota: Some("5 gigs".to_owned()),
                max_files: None,
                password_stdin: true,
            },
            &data,
            &mut stdin("pw"),
        )
        .expect_err("bad quota");
        assert!(e.contains("5 gigs") && e.contains("--quota"), "{e}");

        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").expect("write");
        let e = exec(
            UserCommand::Add {
                name: "bob".to_owned(),
                home: Some(file),
                quota: None,
                max_files: None,
                password_stdin: true,
            },
            &data,
            &mut stdin("pw"),
        )
        .expect_err("home is a file");
        assert!(e.contains("not a directory"), "{e}");

        let long = "x".repeat(MAX_PASSWORD_LEN + 1);
        let e = exec(add("bob"), &data, &mut stdin(&long)).expect_err("too long");
        assert!(e.contains("too long"), "{e}");

        // None of the failures above created bob.
        let store = Store::open(&data).expect("open");
        assert_eq!(store.count_users().expect("count"), 1);
        assert!(!data.join("homes/bob").exists());
    }

    #[test]
    fn prompting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let interactive = |answers: &[&str]| FakeInput {
            terminal: true,
            prompts: answers.iter().map(|s| s.to_string()).collect(),
            ..FakeInput::default()
        };
        let cmd = |name: &str| UserCommand::Add {
            name: name.to_owned(),
            home: None,
            quota: None,
            max_files: None,
            password_stdin: false,
        };

        let mut input = FakeInput::default();
        let e = exec(cmd("alice"), &data, &mut input).expect_err("no tty");
        assert_eq!(
            e,
            "no terminal to prompt for a password; use --password-stdin"
        );

        let mut input = interactive(&["one", "two"]);
        let e = exec(cmd("alice"), &data, &mut input).expect_err("mismatch");
        assert_eq!(e, "passwords do not match");
        assert_eq!(input.prompted, ["Password: ", "Again: "]);

        let mut input = interactive(&["", ""]);
        let e = exec(cmd("alice"), &data, &mut input).expect_err("empty");
        assert_eq!(e, "empty password");

        let mut input = interactive(&["same", "same"]);
        exec(cmd("alice"), &data, &mut input).expect("add");
        let store = Store::open(&data).expect("open");
        let rec = store.get_user("alice").expect("get").expect("exists");
        assert!(verify_password("same", &rec.password_hash));
    }

    #[test]
    fn unknown_users_and_missing_db() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");

        let e = exec(UserCommand::List, &data, &mut FakeInput::default()).expect_err("no db");
        assert!(e.contains("no user database"), "{e}");
        assert!(!data.exists(), "list must not create the data dir");

        exec(add("alice"), &data, &mut stdin("pw")).expect("add");
        let e = exec(
            UserCommand::Del {
                name: "carol".to_owned(),
            },
            &data,
            &mut FakeInput::default(),
        )
        .expect_err("unknown");
        assert_eq!(e, "no such user 'carol'");
        let e = exec(
            UserCommand::Passwd {
                name: "carol".to_owned(),
                password_stdin: true,
            },
            &data,
            &mut stdin("pw"),
        )
        .expect_err("unknown");
        assert_eq!(e, "no such user 'carol'");
    }

    #[test]
    fn first_user_is_created_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let store = Store::open(&data).expect("open");

        let (name, password, home) = ensure_first_user(&store, &data)
            .expect("ensure")
            .expect("created");
        assert_eq!(name, FIRST_USER_NAME);
        assert_eq!(password.len(), 20);
        assert!(home.is_absolute() && home.is_dir());
        assert_eq!(
            home,
            data.canonicalize().expect("canon").join("homes/ferry")
        );
        let rec = store.get_user("ferry").expect("get").expect("exists");
        assert!(verify_password(&password, &rec.password_hash));
        assert_eq!(rec.home, home);

        assert_eq!(
            ensure_first_user(&store, &data).expect("ensure again"),
            None
        );
        assert_eq!(store.count_users().expect("count"), 1);
    }

    #[test]
    fn no_first_user_when_users_exist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        exec(add("alice"), &data, &mut stdin("pw")).expect("add");
        let store = Store::open(&data).expect("open");
        assert_eq!(ensure_first_user(&store, &data).expect("ensure"), None);
        assert!(store.get_user("ferry").expect("get").is_none());
    }

    #[test]
    fn first_line_only() {
        let mut input: &[u8] = b"line one\nline two\n";
        assert_eq!(read_first_line(&mut input).expect("read"), "line one");
        let mut input: &[u8] = b"  spaced \r\n";
        assert_eq!(read_first_line(&mut input).expect("read"), "  spaced ");
        let mut input: &[u8] = b"no newline";
        assert_eq!(read_first_line(&mut input).expect("read"), "no newline");
    }

    #[test]
    fn empty_table() {
        assert_eq!(format_table(&[]), "no users");
    }
}
