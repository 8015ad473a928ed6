"""S3 storage: what only object storage has to show (the suites that run on both backends show
the rest: `BACKENDS` in test_ftplib.py, test_overwrite_resume.py, ...).

- An upload interrupted by ferryd's death keeps its whole parts (5 MiB here), and every
  client's resume continues from them, byte-exact.
- A rename of an object above the multipart-copy threshold copies it part by part.
- A directory of many objects is listed page by page: ferryd's memory does not grow with it.
- The S3 server going away mid-session: replies, not hangs; the session survives and works
  again once the server is back.
- A bad endpoint or bad credentials stop `ferryd serve` with a message naming them.
"""

from __future__ import annotations

import concurrent.futures
import io
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import ftplib
import pytest

from conftest import REPO_ROOT, run_cli, s3_client, s3_environment, write_config, ferryd_binary
from test_overwrite_resume import resume_curl, resume_ferry, resume_lftp, need

BACKENDS = ("s3",)

PART = 5 * 1024 * 1024
NEW_SIZE = 3 * PART + 2 * 1024 * 1024 + 77
CUT_AT = 2 * PART + 1024 * 1024  # two whole parts are kept, the rest is not


def retr(srv, name: str, user: str = "alice") -> bytes:
    ftp = srv.connect(user)
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", out.write)
    ftp.close()
    return out.getvalue()


@pytest.mark.parametrize("client", {"curl": resume_curl, "lftp": resume_lftp,
                                    "ferry": resume_ferry})
def test_resume_after_ferryd_is_killed_mid_upload(start_server, tmp_path, client):
    if client != "ferry":
        need(client)
    srv = start_server()
    new = os.urandom(NEW_SIZE)
    src = tmp_path / "new.bin"
    src.write_bytes(new)
    ftp = srv.connect("alice")
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("STOR big.bin")
    conn.sendall(new[:CUT_AT])
    assert srv.wait_for_upload("big.bin", CUT_AT) == 2 * PART
    srv.proc.send_signal(signal.SIGKILL)  # this PID only
    srv.proc.wait(10)
    conn.close()
    ftp.close()
    srv.start()
    # What SIZE offers is what is stored: the two whole parts.
    ftp = srv.connect("alice")
    assert ftp.sendcmd("SIZE big.bin") == f"213 {2 * PART}"
    ftp.close()
    resume = {"curl": resume_curl, "lftp": resume_lftp, "ferry": resume_ferry}[client]
    r = resume(srv, src, "big.bin")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert (srv.home() / "big.bin").read_bytes() == new
    assert retr(srv, "big.bin") == new


def test_rename_above_the_multipart_copy_threshold(start_server):
    srv = start_server(s3={"multipart_copy_threshold_mib": 5})
    data = os.urandom(2 * PART + 12345)
    ftp = srv.connect("alice")
    ftp.storbinary("STOR a.bin", io.BytesIO(data))
    ftp.mkd("sub")
    assert ftp.sendcmd("RNFR a.bin")[:3] == "350"
    assert ftp.sendcmd("RNTO sub/b.bin")[:3] == "250"
    assert ftp.nlst() == ["sub"]
    ftp.close()
    assert retr(srv, "sub/b.bin") == data
    assert not (srv.home() / "a.bin").exists()
    log = srv.log_path.read_text(errors="replace")
    assert "ERROR" not in log, log[-2000:]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_large_directory_is_listed_in_pages_in_bounded_memory(start_server):
    """LIST, NLST and MLSD of a directory of many objects: every name arrives, and ferryd's
    resident memory grows by less than 32 MiB while it lists (one page of 1,000 held at a
    time). 20,000 objects here (making them takes a minute); FERRY_S3_LIST_OBJECTS=100000 for
    the full-size run BENCHMARKS.md quotes."""
    count = int(os.environ.get("FERRY_S3_LIST_OBJECTS", "20000"))
    srv = start_server()
    home = srv.home()
    (home / "big").mkdir()
    client = s3_client()
    prefix = f"{srv.s3_prefix}/homes/alice/big/"
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: client.put_object(Bucket=srv.s3_bucket,
                                                  Key=f"{prefix}f{i:06d}.dat", Body=b""),
                      range(count)))
    ftp = srv.connect("alice")
    before = rss_kib(srv.proc.pid)
    peak = before
    for verb in ("NLST", "LIST", "MLSD"):
        seen = 0

        def line(_text):
            nonlocal seen, peak
            seen += 1
            if seen % 5000 == 0:
                peak = max(peak, rss_kib(srv.proc.pid))

        ftp.retrlines(f"{verb} big", line)
        assert seen == count, (verb, seen)
    ftp.close()
    assert peak - before < 32 * 1024, f"RSS grew {peak - before} KiB listing {count} objects"


def seaweed(action: str, directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO_ROOT / "scripts" / "seaweedfs.sh"), action, str(directory)],
                          capture_output=True, text=True, timeout=180)


def test_the_s3_server_going_away_mid_session(start_server, tmp_path):
    """An S3 server of its own, stopped while a user is logged in: each command gets a reply
    within the client's timeout (451 or 550; the session stays), and once the server is
    back, the same session works again."""
    own = tmp_path / "seaweed"
    started = seaweed("start", own)
    assert started.returncode == 0, started.stderr
    try:
        env = dict(line.split("=", 1) for line in (own / "env").read_text().split())
        srv = start_server(s3={"endpoint": env["S3_ENDPOINT"],
                               "access_key_id": env["AWS_ACCESS_KEY_ID"],
                               "secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
                               "bucket": env["S3_BUCKET"]})
        ftp = srv.connect("alice", timeout=60)
        ftp.storbinary("STOR f.bin", io.BytesIO(b"before"))
        stopped = seaweed("stop", own)
        assert stopped.returncode == 0, stopped.stderr
        for cmd in ("SIZE f.bin", "MKD d", "DELE f.bin", "CWD d"):
            began = time.monotonic()
            with pytest.raises(ftplib.error_reply if False else ftplib.Error) as failed:
                ftp.sendcmd(cmd)
            assert str(failed.value)[:3] in ("451", "550"), (cmd, failed.value)
            assert time.monotonic() - began < 45, cmd
        with pytest.raises(ftplib.Error) as failed:
            ftp.retrbinary("RETR f.bin", lambda b: None)
        assert str(failed.value)[:3] in ("451", "550", "426"), failed.value
        assert ftp.sendcmd("NOOP")[:3] == "200"
        restarted = seaweed("start", own)
        assert restarted.returncode == 0, restarted.stderr
        # The S3 gateway answers before its volume server is back: wait until it serves the
        # object (from outside ferryd), so what follows tests ferryd, not SeaweedFS's start.
        import boto3
        from botocore.config import Config
        direct = boto3.client("s3", endpoint_url=env["S3_ENDPOINT"], region_name="us-east-1",
                              aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                              config=Config(s3={"addressing_style": "path"}))
        deadline = time.monotonic() + 60
        while True:
            try:
                direct.get_object(Bucket=env["S3_BUCKET"],
                                  Key=f"{srv.s3_prefix}/homes/alice/f.bin")["Body"].read()
                break
            except Exception:
                assert time.monotonic() < deadline, "SeaweedFS did not serve again"
                time.sleep(0.5)
        out = io.BytesIO()
        ftp.retrbinary("RETR f.bin", out.write)
        assert out.getvalue() == b"before"
        ftp.storbinary("STOR g.bin", io.BytesIO(b"after"))
        assert sorted(ftp.nlst()) == ["f.bin", "g.bin"]
        ftp.close()
    finally:
        seaweed("stop", own)


@pytest.mark.parametrize("wrong", ["endpoint", "secret"])
def test_bad_endpoint_or_credentials_stop_the_server_with_a_message(tmp_path, wrong):
    env = s3_environment()
    s3 = {"endpoint": env["S3_ENDPOINT"], "bucket": env["S3_BUCKET"],
          "access_key_id": env["AWS_ACCESS_KEY_ID"],
          "secret_access_key": env["AWS_SECRET_ACCESS_KEY"]}
    if wrong == "endpoint":
        s3["endpoint"] = "http://127.0.0.1:9"  # discard: nothing listens
    else:
        s3["secret_access_key"] = "not-the-secret"
    config = tmp_path / "ferry.toml"
    write_config(config, {"storage": "s3", "s3": s3})
    r = run_cli(ferryd_binary(), ["--data-dir", str(tmp_path / "data"), "--config", str(config),
                                  "serve", "--listen", "127.0.0.1:0"], timeout=120)
    err = r.stderr.decode(errors="replace")
    assert r.returncode != 0, err
    assert "storage:" in err and env["S3_BUCKET"] in err, err
    if wrong == "endpoint":
        assert "127.0.0.1:9" in err, err
    else:
        assert "not-the-secret" not in err, "the secret must never be printed"
        assert "denied" in err.lower() or "403" in err or "signature" in err.lower(), err


def kill_mid_upload(srv, name: str, data: bytes, cut_at: int) -> None:
    """Sends `cut_at` bytes of `data` as STOR `name`, waits until whole parts of them are
    stored, then kills ferryd (kill -9) and starts it again."""
    ftp = srv.connect("alice")
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd(f"STOR {name}")
    conn.sendall(data[:cut_at])
    srv.wait_for_upload(name, cut_at)
    srv.proc.send_signal(signal.SIGKILL)  # this PID only
    srv.proc.wait(10)
    conn.close()
    ftp.close()
    srv.start()


def test_an_interrupted_new_upload_is_sized_deleted_and_keeps_its_name_from_stou(start_server):
    """A new file's upload that never completed is no object, yet SIZE offers what it kept,
    STOU does not take its name, and DELE drops it (its bytes leave the quota)."""
    srv = start_server()
    data = os.urandom(NEW_SIZE)
    kill_mid_upload(srv, "new.bin", data, CUT_AT)
    ftp = srv.connect("alice")
    assert ftp.sendcmd("SIZE new.bin") == f"213 {2 * PART}"
    assert ftp.nlst() == []
    ftp.voidcmd("TYPE I")
    conn, _ = ftp.ntransfercmd("STOU new.bin")
    conn.sendall(b"unique")
    conn.close()
    assert ftp.voidresp()[:3] == "226"
    assert ftp.nlst() == ["new.bin.1"]
    assert ftp.sendcmd("DELE new.bin")[:3] == "250"
    with pytest.raises(ftplib.error_perm):
        ftp.sendcmd("SIZE new.bin")
    used = ftp.sendcmd("SITE QUOTA")
    assert "(6 bytes) used" in used, used
    ftp.close()


def test_an_interrupted_append_to_a_small_object_keeps_it(start_server):
    """APPE to an object under one part rewrites it whole at completion; cut before, the
    object is as it was and SIZE says so, so a resume (curl -C -) appends the rest."""
    srv = start_server()
    old = b"log line\n" * 100
    (srv.home() / "log.txt").write_bytes(old)
    more = os.urandom(3 * 1024 * 1024)
    ftp = srv.connect("alice")
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("APPE log.txt")
    conn.sendall(more[: 1024 * 1024])
    time.sleep(0.5)
    conn.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_LINGER,
                    __import__("struct").pack("ii", 1, 0))
    conn.close()
    with pytest.raises(ftplib.Error):
        ftp.voidresp()
    ftp.close()
    ftp = srv.connect("alice")
    assert ftp.sendcmd("SIZE log.txt") == f"213 {len(old)}"
    ftp.storbinary("APPE log.txt", io.BytesIO(more))
    ftp.close()
    assert (srv.home() / "log.txt").read_bytes() == old + more
