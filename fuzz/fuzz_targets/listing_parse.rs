//! The client's listing readers (ferry-client `listing.rs`): MLSD lines, LIST lines (Unix
//! `ls -l` and DOS/IIS) and the mget/mput pattern matcher applied to the names they yield.
//!
//! Input: text; its first line is a pattern, every other line is read both as an MLSD line
//! and as a LIST line, as `Conn::list` and `is_remote_dir` do. Checks: no panic, no blow-up
//! (the names and the pattern come from the server and the user: matching must stay
//! polynomial); an entry's name is non-empty and comes from the line (MLSD: all of the text
//! after the facts; LIST: a piece of the line); `glob_match` agrees with a plain dynamic-
//! programming matcher of the same wildcard rules.
#![no_main]

use ferry_client::listing::{glob_match, parse_list_line, parse_mlsd_line};
use libfuzzer_sys::fuzz_target;

/// One pattern element, each matching exactly one character except `Star`.
enum Token {
    Star,
    Any,
    Char(char),
    /// `[...]`: single characters and `a-z` ranges, `!` or `^` first to negate.
    Set {
        negate: bool,
        items: Vec<char>,
    },
}

/// The wildcard rules of `glob_match`, as documented there: `*`, `?`, `[set]`; a `[` with no
/// `]` after it is a literal `[`.
fn tokens(pattern: &str) -> Vec<Token> {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '*' => out.push(Token::Star),
            '?' => out.push(Token::Any),
            '[' => match p[i + 1..].iter().position(|&c| c == ']') {
                None => out.push(Token::Char('[')),
                Some(close) => {
                    let set = &p[i + 1..i + 1 + close];
                    let (negate, set) = match set.split_first() {
                        Some(('!' | '^', s)) => (true, s),
                        _ => (false, set),
                    };
                    out.push(Token::Set {
                        negate,
                        items: set.to_vec(),
                    });
                    i += close + 1;
                }
            },
            c => out.push(Token::Char(c)),
        }
        i += 1;
    }
    out
}

fn set_has(items: &[char], c: char) -> bool {
    let mut i = 0;
    while i < items.len() {
        if i + 2 < items.len() && items[i + 1] == '-' {
            if items[i] <= c && c <= items[i + 2] {
                return true;
            }
            i += 3;
        } else {
            if items[i] == c {
                return true;
            }
            i += 1;
        }
    }
    false
}

/// `dp[t][n]`: tokens `t..` match name chars `n..`.
fn oracle(pattern: &str, name: &str) -> Option<bool> {
    let toks = tokens(pattern);
    let name: Vec<char> = name.chars().collect();
    if (toks.len() + 1) * (name.len() + 1) > 200_000 {
        return None;
    }
    let w = name.len() + 1;
    let mut dp = vec![false; (toks.len() + 1) * w];
    dp[toks.len() * w + name.len()] = true;
    for t in (0..toks.len()).rev() {
        for n in (0..=name.len()).rev() {
            let one = |ok: bool| ok && n < name.len() && dp[(t + 1) * w + n + 1];
            dp[t * w + n] = match &toks[t] {
                Token::Star => dp[(t + 1) * w + n] || (n < name.len() && dp[t * w + n + 1]),
                Token::Any => one(true),
                Token::Char(c) => one(name.get(n) == Some(c)),
                Token::Set { negate, items } => {
                    one(name.get(n).is_some_and(|&c| set_has(items, c) != *negate))
                }
            };
        }
    }
    Some(dp[0])
}

fn check_glob(pattern: &str, name: &str) {
    let got = glob_match(pattern, name);
    if let Some(want) = oracle(pattern, name) {
        assert_eq!(got, want, "pattern {pattern:?} name {name:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let pattern = lines.next().unwrap_or_default();
    for line in lines {
        if let Some(e) = parse_mlsd_line(line) {
            let (_, name) = line.split_once(' ').expect("facts end at a space");
            assert_eq!(e.name, name, "MLSD name of {line:?}");
            assert!(!e.name.is_empty());
            check_glob(pattern, &e.name);
        }
        let trimmed = line.trim_start();
        if let Some(e) = parse_mlsd_line(trimmed) {
            assert!(trimmed.ends_with(&e.name));
        }
        if let Some(e) = parse_list_line(line) {
            assert!(!e.name.is_empty(), "empty LIST name from {line:?}");
            assert!(line.contains(&e.name), "{:?} not in {line:?}", e.name);
            assert_eq!(e.mtime, None, "LIST dates are not read");
            check_glob(pattern, &e.name);
        }
        check_glob(pattern, line);
    }
});
