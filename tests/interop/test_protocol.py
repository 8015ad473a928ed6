"""Control-channel hygiene (raw socket) and config-driven behaviour."""

from __future__ import annotations

import ftplib
import io
import os
import socket
import time

import pytest

from ftphelp import PASSWORDS, ConnectionClosed, RawClient, code, stor_bytes


def test_pipelined_commands_answered_in_order(ferry_server):
    c = ferry_server.raw("alice")
    c.send(b"NOOP\r\nPWD\r\n")
    r1, r2 = c.reply(), c.reply()
    assert r1.code == 200, r1
    assert r2.code == 257 and r2.lines[0].startswith('257 "/"'), r2
    assert c.cmd("NOOP").code == 200


def test_pipelined_login_and_commands(ferry_server):
    c = ferry_server.raw()
    c.send(f"USER alice\r\nPASS {PASSWORDS['alice']}\r\nSYST\r\nPWD\r\nFEAT\r\nNOOP\r\n".encode())
    codes = [c.reply().code for _ in range(6)]
    assert codes == [331, 230, 215, 257, 211, 200]


def test_command_split_across_packets(ferry_server):
    c = ferry_server.raw("alice")
    c.send(b"NO")
    time.sleep(0.2)
    c.send(b"OP\r")
    time.sleep(0.2)
    c.send(b"\n")
    assert c.reply().code == 200


def test_lowercase_commands(ferry_server):
    c = ferry_server.raw()
    assert c.cmd("user alice").code == 331
    assert c.cmd(f"pass {PASSWORDS['alice']}").code == 230
    assert c.cmd("pwd").code == 257
    assert c.cmd("NoOp").code == 200


def test_long_line_500_and_close(ferry_server):
    c = ferry_server.raw("alice", timeout=10)
    c.send(b"NOOP " + b"x" * 10000 + b"\r\n")
    r = c.reply()
    assert r.code == 500, r
    rest = c.wait_closed(timeout=5)
    assert rest == b"", rest


def test_long_line_without_newline_500_and_close(ferry_server):
    # The server must not buffer forever waiting for a CRLF that never comes.
    c = ferry_server.raw(timeout=10)
    c.send(b"USER " + b"y" * 10000)
    r = c.reply()
    assert r.code == 500, r
    c.wait_closed(timeout=5)


def test_long_line_does_not_affect_others(ferry_server):
    c = ferry_server.raw("alice")
    other = ferry_server.connect("bob")
    c.send(b"x" * 20000 + b"\r\n")
    try:
        c.reply()
    except ConnectionClosed:
        pass
    assert other.voidcmd("NOOP")[:3] == "200"


def test_max_line_config(start_server):
    srv = start_server(max_line=512)
    c = srv.raw("alice")
    # Under the limit: a normal (error) reply and the session lives on.
    r = c.cmd("SIZE " + "a" * 400)
    assert r.code != 500 and 400 <= r.code < 600, r
    assert c.cmd("NOOP").code == 200
    c.send(b"SIZE " + b"a" * 700 + b"\r\n")
    assert c.reply().code == 500
    c.wait_closed(timeout=5)


def test_empty_line_handled(ferry_server):
    c = ferry_server.raw("alice")
    c.send(b"\r\n")
    c.send(b"NOOP\r\n")
    r = c.reply()
    if r.code != 200:  # an error for the blank line, then NOOP's 200
        assert 500 <= r.code < 600, r
        r = c.reply()
    assert r.code == 200, r


def test_idle_timeout_421(start_server):
    srv = start_server(idle_timeout_secs=2)
    c = srv.raw("alice", timeout=10)
    t0 = time.monotonic()
    r = c.reply()
    elapsed = time.monotonic() - t0
    assert r.code == 421, r
    assert 1.5 <= elapsed <= 6, elapsed
    c.wait_closed(timeout=5)


def test_idle_timeout_reset_by_activity(start_server):
    srv = start_server(idle_timeout_secs=2)
    c = srv.raw("alice", timeout=10)
    for _ in range(4):
        time.sleep(1)
        assert c.cmd("NOOP").code == 200
    # 4 s of activity > the 2 s timeout: still alive


def test_idle_timeout_before_login(start_server):
    srv = start_server(idle_timeout_secs=2)
    c = srv.raw(timeout=10)
    r = c.reply()
    assert r.code == 421, r
    c.wait_closed(timeout=5)


def test_data_timeout_425(start_server):
    srv = start_server(data_timeout_secs=2)
    (srv.home() / "f.txt").write_bytes(b"x")
    ftp = srv.connect("alice")
    ftp.sendcmd("PASV")  # never connect to it
    t0 = time.monotonic()
    try:
        r = ftp.sendcmd("RETR f.txt")
        if r[:1] == "1":
            r = ftp.getmultiline()
    except (ftplib.error_temp, ftplib.error_perm) as e:
        r = str(e)
    assert r[:3] == "425", r
    assert time.monotonic() - t0 <= 8
    assert ftp.voidcmd("NOOP")[:3] == "200"


def test_passive_ports_range(start_server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        base = s.getsockname()[1]
    lo, hi = base, base + 30
    if hi > 65535:
        lo, hi = 40000, 40030
    srv = start_server(passive_ports=f"{lo}-{hi}")
    ftp = srv.connect("alice")
    for _ in range(3):
        _, port = ftplib.parse227(ftp.sendcmd("PASV"))
        assert lo <= port <= hi, (port, lo, hi)
    (srv.home() / "f.txt").write_bytes(b"range")
    out = io.BytesIO()
    ftp.retrbinary("RETR f.txt", out.write)
    assert out.getvalue() == b"range"


def test_passive_address(start_server):
    srv = start_server(passive_address="203.0.113.5")
    ftp = srv.connect("alice")
    resp = ftp.sendcmd("PASV")
    assert resp[:3] == "227"
    assert ftplib.parse227(resp)[0] == "203.0.113.5", resp
    # ftplib ignores the 227 address by default and uses the control peer, so
    # transfers still work over loopback.
    (srv.home() / "f.txt").write_bytes(b"ok")
    out = io.BytesIO()
    ftp.retrbinary("RETR f.txt", out.write)
    assert out.getvalue() == b"ok"


def test_max_sessions_per_ip(start_server):
    srv = start_server(max_sessions_per_ip=2)
    a = srv.raw()
    b = srv.raw()
    c = RawClient(srv.host, srv.port, timeout=10)
    srv._clients.append(c)
    try:
        r = c.reply()
        assert r.code == 421, r
        c.wait_closed(timeout=5)
    except ConnectionClosed:
        pass  # closed without a reply is acceptable too
    assert a.cmd("NOOP").code == 200
    a.close()
    time.sleep(0.5)
    d = srv.raw()  # a slot is free again
    assert d.cmd("NOOP").code == 200
    assert b.cmd("NOOP").code == 200


def test_quota(start_server):
    srv = start_server(users={"alice": PASSWORDS["alice"], "carol": "carol-pw-123"},
                       user_args={"carol": ["--quota", "10000"]})
    ftp = srv.connect("carol")
    assert stor_bytes(ftp, "small.bin", b"x" * 4000)[:3] == "226"
    c = code(stor_bytes, ftp, "big.bin", b"y" * 20000)
    assert c in (452, 552), c
    assert ftp.voidcmd("NOOP")[:3] == "200"
    used = sum(p.stat().st_size for p in srv.home("carol").rglob("*") if p.is_file())
    assert used <= 10000, used
    # alice has no quota
    alice = srv.connect("alice")
    assert stor_bytes(alice, "big.bin", b"y" * 20000)[:3] == "226"


def test_custom_home(start_server, tmp_path):
    custom = tmp_path / "elsewhere" / "dave-home"
    srv = start_server(users={"dave": "dave-pw-456"}, user_args={"dave": ["--home", str(custom)]})
    ftp = srv.connect("dave")
    stor_bytes(ftp, "hello.txt", b"hi dave")
    assert (custom / "hello.txt").read_bytes() == b"hi dave"
    assert ftp.pwd() == "/"


def test_many_sequential_connections(ferry_server):
    for i in range(20):
        c = ferry_server.raw()
        assert c.cmd("QUIT").code == 221
        c.wait_closed(timeout=5)
        c.close()


def test_quit_closes_connection(ferry_server):
    c = ferry_server.raw("alice")
    assert c.cmd("QUIT").code == 221
    assert c.wait_closed(timeout=5) == b""


def test_client_disconnect_mid_session_server_survives(ferry_server):
    c = ferry_server.raw("alice")
    c.send(b"PASV\r\n")
    c.close()
    ftp = ferry_server.connect("alice")
    assert ftp.voidcmd("NOOP")[:3] == "200"


def test_idle_timeout_not_during_transfer(start_server):
    """A slow download longer than idle_timeout_secs must not be cut off."""
    srv = start_server(idle_timeout_secs=2)
    payload = os.urandom(8 << 20)
    (srv.home() / "slow.bin").write_bytes(payload)
    ftp = srv.connect("alice")
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("RETR slow.bin")
    conn.settimeout(10)
    got = bytearray()
    t0 = time.monotonic()
    with conn:
        while True:
            chunk = conn.recv(256 * 1024)
            if not chunk:
                break
            got += chunk
            if time.monotonic() - t0 < 4.5:
                time.sleep(0.15)  # ~4.5 s of slow reading, then drain
    final = ftp.getmultiline()
    assert final[:3] == "226", f"after {time.monotonic() - t0:.1f}s, {len(got)} of {len(payload)} bytes: {final!r}"
    assert len(got) == len(payload) and bytes(got) == payload
    assert time.monotonic() - t0 >= 4
    # No NOOP afterwards: the server finished sending long before this client finished
    # reading its socket buffer, and from then on the idle clock (2 s here) runs, as it should.


# ------------------------------------------------ MFMT / MFF (draft-somers-ftp-mfxx)

def _utc(y, mo, d, h, mi, s):
    import calendar
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))


def test_feat_lists_mfmt_and_mff(ftp):
    feats = [l.strip() for l in ftp.sendcmd("FEAT").splitlines()[1:-1]]
    assert "MFMT" in feats, feats
    assert "MFF modify;" in feats, feats
    help_text = ftp.sendcmd("HELP")
    for verb in ("MFMT", "MFF", "CLNT"):
        assert verb in help_text.split(), help_text
    assert ftp.sendcmd("HELP MFMT")[:3] == "214"


def test_mfmt_sets_modification_time(ferry_server, ftp):
    home = ferry_server.home()
    (home / "f.txt").write_bytes(b"hello")
    (home / "d").mkdir()
    (home / "with space.txt").write_bytes(b"x")
    assert ftp.sendcmd("MFMT 20200102030405 f.txt") == "213 Modify=20200102030405; f.txt"
    assert os.stat(home / "f.txt").st_mtime_ns == _utc(2020, 1, 2, 3, 4, 5) * 10**9
    assert ftp.sendcmd("MDTM f.txt") == "213 20200102030405"
    assert (home / "f.txt").read_bytes() == b"hello"
    # Fractions of a second are kept; the path is echoed as given.
    r = ftp.sendcmd("MFMT 19991231235959.25 /f.txt")
    assert r == "213 Modify=19991231235959.25; /f.txt", r
    assert os.stat(home / "f.txt").st_mtime_ns == _utc(1999, 12, 31, 23, 59, 59) * 10**9 + 250_000_000
    assert ftp.sendcmd("MFMT 20010203040506 with space.txt").endswith("; with space.txt")
    assert os.stat(home / "with space.txt").st_mtime == _utc(2001, 2, 3, 4, 5, 6)
    # Directories too.
    assert ftp.sendcmd("MFMT 20100101000000 d")[:3] == "213"
    assert os.stat(home / "d").st_mtime == _utc(2010, 1, 1, 0, 0, 0)


def test_mfmt_errors(ferry_server, ftp):
    home = ferry_server.home()
    (home / "f.txt").write_bytes(b"x")
    (home / ".f.txt.ferry-part").write_bytes(b"part")
    before = os.stat(home / "f.txt").st_mtime_ns
    assert code(ftp.sendcmd, "MFMT 20200102030405 missing.txt") == 550
    assert code(ftp.sendcmd, "MFMT 20201302030405 f.txt") == 501  # month 13
    assert code(ftp.sendcmd, "MFMT yesterday f.txt") == 501
    assert code(ftp.sendcmd, "MFMT 20200102030405") == 501
    assert code(ftp.sendcmd, "MFMT 20200102030405 /../../etc/passwd") == 550
    assert code(ftp.sendcmd, "MFMT 20200102030405 .f.txt.ferry-part") == 553
    assert os.stat(home / "f.txt").st_mtime_ns == before
    assert ftp.voidcmd("NOOP")[:3] == "200"


def test_mfmt_needs_login(ferry_server):
    (ferry_server.home() / "f.txt").write_bytes(b"x")
    c = ferry_server.raw()
    assert c.cmd("MFMT 20200102030405 f.txt").code == 530


def test_mfmt_does_not_follow_links_out_of_the_home(ferry_server, ftp, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"secret")
    before = os.stat(outside).st_mtime_ns
    os.symlink(str(outside), ferry_server.home() / "out")
    assert code(ftp.sendcmd, "MFMT 20200102030405 out") == 550
    assert os.stat(outside).st_mtime_ns == before


def test_mff_modify(ferry_server, ftp):
    home = ferry_server.home()
    (home / "f.txt").write_bytes(b"x")
    r = ftp.sendcmd("MFF modify=20200102030405; f.txt")
    assert r == "213 modify=20200102030405; f.txt", r
    assert os.stat(home / "f.txt").st_mtime == _utc(2020, 1, 2, 3, 4, 5)
    # Fact names are case-insensitive.
    assert ftp.sendcmd("MFF Modify=20210102030405; f.txt")[:3] == "213"
    assert os.stat(home / "f.txt").st_mtime == _utc(2021, 1, 2, 3, 4, 5)
    before = os.stat(home / "f.txt").st_mtime_ns
    assert code(ftp.sendcmd, "MFF UNIX.mode=0777; f.txt") == 504
    assert code(ftp.sendcmd, "MFF create=20200102030405;modify=20200102030405; f.txt") == 504
    assert code(ftp.sendcmd, "MFF modify=2020; f.txt") == 501
    assert code(ftp.sendcmd, "MFF modify=20200102030405; missing.txt") == 550
    assert os.stat(home / "f.txt").st_mtime_ns == before


# ------------------------------------------------------------------ CLNT

def _log_contains(srv, text, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in srv.log_path.read_text(errors="replace"):
            return True
        time.sleep(0.05)
    return False


def test_clnt_before_login_is_noted_and_logged(ferry_server):
    c = ferry_server.raw()
    r = c.cmd("CLNT FileZilla 3.66.4")
    assert r.code == 200, r
    c.login("alice", PASSWORDS["alice"])
    stat = c.cmd("STAT")
    assert stat.code == 211 and any("FileZilla 3.66.4" in l for l in stat.lines), stat
    assert _log_contains(ferry_server, "client=FileZilla 3.66.4")
    assert c.cmd("CLNT").code == 501


def test_clnt_name_is_escaped_and_capped_in_the_log(ferry_server):
    c = ferry_server.raw()
    assert c.cmd(b"CLNT evil\x1b[31m" + b"x" * 500).code == 200
    assert c.cmd("NOOP").code == 200
    assert _log_contains(ferry_server, "client=evil\\u{1b}[31m")
    log = ferry_server.log_path.read_bytes()
    assert b"\x1b[31m" not in log
    assert b"x" * 200 not in log


# ------------------------------------------------------ backslash in names

def test_backslash_is_an_ordinary_name_character(ferry_server, ftp):
    home = ferry_server.home()
    name = "a\\b.txt"
    data = b"backslash content\n"
    assert stor_bytes(ftp, name, data)[:3] == "226"
    assert (home / name).read_bytes() == data
    assert sorted(os.listdir(home)) == [name]  # one file, no directory "a"
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", out.write)
    assert out.getvalue() == data
    assert name in ftp.nlst()
    lines: list[str] = []
    ftp.retrlines("LIST", lines.append)
    assert any(l.endswith(" " + name) for l in lines), lines
    assert ftp.size(name) == len(data)
    assert ftp.delete(name)[:3] == "250"
    assert not (home / name).exists()
    # Windows-style "up" is just a name that does not exist.
    assert code(ftp.sendcmd, "SIZE ..\\..\\etc\\passwd") == 550


# ------------------------------------------------------ REST past the end

def test_rest_past_end_then_stor_is_554_and_leaves_the_file(ferry_server):
    home = ferry_server.home()
    (home / "f.txt").write_bytes(b"abcdef")
    c = ferry_server.raw("alice")
    c.pasv()
    assert c.cmd("REST 100").code == 350
    r = c.cmd("STOR f.txt")
    assert r.code == 554, r  # no 150 before it
    assert (home / "f.txt").read_bytes() == b"abcdef"
    assert not (home / ".f.txt.ferry-part").exists()
    # A part file shorter than the offset does not help either.
    (home / ".f.txt.ferry-part").write_bytes(b"xyz")
    c.pasv()
    assert c.cmd("REST 7").code == 350
    assert c.cmd("STOR f.txt").code == 554
    assert (home / "f.txt").read_bytes() == b"abcdef"
    assert (home / ".f.txt.ferry-part").read_bytes() == b"xyz"
    # A missing file has no bytes to resume after.
    c.pasv()
    assert c.cmd("REST 5").code == 350
    assert c.cmd("STOR new.txt").code == 554
    assert not (home / "new.txt").exists()
    assert c.cmd("NOOP").code == 200


def test_rest_at_the_end_still_resumes(ferry_server, ftp):
    home = ferry_server.home()
    (home / "f.txt").write_bytes(b"abcdef")
    assert stor_bytes(ftp, "f.txt", b"gh", rest=6)[:3] == "226"
    assert (home / "f.txt").read_bytes() == b"abcdefgh"


def test_rest_past_end_then_retr_is_554_not_an_empty_success(ferry_server, ftp):
    home = ferry_server.home()
    (home / "f.txt").write_bytes(b"abcdef")
    c = ferry_server.raw("alice")
    c.pasv()
    assert c.cmd("REST 100").code == 350
    r = c.cmd("RETR f.txt")
    assert r.code == 554, r  # no 150, no empty 226
    assert "REST" in r.text
    # At the end exactly: an empty, successful transfer (the file is complete).
    data = io.BytesIO()
    ftp.retrbinary("RETR f.txt", data.write, rest=6)
    assert data.getvalue() == b""
    assert (home / "f.txt").read_bytes() == b"abcdef"


def test_eprt_reply_names_eprt(ferry_server):
    c = ferry_server.raw("alice")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        port = listener.getsockname()[1]
        r = c.cmd(f"EPRT |1|127.0.0.1|{port}|")
        assert r.code == 200 and "EPRT" in r.text and "PORT command" not in r.text, r
        r = c.cmd(f"PORT 127,0,0,1,{port >> 8},{port & 255}")
        assert r.code == 200 and "PORT command successful" in r.text, r
    finally:
        listener.close()
