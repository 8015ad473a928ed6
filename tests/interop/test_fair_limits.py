"""Nobody starved: one user (or address) cannot take every passive port, connections that
never log in cannot take the session slots of those that do."""

from __future__ import annotations

import random
import socket
import time

import ftplib
import pytest

from ftphelp import PASSWORDS, RawClient


def free_port_range(n: int) -> tuple[int, int]:
    """A run of `n` ports below the kernel's ephemeral range that nothing listens on now."""
    for _ in range(50):
        lo = random.randrange(20000, 30000 - n)
        ok = True
        for p in range(lo, lo + n):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                ok = False
                break
            finally:
                s.close()
        if ok:
            return lo, lo + n - 1
    pytest.fail("no free port range")


def test_one_user_cannot_take_every_passive_port(start_server):
    lo, hi = free_port_range(20)
    srv = start_server(passive_ports=f"{lo}-{hi}")
    hoarders = [srv.raw("alice") for _ in range(18)]
    replies = [c.cmd("PASV") for c in hoarders]
    got = [r for r in replies if r.code == 227]
    refused = [r for r in replies if r.code == 425]
    # Beyond her quarter (5 of 20), alice gets ports only while a quarter stays free: 15.
    assert len(got) == 15, replies
    assert refused and "passive ports" in refused[0].text, refused
    # Bob, on another address, still gets ports and can transfer.
    (srv.home("bob") / "b.txt").write_bytes(b"bob's file")
    bob = ftplib.FTP()
    bob.connect("127.0.0.1", srv.port, source_address=("127.0.0.2", 0), timeout=10)
    bob.login("bob", PASSWORDS["bob"])
    for _ in range(3):
        chunks = []
        bob.retrbinary("RETR b.txt", chunks.append)
        assert b"".join(chunks) == b"bob's file"
    # When alice's sessions end, her share comes back.
    for c in hoarders:
        c.close()
    deadline = time.monotonic() + 5
    while True:
        again = srv.raw("alice")
        r = again.cmd("PASV")
        if r.code == 227 or time.monotonic() > deadline:
            break
        again.close()
        time.sleep(0.1)
    assert r.code == 227, r


def _timed_upload(srv, user: str, data: bytes, ascii: bool) -> float:
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", srv.port, timeout=30)
    ftp.login(user, PASSWORDS[user])
    t0 = time.monotonic()
    if ascii:
        ftp.storlines("STOR up.txt", __import__("io").BytesIO(data))
    else:
        ftp.storbinary("STOR up.bin", __import__("io").BytesIO(data))
    elapsed = time.monotonic() - t0
    ftp.quit()
    return elapsed


@pytest.mark.parametrize("ascii", [True, False], ids=["type-a", "type-i"])
def test_trickling_uploads_do_not_hold_up_another_users_upload(start_server, ascii):
    """Many uploads of one user that send a byte now and then (TYPE A goes through the
    user-space path, like TLS) must not take the upload threads another user's upload needs:
    with 8 blocking threads (4 for uploads) and 12 trickling uploads, bob's 1 MiB upload stays
    within twice its idle time."""
    srv = start_server(blocking_threads=8)
    data = (b"line of text\n" * 80_000)[: 1024 * 1024]
    idle = min(_timed_upload(srv, "bob", data, ascii) for _ in range(3))
    tricklers = []
    try:
        for i in range(12):
            c = srv.raw("alice")
            if ascii:
                assert c.cmd("TYPE A").code == 200
            host, port = c.pasv()
            d = socket.create_connection((host, port), timeout=10)
            c.send(f"STOR t{i}.txt\r\n".encode())
            assert c.reply().code == 150
            d.sendall(b"x\n")
            tricklers.append((c, d))
        busy = []
        for _ in range(5):
            for _, d in tricklers:
                d.sendall(b"y\n")
            busy.append(_timed_upload(srv, "bob", data, ascii))
        # The median of five: one upload slowed by the noisy host is not the server's doing;
        # before the fix, every one of them waited for as long as the tricklers lived.
        typical = sorted(busy)[len(busy) // 2]
        assert typical < 2 * idle + 0.5, (typical, idle, busy)
    finally:
        for c, d in tricklers:
            d.close()
            c.close()


def _login_time(srv, user: str) -> float:
    t0 = time.monotonic()
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", srv.port, timeout=10)
    ftp.login(user, PASSWORDS[user])
    elapsed = time.monotonic() - t0
    ftp.quit()
    return elapsed


def test_connections_that_never_log_in_cannot_fill_the_server(start_server):
    """A flood of connections that never log in, from 10 addresses, each under the per-address
    session limit: they fill only their own budget (per address and server-wide), get 421 at
    the login deadline, and a user from another address logs in as fast as ever."""
    srv = start_server(max_sessions=400, max_sessions_per_ip=100, max_unauthenticated=150,
                       max_unauthenticated_per_ip=8, login_timeout_secs=5)
    idle = min(_login_time(srv, "alice") for _ in range(3))
    flood, refused = [], 0
    for i in range(10):
        for _ in range(20):
            s = socket.create_connection((srv.host, srv.port), timeout=10,
                                         source_address=(f"127.0.0.{i + 2}", 0))
            greeting = s.recv(200)
            if greeting.startswith(b"421"):
                refused += 1
                s.close()
            else:
                assert greeting.startswith(b"220"), greeting
                flood.append(s)
    assert len(flood) == 80 and refused == 120, (len(flood), refused)
    try:
        busy = [_login_time(srv, "alice") for _ in range(3)]
        assert sorted(busy)[1] < 2 * idle + 0.3, (idle, busy)
        # Logged-in sessions do not count against the budget of those waiting.
        logged = [srv.connect("bob") for _ in range(20)]
        for f in logged:
            assert f.voidcmd("NOOP").startswith("200")
        # At the deadline, every connection that did not log in is told and closed.
        deadline = time.monotonic() + 10
        closed = 0
        for s in flood:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            data = s.recv(200)
            assert data.startswith(b"421") and b"Login timed out" in data, data
            closed += 1
        assert closed == 80
        for f in logged:
            assert f.voidcmd("NOOP").startswith("200")
    finally:
        for s in flood:
            s.close()
