//! The interactive shell: `ferry ftp://user@host:port/dir`.
//!
//! rustyline gives line editing, a history file (`~/.local/share/ferry/history`) and tab
//! completion: command names, local paths for `lcd`, `lls`, `put`, `mput`, and remote paths
//! for everything else, from a per-directory listing cache that mutating commands clear.
//! Arguments are split like a POSIX shell does for quotes and backslashes, so
//! `get "emoji 🚀/x.txt"` and `get emoji\ 🚀/x.txt` both work.
//!
//! The readline loop runs on the main thread, outside the tokio runtime; each command (and
//! each remote completion) is one `block_on` on the same [`Client`], so the connection,
//! its TLS session and its working directory persist across commands.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Context, Editor, Helper};
use tokio::runtime::{Handle, Runtime};

use crate::cli::{self, Global};
use crate::error::{Error, Result};
use crate::listing::{self, RemoteEntry};
use crate::progress::Progress;
use crate::target::Target;
use crate::transfer::Client;

const COMMANDS: &[(&str, &str)] = &[
    ("ls", "ls [PATH]            list a remote directory"),
    ("cd", "cd PATH              change the remote directory"),
    ("pwd", "pwd                  print the remote directory"),
    ("lcd", "lcd [DIR]            change the local directory"),
    ("lls", "lls [DIR]            list a local directory"),
    ("get", "get REMOTE [LOCAL]   download a file"),
    ("put", "put LOCAL [REMOTE]   upload a file"),
    (
        "mget",
        "mget PATTERN...      download files matching * ? [..]",
    ),
    (
        "mput",
        "mput PATTERN...      upload local files matching * ? [..]",
    ),
    ("mkdir", "mkdir PATH           create a remote directory"),
    (
        "rmdir",
        "rmdir PATH           remove an empty remote directory",
    ),
    ("rm", "rm PATH...           delete remote files"),
    ("mv", "mv FROM TO           rename on the server"),
    ("hash", "hash PATH            the server's digest of a file"),
    (
        "quota",
        "quota                the user's quota (SITE QUOTA)",
    ),
    ("help", "help                 this list"),
    (
        "exit",
        "exit                 leave (also quit, bye, Ctrl-D)",
    ),
];

type Shared = Arc<tokio::sync::Mutex<Client>>;
type Cache = Arc<Mutex<HashMap<String, Vec<RemoteEntry>>>>;

enum Flow {
    Continue,
    Quit,
}

pub fn run(rt: &Runtime, g: &Global, url: &str) -> Result<()> {
    let target = Target::parse(url)?;
    let progress = Arc::new(Progress::new(g.quiet, g.json, false));
    let mut client = rt.block_on(g.client(&target, g.transfer_options(false, false), progress))?;
    rt.block_on(async {
        if !target.path.is_empty() {
            let r = client.conn().await?.cwd(&target.path).await;
            client.check(r)?;
        }
        let r = client.conn().await?.pwd().await;
        client.cwd = Some(client.check(r)?);
        Ok::<(), Error>(())
    })?;
    let tls = rt.block_on(async {
        client
            .conn()
            .await
            .map(|c| (c.is_tls(), c.data_protected()))
    })?;
    println!(
        "Connected to {} ({}). Type help for commands.",
        target.host_port(),
        match tls {
            (true, true) => "TLS, data protected",
            (true, false) => "TLS control, clear data",
            _ => "no TLS",
        }
    );
    let shared: Shared = Arc::new(tokio::sync::Mutex::new(client));
    let cache: Cache = Arc::new(Mutex::new(HashMap::new()));
    let helper = ShellHelper {
        rt: rt.handle().clone(),
        client: shared.clone(),
        cache: cache.clone(),
        files: FilenameCompleter::new(),
    };
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .auto_add_history(true)
        .max_history_size(1000)
        .map_err(|e| Error::Usage(format!("line editor: {e}")))?
        .build();
    let mut ed: Editor<ShellHelper, DefaultHistory> =
        Editor::with_config(config).map_err(|e| Error::Usage(format!("line editor: {e}")))?;
    ed.set_helper(Some(helper));
    let history = history_path();
    if let Some(h) = &history {
        let _ = ed.load_history(h);
    }
    loop {
        let cwd = rt.block_on(async { shared.lock().await.cwd.clone() });
        let prompt = format!("ferry:{}> ", cwd.as_deref().unwrap_or("?"));
        match ed.readline(&prompt) {
            Ok(line) => {
                let words = split_words(&line);
                if words.is_empty() {
                    continue;
                }
                match rt.block_on(exec(&shared, &cache, &words)) {
                    Ok(Flow::Quit) => break,
                    Ok(Flow::Continue) => {}
                    Err(e) => eprintln!("ferry: error: {e}"),
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(Error::Usage(format!("reading the command line: {e}"))),
        }
    }
    if let Some(h) = &history {
        if let Some(dir) = h.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = ed.save_history(h);
    }
    drop(ed);
    rt.block_on(async { shared.lock().await.close().await });
    Ok(())
}

fn history_path() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("ferry").join("history"))
}

fn need<'a>(words: &'a [String], i: usize, usage: &str) -> Result<&'a str> {
    words
        .get(i)
        .map(String::as_str)
        .ok_or_else(|| Error::Usage(format!("usage: {usage}")))
}

async fn exec(shared: &Shared, cache: &Cache, words: &[String]) -> Result<Flow> {
    let cmd = words[0].as_str();
    let mut c = shared.lock().await;
    let invalidate = || {
        if let Ok(mut g) = cache.lock() {
            g.clear();
        }
    };
    match cmd {
        "exit" | "quit" | "bye" => return Ok(Flow::Quit),
        "help" | "?" => {
            for (_, line) in COMMANDS {
                println!("  {line}");
            }
        }
        "pwd" => println!("{}", c.cwd.as_deref().unwrap_or("?")),
        "cd" => {
            let dir = need(words, 1, "cd PATH")?;
            let r = c.conn().await?.cwd(dir).await;
            c.check(r)?;
            let r = c.conn().await?.pwd().await;
            c.cwd = Some(c.check(r)?);
        }
        "ls" | "dir" => {
            let path = words.get(1).map(String::as_str).unwrap_or("");
            let r = cli::list_or_stat(&mut c, path).await;
            for e in c.check(r)? {
                println!("{}", cli::format_entry(&e, false));
            }
        }
        "lcd" => {
            let dir = match words.get(1) {
                Some(d) => PathBuf::from(d),
                None => dirs::home_dir().unwrap_or_else(|| PathBuf::from(".")),
            };
            std::env::set_current_dir(&dir).map_err(|e| Error::local(&dir, e))?;
            let now = std::env::current_dir().map_err(|e| Error::local(&dir, e))?;
            println!("local directory: {}", now.display());
        }
        "lls" => {
            let dir = words
                .get(1)
                .map(PathBuf::from)
                .unwrap_or_else(|| ".".into());
            for line in local_listing(&dir)? {
                println!("{line}");
            }
        }
        "get" => {
            let remote = need(words, 1, "get REMOTE [LOCAL]")?;
            let dest = words.get(2).map(Path::new);
            if dest.is_some_and(crate::transfer::is_stdio) {
                // The shell's own output is on stdout; `./-` names a file called `-`.
                return Err(Error::Usage(
                    "- (standard output) is for `ferry get URL -`; here write ./- for a file named -"
                        .into(),
                ));
            }
            cli::get_paths(&mut c, remote, dest).await?;
        }
        "mget" => {
            need(words, 1, "mget PATTERN...")?;
            for pat in &words[1..] {
                cli::get_paths(&mut c, pat, None).await?;
            }
        }
        "put" => {
            let local = PathBuf::from(need(words, 1, "put LOCAL [REMOTE]")?);
            if local.is_dir() || !local.exists() {
                return Err(Error::Usage(format!("{} is not a file", local.display())));
            }
            let remote = words.get(2).map(String::as_str).unwrap_or("");
            invalidate();
            cli::put_paths(&mut c, &[local], remote).await?;
        }
        "mput" => {
            need(words, 1, "mput PATTERN...")?;
            let mut files = Vec::new();
            for pat in &words[1..] {
                files.extend(expand_local(pat)?);
            }
            if files.is_empty() {
                return Err(Error::Usage("no local file matches".into()));
            }
            invalidate();
            cli::put_paths(&mut c, &files, "").await?;
        }
        "mkdir" | "rmdir" | "rm" | "delete" => {
            let usage = format!("{cmd} PATH...");
            need(words, 1, &usage)?;
            invalidate();
            let op = if cmd == "delete" { "rm" } else { cmd };
            for p in &words[1..] {
                cli::shell_simple(&mut c, p, op, None).await?;
            }
        }
        "mv" | "rename" => {
            let from = need(words, 1, "mv FROM TO")?;
            let to = need(words, 2, "mv FROM TO")?;
            invalidate();
            cli::shell_simple(&mut c, from, "mv", Some(to)).await?;
        }
        "hash" => {
            let p = need(words, 1, "hash PATH")?;
            cli::shell_simple(&mut c, p, "hash", None).await?;
        }
        "quota" => cli::shell_simple(&mut c, "", "quota", None).await?,
        other => {
            return Err(Error::Usage(format!(
                "unknown command {other:?}; type help"
            )))
        }
    }
    Ok(Flow::Continue)
}

fn local_listing(dir: &Path) -> Result<Vec<String>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::local(dir, e))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    Ok(entries
        .iter()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            match e.metadata() {
                Ok(m) if m.is_dir() => format!("d {:>12}  {name}/", "-"),
                Ok(m) => format!("- {:>12}  {name}", m.len()),
                Err(_) => format!("? {:>12}  {name}", "-"),
            }
        })
        .collect())
}

/// Local files matching a pattern whose last component may hold `*`, `?`, `[..]`.
fn expand_local(pattern: &str) -> Result<Vec<PathBuf>> {
    let p = Path::new(pattern);
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !listing::has_glob(name) {
        return Ok(vec![p.to_owned()]);
    }
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::local(dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| listing::glob_match(name, n))
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    Ok(out)
}

/// Splits a command line into words: whitespace separates, `'...'` and `"..."` group,
/// backslash escapes the next character.
pub fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Start (byte index) of the word the cursor is in, honouring backslash-escaped spaces.
fn word_start(before: &str) -> usize {
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in before.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
        } else if c == ' ' {
            start = i + 1;
        }
    }
    start
}

fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, ' ' | '\\' | '"' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

struct ShellHelper {
    rt: Handle,
    client: Shared,
    cache: Cache,
    files: FilenameCompleter,
}

impl ShellHelper {
    fn remote_entries(&self, dir: &str) -> Vec<RemoteEntry> {
        let cwd = self
            .rt
            .block_on(async { self.client.lock().await.cwd.clone() })
            .unwrap_or_default();
        let key = format!("{cwd}\n{dir}");
        if let Ok(g) = self.cache.lock() {
            if let Some(v) = g.get(&key) {
                return v.clone();
            }
        }
        let listed = self.rt.block_on(async {
            let mut c = self.client.lock().await;
            let r = match c.conn().await {
                Ok(conn) => conn.list_dir(dir).await,
                Err(e) => Err(e),
            };
            c.check(r)
        });
        match listed {
            Ok(v) => {
                if let Ok(mut g) = self.cache.lock() {
                    g.insert(key, v.clone());
                }
                v
            }
            Err(_) => Vec::new(),
        }
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = word_start(before);
        let earlier = split_words(&before[..start]);
        let word = split_words(&before[start..]).pop().unwrap_or_default();
        let Some(cmd) = earlier.first() else {
            let c = COMMANDS
                .iter()
                .filter(|(n, _)| n.starts_with(&word))
                .map(|(n, _)| Pair {
                    display: (*n).to_owned(),
                    replacement: format!("{n} "),
                })
                .collect();
            return Ok((start, c));
        };
        let local = match cmd.as_str() {
            "lcd" | "lls" | "mput" => true,
            "put" => earlier.len() == 1,
            "get" => earlier.len() >= 2,
            _ => false,
        };
        if local {
            return self.files.complete(line, pos, ctx);
        }
        let (dir, prefix) = match word.rfind('/') {
            Some(i) => (&word[..=i], &word[i + 1..]),
            None => ("", word.as_str()),
        };
        let list_dir = if dir.len() > 1 {
            dir.trim_end_matches('/')
        } else {
            dir
        };
        let candidates = self
            .remote_entries(list_dir)
            .into_iter()
            .filter(|e| e.name.starts_with(prefix))
            .map(|e| {
                let slash = if e.is_dir() { "/" } else { "" };
                Pair {
                    display: format!("{}{slash}", e.name),
                    replacement: format!("{}{}{slash}", escape(dir), escape(&e.name)),
                }
            })
            .collect();
        Ok((start, candidates))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(
            split_words("get  a\\ b 'c d' \"e\\\"f\""),
            ["get", "a b", "c d", "e\"f"]
        );
        assert_eq!(split_words("   "), Vec::<String>::new());
        assert_eq!(split_words("cd ''"), ["cd", ""]);
    }

    #[test]
    fn word_starts() {
        assert_eq!(word_start("get emo"), 4);
        assert_eq!(word_start("get emoji\\ 🚀/x"), 4);
        assert_eq!(word_start("get "), 4);
        assert_eq!(escape("a b"), "a\\ b");
    }
}
