//! Parsing directory listings: MLSD facts (RFC 3659 §7.2) and, for servers without MLSD, the
//! `LIST` formats found in the wild (Unix `ls -l`, and DOS/IIS).
//!
//! The formatting side lives in `ferry_proto::listing`; this is its reader. Unparsable lines
//! are skipped, never fatal: LIST output is not standardised (RFC 959 §4.1.3).

use ferry_proto::listing::parse_mdtm;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Link,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    pub name: String,
    pub kind: Kind,
    pub size: Option<u64>,
    /// Unix seconds UTC, when the listing says (MLSD `modify`; LIST dates are too vague).
    pub mtime: Option<i64>,
}

impl RemoteEntry {
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }
}

/// `type=file;size=12;modify=20240101120000; name` -> entry. `cdir`/`pdir` are dropped.
pub fn parse_mlsd_line(line: &str) -> Option<RemoteEntry> {
    // Facts end at the first space; the name is everything after it (it may contain spaces
    // and semicolons).
    let (facts, name) = line.split_once(' ')?;
    if name.is_empty() {
        return None;
    }
    let mut kind = Kind::Other;
    let mut size = None;
    let mut mtime = None;
    for fact in facts.split(';').filter(|f| !f.is_empty()) {
        let (k, v) = fact.split_once('=')?;
        match k.to_ascii_lowercase().as_str() {
            "type" => {
                let v = v.to_ascii_lowercase();
                kind = match v.as_str() {
                    "file" => Kind::File,
                    "dir" => Kind::Dir,
                    "cdir" | "pdir" => return None,
                    _ if v.starts_with("os.unix=symlink") || v.starts_with("os.unix=slink") => {
                        Kind::Link
                    }
                    _ => Kind::Other,
                }
            }
            "size" => size = v.parse().ok(),
            "modify" => mtime = parse_mdtm(v),
            _ => {}
        }
    }
    Some(RemoteEntry {
        name: name.to_owned(),
        kind,
        size,
        mtime,
    })
}

/// One `LIST` line: Unix `drwxr-xr-x 2 owner group 4096 Nov 23 03:57 name` (owner/group
/// optional columns tolerated) or DOS `11-23-24  03:57PM  <DIR>  name`.
pub fn parse_list_line(line: &str) -> Option<RemoteEntry> {
    parse_unix(line).or_else(|| parse_dos(line))
}

/// Splits off `n` whitespace-separated fields and returns them with the rest of the line
/// (with its inner spaces intact).
fn fields(line: &str, n: usize) -> Option<(Vec<&str>, &str)> {
    let mut out = Vec::with_capacity(n);
    let mut rest = line;
    for _ in 0..n {
        rest = rest.trim_start_matches([' ', '\t']);
        let end = rest.find([' ', '\t']).unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    // Exactly one separator run before the name; names starting with spaces are rare in
    // practice and ambiguous in this format anyway.
    Some((out, rest.trim_start_matches([' ', '\t'])))
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn parse_unix(line: &str) -> Option<RemoteEntry> {
    let kind = match line.chars().next()? {
        '-' => Kind::File,
        'd' => Kind::Dir,
        'l' => Kind::Link,
        'b' | 'c' | 'p' | 's' => Kind::Other,
        _ => return None,
    };
    let perms = line.split_whitespace().next()?;
    if perms.len() < 10 {
        return None;
    }
    // Find the month column: `perms links owner group size Mon DD time name`, but some
    // servers omit the group (or owner), so locate it instead of counting.
    let cols: Vec<&str> = line.split_whitespace().collect();
    let month_at = (3..cols.len().saturating_sub(3)).find(|&i| {
        MONTHS.contains(&cols[i].to_ascii_lowercase().as_str())
            && cols[i - 1].bytes().all(|b| b.is_ascii_digit())
    })?;
    let (cols, name) = fields(line, month_at + 3)?;
    let size = cols[month_at - 1].parse().ok();
    let mut name = name.to_owned();
    if kind == Kind::Link {
        if let Some(i) = name.find(" -> ") {
            name.truncate(i);
        }
    }
    if name.is_empty() {
        return None;
    }
    Some(RemoteEntry {
        name,
        kind,
        size,
        mtime: None,
    })
}

fn parse_dos(line: &str) -> Option<RemoteEntry> {
    let (cols, name) = fields(line, 3)?;
    let date = cols[0];
    if !(date.len() >= 8
        && date
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b == b'/'))
    {
        return None;
    }
    let (kind, size) = if cols[2].eq_ignore_ascii_case("<DIR>") {
        (Kind::Dir, None)
    } else {
        (Kind::File, Some(cols[2].parse().ok()?))
    };
    (!name.is_empty()).then(|| RemoteEntry {
        name: name.to_owned(),
        kind,
        size,
        mtime: None,
    })
}

/// `*`, `?` and `[abc]` matching on one name (mget/mput patterns): `[a-z]` ranges, `[!...]` or
/// `[^...]` negates, and a `[` with no `]` after it is a literal `[`.
///
/// The names come from the server, so the time must not explode: a backtracking matcher takes
/// hours for `*a*a*a*a*a*a*b` against a name of 300 `a`s. This is the two-pointer match: on a
/// mismatch only the last `*` takes one more character and the rest is retried (an earlier
/// `*` never needs to, since every other element matches exactly one character), at most
/// pattern length x name length steps.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let pattern = glob_elements(pattern);
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    // After the last `*` seen: the element that follows it, and where in the name it resumes.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(Glob::Star) => {
                star = Some((p + 1, n));
                p += 1;
            }
            Some(one) if one.matches(name[n]) => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((after, from)) => {
                    star = Some((after, from + 1));
                    p = after;
                    n = from + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|e| matches!(e, Glob::Star))
}

/// One element of a pattern; all but `Star` match exactly one character.
enum Glob {
    Star,
    Any,
    Char(char),
    /// `[...]`: characters and `a-z` ranges.
    Set {
        negate: bool,
        items: Vec<char>,
    },
}

impl Glob {
    fn matches(&self, c: char) -> bool {
        match self {
            Glob::Star => false,
            Glob::Any => true,
            Glob::Char(x) => *x == c,
            Glob::Set { negate, items } => {
                let mut hit = false;
                let mut i = 0;
                while i < items.len() {
                    if i + 2 < items.len() && items[i + 1] == '-' {
                        hit |= items[i] <= c && c <= items[i + 2];
                        i += 3;
                    } else {
                        hit |= items[i] == c;
                        i += 1;
                    }
                }
                hit != *negate
            }
        }
    }
}

fn glob_elements(pattern: &str) -> Vec<Glob> {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        out.push(match p[i] {
            '*' => Glob::Star,
            '?' => Glob::Any,
            '[' => match p[i + 1..].iter().position(|&c| c == ']') {
                None => Glob::Char('['),
                Some(close) => {
                    let set = &p[i + 1..i + 1 + close];
                    i += close + 1;
                    match set.split_first() {
                        Some(('!' | '^', items)) => Glob::Set {
                            negate: true,
                            items: items.to_vec(),
                        },
                        _ => Glob::Set {
                            negate: false,
                            items: set.to_vec(),
                        },
                    }
                }
            },
            c => Glob::Char(c),
        });
        i += 1;
    }
    out
}

pub fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlsd_lines() {
        let e = parse_mlsd_line("type=file;size=12;modify=20240102030405;perm=r; a b;c.txt")
            .expect("parses");
        assert_eq!(e.name, "a b;c.txt");
        assert_eq!(e.kind, Kind::File);
        assert_eq!(e.size, Some(12));
        assert_eq!(e.mtime, Some(1_704_164_645));
        assert_eq!(
            parse_mlsd_line("Type=dir;Modify=20240102030405; données").map(|e| (e.name, e.kind)),
            Some(("données".into(), Kind::Dir))
        );
        assert_eq!(parse_mlsd_line("type=cdir; ."), None);
        assert_eq!(parse_mlsd_line("garbage"), None);
    }

    #[test]
    fn unix_list_lines() {
        let e = parse_list_line(
            "-rw-r--r--    1 ftp      ftp          1234 Nov 23 03:57 emoji 🚀 x.txt",
        )
        .expect("parses");
        assert_eq!(
            (e.name.as_str(), e.kind, e.size),
            ("emoji 🚀 x.txt", Kind::File, Some(1234))
        );
        let e = parse_list_line("drwxr-xr-x 2 owner 4096 Jan  1  2020 dir").expect("no group");
        assert_eq!((e.name.as_str(), e.kind), ("dir", Kind::Dir));
        let e = parse_list_line("lrwxrwxrwx 1 u g 7 Jan 1 2020 link -> target").expect("link");
        assert_eq!((e.name.as_str(), e.kind), ("link", Kind::Link));
        assert_eq!(parse_list_line("total 12"), None);
    }

    #[test]
    fn dos_list_lines() {
        let e = parse_list_line("11-23-24  03:57PM       <DIR>          My Docs").expect("dir");
        assert_eq!((e.name.as_str(), e.kind), ("My Docs", Kind::Dir));
        let e = parse_list_line("11-23-24  03:57PM                 123 a.txt").expect("file");
        assert_eq!((e.name.as_str(), e.size), ("a.txt", Some(123)));
    }

    #[test]
    fn globs() {
        assert!(glob_match("*.txt", "résumé.txt"));
        assert!(!glob_match("*.txt", "a.bin"));
        assert!(glob_match("f?le[0-9].*", "file7.bin"));
        assert!(!glob_match("f[!i]le", "file"));
        assert!(glob_match("*", ""));
        assert!(has_glob("a*") && !has_glob("plain"));
        // Sets: ranges, negation both ways, `]` first closes an empty set, `[` without `]`.
        assert!(glob_match("[^a-c]x", "dx") && !glob_match("[^a-c]x", "bx"));
        assert!(glob_match("[!]", "z") && !glob_match("[]]", "]"));
        assert!(glob_match("a[b", "a[b") && !glob_match("a[b", "ab"));
        assert!(glob_match("[a-]", "-") && glob_match("x*[*]", "xyz*"));
        assert!(glob_match("**a*", "bab") && !glob_match("*a?", "ba"));
    }

    /// Caught by the listing_parse fuzz target's time limit: the recursive matcher
    /// backtracked through every way to place the stars, C(300, 6) tries here, hours for one
    /// name a server can send; the two-pointer match answers at once.
    #[test]
    fn glob_time_stays_polynomial() {
        let name = "a".repeat(300);
        assert!(!glob_match("*a*a*a*a*a*a*b", &name));
        assert!(glob_match("*a*a*a*a*a*a*", &name));
        let long = format!("{}b", "a".repeat(64 * 1024));
        assert!(glob_match("*a*?*[ab]*[!c]*b", &long));
        assert!(!glob_match("*a*?*[ab]*[!c]*c", &long));
    }
}
