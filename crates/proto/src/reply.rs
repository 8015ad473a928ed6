//! FTP replies (RFC 959 §4.2): formatting for the server, incremental parsing for clients.
//!
//! A reply is a three-digit code and one or more lines of text. A multi-line reply starts with
//! "CODE-", ends with "CODE ", and lines in between must not look like an end line, so any that
//! start with three digits are indented by one space.
//!
//! Reply text often quotes the client (a user name, an option, an unknown verb), so the one
//! serializer, [`Reply::write_to`], escapes every character that could act on a terminal or a
//! log reader (see [`needs_escape`]): a client cannot split a reply into forged lines or send
//! terminal sequences through the server. [`Escaped`] applies the same escaping to log fields.

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

    /// Appends the wire form, every line's text escaped (see [`Escaped`]): whatever the text
    /// holds, each line ends with the only CR and LF it has. Text that needs no escaping (the
    /// common case) is copied as it is, with no allocation besides `out`'s growth.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let line = |out: &mut Vec<u8>, sep: Option<u8>, text: &str| {
            if let Some(sep) = sep {
                push_code(out, self.code);
                out.push(sep);
            }
            push_escaped(out, text);
            out.extend_from_slice(b"\r\n");
        };
        match self.lines.as_slice() {
            [] => line(out, Some(b' '), ""),
            [only] => line(out, Some(b' '), only),
            [first, middle @ .., last] => {
                line(out, Some(b'-'), first);
                for text in middle {
                    // Escaping keeps leading digits as they are, so the check holds for the
                    // escaped text too.
                    let looks_like_code =
                        text.len() >= 3 && text.as_bytes()[..3].iter().all(u8::is_ascii_digit);
                    if looks_like_code {
                        out.push(b' ');
                    }
                    line(out, None, text);
                }
                line(out, Some(b' '), last);
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

/// The code as three digits (codes outside 100..=999 are a server bug; they are still written
/// in full rather than cut).
fn push_code(out: &mut Vec<u8>, code: u16) {
    if (100..1000).contains(&code) {
        out.extend_from_slice(&[
            b'0' + (code / 100) as u8,
            b'0' + (code / 10 % 10) as u8,
            b'0' + (code % 10) as u8,
        ]);
    } else {
        out.extend_from_slice(code.to_string().as_bytes());
    }
}

/// Characters that never reach a reply or a log line as they are: C0 controls (CR, LF and TAB
/// included), DEL, C1 controls (U+0080..=U+009F; some terminals act on them as on ESC
/// sequences), and the invisible characters that move or reorder text: zero-width marks,
/// the line and paragraph separators, the bidi embeddings, overrides and isolates, the Arabic
/// letter mark. A `\u{202e}` in a name makes `gpj.exe` display as `exe.jpg`.
pub fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\0'..='\x1f'
            | '\x7f'..='\u{9f}'
            | '\u{61c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// Client text made safe for a reply or a log line: every character [`needs_escape`] picks is
/// written as Rust's `\u{..}` escape (ESC becomes `\u{1b}`, CR `\u{d}`), everything else as
/// it is; backslashes are not doubled, so names holding `\` read as they are (the escape only
/// has to keep control characters out, not be reversible). Formatting it allocates nothing.
///
/// Use it for every log field that carries text from a client:
/// `tracing::info!(user = %Escaped(&name), "login failed")`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for_each_piece(self.0, |piece| f.write_str(piece))
    }
}

/// Appends `text` escaped as [`Escaped`] shows it.
fn push_escaped(out: &mut Vec<u8>, text: &str) {
    let appended: Result<(), std::convert::Infallible> = for_each_piece(text, |piece| {
        out.extend_from_slice(piece.as_bytes());
        Ok(())
    });
    let Ok(()) = appended;
}

/// Calls `put` with the pieces of `text` escaped: runs of characters kept as they are, and one
/// escape per character that needs one. All-printable ASCII is one piece, found with a byte scan.
fn for_each_piece<E>(text: &str, mut put: impl FnMut(&str) -> Result<(), E>) -> Result<(), E> {
    if text.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return put(text);
    }
    let mut kept = 0;
    for (i, c) in text.char_indices() {
        if needs_escape(c) {
            if kept < i {
                put(&text[kept..i])?;
            }
            let mut buf = [0u8; 10];
            put(unicode_escape(c, &mut buf))?;
            kept = i + c.len_utf8();
        }
    }
    if kept < text.len() {
        put(&text[kept..])?;
    }
    Ok(())
}

/// `\u{HEX}` for `c`, as `char::escape_unicode` writes it, in `buf` (10 bytes: `\u{10ffff}`).
fn unicode_escape(c: char, buf: &mut [u8; 10]) -> &str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let v = u32::from(c);
    let digits = 8 - (v | 1).leading_zeros() as usize / 4;
    buf[..3].copy_from_slice(b"\\u{");
    for (k, slot) in buf[3..3 + digits].iter_mut().enumerate() {
        let shift = 4 * (digits - 1 - k);
        *slot = HEX[(v >> shift) as usize & 0xf];
    }
    buf[3 + digits] = b'}';
    // Only ASCII was written.
    std::str::from_utf8(&buf[..4 + digits]).unwrap_or("\\u{?}")
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
///
/// Memory is bounded by the parser itself, not only by the caller's line limit: a reply may
/// hold at most [`MAX_REPLY_BYTES`] (by default) and [`MAX_REPLY_LINES`] lines. Without the
/// byte budget a server could send one multi-line reply of 100,000 lines of 64 KiB (the
/// client's line limit), 6.5 GB, and the client would keep it all.
#[derive(Debug)]
pub struct ReplyParser {
    pending: Option<Reply>,
    /// Bytes of the pending reply so far, each line counted with its CRLF.
    size: usize,
    max_bytes: usize,
}

/// Most lines a multi-line reply may have before the parser gives up (bounded memory).
pub const MAX_REPLY_LINES: usize = 100_000;

/// Largest reply [`ReplyParser::new`] assembles, in bytes as sent (line ends included). The
/// replies a client keeps (FEAT, HELP, SITE, MLST, STAT of one file) are a few KiB.
pub const MAX_REPLY_BYTES: usize = 1024 * 1024;

impl Default for ReplyParser {
    fn default() -> Self {
        ReplyParser::with_max_bytes(MAX_REPLY_BYTES)
    }
}

impl ReplyParser {
    pub fn new() -> Self {
        ReplyParser::default()
    }

    /// A parser that refuses, with [`ReplyError::TooLong`], a reply over `max_bytes` bytes
    /// (each line counted with its CRLF).
    pub fn with_max_bytes(max_bytes: usize) -> Self {
        ReplyParser {
            pending: None,
            size: 0,
            max_bytes,
        }
    }

    /// Feeds one line (without its line end). Returns a reply once it is complete.
    ///
    /// After an error the pending reply is dropped; the connection is not usable any more.
    pub fn feed(&mut self, line: &str) -> Result<Option<Reply>, ReplyError> {
        let result = self.assemble(line);
        if result.is_err() {
            self.pending = None;
            self.size = 0;
        }
        result
    }

    fn assemble(&mut self, line: &str) -> Result<Option<Reply>, ReplyError> {
        let size = self.size.saturating_add(line.len() + 2);
        if size > self.max_bytes {
            return Err(ReplyError::TooLong);
        }
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
                        self.size = size;
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
                    self.size = 0;
                    Ok(self.pending.take())
                } else {
                    if reply.lines.len() >= MAX_REPLY_LINES {
                        return Err(ReplyError::TooLong);
                    }
                    reply
                        .lines
                        .push(line.strip_prefix(' ').unwrap_or(line).to_owned());
                    self.size = size;
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
            b"200 x\\u{d}y\r\n"
        );
    }

    #[test]
    fn escapes_control_and_reordering_characters() {
        let cases: &[(&str, &str)] = &[
            (
                "plain ASCII, punctuation ~!@#$%^&*()",
                "plain ASCII, punctuation ~!@#$%^&*()",
            ),
            ("", ""),
            ("x\x1b[2J", "x\\u{1b}[2J"),
            ("a\rINFO user=admin", "a\\u{d}INFO user=admin"),
            ("a\nb", "a\\u{a}b"),
            ("\0\t\x7f", "\\u{0}\\u{9}\\u{7f}"),
            (
                "c1 \u{85} \u{9b}31m \u{9f}",
                "c1 \\u{85} \\u{9b}31m \\u{9f}",
            ),
            ("a\u{202e}gpj.exe", "a\\u{202e}gpj.exe"),
            (
                "\u{2066}x\u{2069}\u{200b}\u{200f}\u{2028}\u{61c}",
                "\\u{2066}x\\u{2069}\\u{200b}\\u{200f}\\u{2028}\\u{61c}",
            ),
            // Printable non-ASCII and backslashes stay as they are.
            (
                "数据 é \\ \u{a0} \u{2030} \u{1f600}",
                "数据 é \\ \u{a0} \u{2030} \u{1f600}",
            ),
            ("\u{10ffff}", "\u{10ffff}"),
        ];
        for &(text, want) in cases {
            assert_eq!(Escaped(text).to_string(), want, "{text:?}");
            let mut wire = Vec::new();
            Reply::multi(500, vec![text.to_owned()]).write_to(&mut wire);
            assert_eq!(wire, format!("500 {want}\r\n").into_bytes(), "{text:?}");
        }
        // The escape is the standard library's, for every character that gets one.
        for c in (0..0x3000u32)
            .filter_map(char::from_u32)
            .filter(|&c| needs_escape(c))
        {
            let want: String = c.escape_unicode().collect();
            assert_eq!(Escaped(&c.to_string()).to_string(), want);
        }
    }

    /// Whatever the lines hold, every CR and LF on the wire is a line end, every line end
    /// belongs to a line the reply has, and only the first and last carry the code.
    #[test]
    fn client_text_cannot_forge_reply_lines() {
        let hostile = [
            "x\r\n230 Login successful",
            "x\r230 forged",
            "x\n230 forged",
            "\r\n\r\n",
            "230-forged\u{85}230 also",
        ];
        for text in hostile {
            for reply in [
                Reply::multi(331, vec![format!("Password required for {text}")]),
                Reply::multi(
                    211,
                    vec!["Status:".into(), text.into(), text.into(), "End".into()],
                ),
            ] {
                let wire = reply.to_bytes();
                let lines: Vec<&[u8]> = wire.split(|&b| b == b'\n').collect();
                assert_eq!(lines.last(), Some(&&b""[..]), "{wire:?}");
                let lines = &lines[..lines.len() - 1];
                assert_eq!(lines.len(), reply.lines.len(), "{wire:?}");
                for (i, line) in lines.iter().enumerate() {
                    let body = line.strip_suffix(b"\r").expect("CRLF");
                    assert!(!body.iter().any(|b| b.is_ascii_control()), "{wire:?}");
                    let text = std::str::from_utf8(body).expect("utf8");
                    assert!(!text.chars().any(needs_escape), "{wire:?}");
                    let coded = body.len() >= 3 && body[..3].iter().all(u8::is_ascii_digit);
                    let edge = i == 0 || i == lines.len() - 1;
                    assert_eq!(coded, edge, "line {i} of {wire:?}");
                }
            }
        }
    }

    #[test]
    fn wire_form_of_codes_and_empty_replies() {
        assert_eq!(Reply::multi(226, vec![]).to_bytes(), b"226 \r\n");
        assert_eq!(Reply::new(100, "").to_bytes(), b"100 \r\n");
        assert_eq!(Reply::new(999, "x").to_bytes(), b"999 x\r\n");
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

    /// The parser kept up to 100,000 lines of any length, so a server could hold one multi-line
    /// reply open and fill the client's memory (6.5 GB at the client's 64 KiB line limit). It
    /// now has a byte budget, which the reply_parser fuzz target checks.
    #[test]
    fn parser_bounds_a_reply_in_bytes() {
        let mut p = ReplyParser::with_max_bytes(64);
        assert_eq!(p.feed("211-start"), Ok(None)); // 11 bytes with CRLF
        for _ in 0..4 {
            assert_eq!(p.feed(&"x".repeat(10)), Ok(None)); // 4 * 12: 59
        }
        assert_eq!(p.feed("211 End"), Err(ReplyError::TooLong)); // 68 > 64
                                                                 // The reply is dropped; the next one starts from nothing.
        let fits = format!("200 {}", "x".repeat(58));
        assert_eq!(p.feed(&fits).map(|r| r.map(|r| r.code)), Ok(Some(200)));
        let over = format!("200 {}", "x".repeat(59));
        assert_eq!(p.feed(&over), Err(ReplyError::TooLong));

        let mut p = ReplyParser::new();
        assert_eq!(p.feed("211-x"), Ok(None));
        let line = "y".repeat(64 * 1024);
        let mut kept = 0;
        let err = loop {
            match p.feed(&line) {
                Ok(None) => kept += 1,
                Ok(Some(r)) => panic!("ended: {}", r.code),
                Err(e) => break e,
            }
        };
        assert_eq!(err, ReplyError::TooLong);
        assert_eq!(kept, 15, "1 MiB holds 15 lines of 64 KiB");
    }
}
