//! FTP commands: parsing a control line into a [`Command`] and printing it back.
//!
//! Covers RFC 959 (the base protocol), RFC 2389 (FEAT, OPTS), RFC 2428 (EPRT, EPSV), RFC 3659
//! (SIZE, MDTM, MLST, MLSD, REST STREAM), draft-somers-ftp-mfxx (MFMT, MFF), CLNT (sent by
//! FileZilla and others, never standardised) and the X-prefixed aliases of RFC 775 (XPWD, XCWD,
//! ...).
//! Verbs are case-insensitive; the argument is everything after the first space, kept verbatim
//! because file names may contain and even start with spaces. A line that is not UTF-8 is a
//! syntax error: Ferry advertises UTF8 (RFC 2640) and stores names as UTF-8.

use std::fmt;
use std::net::SocketAddr;

use crate::addr;
use crate::listing;

/// A password, kept out of `Debug` output so it can never reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

/// Representation type (RFC 959 §3.1.1). Only ASCII non-print and image are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Ascii,
    Image,
}

/// Hash algorithms of the HASH command (draft-bryan-ftpext-hash) and the legacy X-commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgo {
    Sha256,
    Sha512,
    Sha1,
    Md5,
    Crc32,
}

impl HashAlgo {
    pub const ALL: [HashAlgo; 5] = [
        HashAlgo::Sha256,
        HashAlgo::Sha512,
        HashAlgo::Sha1,
        HashAlgo::Md5,
        HashAlgo::Crc32,
    ];

    /// The name used in FEAT, OPTS HASH and 213 replies ("SHA-256").
    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Sha256 => "SHA-256",
            HashAlgo::Sha512 => "SHA-512",
            HashAlgo::Sha1 => "SHA-1",
            HashAlgo::Md5 => "MD5",
            HashAlgo::Crc32 => "CRC32",
        }
    }

    /// Parses a name case-insensitively ("sha-256", "SHA256" too).
    pub fn from_name(name: &str) -> Option<HashAlgo> {
        let norm: String = name
            .chars()
            .filter(|c| *c != '-')
            .collect::<String>()
            .to_ascii_uppercase();
        HashAlgo::ALL
            .into_iter()
            .find(|a| a.name().replace('-', "") == norm)
    }
}

/// A UTC time as MFMT and MFF carry it: `YYYYMMDDHHMMSS[.sss]` (RFC 3659 §2.3's `time-val`).
///
/// The fraction is kept to the nanosecond (further digits are dropped). [`Display`](fmt::Display)
/// prints the shortest form that parses back to the same value: no fraction when it is zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileTime {
    /// Unix seconds, UTC (second 60, a leap second, is the next second: unix time has none).
    pub secs: i64,
    /// Nanoseconds, below 1_000_000_000.
    pub nanos: u32,
}

impl FileTime {
    /// Parses `YYYYMMDDHHMMSS` with an optional `.` and one or more fraction digits; `None`
    /// for anything else, including impossible dates (see [`listing::parse_mdtm`]).
    pub fn parse(s: &str) -> Option<FileTime> {
        let secs = listing::parse_mdtm(s)?;
        let nanos = match s.split_once('.') {
            // parse_mdtm checked the fraction: one or more ASCII digits.
            Some((_, frac)) => frac
                .bytes()
                .chain(std::iter::repeat(b'0'))
                .take(9)
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')),
            None => 0,
        };
        Some(FileTime { secs, nanos })
    }
}

impl fmt::Display for FileTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&listing::format_mdtm(self.secs))?;
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        Ok(())
    }
}

/// The argument of EPSV (RFC 2428 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpsvArg {
    /// `EPSV` alone: any protocol.
    Any,
    /// `EPSV 1` / `EPSV 2`: IPv4 or IPv6.
    Protocol(u8),
    /// `EPSV ALL`: from now on only EPSV may set up data connections.
    All,
}

/// One parsed FTP command. Aliases (XPWD, XCWD, ...) parse to the same variant as the RFC 959 verb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(String),
    Pass(Secret),
    Acct(String),
    Quit,
    Noop,
    Syst,
    Feat,
    Opts(String),
    Help(Option<String>),
    Stat(Option<String>),
    Pwd,
    Cwd(String),
    Cdup,
    Mkd(String),
    Rmd(String),
    Dele(String),
    Rnfr(String),
    Rnto(String),
    Size(String),
    Mdtm(String),
    Type(DataType),
    Mode,
    Stru,
    Pasv,
    Epsv(EpsvArg),
    Port(SocketAddr),
    Eprt(SocketAddr),
    List(Option<String>),
    Nlst(Option<String>),
    Mlsd(Option<String>),
    Mlst(Option<String>),
    Retr(String),
    Stor(String),
    Appe(String),
    Stou(Option<String>),
    Rest(u64),
    Abor,
    Allo(String),
    Site(String),
    /// AUTH TLS / AUTH SSL (RFC 4217 §4): upgrade the control connection.
    Auth(String),
    /// PBSZ n (RFC 4217 §8): only 0 makes sense for TLS.
    Pbsz(u64),
    /// PROT C/S/E/P (RFC 4217 §9), upper-cased.
    Prot(char),
    /// CCC (RFC 4217 §6): back to a clear control connection.
    Ccc,
    /// HASH path (draft-bryan-ftpext-hash).
    Hash(String),
    /// RANG start end (draft-bryan-ftp-range): byte range for the next HASH (or RETR/STOR).
    Rang(u64, u64),
    /// XMD5/XSHA1/XSHA256/XSHA512/XCRC path [start end]: the legacy hash commands.
    XHash {
        algo: HashAlgo,
        path: String,
        range: Option<(u64, u64)>,
    },
    /// MFMT time path (draft-somers-ftp-mfxx §3): set a file's modification time.
    Mfmt {
        time: FileTime,
        path: String,
    },
    /// MFF facts path (draft-somers-ftp-mfxx §4), with the one fact served: `modify`. Other
    /// facts are refused while parsing (504).
    Mff {
        modify: FileTime,
        path: String,
    },
    /// CLNT name: the client says what it is. Free text, only remembered and logged.
    Clnt(String),
}

/// Why a line is not a command we can run; each maps to one reply code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Verb not implemented (502).
    Unknown(String),
    /// Malformed argument or missing one (501).
    Syntax(String),
    /// Well formed but a parameter we do not implement (504), e.g. `TYPE E`, `MODE B`.
    Unsupported(String),
    /// EPRT/EPSV with a network protocol we do not serve (522).
    Protocol,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Unknown(verb) => write!(f, "command {verb} not implemented"),
            ParseError::Syntax(msg) => write!(f, "syntax error: {msg}"),
            ParseError::Unsupported(msg) => write!(f, "{msg}"),
            ParseError::Protocol => f.write_str("network protocol not supported, use (1,2)"),
        }
    }
}

impl std::error::Error for ParseError {}

/// The longest verb we accept; longer ones are answered as unknown without being copied whole.
const MAX_VERB: usize = 8;

impl Command {
    /// Parses one control line (line end already removed).
    pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
        let (verb, arg) = match line.iter().position(|&b| b == b' ') {
            Some(i) => (&line[..i], Some(&line[i + 1..])),
            None => (line, None),
        };
        if verb.is_empty() {
            return Err(ParseError::Syntax("empty command".into()));
        }
        if verb.len() > MAX_VERB || !verb.iter().all(u8::is_ascii_alphanumeric) {
            let shown = String::from_utf8_lossy(&verb[..verb.len().min(MAX_VERB)]).to_uppercase();
            return Err(ParseError::Unknown(shown));
        }
        let verb = String::from_utf8_lossy(verb).to_ascii_uppercase();
        let arg = match arg {
            Some(a) => Some(
                std::str::from_utf8(a)
                    .map_err(|_| ParseError::Syntax("argument is not valid UTF-8".into()))?,
            ),
            None => None,
        };
        // An empty argument ("CWD ") counts as none.
        let arg = arg.filter(|a| !a.is_empty());
        let need = |arg: Option<&str>| -> Result<String, ParseError> {
            arg.map(str::to_owned)
                .ok_or_else(|| ParseError::Syntax(format!("{verb} needs an argument")))
        };
        let none = |arg: Option<&str>, cmd: Command| -> Result<Command, ParseError> {
            match arg {
                None => Ok(cmd),
                Some(_) => Err(ParseError::Syntax(format!("{verb} takes no argument"))),
            }
        };
        let opt = |arg: Option<&str>| arg.map(str::to_owned);
        Ok(match verb.as_str() {
            "USER" => Command::User(need(arg)?),
            "PASS" => Command::Pass(Secret(arg.unwrap_or("").to_owned())),
            "ACCT" => Command::Acct(need(arg)?),
            "QUIT" => Command::Quit,
            "NOOP" => Command::Noop,
            "SYST" => none(arg, Command::Syst)?,
            "FEAT" => none(arg, Command::Feat)?,
            "OPTS" => Command::Opts(need(arg)?),
            "HELP" => Command::Help(opt(arg)),
            "STAT" => Command::Stat(opt(arg)),
            "PWD" | "XPWD" => none(arg, Command::Pwd)?,
            "CWD" | "XCWD" => Command::Cwd(need(arg)?),
            "CDUP" | "XCUP" => none(arg, Command::Cdup)?,
            "MKD" | "XMKD" => Command::Mkd(need(arg)?),
            "RMD" | "XRMD" => Command::Rmd(need(arg)?),
            "DELE" => Command::Dele(need(arg)?),
            "RNFR" => Command::Rnfr(need(arg)?),
            "RNTO" => Command::Rnto(need(arg)?),
            "SIZE" => Command::Size(need(arg)?),
            "MDTM" => Command::Mdtm(need(arg)?),
            "TYPE" => Command::Type(parse_type(&need(arg)?)?),
            "MODE" => match need(arg)?.to_ascii_uppercase().as_str() {
                "S" => Command::Mode,
                "B" | "C" | "Z" => {
                    return Err(ParseError::Unsupported("only MODE S is supported".into()))
                }
                _ => return Err(ParseError::Syntax("unknown MODE".into())),
            },
            "STRU" => match need(arg)?.to_ascii_uppercase().as_str() {
                "F" => Command::Stru,
                "R" | "P" => {
                    return Err(ParseError::Unsupported("only STRU F is supported".into()))
                }
                _ => return Err(ParseError::Syntax("unknown STRU".into())),
            },
            "PASV" => none(arg, Command::Pasv)?,
            "EPSV" => Command::Epsv(match arg.map(str::to_ascii_uppercase).as_deref() {
                None => EpsvArg::Any,
                Some("ALL") => EpsvArg::All,
                Some("1") => EpsvArg::Protocol(1),
                Some("2") => EpsvArg::Protocol(2),
                Some(p) if p.parse::<u32>().is_ok() => return Err(ParseError::Protocol),
                Some(_) => return Err(ParseError::Syntax("EPSV takes 1, 2 or ALL".into())),
            }),
            "PORT" => Command::Port(
                addr::parse_port(&need(arg)?)
                    .ok_or_else(|| ParseError::Syntax("PORT needs h1,h2,h3,h4,p1,p2".into()))?,
            ),
            "EPRT" => Command::Eprt(addr::parse_eprt(&need(arg)?)?),
            "LIST" => Command::List(opt(arg)),
            "NLST" => Command::Nlst(opt(arg)),
            "MLSD" => Command::Mlsd(opt(arg)),
            "MLST" => Command::Mlst(opt(arg)),
            "RETR" => Command::Retr(need(arg)?),
            "STOR" => Command::Stor(need(arg)?),
            "APPE" => Command::Appe(need(arg)?),
            "STOU" => Command::Stou(opt(arg)),
            "REST" => Command::Rest(
                need(arg)?
                    .parse()
                    .map_err(|_| ParseError::Syntax("REST needs a byte offset".into()))?,
            ),
            "ABOR" => Command::Abor,
            "ALLO" => Command::Allo(need(arg)?),
            "SITE" => Command::Site(need(arg)?),
            "AUTH" => Command::Auth(need(arg)?.to_ascii_uppercase()),
            "PBSZ" => Command::Pbsz(
                need(arg)?
                    .parse()
                    .map_err(|_| ParseError::Syntax("PBSZ needs a number".into()))?,
            ),
            "PROT" => {
                let level = need(arg)?.to_ascii_uppercase();
                match level.as_str() {
                    "C" | "S" | "E" | "P" => Command::Prot(level.chars().next().unwrap_or('C')),
                    _ => return Err(ParseError::Syntax("PROT takes C, S, E or P".into())),
                }
            }
            "CCC" => none(arg, Command::Ccc)?,
            "HASH" => Command::Hash(need(arg)?),
            "RANG" => {
                let a = need(arg)?;
                let nums: Vec<&str> = a.split_whitespace().collect();
                match nums.as_slice() {
                    [s, e] => match (s.parse(), e.parse()) {
                        (Ok(s), Ok(e)) => Command::Rang(s, e),
                        _ => return Err(ParseError::Syntax("RANG needs two byte offsets".into())),
                    },
                    _ => return Err(ParseError::Syntax("RANG needs two byte offsets".into())),
                }
            }
            "XMD5" | "XSHA1" | "XSHA256" | "XSHA512" | "XCRC" => {
                let algo = match verb.as_str() {
                    "XMD5" => HashAlgo::Md5,
                    "XSHA1" => HashAlgo::Sha1,
                    "XSHA256" => HashAlgo::Sha256,
                    "XSHA512" => HashAlgo::Sha512,
                    _ => HashAlgo::Crc32,
                };
                let (path, range) = split_legacy_range(&need(arg)?);
                Command::XHash { algo, path, range }
            }
            "MFMT" => {
                let a = need(arg)?;
                let bad =
                    || ParseError::Syntax("MFMT needs YYYYMMDDHHMMSS[.sss] and a path".into());
                let (time, path) = a.split_once(' ').ok_or_else(bad)?;
                if path.is_empty() {
                    return Err(bad());
                }
                Command::Mfmt {
                    time: FileTime::parse(time).ok_or_else(bad)?,
                    path: path.to_owned(),
                }
            }
            "MFF" => {
                let (modify, path) = parse_mff(&need(arg)?)?;
                Command::Mff { modify, path }
            }
            "CLNT" => Command::Clnt(need(arg)?),
            _ => return Err(ParseError::Unknown(verb)),
        })
    }

    /// The verb as sent on the wire (aliases print as their RFC 959 form).
    pub fn verb(&self) -> &'static str {
        match self {
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Acct(_) => "ACCT",
            Command::Quit => "QUIT",
            Command::Noop => "NOOP",
            Command::Syst => "SYST",
            Command::Feat => "FEAT",
            Command::Opts(_) => "OPTS",
            Command::Help(_) => "HELP",
            Command::Stat(_) => "STAT",
            Command::Pwd => "PWD",
            Command::Cwd(_) => "CWD",
            Command::Cdup => "CDUP",
            Command::Mkd(_) => "MKD",
            Command::Rmd(_) => "RMD",
            Command::Dele(_) => "DELE",
            Command::Rnfr(_) => "RNFR",
            Command::Rnto(_) => "RNTO",
            Command::Size(_) => "SIZE",
            Command::Mdtm(_) => "MDTM",
            Command::Type(_) => "TYPE",
            Command::Mode => "MODE",
            Command::Stru => "STRU",
            Command::Pasv => "PASV",
            Command::Epsv(_) => "EPSV",
            Command::Port(_) => "PORT",
            Command::Eprt(_) => "EPRT",
            Command::List(_) => "LIST",
            Command::Nlst(_) => "NLST",
            Command::Mlsd(_) => "MLSD",
            Command::Mlst(_) => "MLST",
            Command::Retr(_) => "RETR",
            Command::Stor(_) => "STOR",
            Command::Appe(_) => "APPE",
            Command::Stou(_) => "STOU",
            Command::Rest(_) => "REST",
            Command::Abor => "ABOR",
            Command::Allo(_) => "ALLO",
            Command::Site(_) => "SITE",
            Command::Auth(_) => "AUTH",
            Command::Pbsz(_) => "PBSZ",
            Command::Prot(_) => "PROT",
            Command::Ccc => "CCC",
            Command::Hash(_) => "HASH",
            Command::Rang(..) => "RANG",
            Command::XHash { algo, .. } => match algo {
                HashAlgo::Md5 => "XMD5",
                HashAlgo::Sha1 => "XSHA1",
                HashAlgo::Sha256 => "XSHA256",
                HashAlgo::Sha512 => "XSHA512",
                HashAlgo::Crc32 => "XCRC",
            },
            Command::Mfmt { .. } => "MFMT",
            Command::Mff { .. } => "MFF",
            Command::Clnt(_) => "CLNT",
        }
    }
}

/// `fact=value;[fact=value;]... path` of MFF. Fact names are case-insensitive; `modify` is the
/// one served (a file's other facts are not the client's to set here: `create` does not exist
/// on Linux, `perm` and `UNIX.mode` are policy), so any other fact is 504 and the command
/// changes nothing.
fn parse_mff(arg: &str) -> Result<(FileTime, String), ParseError> {
    let bad = |what: &str| ParseError::Syntax(format!("MFF needs fact=value; and a path: {what}"));
    let (facts, path) = arg.split_once(' ').ok_or_else(|| bad("no path"))?;
    if path.is_empty() {
        return Err(bad("no path"));
    }
    let mut modify = None;
    for fact in facts.split(';').filter(|f| !f.is_empty()) {
        let (name, value) = fact
            .split_once('=')
            .ok_or_else(|| bad("no '=' in a fact"))?;
        if !name.eq_ignore_ascii_case("modify") {
            return Err(ParseError::Unsupported(format!(
                "MFF fact {name} is not supported; only modify is"
            )));
        }
        let time =
            FileTime::parse(value).ok_or_else(|| bad("modify needs YYYYMMDDHHMMSS[.sss]"))?;
        if modify.replace(time).is_some() {
            return Err(bad("modify given twice"));
        }
    }
    let modify = modify.ok_or_else(|| bad("no fact"))?;
    Ok((modify, path.to_owned()))
}

/// "path [start end]" of the legacy hash commands: a trailing pair of numbers is the range
/// (so a file literally named "a 1 2" cannot be hashed whole with them; HASH has no such limit).
fn split_legacy_range(arg: &str) -> (String, Option<(u64, u64)>) {
    let mut parts = arg.rsplitn(3, ' ');
    let (end, start, path) = (parts.next(), parts.next(), parts.next());
    if let (Some(e), Some(s), Some(p)) = (end, start, path) {
        if let (Ok(s), Ok(e)) = (s.parse(), e.parse()) {
            if !p.is_empty() {
                return (p.to_owned(), Some((s, e)));
            }
        }
    }
    (arg.to_owned(), None)
}

fn parse_type(arg: &str) -> Result<DataType, ParseError> {
    let mut parts = arg.split(' ').filter(|p| !p.is_empty());
    let code = parts.next().unwrap_or("").to_ascii_uppercase();
    let param = parts.next().map(str::to_ascii_uppercase);
    match (code.as_str(), param.as_deref()) {
        ("A", None | Some("N")) => Ok(DataType::Ascii),
        ("I", None) | ("L", Some("8")) => Ok(DataType::Image),
        ("A", Some("T" | "C")) | ("E", _) | ("L", Some(_)) => Err(ParseError::Unsupported(
            "only TYPE A, I and L 8 are supported".into(),
        )),
        _ => Err(ParseError::Syntax("unknown TYPE".into())),
    }
}

impl fmt::Display for Command {
    /// The wire form, so that `Command::parse(cmd.to_string().as_bytes()) == Ok(cmd)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = self.verb();
        match self {
            Command::User(a)
            | Command::Acct(a)
            | Command::Opts(a)
            | Command::Cwd(a)
            | Command::Mkd(a)
            | Command::Rmd(a)
            | Command::Dele(a)
            | Command::Rnfr(a)
            | Command::Rnto(a)
            | Command::Size(a)
            | Command::Mdtm(a)
            | Command::Retr(a)
            | Command::Stor(a)
            | Command::Appe(a)
            | Command::Allo(a)
            | Command::Site(a)
            | Command::Auth(a)
            | Command::Hash(a)
            | Command::Clnt(a) => write!(f, "{verb} {a}"),
            Command::Mfmt { time, path } => write!(f, "MFMT {time} {path}"),
            Command::Mff { modify, path } => write!(f, "MFF modify={modify}; {path}"),
            Command::Rang(s, e) => write!(f, "RANG {s} {e}"),
            Command::XHash { path, range, .. } => match range {
                Some((s, e)) => write!(f, "{verb} {path} {s} {e}"),
                None => write!(f, "{verb} {path}"),
            },
            Command::Pbsz(n) => write!(f, "PBSZ {n}"),
            Command::Prot(level) => write!(f, "PROT {level}"),
            Command::Pass(Secret(p)) => write!(f, "{verb} {p}"),
            Command::Help(a)
            | Command::Stat(a)
            | Command::List(a)
            | Command::Nlst(a)
            | Command::Mlsd(a)
            | Command::Mlst(a)
            | Command::Stou(a) => match a {
                Some(a) => write!(f, "{verb} {a}"),
                None => f.write_str(verb),
            },
            Command::Type(DataType::Ascii) => f.write_str("TYPE A"),
            Command::Type(DataType::Image) => f.write_str("TYPE I"),
            Command::Mode => f.write_str("MODE S"),
            Command::Stru => f.write_str("STRU F"),
            Command::Epsv(EpsvArg::Any) => f.write_str("EPSV"),
            Command::Epsv(EpsvArg::All) => f.write_str("EPSV ALL"),
            Command::Epsv(EpsvArg::Protocol(p)) => write!(f, "EPSV {p}"),
            Command::Port(a) => write!(f, "PORT {}", addr::format_port(a).unwrap_or_default()),
            Command::Eprt(a) => write!(f, "EPRT {}", addr::format_eprt(a)),
            Command::Rest(n) => write!(f, "REST {n}"),
            Command::Quit
            | Command::Noop
            | Command::Syst
            | Command::Feat
            | Command::Pwd
            | Command::Cdup
            | Command::Pasv
            | Command::Abor
            | Command::Ccc => f.write_str(verb),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Command, ParseError> {
        Command::parse(s.as_bytes())
    }

    #[test]
    fn verbs_are_case_insensitive_and_aliases_fold() {
        assert_eq!(parse("pwd"), Ok(Command::Pwd));
        assert_eq!(parse("XPWD"), Ok(Command::Pwd));
        assert_eq!(parse("xcwd dir"), Ok(Command::Cwd("dir".into())));
        assert_eq!(parse("XCUP"), Ok(Command::Cdup));
        assert_eq!(parse("XMKD a"), Ok(Command::Mkd("a".into())));
        assert_eq!(parse("XRMD a"), Ok(Command::Rmd("a".into())));
    }

    #[test]
    fn arguments_are_kept_verbatim() {
        assert_eq!(
            parse("STOR  lead space.txt"),
            Ok(Command::Stor(" lead space.txt".into()))
        );
        assert_eq!(
            parse("RETR 数据/🚀.txt"),
            Ok(Command::Retr("数据/🚀.txt".into()))
        );
    }

    #[test]
    fn errors_map_to_their_kind() {
        assert_eq!(parse("FOO"), Err(ParseError::Unknown("FOO".into())));
        assert!(matches!(
            parse("AVERYLONGVERB"),
            Err(ParseError::Unknown(_))
        ));
        assert!(matches!(parse("CWD"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse("CWD "), Err(ParseError::Syntax(_))));
        assert!(matches!(parse("REST abc"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse("TYPE E"), Err(ParseError::Unsupported(_))));
        assert!(matches!(parse("TYPE Q"), Err(ParseError::Syntax(_))));
        assert!(matches!(parse("MODE B"), Err(ParseError::Unsupported(_))));
        assert!(matches!(parse("STRU R"), Err(ParseError::Unsupported(_))));
        assert_eq!(parse("EPSV 3"), Err(ParseError::Protocol));
        assert!(matches!(parse(""), Err(ParseError::Syntax(_))));
        assert!(matches!(
            Command::parse(b"RETR \xff\xfe"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(parse("SYST x"), Err(ParseError::Syntax(_))));
    }

    #[test]
    fn hash_commands() {
        assert_eq!(
            parse("XSHA256 my file.bin 0 100"),
            Ok(Command::XHash {
                algo: HashAlgo::Sha256,
                path: "my file.bin".into(),
                range: Some((0, 100))
            })
        );
        assert_eq!(
            parse("xcrc 1 2"),
            Ok(Command::XHash {
                algo: HashAlgo::Crc32,
                path: "1 2".into(),
                range: None
            })
        );
        assert!(matches!(parse("RANG 1"), Err(ParseError::Syntax(_))));
        assert_eq!(HashAlgo::from_name("sha256"), Some(HashAlgo::Sha256));
        assert_eq!(HashAlgo::from_name("SHA-512"), Some(HashAlgo::Sha512));
        assert_eq!(HashAlgo::from_name("crc32"), Some(HashAlgo::Crc32));
        assert_eq!(HashAlgo::from_name("sha3"), None);
    }

    #[test]
    fn file_time_table() {
        // 2025-11-23T03:57:00Z
        const NOW: i64 = 1_763_870_220;
        // (wire form, (secs, nanos) or None, shortest form)
        type Case = (&'static str, Option<(i64, u32)>, &'static str);
        let cases: [Case; 9] = [
            ("20251123035700", Some((NOW, 0)), "20251123035700"),
            ("20251123035700.0", Some((NOW, 0)), "20251123035700"),
            (
                "20251123035700.5",
                Some((NOW, 500_000_000)),
                "20251123035700.5",
            ),
            (
                "20251123035700.123",
                Some((NOW, 123_000_000)),
                "20251123035700.123",
            ),
            (
                "20251123035700.1234567891",
                Some((NOW, 123_456_789)),
                "20251123035700.123456789",
            ),
            ("20251123035700.", None, ""),
            ("2025112303570", None, ""),
            ("20251131000000", None, ""),
            ("x20251123035700", None, ""),
        ];
        for (s, want, shown) in cases {
            let got = FileTime::parse(s);
            assert_eq!(got.map(|t| (t.secs, t.nanos)), want, "{s:?}");
            if let Some(t) = got {
                assert_eq!(t.to_string(), shown, "{s:?}");
                assert_eq!(FileTime::parse(shown), Some(t), "{shown:?}");
            }
        }
    }

    #[test]
    fn mfmt_mff_clnt() {
        let t = FileTime {
            secs: 1_582_934_400,
            nanos: 0,
        };
        let cases: Vec<(&str, Result<Command, &str>)> = vec![
            (
                "MFMT 20200229000000 a file",
                Ok(Command::Mfmt {
                    time: t,
                    path: "a file".into(),
                }),
            ),
            (
                "mff Modify=20200229000000; f",
                Ok(Command::Mff {
                    modify: t,
                    path: "f".into(),
                }),
            ),
            (
                "MFF modify=20200229000000 f",
                Ok(Command::Mff {
                    modify: t,
                    path: "f".into(),
                }),
            ),
            ("CLNT a b", Ok(Command::Clnt("a b".into()))),
            ("MFMT", Err("501")),
            ("MFMT 20200229000000", Err("501")),
            ("MFMT 20200229000000 ", Err("501")),
            ("MFMT 20200230000000 f", Err("501")),
            ("MFMT yesterday f", Err("501")),
            ("MFF f", Err("501")),
            ("MFF ; f", Err("501")),
            ("MFF modify; f", Err("501")),
            ("MFF modify=2020; f", Err("501")),
            (
                "MFF modify=20200229000000;modify=20200229000000; f",
                Err("501"),
            ),
            ("MFF UNIX.mode=0644; f", Err("504")),
            (
                "MFF create=20200229000000;modify=20200229000000; f",
                Err("504"),
            ),
            ("CLNT", Err("501")),
        ];
        for (line, want) in cases {
            let got = parse(line).map_err(|e| match e {
                ParseError::Syntax(_) => "501",
                ParseError::Unsupported(_) => "504",
                _ => "other",
            });
            assert_eq!(got, want, "{line:?}");
        }
    }

    #[test]
    fn type_forms() {
        assert_eq!(parse("TYPE A"), Ok(Command::Type(DataType::Ascii)));
        assert_eq!(parse("TYPE a n"), Ok(Command::Type(DataType::Ascii)));
        assert_eq!(parse("TYPE I"), Ok(Command::Type(DataType::Image)));
        assert_eq!(parse("TYPE L 8"), Ok(Command::Type(DataType::Image)));
    }

    #[test]
    fn password_never_shows_in_debug() {
        let cmd = parse("PASS hunter2").expect("parses");
        assert!(!format!("{cmd:?}").contains("hunter2"));
        assert_eq!(cmd, Command::Pass(Secret("hunter2".into())));
    }

    #[test]
    fn display_round_trips() {
        for line in [
            "USER alice",
            "PASS x y",
            "QUIT",
            "NOOP",
            "SYST",
            "FEAT",
            "OPTS UTF8 ON",
            "HELP",
            "HELP SITE",
            "STAT",
            "STAT /a",
            "PWD",
            "CWD a b",
            "CDUP",
            "MKD d",
            "RMD d",
            "DELE f",
            "RNFR a",
            "RNTO b",
            "SIZE f",
            "MDTM f",
            "TYPE A",
            "TYPE I",
            "MODE S",
            "STRU F",
            "PASV",
            "EPSV",
            "EPSV ALL",
            "EPSV 2",
            "PORT 127,0,0,1,4,1",
            "EPRT |2|::1|6275|",
            "EPRT |1|10.0.0.1|21|",
            "LIST",
            "LIST -la",
            "NLST x",
            "MLSD",
            "MLST f",
            "RETR f",
            "STOR f",
            "APPE f",
            "STOU",
            "REST 100",
            "ABOR",
            "ALLO 1000",
            "SITE HELP",
            "AUTH TLS",
            "PBSZ 0",
            "PROT P",
            "PROT C",
            "CCC",
            "HASH a file",
            "RANG 0 99",
            "XMD5 f",
            "XSHA256 a b 0 10",
            "XCRC f 5 6",
            "XSHA1 f",
            "XSHA512 f",
            "MFMT 20251123035700 f",
            "MFMT 20251123035700.5 a b",
            "MFMT 20251123035700.000000001  lead",
            "MFF modify=20200229000000; f",
            "MFF modify=20200229000000.25; a;b=c",
            "CLNT FileZilla 3.66.4",
        ] {
            let cmd = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(cmd.to_string(), line, "display of {cmd:?}");
            assert_eq!(parse(&cmd.to_string()), Ok(cmd));
        }
    }
}
