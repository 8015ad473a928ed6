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
