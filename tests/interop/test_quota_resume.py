"""Quotas, resumable uploads, safe overwrites and a full disk, against the real ferryd.

What a user must be able to rely on: a quota is never exceeded by a byte, even by several
sessions at once; an interrupted upload can be finished with curl -C - or lftp reput and ends
byte-exact; an interrupted overwrite never leaves them with neither version; a full disk is a
452 and the session goes on."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import ftplib
import pytest

from ftphelp import PASSWORDS, upload, wait_for_size

# Every test here runs against local disk and S3 (see conftest.py).
BACKENDS = ("local", "s3")

from conftest import S3Path  # noqa: E402

TOOL_TIMEOUT = 60


def need(tool):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed; scripts/test.sh installs it", pytrace=False)


def code_of(exc) -> str:
    return str(exc)[:3]


def quoted_pw(user="alice"):
    return PASSWORDS[user].replace(" ", "%20")


def disk_usage(home) -> tuple[int, int]:
    """What the user's files hold: bytes (part files and unfinished uploads included) and
    regular files, on disk or in the bucket."""
    if isinstance(home, S3Path):
        return home.usage()
    total, files = 0, 0
    for root, _dirs, names in os.walk(home):
        for n in names:
            p = os.path.join(root, n)
            if os.path.isfile(p) and not os.path.islink(p):
                total += os.path.getsize(p)
                files += 1
    return total, files


# --- quotas ------------------------------------------------------------------------------

QUOTA = 1_000_000


@pytest.mark.parametrize("sessions", [1, 2, 8])
def test_concurrent_uploads_never_exceed_the_quota(start_server, sessions):
    srv = start_server(user_args={"alice": ["--quota", str(QUOTA)]})
    chunk = os.urandom(300_000)
    results = [None] * sessions

    def worker(i):
        ftp = srv.connect("alice", timeout=30)
        try:
            upload(ftp, f"f{i}.bin", chunk)
            results[i] = "226"
        except ftplib.Error as e:
            results[i] = code_of(e)
        finally:
            try:
                ftp.quit()
            except Exception:
                pass

    # Two rounds so even one session reaches the limit.
    for round_ in range(2):
        threads = [threading.Thread(target=worker, args=(i + round_ * sessions,)) for i in range(sessions)]
        results = [None] * (2 * sessions)
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    used, _ = disk_usage(srv.home())
    assert used <= QUOTA, f"{used} bytes on disk exceeds quota {QUOTA}"
    # The quota was actually reached (not trivially satisfied) and the server said so.
    ftp = srv.connect("alice")
    report = ftp.sendcmd("SITE QUOTA")
    assert f"({used} bytes) used" in report, (report, used)
    with pytest.raises(ftplib.error_perm) as e:
        upload(ftp, "more.bin", os.urandom(QUOTA - used + 1))
    assert code_of(e.value) == "552", e.value
    used_after, _ = disk_usage(srv.home())
    assert used_after <= QUOTA


@pytest.mark.local_only  # keeps the bytes that fit, under one S3 part
def test_quota_full_upload_stops_at_the_limit_and_delete_gives_space_back(start_server):
    srv = start_server(user_args={"alice": ["--quota", "100000"]})
    ftp = srv.connect("alice")
    upload(ftp, "a.bin", os.urandom(60_000))
    with pytest.raises(ftplib.error_perm) as e:
        upload(ftp, "b.bin", os.urandom(60_000))
    assert code_of(e.value) == "552"
    # Stopped exactly at the limit: what fit was kept (resumable), nothing more.
    assert disk_usage(srv.home())[0] == 100_000
    assert ftp.size("b.bin") == 40_000
    with pytest.raises(ftplib.error_perm) as e:
        ftp.sendcmd("ALLO 1")
    assert code_of(e.value) == "552"
    ftp.delete("a.bin")
    assert ftp.sendcmd("ALLO 60000")[:3] in ("200", "202")
    upload(ftp, "c.bin", os.urandom(60_000))
    assert ftp.voidcmd("NOOP")[:3] == "200"


def test_overwrite_counts_only_the_new_size(start_server):
    srv = start_server(user_args={"alice": ["--quota", "100000"]})
    ftp = srv.connect("alice")
    upload(ftp, "f.bin", os.urandom(50_000))
    for _ in range(5):  # would be 250 kB if the old versions were still counted
        upload(ftp, "f.bin", os.urandom(50_000))
    assert "50000 bytes) used" in ftp.sendcmd("SITE QUOTA")
    final = upload(ftp, "g.bin", b"x" * 10)
    # The 226 mentions what is left.
    assert final.startswith("226") and "48.8 KiB of quota left" in final, final
    report = ftp.sendcmd("SITE QUOTA")
    assert "50010 bytes) used" in report, report


def test_file_count_limit(start_server):
    srv = start_server(user_args={"alice": ["--max-files", "2"]})
    ftp = srv.connect("alice")
    upload(ftp, "1", b"a")
    upload(ftp, "2", b"b")
    with pytest.raises(ftplib.error_perm) as e:
        upload(ftp, "3", b"c")
    assert code_of(e.value) == "552"
    upload(ftp, "2", b"overwrite is fine")
    ftp.delete("1")
    upload(ftp, "3", b"c")
    assert sorted(ftp.nlst()) == ["2", "3"]


def test_usage_survives_restart_and_rescan_sees_outside_changes(start_server):
    srv = start_server(user_args={"alice": ["--quota", "1MiB"]})
    ftp = srv.connect("alice")
    upload(ftp, "kept.bin", os.urandom(200_000))
    ftp.quit()
    srv.stop()
    # Changed outside the server while it was down.
    (srv.home() / "outside.bin").write_bytes(os.urandom(300_000))
    srv.start()
    deadline = time.monotonic() + 10
    while True:  # the start-up rescan runs in the background
        ftp = srv.connect("alice")
        report = ftp.sendcmd("SITE QUOTA")
        if "(500000 bytes) used" in report or time.monotonic() > deadline:
            break
        ftp.quit()
        time.sleep(0.2)
    assert "(500000 bytes) used" in report and "files: 2 used" in report, report
    ftp.quit()
    # `ferryd user rescan` after another outside change; picked up at the next login.
    (srv.home() / "outside.bin").unlink()
    r = subprocess.run([str(srv.binary), "--data-dir", str(srv.data_dir),
                        "--config", str(srv.config_path), "user", "rescan", "alice"],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "1 files" in r.stdout.decode(), r.stdout
    listing = subprocess.run([str(srv.binary), "--data-dir", str(srv.data_dir), "user", "list"],
                             capture_output=True, timeout=30).stdout.decode()
    assert "195.3 KiB / 1 files" in listing, listing
    assert "(200000 bytes) used" in srv.connect("alice").sendcmd("SITE QUOTA")


def test_user_set_changes_the_quota(start_server):
    srv = start_server()
    r = subprocess.run([str(srv.binary), "--data-dir", str(srv.data_dir), "user", "set", "bob",
                        "--quota", "1000", "--max-files", "unlimited"], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    ftp = srv.connect("bob")
    with pytest.raises(ftplib.error_perm) as e:
        upload(ftp, "big", os.urandom(2000))
    assert code_of(e.value) == "552"
    r = subprocess.run([str(srv.binary), "--data-dir", str(srv.data_dir), "user", "set", "bob",
                        "--quota", "lots"], capture_output=True, timeout=30)
    assert r.returncode != 0 and b"--quota" in r.stderr


@pytest.mark.parametrize("ferry_server", [{"default_quota": "50000"}], indirect=True)
def test_server_default_quota_applies_to_users_without_their_own(ferry_server):
    ftp = ferry_server.connect("alice")
    with pytest.raises(ftplib.error_perm) as e:
        upload(ftp, "big", os.urandom(60_000))
    assert code_of(e.value) == "552"


# --- resume ------------------------------------------------------------------------------

@pytest.mark.local_only  # watches the file grow on disk (test_s3.py resumes on S3)
def test_curl_upload_killed_then_resumed_with_continue_at(ferry_server, tmp_path):
    need("curl")
    data = os.urandom(20 * 1024 * 1024)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    url = f"ftp://alice:{quoted_pw()}@127.0.0.1:{ferry_server.port}/big.bin"
    slow = subprocess.Popen(["curl", "-sS", "--limit-rate", "4M", "-T", str(src), url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_size(ferry_server.home() / "big.bin", 2 * 1024 * 1024)
    finally:
        slow.send_signal(signal.SIGKILL)
        slow.wait(10)
    # What SIZE reports is exactly what is on disk.
    time.sleep(0.5)
    on_disk = (ferry_server.home() / "big.bin").stat().st_size
    assert 0 < on_disk < len(data)
    ftp = ferry_server.connect("alice")
    assert ftp.size("big.bin") == on_disk
    assert data[:on_disk] == (ferry_server.home() / "big.bin").read_bytes()
    r = subprocess.run(["curl", "-sS", "-C", "-", "-T", str(src), url], capture_output=True,
                       timeout=TOOL_TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert (ferry_server.home() / "big.bin").read_bytes() == data


def test_lftp_reput_finishes_an_interrupted_upload(ferry_server, tmp_path):
    need("lftp")
    data = os.urandom(8 * 1024 * 1024)
    src = tmp_path / "r.bin"
    src.write_bytes(data)
    # The first part arrived before the connection died.
    (ferry_server.home() / "r.bin").write_bytes(data[: 3 * 1024 * 1024 + 7])
    script = (f"set net:max-retries 1; set net:timeout 10; set ftp:ssl-allow no; "
              f"open -u alice,\"{PASSWORDS['alice']}\" ftp://127.0.0.1:{ferry_server.port}; "
              f"reput {src} -o r.bin; quit")
    r = subprocess.run(["lftp", "-c", script], capture_output=True, timeout=TOOL_TIMEOUT)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert (ferry_server.home() / "r.bin").read_bytes() == data


def test_curl_download_resume(ferry_server, tmp_path):
    need("curl")
    data = os.urandom(3 * 1024 * 1024)
    (ferry_server.home() / "d.bin").write_bytes(data)
    dst = tmp_path / "d.bin"
    dst.write_bytes(data[:1234567])
    url = f"ftp://alice:{quoted_pw()}@127.0.0.1:{ferry_server.port}/d.bin"
    r = subprocess.run(["curl", "-sS", "-C", "-", "-o", str(dst), url], capture_output=True,
                       timeout=TOOL_TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert dst.read_bytes() == data


@pytest.mark.local_only  # part files on disk
def test_interrupted_overwrite_keeps_the_old_file(ferry_server):
    old = b"the precious old version\n" * 1000
    (ferry_server.home() / "doc.txt").write_bytes(old)
    ftp = ferry_server.connect("alice")
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("STOR doc.txt")
    conn.sendall(os.urandom(1024 * 1024))
    # The connection dies mid-upload (no clean end): the client never finishes.
    time.sleep(0.3)
    reset_close(conn)
    with pytest.raises(ftplib.Error):
        ftp.voidresp()
    # Old content intact and readable; no stray files listed. SIZE answers how much of the new
    # version arrived (what a resume continues from; see test_overwrite_resume.py).
    assert (ferry_server.home() / "doc.txt").read_bytes() == old
    out = io.BytesIO()
    ftp.retrbinary("RETR doc.txt", out.write)
    assert out.getvalue() == old
    part = ferry_server.home() / ".doc.txt.ferry-part"
    assert ftp.size("doc.txt") == part.stat().st_size
    assert ftp.nlst() == ["doc.txt"]
    # A complete upload then replaces it.
    new = os.urandom(500_000)
    upload(ftp, "doc.txt", new)
    assert (ferry_server.home() / "doc.txt").read_bytes() == new
    assert sorted(os.listdir(ferry_server.home())) == ["doc.txt"]


def reset_close(conn):
    """Ends a data connection the way a dying client does: RST, no clean end of data."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


@pytest.mark.local_only  # part files on disk
def test_rest_stor_resumes_an_interrupted_overwrite(ferry_server):
    old = b"old" * 1000
    (ferry_server.home() / "v.bin").write_bytes(old)
    new = os.urandom(2 * 1024 * 1024)
    ftp = ferry_server.connect("alice")
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("STOR v.bin")
    conn.sendall(new[: 1024 * 1024])
    time.sleep(0.5)  # let the server write what it received
    reset_close(conn)
    with pytest.raises(ftplib.Error):
        ftp.voidresp()
    assert (ferry_server.home() / "v.bin").read_bytes() == old
    # A client that knows how much got through (here: at least 512 KiB) resumes from there;
    # the server continues the interrupted overwrite, then replaces the old file.
    offset = 512 * 1024
    ftp.storbinary("STOR v.bin", io.BytesIO(new[offset:]), rest=offset)
    assert (ferry_server.home() / "v.bin").read_bytes() == new
    assert sorted(os.listdir(ferry_server.home())) == ["v.bin"]


def interrupt_overwrite(ftp, name, data):
    """Starts overwriting `name` and kills the data connection: the server keeps a part file."""
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd(f"STOR {name}")
    conn.sendall(data)
    time.sleep(0.5)  # let the server write what it received
    reset_close(conn)
    with pytest.raises(ftplib.Error):
        ftp.voidresp()


@pytest.mark.local_only  # part files on disk
def test_rename_drops_the_unfinished_overwrites_of_both_names(start_server):
    srv = start_server(user_args={"alice": ["--quota", "100MiB"]})
    home = srv.home()
    ftp = srv.connect("alice")
    upload(ftp, "a.bin", b"old a" * 1000)
    upload(ftp, "b.bin", b"old b" * 1000)
    interrupt_overwrite(ftp, "a.bin", os.urandom(1024 * 1024))
    interrupt_overwrite(ftp, "b.bin", os.urandom(512 * 1024))
    assert len(os.listdir(home)) == 4, sorted(os.listdir(home))  # two files, two parts
    ftp.rename("a.bin", "b.bin")
    # b.bin is a.bin's old content; neither unfinished overwrite is left to be resumed into
    # another file of the same name, and the quota counts what is on the disk.
    assert sorted(os.listdir(home)) == ["b.bin"]
    assert (home / "b.bin").read_bytes() == b"old a" * 1000
    assert quota_used_bytes(ftp) == disk_usage(home)[0], ftp.sendcmd("SITE QUOTA")
    # A new a.bin resumed from an offset starts from its own bytes, not a stale part's.
    upload(ftp, "a.bin", b"x" * 100)
    ftp.storbinary("STOR a.bin", io.BytesIO(b"y" * 50), rest=100)
    assert (home / "a.bin").read_bytes() == b"x" * 100 + b"y" * 50


@pytest.mark.local_only  # part files on disk
def test_new_upload_clears_a_stale_part_of_its_name(start_server):
    srv = start_server(user_args={"alice": ["--quota", "100MiB"]})
    home = srv.home()
    (home / "n.bin").write_bytes(b"old" * 1000)
    ftp = srv.connect("alice")
    interrupt_overwrite(ftp, "n.bin", os.urandom(256 * 1024))
    (home / "n.bin").unlink()  # removed outside the server: its part is left behind
    upload(ftp, "n.bin", b"fresh")
    assert sorted(os.listdir(home)) == ["n.bin"]
    assert (home / "n.bin").read_bytes() == b"fresh"


# --- a full disk ----------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs: {r.stderr.decode()}", pytrace=False)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.local_only  # a small file system
def test_disk_full_is_452_and_the_session_goes_on(start_server, small_disk):
    home = small_disk / "carol"
    srv = start_server(users={"carol": "carol-pw-123"}, user_args={"carol": ["--home", str(home)]})
    ftp = srv.connect("carol")
    old = os.urandom(1024 * 1024)
    upload(ftp, "keep.bin", old)
    with pytest.raises(ftplib.Error) as e:
        upload(ftp, "huge.bin", os.urandom(8 * 1024 * 1024))
    assert code_of(e.value) == "452", e.value
    # Consistent: what SIZE reports is what is on disk, and the session still works.
    assert ftp.voidcmd("NOOP")[:3] == "200"
    assert ftp.size("huge.bin") == (home / "huge.bin").stat().st_size
    # An overwrite that runs out of space leaves the old version whole.
    with pytest.raises(ftplib.Error) as e:
        upload(ftp, "keep.bin", os.urandom(8 * 1024 * 1024))
    assert code_of(e.value) == "452", e.value
    assert (home / "keep.bin").read_bytes() == old
    out = io.BytesIO()
    ftp.retrbinary("RETR keep.bin", out.write)
    assert out.getvalue() == old
    ftp.delete("huge.bin")
    upload(ftp, "small.bin", b"fits now")
    assert (home / "small.bin").read_bytes() == b"fits now"


def quota_used_bytes(ftp) -> int:
    report = ftp.sendcmd("SITE QUOTA")
    return int(report.split("(", 1)[1].split(" bytes)", 1)[0])


def wait_until(pred, timeout=10):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.local_only  # watches the file grow on disk
def test_aborted_upload_leaves_usage_equal_to_the_disk(start_server):
    srv = start_server(user_args={"alice": ["--quota", "100MiB"]})
    ftp = srv.connect("alice")
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("STOR a.bin")
    conn.sendall(os.urandom(3 * 1024 * 1024))
    wait_for_size(srv.home() / "a.bin", 1)
    ftp.sock.sendall(b"ABOR\r\n")
    replies = []
    try:
        replies.append(ftp.getmultiline())
        replies.append(ftp.getmultiline())
    finally:
        conn.close()
    assert [r[:3] for r in replies] == ["426", "226"], replies
    on_disk = disk_usage(srv.home())[0]
    assert quota_used_bytes(ftp) == on_disk, (ftp.sendcmd("SITE QUOTA"), on_disk)


@pytest.mark.local_only  # watches the file grow on disk
def test_client_killed_mid_upload_leaves_usage_equal_to_the_disk(start_server):
    srv = start_server(user_args={"alice": ["--quota", "100MiB"]})
    ftp = srv.connect("alice")
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("STOR k.bin")
    conn.sendall(os.urandom(3 * 1024 * 1024))
    wait_for_size(srv.home() / "k.bin", 1)
    # Both connections die at once, as when the client process is killed.
    reset_close(conn)
    reset_close(ftp.sock)
    on_disk = lambda: disk_usage(srv.home())[0]
    fresh = srv.connect("bob")  # another user: alice's counters are not re-read from the store
    assert fresh.voidcmd("NOOP").startswith("200")
    # The dead session settles in the background; then alice's next session sees the truth.
    assert wait_until(lambda: quota_used_bytes(srv.connect("alice")) == on_disk()), (
        srv.connect("alice").sendcmd("SITE QUOTA"), on_disk())


@pytest.mark.local_only  # watches the file grow on disk
def test_a_running_upload_keeps_its_name_busy(start_server):
    """While one session uploads a file, another session's upload, delete or rename of it is
    refused with 450 (two writers would interleave their bytes; a delete under a running
    upload used to release its bytes from the quota twice). The upload ends intact, and the
    usage equals the disk."""
    srv = start_server(user_args={"alice": ["--quota", "100MiB"]})
    writer, other = srv.connect("alice"), srv.connect("alice")
    upload(other, "old.bin", b"previous version")
    other.mkd("d")
    data = os.urandom(3 * 1024 * 1024)
    for name in ("d/new.bin", "old.bin"):   # a new file, and an overwrite (a part file)
        writer.voidcmd("TYPE I")
        conn = writer.transfercmd(f"STOR {name}")
        conn.sendall(data[:1024 * 1024])
        wait_for_size(srv.home() / "d" / "new.bin" if name == "d/new.bin"
                      else srv.home() / ".old.bin.ferry-part", 1)
        attempts = [lambda: upload(other, name, b"interleaved"),
                    lambda: other.delete(name),
                    lambda: other.rename(name, "elsewhere.bin"),
                    lambda: other.rename("old.bin" if name != "old.bin" else "d", name)]
        if name.startswith("d/"):
            attempts.append(lambda: other.rename("d", "e"))
        refused = []
        for attempt in attempts:
            with pytest.raises(ftplib.error_temp) as e:
                attempt()
            refused.append(str(e.value))
        assert all(r.startswith("450") and "upload" in r for r in refused), refused
        conn.sendall(data[1024 * 1024:])
        conn.close()
        assert writer.voidresp().startswith("226")
        assert (srv.home() / name).read_bytes() == data
    # Free again once the uploads are done.
    other.rename("d/new.bin", "moved.bin")
    other.delete("moved.bin")
    assert quota_used_bytes(other) == disk_usage(srv.home())[0]
