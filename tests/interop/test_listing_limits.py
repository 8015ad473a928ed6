"""Listings against hostile clients and hostile names.

Memory: a listing streams in small steps paced by the client's reading, so sessions that list a
50,000-entry directory, or start to and never read, hold a step's text each, not the listing
(ferryd grew to gigabytes when listings were built whole); CWD opens the directory and reads
nothing. Fairness: listing steps run a few at a time server-wide, so another user's login and
download keep their pace. Names: a name that is not UTF-8, or holds CR/LF (made outside FTP:
Samba, rsync, tar), is left out of listings with a log line; the rest of the directory stays
listable and no line is forged.
"""

from __future__ import annotations

import ftplib
import io
import os
import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ftphelp import PASSWORDS, RawClient, list_entries, parse_ls

BIG = 50_000
MIB = 1024 * 1024


def rss_kib(srv) -> int:
    for line in Path(f"/proc/{srv.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def make_big_dir(path: Path, n: int = BIG) -> None:
    path.mkdir(parents=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(n):
            os.close(os.open(f"file-{i:06d}.dat", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    finally:
        os.close(fd)


class RssSampler(threading.Thread):
    """Samples ferryd's resident set every 50 ms; `peak` is the largest seen."""

    def __init__(self, srv):
        super().__init__(daemon=True)
        self.srv, self.peak, self.stop = srv, 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_kib(self.srv))
            time.sleep(0.05)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join()


def login_many(srv, user: str, n: int) -> list[RawClient]:
    """`n` logged-in raw sessions, a few logins at a time (under the per-address limit of
    connections not logged in yet)."""
    out: list[RawClient] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(k):
        try:
            for _ in range(k):
                c = srv.raw(user, timeout=60)
                with lock:
                    out.append(c)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n // 8 + (i < n % 8),)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    return out


def pasv_connect(c: RawClient) -> socket.socket:
    host, port = c.pasv()
    return socket.create_connection((host, port), timeout=60)


def bob_times(srv) -> tuple[float, float]:
    """Bob's login (connect to 230) and his 1 MiB download, in seconds."""
    t0 = time.perf_counter()
    ftp = ftplib.FTP(timeout=30)
    ftp.connect(srv.host, srv.port, timeout=30)
    ftp.login("bob", PASSWORDS["bob"])
    t1 = time.perf_counter()
    got = io.BytesIO()
    ftp.retrbinary("RETR one-mib.bin", got.write)
    t2 = time.perf_counter()
    assert got.getbuffer().nbytes == MIB
    ftp.quit()
    return t1 - t0, t2 - t1


class Storm:
    """200 sessions of alice listing `big`: 10 read MLSD to the end (again and again), 95
    open the data connection for MLSD and never read it, 95 send STAT and never read the
    control connection."""

    def __init__(self, srv):
        self.srv = srv
        self.sessions = login_many(srv, "alice", 200)
        self.stop = threading.Event()
        self.full: list[int] = []
        self.errors: list[BaseException] = []
        self.held: list[socket.socket] = []
        self.threads: list[threading.Thread] = []

    def read_listings(self, c: RawClient):
        try:
            while not self.stop.is_set():
                data = pasv_connect(c)
                r = c.cmd("MLSD big")
                assert r.code == 150, r
                lines = 0
                while chunk := data.recv(256 * 1024):
                    lines += chunk.count(b"\n")
                data.close()
                assert c.reply().code == 226
                self.full.append(lines)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            if not self.stop.is_set():
                self.errors.append(e)

    def start(self):
        readers, stalled_data, stalled_stat = (self.sessions[:10], self.sessions[10:105],
                                               self.sessions[105:])
        self.threads = [threading.Thread(target=self.read_listings, args=(c,), daemon=True)
                        for c in readers]
        for t in self.threads:
            t.start()
        for c in stalled_data:
            # The data connection is open and the listing under way; nothing is ever read.
            self.held.append(pasv_connect(c))
            c.send(b"MLSD big\r\n")
        for c in stalled_stat:
            # The listing comes on the control connection, which is never read.
            c.send(b"STAT big\r\n")

    def wait_for_full_listings(self, n: int, deadline: float):
        while len(self.full) < n and time.monotonic() < deadline and not self.errors:
            time.sleep(0.1)

    def end(self):
        self.stop.set()
        for s in self.held:
            s.close()
        for c in self.sessions:
            c.close()
        for t in self.threads:
            t.join(timeout=30)


@pytest.mark.big
def test_listing_storm_keeps_memory_flat_and_other_users_served(start_server):
    srv = start_server()
    make_big_dir(srv.home("alice") / "big")
    (srv.home("bob") / "one-mib.bin").write_bytes(os.urandom(MIB))
    # Warm up (page cache, allocator, a whole listing once), then bob's idle figures.
    warm = srv.connect("alice", timeout=60)
    assert sum(1 for _ in warm.mlsd("big")) == BIG
    warm.quit()
    idle = [bob_times(srv) for _ in range(5)]
    idle_login = statistics.median(t[0] for t in idle)
    idle_retr = statistics.median(t[1] for t in idle)

    storm = Storm(srv)
    rss_before = rss_kib(srv)
    started = time.monotonic()
    with RssSampler(srv) as sampler:
        storm.start()
        time.sleep(1)  # every listing under way, the stalled ones stuck
        loaded = []
        for _ in range(3):
            loaded.append(bob_times(srv))
            time.sleep(0.5)
        storm.wait_for_full_listings(10, started + 40)
        peak = sampler.peak
        storm.end()
    time.sleep(3)
    rss_after = rss_kib(srv)
    report = (f"RSS before {rss_before} KiB, peak {peak} KiB, after {rss_after} KiB; "
              f"bob idle login {idle_login:.3f}s retr {idle_retr:.3f}s, loaded "
              f"{[(round(a, 3), round(b, 3)) for a, b in loaded]}; "
              f"{len(storm.full)} full listings in {time.monotonic() - started:.1f}s")
    print(report)
    assert not storm.errors, (storm.errors[:3], report)
    assert len(storm.full) >= 10 and all(n == BIG for n in storm.full), report
    assert peak - rss_before < 64 * 1024, report
    for login, retr in loaded:
        assert login < 2 * idle_login + 0.3, report
        assert retr < 2 * idle_retr + 0.3, report
    # Closed sessions give their memory back to the allocator: it does not keep growing.
    assert rss_after < peak + 2 * 1024, report
    # The server is still fine.
    again = srv.connect("alice")
    assert again.sendcmd("NOOP")[:3] == "200"


def test_cwd_into_a_big_directory_reads_nothing(start_server):
    srv = start_server()
    make_big_dir(srv.home("alice") / "big")
    sessions = login_many(srv, "alice", 100)
    rss_before = rss_kib(srv)
    errors: list[BaseException] = []
    go = threading.Barrier(len(sessions))

    def cwd_loop(c: RawClient):
        try:
            go.wait()
            for _ in range(5):
                assert c.cmd("CWD /big").code == 250
                assert c.cmd("CWD /").code == 250
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    with RssSampler(srv) as sampler:
        threads = [threading.Thread(target=cwd_loop, args=(c,)) for c in sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        time.sleep(0.2)
    assert not errors, errors[:3]
    growth = sampler.peak - rss_before
    print(f"RSS before {rss_before} KiB, peak {sampler.peak} KiB")
    assert growth < 4 * 1024, f"RSS grew {growth} KiB under 100 sessions' CWD"
    # CWD still refuses what it cannot enter.
    c = srv.raw("alice")
    (srv.home("alice") / "f.txt").write_bytes(b"x")
    assert c.cmd("CWD f.txt").code == 550
    assert c.cmd("CWD nope").code == 550


# --- names FTP cannot carry ----------------------------------------------------------------

FORGED_LS = "-rw-r--r--    1 ftp      ftp             0 Jan 01 00:00 forged"
GOOD = {"good.txt", "é.txt", "sub"}


@pytest.fixture
def hostile(ferry_server):
    """alice's home: `mixed/` holds good entries beside names made outside FTP that FTP cannot
    carry; the home itself holds a directory whose own name is not UTF-8."""
    home = ferry_server.home()
    mixed = home / "mixed"
    (mixed / "sub").mkdir(parents=True)
    (mixed / "good.txt").write_bytes(b"good")
    (mixed / "é.txt").write_bytes(b"accent")
    raw = os.fsencode(mixed)
    for name in [b"caf\xe9.txt", b"evil\r\n" + FORGED_LS.encode(), b"nlst\nforged",
                 b"tab\tname", b"esc\x1b[31mred"]:
        os.close(os.open(raw + b"/" + name, os.O_CREAT | os.O_WRONLY, 0o644))
    os.mkdir(raw + b"/dir\xff")
    os.mkdir(os.fsencode(home) + b"/bad\xffdir")
    (home / "top.txt").write_bytes(b"top")
    return ferry_server


def utf8_ftp(srv) -> ftplib.FTP:
    ftp = ftplib.FTP(encoding="utf-8", timeout=10)
    ftp.connect(srv.host, srv.port, timeout=10)
    ftp.login("alice", PASSWORDS["alice"])
    return ftp


def lines_of(ftp: ftplib.FTP, cmd: str) -> list[str]:
    lines: list[str] = []
    try:
        ftp.retrlines(cmd, lines.append)
    except UnicodeDecodeError as e:
        raise AssertionError(f"{cmd}: bytes that are not UTF-8 in the listing: {e}") from e
    return lines


def test_ftplib_lists_a_directory_with_names_ftp_cannot_carry(hostile):
    ftp = utf8_ftp(hostile)
    assert set(lines_of(ftp, "NLST mixed")) == GOOD
    assert {parse_ls(l).name for l in lines_of(ftp, "LIST mixed")} == GOOD
    mlsd = lines_of(ftp, "MLSD mixed")
    assert {l.split(" ", 1)[1] for l in mlsd} == GOOD, mlsd
    assert not any("forged" in l for l in mlsd)
    # STAT on the control connection: the same entries, inside one 213 reply.
    stat = ftp.sendcmd("STAT mixed").splitlines()
    assert stat[0].startswith("213-") and stat[-1].startswith("213 "), stat
    assert {parse_ls(l).name for l in stat[1:-1]} == GOOD, stat
    # CWD into the directory works, and what is listed can be fetched.
    assert ftp.cwd("mixed")[:3] == "250"
    assert set(lines_of(ftp, "NLST")) == GOOD
    got = io.BytesIO()
    ftp.retrbinary("RETR é.txt", got.write)
    assert got.getvalue() == b"accent"
    # The parent lists despite its directory with a name that is not UTF-8.
    ftp.cwd("/")
    assert set(lines_of(ftp, "NLST")) == {"mixed", "top.txt"}
    assert set(list_entries(ftp)) == {"mixed", "top.txt"}
    assert {l.split(" ", 1)[1] for l in lines_of(ftp, "MLSD")} == {"mixed", "top.txt"}
    ftp.quit()
    log = hostile.log_path.read_text(errors="replace")
    assert "listing left out names" in log
    # The name shown in the log is escaped: it starts no line of its own there.
    assert not any(l.startswith(("-rw-r--r--", "forged")) for l in log.splitlines())


def test_curl_lists_a_directory_with_names_ftp_cannot_carry(hostile):
    base = f"ftp://127.0.0.1:{hostile.port}/mixed/"
    user = ["--user", f"alice:{PASSWORDS['alice']}", "-sS", "--max-time", "20"]
    r = subprocess.run(["curl", *user, base], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode("utf-8")
    assert {parse_ls(l).name for l in text.splitlines()} == GOOD, text
    r = subprocess.run(["curl", *user, "--list-only", base], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.decode("utf-8").splitlines()) == GOOD, r.stdout
    r = subprocess.run(["curl", *user, base + "good.txt"], capture_output=True, timeout=30)
    assert (r.returncode, r.stdout) == (0, b"good"), r.stderr


def test_lftp_lists_a_directory_with_names_ftp_cannot_carry(hostile):
    script = (
        "set net:max-retries 1; set net:timeout 10; set ftp:ssl-allow no; set ftp:charset utf-8; "
        f"open -u alice,\"{PASSWORDS['alice']}\" ftp://127.0.0.1:{hostile.port}; "
        "cd mixed; echo ==cls; cls -1; echo ==ls; ls; echo ==root; cd /; cls -1; quit"
    )
    r = subprocess.run(["lftp", "-c", script], capture_output=True, timeout=60,
                       env={**os.environ, "HOME": str(hostile.root), "LC_ALL": "C.UTF-8"})
    out = r.stdout.decode("utf-8")
    assert r.returncode == 0, (out, r.stderr)
    cls, rest = out.split("==cls\n", 1)[1].split("==ls\n", 1)
    ls, root = rest.split("==root\n", 1)
    assert {l.rstrip("/") for l in cls.splitlines()} == GOOD, out
    assert {parse_ls(l).name for l in ls.splitlines()} == GOOD, out
    assert {l.rstrip("/") for l in root.splitlines()} == {"mixed", "top.txt"}, out
    assert "forged" not in out
