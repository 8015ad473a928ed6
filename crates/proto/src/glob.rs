//! FTP wildcards: the shell-style patterns clients put in `NLST *.txt` or `LIST a?c`.
//!
//! No RFC defines them; servers follow the shell (`glob(7)`, `fnmatch(3)` with `FNM_PERIOD`), and
//! so does this module: `*` matches any run of characters, `?` one character, `[abc]`, `[a-z]`
//! one of a set, `[!x]` / `[^x]` one character not in it. A `]` right after the opening `[` (or
//! `[!`) is a member, a `-` first or last is a literal, and a `[` without its `]` is an ordinary
//! character. There are no escapes: `\` is an ordinary name character here, as it is on the
//! server's file system. A name starting with `.` only matches a pattern starting with `.`, so
//! `*` does not list dot files (vsftpd and the shell agree).
//!
//! A pattern matches one name (one path component); it never sees a `/`. Matching is the
//! two-pointer star algorithm: on a mismatch only the most recent `*` takes one more character,
//! so the time is at most pattern length x name length, never exponential however many stars
//! a hostile pattern holds.

/// Whether `name` holds any wildcard character (`*`, `?`, `[`), so it should be matched rather
/// than opened.
pub fn has_wildcards(name: &str) -> bool {
    name.contains(['*', '?', '['])
}

/// Whether `name` matches the wildcard `pattern` (see the module documentation).
pub fn matches(pattern: &str, name: &str) -> bool {
    Pattern::new(pattern).matches(name)
}

/// A pattern parsed once, for matching every name of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    tokens: Vec<Token>,
    /// The pattern starts with a literal `.`: only then may it match a dot file.
    leading_dot: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`
    Any,
    /// `*` (consecutive stars are one).
    Star,
    /// `[...]`: inclusive ranges (a single member is a range of one).
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    /// Whether this non-star token matches one character.
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Char(want) => *want == c,
            Token::Any => true,
            Token::Star => false,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

impl Pattern {
    pub fn new(pattern: &str) -> Pattern {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::with_capacity(chars.len());
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    if tokens.last() != Some(&Token::Star) {
                        tokens.push(Token::Star);
                    }
                    i += 1;
                }
                '?' => {
                    tokens.push(Token::Any);
                    i += 1;
                }
                '[' => match parse_class(&chars[i + 1..]) {
                    Some((token, used)) => {
                        tokens.push(token);
                        i += 1 + used;
                    }
                    None => {
                        tokens.push(Token::Char('['));
                        i += 1;
                    }
                },
                c => {
                    tokens.push(Token::Char(c));
                    i += 1;
                }
            }
        }
        Pattern {
            tokens,
            leading_dot: pattern.starts_with('.'),
        }
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        if name.starts_with('.') && !self.leading_dot {
            return false;
        }
        let toks = &self.tokens;
        // `pi` indexes tokens, `ni` bytes of `name`; `star` is the token after the last `*`
        // seen and the name position that star's match currently ends at.
        let (mut pi, mut ni) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        loop {
            if let Some(tok) = toks.get(pi) {
                if *tok == Token::Star {
                    pi += 1;
                    star = Some((pi, ni));
                    continue;
                }
                if let Some(c) = name[ni..].chars().next() {
                    if tok.matches(c) {
                        pi += 1;
                        ni += c.len_utf8();
                        continue;
                    }
                }
            } else if ni == name.len() {
                return true;
            }
            // Mismatch: let the last star swallow one more character and retry after it.
            let Some((after_star, star_end)) = star else {
                return false;
            };
            let Some(c) = name[star_end..].chars().next() else {
                return false;
            };
            let star_end = star_end + c.len_utf8();
            star = Some((after_star, star_end));
            pi = after_star;
            ni = star_end;
        }
    }
}

/// Parses a class after its `[`; returns the token and how many characters it used (through
/// the closing `]`), or `None` when there is no closing `]`.
fn parse_class(chars: &[char]) -> Option<(Token, usize)> {
    let mut i = 0;
    let negated = matches!(chars.first(), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *chars.get(i)?;
        if c == ']' && !first {
            return Some((Token::Class { negated, ranges }, i + 1));
        }
        first = false;
        // `a-z`, unless the `-` is last (`[a-]`), where it is a member.
        match (chars.get(i + 1), chars.get(i + 2)) {
            (Some('-'), Some(&hi)) if hi != ']' => {
                ranges.push((c, hi));
                i += 3;
            }
            _ => {
                ranges.push((c, c));
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_detected() {
        for (name, want) in [
            ("*.txt", true),
            ("a?c", true),
            ("[ab]", true),
            ("plain.txt", false),
            ("a\\b", false),
            ("", false),
        ] {
            assert_eq!(has_wildcards(name), want, "{name:?}");
        }
    }

    #[test]
    fn match_table() {
        let cases: &[(&str, &str, bool)] = &[
            // (pattern, name, matches)
            ("*", "a", true),
            ("*", "", true),
            ("*.txt", "notes.txt", true),
            ("*.txt", "notes.txt.bak", false),
            ("*.txt", ".txt", false),
            ("a*", "a", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "acb", false),
            ("*b", "bbb", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "a数c", true),
            ("???", "ab", false),
            ("[abc]x", "bx", true),
            ("[abc]x", "dx", false),
            ("[a-c]", "b", true),
            ("[a-c]", "d", false),
            ("[!a-c]", "d", true),
            ("[!a-c]", "b", false),
            ("[^x]", "y", true),
            ("[^x]", "x", false),
            ("[]a]", "]", true),
            ("[]a]", "a", true),
            ("[!]]", "]", false),
            ("[!]]", "x", true),
            ("[a-]", "-", true),
            ("[-a]", "-", true),
            ("[z-a]", "m", false),
            ("[数-数]", "数", true),
            // An unterminated class is a literal `[`.
            ("a[b", "a[b", true),
            ("a[", "a[", true),
            ("[", "[", true),
            // Backslash is an ordinary character, not an escape.
            ("a\\*", "a\\b", true),
            ("a\\b", "a\\b", true),
            ("\\*", "*", false),
            // Dot files need a leading literal dot.
            ("*", ".hidden", false),
            ("?hidden", ".hidden", false),
            ("[.]hidden", ".hidden", false),
            (".*", ".hidden", true),
            (".h*", ".hidden", true),
            ("*", "not.hidden", true),
            ("", "", true),
            ("", "a", false),
            ("abc", "abc", true),
            ("abc", "abd", false),
        ];
        for &(pattern, name, want) in cases {
            assert_eq!(matches(pattern, name), want, "{pattern:?} vs {name:?}");
        }
    }

    #[test]
    fn stars_do_not_backtrack_exponentially() {
        // Classic blow-up for recursive matchers: a*a*a*...b against aaaa...
        let pattern = format!("{}b", "a*".repeat(100));
        let name = "a".repeat(10_000);
        let started = std::time::Instant::now();
        assert!(!matches(&pattern, &name));
        assert!(matches(&pattern, &format!("{name}b")));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn consecutive_stars_collapse() {
        assert_eq!(Pattern::new("a***b"), Pattern::new("a*b"));
    }
}
