"""Hostile client text: control characters must never reach a reply or the log raw.

A client controls the text of many replies (USER's 331, OPTS and HELP errors, unknown SITE
commands, unknown verbs, paths) and of log fields (the user name of a failed login, every
command at debug level, the CLNT name).  Raw ESC sequences would act on the terminal of
whoever reads the log or the client's transcript; a raw CR lets `USER x<CR>INFO ... user=admin`
overwrite the visible log line with a forged one; a bidi override reorders what is shown.
ferryd escapes all of them as `\\u{..}` in both places (ferry_proto::reply::Escaped).

How the framer treats line ends matters for what a client can send inside one line: LF (or
CRLF) ends a line, so a line never holds LF; a bare CR stays inside the line.
"""

from __future__ import annotations

import re
import time

import pytest

from ftphelp import PASSWORDS

NOOP_REPLY = b"200 NOOP ok\r\n"

# name -> (bytes sent inside one command line, escapes that must show in an echo of them)
PAYLOADS = {
    "esc": (b"x\x1b[2J\x1b[31mred", ["\\u{1b}[2J", "\\u{1b}[31m"]),
    "cr": (b"x\r230 Login successful", ["x\\u{d}230 Login"]),
    "cr-forged-log": (b"x\x1b[2K\rINFO login user=admin", ["\\u{1b}[2K\\u{d}INFO"]),
    "nul-tab-bel": (b"x\x00y\tz\x07", ["x\\u{0}y\\u{9}z\\u{7}"]),
    "del": (b"x\x7fy", ["x\\u{7f}y"]),
    "c1": ("x\u0085y\u009b31m".encode(), ["x\\u{85}y\\u{9b}31"]),
    "bidi": ("x\u202egpj.exe\u2066\u2069".encode(), ["\\u{202e}", "\\u{2066}\\u{2069}"]),
    "line-separator": ("x\u2028230 forged".encode(), ["x\\u{2028}230"]),
}

# Characters that must never appear raw in a reply or a log line (besides the CRLF / LF that
# end lines): C0, DEL, C1, zero-width marks, line/paragraph separators, bidi controls.
FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


def exchange(c, line: bytes) -> bytes:
    """Sends one raw command line (CRLF added) and a NOOP; returns the raw reply bytes that
    came before the NOOP's reply, so every byte the server sent for `line` is checked."""
    c.send(line + b"\r\nNOOP\r\n")
    data, c.buf = c.buf, b""
    deadline = time.monotonic() + 10
    while not data.endswith(NOOP_REPLY):
        assert time.monotonic() < deadline, f"no NOOP reply after {line!r}; got {data!r}"
        chunk = c.sock.recv(65536)
        assert chunk, f"connection closed after {line!r}; got {data!r}"
        data += chunk
    return data[: -len(NOOP_REPLY)]


def check_replies(raw: bytes, count: int = 1) -> list[tuple[int, list[str]]]:
    """Asserts `raw` is exactly `count` well-formed replies whose only control characters are
    the CRLF ending each line, and that no line in the middle of a reply starts with a code
    (a forged line); returns (code, text lines) per reply."""
    assert raw.endswith(b"\r\n"), raw
    assert raw.count(b"\r") == raw.count(b"\n") == raw.count(b"\r\n"), f"bare CR or LF: {raw!r}"
    lines = [l.decode("utf-8") for l in raw[:-2].split(b"\r\n")]  # strict: valid UTF-8
    for line in lines:
        bad = FORBIDDEN.search(line)
        assert bad is None, f"raw {bad.group()!r} in reply line {line!r}"
    replies = []
    i = 0
    while i < len(lines):
        m = re.match(r"^(\d{3})([ -])", lines[i])
        assert m, f"line {lines[i]!r} does not start a reply: {raw!r}"
        start, code = i, m.group(1)
        if m.group(2) == "-":
            i += 1
            while i < len(lines) and not lines[i].startswith(code + " "):
                assert not re.match(r"^\d{3}", lines[i]), f"forged code line {lines[i]!r}"
                i += 1
            assert i < len(lines), f"unterminated multi-line reply: {raw!r}"
        replies.append((int(code), lines[start : i + 1]))
        i += 1
    assert len(replies) == count, f"expected {count} replies, got {replies!r}"
    return replies


def check_log(srv, must_contain: list[str]) -> str:
    """Asserts the server's stderr log has no raw control or bidi character except the LF
    ending each line, that every line is a log record (no forged line: each starts with the
    record's timestamp), and that each of `must_contain` is in it; returns the text."""
    deadline = time.monotonic() + 5
    while True:
        raw = srv.log_path.read_bytes()
        text = raw.decode("utf-8")  # strict
        missing = [m for m in must_contain if m not in text]
        if not missing:
            break
        assert time.monotonic() < deadline, f"log lacks {missing!r}:\n{srv.log_tail()}"
        time.sleep(0.05)
    for line in text.split("\n")[:-1]:
        bad = FORBIDDEN.search(line)
        assert bad is None, f"raw {bad.group()!r} in log line {line!r}"
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line), f"not a log record: {line!r}"
    return text


@pytest.mark.parametrize("payload", PAYLOADS, ids=list(PAYLOADS))
def test_user_echo_is_escaped(ferry_server, payload):
    sent, escapes = PAYLOADS[payload]
    c = ferry_server.raw()
    [(code, lines)] = check_replies(exchange(c, b"USER " + sent))
    assert code == 331, lines
    for e in escapes:
        assert e in lines[0], (e, lines)
    # The session is still in step: a real login works afterwards.
    c.login("alice", PASSWORDS["alice"])


@pytest.mark.parametrize("payload", PAYLOADS, ids=list(PAYLOADS))
def test_opts_help_site_clnt_and_unknown_verbs_are_escaped(ferry_server, payload):
    sent, escapes = PAYLOADS[payload]
    c = ferry_server.raw("alice")
    # OPTS and HELP quote the whole argument back (HELP in upper case).
    [(code, lines)] = check_replies(exchange(c, b"OPTS " + sent))
    assert code == 501, lines
    assert all(e in lines[0] for e in escapes), (escapes, lines)
    [(code, lines)] = check_replies(exchange(c, b"HELP " + sent))
    assert code // 100 == 5, lines
    assert all(e.lower() in lines[0].lower() for e in escapes), lines
    # SITE quotes its first word; CLNT's name shows in STAT.
    [(code, _)] = check_replies(exchange(c, b"SITE " + sent))
    assert code // 100 == 5
    [(code, _)] = check_replies(exchange(c, b"CLNT " + sent))
    assert code == 200
    [(code, lines)] = check_replies(exchange(c, b"STAT"))
    assert code == 211 and any(escapes[0] in l for l in lines), lines
    # An unknown verb made of control characters is quoted in the 500.
    [(code, _)] = check_replies(exchange(c, sent.replace(b" ", b"") + b" arg"))
    assert code // 100 == 5


@pytest.mark.parametrize("payload", PAYLOADS, ids=list(PAYLOADS))
def test_path_arguments_are_escaped(ferry_server, payload):
    sent, _ = PAYLOADS[payload]
    c = ferry_server.raw("alice")
    for verb in (b"CWD", b"MKD", b"SIZE", b"RNFR", b"MLST", b"DELE"):
        for reply in check_replies(exchange(c, verb + b" dir/" + sent)):
            assert reply[0] // 100 == 5, (verb, reply)


def test_names_with_bidi_characters_are_shown_escaped(ferry_server):
    """Bidi controls are legal in names (only control characters are refused), so such a
    directory can be made; every reply shows its name escaped, never reordered."""
    c = ferry_server.raw("alice")
    name = "d\u202egpj.exe"
    [(code, lines)] = check_replies(exchange(c, b"MKD " + name.encode()))
    assert code == 257 and '"/d\\u{202e}gpj.exe"' in lines[0], lines
    assert (ferry_server.home() / name).is_dir()
    [(code, lines)] = check_replies(exchange(c, b"CWD " + name.encode()))
    assert code == 250, lines
    [(code, lines)] = check_replies(exchange(c, b"PWD"))
    assert code == 257 and "\\u{202e}" in lines[0], lines
    [(code, lines)] = check_replies(exchange(c, b"MLST"))
    assert code == 250 and any("\\u{202e}" in l for l in lines), lines


def test_lf_inside_a_line_starts_a_new_command(ferry_server):
    """A line never holds LF: the framer ends the line there, so `230 forged` after it is a
    command of its own (and an unknown one), answered in turn, never part of a reply."""
    c = ferry_server.raw()
    replies = check_replies(exchange(c, b"USER a\n230 forged\r\n230-also"), count=3)
    assert [r[0] // 100 for r in replies] == [3, 5, 5], replies
    assert replies[0][1] == ["331 Password required for a"], replies


def test_log_has_no_raw_control_characters_or_forged_lines(start_server):
    srv = start_server(log="debug", max_login_failures=100)
    forged = b"2030-01-01T00:00:00.000000Z  INFO login user=admin"
    c = srv.raw()
    # A failed login logs the user name at info level; every command is logged at debug.
    assert check_replies(exchange(c, b"USER x\x1b[2J\r" + forged))[0][0] == 331
    assert check_replies(exchange(c, b"PASS wrong"))[0][0] == 530
    assert check_replies(exchange(c, "USER y\u202e\u0085\x7f\r".encode() + forged))[0][0] == 331
    assert check_replies(exchange(c, b"PASS wrong"))[0][0] == 530
    assert check_replies(exchange(c, b"CLNT evil\x1b]0;title\x07\r" + forged))[0][0] == 200
    c.login("alice", PASSWORDS["alice"])
    for line in (b"OPTS \x1b[31m\r" + forged, b"HELP \x1b[31m\r" + forged,
                 b"SITE \x1b[31m\r" + forged, b"CWD \xe2\x80\xae\r" + forged):
        check_replies(exchange(c, line))
    text = check_log(srv, [
        "user=x\\u{1b}[2J\\u{d}2030-01-01T00:00:00.000000Z  INFO login user=admin",
        "user=y\\u{202e}\\u{85}\\u{7f}\\u{d}2030",
        "client=evil\\u{1b}]0;title\\u{7}\\u{d}2030",
        "cmd=OPTS \\u{1b}[31m\\u{d}2030",
        "cmd=SITE \\u{1b}[31m\\u{d}2030",
        "cmd=CWD \\u{202e}\\u{d}2030",
    ])
    # The forged record is only ever the tail of an escaped field, never a line of its own.
    for line in text.splitlines():
        if "user=admin" in line:
            assert "\\u{d}2030-01-01T00:00:00.000000Z  INFO login user=admin" in line, line
            assert not line.startswith("2030"), line
