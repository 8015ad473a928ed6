//! FTP replies (RFC 959 §4.2): formatting for the server, incremental parsing for clients.
//!
//! A reply is a three-digit code and one or more lines of text. A multi-line reply starts with
//! "CODE-", ends with "CODE ", and lines in between must not look like an end line, so any that
//! start with three digits are indented by one space.

use std::fmt;

/// One complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// A reply whose text may hold several lines separated by '\n'.
    pub fn new(code: u16, text: impl AsRef<str>) -> Reply {
        let lines = text
            .as_ref()
            .split('\n')
            .map(|l| l.trim_end_matches('\r').to_owned())
            .collect();
        Reply { code, lines }
    }

    /// A multi-line reply from its lines: the first and last carry the code.
    pub fn multi(code: u16, lines: Vec<String>) -> Reply {
        Reply { code, lines }
    }

    /// The whole text, lines joined with '\n'.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// 1yz: a preliminary reply; another follows.
    pub fn is_preliminary(&self) -> bool {
        (100..200).contains(&self.code)
    }

    /// 2yz.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// Appends the wire form.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let code = self.code;
        match self.lines.as_slice() {
            [] => out.extend_from_slice(format!("{code} \r\n").as_bytes()),
            [only] => out.extend_from_slice(format!("{code} {}\r\n", sanitize(only)).as_bytes()),
            [first, middle @ .., last] => {
                out.extend_from_slice(format!("{code}-{}\r\n", sanitize(first)).as_bytes());
                for line in middle {
                    let line = sanitize(line);
                    let looks_like_code =
                        line.len() >= 3 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit);
                    if looks_like_code {
                        out.push(b' ');
                    }
                    out.extend_from_slice(line.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(format!("{code} {}\r\n", sanitize(last)).as_bytes());
            }
        }
    }

    /// The wire form as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

/// Text embedded in a reply must not break the framing: CR and LF are replaced.
fn sanitize(line: &str) -> std::borrow::Cow<'_, str> {
    if line.contains(['\r', '\n']) {
        line.replace(['\r', '\n'], " ").into()
    } else {
        line.into()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// Why a reply could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// A line that does not start with a three-digit code where one is required.
    Malformed(String),
    /// The server sent more than the limit without finishing a reply.
    TooLong,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Malformed(l) => write!(f, "malformed reply line: {l:?}"),
            ReplyError::TooLong => f.write_str("reply too long"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// Assembles replies from control lines (client side).
#[derive(Debug, Default)]
pub struct ReplyParser {
    pending: Option<Reply>,
}

/// Most lines a multi-line reply may have before the parser gives up (bounded memory).
const MAX_REPLY_LINES: usize = 100_000;

impl ReplyParser {
    pub fn new() -> Self {
        ReplyParser::default()
    }

    /// Feeds one line (without its line end). Returns a reply once it is complete.
    pub fn feed(&mut self, line: &str) -> Result<Option<Reply>, ReplyError> {
        let code = line
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse::<u16>().ok());
        let sep = line.as_bytes().get(3).copied();
        match self.pending.as_mut() {
            None => {
                let code = code.ok_or_else(|| ReplyError::Malformed(line.to_owned()))?;
                let text = line.get(4..).unwrap_or("").to_owned();
                match sep {
                    Some(b'-') => {
                        self.pending = Some(Reply {
                            code,
                            lines: vec![text],
                        });
                        Ok(None)
                    }
                    Some(b' ') | None => Ok(Some(Reply {
                        code,
                        lines: vec![text],
                    })),
                    Some(_) => Err(ReplyError::Malformed(line.to_owned())),
                }
            }
            Some(reply) => {
                if code == Some(reply.code)
                    && sep != Some(b'-')
                    && (sep == Some(b' ') || sep.is_none())
                {
                    reply.lines.push(line.get(4..).unwrap_or("").to_owned());
                    Ok(self.pending.take())
                } else {
                    if reply.lines.len() >= MAX_REPLY_LINES {
                        return Err(ReplyError::TooLong);
                    }
                    reply
                        .lines
                        .push(line.strip_prefix(' ').unwrap_or(line).to_owned());
                    Ok(None)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line_wire_forms() {
        assert_eq!(Reply::new(200, "OK").to_bytes(), b"200 OK\r\n");
        let r = Reply::multi(
            211,
            vec![
                "Features:".into(),
                "UTF8".into(),
                "213 trap".into(),
                "End".into(),
            ],
        );
        assert_eq!(
            r.to_bytes(),
            b"211-Features:\r\nUTF8\r\n 213 trap\r\n211 End\r\n"
        );
        assert_eq!(Reply::new(550, "a\r\nb").lines, vec!["a", "b"]);
        assert_eq!(
            Reply::multi(200, vec!["x\ry".into()]).to_bytes(),
            b"200 x y\r\n"
        );
    }

    #[test]
    fn parser_round_trips_multi_line() {
        let r = Reply::multi(
            211,
            vec![
                "Features:".into(),
                " UTF8".into(),
                "211x".into(),
                "End".into(),
            ],
        );
        let wire = String::from_utf8(r.to_bytes()).expect("utf8");
        let mut p = ReplyParser::new();
        let mut got = None;
        for line in wire.split("\r\n").filter(|l| !l.is_empty()) {
            got = p.feed(line).expect("parses");
        }
        let got = got.expect("complete");
        assert_eq!(got.code, 211);
        assert_eq!(got.lines.first().map(String::as_str), Some("Features:"));
        assert_eq!(got.lines.last().map(String::as_str), Some("End"));
        assert_eq!(got.lines.len(), 4);
    }

    #[test]
    fn parser_rejects_garbage() {
        assert!(ReplyParser::new().feed("hello").is_err());
        assert_eq!(
            ReplyParser::new().feed("226").expect("ok"),
            Some(Reply {
                code: 226,
                lines: vec![String::new()]
            })
        );
    }
}
