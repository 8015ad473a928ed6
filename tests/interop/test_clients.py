"""Real clients that each showed a problem with ferryd: curl over TLS 1.2 and 1.3, rclone over
explicit and implicit FTPS (sync, modification times), wildcards in tnftp's mget, ncftpget and
ftplib's NLST/LIST, aioftp over FTPS, and the policy for TLS session reuse on data connections.

Every test asserts what the user sees: exit codes, the bytes on disk, the names listed.
Certificates are verified wherever the client can pin the self-signed one ferryd created
(rclone cannot: it is given `no_check_certificate`). Every subprocess has a timeout and every
asyncio step a deadline, so a hang fails the test instead of stalling the suite."""

from __future__ import annotations

import asyncio
import ftplib
import io
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ftphelp import PASSWORDS, ReuseFTP_TLS, cert_path, parse_ls, tls_context

# Every test here runs against local disk and S3 (see conftest.py).
BACKENDS = ("local", "s3")

TOOL_TIMEOUT = 60
PW_URL = PASSWORDS["alice"].replace(" ", "%20")


# --- helpers ---------------------------------------------------------------------------------

def tls_login(srv, user="alice", cls=ReuseFTP_TLS) -> ftplib.FTP_TLS:
    ftp = cls(context=tls_context(srv), timeout=10)
    ftp.connect("localhost", srv.port, timeout=10)
    srv._clients.append(ftp)
    ftp.login(user, PASSWORDS[user])
    ftp.prot_p()
    # A NOOP round trip: TLS 1.3 session tickets arrive after the handshake and are read with
    # the next reply, so the control connection has a session to resume from here on.
    ftp.voidcmd("NOOP")
    return ftp


def implicit_port(srv) -> int:
    line = next(l for l in srv.stdout_lines if l.startswith("ferryd implicit ftps on "))
    return int(line.rsplit(":", 1)[1])


def run(args, timeout=TOOL_TIMEOUT, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, timeout=timeout, **kw)


def need(tool):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed; scripts/test.sh installs it", pytrace=False)


def out(r: subprocess.CompletedProcess, keep=None) -> str:
    """A tool's exit code and output for an assertion message; `keep` filters stderr lines."""
    err = r.stderr.decode(errors="replace").splitlines()
    if keep is not None:
        err = [l for l in err if keep(l)]
    return (f"exit {r.returncode}\nstdout:\n{r.stdout.decode(errors='replace')[-3000:]}\n"
            "stderr:\n" + "\n".join(err[-60:]))


def tool_env(tmp_path) -> dict:
    """A private HOME (ncftp writes ~/.ncftp, tnftp reads ~/.netrc) and UTC times."""
    home = tmp_path / "toolhome"
    home.mkdir(exist_ok=True)
    return {**os.environ, "HOME": str(home), "TZ": "UTC", "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache")}


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def failed_transfer(ftp, fn, *args) -> tuple[str, str]:
    """Runs an ftplib transfer that must fail; returns (what the call raised, the server's
    reply to the transfer command).

    When the data connection's TLS fails, ftplib raises from the data socket before it reads
    the transfer's final reply; the user then gets that reply as the answer to the next
    command. It is read here, so the control connection is in step again."""
    try:
        resp = fn(*args)
    except ftplib.Error as e:
        return f"{type(e).__name__}: {e}", str(e)
    except (ssl.SSLError, OSError, EOFError) as e:
        raised = f"{type(e).__name__}: {e}"
        try:
            reply = ftp.getresp()
        except ftplib.Error as e2:
            reply = str(e2)
        return raised, reply
    raise AssertionError(f"expected the transfer to fail, it succeeded: {resp!r}")


def transfer(ftp, fn, *args):
    """Runs an ftplib transfer that must succeed; on a failure of the data connection the
    assertion shows the server's reply too (ftplib raises before it reads it)."""
    try:
        return fn(*args)
    except (ssl.SSLError, OSError, EOFError) as e:
        try:
            reply = ftp.getresp()
        except ftplib.Error as e2:
            reply = str(e2)
        except Exception as e2:  # noqa: BLE001 - only for the message
            reply = f"(no reply: {e2!r})"
        raise AssertionError(f"{args[0]}: {type(e).__name__}: {e}; server replied: {reply}")


# --- 1. curl: TLS 1.2 and TLS 1.3 data connections -------------------------------------------

CURL_TLS = {
    "tls1.2": (["--tls-max", "1.2"], "TLSv1.2"),
    "tls1.3": (["--tlsv1.3"], "TLSv1.3"),
}


def curl_tls(srv, version):
    args, _ = CURL_TLS[version]
    return ["curl", "-sS", "-v", "--ssl-reqd", *args, "--cacert", str(cert_path(srv)),
            "--connect-timeout", "10", "--max-time", "50"]


def curl_out(r) -> str:
    # curl -v: the FTP dialogue, the TLS versions and curl's error, not the handshake details.
    return out(r, keep=lambda l: l[:2] in ("< ", "> ") or l.startswith(("curl:", "* SSL")))


def assert_curl_version(r, version):
    _, name = CURL_TLS[version]
    assert f"SSL connection using {name}" in r.stderr.decode(errors="replace"), curl_out(r)


@pytest.mark.parametrize("version", list(CURL_TLS))
def test_curl_ftps_download_byte_exact(ferry_server, tmp_path, version):
    need("curl")
    data = os.urandom(1024 * 1024)
    (ferry_server.home() / "down.bin").write_bytes(data)
    dst = tmp_path / "down.bin"
    url = f"ftp://alice:{PW_URL}@localhost:{ferry_server.port}/down.bin"
    r = run(curl_tls(ferry_server, version) + ["-o", str(dst), url])
    assert r.returncode == 0, curl_out(r)
    assert_curl_version(r, version)
    assert dst.read_bytes() == data


@pytest.mark.parametrize("version", list(CURL_TLS))
def test_curl_ftps_upload_byte_exact(ferry_server, tmp_path, version):
    need("curl")
    data = os.urandom(1024 * 1024)
    src = tmp_path / "up.bin"
    src.write_bytes(data)
    url = f"ftp://alice:{PW_URL}@localhost:{ferry_server.port}/up.bin"
    r = run(curl_tls(ferry_server, version) + ["-T", str(src), url])
    assert r.returncode == 0, curl_out(r)
    assert_curl_version(r, version)
    assert (ferry_server.home() / "up.bin").read_bytes() == data


# --- 2. rclone over explicit and implicit FTPS ------------------------------------------------

LSL_RE = re.compile(r"^\s*(\d+) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.\d+)? (.+)$")
T0 = int(datetime(2021, 3, 4, 5, 6, 7, tzinfo=timezone.utc).timestamp())


def utc(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def make_tree(root: Path) -> dict[str, int]:
    """A small tree with a subdirectory and a 2 MiB file; returns rel path -> mtime (whole
    seconds, in the past, all different)."""
    files = {
        "a.txt": b"alpha\n" * 50,
        "notes.md": b"# notes\n\nnothing much\n",
        "sub/big.bin": os.urandom(2 * 1024 * 1024),
        "sub/deeper/c.txt": b"gamma " * 1000,
    }
    mtimes = {}
    for i, (rel, content) in enumerate(files.items()):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        mtimes[rel] = T0 + 3600 * i + 11 * i
        os.utime(p, (mtimes[rel], mtimes[rel]))
    return mtimes


def rclone_conf(srv, tmp_path, mode: str) -> Path:
    r = run(["rclone", "obscure", PASSWORDS["alice"]], timeout=30)
    assert r.returncode == 0, out(r)
    obscured = r.stdout.decode().strip()
    if mode == "explicit":
        port, tls_line = srv.port, "explicit_tls = true"
    else:
        port, tls_line = implicit_port(srv), "tls = true"
    conf = tmp_path / "rclone.conf"
    conf.write_text(
        "[ferry]\n"
        "type = ftp\n"
        "host = 127.0.0.1\n"
        f"port = {port}\n"
        "user = alice\n"
        f"pass = {obscured}\n"
        f"{tls_line}\n"
        # ferryd's certificate is self-signed and rclone has no option to trust one file.
        "no_check_certificate = true\n"
    )
    return conf


def rclone(conf: Path, tmp_path, *args) -> subprocess.CompletedProcess:
    return run(["rclone", "--config", str(conf), "--low-level-retries", "1", "--retries", "1",
                "--contimeout", "10s", "--timeout", "20s", *args],
               env=tool_env(tmp_path))


def assert_rclone_synced(srv, conf, tmp_path, local: Path, mtimes: dict[str, int], sync):
    assert sync.returncode == 0, out(sync)
    assert b"SetModTime is not supported" not in sync.stderr, out(sync)
    # What is on the server's disk: the same bytes and the same modification times.
    remote = srv.home() / "dst"
    assert files_under(remote) == files_under(local)
    for rel, ts in mtimes.items():
        on_disk = int((remote / rel).stat().st_mtime)
        assert on_disk == ts, f"{rel}: mtime on the server {utc(on_disk)}, local {utc(ts)}"
    r = rclone(conf, tmp_path, "check", str(local), "ferry:dst")
    assert r.returncode == 0, out(r)
    # What rclone shows: every file with its local size and mtime, to the second.
    r = rclone(conf, tmp_path, "lsl", "ferry:dst")
    assert r.returncode == 0, out(r)
    listed = {}
    for line in r.stdout.decode().splitlines():
        m = LSL_RE.match(line)
        assert m, f"unexpected rclone lsl line {line!r}"
        listed[m[3]] = (int(m[1]), m[2])
    expected = {rel: ((local / rel).stat().st_size, utc(ts)) for rel, ts in mtimes.items()}
    assert listed == expected


@pytest.mark.parametrize("mode", ["explicit", "implicit"])
@pytest.mark.local_only  # S3 keeps no modification times (MFMT is refused there)
def test_rclone_ftps_sync_check_and_modtimes(start_server, tmp_path, mode):
    need("rclone")
    srv = start_server(implicit_tls_listen="127.0.0.1:0")
    conf = rclone_conf(srv, tmp_path, mode)
    local = tmp_path / "local"
    mtimes = make_tree(local)

    sync = rclone(conf, tmp_path, "sync", str(local), "ferry:dst")
    assert_rclone_synced(srv, conf, tmp_path, local, mtimes, sync)

    # Change one file (new content, new mtime) and sync again.
    changed = local / "sub" / "deeper" / "c.txt"
    changed.write_bytes(b"changed " * 777)
    mtimes["sub/deeper/c.txt"] = T0 + 86400 * 30 + 5
    os.utime(changed, (mtimes["sub/deeper/c.txt"],) * 2)
    sync = rclone(conf, tmp_path, "sync", str(local), "ferry:dst")
    assert_rclone_synced(srv, conf, tmp_path, local, mtimes, sync)


# --- 3. wildcards ----------------------------------------------------------------------------

WILD_FILES = {
    "a.bin": b"A" * 100,
    "b.bin": b"B" * 200,
    "c.bin": b"C" * 300,
    "ab.bin": b"AB" * 10,
    "x.csv": b"1,2\n",
    "y.csv": b"3,4\n",
    "a.txt": b"text a\n",
    "b.txt": b"text b\n",
    "binary.dat": b"not a .bin\n",
    "dir.bin.d/inner.bin": b"inside\n",
    "sub/one.txt": b"one\n",
    "sub/two.txt": b"two\n",
    "sub/three.csv": b"three\n",
    "docs/r1.txt": b"r1\n",
    "docs/r2.txt": b"r2\n",
    "docs/r3.md": b"r3\n",
}


def seed(home: Path, files: dict[str, bytes]) -> None:
    for rel, content in files.items():
        p = home / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)


def test_tnftp_mget_glob_downloads_exactly_the_matching_files(ferry_server, tmp_path):
    need("tnftp")
    seed(ferry_server.home(), WILD_FILES)
    dest = tmp_path / "got"
    dest.mkdir()
    script = (
        f'user alice "{PASSWORDS["alice"]}"\n'
        "binary\n"
        "prompt off\n"
        f"lcd {dest}\n"
        "mget *.bin\n"
        "bye\n"
    )
    r = run(["tnftp", "-n", "-v", "127.0.0.1", str(ferry_server.port)],
            input=script.encode(), env=tool_env(tmp_path))
    assert r.returncode == 0, out(r)
    expected = {k: v for k, v in WILD_FILES.items() if "/" not in k and k.endswith(".bin")}
    assert files_under(dest) == expected, out(r)


def test_ncftpget_glob_downloads_exactly_the_matching_files(ferry_server, tmp_path):
    need("ncftpget")
    seed(ferry_server.home(), WILD_FILES)
    dest = tmp_path / "got"
    dest.mkdir()
    r = run(["ncftpget", "-t", "20", "-u", "alice", "-p", PASSWORDS["alice"],
             "-P", str(ferry_server.port), "127.0.0.1", str(dest), "/docs/*.txt"],
            env=tool_env(tmp_path))
    assert r.returncode == 0, out(r)
    assert files_under(dest) == {"r1.txt": b"r1\n", "r2.txt": b"r2\n"}, out(r)


@pytest.fixture
def wild(ferry_server) -> ftplib.FTP:
    """alice, logged in in clear (loopback), her home seeded with WILD_FILES."""
    seed(ferry_server.home(), WILD_FILES)
    return ferry_server.connect("alice")


def test_ftplib_nlst_glob(wild):
    assert sorted(wild.nlst("*.csv")) == ["x.csv", "y.csv"]


def test_ftplib_list_glob_shows_only_matching_entries(wild):
    lines: list[str] = []
    wild.retrlines("LIST *.bin", lines.append)
    names = sorted(parse_ls(l).name for l in lines if not l.startswith("total "))
    # dir.bin.d does not match *.bin, binary.dat neither.
    assert names == ["a.bin", "ab.bin", "b.bin", "c.bin"], lines


def test_ftplib_nlst_glob_in_subdirectory_keeps_the_directory(wild):
    # As vsftpd answers: the names carry the directory part of the pattern.
    assert sorted(wild.nlst("sub/*.txt")) == ["sub/one.txt", "sub/two.txt"]


def test_ftplib_nlst_character_classes(wild):
    assert sorted(wild.nlst("[ab].bin")) == ["a.bin", "b.bin"]
    assert sorted(wild.nlst("?.bin")) == ["a.bin", "b.bin", "c.bin"]


def test_ftplib_file_named_with_a_star_is_retrieved_literally(ferry_server):
    seed(ferry_server.home(), {"a*b": b"the star file", "axb": b"would match a glob",
                               "ab": b"so would this"})
    ftp = ferry_server.connect("alice")
    got = io.BytesIO()
    ftp.retrbinary("RETR a*b", got.write)
    assert got.getvalue() == b"the star file"


def test_ftplib_nlst_glob_never_leaves_the_home(ferry_server):
    home = ferry_server.home()
    seed(home, {"mine.txt": b"m", "d/inner.txt": b"i"})
    home_names = {p.name for p in home.rglob("*")}
    ftp = ferry_server.connect("alice")
    # Names that exist only outside alice's home: the other home, the data dir's contents.
    outside = {p.name for p in ferry_server.data_dir.iterdir()} | {"homes", "bob", "alice"}
    outside -= home_names
    for pattern in ("../*", "../../*", "/../*", "../bob/*", "../*/*"):
        try:
            names = ftp.nlst(pattern)
        except (ftplib.error_perm, ftplib.error_temp):
            names = []
        base = [n.rstrip("/").rsplit("/", 1)[-1] for n in names]
        assert not [b for b in base if b in outside or b not in home_names], (
            f"NLST {pattern} listed names outside the home: {names}")


# --- 4. aioftp over FTPS -----------------------------------------------------------------------

STEP_TIMEOUT = 15


async def step(what: str, coro):
    start = time.monotonic()
    try:
        return await asyncio.wait_for(coro, STEP_TIMEOUT)
    except asyncio.TimeoutError:
        # Either this deadline or one of aioftp's own (connection_timeout, socket_timeout).
        raise AssertionError(
            f"aioftp: {what} timed out after {time.monotonic() - start:.1f}s (aioftp makes the "
            "TLS handshake on the data connection before it sends the command; a server that "
            "waits for the command first never answers it)") from None


async def aioftp_session(srv, body):
    import aioftp

    client = aioftp.Client(socket_timeout=STEP_TIMEOUT, connection_timeout=10)
    try:
        await step("connect", client.connect("localhost", srv.port))
        await step("AUTH TLS + PBSZ/PROT P", client.upgrade_to_tls(tls_context(srv)))
        await step("login", client.login("alice", PASSWORDS["alice"]))
        await body(client)
        await step("quit", client.quit())
    finally:
        client.close()


def test_aioftp_ftps_list(ferry_server):
    seed(ferry_server.home(), {"one.txt": b"1", "two.bin": b"22", "d/x": b"x"})
    seen = {}

    async def body(client):
        for path, info in await step("list", client.list()):
            seen[str(path)] = info["type"]

    asyncio.run(aioftp_session(ferry_server, body))
    assert seen == {"one.txt": "file", "two.bin": "file", "d": "dir"}


def test_aioftp_ftps_upload_byte_exact(ferry_server, tmp_path):
    data = os.urandom(1024 * 1024 + 3)
    src = tmp_path / "up.bin"
    src.write_bytes(data)

    async def body(client):
        await step("upload", client.upload(src, "up.bin", write_into=True))

    asyncio.run(aioftp_session(ferry_server, body))
    assert (ferry_server.home() / "up.bin").read_bytes() == data


def test_aioftp_ftps_download_byte_exact(ferry_server, tmp_path):
    data = os.urandom(1024 * 1024 + 5)
    (ferry_server.home() / "down.bin").write_bytes(data)
    dst = tmp_path / "down.bin"

    async def body(client):
        await step("download", client.download("down.bin", dst, write_into=True))

    asyncio.run(aioftp_session(ferry_server, body))
    assert dst.read_bytes() == data


# --- 5. TLS session reuse on data connections ----------------------------------------------------

def test_stock_ftplib_is_told_which_setting_to_change(ferry_server):
    """ftplib.FTP_TLS never resumes a session on its data connections: refused by default,
    with a 522 that names the configuration key that switches the check off."""
    (ferry_server.home() / "f.txt").write_bytes(b"hello")
    ftp = tls_login(ferry_server, cls=ftplib.FTP_TLS)
    got = io.BytesIO()
    raised, reply = failed_transfer(ftp, ftp.retrbinary, "RETR f.txt", got.write)
    assert got.getvalue() == b"", raised
    assert reply.startswith("522"), (raised, reply)
    assert "tls_require_session_reuse" in reply, (raised, reply)
    # The control connection is still usable.
    assert ftp.voidcmd("NOOP").startswith("200")


def test_data_connection_may_resume_the_same_users_other_connection(ferry_server):
    """rclone shares one TLS session cache between its control connections, so connection 2's
    data connection resumes connection 1's session: same user, same address, allowed."""
    data = os.urandom(300_000)
    (ferry_server.home() / "f.bin").write_bytes(data)
    first = tls_login(ferry_server, "alice")
    second = tls_login(ferry_server, "alice")
    second.reuse_from = first
    got = io.BytesIO()
    transfer(second, second.retrbinary, "RETR f.bin", got.write)
    assert got.getvalue() == data
    up = os.urandom(200_000)
    transfer(second, second.storbinary, "STOR up.bin", io.BytesIO(up))
    assert (ferry_server.home() / "up.bin").read_bytes() == up
    # ... and the other way round, listings included.
    first.reuse_from = second
    got = io.BytesIO()
    transfer(first, first.retrbinary, "RETR up.bin", got.write)
    assert got.getvalue() == up
    assert sorted(transfer(first, first.nlst)) == ["f.bin", "up.bin"]


def test_another_users_session_cannot_take_the_data_connection(ferry_server):
    """bob, from the same address, with a valid TLS session of his own, cannot be alice's data
    connection: her RETR over a data connection resuming bob's session fails without a byte of
    the file; her control connection survives and her own session then works."""
    secret = os.urandom(100_000)
    (ferry_server.home("alice") / "secret.bin").write_bytes(secret)
    alice = tls_login(ferry_server, "alice")
    bob = tls_login(ferry_server, "bob")
    alice.reuse_from = bob
    got = io.BytesIO()
    raised, reply = failed_transfer(alice, alice.retrbinary, "RETR secret.bin", got.write)
    assert got.getvalue() == b"", "alice's file went over a data connection bob's session made"
    assert reply.startswith("522"), (raised, reply)
    alice.reuse_from = None
    got = io.BytesIO()
    transfer(alice, alice.retrbinary, "RETR secret.bin", got.write)
    assert got.getvalue() == secret
    assert alice.voidcmd("NOOP").startswith("200")
    assert bob.voidcmd("NOOP").startswith("200")
    # bob's own data connections still work.
    assert transfer(bob, bob.nlst) == []


def test_thief_connecting_first_to_the_passive_port_is_dropped(ferry_server):
    """A thief (bob's TLS session, same address) connects to alice's passive port before she
    does. The server drops the thief, who never sees a byte of the file, and keeps waiting for
    alice's own data connection: her RETR completes as if nothing had happened (a thief that
    could fail her transfer could deny her every download)."""
    secret = os.urandom(100_000)
    (ferry_server.home("alice") / "secret.bin").write_bytes(secret)
    alice = tls_login(ferry_server, "alice")
    bob = tls_login(ferry_server, "bob")
    ctx = tls_context(ferry_server)
    alice.voidcmd("TYPE I")
    host, port = alice.makepasv()
    thief_tcp = socket.create_connection((host, port), timeout=10)
    stolen = bytearray()

    def thief():
        try:
            s = ctx.wrap_socket(thief_tcp, server_hostname="localhost", session=bob.sock.session)
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                stolen.extend(chunk)
        except (ssl.SSLError, OSError):
            pass

    t = threading.Thread(target=thief, daemon=True)
    t.start()
    time.sleep(0.2)                       # the thief's connection is queued first
    alice.putcmd("RETR secret.bin")
    try:
        first = alice.getresp()           # 150, or an error reply at once
    except ftplib.Error as e:
        first = str(e)
    got = bytearray()
    final = None
    if first.startswith("1"):
        # alice's own data connection (refused, or never answered within 5 s, if the server
        # failed the transfer instead; she is then told so on the control connection).
        mine = None
        try:
            mine = socket.create_connection((host, port), timeout=5)
            mine = ctx.wrap_socket(mine, server_hostname="localhost", session=alice.sock.session)
            while True:
                chunk = mine.recv(65536)
                if not chunk:
                    break
                got.extend(chunk)
        except (ssl.SSLError, OSError):
            pass
        finally:
            if mine is not None:
                mine.close()
        try:
            final = alice.voidresp()
        except ftplib.Error as e:
            final = str(e)
    t.join(15)
    assert not t.is_alive(), "the thief's data connection was never closed"
    assert bytes(stolen) == b"", "bob's session received alice's file"
    assert str(final).startswith("226") and bytes(got) == secret, (
        f"alice's RETR: {first!r}, then {final!r}, {len(got)} of {len(secret)} bytes")
    assert bob.voidcmd("NOOP").startswith("200")
