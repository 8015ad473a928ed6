"""Resuming an interrupted overwrite, with every client's way of resuming.

`foo.bin` exists; a new version is being uploaded over it when the data connection is cut or
ferryd is killed. The old version stays readable until the new one is complete (the new bytes
go to a hidden part file), and whatever the client does next ends with the new file
byte-exact or with a refusal and the old file intact -- never a file that is neither:

- curl `-C -` sends SIZE, then APPE with the bytes from that size on;
- lftp `reput` sends SIZE, then REST <size> + STOR (and does nothing when the remote is at
  least as large as the local file);
- `ferry put -c` checks the part it would keep with HASH + RANG, then APPE or a new STOR;
- a client that knows its own offset sends REST n + STOR.

Each runs with the old file shorter and longer than the part that arrived.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import ftplib
import pytest

from ftphelp import PASSWORDS

# Every test here runs against local disk and S3 (see conftest.py).
BACKENDS = ("local", "s3")

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOL_TIMEOUT = 60
NEW_SIZE = 4 * 1024 * 1024 + 123
CUT_AT = 2 * 1024 * 1024
OLD_SIZES = {"old-shorter": 1024 * 1024 + 5, "old-longer": 6 * 1024 * 1024 + 17}


def need(tool):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed; scripts/test.sh installs it", pytrace=False)


def ferry_binary() -> Path:
    ferryd = os.environ.get("FERRYD")
    path = Path(ferryd).with_name("ferry") if ferryd else REPO_ROOT / "target/debug/ferry"
    if not path.exists():
        pytest.fail(f"ferry client not found at {path}; run cargo build --workspace --bins",
                    pytrace=False)
    return path


def start_overwrite(srv, name: str, new: bytes):
    """Starts STOR of `new` over `name` and sends CUT_AT bytes; returns (ftp, data socket)
    once the server has written them to the part file."""
    ftp = srv.connect("alice")
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd(f"STOR {name}")
    conn.sendall(new[:CUT_AT])
    srv.wait_for_upload(name, CUT_AT)
    return ftp, conn


def cut_data_connection(srv, name, new):
    """The client's connection dies mid-upload: a reset, no clean end of the data."""
    ftp, conn = start_overwrite(srv, name, new)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    with pytest.raises(ftplib.Error):
        ftp.voidresp()
    ftp.close()


def kill_server(srv, name, new):
    """ferryd dies mid-upload (kill -9) and is started again."""
    ftp, conn = start_overwrite(srv, name, new)
    srv.proc.send_signal(signal.SIGKILL)  # this PID only
    srv.proc.wait(10)
    conn.close()
    ftp.close()
    srv.start()


INTERRUPTIONS = {"cut": cut_data_connection, "kill9": kill_server}


def resume_curl(srv, src: Path, name: str):
    url = f"ftp://alice:{quote(PASSWORDS['alice'], safe='')}@127.0.0.1:{srv.port}/{name}"
    return subprocess.run(["curl", "-sS", "-C", "-", "-T", str(src), url],
                          capture_output=True, timeout=TOOL_TIMEOUT)


def resume_lftp(srv, src: Path, name: str):
    script = (f"set net:max-retries 1; set net:timeout 10; set ftp:ssl-allow no; "
              f"open -u alice,\"{PASSWORDS['alice']}\" ftp://127.0.0.1:{srv.port}; "
              f"reput {src} -o {name}; quit")
    return subprocess.run(["lftp", "-c", script], capture_output=True, timeout=TOOL_TIMEOUT)


def resume_ferry(srv, src: Path, name: str):
    env = {**os.environ, "FERRY_PASSWORD": PASSWORDS["alice"]}
    return subprocess.run([str(ferry_binary()), "--quiet", "--tls", "off", "put", "-c", str(src),
                           f"ftp://alice@127.0.0.1:{srv.port}/{name}"],
                          capture_output=True, timeout=TOOL_TIMEOUT, env=env,
                          stdin=subprocess.DEVNULL)


def resume_rest_stor(srv, src: Path, name: str):
    """A client that counted what it sent (CUT_AT) and resumes from its own offset."""
    data = src.read_bytes()
    ftp = srv.connect("alice")
    try:
        ftp.storbinary(f"STOR {name}", io.BytesIO(data[CUT_AT:]), rest=CUT_AT)
        return subprocess.CompletedProcess([], 0, b"", b"")
    except ftplib.Error as e:
        return subprocess.CompletedProcess([], 1, b"", str(e).encode())
    finally:
        ftp.close()


CLIENTS = {"curl": resume_curl, "lftp": resume_lftp, "ferry": resume_ferry,
           "rest-stor": resume_rest_stor}


@pytest.mark.parametrize("old_kind", OLD_SIZES)
@pytest.mark.parametrize("interruption", INTERRUPTIONS)
@pytest.mark.parametrize("client", CLIENTS)
def test_resuming_an_interrupted_overwrite_ends_new_or_refused(ferry_server, tmp_path, client,
                                                              interruption, old_kind, backend):
    for tool in ("curl", "lftp"):
        if client == tool:
            need(tool)
    home = ferry_server.home()
    old = os.urandom(OLD_SIZES[old_kind])
    new = os.urandom(NEW_SIZE)
    (home / "foo.bin").write_bytes(old)
    src = tmp_path / "new.bin"
    src.write_bytes(new)

    INTERRUPTIONS[interruption](ferry_server, "foo.bin", new)
    # Meanwhile the old version is whole and readable.
    ftp = ferry_server.connect("alice")
    out = io.BytesIO()
    ftp.retrbinary("RETR foo.bin", out.write)
    assert out.getvalue() == old
    ftp.close()

    r = CLIENTS[client](ferry_server, src, "foo.bin")
    now = (home / "foo.bin").read_bytes()
    if r.returncode == 0:
        assert now == new, (f"{client} reported success but the file is "
                            f"{'the old version' if now == old else 'neither version'}",
                            r.stdout, r.stderr)
    else:
        assert now == old, ("a refused resume must leave the old file", r.stdout, r.stderr)
    if backend == "s3" and client == "rest-stor":
        # S3 keeps whole parts only (5 MiB here): the CUT_AT bytes were not kept, and a
        # REST past what was is refused (554), the old object intact.
        assert r.returncode != 0 and b"554" in r.stderr, (r.stdout, r.stderr)
        return
    # These clients all resume successfully: a refusal would be a regression.
    assert r.returncode == 0, (client, r.stdout, r.stderr)
    assert sorted(p.name for p in home.iterdir()) == ["foo.bin"], "no part file left behind"


def test_rest_past_the_part_is_refused_and_keeps_the_old_file(ferry_server, backend):
    """lftp's reput from the old file's size, or a client that thinks more arrived than did:
    the bytes between the part's end and the offset are missing, so the resume is refused."""
    home = ferry_server.home()
    old = os.urandom(OLD_SIZES["old-longer"])
    new = os.urandom(NEW_SIZE)
    (home / "foo.bin").write_bytes(old)
    cut_data_connection(ferry_server, "foo.bin", new)
    ftp = ferry_server.connect("alice")
    with pytest.raises(ftplib.error_perm) as refused:
        ftp.storbinary("STOR foo.bin", io.BytesIO(new[len(old):]), rest=len(old))
    assert str(refused.value).startswith("554"), refused.value
    assert (home / "foo.bin").read_bytes() == old
    if backend == "local":
        assert (home / ".foo.bin.ferry-part").read_bytes() == new[:CUT_AT]


def test_append_without_size_to_an_interrupted_overwrite_is_refused(ferry_server):
    """A plain APPE (curl --append) cannot mean to continue the upload, and what it would
    append to is about to be replaced: refused with the way out, nothing touched."""
    home = ferry_server.home()
    old = b"log line\n" * 1000
    (home / "foo.bin").write_bytes(old)
    new = os.urandom(NEW_SIZE)
    cut_data_connection(ferry_server, "foo.bin", new)
    ftp = ferry_server.connect("alice")
    with pytest.raises(ftplib.error_perm) as refused:
        ftp.storbinary("APPE foo.bin", io.BytesIO(b"one more line\n"))
    text = str(refused.value)
    assert text.startswith("550") and "interrupted" in text and "STOR" in text, text
    assert (home / "foo.bin").read_bytes() == old
    # Starting over replaces the file and the unfinished upload.
    ftp.storbinary("STOR foo.bin", io.BytesIO(b"fresh"))
    assert (home / "foo.bin").read_bytes() == b"fresh"
    assert sorted(p.name for p in home.iterdir()) == ["foo.bin"]


def quota_used_bytes(ftp) -> int:
    report = ftp.sendcmd("SITE QUOTA")
    return int(report.split("(", 1)[1].split(" bytes)", 1)[0])


def bytes_on_disk(home: Path) -> int:
    return sum(p.stat().st_size for p in home.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.local_only  # part files on disk
def test_part_files_are_unreachable_and_the_quota_stays_exact(start_server):
    """While an overwrite runs, a second session of the same user tries every command on the
    hidden part file: DELE (would give its bytes back twice), RNFR/RNTO (would keep them
    uncounted), RETR, STOR, APPE, SIZE, MDTM, HASH, LIST, MLST, MKD, CWD. All are refused
    (553, a name not allowed);
    afterwards the counter, the disk and a rescan agree and stay within the quota."""
    quota = 20 * 1024 * 1024
    srv = start_server(user_args={"alice": ["--quota", str(quota)]})
    home = srv.home()
    first = srv.connect("alice")
    first.storbinary("STOR foo.bin", io.BytesIO(os.urandom(1024 * 1024)))
    first.close()
    new = os.urandom(12 * 1024 * 1024)
    uploader, conn = start_overwrite(srv, "foo.bin", new)
    part = ".foo.bin.ferry-part"
    other = srv.connect("alice")
    for cmd in (f"DELE {part}", f"RNFR {part}", f"SIZE {part}", f"MDTM {part}",
                f"HASH {part}", f"MLST {part}", f"MKD sub/{part}", f"CWD {part}",
                f"STAT {part}"):
        try:
            reply = other.sendcmd(cmd)
        except ftplib.Error as e:
            reply = str(e)
        assert reply[:3] == "553", (cmd, reply)
    for verb in ("RETR", "STOR", "APPE", "LIST", "NLST"):
        with pytest.raises(ftplib.error_perm) as refused:
            if verb == "RETR":
                other.retrbinary(f"RETR {part}", lambda b: None)
            elif verb in ("STOR", "APPE"):
                other.storbinary(f"{verb} {part}", io.BytesIO(b"x" * 1000))
            else:
                other.retrlines(f"{verb} {part}", lambda line: None)
        assert str(refused.value)[:3] == "553", (verb, refused.value)
    with pytest.raises(ftplib.error_perm):
        other.sendcmd(f"RNTO {part}")  # no RNFR accepted: 503
    # Nothing of the part is listed, and the part is still there, whole.
    assert other.nlst() == ["foo.bin"]
    assert (home / part).stat().st_size == CUT_AT
    # The upload completes; the old version's bytes are given back.
    conn.sendall(new[CUT_AT:])
    conn.close()
    assert uploader.voidresp()[:3] == "226"
    assert (home / "foo.bin").read_bytes() == new
    on_disk = bytes_on_disk(home)
    assert on_disk == len(new) and on_disk <= quota
    assert quota_used_bytes(other) == on_disk, other.sendcmd("SITE QUOTA")
    uploader.close()
    other.close()
    srv.stop()
    r = subprocess.run([str(srv.binary), "--data-dir", str(srv.data_dir), "user", "rescan",
                        "alice"], capture_output=True, timeout=TOOL_TIMEOUT, cwd=srv.root)
    assert r.returncode == 0, r.stderr
    srv.start()
    assert quota_used_bytes(srv.connect("alice")) == on_disk
