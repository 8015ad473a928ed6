//! `LineFramer` with a small line limit, fed arbitrary bytes in arbitrary chunks.
//!
//! Input: `[limit, chunk header (see ferry_fuzz::Chunked), payload...]`. Checks:
//! - no panic, no line over the limit, no line holding a `\n`;
//! - the lines (and the point of a `TooLong` error, and what stays pending) are the same
//!   whatever the chunking, and the same as a plain model of the framing rules computed on the
//!   whole payload: split at `\n`, drop one `\r` before it, refuse a line over the limit (or a
//!   partial line over the limit + 1, the room for its `\r`), remove Telnet IAC sequences.
//!
//! The session stops reading at the first error (it answers 500 and closes), so the framer's
//! state after an error is not compared.
#![no_main]

use ferry_fuzz::Chunked;
use ferry_proto::{LineError, LineFramer};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
struct Outcome {
    lines: Vec<Vec<u8>>,
    /// `Err` at the first error, else the bytes still pending at the end.
    end: Result<usize, LineError>,
}

fn framed(limit: usize, data: &Chunked) -> Outcome {
    let mut framer = LineFramer::new(limit);
    let mut lines = Vec::new();
    for chunk in data.chunks() {
        if chunk.direct {
            framer
                .input(chunk.bytes.len())
                .extend_from_slice(chunk.bytes);
        } else {
            framer.push(chunk.bytes);
        }
        loop {
            match framer.next_line() {
                Ok(Some(line)) => {
                    assert!(line.len() <= limit, "line of {} > {limit}", line.len());
                    assert!(!line.contains(&b'\n'));
                    lines.push(line);
                }
                Ok(None) => break,
                Err(e) => return Outcome { lines, end: Err(e) },
            }
        }
        // Every complete line has been taken: what is left is one partial line.
        assert_eq!(framer.ends_line(), framer.pending() == 0);
    }
    Outcome {
        lines,
        end: Ok(framer.pending()),
    }
}

/// The framing rules, written out plainly on the whole payload.
fn model(limit: usize, payload: &[u8]) -> Outcome {
    let mut lines = Vec::new();
    let mut rest = payload;
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let mut line = &rest[..nl];
        rest = &rest[nl + 1..];
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        if line.len() > limit {
            return Outcome {
                lines,
                end: Err(LineError::TooLong),
            };
        }
        lines.push(strip_telnet(line));
    }
    let end = if rest.len() > limit + 1 {
        Err(LineError::TooLong)
    } else {
        Ok(rest.len())
    };
    Outcome { lines, end }
}

/// RFC 854: IAC IAC is a data 0xFF; IAC WILL/WONT/DO/DONT take an option byte; any other
/// IAC x is a two-byte command. An IAC cut off by the line end is dropped.
fn strip_telnet(line: &[u8]) -> Vec<u8> {
    const IAC: u8 = 0xff;
    let mut out = Vec::new();
    let mut bytes = line.iter().copied();
    while let Some(b) = bytes.next() {
        if b != IAC {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(IAC) => out.push(IAC),
            Some(251..=254) => {
                bytes.next();
            }
            _ => {}
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let limit = 1 + usize::from(limit % 64);
    let input = Chunked::new(rest);
    let chunked = framed(limit, &input);
    let whole = framed(limit, &Chunked::whole(input.payload));
    assert_eq!(chunked, whole, "chunking changed the lines");
    assert_eq!(
        whole,
        model(limit, input.payload),
        "framer and model differ"
    );
});
