//! What a person (or a script) sees while files move.
//!
//! - On a terminal: one indicatif bar per transfer (bytes, percent, rate, ETA) and, for
//!   multi-file commands, an overall bar (files and bytes) below it.
//! - Not a terminal (stdout redirected, CI logs): no bars, one summary line per file.
//! - `--quiet`: nothing but errors. `--json`: one JSON object per file on stdout
//!   (`path`, `local`, `direction`, `bytes`, `seconds`, `hash`, `verified_by`, `result`).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bars,
    Plain,
    Quiet,
    Json,
}

/// The outcome of one file, as reported in the summary line or the JSON line.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub direction: &'static str,
    pub remote: String,
    pub local: String,
    /// Bytes moved in this run (less than the size after a resume).
    pub bytes: u64,
    pub size: u64,
    pub seconds: f64,
    pub hash: Option<String>,
    pub verified_by: Option<String>,
    /// `None` on success, else the error message.
    pub error: Option<String>,
    pub resumed_from: u64,
    pub skipped: bool,
}

impl FileReport {
    /// A report for a transfer about to start.
    pub fn new(direction: &'static str, remote: &str, local: &std::path::Path) -> FileReport {
        FileReport {
            direction,
            remote: remote.to_owned(),
            local: local.display().to_string(),
            bytes: 0,
            size: 0,
            seconds: 0.0,
            hash: None,
            verified_by: None,
            error: None,
            resumed_from: 0,
            skipped: false,
        }
    }
}

pub struct Progress {
    pub mode: Mode,
    /// stdout carries a download (`ferry get URL -`): summary lines go to stderr.
    data_on_stdout: bool,
    multi: MultiProgress,
    overall: Mutex<Option<ProgressBar>>,
    files_total: AtomicU64,
    files_done: AtomicU64,
}

impl Progress {
    pub fn new(quiet: bool, json: bool, data_on_stdout: bool) -> Progress {
        let tty =
            (data_on_stdout || std::io::stdout().is_terminal()) && std::io::stderr().is_terminal();
        let mode = match (json, quiet, tty) {
            (true, _, _) => Mode::Json,
            (false, true, _) => Mode::Quiet,
            (false, false, true) => Mode::Bars,
            (false, false, false) => Mode::Plain,
        };
        let multi = if mode == Mode::Bars {
            MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10))
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        };
        Progress {
            mode,
            data_on_stdout,
            multi,
            overall: Mutex::new(None),
            files_total: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
        }
    }

    /// Adds the overall bar for a multi-file command.
    pub fn start_overall(&self, files: u64, bytes: u64) {
        self.files_total.store(files, Ordering::Relaxed);
        self.files_done.store(0, Ordering::Relaxed);
        if self.mode != Mode::Bars || files < 2 {
            return;
        }
        let bar = self.multi.add(ProgressBar::new(bytes));
        bar.set_style(
            ProgressStyle::with_template(
                "total {msg:>12} [{bar:30.green/white}] {bytes}/{total_bytes} {percent:>3}% {binary_bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(format!("0/{files} files"));
        if let Ok(mut g) = self.overall.lock() {
            *g = Some(bar);
        }
    }

    pub fn finish_overall(&self) {
        if let Ok(mut g) = self.overall.lock() {
            if let Some(bar) = g.take() {
                bar.finish_and_clear();
            }
        }
    }

    fn overall(&self) -> Option<ProgressBar> {
        self.overall.lock().ok().and_then(|g| g.clone())
    }

    /// A bar for one transfer of `total` bytes (unknown: a spinner), starting at `start`.
    pub fn file(&self, label: &str, total: Option<u64>, start: u64) -> FileBar {
        if self.mode != Mode::Bars {
            return FileBar {
                bar: None,
                overall: None,
            };
        }
        let bar = match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::new_spinner(),
        };
        // Insert above the overall bar so the total stays at the bottom.
        let bar = match self.overall() {
            Some(o) => self.multi.insert_before(&o, bar),
            None => self.multi.add(bar),
        };
        let template = if total.is_some() {
            "{msg:30!} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {percent:>3}% {binary_bytes_per_sec} ETA {eta}"
        } else {
            "{msg:30!} {spinner} {bytes} {binary_bytes_per_sec}"
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(label.to_owned());
        bar.set_position(start);
        bar.reset_eta();
        bar.enable_steady_tick(Duration::from_millis(200));
        FileBar {
            bar: Some(bar),
            overall: self.overall(),
        }
    }

    /// Prints the per-file outcome in the current mode.
    pub fn report(&self, r: &FileReport) {
        let done = self.files_done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(o) = self.overall() {
            o.set_message(format!(
                "{done}/{} files",
                self.files_total.load(Ordering::Relaxed)
            ));
        }
        match self.mode {
            Mode::Quiet => {}
            Mode::Json => {
                let line = serde_json::json!({
                    "direction": r.direction,
                    "path": r.remote,
                    "local": r.local,
                    "bytes": r.bytes,
                    "size": r.size,
                    "seconds": (r.seconds * 1000.0).round() / 1000.0,
                    "resumed_from": r.resumed_from,
                    "hash": r.hash,
                    "verified_by": r.verified_by,
                    "result": match (&r.error, r.skipped) {
                        (Some(_), _) => "error",
                        (None, true) => "skipped",
                        (None, false) => "ok",
                    },
                    "error": r.error,
                });
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            Mode::Plain | Mode::Bars => {
                if r.error.is_some() {
                    // The error itself is printed on stderr by the caller.
                    return;
                }
                let arrow = if r.direction == "get" {
                    format!("{} -> {}", r.remote, r.local)
                } else {
                    format!("{} -> {}", r.local, r.remote)
                };
                let line = if r.skipped {
                    format!("skipped {arrow} (up to date)")
                } else {
                    let rate = if r.seconds > 0.0 {
                        format!(", {}/s", HumanBytes((r.bytes as f64 / r.seconds) as u64))
                    } else {
                        String::new()
                    };
                    let resumed = if r.resumed_from > 0 {
                        format!(", resumed at {}", r.resumed_from)
                    } else {
                        String::new()
                    };
                    let verified = match r.verified_by.as_deref() {
                        Some("none") => ", NOT verified (server offers no HASH or SIZE)".to_owned(),
                        Some(m) => format!(", verified by {m}"),
                        None => ", not verified (--no-verify)".to_owned(),
                    };
                    format!(
                        "{} {arrow}: {} in {:.1}s{rate}{resumed}{verified}",
                        r.direction,
                        HumanBytes(r.size),
                        r.seconds
                    )
                };
                self.println(&line);
            }
        }
    }

    /// A line on stdout (stderr when stdout carries a download) that does not tear the bars.
    pub fn println(&self, line: &str) {
        if self.data_on_stdout {
            self.multi.suspend(|| eprintln!("{line}"));
        } else if self.mode == Mode::Bars {
            let _ = self.multi.suspend(|| {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}").and_then(|_| out.flush())
            });
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    /// A notice on stderr (resuming, retrying...), silent with --quiet.
    pub fn note(&self, line: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Json => eprintln!("ferry: {line}"),
            Mode::Bars => self.multi.suspend(|| eprintln!("ferry: {line}")),
            Mode::Plain => eprintln!("ferry: {line}"),
        }
    }
}

/// The bar of one transfer, plus the overall bar it feeds.
pub struct FileBar {
    bar: Option<ProgressBar>,
    overall: Option<ProgressBar>,
}

impl FileBar {
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        if let Some(o) = &self.overall {
            o.inc(n);
        }
    }

    /// Moves the bar back to `pos` after a restart (the overall bar loses the difference).
    pub fn rewind(&self, pos: u64) {
        if let Some(b) = &self.bar {
            let lost = b.position().saturating_sub(pos);
            b.set_position(pos);
            if let Some(o) = &self.overall {
                o.set_position(o.position().saturating_sub(lost));
            }
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Drop for FileBar {
    fn drop(&mut self) {
        self.finish();
    }
}
