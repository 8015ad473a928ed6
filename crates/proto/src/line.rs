//! Control-connection framing: bytes in, complete command lines out.
//!
//! RFC 959 §4.1 ends every command with CRLF; many clients send a bare LF, so both end a line.
//! A line over the configured limit is an error the server answers (500) before closing, so a
//! client cannot grow a session's memory without bound. Telnet IAC sequences (RFC 854), which
//! clients send in front of ABOR as the "Synch" signal, are removed here so the command parses.

/// Why the framer could not produce a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// The line grew past the limit without an end-of-line.
    TooLong,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::TooLong => f.write_str("command line too long"),
        }
    }
}

impl std::error::Error for LineError {}

/// Buffers control-connection bytes and splits them into lines.
///
/// Feed it with [`LineFramer::push`], or read straight into [`LineFramer::input`], then take
/// lines with [`LineFramer::next_line`] until it returns `Ok(None)`: the remaining bytes are an
/// incomplete line. Pipelined commands that arrived in one read come out one by one, in order.
#[derive(Debug)]
pub struct LineFramer {
    buf: Vec<u8>,
    /// Where the bytes not yet returned start. Taking a line moves this mark; the rest moves
    /// to the front only once no complete line is left, so each byte moves at most once.
    /// (Draining every line from the front moved all that followed it: a read full of short
    /// lines cost time quadratic in its size: about two minutes of one core, measured, for
    /// the 2 MiB of newlines a session with the largest `max_line` reads at once.)
    start: usize,
    /// End of the bytes of `buf` already scanned for a line end, so each byte is searched once.
    scanned: usize,
    max_line: usize,
}

impl LineFramer {
    /// A framer that accepts lines of at most `max_line` bytes (line end excluded).
    pub fn new(max_line: usize) -> Self {
        LineFramer {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            max_line,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The buffer to append received bytes to, with room for at least `room` more, so a reader
    /// can fill it directly. Only appending is allowed; the framer finds the lines.
    pub fn input(&mut self, room: usize) -> &mut Vec<u8> {
        self.buf.reserve(room);
        &mut self.buf
    }

    /// Whether the buffered bytes end with a line end (or there are none).
    pub fn ends_line(&self) -> bool {
        self.pending() == 0 || self.buf.last() == Some(&b'\n')
    }

    /// Bytes buffered but not yet returned as a line.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Takes the next complete line, without its line end and with Telnet commands removed.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, LineError> {
        match self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            Some(pos) => {
                let newline = self.scanned + pos;
                let start = self.start;
                let end = match self.buf[start..newline].last() {
                    Some(b'\r') => newline - 1,
                    _ => newline,
                };
                self.start = newline + 1;
                self.scanned = self.start;
                if end - start > self.max_line {
                    return Err(LineError::TooLong);
                }
                let mut line = self.buf[start..end].to_vec();
                strip_telnet(&mut line);
                Ok(Some(line))
            }
            None => {
                if self.start > 0 {
                    self.buf.drain(..self.start);
                    self.start = 0;
                }
                self.scanned = self.buf.len();
                if self.buf.len() > self.max_line + 1 {
                    Err(LineError::TooLong)
                } else {
                    Ok(None)
                }
            }
        }
    }
}

/// Removes Telnet IAC command sequences (IAC IP, IAC DM, ...) and unescapes IAC IAC.
fn strip_telnet(line: &mut Vec<u8>) {
    const IAC: u8 = 0xff;
    if !line.contains(&IAC) {
        return;
    }
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        if line[i] == IAC {
            match line.get(i + 1) {
                Some(&IAC) => out.push(IAC),
                // WILL/WONT/DO/DONT carry an option byte.
                Some(&(251..=254)) => i += 1,
                _ => {}
            }
            i += 2;
        } else {
            out.push(line[i]);
            i += 1;
        }
    }
    *line = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(framer: &mut LineFramer) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(l) = framer.next_line().expect("no error") {
            out.push(l);
        }
        out
    }

    #[test]
    fn splits_pipelined_crlf_and_lf_lines_in_order() {
        let mut f = LineFramer::new(100);
        f.push(b"NOOP\r\nPWD\nSYST\r\nPAR");
        assert_eq!(
            lines(&mut f),
            vec![b"NOOP".to_vec(), b"PWD".to_vec(), b"SYST".to_vec()]
        );
        assert_eq!(f.pending(), 3);
        f.push(b"T\r\n");
        assert_eq!(lines(&mut f), vec![b"PART".to_vec()]);
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn rejects_overlong_line_with_and_without_end() {
        let mut f = LineFramer::new(8);
        f.push(b"123456789");
        assert_eq!(f.next_line(), Ok(None));
        f.push(b"0");
        assert_eq!(f.next_line(), Err(LineError::TooLong));

        let mut f = LineFramer::new(8);
        f.push(b"123456789\r\n");
        assert_eq!(f.next_line(), Err(LineError::TooLong));

        let mut f = LineFramer::new(8);
        f.push(b"12345678\r\n");
        assert_eq!(f.next_line(), Ok(Some(b"12345678".to_vec())));
    }

    #[test]
    fn strips_telnet_synch_before_abor() {
        let mut f = LineFramer::new(100);
        f.push(b"\xff\xf4\xff\xf2ABOR\r\n");
        assert_eq!(lines(&mut f), vec![b"ABOR".to_vec()]);
        let mut f = LineFramer::new(100);
        f.push(b"\xff\xfb\x01X\xff\xffY\n");
        assert_eq!(lines(&mut f), vec![b"X\xffY".to_vec()]);
    }

    #[test]
    fn reads_straight_into_the_input_buffer() {
        let mut f = LineFramer::new(100);
        assert!(f.ends_line(), "nothing buffered");
        let input = f.input(64);
        assert!(input.capacity() >= 64);
        input.extend_from_slice(b"NOOP\r\nPW");
        assert!(!f.ends_line());
        assert_eq!(f.next_line(), Ok(Some(b"NOOP".to_vec())));
        assert_eq!(f.next_line(), Ok(None));
        f.input(64).extend_from_slice(b"D\r\n");
        assert!(f.ends_line());
        assert_eq!(f.next_line(), Ok(Some(b"PWD".to_vec())));
        assert_eq!(f.pending(), 0);
    }

    /// A read full of short lines: taking each line used to move every byte after it to the
    /// front, 2^21 lines x 1 MiB on average here (2 TB of copying, about two minutes), for the
    /// 2 MiB one read brings to a session with `max_line` at its 1 MiB maximum. Found while
    /// writing the line_framer fuzz target (whose inputs are too short to show it).
    #[test]
    fn many_short_lines_in_one_read_take_linear_time() {
        let mut f = LineFramer::new(1 << 20);
        let mut burst = b"NOOP\r\n".to_vec();
        burst.resize(2 << 20, b'\n');
        burst.extend_from_slice(b"PW");
        f.input(burst.len()).extend_from_slice(&burst);
        assert_eq!(f.next_line(), Ok(Some(b"NOOP".to_vec())));
        let mut empty = 0;
        while let Some(line) = f.next_line().expect("short lines") {
            assert!(line.is_empty());
            empty += 1;
        }
        assert_eq!(empty, (2 << 20) - 6);
        assert_eq!((f.pending(), f.ends_line()), (2, false));
        f.push(b"D\r\n");
        assert_eq!(f.next_line(), Ok(Some(b"PWD".to_vec())));
        assert_eq!((f.pending(), f.ends_line()), (0, true));
    }

    #[test]
    fn a_line_after_an_overlong_one_is_not_returned_as_part_of_it() {
        let mut f = LineFramer::new(4);
        f.push(b"12345\nAB\r\n");
        assert_eq!(f.next_line(), Err(LineError::TooLong));
        assert_eq!(f.pending(), 4);
        assert_eq!(f.next_line(), Ok(Some(b"AB".to_vec())));
    }

    #[test]
    fn input_keeps_the_line_limit() {
        let mut f = LineFramer::new(8);
        f.input(64).extend_from_slice(b"0123456789");
        assert_eq!(f.next_line(), Err(LineError::TooLong));
    }
}
