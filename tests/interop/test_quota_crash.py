"""Quotas after a crash: the stored usage counters cannot be trusted after kill -9 of ferryd.

Uploads that were running when the server died wrote bytes they never settled, and files may
have been added while it was down, so the counter in the store can be far below the disk. A
user who logs in right after the restart must still be refused at the quota: the server
recounts a user's home before any of the user's sessions can reserve space, whether the
background rescan at start has reached that user yet or not, and never lets that rescan touch
the counter of a user whose sessions already run (see crates/server/src/quota.rs)."""

from __future__ import annotations

import ftplib
import os
import queue
import re
import shutil
import sqlite3
import threading
import time

import pytest

from ftphelp import PASSWORDS, upload, wait_for_size

MiB = 1024 * 1024
QUOTA = 40 * MiB
# A user whose name sorts before alice: the background rescan walks this home first.
EARLY = "aaron"
USERS = {EARLY: "aar0n-Secret pw", **PASSWORDS}


def disk_usage(home) -> tuple[int, int]:
    """Bytes and regular files under `home`, as the server counts them (symlinks not followed;
    part files count in bytes only)."""
    total, files = 0, 0
    stack = [os.fspath(home)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    total += e.stat(follow_symlinks=False).st_size
                    if not (e.name.startswith(".") and e.name.endswith(".ferry-part")):
                        files += 1
    return total, files


def quota_report(ftp) -> tuple[int, int]:
    """(bytes, files) used, from SITE QUOTA."""
    report = ftp.sendcmd("SITE QUOTA")
    used = re.search(r"\((\d+) bytes\) used", report)
    files = re.search(r"files: (\d+) used", report)
    assert used and files, report
    return int(used.group(1)), int(files.group(1))


def crash(srv):
    """kill -9 of ferryd: no settlement, no last write of the counters."""
    srv.proc.kill()
    srv.proc.wait(timeout=10)
    stop(srv)  # closes the old log; the process is already gone


def stop(srv):
    """srv.stop(), then waits until conftest's reader of the old process's stdout has seen its
    end: if that reader finished after the next srv.start(), its end-of-output mark would land
    in the new process's queue and start() would take it for the new ferryd's exit."""
    srv.stop()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if srv._lines.get(timeout=0.1) is None:
                return
        except queue.Empty:
            pass


@pytest.fixture
def many_files():
    """many_files(home, n): `n` small files in subdirectories, so walking the home takes a
    while (hard links of one file outside the home: much faster to make than `n` files, and
    each counts as a file). Removed after the test, so kept test directories stay small."""
    made = []

    def make(home, n, size=64):
        made.append(home / "many")
        make_links(home, n, size)

    yield make
    for d in made:
        shutil.rmtree(d, ignore_errors=True)


def make_links(home, n, size):
    src = home.parent / f".{home.name}-link-source"
    src.write_bytes(b"m" * size)
    for d in range(n // 1000 + 1):
        sub = home / "many" / f"d{d:03}"
        sub.mkdir(parents=True, exist_ok=True)
        for i in range(min(1000, n - d * 1000)):
            os.link(src, sub / f"f{i:04}")


def rescan_finished(srv) -> bool:
    try:
        return "usage rescan finished" in srv.log_path.read_text(errors="replace")
    except OSError:
        return False


def interrupted_upload_then_crash(srv, name, size):
    """Starts an upload of `size` bytes, waits until the server has written them, and kills
    ferryd before the upload is settled: those bytes are on disk but not in the counter."""
    ftp = srv.connect("alice", timeout=30)
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd(f"STOR {name}")
    conn.sendall(os.urandom(size))
    wait_for_size(srv.home() / name, size)
    crash(srv)
    conn.close()


def set_stored_usage(srv, user, used_bytes, used_files):
    """Writes `user`'s counters in the store while ferryd is down."""
    db = sqlite3.connect(srv.data_dir / "ferry.db")
    try:
        with db:
            db.execute("UPDATE users SET used_bytes = ?, used_files = ? WHERE name = ?",
                       (used_bytes, used_files, user))
    finally:
        db.close()


def recounted(srv, user) -> bool:
    """Has this ferryd recounted `user`'s home (and found the stored counter wrong)?"""
    try:
        log = srv.log_path.read_text(errors="replace")
    except OSError:
        return False
    return re.search(rf"usage recounted from disk user={user}\b", log) is not None


def stored_usage(srv, user) -> tuple[int, int]:
    db = sqlite3.connect(srv.data_dir / "ferry.db")
    try:
        return db.execute("SELECT used_bytes, used_files FROM users WHERE name = ?",
                          (user,)).fetchone()
    finally:
        db.close()


def restart_and_log_in_during_the_rescan(srv, stale=(0, 0)):
    """Starts ferryd (down after a crash) with alice's stored counters at `stale` and logs her
    in at once: her PASS arrives before her home was recounted, while the background rescan
    runs. When the machine was quicker than that, crashes it again and retries, the stale
    counters put back."""
    for _ in range(4):
        set_stored_usage(srv, "alice", *stale)
        srv.start()
        ftp = srv.ftp(timeout=30)
        ftp.sendcmd("USER alice")
        racing = not recounted(srv, "alice") and not rescan_finished(srv)
        assert ftp.sendcmd(f"PASS {PASSWORDS['alice']}").startswith("230")
        if racing:
            return ftp
        crash(srv)
    pytest.fail("the background rescan always finished before alice's login", pytrace=False)


def assert_refused_at_the_quota(ftp, home):
    on_disk = disk_usage(home)
    assert quota_report(ftp) == on_disk, (ftp.sendcmd("SITE QUOTA"), on_disk)
    with pytest.raises(ftplib.error_perm) as e:
        upload(ftp, "more.bin", os.urandom(20 * MiB))
    assert str(e.value)[:3] == "552", e.value
    used, _ = disk_usage(home)
    assert used <= QUOTA, f"{used} bytes on disk, quota {QUOTA}"
    assert quota_report(ftp) == disk_usage(home), ftp.sendcmd("SITE QUOTA")


def test_login_right_after_a_crash_is_refused_at_the_quota(start_server):
    srv = start_server(user_args={"alice": ["--quota", "40MiB"]})
    ftp = srv.connect("alice")
    upload(ftp, "counted.bin", os.urandom(MiB))
    ftp.quit()
    # 10 MiB written by an upload the crash never settled, 20 MiB added while ferryd is down:
    # the stored counter says 1 MiB, the disk holds 31 MiB.
    interrupted_upload_then_crash(srv, "cut.bin", 10 * MiB)
    (srv.home() / "outside").mkdir()
    (srv.home() / "outside" / "added.bin").write_bytes(os.urandom(20 * MiB))
    srv.start()
    ftp = srv.connect("alice", timeout=30)  # at once, racing the background rescan
    assert_refused_at_the_quota(ftp, srv.home())


@pytest.mark.parametrize("busy", ["alice", EARLY])
def test_login_during_the_background_rescan_is_refused_at_the_quota(start_server, many_files,
                                                                      busy):
    """The background rescan is walking a large home when alice logs in: her own (alice: the
    login waits for that scan of her home) or another user's (aaron: the rescan has not reached
    alice yet, and her login recounts her home itself)."""
    srv = start_server(users=USERS, user_args={"alice": ["--quota", "40MiB"]})
    interrupted_upload_then_crash(srv, "cut.bin", 30 * MiB)
    many_files(srv.home(busy), 50_000)
    ftp = restart_and_log_in_during_the_rescan(srv)
    assert_refused_at_the_quota(ftp, srv.home())


def test_counter_stays_exact_when_uploads_run_while_the_rescan_walks_the_home(start_server,
                                                                             many_files):
    """alice logs in while the background rescan walks aaron's large home, then uploads,
    overwrites and deletes in two sessions while the rescan goes on to her own home. The
    counter must end equal to the disk (and so must the stored one): no rescan may count a
    half-written upload, miss one, or overwrite what her sessions did."""
    srv = start_server(users=USERS, user_args={"alice": ["--quota", "1GiB"]})
    ftp = srv.connect("alice")
    for i in range(5):
        upload(ftp, f"old{i}.bin", os.urandom(200_000))
    ftp.quit()
    interrupted_upload_then_crash(srv, "cut.bin", 5 * MiB)
    many_files(srv.home(EARLY), 50_000)
    many_files(srv.home("alice"), 5_000)
    a = restart_and_log_in_during_the_rescan(srv, stale=(1_000_000, 5))
    errors = []

    def slow_upload():
        try:
            a.voidcmd("TYPE I")
            conn = a.transfercmd("STOR slow.bin")
            chunk = os.urandom(256 * 1024)
            # ~8 MiB over at least two seconds, so the rescan gets to alice's home meanwhile.
            for _ in range(32):
                conn.sendall(chunk)
                time.sleep(0.07)
            conn.close()
            a.voidresp()
        except Exception as e:  # reported below
            errors.append(e)

    t = threading.Thread(target=slow_upload)
    t.start()
    b = srv.connect("alice", timeout=30)
    upload(b, "old0.bin", os.urandom(300_000))  # overwrite: only the new size counts
    b.delete("old1.bin")
    b.delete("cut.bin")
    b.delete("many/d000/f0000")
    upload(b, "new.bin", os.urandom(MiB))
    t.join(30)
    assert not t.is_alive() and not errors, errors
    deadline = time.monotonic() + 10
    while not rescan_finished(srv) and time.monotonic() < deadline:
        time.sleep(0.1)
    on_disk = disk_usage(srv.home())
    assert quota_report(a) == on_disk == quota_report(b), (a.sendcmd("SITE QUOTA"), on_disk)
    assert rescan_finished(srv), "the background rescan never finished"
    a.quit()
    b.quit()
    # What was persisted is the disk too, and so is the recount after a clean restart.
    stop(srv)
    assert stored_usage(srv, "alice") == on_disk
    srv.start()
    assert quota_report(srv.connect("alice", timeout=30)) == on_disk
