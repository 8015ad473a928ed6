//! Directory listing formats and FTP timestamps.
//!
//! This module owns the text sent on the data connection for `LIST` (the de-facto
//! `ls -l` format that RFC 959 leaves unspecified, in the shape lftp, curl, FileZilla and
//! Python's ftputil parse), the machine-readable facts for `MLSD`/`MLST` (RFC 3659 §7), and the
//! `YYYYMMDDHHMMSS` UTC timestamps of `MDTM`/`MFMT` and the `modify` fact (RFC 3659 §2.3).
//! It is sans-IO: callers fill an [`Entry`] from `stat` and get strings back.
//!
//! Calendar arithmetic is done here with Howard Hinnant's `days_from_civil` /
//! `civil_from_days` (proleptic Gregorian, UTC, no leap seconds) so the crate stays free of
//! dependencies. Every function is total over `i64` seconds: nothing here can panic on
//! hostile or corrupt timestamps.

use std::fmt::Write as _;

/// What kind of filesystem object an [`Entry`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// Devices, FIFOs, sockets...: listed, but not something a client can transfer.
    Other,
}

/// One directory entry, as the server learned it from `stat`.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
    pub size: u64,
    /// Modification time, unix seconds UTC.
    pub mtime: i64,
    /// `st_mode` permission bits (`0o7777`); file-type bits are ignored.
    pub mode: u32,
    pub nlink: u64,
    /// `(dev, ino)`, used for the `unique` fact.
    pub unique: (u64, u64),
}

const SECS_PER_DAY: i64 = 86_400;
/// `ls -l` shows the time of day instead of the year for entries this recent.
const RECENT_PAST_SECS: i128 = 180 * SECS_PER_DAY as i128;
/// ...and for entries at most this far in the future (clock skew, freshly touched files).
const RECENT_FUTURE_SECS: i128 = SECS_PER_DAY as i128;

/// 0000-01-01T00:00:00Z: the earliest time a four-digit-year MDTM value can express.
const MDTM_MIN: i64 = -62_167_219_200;
/// 9999-12-31T23:59:59Z: the latest time a four-digit-year MDTM value can express.
const MDTM_MAX: i64 = 253_402_300_799;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Whether a file name may appear in a listing. Listings are lines, so a name holding CR or
/// LF would end its line early and forge entries after it; other control characters (NUL
/// aside, which no file name holds: TAB, ESC, DEL, the C1 range) act on the terminals that
/// show them. [`VirtualPath`](crate::VirtualPath) refuses the same characters, so a name left
/// out here is one no command could have named anyway; every name shown can be sent back.
pub fn listable_name(name: &str) -> bool {
    !name.chars().any(char::is_control)
}

/// Append one `ls -l` style line, terminated by `\r\n`, for `LIST`.
///
/// Shape: `drwxr-xr-x    2 ftp      ftp          4096 Nov 23 03:57 name` (the column widths
/// of vsftpd/GNU ls: `%4u`, `%-8s`, `%-8s`, `%8u`; wider values just widen the column).
/// Owner and group are always `ftp`: real uids mean nothing to the client and would leak
/// host account names. The date is `Mon DD HH:MM` when `mtime` lies within 180 days before
/// `now` or up to one day after it, otherwise `Mon DD  YYYY`; the day is space-padded like
/// `ls`. The name is appended as is (symlink targets are not shown).
pub fn list_line(e: &Entry, now: i64, out: &mut String) {
    let kind = match e.kind {
        EntryKind::File => '-',
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::Other => '?',
    };
    out.push(kind);
    push_rwx(e.mode, out);

    let (year, month, day, hour, minute, _) = civil_from_unix(e.mtime);
    let month_name = MONTHS[(month as usize).saturating_sub(1) % 12];
    // i128 so that `now - mtime` cannot overflow for extreme values.
    let age = i128::from(now) - i128::from(e.mtime);
    let recent = (-RECENT_FUTURE_SECS..RECENT_PAST_SECS).contains(&age);

    let _ = write!(out, " {:>4} ftp      ftp      {:>8} ", e.nlink, e.size);
    if recent {
        let _ = write!(out, "{month_name} {day:>2} {hour:02}:{minute:02}");
    } else {
        let _ = write!(out, "{month_name} {day:>2} {year:>5}");
    }
    out.push(' ');
    out.push_str(&e.name);
    out.push_str("\r\n");
}

/// Append the nine `rwxrwxrwx` characters for `mode`, including setuid/setgid/sticky
/// (`s`/`S`, `t`/`T`) the way `ls` shows them.
fn push_rwx(mode: u32, out: &mut String) {
    // (read, write, exec, special bit, special char when exec set)
    let triads = [
        (0o400, 0o200, 0o100, 0o4000, 's'),
        (0o040, 0o020, 0o010, 0o2000, 's'),
        (0o004, 0o002, 0o001, 0o1000, 't'),
    ];
    for (r, w, x, special, ch) in triads {
        out.push(if mode & r != 0 { 'r' } else { '-' });
        out.push(if mode & w != 0 { 'w' } else { '-' });
        let exec = mode & x != 0;
        out.push(match (mode & special != 0, exec) {
            (true, true) => ch,
            (true, false) => ch.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
}

/// Append RFC 3659 facts followed by a single space and the raw name, with NO line ending:
/// `type=file;size=123;modify=20251123035700;perm=adfrw;unique=803x1a2b; name`.
///
/// For `MLSD` the caller adds `\r\n`; for `MLST` it prefixes a space and adds `\r\n`.
/// `size` is given for everything except directories. Symlinks and other objects are
/// described with file facts (`type=file`). `perm` is derived from the owner bits only:
/// read gives files `r` and dirs `e`,`l`; write gives files `a`,`d`,`f`,`w` and dirs
/// `c`,`d`,`f`,`m`,`p` (letters kept in alphabetical order). `unique` is `DEVxINO` in hex.
pub fn mlsx_facts(e: &Entry, out: &mut String) {
    mlsx_facts_selected(e, Facts::ALL, out)
}

/// The MLST facts a client asked for with `OPTS MLST` (RFC 3659 §7.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub kind: bool,
    pub size: bool,
    pub modify: bool,
    pub perm: bool,
    pub unique: bool,
}

impl Facts {
    pub const ALL: Facts = Facts {
        kind: true,
        size: true,
        modify: true,
        perm: true,
        unique: true,
    };

    /// Parses the argument of `OPTS MLST`, e.g. "type;size;" (case-insensitive); unknown
    /// facts are ignored, as the RFC asks.
    pub fn parse(list: &str) -> Facts {
        let mut f = Facts {
            kind: false,
            size: false,
            modify: false,
            perm: false,
            unique: false,
        };
        for name in list.split(';').map(|n| n.trim().to_ascii_lowercase()) {
            match name.as_str() {
                "type" => f.kind = true,
                "size" => f.size = true,
                "modify" => f.modify = true,
                "perm" => f.perm = true,
                "unique" => f.unique = true,
                _ => {}
            }
        }
        f
    }

    /// "type;size;" — the facts in force, for the 200 reply to `OPTS MLST`.
    pub fn names(&self) -> String {
        let mut s = String::new();
        for (on, name) in [
            (self.kind, "type"),
            (self.size, "size"),
            (self.modify, "modify"),
            (self.perm, "perm"),
            (self.unique, "unique"),
        ] {
            if on {
                s.push_str(name);
                s.push(';');
            }
        }
        s
    }
}

/// Like [`mlsx_facts`], with only the selected facts.
pub fn mlsx_facts_selected(e: &Entry, facts: Facts, out: &mut String) {
    let is_dir = e.kind == EntryKind::Dir;
    let readable = e.mode & 0o400 != 0;
    let writable = e.mode & 0o200 != 0;

    if facts.kind {
        out.push_str(if is_dir { "type=dir;" } else { "type=file;" });
    }
    if facts.size && !is_dir {
        let _ = write!(out, "size={};", e.size);
    }
    if facts.modify {
        out.push_str("modify=");
        write_mdtm(e.mtime, out);
        out.push(';');
    }
    if facts.perm {
        out.push_str("perm=");
        // Each letter is paired with the owner bit that grants it; order is alphabetical.
        let letters: &[(char, bool)] = if is_dir {
            &[
                ('c', writable),
                ('d', writable),
                ('e', readable),
                ('f', writable),
                ('l', readable),
                ('m', writable),
                ('p', writable),
            ]
        } else {
            &[
                ('a', writable),
                ('d', writable),
                ('f', writable),
                ('r', readable),
                ('w', writable),
            ]
        };
        for &(c, granted) in letters {
            if granted {
                out.push(c);
            }
        }
        out.push(';');
    }
    if facts.unique {
        let (dev, ino) = e.unique;
        let _ = write!(out, "unique={dev:x}x{ino:x};");
    }
    out.push(' ');
    out.push_str(&e.name);
}

/// Format unix seconds as `YYYYMMDDHHMMSS` in UTC, for `MDTM` replies and `modify` facts.
///
/// Times outside what a four-digit year can express are clamped to
/// `00000101000000` / `99991231235959`, so the reply always has exactly 14 digits.
pub fn format_mdtm(unix_secs: i64) -> String {
    let mut out = String::with_capacity(14);
    write_mdtm(unix_secs, &mut out);
    out
}

/// [`format_mdtm`] appended to `out`, without allocating (listings write one per entry).
pub fn write_mdtm(unix_secs: i64, out: &mut String) {
    let (y, mo, d, h, mi, s) = civil_from_unix(unix_secs.clamp(MDTM_MIN, MDTM_MAX));
    let _ = write!(out, "{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}");
}

/// Parse `YYYYMMDDHHMMSS` (UTC), optionally followed by `.` and one or more fraction digits
/// (ignored), into unix seconds. Used for `MFMT`.
///
/// Returns `None` for anything else: wrong length, non-ASCII-digit characters, or an
/// impossible date (month 13, Feb 30, hour 24, ...). Second `60` is accepted for leap seconds
/// (RFC 3659 §2.3) and lands on the following second, as unix time has no leap seconds; except
/// `99991231235960`, whose next second is in year 10000, which [`format_mdtm`] cannot write.
pub fn parse_mdtm(s: &str) -> Option<i64> {
    let (main, frac) = match s.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (s, None),
    };
    if let Some(f) = frac {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    let b = main.as_bytes();
    if b.len() != 14 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Only ASCII digits remain, so each field is a small decimal number.
    let num = |from: usize, to: usize| -> u32 {
        b[from..to]
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    let (year, month, day) = (num(0, 4), num(4, 6), num(6, 8));
    let (hour, minute, second) = (num(8, 10), num(10, 12), num(12, 14));
    let year = i64::from(year);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs =
        days * SECS_PER_DAY + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    // Every time parsed must print back as itself (MFMT's `FileTime` round trip).
    (secs <= MDTM_MAX).then_some(secs)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Split unix seconds into UTC `(year, month 1-12, day 1-31, hour, minute, second)`.
/// Total over all `i64`: the day count of `i64::MIN` seconds is far from overflowing.
fn civil_from_unix(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(SECS_PER_DAY);
    // rem_euclid is in 0..86400, so the narrowing casts below are lossless.
    let tod = secs.rem_euclid(SECS_PER_DAY) as u32;
    let (y, m, d) = civil_from_days(days);
    (y, m, d, tod / 3600, tod % 3600 / 60, tod % 60)
}

/// Howard Hinnant's `days_from_civil`: proleptic Gregorian date -> days since 1970-01-01.
/// Expects `month` in 1..=12 and `day` in 1..=31; callers validate first.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let mp = i64::from((month + 9) % 12); // March = 0 .. February = 11
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 -> `(year, month, day)`.
/// Overflow-free for any `days` derived from `i64` seconds (|days| < 1.1e14).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
                                  // The ranges above make these narrowing casts lossless.
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2025-11-23T03:57:00Z
    const NOW: i64 = 1_763_870_220;

    fn entry(name: &str, kind: EntryKind, size: u64, mtime: i64, mode: u32) -> Entry {
        Entry {
            name: name.to_owned(),
            kind,
            size,
            mtime,
            mode,
            nlink: 1,
            unique: (0x803, 0x1a2b),
        }
    }

    fn line(e: &Entry, now: i64) -> String {
        let mut s = String::new();
        list_line(e, now, &mut s);
        s
    }

    fn facts(e: &Entry) -> String {
        let mut s = String::new();
        mlsx_facts(e, &mut s);
        s
    }

    #[test]
    fn mdtm_known_values() {
        // Reference values from Python's calendar.timegm.
        let cases = [
            (0, "19700101000000"),
            (-1, "19691231235959"),
            (NOW, "20251123035700"),
            (1_583_020_799, "20200229235959"),
            (951_868_800, "20000301000000"),
            (-2_203_977_600, "19000228000000"),
            (-62_135_596_800, "00010101000000"),
            (MDTM_MIN, "00000101000000"),
            (MDTM_MAX, "99991231235959"),
            // Out of range: clamped, never panics, always 14 digits.
            (MDTM_MIN - 1, "00000101000000"),
            (MDTM_MAX + 1, "99991231235959"),
            (i64::MIN, "00000101000000"),
            (i64::MAX, "99991231235959"),
        ];
        for (secs, want) in cases {
            assert_eq!(format_mdtm(secs), want, "secs={secs}");
            if (MDTM_MIN..=MDTM_MAX).contains(&secs) {
                assert_eq!(parse_mdtm(want), Some(secs), "{want}");
            }
        }
    }

    #[test]
    fn mdtm_round_trip_sweep() {
        // Every ~13.7 days (a prime number of seconds) across 0000..9999, so every
        // month/day/leap-year combination is hit many times.
        let mut t = MDTM_MIN;
        let mut n = 0u32;
        while t <= MDTM_MAX {
            let s = format_mdtm(t);
            assert_eq!(s.len(), 14, "{t}");
            assert_eq!(parse_mdtm(&s), Some(t), "{s}");
            t += 1_182_851;
            n += 1;
        }
        assert!(n > 260_000);
        // Day-level round trip of the raw civil conversion over a wide range.
        for days in (-1_000_000_i64..1_000_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn parse_mdtm_table() {
        let cases: [(&str, Option<i64>); 20] = [
            ("20251123035700", Some(NOW)),
            ("20251123035700.123", Some(NOW)),
            ("20251123035700.0", Some(NOW)),
            ("19700101000000", Some(0)),
            ("20200229000000", Some(1_582_934_400)),
            // Leap second folds onto the next second.
            ("20161231235960", Some(1_483_228_800)),
            ("20251123035700.", None),
            ("20251123035700.12a", None),
            ("20251123035700.1.2", None),
            ("2025112303570", None),
            ("202511230357000", None),
            ("", None),
            ("2025112303570a", None),
            ("+0251123035700", None),
            ("２０２５1123035700", None),
            ("20251323035700", None),
            ("20250001000000", None),
            ("20190229000000", None),
            ("19000229000000", None),
            ("20251123240000", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_mdtm(s), want, "{s:?}");
        }
        assert_eq!(parse_mdtm("20251131000000"), None); // Nov 31
        assert_eq!(parse_mdtm("20251123006000"), None); // minute 60
        assert_eq!(parse_mdtm("20251123000061"), None); // second 61
        assert_eq!(parse_mdtm("20251100000000"), None); // day 0
        assert_eq!(parse_mdtm("20000229000000"), Some(951_782_400)); // 2000 is leap
    }

    /// Caught by the command_parse fuzz target's round trip: `MFMT 99991231235960 f` parsed to a second of
    /// year 10000, which prints (clamped) as 99991231235959, so the command did not survive
    /// its own wire form. The last leap second a four-digit year can hold is refused instead.
    #[test]
    fn parsed_times_print_back_at_the_ends_of_the_range() {
        assert_eq!(parse_mdtm("99991231235960"), None);
        for s in ["99991231235959", "00000101000000", "99991231235959.999"] {
            let secs = parse_mdtm(s).expect(s);
            assert_eq!(format_mdtm(secs), s[..14], "{s}");
        }
        assert_eq!(parse_mdtm("99991231235959"), Some(MDTM_MAX));
        assert_eq!(parse_mdtm("00000101000000"), Some(MDTM_MIN));
    }

    #[test]
    fn list_line_table() {
        let cases = [
            (
                entry("docs", EntryKind::Dir, 4096, NOW, 0o755),
                NOW,
                "drwxr-xr-x    1 ftp      ftp          4096 Nov 23 03:57 docs\r\n",
            ),
            (
                entry("a.txt", EntryKind::File, 123, 1_751_619_900, 0o644),
                NOW,
                "-rw-r--r--    1 ftp      ftp           123 Jul  4 09:05 a.txt\r\n",
            ),
            // 206 days old: the year replaces the time.
            (
                entry("b.txt", EntryKind::File, 123, 1_746_100_800, 0o644),
                NOW,
                "-rw-r--r--    1 ftp      ftp           123 May  1  2025 b.txt\r\n",
            ),
            (
                entry("old.bin", EntryKind::File, 0, 1_583_020_799, 0o600),
                NOW,
                "-rw-------    1 ftp      ftp             0 Feb 29  2020 old.bin\r\n",
            ),
            // Exactly 180 days old: shown with the year; one second younger: with the time.
            (
                entry("edge", EntryKind::File, 1, NOW - 180 * 86_400, 0o644),
                NOW,
                "-rw-r--r--    1 ftp      ftp             1 May 27  2025 edge\r\n",
            ),
            (
                entry("edge", EntryKind::File, 1, NOW - 180 * 86_400 + 1, 0o644),
                NOW,
                "-rw-r--r--    1 ftp      ftp             1 May 27 03:57 edge\r\n",
            ),
            // Up to one day in the future still counts as recent; beyond that the year shows.
            (
                entry("f", EntryKind::File, 1, NOW + 86_400, 0o644),
                NOW,
                "-rw-r--r--    1 ftp      ftp             1 Nov 24 03:57 f\r\n",
            ),
            (
                entry("f", EntryKind::File, 1, NOW + 86_401, 0o644),
                NOW,
                "-rw-r--r--    1 ftp      ftp             1 Nov 24  2025 f\r\n",
            ),
            (
                entry("link", EntryKind::Symlink, 11, 0, 0o777),
                NOW,
                "lrwxrwxrwx    1 ftp      ftp            11 Jan  1  1970 link\r\n",
            ),
            (
                entry("fifo", EntryKind::Other, 0, -1, 0o640),
                NOW,
                "?rw-r-----    1 ftp      ftp             0 Dec 31  1969 fifo\r\n",
            ),
            (
                entry("suid", EntryKind::File, 99_999_999_999, NOW, 0o4755),
                NOW,
                "-rwsr-xr-x    1 ftp      ftp      99999999999 Nov 23 03:57 suid\r\n",
            ),
            (
                entry("odd", EntryKind::Dir, 0, NOW, 0o7644),
                NOW,
                "drwSr-Sr-T    1 ftp      ftp             0 Nov 23 03:57 odd\r\n",
            ),
            (
                entry("tmp", EntryKind::Dir, 0, NOW, 0o3777),
                NOW,
                "drwxrwsrwt    1 ftp      ftp             0 Nov 23 03:57 tmp\r\n",
            ),
            (
                entry("数据 🚀.txt", EntryKind::File, 5, NOW - 60, 0),
                NOW,
                "----------    1 ftp      ftp             5 Nov 23 03:56 数据 🚀.txt\r\n",
            ),
            // Extreme times: no panic, sane (if wide) year.
            (
                entry("x", EntryKind::File, 0, MDTM_MAX, 0o644),
                NOW,
                "-rw-r--r--    1 ftp      ftp             0 Dec 31  9999 x\r\n",
            ),
        ];
        for (e, now, want) in &cases {
            assert_eq!(line(e, *now), *want, "{e:?}");
        }

        let mut big = entry("big", EntryKind::Dir, 0, NOW, 0o755);
        big.nlink = 12_345;
        assert_eq!(
            line(&big, NOW),
            "drwxr-xr-x 12345 ftp      ftp             0 Nov 23 03:57 big\r\n"
        );
        // Appends rather than overwrites.
        let mut s = String::from("prefix\n");
        list_line(&big, NOW, &mut s);
        assert!(s.starts_with("prefix\ndrwxr-xr-x"));
    }

    #[test]
    fn list_line_extremes_do_not_panic() {
        for (mtime, now) in [
            (i64::MIN, i64::MAX),
            (i64::MAX, i64::MIN),
            (i64::MIN, i64::MIN),
            (i64::MAX, i64::MAX),
        ] {
            let s = line(&entry("n", EntryKind::File, u64::MAX, mtime, u32::MAX), now);
            assert!(s.ends_with(" n\r\n"), "{s}");
        }
        let s = line(&entry("n", EntryKind::File, 0, i64::MAX, 0), 0);
        // i64::MAX seconds is in the year 292277026596.
        assert!(s.contains("Dec  4 292277026596 n"), "{s}");
    }

    #[test]
    fn mlsx_facts_table() {
        let mut dir = entry("docs", EntryKind::Dir, 4096, NOW, 0o755);
        dir.unique = (0, 0xdead_beef);
        let cases = [
            (
                entry("a.txt", EntryKind::File, 123, NOW, 0o644),
                "type=file;size=123;modify=20251123035700;perm=adfrw;unique=803x1a2b; a.txt",
            ),
            (
                dir,
                "type=dir;modify=20251123035700;perm=cdeflmp;unique=0xdeadbeef; docs",
            ),
            (
                entry("ro", EntryKind::File, 0, 0, 0o444),
                "type=file;size=0;modify=19700101000000;perm=r;unique=803x1a2b; ro",
            ),
            (
                entry("wo", EntryKind::File, 7, 0, 0o200),
                "type=file;size=7;modify=19700101000000;perm=adfw;unique=803x1a2b; wo",
            ),
            (
                entry("rodir", EntryKind::Dir, 0, 0, 0o555),
                "type=dir;modify=19700101000000;perm=el;unique=803x1a2b; rodir",
            ),
            (
                entry("wodir", EntryKind::Dir, 0, 0, 0o300),
                "type=dir;modify=19700101000000;perm=cdfmp;unique=803x1a2b; wodir",
            ),
            (
                entry("none", EntryKind::Dir, 0, 0, 0o077),
                "type=dir;modify=19700101000000;perm=;unique=803x1a2b; none",
            ),
            (
                entry("link", EntryKind::Symlink, 11, -1, 0o777),
                "type=file;size=11;modify=19691231235959;perm=adfrw;unique=803x1a2b; link",
            ),
            (
                entry("dev", EntryKind::Other, 0, i64::MAX, 0o600),
                "type=file;size=0;modify=99991231235959;perm=adfrw;unique=803x1a2b; dev",
            ),
            (
                entry("名 with; semi", EntryKind::File, 1, NOW, 0o644),
                "type=file;size=1;modify=20251123035700;perm=adfrw;unique=803x1a2b; 名 with; semi",
            ),
        ];
        for (e, want) in &cases {
            assert_eq!(facts(e), *want, "{e:?}");
        }
        let mut e = entry("u", EntryKind::File, u64::MAX, NOW, 0o644);
        e.unique = (u64::MAX, u64::MAX);
        assert_eq!(
            facts(&e),
            "type=file;size=18446744073709551615;modify=20251123035700;perm=adfrw;\
             unique=ffffffffffffffffxffffffffffffffff; u"
        );
    }

    #[test]
    fn opts_mlst_selects_facts() {
        let f = Facts::parse("Type;size;bogus;");
        assert_eq!(f.names(), "type;size;");
        let e = Entry {
            name: "a.txt".into(),
            kind: EntryKind::File,
            size: 7,
            mtime: 0,
            mode: 0o644,
            nlink: 1,
            unique: (1, 2),
        };
        let mut out = String::new();
        mlsx_facts_selected(&e, f, &mut out);
        assert_eq!(out, "type=file;size=7; a.txt");
        let mut out = String::new();
        mlsx_facts_selected(&e, Facts::parse(""), &mut out);
        assert_eq!(out, " a.txt");
    }

    #[test]
    fn names_with_control_characters_are_not_listed() {
        for name in [
            "a.txt",
            "caf\u{e9}",
            "a b",
            "\u{202e}gpj.exe",
            "back\\slash",
            "*?[",
        ] {
            assert!(listable_name(name), "{name:?}");
        }
        for name in [
            "evil\r\n-rw-r--r-- 1 ftp ftp 0 Jan 1 00:00 forged",
            "a\nb",
            "a\rb",
            "tab\there",
            "esc\u{1b}[31m",
            "del\u{7f}",
            "c1\u{9b}",
        ] {
            assert!(!listable_name(name), "{name:?}");
            assert!(
                crate::VirtualPath::root().resolve(name).is_err(),
                "no command names {name:?}"
            );
        }
    }
}
