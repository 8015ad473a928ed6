"""What a 226 after STOR promises across a power loss.

With `sync_uploads = true` (the default) the file's bytes are flushed (fsync) before the
reply, an overwrite's part file before it is renamed over the old version, and the directory
after the rename or the new name: when the client reads 226, the new version and its name are
on stable storage, and a power loss at any earlier moment leaves the old version or nothing,
never a renamed file with missing blocks. The order of those system calls is what the test
watches (strace on the running ferryd), since a power loss cannot be pulled here.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import time

import pytest


def traced_upload(srv, name: str, data: bytes, tmp_path) -> list[str]:
    """Uploads `name` while strace records ferryd's fsyncs, renames and writes; returns the
    trace lines from the STOR on."""
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed; scripts/test.sh installs it", pytrace=False)
    ftp = srv.connect("alice")
    out = tmp_path / "trace.txt"
    tracer = subprocess.Popen(
        ["strace", "-f", "-qq", "-y", "-s", "48", "-o", str(out), "-p", str(srv.proc.pid),
         "-e", "trace=fsync,fdatasync,rename,renameat,renameat2,write,sendto,sendmsg"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # strace attaches to every thread before it starts writing the trace.
        deadline = time.monotonic() + 10
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        ftp.voidcmd("NOOP")
        ftp.storbinary(f"STOR {name}", io.BytesIO(data))
        ftp.voidcmd("NOOP")
    finally:
        tracer.terminate()  # this PID only
        tracer.wait(10)
    ftp.quit()
    lines = out.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "150 " in line)
    return lines[start:]


def first(lines: list[str], pattern: str) -> int:
    for i, line in enumerate(lines):
        if re.search(pattern, line):
            return i
    raise AssertionError(f"no {pattern!r} in trace:\n" + "\n".join(lines[:80]))


def test_overwrite_is_on_disk_before_226(ferry_server, tmp_path):
    (ferry_server.home() / "doc.bin").write_bytes(b"old version")
    lines = traced_upload(ferry_server, "doc.bin", b"new version " * 10_000, tmp_path)
    home = re.escape(str(ferry_server.home()))
    sync_part = first(lines, r"\bfsync\(\d+<" + home + r"/\.doc\.bin\.ferry-part>")
    rename = first(lines, r"rename.*\.doc\.bin\.ferry-part.*doc\.bin")
    sync_dir = first(lines, r"\bfsync\(\d+<" + home + r">")
    reply = first(lines, r'"226 ')
    assert sync_part < rename < sync_dir < reply, "\n".join(lines)
    assert (ferry_server.home() / "doc.bin").read_bytes() == b"new version " * 10_000


def test_new_file_and_its_name_are_on_disk_before_226(ferry_server, tmp_path):
    lines = traced_upload(ferry_server, "new.bin", b"x" * 100_000, tmp_path)
    home = re.escape(str(ferry_server.home()))
    sync_file = first(lines, r"\bfsync\(\d+<" + home + r"/new\.bin>")
    sync_dir = first(lines, r"\bfsync\(\d+<" + home + r">")
    reply = first(lines, r'"226 ')
    assert sync_file < sync_dir < reply, "\n".join(lines)


@pytest.mark.parametrize("ferry_server", [{"sync_uploads": False}], indirect=True)
def test_sync_can_be_switched_off(ferry_server, tmp_path):
    lines = traced_upload(ferry_server, "new.bin", b"x" * 100_000, tmp_path)
    home = str(ferry_server.home())
    reply = first(lines, r'"226 ')
    # (The user store's own fsyncs, of ferry.db, are not the upload's.)
    assert not any(re.search(r"\bfsync\(", line) and home in line for line in lines[:reply]), (
        "\n".join(lines))
