"""The parts of the ferryd command line a test harness (and an admin) relies on."""

from __future__ import annotations

import ftplib
import io
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ferryd_binary, run_cli


def test_first_user_created_when_store_empty(start_server):
    srv = start_server(users={})
    first = [l for l in srv.stdout_lines if l.startswith("created first user:")]
    assert len(first) == 1, srv.stdout_lines
    m = re.match(r"^created first user: name=ferry password=(\S+) home=(/\S*)$", first[0])
    assert m, first[0]
    password, home = m.group(1), m.group(2)
    assert srv.stdout_lines.index(first[0]) < len(srv.stdout_lines) - 1  # before "listening"
    ftp = ftplib.FTP(timeout=10)
    srv._clients.append(ftp)
    ftp.connect(srv.host, srv.port, timeout=10)
    assert ftp.login("ferry", password)[:3] == "230"
    ftp.storbinary("STOR hello.txt", io.BytesIO(b"hi"))
    assert (Path(home) / "hello.txt").read_bytes() == b"hi"


def test_listening_line_is_exact(ferry_server):
    assert ferry_server.stdout_lines[-1] == f"ferryd listening on 127.0.0.1:{ferry_server.port}"


def test_user_list(ferry_server):
    r = run_cli(ferry_server.binary, ["--data-dir", str(ferry_server.data_dir), "user", "list"])
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "alice" in out and "bob" in out, out


@pytest.mark.parametrize("name", ["-bad", ".hidden", "a/b", "x" * 33, "", "sp ace", "ünï"])
def test_user_add_invalid_name(tmp_path, name):
    # "--" so that clap passes names like "-bad" through to ferryd's own validation
    r = run_cli(ferryd_binary(), ["--data-dir", str(tmp_path / "d"), "user", "add",
                                  "--password-stdin", "--", name], stdin="pw-12345\n", cwd=tmp_path)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.decode().startswith("ferryd: error: "), r.stderr


def test_user_add_duplicate(tmp_path):
    args = ["--data-dir", str(tmp_path / "d"), "user", "add", "alice", "--password-stdin"]
    assert run_cli(ferryd_binary(), args, stdin="pw-1\n", cwd=tmp_path).returncode == 0
    r = run_cli(ferryd_binary(), args, stdin="pw-2\n", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.decode().startswith("ferryd: error: "), r.stderr


def test_sigterm_exits_promptly(start_server):
    srv = start_server()
    ftp = srv.connect("alice")
    ftp.quit()
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    try:
        rc = srv.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("ferryd still running 10 s after SIGTERM")
    assert time.monotonic() - t0 < 5
    assert rc == 0, rc


def test_sigterm_with_connected_client(start_server):
    srv = start_server(shutdown_grace_secs=2)
    c = srv.raw("alice")
    srv.proc.send_signal(signal.SIGTERM)
    try:
        srv.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("ferryd still running 10 s after SIGTERM with grace 2 s")
    # whatever the client got, the connection must be closed now
    data = c.wait_closed(timeout=5)
    if data:
        assert data.startswith(b"421"), data
