//! The client's reply reader: `LineFramer` + lossy UTF-8 + `ReplyParser` (as in
//! ferry-client's `Conn::read_reply`), fed arbitrary bytes in arbitrary chunks.
//!
//! Input: `[line limit, byte budget, chunk header (see ferry_fuzz::Chunked), payload...]`,
//! both limits small so the fuzzer reaches them. Checks:
//! - no panic; the replies and the error (if any) are the same whatever the chunking;
//! - bounded memory: a reply that grows past the parser's byte budget is refused with
//!   `TooLong` as soon as it does, and no reply returned is over the budget;
//! - a parsed reply written back (`Reply::to_bytes`) parses to itself, for the replies where
//!   that is meant to hold (see `round_trips`).
#![no_main]

use ferry_fuzz::Chunked;
use ferry_proto::reply::{needs_escape, ReplyError, ReplyParser};
use ferry_proto::{LineFramer, Reply};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
enum End {
    /// The input ran out (mid-reply or between replies).
    Open,
    LineTooLong,
    Reply(ReplyError),
}

/// Bytes a line costs in the parser's budget: its text and CRLF.
fn cost(line: &str) -> usize {
    line.len() + 2
}

fn read(line_limit: usize, budget: usize, data: &Chunked) -> (Vec<Reply>, End) {
    let mut framer = LineFramer::new(line_limit);
    let mut parser = ReplyParser::with_max_bytes(budget);
    let mut replies = Vec::new();
    // What the reply being assembled has cost so far, counted here independently.
    let mut held = 0usize;
    for chunk in data.chunks() {
        framer.push(chunk.bytes);
        loop {
            let line = match framer.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(_) => return (replies, End::LineTooLong),
            };
            let text = String::from_utf8_lossy(&line);
            held += cost(&text);
            match parser.feed(&text) {
                Ok(Some(r)) => {
                    assert!(held <= budget, "reply of {held} bytes > {budget}");
                    let size: usize = r.lines.iter().map(|l| cost(l)).sum();
                    assert!(size <= held, "the reply holds {size} bytes of {held} fed");
                    held = 0;
                    replies.push(r);
                }
                Ok(None) => assert!(held <= budget, "holds {held} bytes > {budget}"),
                Err(e) => {
                    if e == ReplyError::TooLong {
                        assert!(held > budget, "TooLong at {held} <= {budget} bytes");
                    }
                    return (replies, End::Reply(e));
                }
            }
        }
    }
    (replies, End::Open)
}

/// Whether `Reply::to_bytes` is meant to give this reply back through the parser. Not when:
/// - the code is outside 100..=999: the parser reads any three digits ("099"), the writer
///   writes the number ("99"), and RFC 959 codes start with 1-5 anyway;
/// - a line holds a character the writer escapes (CR inside a line, ESC, ...): escaping is
///   one-way by design (reply.rs);
/// - a middle line starts with a space: the parser strips one leading space from every middle
///   line (the writer's guard for lines that start with digits), so "  x" comes back " x";
///   the client trims FEAT and MLST lines, so nothing depends on it.
fn round_trips(r: &Reply) -> bool {
    let n = r.lines.len();
    (100..=999).contains(&r.code)
        && r.lines.iter().all(|l| !l.chars().any(needs_escape))
        && r.lines
            .iter()
            .enumerate()
            .all(|(i, l)| i == 0 || i + 1 == n || !l.starts_with(' '))
}

fuzz_target!(|data: &[u8]| {
    let [line_limit, budget, rest @ ..] = data else {
        return;
    };
    let line_limit = 4 + usize::from(line_limit % 128);
    let budget = 4 + usize::from(*budget) * 2;
    let input = Chunked::new(rest);
    let chunked = read(line_limit, budget, &input);
    let whole = read(line_limit, budget, &Chunked::whole(input.payload));
    assert_eq!(chunked, whole, "chunking changed the replies");

    for r in whole.0.iter().filter(|r| round_trips(r)) {
        let wire = r.to_bytes();
        let mut framer = LineFramer::new(usize::MAX / 2);
        framer.push(&wire);
        let mut parser = ReplyParser::new();
        let mut got = None;
        while let Some(line) = framer.next_line().expect("no limit") {
            assert!(got.is_none(), "more than one reply in {wire:?}");
            got = parser
                .feed(std::str::from_utf8(&line).expect("written as UTF-8"))
                .expect("parses");
        }
        assert_eq!(
            got.as_ref(),
            Some(r),
            "wire {:?}",
            String::from_utf8_lossy(&wire)
        );
    }
});
