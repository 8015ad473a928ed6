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
