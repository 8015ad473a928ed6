"""Data connections from the client's side of the timing: a client that connects to the
passive port before it sends RETR (ftplib, curl), one that connects only after, a stranger
that gets there first, and the Telnet "Synch" some clients send in front of ABOR.

The server takes a queued data connection without waiting and sends a small file in one
go, so these check that every ordering still gives the whole file and 150 before 226."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import threading
import time

import pytest

from ftphelp import RawClient, wait_for_size


def _connect(addr, source=None) -> socket.socket:
    s = socket.create_connection(addr, timeout=10, source_address=source)
    s.settimeout(10)
    return s


def _read_all(s: socket.socket) -> bytes:
    chunks = []
    while True:
        b = s.recv(1 << 16)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def _put(srv, name: str, size: int) -> bytes:
    data = os.urandom(size)
    (srv.home() / name).write_bytes(data)
    return data


def _retr_connect_first(c: RawClient, name: str) -> tuple[bytes, list[int]]:
    addr = c.pasv()
    data_sock = _connect(addr)
    c.send(f"RETR {name}\r\n".encode())
    got = _read_all(data_sock)
    data_sock.close()
    return got, [c.reply().code, c.reply().code]


@pytest.mark.parametrize("size", [0, 1, 4096, 100_000, 9 * 1024 * 1024 + 7])
def test_retr_client_connected_before_retr(ferry_server, size):
    data = _put(ferry_server, "f.bin", size)
    c = ferry_server.raw("alice")
    got, codes = _retr_connect_first(c, "f.bin")
    assert codes == [150, 226]
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert c.cmd("NOOP").code == 200


@pytest.mark.parametrize("size", [4096, 9 * 1024 * 1024 + 7])
def test_retr_client_connects_after_retr(ferry_server, size):
    data = _put(ferry_server, "late.bin", size)
    c = ferry_server.raw("alice")
    addr = c.pasv()
    c.send(b"RETR late.bin\r\n")
    # The server must announce the transfer and wait for us, not fail or hang.
    first = c.reply()
    assert first.code == 150, first
    time.sleep(0.3)
    data_sock = _connect(addr)
    got = _read_all(data_sock)
    data_sock.close()
    assert c.reply().code == 226
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_many_small_retrs_on_one_session(ferry_server):
    files = {f"s{i:03d}.bin": _put(ferry_server, f"s{i:03d}.bin", 1 + i * 37) for i in range(150)}
    c = ferry_server.raw("alice")
    for name, data in files.items():
        got, codes = _retr_connect_first(c, name)
        assert codes == [150, 226], name
        assert got == data, name
    assert c.cmd("NOOP").code == 200


def test_stranger_connecting_first_does_not_get_the_file(ferry_server):
    """A connection from another address queued on the passive port before the client's own
    is refused; the client's connection gets the file."""
    data = _put(ferry_server, "secret.bin", 50_000)
    c = ferry_server.raw("alice")
    addr = c.pasv()
    stranger = _connect(addr, source=("127.0.0.2", 0))
    time.sleep(0.1)  # queued first
    own = _connect(addr)
    c.send(b"RETR secret.bin\r\n")
    got = _read_all(own)
    own.close()
    assert [c.reply().code, c.reply().code] == [150, 226]
    assert got == data
    try:
        leaked = _read_all(stranger)
    except ConnectionResetError:
        leaked = b""
    stranger.close()
    assert leaked == b""


def test_stranger_alone_then_client_late(ferry_server):
    data = _put(ferry_server, "f.bin", 4096)
    c = ferry_server.raw("alice")
    addr = c.pasv()
    stranger = _connect(addr, source=("127.0.0.2", 0))
    c.send(b"RETR f.bin\r\n")
    assert c.reply().code == 150
    time.sleep(0.2)
    own = _connect(addr)
    got = _read_all(own)
    own.close()
    assert c.reply().code == 226
    assert got == data
    stranger.close()


def test_pasv_again_drops_the_unused_connection(ferry_server):
    """A second PASV replaces the first: a connection made to the first port never gets a
    transfer, and the next RETR uses the new port."""
    data = _put(ferry_server, "f.bin", 4096)
    c = ferry_server.raw("alice")
    first = c.pasv()
    early = _connect(first)
    second = c.pasv()
    own = _connect(second)
    c.send(b"RETR f.bin\r\n")
    got = _read_all(own)
    assert [c.reply().code, c.reply().code] == [150, 226]
    assert got == data
    try:
        assert _read_all(early) == b""
    except ConnectionResetError:
        pass
    early.close()
    own.close()


def test_telnet_synch_abor_during_transfer(ferry_server):
    """lftp and RFC 959 clients send IAC IP, then IAC DM with the DM as TCP urgent data,
    then ABOR: the command must be read although the read stops at the urgent mark."""
    _put(ferry_server, "big.bin", 64 * 1024 * 1024)
    c = ferry_server.raw("alice")
    addr = c.pasv()
    data_sock = _connect(addr)
    c.send(b"RETR big.bin\r\n")
    assert c.reply().code == 150
    data_sock.recv(1 << 16)  # the transfer is running; we stop reading
    c.sock.send(b"\xff\xf4\xff")
    c.sock.send(b"\xf2", socket.MSG_OOB)
    c.sock.send(b"ABOR\r\n")
    codes = [c.reply().code]
    if codes[0] == 426:
        codes.append(c.reply().code)
    data_sock.close()
    assert codes == [426, 226], codes
    assert c.cmd("NOOP").code == 200


def test_telnet_synch_abor_when_idle(ferry_server):
    c = ferry_server.raw("alice")
    c.sock.send(b"\xff\xf4\xff")
    c.sock.send(b"\xf2", socket.MSG_OOB)
    c.sock.send(b"ABOR\r\n")
    assert c.reply().code == 225
    assert c.cmd("NOOP").code == 200


def test_concurrent_small_retrs(ferry_server):
    """Sixteen sessions fetching small files at once, as the small-file benchmark does."""
    files = {f"c{i:03d}.bin": _put(ferry_server, f"c{i:03d}.bin", 4096) for i in range(64)}
    names = list(files)
    errors: list[str] = []

    def worker(k: int) -> None:
        try:
            c = ferry_server.raw("alice")
            for name in names[k::16]:
                got, codes = _retr_connect_first(c, name)
                if codes != [150, 226] or got != files[name]:
                    errors.append(f"{name}: {codes} {len(got)} bytes")
            c.cmd("QUIT")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_retr_of_a_fifo_is_refused_at_once(ferry_server):
    """A FIFO someone placed in a home is not a file to send: 550, without waiting for a
    writer that never comes (and without tying up a server thread)."""
    os.mkfifo(ferry_server.home() / "pipe")
    c = ferry_server.raw("alice")
    c.pasv()
    t0 = time.monotonic()
    r = c.cmd("RETR pipe")
    assert r.code == 550, r
    assert c.cmd("XSHA256 pipe").code == 550
    assert time.monotonic() - t0 < 5
    assert c.cmd("NOOP").code == 200


def _free_port_range(n: int) -> tuple[int, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        base = s.getsockname()[1]
    return (base, base + n - 1) if base + n - 1 <= 65535 else (40000, 40000 + n - 1)


def test_one_port_range_serves_sessions_in_turn(start_server):
    """With a one-port passive range, a session that just finished a transfer must not keep
    the port from the next session's PASV."""
    lo, hi = _free_port_range(1)
    srv = start_server(passive_ports=f"{lo}-{hi}")
    data = _put(srv, "f.bin", 4096)
    a, b = srv.raw("alice"), srv.raw("alice")
    for _ in range(3):
        for c in (a, b):
            got, codes = _retr_connect_first(c, "f.bin")
            assert codes == [150, 226]
            assert got == data


def test_sessions_transfer_again_and_again_in_a_small_range(start_server):
    """Twelve ports, eight sessions of one user each fetching files back to back: nobody gets
    425 (a user may hold ports beyond its quarter of the range while a quarter stays free)."""
    lo, hi = _free_port_range(12)
    srv = start_server(passive_ports=f"{lo}-{hi}")
    data = _put(srv, "f.bin", 4096)
    errors: list[str] = []

    def worker() -> None:
        try:
            c = srv.raw("alice")
            for _ in range(20):
                got, codes = _retr_connect_first(c, "f.bin")
                if codes != [150, 226] or got != data:
                    errors.append(f"{codes} {len(got)}")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


def test_parked_port_is_offered_again_and_released(start_server):
    """A session fetching files one after another gets the same passive port again, and a
    port left unused goes back to the range within seconds."""
    lo, hi = _free_port_range(40)
    srv = start_server(passive_ports=f"{lo}-{hi}")
    data = _put(srv, "f.bin", 4096)
    c = srv.raw("alice")
    ports = []
    for _ in range(3):
        addr = c.pasv()
        ports.append(addr[1])
        data_sock = _connect(addr)
        c.send(b"RETR f.bin\r\n")
        assert _read_all(data_sock) == data
        data_sock.close()
        assert [c.reply().code, c.reply().code] == [150, 226]
    assert len(set(ports)) == 1, ports
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", ports[0]))
                probe.listen(1)
                break
            except OSError:
                assert time.monotonic() < deadline, f"port {ports[0]} still held after 10 s"
        time.sleep(0.2)
    assert c.cmd("NOOP").code == 200


def test_stalled_uploads_leave_threads_for_everyone_else(start_server):
    """An upload holds a blocking thread while it waits for the client's bytes. Uploads may
    hold at most half of the server's blocking threads, so uploads that stall cannot stop
    other users' logins (argon2id runs on those threads), listings and downloads. An upload
    past the bound waits for a thread, with 150 sent, then completes whole; ABOR ends the
    wait."""
    srv = start_server(blocking_threads=4)          # uploads may hold 2
    (srv.home("bob") / "hello.txt").write_bytes(b"hello from bob")
    uploads = []
    for i in range(4):
        f = srv.connect("alice")
        f.voidcmd("TYPE I")
        uploads.append((f, f.transfercmd(f"STOR up{i}.bin"), os.urandom(300_000 + i)))
    # Two uploads hold a thread each and two wait; none has sent a byte.
    other = srv.connect("bob")                      # fails with a timeout when starved
    assert other.nlst() == ["hello.txt"]
    got = []
    other.retrbinary("RETR hello.txt", got.append)
    assert b"".join(got) == b"hello from bob"
    other.quit()
    # ABOR of a waiting upload: 426 then 226, and the session goes on.
    f, conn, _ = uploads.pop()
    conn.close()
    assert f.abort().startswith("426")
    assert f.voidresp().startswith("226")
    assert f.voidcmd("NOOP").startswith("200")
    for i, (f, conn, data) in enumerate(uploads):
        conn.sendall(data)
        conn.close()
        assert f.voidresp().startswith("226")
        assert (srv.home() / f"up{i}.bin").read_bytes() == data


def test_a_quiet_upload_gives_its_thread_back(start_server):
    """A plain upload whose client pauses gives its blocking thread back after a second and
    takes one again when bytes come: with room for two uploads on threads, two uploads paused
    half-way do not hold up a third, and both finish whole when their clients go on."""
    srv = start_server(blocking_threads=4)          # uploads may hold 2
    paused = []
    for i in range(2):
        f = srv.connect("alice")
        f.voidcmd("TYPE I")
        conn = f.transfercmd(f"STOR paused{i}.bin")
        data = os.urandom(2_000_000 + i)
        conn.sendall(data[:1_000_000])
        paused.append((f, conn, data, srv.home() / f"paused{i}.bin"))
    for *_, path in paused:
        wait_for_size(path, 1_000_000)
    third = srv.connect("bob")                      # 10 s timeout: fails if never served
    third.voidcmd("TYPE I")
    payload = os.urandom(500_000)
    assert third.storbinary("STOR third.bin", io.BytesIO(payload)).startswith("226")
    assert (srv.home("bob") / "third.bin").read_bytes() == payload
    for f, conn, data, path in paused:
        conn.sendall(data[1_000_000:])
        conn.close()
        assert f.voidresp().startswith("226")
        assert path.read_bytes() == data
