//! The interactive shell, driven through tmux as a person would: keys typed with send-keys,
//! the screen read with capture-pane. Needs `tmux` (apt-get install tmux).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

struct Tmux {
    socket: String,
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl Tmux {
    fn start(dir: &Path, command: &str) -> Tmux {
        let socket = format!("ferry-it-{}-{}", std::process::id(), random_bytes(4)[0]);
        let out = run(
            Command::new("tmux")
                .args([
                    "-u",
                    "-L",
                    &socket,
                    "new-session",
                    "-d",
                    "-s",
                    "t",
                    "-x",
                    "200",
                    "-y",
                    "50",
                ])
                .arg("-c")
                .arg(dir)
                .arg(command),
            Duration::from_secs(10),
        );
        assert!(
            out.status.is_some_and(|s| s.success()),
            "tmux is required for the shell tests (apt-get install -y tmux):\n{out}"
        );
        Tmux { socket }
    }

    fn tmux(&self, args: &[&str]) -> Output {
        run(
            Command::new("tmux")
                .args(["-u", "-L", &self.socket])
                .args(args),
            Duration::from_secs(10),
        )
    }

    /// Types `text` literally.
    fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "t", "-l", text]);
    }

    fn key(&self, key: &str) {
        self.tmux(&["send-keys", "-t", "t", key]);
    }

    fn line(&self, text: &str) {
        self.type_text(text);
        self.key("Enter");
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t", "-S", "-300"])
            .stdout
    }

    #[track_caller]
    fn wait_screen(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let ok = wait_for(Duration::from_secs(20), || {
            last = self.screen();
            cond(&last)
        });
        assert!(ok, "timed out waiting for {what}; screen:\n{last}");
        last
    }

    fn alive(&self) -> bool {
        self.tmux(&["has-session", "-t", "t"])
            .status
            .is_some_and(|s| s.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

#[test]
fn shell_session_with_completion_and_progress() {
    let p = PyFtpd::start(&["--hash", "hash"]);
    fs::create_dir_all(p.root.join("données")).expect("mkdir");
    fs::write(p.root.join("données/résumé.txt"), b"cv\n").expect("write");
    let big = random_bytes(1_200_000);
    fs::write(p.root.join("big.bin"), &big).expect("write");
    let ctx = Ctx::new();
    fs::write(ctx.work().join("up1.txt"), b"one").expect("write");
    fs::write(ctx.work().join("up2.txt"), b"two").expect("write");
    fs::write(ctx.work().join("other.dat"), b"no").expect("write");

    let command = format!(
        "env LANG=C.UTF-8 HOME={} FERRY_KNOWN_HOSTS={} {} --limit 300K {}",
        sh_quote(&ctx.home().display().to_string()),
        sh_quote(&ctx.known_hosts().display().to_string()),
        sh_quote(FERRY),
        sh_quote(&p.url("")),
    );
    let t = Tmux::start(&ctx.work(), &command);
    t.wait_screen("the prompt", |s| {
        s.contains("Connected to") && s.contains("ferry:/>")
    });

    t.line("ls");
    t.wait_screen("the listing", |s| {
        s.contains("big.bin") && s.contains("données/")
    });

    // Tab completion of remote paths, one directory level at a time.
    t.type_text("get don");
    t.key("Tab");
    t.wait_screen("completion of the directory", |s| {
        s.contains("get données/")
    });
    t.type_text("rés");
    t.key("Tab");
    t.wait_screen("completion of the file", |s| {
        s.contains("get données/résumé.txt")
    });
    t.key("Enter");
    t.wait_screen("the download summary", |s| {
        s.contains("données/résumé.txt -> résumé.txt") && s.contains("verified by SHA-256 (HASH)")
    });
    assert_eq!(read(&ctx.work().join("résumé.txt")), b"cv\n");

    // A slow download (--limit 300K) shows the progress bar while it runs.
    t.line("get big.bin");
    // Seen mid-way: bytes so far, total, percent, rate and ETA on the bar's line.
    t.wait_screen("the progress bar moving", |s| {
        s.lines().any(|l| {
            l.contains("big.bin")
                && l.contains("KiB/1.14 MiB")
                && l.contains('%')
                && l.contains("KiB/s")
                && l.contains("ETA")
        })
    });
    t.wait_screen("the end of the slow download", |s| {
        s.contains("get big.bin -> big.bin")
    });
    assert_bytes_eq("shell download", &read(&ctx.work().join("big.bin")), &big);

    // mput with a glob: only the matching files go up.
    t.line("mput up*.txt");
    t.wait_screen("the uploads", |s| s.contains("up2.txt -> up2.txt"));
    assert_eq!(read(&p.root.join("up1.txt")), b"one");
    assert_eq!(read(&p.root.join("up2.txt")), b"two");
    assert!(!p.root.join("other.dat").exists());

    // Directories on both sides, and server-side changes.
    t.line("mkdir nouveau");
    t.line("cd nouveau");
    t.wait_screen("the new prompt", |s| s.contains("ferry:/nouveau>"));
    t.line("put up1.txt copie.txt");
    t.wait_screen("the upload", |s| s.contains("up1.txt -> copie.txt"));
    assert_eq!(read(&p.root.join("nouveau/copie.txt")), b"one");
    t.line("mv copie.txt renamed.txt");
    t.line("hash renamed.txt");
    t.wait_screen("the hash", |s| {
        s.contains(
            "SHA-256 7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed  renamed.txt",
        )
    });
    t.line("rm renamed.txt");
    t.line("cd ..");
    t.line("rmdir nouveau");
    t.line("pwd");
    t.wait_screen("pwd", |s| s.lines().any(|l| l.trim() == "/"));
    assert!(!p.root.join("nouveau").exists(), "rmdir ran after rm");
    fs::create_dir_all(ctx.work().join("sub")).expect("mkdir");
    fs::write(ctx.work().join("sub/local-only.txt"), b"l").expect("write");
    t.line("lcd sub");
    t.line("lls");
    t.wait_screen("the local listing", |s| s.contains("local-only.txt"));
    t.line("quota");
    t.wait_screen("the quota error", |s| {
        s.contains("does not support SITE QUOTA")
    });
    t.line("frobnicate");
    t.wait_screen("the unknown-command error", |s| {
        s.contains("unknown command")
    });
    t.line("exit");
    assert!(
        wait_for(Duration::from_secs(10), || !t.alive()),
        "the shell did not exit; screen:\n{}",
        t.screen()
    );
    assert!(
        ctx.home().join(".local/share/ferry/history").exists(),
        "history saved"
    );
}

/// On a terminal, an unknown self-signed certificate is shown and the user is asked; "y"
/// pins it in the known-hosts file, and the command goes on.
#[test]
fn tofu_prompt_on_a_terminal() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key, fp) = self_signed(certs.path(), "tofu");
    let p = PyFtpd::start(&[
        "--tls",
        cert.to_str().expect("utf8"),
        key.to_str().expect("utf8"),
    ]);
    fs::write(p.root.join("seen.txt"), b"x").expect("write");
    let ctx = Ctx::new();
    let command = format!(
        "env LANG=C.UTF-8 HOME={} FERRY_KNOWN_HOSTS={} {} ls {}; echo EXIT=$?; sleep 30",
        sh_quote(&ctx.home().display().to_string()),
        sh_quote(&ctx.known_hosts().display().to_string()),
        sh_quote(FERRY),
        sh_quote(&p.url("")),
    );
    let t = Tmux::start(&ctx.work(), &command);
    let screen = t.wait_screen("the trust question", |s| {
        s.contains("Trust it and remember it")
    });
    assert!(screen.contains(&fp), "fingerprint shown:\n{screen}");
    t.line("y");
    t.wait_screen("the listing and exit status", |s| {
        s.contains("seen.txt") && s.contains("EXIT=0")
    });
    let kh = fs::read_to_string(ctx.known_hosts()).expect("known_hosts");
    assert!(kh.contains(&fp), "{kh}");
}
