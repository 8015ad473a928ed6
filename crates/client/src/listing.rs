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

/// `*`, `?` and `[abc]` matching on one name (mget/mput patterns).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some(('?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some(('[', rest)) => {
                let Some(close) = rest.iter().position(|&c| c == ']') else {
                    return n.first() == Some(&'[') && go(rest, &n[1..]);
                };
                let Some(&c) = n.first() else { return false };
                let set = &rest[..close];
                let (negate, set) = match set.split_first() {
                    Some(('!' | '^', s)) => (true, s),
                    _ => (false, set),
                };
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        hit |= set[i] <= c && c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == c;
                        i += 1;
                    }
                }
                hit != negate && go(&rest[close + 1..], &n[1..])
            }
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
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
    }
}
