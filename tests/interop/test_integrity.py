"""HASH / OPTS HASH / RANG (draft-bryan-ftpext-hash, draft-bryan-ftp-range) and the legacy
XSHA256, XSHA512, XSHA1, XMD5, XCRC: digests equal Python's hashlib / zlib.crc32 on files from
0 bytes to 1 GiB and on ranges; error replies; ABOR, QUIT and disconnects during a long hash
leave nothing running."""

from __future__ import annotations

import hashlib
import os
import re
import time
import zlib
from pathlib import Path

import pytest

from ftphelp import RawClient

# Every test here runs against local disk and S3 (see conftest.py).
BACKENDS = ("local", "s3")

from conftest import s3_client  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
ALGOS = ["SHA-256", "SHA-512", "SHA-1", "MD5", "CRC32"]
LEGACY = {"XSHA256": "SHA-256", "XSHA512": "SHA-512", "XSHA1": "SHA-1", "XMD5": "MD5",
          "XCRC": "CRC32"}
HASH_RE = re.compile(r"^213 (?P<algo>\S+) (?P<start>\d+)-(?P<end>\d+) (?P<hex>[0-9a-f]+) (?P<path>.+)$")
# A 1 GiB hash in a debug build takes a few seconds; this bounds every wait for one.
BIG_TIMEOUT = 120


class Crc32:
    def __init__(self):
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)

    def hexdigest(self) -> str:
        return f"{self.value:08x}"


def hasher(algo: str):
    return {
        "SHA-256": hashlib.sha256,
        "SHA-512": hashlib.sha512,
        "SHA-1": hashlib.sha1,
        "MD5": hashlib.md5,
        "CRC32": Crc32,
    }[algo]()


def digest(algo: str, data: bytes) -> str:
    h = hasher(algo)
    h.update(data)
    return h.hexdigest()


def hash_cmd(c: RawClient, path: str):
    """HASH path -> the parsed 213 reply (fails on anything else)."""
    r = c.cmd(f"HASH {path}")
    assert r.code == 213 and len(r.lines) == 1, f"HASH {path}: {r}"
    m = HASH_RE.match(r.lines[0])
    assert m, f"HASH reply not in draft form: {r}"
    return m


def legacy_cmd(c: RawClient, line: str) -> str:
    r = c.cmd(line)
    assert r.code == 250 and len(r.lines) == 1, f"{line}: {r}"
    parts = r.lines[0].split()
    assert len(parts) == 2 and re.fullmatch(r"[0-9a-f]+", parts[1]), f"{line}: {r}"
    return parts[1]


def check_all(c: RawClient, path: str, data: bytes) -> None:
    """HASH in every algorithm and every legacy verb agree with Python on `data`."""
    for algo in ALGOS:
        assert c.cmd(f"OPTS HASH {algo}").lines[0] == f"200 {algo}"
        m = hash_cmd(c, path)
        assert m["algo"] == algo
        assert (int(m["start"]), int(m["end"])) == (0, len(data)), m.group(0)
        assert m["hex"] == digest(algo, data), f"HASH {algo} of {len(data)} bytes"
        assert m["path"] == path
    for verb, algo in LEGACY.items():
        assert legacy_cmd(c, f"{verb} {path}") == digest(algo, data), f"{verb} {len(data)} bytes"


# ------------------------------------------------------------ the 1 GiB file

@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """1 GiB of random-looking data (64 MiB of urandom, each copy stamped differently) and its
    digests, made once per module; tests hard-link it into a home (the `big` fixture)."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    block = bytearray(os.urandom(64 * MiB))
    hashers = {algo: hasher(algo) for algo in ALGOS}
    with open(path, "wb") as f:
        for i in range(GiB // len(block)):
            block[:16] = f"piece {i:09d}\n".encode()
            f.write(block)
            for h in hashers.values():
                h.update(block)
    assert path.stat().st_size == GiB
    yield path, {algo: h.hexdigest() for algo, h in hashers.items()}
    path.unlink(missing_ok=True)  # kept test dirs must not pile up GiBs


@pytest.fixture
def big(ferry_server, big_file) -> dict[str, str]:
    """alice's /big.bin (a hard link to the 1 GiB file); its digests by algorithm."""
    path, digests = big_file
    link = ferry_server.home("alice") / "big.bin"
    if ferry_server.backend == "s3":
        # Multipart, as a big object is: HASH reads it back in ranged GETs.
        s3_client().upload_file(str(path), ferry_server.s3_bucket, link.key)
        yield digests
        link.unlink()
        return
    os.link(path, link)
    yield digests
    link.unlink(missing_ok=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_progress(c: RawClient, timeout: float = 30) -> int:
    """Polls STAT until the running hash has hashed some bytes; returns how many."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = c.cmd("STAT")
        assert r.code == 211, r
        m = re.search(r"HASH .*: (\d+) bytes transferred", r.text)
        if m and int(m.group(1)) > 0:
            return int(m.group(1))
        time.sleep(0.01)
    raise AssertionError(f"no hash progress in STAT within {timeout}s")


def stopped_lines(srv, timeout: float = 10) -> list[tuple[int, int]]:
    """(bytes, of) of every "hash stopped" line in the server log, waiting for at least one."""
    deadline = time.monotonic() + timeout
    while True:
        text = srv.log_path.read_text(errors="replace")
        found = [(int(b), int(o)) for b, o in
                 re.findall(r"hash stopped.*?bytes=(\d+) of=(\d+)", text)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def assert_idle(srv, seconds: float = 1.0) -> None:
    """The server burns (almost) no CPU: no hash keeps running after its job ended."""
    before = cpu_seconds(srv.proc.pid)
    time.sleep(seconds)
    used = cpu_seconds(srv.proc.pid) - before
    assert used < 0.3 * seconds, f"ferryd used {used:.2f}s CPU in {seconds}s while idle"


def test_big_file_all_algorithms(ferry_server, big, big_file):
    """HASH and every legacy verb on 1 GiB. (OPTS HASH switching is covered on small files: HASH
    in another algorithm runs the same code as its X-command, and MD5 is slow in debug builds.)"""
    digests = big
    c = ferry_server.raw("alice", timeout=BIG_TIMEOUT)
    m = hash_cmd(c, "big.bin")
    assert (m["algo"], m["start"], m["end"], m["path"]) == ("SHA-256", "0", str(GiB), "big.bin")
    assert m["hex"] == digests["SHA-256"], "HASH SHA-256 of 1 GiB"
    for verb, algo in LEGACY.items():
        assert legacy_cmd(c, f"{verb} big.bin") == digests[algo], f"{verb} of 1 GiB"
    # Ranges at the far end of the big file, crossing chunk boundaries.
    start = GiB - 5 * MiB - 7
    with open(big_file[0], "rb") as f:
        f.seek(start)
        tail = f.read()
    assert c.cmd(f"RANG {start} {GiB - 1}").code == 350
    m = hash_cmd(c, "big.bin")
    assert (m["start"], m["end"]) == (str(start), str(GiB - 1))
    assert m["hex"] == digest("SHA-256", tail)
    assert legacy_cmd(c, f"XSHA1 big.bin {start} {GiB}") == digest("SHA-1", tail)
    assert legacy_cmd(c, f"XCRC big.bin {start} {GiB - 1}") == digest("CRC32", tail[:-1])


def test_abor_stops_a_long_hash(ferry_server, big):
    srv = ferry_server
    digests = big
    (srv.home("alice") / "small.txt").write_bytes(b"small file\n")
    c = srv.raw("alice", timeout=BIG_TIMEOUT)
    assert c.cmd("OPTS HASH MD5").code == 200  # the slowest one: the widest window for ABOR
    c.send(b"HASH big.bin\r\n")
    wait_for_progress(c)
    started = time.monotonic()
    c.sock.settimeout(10)
    r1 = c.cmd("ABOR")
    r2 = c.reply()
    took = time.monotonic() - started
    assert (r1.code, r2.code) == (426, 226), f"ABOR during HASH: {r1} / {r2}"
    assert took < 3, f"ABOR took {took:.1f}s"
    # The worker logged that it stopped, part-way.
    stops = stopped_lines(srv)
    assert len(stops) == 1, f"expected one 'hash stopped' line, got {stops}\n{srv.log_tail()}"
    hashed, of = stops[0]
    assert of == GiB and hashed < GiB, stops
    assert_idle(srv)
    # The session goes on: the next commands and hashes work.
    assert c.cmd("NOOP").code == 200
    m = hash_cmd(c, "small.txt")
    assert m["hex"] == digest("MD5", b"small file\n")
    assert c.cmd("OPTS HASH SHA-256").code == 200
    c.sock.settimeout(BIG_TIMEOUT)
    assert hash_cmd(c, "big.bin")["hex"] == digests["SHA-256"]


def test_quit_during_hash_reports_then_closes(ferry_server, big):
    srv = ferry_server
    digests = big
    c = srv.raw("alice", timeout=BIG_TIMEOUT)
    c.send(b"HASH big.bin\r\n")
    wait_for_progress(c)
    started = time.monotonic()
    c.send(b"QUIT\r\n")
    # RFC 959: QUIT during a job lets it report, then closes.
    r = c.reply()
    m = HASH_RE.match(r.lines[0])
    assert r.code == 213 and m and m["hex"] == digests["SHA-256"], r
    assert c.reply().code == 221
    assert c.wait_closed(timeout=10) == b""
    assert time.monotonic() - started < 60
    assert_idle(srv)


def test_disconnect_during_hash_stops_it(ferry_server, big):
    srv = ferry_server
    c = srv.raw("alice", timeout=BIG_TIMEOUT)
    assert c.cmd("OPTS HASH MD5").code == 200
    c.send(b"HASH big.bin\r\n")
    wait_for_progress(c)
    c.close()
    stops = stopped_lines(srv)
    assert len(stops) == 1 and stops[0][0] < GiB, f"{stops}\n{srv.log_tail()}"
    assert_idle(srv)
    # The server still serves.
    c2 = srv.raw("alice")
    assert c2.cmd("NOOP").code == 200


def test_stat_shows_hash_progress_and_other_commands_wait(ferry_server, big):
    srv = ferry_server
    digests = big
    c = srv.raw("alice", timeout=BIG_TIMEOUT)
    assert c.cmd("OPTS HASH SHA-512").code == 200
    c.send(b"HASH big.bin\r\n")
    first = wait_for_progress(c)
    assert 0 < first <= GiB
    # PWD is not urgent: it is answered after the hash's reply, in order.
    c.send(b"PWD\r\n")
    r = c.reply()
    assert r.code == 213 and HASH_RE.match(r.lines[0])["hex"] == digests["SHA-512"], r
    assert c.reply().code == 257


# ----------------------------------------------------------------- small files

@pytest.mark.parametrize("size", [0, 1, MiB + 3], ids=["empty", "1byte", "1MiB+3"])
def test_hash_equals_python(ferry_server, size):
    data = os.urandom(size)
    (ferry_server.home("alice") / "f.bin").write_bytes(data)
    c = ferry_server.raw("alice")
    check_all(c, "f.bin", data)


def test_names_with_spaces_and_subdirs(ferry_server):
    home = ferry_server.home("alice")
    (home / "sub dir").mkdir()
    data = b"hello world\n" * 1000
    (home / "sub dir" / "my file.txt").write_bytes(data)
    c = ferry_server.raw("alice")
    m = hash_cmd(c, "sub dir/my file.txt")
    assert m["path"] == "sub dir/my file.txt" and m["hex"] == digest("SHA-256", data)
    m = hash_cmd(c, "/sub dir/my file.txt")
    assert m["path"] == "/sub dir/my file.txt" and m["hex"] == digest("SHA-256", data)
    assert c.cmd("CWD sub dir").code == 250
    assert hash_cmd(c, "my file.txt")["hex"] == digest("SHA-256", data)
    assert legacy_cmd(c, "XCRC my file.txt") == digest("CRC32", data)
    assert legacy_cmd(c, "XSHA1 my file.txt 0 12") == digest("SHA-1", data[:12])


def test_rang_then_hash(ferry_server):
    data = os.urandom(MiB + 3)
    (ferry_server.home("alice") / "f.bin").write_bytes(data)
    c = ferry_server.raw("alice")
    cases = [(0, 0), (0, 49), (5, len(data) - 1), (MiB - 1, MiB + 1), (len(data) - 1, len(data) - 1)]
    for algo in ("SHA-256", "CRC32"):
        assert c.cmd(f"OPTS HASH {algo}").code == 200
        for start, end in cases:
            r = c.cmd(f"RANG {start} {end}")
            assert r.code == 350, r
            m = hash_cmd(c, "f.bin")
            assert (int(m["start"]), int(m["end"])) == (start, end), m.group(0)
            assert m["hex"] == digest(algo, data[start:end + 1]), f"{algo} RANG {start} {end}"
            # The range was used up: the next HASH covers the whole file again.
            m = hash_cmd(c, "f.bin")
            assert (m["start"], m["end"], m["hex"]) == ("0", str(len(data)), digest(algo, data))
    # "RANG 1 0" resets (350), so the HASH after it is whole-file.
    assert c.cmd("RANG 0 9").code == 350
    assert c.cmd("RANG 1 0").code == 350
    m = hash_cmd(c, "f.bin")
    assert (m["start"], m["end"]) == ("0", str(len(data)))
    # A HASH that fails still uses up the range.
    assert c.cmd("RANG 0 9").code == 350
    assert c.cmd("HASH nope.bin").code == 550
    assert hash_cmd(c, "f.bin")["end"] == str(len(data))


def test_legacy_ranges(ferry_server):
    data = os.urandom(MiB + 3)
    (ferry_server.home("alice") / "f.bin").write_bytes(data)
    c = ferry_server.raw("alice")
    # start end, end exclusive (ProFTPD mod_digest, ftpserverlib).
    for verb, algo in LEGACY.items():
        for start, end in [(7, 11), (0, len(data)), (MiB - 2, MiB + 3), (5, 5)]:
            got = legacy_cmd(c, f"{verb} f.bin {start} {end}")
            assert got == digest(algo, data[start:end]), f"{verb} f.bin {start} {end}"


def test_opts_hash(ferry_server):
    c = ferry_server.raw("alice")
    feat = c.cmd("FEAT")
    assert " HASH SHA-256*;SHA-512;SHA-1;MD5;CRC32" in feat.lines, feat
    assert c.cmd("OPTS HASH").lines[0] == "200 SHA-256"
    assert c.cmd("OPTS HASH SHA-512").lines[0] == "200 SHA-512"
    assert c.cmd("OPTS HASH").lines[0] == "200 SHA-512"
    assert c.cmd("opts hash md5").lines[0] == "200 MD5"
    assert c.cmd("OPTS HASH sha-1").lines[0] == "200 SHA-1"
    # Unknown algorithm: 501 and the selection stays (draft-bryan-ftpext-hash §3.2, §3.5).
    r = c.cmd("OPTS HASH CRC-37")
    assert r.code == 501, r
    assert c.cmd("OPTS HASH").lines[0] == "200 SHA-1"
    (ferry_server.home("alice") / "f.txt").write_bytes(b"abc")
    m = hash_cmd(c, "f.txt")
    assert (m["algo"], m["hex"]) == ("SHA-1", digest("SHA-1", b"abc"))
    # The selection is per session.
    c2 = ferry_server.raw("alice")
    assert c2.cmd("OPTS HASH").lines[0] == "200 SHA-256"
    assert hash_cmd(c2, "f.txt")["algo"] == "SHA-256"


def test_errors(ferry_server):
    home = ferry_server.home("alice")
    (home / "d").mkdir()
    (home / "f.txt").write_bytes(b"0123456789")
    c = ferry_server.raw("alice")
    for line in ["HASH missing.txt", "HASH d", "HASH /", "XSHA256 missing.txt", "XCRC d",
                 "XMD5 d 0 1"]:
        r = c.cmd(line)
        assert r.code == 550, f"{line}: {r}"
    # RANG start > end: 501, and the range is reset.
    assert c.cmd("RANG 0 4").code == 350
    assert c.cmd("RANG 5 4").code == 501
    assert hash_cmd(c, "f.txt")["end"] == "10"
    # A range past the end of the file: refused when HASH runs.
    assert c.cmd("RANG 0 10").code == 350
    assert c.cmd("HASH f.txt").code == 501
    assert c.cmd("RANG 10 10").code == 350
    assert c.cmd("HASH f.txt").code == 501
    (home / "empty").write_bytes(b"")
    assert c.cmd("RANG 0 0").code == 350
    assert c.cmd("HASH empty").code == 501
    # Malformed RANG / legacy ranges.
    assert c.cmd("RANG 1").code == 501
    assert c.cmd("RANG a b").code == 501
    assert c.cmd("XSHA256 f.txt 5 4").code == 501
    assert c.cmd("XSHA256 f.txt 0 11").code == 501
    assert c.cmd("HASH").code == 501
    # Still fine afterwards.
    assert hash_cmd(c, "f.txt")["hex"] == digest("SHA-256", b"0123456789")


def test_needs_login(ferry_server):
    c = ferry_server.raw()
    for line in ["HASH f.txt", "XSHA256 f.txt", "RANG 0 1", "OPTS HASH", "OPTS HASH MD5"]:
        assert c.cmd(line).code == 530, line


@pytest.mark.parametrize("path", [
    "../../etc/passwd", "/../../etc/passwd", "../../../../../../../etc/passwd",
    "sub/../../../etc/passwd", "escape/passwd", "outfile",
])
@pytest.mark.local_only  # links on disk (test_traversal.py covers the jail on S3)
def test_traversal_refused(ferry_server, tmp_path, path):
    home = ferry_server.home("alice")
    (home / "sub").mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside the jail\n")
    os.symlink("/etc", home / "escape")
    os.symlink(str(secret), home / "outfile")
    c = ferry_server.raw("alice")
    leaks = {digest(a, b"outside the jail\n") for a in ALGOS}
    if os.path.exists("/etc/passwd"):
        passwd = Path("/etc/passwd").read_bytes()
        leaks |= {digest(a, passwd) for a in ALGOS}
    for line in [f"HASH {path}", f"XSHA256 {path}", f"XCRC {path}", f"XMD5 {path} 0 1"]:
        r = c.cmd(line)
        assert r.code == 550, f"{line}: {r}"
        assert not any(h in r.text for h in leaks), f"{line} leaked a digest: {r}"
    assert c.cmd("NOOP").code == 200


def test_many_sessions_hash_at_once(ferry_server):
    """More concurrent hashes than the server runs at once: all queue and all answer right."""
    data = os.urandom(8 * MiB + 1)
    (ferry_server.home("alice") / "f.bin").write_bytes(data)
    want = digest("SHA-512", data)
    clients = [ferry_server.raw("alice", timeout=60) for _ in range(12)]
    for c in clients:
        assert c.cmd("OPTS HASH SHA-512").code == 200
    for c in clients:
        c.send(b"HASH f.bin\r\n")
    for c in clients:
        r = c.reply()
        assert r.code == 213 and HASH_RE.match(r.lines[0])["hex"] == want, r
