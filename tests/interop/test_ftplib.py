"""ferryd driven by Python's ftplib: every command in docs/CONTRACT.md with its
success and error replies, as a user of ftplib would see them."""

from __future__ import annotations

import calendar
import ftplib
import hashlib
import io
import os
import socket
import time

import pytest

from ftphelp import (PASSWORDS, code, err, list_entries, manual_transfer, mlsd_entries,
                     parse_ls, retr_bytes, stor_bytes)

# Every test here runs against local disk and S3 (see conftest.py).
BACKENDS = ("local", "s3")

OLD_MTIME = calendar.timegm((2021, 3, 4, 12, 0, 0))  # 2021-03-04 12:00:00 UTC


def put(srv, rel: str, data: bytes, user: str = "alice", mtime: int | None = None):
    p = srv.home(user) / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    if mtime is not None:
        os.utime(p, (mtime, mtime))
    return p


# --------------------------------------------------------------------- login

def test_greeting_is_220(ferry_server):
    ftp = ferry_server.ftp()
    assert ftp.getwelcome()[:3] == "220"


def test_login_ok(ferry_server):
    ftp = ferry_server.ftp()
    resp = ftp.login("alice", PASSWORDS["alice"])
    assert resp[:3] == "230"
    assert ftp.pwd() == "/"


def test_user_reply_331(ferry_server):
    ftp = ferry_server.ftp()
    assert ftp.sendcmd("USER alice")[:3] == "331"


def test_bad_password_and_unknown_user_same_530(ferry_server):
    ftp = ferry_server.ftp()
    bad_pw = err(ftp.login, "alice", "wrong password")
    assert bad_pw[:3] == "530"
    ftp2 = ferry_server.ftp()
    unknown = err(ftp2.login, "nosuchuser", "wrong password")
    assert unknown[:3] == "530"
    assert unknown == bad_pw, "unknown user must be indistinguishable from a bad password"


def test_bad_password_then_good_login(ferry_server):
    ftp = ferry_server.ftp()
    assert err(ftp.login, "alice", "nope")[:3] == "530"
    # Still not logged in.
    assert code(ftp.sendcmd, "PWD") == 530
    assert ftp.login("alice", PASSWORDS["alice"])[:3] == "230"


def test_other_users_password_rejected(ferry_server):
    ftp = ferry_server.ftp()
    assert err(ftp.login, "alice", PASSWORDS["bob"])[:3] == "530"


def test_pass_without_user(ferry_server):
    ftp = ferry_server.ftp()
    assert code(ftp.sendcmd, "PASS whatever") in (503, 530)


def test_quit_221(ferry_server, ftp):
    assert ftp.quit()[:3] == "221"


def test_quit_before_login_221(ferry_server):
    ftp = ferry_server.ftp()
    assert ftp.quit()[:3] == "221"


# ------------------------------------------------------------ simple commands

def test_noop_200(ftp):
    assert ftp.voidcmd("NOOP")[:3] == "200"


def test_syst_215(ftp):
    assert ftp.sendcmd("SYST") == "215 UNIX Type: L8"


def test_feat_lists_features(ftp):
    resp = ftp.sendcmd("FEAT")
    lines = resp.split("\n")
    assert lines[0].startswith("211-"), resp
    assert lines[-1].startswith("211 "), resp
    feats = [l.strip() for l in lines[1:-1]]
    names = {f.split(" ", 1)[0].upper() for f in feats}
    for needed in ("UTF8", "MLST", "EPSV", "SIZE", "MDTM"):
        assert needed in names, f"{needed} missing from FEAT: {feats}"
    assert "REST STREAM" in [f.upper() for f in feats], feats
    mlst = [f for f in feats if f.upper().startswith("MLST")][0]
    for fact in ("type", "size", "modify", "perm", "unique"):
        assert fact in mlst.lower(), mlst


def test_opts_utf8_on_200(ftp):
    assert ftp.sendcmd("OPTS UTF8 ON")[:3] == "200"


def test_opts_unknown_option_5xx(ftp):
    assert 500 <= code(ftp.sendcmd, "OPTS BOGUSOPTION ON") < 600


def test_help_214(ftp):
    assert ftp.sendcmd("HELP")[:3] == "214"


def test_help_command_214(ftp):
    assert ftp.sendcmd("HELP RETR")[:3] == "214"


def test_stat_211_multiline(ftp):
    resp = ftp.sendcmd("STAT")
    lines = resp.split("\n")
    assert lines[0].startswith("211-"), resp
    assert lines[-1].startswith("211 "), resp


def test_stat_path_213_listing(ferry_server, ftp):
    put(ferry_server, "report.txt", b"x" * 1234)
    resp = ftp.sendcmd("STAT report.txt")
    lines = resp.split("\n")
    assert lines[0].startswith("213-"), resp
    assert lines[-1].startswith("213 "), resp
    entries = [parse_ls(l.strip()) for l in lines[1:-1] if l.strip() and not l.strip().startswith("total")]
    assert [(e.name, e.size) for e in entries] == [("report.txt", 1234)], resp


def test_stat_dir_213_listing(ferry_server, ftp):
    put(ferry_server, "d/a.txt", b"aa")
    put(ferry_server, "d/b.txt", b"bbb")
    resp = ftp.sendcmd("STAT d")
    lines = resp.split("\n")
    assert lines[0].startswith("213-") and lines[-1].startswith("213 "), resp
    entries = {}
    for l in lines[1:-1]:
        l = l.strip()
        if l and not l.startswith("total"):
            e = parse_ls(l)
            entries[e.name] = e.size
    entries.pop(".", None)
    entries.pop("..", None)
    assert entries == {"a.txt": 2, "b.txt": 3}, resp


def test_stat_missing_path_error(ftp):
    assert code(ftp.sendcmd, "STAT nosuchfile") in (450, 550)


def test_unknown_command_502(ftp):
    assert code(ftp.sendcmd, "FOOBAR") == 502
    assert code(ftp.sendcmd, "XYZZY some args") == 502
    assert ftp.voidcmd("NOOP")[:3] == "200"


@pytest.mark.parametrize("cmd", ["DELE", "MKD", "RMD", "RNFR", "SIZE", "MDTM", "TYPE",
                                 "MODE", "STRU", "PORT", "EPRT", "REST", "CWD", "XMKD",
                                 "XRMD", "ALLO"])
def test_missing_argument_501(ftp, cmd):
    assert code(ftp.sendcmd, cmd) == 501


@pytest.mark.parametrize("cmd", ["RETR", "STOR", "APPE"])
def test_missing_argument_transfer_501(ftp, cmd):
    # Not a data transfer: the argument check must come first.
    assert code(ftp.sendcmd, cmd) == 501
    assert ftp.voidcmd("NOOP")[:3] == "200"


def test_allo(ftp):
    assert code(ftp.sendcmd, "ALLO 1000") in (200, 202)


def test_allo_bad_argument_501(ftp):
    assert code(ftp.sendcmd, "ALLO notanumber") == 501


def test_site_help_214(ftp):
    assert ftp.sendcmd("SITE HELP")[:3] == "214"


def test_site_unknown_5xx(ftp):
    assert code(ftp.sendcmd, "SITE FROBNICATE") in (500, 501, 502, 504)


# ------------------------------------------------------- before login -> 530

@pytest.mark.parametrize("cmd", ["PWD", "XPWD", "CWD /", "CDUP", "LIST", "NLST", "RETR x",
                                 "STOR x", "MKD x", "RMD x", "DELE x", "PASV", "EPSV",
                                 "SIZE x", "MDTM x", "RNFR x", "STAT", "MLSD", "MLST x",
                                 "PORT 127,0,0,1,200,10", "TYPE I", "REST 0", "SITE HELP"])
def test_before_login_530(ferry_server, cmd):
    c = ferry_server.raw()
    r = c.cmd(cmd)
    assert r.code == 530, f"{cmd}: {r}"
    # the session is still usable
    assert c.cmd("NOOP").code == 200


@pytest.mark.parametrize("cmd,expected", [("NOOP", 200), ("SYST", 215), ("FEAT", 211),
                                          ("HELP", 214), ("OPTS UTF8 ON", 200)])
def test_allowed_before_login(ferry_server, cmd, expected):
    c = ferry_server.raw()
    assert c.cmd(cmd).code == expected


def test_auth_before_login_not_530(ferry_server):
    c = ferry_server.raw()
    r = c.cmd("AUTH TLS")
    assert r.code != 530, r
    if r.code == 234:
        return  # TLS negotiated (test_ftps.py covers what follows)
    assert c.cmd("NOOP").code == 200


def test_failed_login_keeps_530(ferry_server):
    c = ferry_server.raw()
    assert c.cmd("USER alice").code == 331
    assert c.cmd("PASS bad").code == 530
    assert c.cmd("PWD").code == 530


# ------------------------------------------------------------ PWD CWD CDUP

def test_pwd_257_root(ftp):
    resp = ftp.sendcmd("PWD")
    assert resp.startswith('257 "/"'), resp


def test_xpwd_257(ftp):
    resp = ftp.sendcmd("XPWD")
    assert resp.startswith('257 "/"'), resp


def test_pwd_quotes_doubled(ferry_server, ftp):
    made = ftp.mkd('say "hi"')
    assert made in ('/say "hi"', 'say "hi"'), made
    assert (ferry_server.home() / 'say "hi"').is_dir()
    ftp.cwd('say "hi"')
    resp = ftp.sendcmd("PWD")
    assert resp.startswith('257 "/say ""hi"""'), resp
    assert ftp.pwd() == '/say "hi"'


def test_cwd_and_pwd(ferry_server, ftp):
    (ferry_server.home() / "a" / "b").mkdir(parents=True)
    assert ftp.cwd("a")[:3] == "250"
    assert ftp.pwd() == "/a"
    assert ftp.cwd("b")[:3] == "250"
    assert ftp.pwd() == "/a/b"
    assert ftp.cwd("/a")[:3] == "250"
    assert ftp.pwd() == "/a"
    assert ftp.cwd("./b/../b/")[:3] == "250"
    assert ftp.pwd() == "/a/b"


def test_xcwd(ferry_server, ftp):
    (ferry_server.home() / "x").mkdir()
    assert ftp.sendcmd("XCWD x")[:3] == "250"
    assert ftp.pwd() == "/x"


def test_cwd_missing_550(ftp):
    assert code(ftp.cwd, "nosuchdir") == 550
    assert ftp.pwd() == "/"


def test_cwd_to_file_550(ferry_server, ftp):
    put(ferry_server, "plain.txt", b"x")
    assert code(ftp.cwd, "plain.txt") == 550
    assert ftp.pwd() == "/"


@pytest.mark.parametrize("cmd", ["CDUP", "XCUP"])
def test_cdup(ferry_server, ftp, cmd):
    (ferry_server.home() / "a" / "b").mkdir(parents=True)
    ftp.cwd("/a/b")
    assert code(ftp.sendcmd, cmd) in (200, 250)
    assert ftp.pwd() == "/a"
    assert code(ftp.sendcmd, cmd) in (200, 250)
    assert ftp.pwd() == "/"


def test_cdup_at_root_stays_root(ftp):
    assert code(ftp.sendcmd, "CDUP") in (200, 250, 550)
    assert ftp.pwd() == "/"


# -------------------------------------------------------------- MKD RMD DELE

@pytest.mark.parametrize("cmd", ["MKD", "XMKD"])
def test_mkd_257(ferry_server, ftp, cmd):
    resp = ftp.sendcmd(f"{cmd} newdir")
    assert resp[:3] == "257", resp
    assert ftplib.parse257(resp) in ("/newdir", "newdir"), resp
    assert (ferry_server.home() / "newdir").is_dir()


def test_mkd_nested_path(ferry_server, ftp):
    (ferry_server.home() / "sub").mkdir()
    ftp.cwd("sub")
    assert ftp.mkd("inner") in ("/sub/inner", "inner")
    assert (ferry_server.home() / "sub" / "inner").is_dir()


def test_mkd_existing_550(ferry_server, ftp):
    (ferry_server.home() / "exists").mkdir()
    assert code(ftp.mkd, "exists") == 550


def test_mkd_missing_parent_550(ftp):
    assert code(ftp.mkd, "no/such/parent") == 550


@pytest.mark.parametrize("cmd", ["RMD", "XRMD"])
def test_rmd_250(ferry_server, ftp, cmd):
    (ferry_server.home() / "gone").mkdir()
    assert ftp.sendcmd(f"{cmd} gone")[:3] == "250"
    assert not (ferry_server.home() / "gone").exists()


def test_rmd_non_empty_550(ferry_server, ftp):
    put(ferry_server, "full/file.txt", b"data")
    assert code(ftp.rmd, "full") == 550
    assert (ferry_server.home() / "full" / "file.txt").read_bytes() == b"data"


def test_rmd_missing_550(ftp):
    assert code(ftp.rmd, "nosuchdir") == 550


def test_rmd_on_file_550(ferry_server, ftp):
    put(ferry_server, "f.txt", b"x")
    assert code(ftp.rmd, "f.txt") == 550
    assert (ferry_server.home() / "f.txt").exists()


def test_dele_250(ferry_server, ftp):
    put(ferry_server, "del.txt", b"bye")
    assert ftp.delete("del.txt")[:3] == "250"
    assert not (ferry_server.home() / "del.txt").exists()


def test_dele_missing_550(ftp):
    assert code(ftp.delete, "nosuchfile") == 550


def test_dele_directory_550(ferry_server, ftp):
    (ferry_server.home() / "adir").mkdir()
    assert code(ftp.delete, "adir") == 550
    assert (ferry_server.home() / "adir").is_dir()


# ---------------------------------------------------------------- RNFR RNTO

def test_rename_file(ferry_server, ftp):
    put(ferry_server, "old.txt", b"content")
    assert ftp.sendcmd("RNFR old.txt")[:3] == "350"
    assert ftp.sendcmd("RNTO new.txt")[:3] == "250"
    assert not (ferry_server.home() / "old.txt").exists()
    assert (ferry_server.home() / "new.txt").read_bytes() == b"content"


def test_rename_via_ftplib_into_subdir(ferry_server, ftp):
    put(ferry_server, "old.txt", b"content")
    (ferry_server.home() / "sub").mkdir()
    assert ftp.rename("old.txt", "/sub/moved.txt")[:3] == "250"
    assert (ferry_server.home() / "sub" / "moved.txt").read_bytes() == b"content"


def test_rename_directory(ferry_server, ftp):
    put(ferry_server, "d1/f", b"1")
    ftp.rename("d1", "d2")
    assert (ferry_server.home() / "d2" / "f").read_bytes() == b"1"
    assert not (ferry_server.home() / "d1").exists()


def test_rnfr_missing_550(ftp):
    assert code(ftp.sendcmd, "RNFR nosuchfile") == 550


def test_rnto_without_rnfr_503(ferry_server, ftp):
    put(ferry_server, "keep.txt", b"k")
    assert code(ftp.sendcmd, "RNTO whatever.txt") == 503
    assert not (ferry_server.home() / "whatever.txt").exists()


def test_rnto_not_immediately_after_rnfr_503(ferry_server, ftp):
    put(ferry_server, "keep.txt", b"k")
    assert ftp.sendcmd("RNFR keep.txt")[:3] == "350"
    assert ftp.voidcmd("NOOP")[:3] == "200"
    assert code(ftp.sendcmd, "RNTO other.txt") == 503
    assert (ferry_server.home() / "keep.txt").exists()
    assert not (ferry_server.home() / "other.txt").exists()


def test_rnto_into_missing_dir_fails(ferry_server, ftp):
    put(ferry_server, "keep.txt", b"k")
    assert ftp.sendcmd("RNFR keep.txt")[:3] == "350"
    assert code(ftp.sendcmd, "RNTO no/such/dir/x.txt") in (550, 553)
    assert (ferry_server.home() / "keep.txt").exists()


# ---------------------------------------------------------------- SIZE MDTM

def test_size_213(ferry_server, ftp):
    put(ferry_server, "s.bin", b"\0" * 4321)
    ftp.voidcmd("TYPE I")
    assert ftp.sendcmd("SIZE s.bin") == "213 4321"
    assert ftp.size("s.bin") == 4321


def test_size_on_dir_550(ferry_server, ftp):
    (ferry_server.home() / "d").mkdir()
    ftp.voidcmd("TYPE I")
    assert code(ftp.size, "d") == 550


def test_size_missing_550(ftp):
    ftp.voidcmd("TYPE I")
    assert code(ftp.size, "nosuch") == 550


@pytest.mark.local_only  # sets an old mtime on disk
def test_mdtm_213(ferry_server, ftp):
    put(ferry_server, "old.txt", b"x", mtime=OLD_MTIME)
    assert ftp.sendcmd("MDTM old.txt") == "213 20210304120000"


def test_mdtm_recent_file_format(ferry_server, ftp):
    p = put(ferry_server, "now.txt", b"x")
    resp = ftp.sendcmd("MDTM now.txt")
    assert resp[:4] == "213 " and len(resp) == 4 + 14 and resp[4:].isdigit(), resp
    got = calendar.timegm(time.strptime(resp[4:], "%Y%m%d%H%M%S"))
    assert abs(got - int(p.stat().st_mtime)) <= 1, (resp, p.stat().st_mtime)


def test_mdtm_missing_550(ftp):
    assert code(ftp.sendcmd, "MDTM nosuch") == 550


# -------------------------------------------------------- TYPE MODE STRU

def test_type(ftp):
    assert ftp.sendcmd("TYPE A")[:3] == "200"
    assert ftp.sendcmd("TYPE I")[:3] == "200"
    assert ftp.sendcmd("type a")[:3] == "200"


def test_type_with_format_arguments(ftp):
    # RFC 959 5.1 minimum: TYPE ASCII Non-print (the default format); RFC 1123 L 8 == I.
    assert ftp.sendcmd("TYPE A N")[:3] == "200"
    assert ftp.sendcmd("TYPE L 8")[:3] == "200"


def test_type_unsupported(ftp):
    assert code(ftp.sendcmd, "TYPE E") == 504
    assert code(ftp.sendcmd, "TYPE X") in (501, 504)
    assert ftp.voidcmd("NOOP")[:3] == "200"


def test_mode(ftp):
    assert ftp.sendcmd("MODE S")[:3] == "200"
    assert code(ftp.sendcmd, "MODE B") == 504
    assert code(ftp.sendcmd, "MODE C") == 504


def test_stru(ftp):
    assert ftp.sendcmd("STRU F")[:3] == "200"
    assert code(ftp.sendcmd, "STRU R") == 504
    assert code(ftp.sendcmd, "STRU P") == 504


# ------------------------------------------------------------ PASV / EPSV

def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_pasv_227(ferry_server, ftp):
    put(ferry_server, "one.txt", b"1")
    resp = ftp.sendcmd("PASV")
    assert resp[:3] == "227", resp
    host, port = ftplib.parse227(resp)
    assert host == "127.0.0.1", resp
    assert 1024 <= port <= 65535
    with socket.create_connection((host, port), timeout=10) as d:
        d.settimeout(10)
        assert ftp.sendcmd("NLST")[:1] == "1"
        data = _read_all(d)
    assert ftp.voidresp()[:3] == "226"
    assert data.decode().split("\r\n") == ["one.txt", ""]


def test_epsv_229(ferry_server, ftp):
    put(ferry_server, "one.txt", b"hello")
    resp = ftp.sendcmd("EPSV")
    assert resp[:3] == "229", resp
    host, port = ftplib.parse229(resp, ftp.sock.getpeername())
    with socket.create_connection((host, port), timeout=10) as d:
        d.settimeout(10)
        ftp.voidcmd("TYPE I")
        assert ftp.sendcmd("RETR one.txt")[:1] == "1"
        data = _read_all(d)
    assert ftp.voidresp()[:3] == "226"
    assert data == b"hello"


def test_epsv_1_and_unknown_proto(ftp):
    assert ftp.sendcmd("EPSV 1")[:3] == "229"
    assert code(ftp.sendcmd, "EPSV 9") == 522


def test_epsv_all_refuses_pasv_port_eprt(ferry_server, ftp):
    put(ferry_server, "one.txt", b"hello")
    assert ftp.sendcmd("EPSV ALL")[:1] == "2"
    assert 500 <= code(ftp.sendcmd, "PASV") < 600
    assert 500 <= code(ftp.sendcmd, "PORT 127,0,0,1,200,10") < 600
    assert 500 <= code(ftp.sendcmd, "EPRT |1|127.0.0.1|51210|") < 600
    # EPSV still works
    resp = ftp.sendcmd("EPSV")
    host, port = ftplib.parse229(resp, ftp.sock.getpeername())
    with socket.create_connection((host, port), timeout=10) as d:
        d.settimeout(10)
        ftp.voidcmd("TYPE I")
        assert ftp.sendcmd("RETR one.txt")[:1] == "1"
        data = _read_all(d)
    assert ftp.voidresp()[:3] == "226"
    assert data == b"hello"


def test_retr_without_pasv_or_port_425(ferry_server, ftp):
    put(ferry_server, "one.txt", b"1")
    try:
        r = ftp.sendcmd("RETR one.txt")
        if r[:1] == "1":  # 150 first is tolerable, but then it must fail with 425
            r = ftp.getmultiline()
    except (ftplib.error_temp, ftplib.error_perm) as e:
        r = str(e)
    assert r[:3] in ("425", "503"), r
    assert ftp.voidcmd("NOOP")[:3] == "200"


# ------------------------------------------------------------ PORT / EPRT

def test_active_mode_port_transfers(ferry_server, ftp):
    payload = os.urandom(300_000)
    ftp.set_pasv(False)
    assert stor_bytes(ftp, "active.bin", payload)[:3] == "226"
    assert (ferry_server.home() / "active.bin").read_bytes() == payload
    assert retr_bytes(ftp, "active.bin") == payload
    assert "active.bin" in ftp.nlst()


def test_port_reply_200(ftp):
    with socket.create_server(("127.0.0.1", 0)) as ls:
        port = ls.getsockname()[1]
        resp = ftp.sendcmd(f"PORT 127,0,0,1,{port >> 8},{port & 255}")
        assert resp[:3] == "200", resp


def test_eprt_active_transfer(ferry_server, ftp):
    put(ferry_server, "e.txt", b"eprt data")
    with socket.create_server(("127.0.0.1", 0)) as ls:
        ls.settimeout(10)
        port = ls.getsockname()[1]
        assert ftp.sendcmd(f"EPRT |1|127.0.0.1|{port}|")[:3] == "200"
        ftp.voidcmd("TYPE I")
        assert ftp.sendcmd("RETR e.txt")[:1] == "1"
        conn, _ = ls.accept()
        with conn:
            conn.settimeout(10)
            data = _read_all(conn)
    assert ftp.voidresp()[:3] == "226"
    assert data == b"eprt data"


def test_port_privileged_port_refused(ftp):
    assert 500 <= code(ftp.sendcmd, "PORT 127,0,0,1,0,21") < 600
    assert 500 <= code(ftp.sendcmd, "PORT 127,0,0,1,0,80") < 600


def test_port_other_host_refused(ftp):
    assert 500 <= code(ftp.sendcmd, "PORT 10,1,2,3,19,136") < 600


def test_eprt_other_host_refused(ftp):
    assert 500 <= code(ftp.sendcmd, "EPRT |1|10.1.2.3|5000|") < 600


def test_eprt_privileged_port_refused(ftp):
    assert 500 <= code(ftp.sendcmd, "EPRT |1|127.0.0.1|21|") < 600


def test_eprt_unknown_protocol_522(ftp):
    assert code(ftp.sendcmd, "EPRT |9|127.0.0.1|5000|") == 522


@pytest.mark.parametrize("arg", ["127,0,0,1,300,1", "127,0,0,1", "a,b,c,d,e,f", "127,0,0,1,-1,5"])
def test_port_malformed_501(ftp, arg):
    assert code(ftp.sendcmd, f"PORT {arg}") == 501


@pytest.mark.parametrize("arg", ["|1|127.0.0.1|", "garbage", "|1|127.0.0.1|99999|", "|1|not-an-ip|5000|"])
def test_eprt_malformed_501(ftp, arg):
    assert code(ftp.sendcmd, f"EPRT {arg}") == 501


# ------------------------------------------------------------ listings

@pytest.mark.local_only  # sets an old mtime on disk
def test_list_format(ferry_server, ftp):
    put(ferry_server, "small.txt", b"12345")
    put(ferry_server, "old.bin", b"\0" * 70000, mtime=OLD_MTIME)
    (ferry_server.home() / "subdir").mkdir()
    entries = list_entries(ftp)
    assert set(entries) == {"small.txt", "old.bin", "subdir"}
    assert entries["small.txt"].type == "-" and entries["small.txt"].size == 5
    assert entries["old.bin"].size == 70000
    assert entries["subdir"].type == "d"
    old = entries["old.bin"]
    assert (old.month, old.day) == ("Mar", 4), old.line
    assert old.timeyear == "2021", old.line
    recent = entries["small.txt"]
    assert ":" in recent.timeyear, recent.line


def test_list_path_argument(ferry_server, ftp):
    put(ferry_server, "d/inner.txt", b"abc")
    entries = list_entries(ftp, "d")
    assert {n: e.size for n, e in entries.items()} == {"inner.txt": 3}
    assert ftp.pwd() == "/"


def test_list_single_file(ferry_server, ftp):
    put(ferry_server, "f.txt", b"abcdef")
    entries = list_entries(ftp, "f.txt")
    assert list(entries) == ["f.txt"] and entries["f.txt"].size == 6


def test_list_ignores_ls_flags(ferry_server, ftp):
    # Many clients send "LIST -a" / "LIST -la"; these must not be treated as paths.
    put(ferry_server, "f.txt", b"abc")
    assert set(list_entries(ftp, "-la")) == {"f.txt"}


def test_list_empty_dir(ferry_server, ftp):
    (ferry_server.home() / "empty").mkdir()
    assert list_entries(ftp, "empty") == {}


def test_list_missing_550(ftp):
    lines = []
    assert code(ftp.retrlines, "LIST nosuchdir", lines.append) in (450, 550)
    assert lines == []


def test_nlst(ferry_server, ftp):
    put(ferry_server, "a.txt", b"a")
    put(ferry_server, "b.txt", b"b")
    (ferry_server.home() / "c").mkdir()
    assert sorted(ftp.nlst()) == ["a.txt", "b.txt", "c"]


def test_nlst_path(ferry_server, ftp):
    put(ferry_server, "c/x.txt", b"x")
    names = ftp.nlst("c")
    assert names in (["x.txt"], ["c/x.txt"]), names


def test_nlst_missing_550(ftp):
    assert code(ftp.nlst, "nosuchdir") in (450, 550)


@pytest.mark.local_only  # sets an old mtime on disk
def test_mlsd_facts(ferry_server, ftp):
    put(ferry_server, "f1.txt", b"hello", mtime=OLD_MTIME)
    put(ferry_server, "f2.txt", b"world!")
    (ferry_server.home() / "dd").mkdir()
    entries = mlsd_entries(ftp)
    assert set(entries) == {"f1.txt", "f2.txt", "dd"}
    f1 = entries["f1.txt"]
    assert f1["type"] == "file"
    assert f1["size"] == "5"
    assert f1["modify"] == "20210304120000"
    assert "perm" in f1 and "r" in f1["perm"], f1
    assert entries["f2.txt"]["size"] == "6"
    assert entries["dd"]["type"] == "dir"
    assert "perm" in entries["dd"]
    uniques = {e["unique"] for e in entries.values()}
    assert len(uniques) == 3, entries


def test_mlsd_path_and_missing(ferry_server, ftp):
    put(ferry_server, "sub/in.txt", b"12")
    entries = mlsd_entries(ftp, "sub")
    assert set(entries) == {"in.txt"} and entries["in.txt"]["size"] == "2"
    assert code(lambda: list(ftp.mlsd("nosuchdir"))) in (450, 550)


def test_mlsd_on_file_fails(ferry_server, ftp):
    put(ferry_server, "f.txt", b"x")
    assert code(lambda: list(ftp.mlsd("f.txt"))) in (501, 550)


@pytest.mark.local_only  # sets an old mtime on disk
def test_mlst_250(ferry_server, ftp):
    put(ferry_server, "m.txt", b"abc", mtime=OLD_MTIME)
    resp = ftp.sendcmd("MLST m.txt")
    lines = resp.split("\n")
    assert lines[0].startswith("250-"), resp
    assert lines[-1].startswith("250 "), resp
    assert len(lines) == 3, resp
    fact_line = lines[1]
    assert fact_line.startswith(" "), repr(fact_line)
    facts_s, name = fact_line[1:].split(" ", 1)
    assert name in ("m.txt", "/m.txt"), name
    facts = dict(f.split("=", 1) for f in facts_s.rstrip(";").split(";"))
    facts = {k.lower(): v for k, v in facts.items()}
    assert facts["type"] == "file" and facts["size"] == "3"
    assert facts["modify"] == "20210304120000"
    assert "perm" in facts and "unique" in facts


def test_mlst_dir_and_missing(ferry_server, ftp):
    (ferry_server.home() / "dx").mkdir()
    resp = ftp.sendcmd("MLST dx")
    assert resp[:4] == "250-" and "type=dir" in resp.lower(), resp
    assert code(ftp.sendcmd, "MLST nosuch") == 550


# ------------------------------------------------------------ transfers

def test_retr(ferry_server, ftp):
    payload = os.urandom(100_000)
    put(ferry_server, "r.bin", payload)
    out = io.BytesIO()
    resp = ftp.retrbinary("RETR r.bin", out.write)
    assert resp[:3] == "226"
    assert out.getvalue() == payload


@pytest.mark.local_only  # the page cache
def test_retr_of_a_file_not_in_the_page_cache(ferry_server, ftp):
    """A file the kernel has to read from the disk (dropped from the page cache first) is sent
    from the blocking pool rather than by a worker thread waiting on the disk: same bytes,
    from the start and from a REST offset that is not page-aligned."""
    payload = os.urandom(24 * 1024 * 1024 + 123)
    path = ferry_server.home() / "cold.bin"
    with open(path, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    for rest in (None, 5_000_001):
        with open(path, "rb") as f:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        got = retr_bytes(ftp, "cold.bin", rest=rest)
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(payload[rest or 0:]).hexdigest()


def test_retr_empty_file(ferry_server, ftp):
    put(ferry_server, "empty", b"")
    assert retr_bytes(ftp, "empty") == b""


def test_retr_missing_550(ftp):
    assert code(retr_bytes, ftp, "nosuch.bin") == 550
    assert ftp.voidcmd("NOOP")[:3] == "200"


def test_retr_directory_550(ferry_server, ftp):
    (ferry_server.home() / "d").mkdir()
    assert code(retr_bytes, ftp, "d") == 550


def test_stor(ferry_server, ftp):
    payload = os.urandom(123_457)
    assert stor_bytes(ftp, "up.bin", payload)[:3] == "226"
    assert (ferry_server.home() / "up.bin").read_bytes() == payload


def test_stor_overwrites(ferry_server, ftp):
    put(ferry_server, "up.bin", b"x" * 1000)
    stor_bytes(ftp, "up.bin", b"short")
    assert (ferry_server.home() / "up.bin").read_bytes() == b"short"


def test_stor_into_missing_dir_fails(ferry_server, ftp):
    assert code(stor_bytes, ftp, "nodir/up.bin", b"x") in (550, 553)
    assert not (ferry_server.home() / "nodir").exists()


def test_stor_onto_directory_fails(ferry_server, ftp):
    (ferry_server.home() / "d").mkdir()
    assert code(stor_bytes, ftp, "d", b"x") in (550, 553)
    assert (ferry_server.home() / "d").is_dir()


def test_appe(ferry_server, ftp):
    put(ferry_server, "log.txt", b"line1\n")
    assert stor_bytes(ftp, "log.txt", b"line2\n", cmd="APPE")[:3] == "226"
    assert (ferry_server.home() / "log.txt").read_bytes() == b"line1\nline2\n"


def test_appe_creates(ferry_server, ftp):
    stor_bytes(ftp, "fresh.txt", b"new", cmd="APPE")
    assert (ferry_server.home() / "fresh.txt").read_bytes() == b"new"


def test_stou_unique_names(ferry_server, ftp):
    home = ferry_server.home()
    put(ferry_server, "existing.txt", b"keep me")
    ftp.voidcmd("TYPE I")
    before = {p.name for p in home.iterdir()}
    p1, f1, _ = manual_transfer(ftp, "STOU", upload=b"first")
    p2, f2, _ = manual_transfer(ftp, "STOU", upload=b"second")
    assert f1[:3] in ("226", "250") and f2[:3] in ("226", "250"), (f1, f2)
    new = {p.name for p in home.iterdir()} - before
    assert len(new) == 2, new
    contents = {n: (home / n).read_bytes() for n in new}
    assert sorted(contents.values()) == [b"first", b"second"]
    assert (home / "existing.txt").read_bytes() == b"keep me"
    # RFC 1123 4.1.2.9: the reply names the file so the client can find it.
    for name, replies in ((n, p1 + f1) for n, c in contents.items() if c == b"first"):
        assert name in replies, (name, p1, f1)
    for name, replies in ((n, p2 + f2) for n, c in contents.items() if c == b"second"):
        assert name in replies, (name, p2, f2)


def test_rest_retr(ferry_server, ftp):
    payload = os.urandom(200_000)
    put(ferry_server, "r.bin", payload)
    ftp.voidcmd("TYPE I")
    assert ftp.sendcmd("REST 12345")[:3] == "350"
    # ftplib order: PASV, REST, RETR
    assert retr_bytes(ftp, "r.bin", rest=150_001) == payload[150_001:]
    # the marker is reset after the transfer
    assert retr_bytes(ftp, "r.bin") == payload


def test_rest_at_eof_gives_empty(ferry_server, ftp):
    put(ferry_server, "r.bin", b"0123456789")
    assert retr_bytes(ftp, "r.bin", rest=10) == b""


def test_rest_bad_argument_501(ftp):
    assert code(ftp.sendcmd, "REST abc") == 501
    assert code(ftp.sendcmd, "REST -5") == 501


def test_rest_stor_resume(ferry_server, ftp):
    payload = os.urandom(300_000)
    stor_bytes(ftp, "resume.bin", payload[:100_000])
    assert (ferry_server.home() / "resume.bin").stat().st_size == 100_000
    stor_bytes(ftp, "resume.bin", payload[100_000:], rest=100_000)
    assert (ferry_server.home() / "resume.bin").read_bytes() == payload


def _abort_sequence(ftp: ftplib.FTP, first: str) -> list[str]:
    """Collect replies after ABOR until a NOOP's 200 shows the stream is in sync."""
    replies = [first]
    if first[:3] == "426":
        replies.append(ftp.getmultiline())
    ftp.putcmd("NOOP")
    while True:
        r = ftp.getmultiline()
        replies.append(r)
        if r[:3] == "200":
            return replies
        assert len(replies) < 6, replies


def _start_big_retr(ferry_server, ftp, size=64 << 20):
    p = ferry_server.home() / "big.bin"
    with p.open("wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(size >> 20):
            f.write(chunk)
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("RETR big.bin")
    conn.settimeout(10)
    got = 0
    while got < 256 * 1024:
        chunk = conn.recv(65536)
        assert chunk, "data connection closed early"
        got += len(chunk)
    return conn


def _check_usable_after_abort(ferry_server, ftp):
    assert ftp.voidcmd("NOOP")[:3] == "200"
    put(ferry_server, "small.txt", b"still works")
    assert retr_bytes(ftp, "small.txt") == b"still works"
    assert "small.txt" in ftp.nlst()


def test_abor_during_retr_with_ftplib_abort(ferry_server, ftp):
    """ftplib.FTP.abort() sends 'ABOR\\r\\n' with MSG_OOB (last byte urgent)."""
    conn = _start_big_retr(ferry_server, ftp)
    try:
        try:
            first = ftp.abort()
        except socket.timeout:
            pytest.fail("no reply to ftplib's abort() within 10 s (ftplib sends ABOR with "
                        "MSG_OOB; the '\\n' is urgent data, lost unless SO_OOBINLINE is set)")
        replies = _abort_sequence(ftp, first)
    finally:
        conn.close()
    codes = [r[:3] for r in replies]
    # 64 MiB cannot fit in loopback socket buffers, so the transfer was in progress.
    assert codes in (["426", "226", "200"], ["426", "225", "200"]), replies
    _check_usable_after_abort(ferry_server, ftp)


def test_abor_during_retr_plain(ferry_server, ftp):
    conn = _start_big_retr(ferry_server, ftp)
    try:
        ftp.sock.sendall(b"ABOR\r\n")
        first = ftp.getmultiline()
        replies = _abort_sequence(ftp, first)
    finally:
        conn.close()
    codes = [r[:3] for r in replies]
    assert codes in (["426", "226", "200"], ["426", "225", "200"]), replies
    _check_usable_after_abort(ferry_server, ftp)


def test_abor_after_finished_transfer(ferry_server, ftp):
    put(ferry_server, "small.bin", b"abc")
    assert retr_bytes(ftp, "small.bin") == b"abc"
    assert code(ftp.sendcmd, "ABOR") in (225, 226)
    assert ftp.voidcmd("NOOP")[:3] == "200"
    assert retr_bytes(ftp, "small.bin") == b"abc"


def test_client_closes_data_early_then_session_ok(ferry_server, ftp):
    conn = _start_big_retr(ferry_server, ftp, size=32 << 20)
    conn.close()
    r = ftp.getmultiline()
    assert r[:3] in ("426", "451", "226"), r
    _check_usable_after_abort(ferry_server, ftp)


# ------------------------------------------------------------ TYPE A

def test_type_a_upload_converts_crlf(ferry_server, ftp):
    resp = ftp.storlines("STOR a.txt", io.BytesIO(b"a\r\nb\r\n"))
    assert resp[:3] == "226"
    assert (ferry_server.home() / "a.txt").read_bytes() == b"a\nb\n"
    lines = []
    ftp.retrlines("RETR a.txt", lines.append)
    assert lines == ["a", "b"]


def test_type_a_download_uses_crlf(ferry_server, ftp):
    put(ferry_server, "u.txt", b"x\ny\n")
    ftp.voidcmd("TYPE A")
    _, final, data = manual_transfer(ftp, "RETR u.txt")
    assert final[:3] == "226"
    assert data == b"x\r\ny\r\n"


def test_type_i_keeps_crlf_bytes(ferry_server, ftp):
    payload = b"a\r\nb\r\n\r\x00\n"
    stor_bytes(ftp, "bin.dat", payload)
    assert (ferry_server.home() / "bin.dat").read_bytes() == payload
    assert retr_bytes(ftp, "bin.dat") == payload


@pytest.mark.big
def test_binary_roundtrip_256mib(ferry_server, ftp, tmp_path):
    """BIG: 256 MiB of random bytes up and down; sha256 of upload, download and disk agree."""
    size = 256 << 20
    src = tmp_path / "random.bin"
    h_src = hashlib.sha256()
    with open(src, "wb") as f:
        for _ in range(size >> 22):
            chunk = os.urandom(4 << 20)
            h_src.update(chunk)
            f.write(chunk)
    with open(src, "rb") as f:
        resp = ftp.storbinary("STOR big.bin", f, blocksize=1 << 20)
    assert resp[:3] == "226"
    on_disk = ferry_server.home() / "big.bin"
    assert on_disk.stat().st_size == size
    h_disk = hashlib.sha256()
    with on_disk.open("rb") as f:
        for chunk in iter(lambda: f.read(4 << 20), b""):
            h_disk.update(chunk)
    assert h_disk.hexdigest() == h_src.hexdigest()
    h_down = hashlib.sha256()
    count = [0]

    def sink(b):
        h_down.update(b)
        count[0] += len(b)

    assert ftp.retrbinary("RETR big.bin", sink, blocksize=1 << 20)[:3] == "226"
    assert count[0] == size
    assert h_down.hexdigest() == h_src.hexdigest()
    assert ftp.size("big.bin") == size


# ------------------------------------------------------------ UTF-8 names

def test_utf8_names(ferry_server, ftp):
    assert ftp.encoding == "utf-8"
    payload = "contenu 🚀 数据\n".encode() + os.urandom(5000)
    assert ftp.mkd("数据") in ("/数据", "数据")
    stor_bytes(ftp, "数据/🚀 report.txt", payload)
    home = ferry_server.home()
    assert (home / "数据" / "🚀 report.txt").read_bytes() == payload
    assert "数据" in ftp.nlst()
    assert set(list_entries(ftp)) == {"数据"}
    entries = list_entries(ftp, "数据")
    assert set(entries) == {"🚀 report.txt"}
    assert entries["🚀 report.txt"].size == len(payload)
    names = ftp.nlst("数据")
    assert names in (["🚀 report.txt"], ["数据/🚀 report.txt"]), names
    m = mlsd_entries(ftp, "数据")
    assert set(m) == {"🚀 report.txt"} and m["🚀 report.txt"]["size"] == str(len(payload))
    assert retr_bytes(ftp, "数据/🚀 report.txt") == payload
    ftp.cwd("数据")
    assert ftp.pwd() == "/数据"
    assert retr_bytes(ftp, "🚀 report.txt") == payload
    ftp.voidcmd("TYPE I")
    assert ftp.size("🚀 report.txt") == len(payload)


def test_utf8_name_created_on_disk_by_server(ferry_server, ftp):
    put(ferry_server, "ñandú é.txt", b"x")
    assert ftp.nlst() == ["ñandú é.txt"]
    assert retr_bytes(ftp, "ñandú é.txt") == b"x"


def test_name_with_spaces_and_leading_space(ferry_server, ftp):
    stor_bytes(ftp, "two  spaces.txt", b"1")
    assert (ferry_server.home() / "two  spaces.txt").read_bytes() == b"1"


# ------------------------------------------------------------ isolation

def test_two_users_isolated(ferry_server):
    alice = ferry_server.connect("alice")
    bob = ferry_server.connect("bob")
    stor_bytes(alice, "secret.txt", b"alice's secret")
    alice.mkd("private")
    stor_bytes(alice, "private/deep.txt", b"deep secret")
    stor_bytes(bob, "bobs.txt", b"bob data")
    assert sorted(alice.nlst()) == ["private", "secret.txt"]
    assert bob.nlst() == ["bobs.txt"]
    assert set(list_entries(bob)) == {"bobs.txt"}
    for path in ["secret.txt", "/secret.txt", "../alice/secret.txt", "/../alice/secret.txt",
                 "../../homes/alice/secret.txt", "../../../homes/alice/secret.txt",
                 "private/deep.txt", "../alice/private/deep.txt",
                 str(ferry_server.home("alice") / "secret.txt")]:
        got = []
        c = code(bob.retrbinary, f"RETR {path}", got.append)
        assert c == 550, (path, c)
        assert got == [], path
    assert code(bob.cwd, "../alice") == 550 or bob.pwd() == "/"
    assert bob.nlst() == ["bobs.txt"]
    # bob storing the same name does not touch alice's file
    stor_bytes(bob, "secret.txt", b"bob's own")
    assert retr_bytes(alice, "secret.txt") == b"alice's secret"
    assert retr_bytes(bob, "secret.txt") == b"bob's own"
    assert (ferry_server.home("bob") / "secret.txt").read_bytes() == b"bob's own"


@pytest.mark.local_only  # directory modes on disk
def test_homes_on_disk(ferry_server):
    for user in ("alice", "bob"):
        h = ferry_server.home(user)
        assert h.is_dir(), h
        assert (h.stat().st_mode & 0o777) == 0o700, oct(h.stat().st_mode)


# ------------------------------------------------------------ extra interop

def test_type_a_upload_crlf_split_across_packets(ferry_server, ftp):
    lines = [("line %05d " % i + "x" * (i % 97)).encode() for i in range(4000)]
    wire = b"".join(l + b"\r\n" for l in lines)
    ftp.voidcmd("TYPE A")
    host, port = ftp.makepasv()
    with socket.create_connection((host, port), timeout=10) as conn:
        assert ftp.sendcmd("STOR split.txt")[:1] == "1"
        # odd chunk sizes so that many CR/LF pairs straddle two segments
        pos = 0
        step = 1
        while pos < len(wire):
            n = 4093 if step % 2 else 1
            conn.sendall(wire[pos:pos + n])
            pos += n
            step += 1
            if step % 50 == 0:
                time.sleep(0.001)
    assert ftp.voidresp()[:3] == "226"
    assert (ferry_server.home() / "split.txt").read_bytes() == b"".join(l + b"\n" for l in lines)


def test_type_a_download_large(ferry_server, ftp):
    body = b"".join(b"row %d\n" % i for i in range(200_000))
    put(ferry_server, "big.txt", body)
    got = []
    ftp.retrlines("RETR big.txt", got.append)
    assert got == [b"row %d" % i for i in range(200_000)] or \
        [g.encode() for g in got] == [b"row %d" % i for i in range(200_000)]


def test_concurrent_transfers(ferry_server):
    import threading
    payloads = {i: os.urandom(3_000_000 + i) for i in range(6)}
    errors = []

    def worker(i):
        try:
            user = "alice" if i % 2 == 0 else "bob"
            f = ferry_server.connect(user)
            stor_bytes(f, f"c{i}.bin", payloads[i])
            assert retr_bytes(f, f"c{i}.bin") == payloads[i]
        except Exception as e:  # reported below
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "transfer thread hung"
    assert errors == []
    for i, data in payloads.items():
        user = "alice" if i % 2 == 0 else "bob"
        assert (ferry_server.home(user) / f"c{i}.bin").read_bytes() == data


def test_pasv_twice_uses_latest(ferry_server, ftp):
    put(ferry_server, "p.txt", b"latest")
    _, port1 = ftplib.parse227(ftp.sendcmd("PASV"))
    _, port2 = ftplib.parse227(ftp.sendcmd("PASV"))
    with socket.create_connection(("127.0.0.1", port2), timeout=10) as d:
        d.settimeout(10)
        assert ftp.sendcmd("RETR p.txt")[:1] == "1"
        data = _read_all(d)
    assert ftp.voidresp()[:3] == "226"
    assert data == b"latest"


def test_port_connect_refused_425(ferry_server, ftp):
    put(ferry_server, "p.txt", b"x")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # nothing listens on that port now
    assert ftp.sendcmd(f"PORT 127,0,0,1,{port >> 8},{port & 255}")[:3] == "200"
    try:
        r = ftp.sendcmd("RETR p.txt")
        if r[:1] == "1":
            r = ftp.getmultiline()
    except (ftplib.error_temp, ftplib.error_perm) as e:
        r = str(e)
    assert r[:3] == "425", r
    assert ftp.voidcmd("NOOP")[:3] == "200"


def test_large_directory_listing(ferry_server, ftp):
    home = ferry_server.home()
    names = {f"file-{i:05d}.dat" for i in range(3000)}
    for n in names:
        (home / n).write_bytes(b"")
    assert set(ftp.nlst()) == names
    assert set(list_entries(ftp)) == names
    assert set(mlsd_entries(ftp)) == names


def test_opts_mlst_selects_facts(ferry_server, ftp):
    # RFC 3659 7.9: OPTS MLST selects the facts that MLST/MLSD report.
    put(ferry_server, "f.txt", b"abc")
    resp = ftp.sendcmd("OPTS MLST type;size;")
    assert resp[:3] == "200"
    assert resp.rstrip().lower().endswith("type;size;"), resp
    lines = []
    ftp.retrlines("MLSD", lines.append)
    facts = {l.split(" ", 1)[0] for l in lines}
    assert facts == {"type=file;size=3;"}, lines
