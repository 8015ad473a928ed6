"""Escaping the home directory: every attempt must fail (550, or 553 for bad
names) and must never reveal or modify anything outside alice's home."""

from __future__ import annotations

import ftplib
import io
import os
import socket

import pytest

from ftphelp import code, list_entries, mlsd_entries, retr_bytes, stor_bytes

# Every test here runs against local disk and S3 (see conftest.py).
BACKENDS = ("local", "s3")

from conftest import s3_client  # noqa: E402

SECRET = b"TOP SECRET outside the jail\n"
ETC_NAMES = {"passwd", "hostname", "hosts", "group", "shadow", "fstab", "os-release"}


@pytest.fixture
def jail(ferry_server, tmp_path):
    """alice's home with symlinks pointing out of it; bob's home; a dir outside."""
    srv = ferry_server
    home, bob = srv.home("alice"), srv.home("bob")
    (home / "mine.txt").write_bytes(b"mine")
    (home / "sub").mkdir()
    (home / "sub" / "f.txt").write_bytes(b"inside")
    (bob / "bobfile.txt").write_bytes(b"bob private")
    if srv.backend == "s3":
        # No links in a bucket: what a path that climbed out of the home would reach is
        # other keys, so they exist and hold the secret (the bucket's own /etc/passwd).
        client, bucket = s3_client(), srv.s3_bucket
        for key in ("etc/passwd", "etc/hostname", "homes/etc/passwd", "secret.txt"):
            client.put_object(Bucket=bucket, Key=f"{srv.s3_prefix}/{key}", Body=SECRET)
        srv.outside = None
        return srv
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    os.symlink("/etc", home / "escape")
    os.symlink("../bob", home / "tobob")
    os.symlink(str(outside), home / "out")
    os.symlink(str(outside / "secret.txt"), home / "outfile")
    os.symlink("..", home / "up")
    srv.outside = outside
    return srv


def retr_denied(ftp: ftplib.FTP, path: str, codes=(550,)) -> None:
    got: list[bytes] = []
    c = code(ftp.retrbinary, f"RETR {path}", got.append)
    assert c in codes, f"RETR {path!r}: got {c}"
    assert got == [], f"RETR {path!r} leaked {b''.join(got)[:200]!r}"


def assert_alive(ftp: ftplib.FTP) -> None:
    assert ftp.voidcmd("NOOP")[:3] == "200"


# ------------------------------------------------------ lexical traversal

@pytest.mark.parametrize("path", [
    "../../etc/passwd", "/etc/passwd", "../../../../../../../../etc/passwd",
    "/../../../etc/passwd", "sub/../../../etc/passwd", "./../etc/passwd",
    "..//..//etc//passwd",
])
def test_retr_outside_550(jail, ftp, path):
    retr_denied(ftp, path)
    assert_alive(ftp)


def test_retr_backslash_refused(jail, ftp):
    # CONTRACT.md says 550 for a backslash; 553 (bad file name) is accepted too.
    retr_denied(ftp, "..\\..\\etc\\passwd", codes=(550, 553))
    retr_denied(ftp, "\\etc\\passwd", codes=(550, 553))
    retr_denied(ftp, "sub\\f.txt", codes=(550, 553))
    assert_alive(ftp)


@pytest.mark.parametrize("cmd", ["SIZE /etc/passwd", "MDTM /etc/passwd", "MLST /etc/passwd",
                                 "SIZE ../../etc/passwd", "CWD /etc", "CWD ../../etc",
                                 "DELE /etc/passwd", "RMD /etc", "RNFR /etc/passwd",
                                 "MKD /etc/ferry-should-not-exist"])
def test_other_commands_outside_550(jail, ftp, cmd):
    assert code(ftp.sendcmd, cmd) == 550
    assert not os.path.exists("/etc/ferry-should-not-exist")
    assert ftp.pwd() == "/"


def test_stat_outside_reveals_nothing(jail, ftp):
    try:
        resp = ftp.sendcmd("STAT /etc")
    except ftplib.error_perm as e:
        assert str(e)[:3] == "550"
        return
    assert not any(n in resp for n in ("passwd", "hostname")), resp


def test_cwd_dotdot_at_root_stays_root(jail, ftp):
    c = code(ftp.cwd, "..")
    assert c in (250, 550), c
    assert ftp.pwd() == "/"


def test_cwd_many_dotdots_then_list_shows_only_home(jail, ftp):
    c = code(ftp.cwd, "../../../../")
    assert c in (250, 550), c
    assert ftp.pwd() == "/"
    links = {"escape", "tobob", "out", "outfile", "up"} if jail.backend == "local" else set()
    assert set(ftp.nlst()) == {"mine.txt", "sub"} | links
    assert list_entries(ftp)["mine.txt"].size == 4


def test_list_dotdot_paths_show_home(jail, ftp):
    for p in ("..", "../..", "/..", "../../../../etc/.."):
        names = set(list_entries(ftp, p))
        assert "mine.txt" in names, (p, names)
        assert not names & ETC_NAMES and "alice" not in names and "bob" not in names, (p, names)


# ------------------------------------------------------ symlinks

@pytest.mark.local_only  # symlinks and hard links on disk
def test_cwd_symlink_to_etc_550(jail, ftp):
    assert code(ftp.cwd, "escape") == 550
    assert ftp.pwd() == "/"


@pytest.mark.local_only  # symlinks and hard links on disk
def test_retr_through_symlink_550(jail, ftp):
    retr_denied(ftp, "escape/passwd")
    retr_denied(ftp, "/escape/hostname")
    retr_denied(ftp, "outfile")
    retr_denied(ftp, "out/secret.txt")
    assert_alive(ftp)


@pytest.mark.local_only  # symlinks and hard links on disk
@pytest.mark.parametrize("cmd", ["LIST", "NLST", "MLSD"])
def test_listing_through_symlink(jail, ftp, cmd):
    lines: list[str] = []
    try:
        ftp.retrlines(f"{cmd} escape", lines.append)
    except ftplib.error_perm as e:
        assert str(e)[:3] == "550", e
    text = "\n".join(lines)
    assert not any(n in text for n in ETC_NAMES), text[:500]
    lines = []
    try:
        ftp.retrlines(f"{cmd} out", lines.append)
    except ftplib.error_perm as e:
        assert str(e)[:3] == "550", e
    assert not any("secret.txt" in l for l in lines), lines
    assert_alive(ftp)


@pytest.mark.local_only  # symlinks and hard links on disk
def test_symlink_to_other_user_550(jail, ftp):
    assert code(ftp.cwd, "tobob") == 550
    retr_denied(ftp, "tobob/bobfile.txt")
    lines: list[str] = []
    try:
        ftp.retrlines("LIST tobob", lines.append)
    except ftplib.error_perm as e:
        assert str(e)[:3] == "550"
    assert not any("bobfile" in l for l in lines), lines


@pytest.mark.local_only  # symlinks and hard links on disk
def test_symlink_to_parent_550(jail, ftp):
    assert code(ftp.cwd, "up") == 550
    retr_denied(ftp, "up/bob/bobfile.txt")
    lines: list[str] = []
    try:
        ftp.retrlines("NLST up", lines.append)
    except ftplib.error_perm as e:
        assert str(e)[:3] == "550"
    assert not any(("bob" in l or "alice" in l) for l in lines), lines


@pytest.mark.parametrize("cmd", ["SIZE outfile", "MDTM outfile", "MLST outfile", "SIZE escape/passwd",
                                 "MDTM out/secret.txt", "MLST escape/passwd", "RNFR out/secret.txt",
                                 "DELE out/secret.txt", "MKD out/newdir", "RMD escape/.."])
@pytest.mark.local_only  # symlinks and hard links on disk
def test_metadata_through_symlink_550(jail, ftp, cmd):
    ftp.voidcmd("TYPE I")
    assert code(ftp.sendcmd, cmd) == 550
    assert (jail.outside / "secret.txt").read_bytes() == SECRET
    assert not (jail.outside / "newdir").exists()


@pytest.mark.local_only  # symlinks and hard links on disk
def test_writes_through_symlink_refused(jail, ftp):
    outside = jail.outside
    assert code(stor_bytes, ftp, "out/new.txt", b"pwned") in (550, 553)
    assert not (outside / "new.txt").exists()
    assert code(stor_bytes, ftp, "outfile", b"pwned") in (550, 553)
    assert code(stor_bytes, ftp, "outfile", b"pwned", cmd="APPE") in (550, 553)
    assert code(stor_bytes, ftp, "out/secret.txt", b"pwned", cmd="APPE") in (550, 553)
    assert (outside / "secret.txt").read_bytes() == SECRET
    assert sorted([p.name for p in (outside).iterdir()]) == ["secret.txt"]
    assert_alive(ftp)


@pytest.mark.local_only  # symlinks and hard links on disk
def test_rename_into_symlinked_dir_refused(jail, ftp):
    assert ftp.sendcmd("RNFR mine.txt")[:3] == "350"
    assert code(ftp.sendcmd, "RNTO out/mine.txt") in (550, 553)
    assert (jail.home() / "mine.txt").read_bytes() == b"mine"
    assert sorted([p.name for p in (jail.outside).iterdir()]) == ["secret.txt"]


@pytest.mark.local_only  # symlinks and hard links on disk
def test_renamed_symlink_still_refused(jail, ftp):
    # Renaming the link itself stays inside the home; following it must still fail.
    c = code(ftp.rename, "outfile", "innocent.txt")
    if c == 250:
        retr_denied(ftp, "innocent.txt")
    else:
        assert c == 550
    assert (jail.outside / "secret.txt").read_bytes() == SECRET


@pytest.mark.local_only  # symlinks and hard links on disk
def test_dele_symlink_never_deletes_target(jail, ftp):
    code(ftp.delete, "outfile")  # removing the link itself is acceptable
    assert (jail.outside / "secret.txt").read_bytes() == SECRET


@pytest.mark.local_only  # symlinks and hard links on disk
def test_symlink_inside_home_allowed(jail, ftp):
    os.symlink("sub", jail.home() / "inner")
    assert retr_bytes(ftp, "inner/f.txt") == b"inside"


# ------------------------------------------------------ bad names

def raw_retr(c, line: bytes):
    """PASV + connect, then RETR with exact bytes; returns the final reply."""
    host, port = c.pasv()
    with socket.create_connection((host, port), timeout=10) as d:
        d.settimeout(10)
        r = c.cmd(line)
        if r.code < 200:  # opened the data connection anyway: must then fail, sending nothing
            data = b""
            while True:
                chunk = d.recv(65536)
                if not chunk:
                    break
                data += chunk
            assert data == b"", data[:200]
            r = c.reply()
    return r


def test_nul_byte_retr_raw(jail):
    c = jail.raw("alice")
    r = raw_retr(c, b"RETR a\x00b")
    assert 500 <= r.code < 600, r
    assert c.cmd("NOOP").code == 200
    r = raw_retr(c, b"RETR mine.txt\x00.jpg")
    assert 500 <= r.code < 600, r
    assert c.cmd("NOOP").code == 200


@pytest.mark.parametrize("line", [b"CWD a\x00b", b"MKD a\x00b", b"SIZE mine.txt\x00.jpg",
                                  b"DELE mine.txt\x00x", b"MKD \x00"])
def test_nul_byte_other_commands(jail, line):
    c = jail.raw("alice")
    before = sorted([p.name for p in (jail.home()).iterdir()])
    r = c.cmd(line)
    assert 500 <= r.code < 600, (line, r)
    assert c.cmd("NOOP").code == 200
    assert sorted([p.name for p in (jail.home()).iterdir()]) == before
    assert (jail.home() / "mine.txt").read_bytes() == b"mine"


@pytest.mark.parametrize("line", [b"MKD \xff\xfe", b"RETR \xc3(", b"CWD \xed\xa0\x80",
                                  b"DELE mine\xff.txt", b"SIZE \xc0\xaf"])
def test_invalid_utf8_raw(jail, line):
    c = jail.raw("alice")
    before = sorted([p.name for p in (jail.home()).iterdir()])
    r = raw_retr(c, line) if line.startswith(b"RETR") else c.cmd(line)
    assert 500 <= r.code < 600, (line, r)
    assert c.cmd("NOOP").code == 200
    assert sorted([p.name for p in (jail.home()).iterdir()]) == before


def test_long_component_refused(jail, ftp):
    name = "a" * 300
    retr_denied(ftp, name, codes=(550, 553))
    assert code(stor_bytes, ftp, name, b"x") in (550, 553)
    assert code(ftp.mkd, name) in (550, 553)
    assert code(ftp.cwd, name) in (550, 553)
    assert code(ftp.sendcmd, f"RNFR {name}") in (550, 553)
    assert ftp.sendcmd("RNFR mine.txt")[:3] == "350"
    assert code(ftp.sendcmd, f"RNTO {name}") in (550, 553)
    assert (jail.home() / "mine.txt").exists()
    assert_alive(ftp)


def test_255_byte_component_ok(jail, ftp):
    name = "b" * 255
    stor_bytes(ftp, name, b"max")
    assert retr_bytes(ftp, name) == b"max"
    # An overwrite of it goes through a part file whose name had to be shortened.
    stor_bytes(ftp, name, b"new version")
    assert retr_bytes(ftp, name) == b"new version"
    assert not any(n.endswith(".ferry-part") for n in ftp.nlst())


def test_very_long_path_550(jail, ftp):
    path = "abc/" * 1100  # 4400 bytes: over the 4096 path limit, under max_line
    assert code(ftp.cwd, path) in (550, 553)
    assert code(stor_bytes, ftp, path + "f", b"x") in (550, 553)
    assert_alive(ftp)


def test_stor_name_dot_and_dotdot(jail, ftp):
    assert code(stor_bytes, ftp, "..", b"x") in (550, 553)
    assert code(stor_bytes, ftp, ".", b"x") in (550, 553)
    assert code(stor_bytes, ftp, "/", b"x") in (550, 553)
    assert_alive(ftp)


@pytest.mark.local_only  # symlinks and hard links on disk
def test_hard_link_to_a_file_outside_the_home_is_never_written(ferry_server, ftp, tmp_path):
    """A hard link made by someone with shell access: the jail cannot tell where the file's
    other names are, so a file with more than one link is not changed in place (APPE,
    REST+STOR, MFMT are refused); an overwrite replaces the link in the home and leaves the
    outside file alone. Reading it is the administrator's business (see ARCHITECTURE.md)."""
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"outside the home\n")
    home = ferry_server.home()
    os.link(outside, home / "linked.txt")
    mtime = outside.stat().st_mtime
    for attempt in (lambda: ftp.storbinary("APPE linked.txt", io.BytesIO(b"appended")),
                    lambda: ftp.storbinary("STOR linked.txt", io.BytesIO(b"resumed"), rest=5),
                    lambda: ftp.sendcmd("MFMT 20000101000000 linked.txt")):
        with pytest.raises(ftplib.error_perm) as refused:
            attempt()
        assert str(refused.value).startswith("550") and "hard link" in str(refused.value)
    assert outside.read_bytes() == b"outside the home\n"
    assert outside.stat().st_mtime == mtime
    ftp.storbinary("STOR linked.txt", io.BytesIO(b"a new version"))
    assert (home / "linked.txt").read_bytes() == b"a new version"
    assert outside.read_bytes() == b"outside the home\n"
