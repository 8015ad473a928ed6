"""FTPS (RFC 4217) against the real ferryd: explicit and implicit TLS with curl, lftp and
ftplib, data-session reuse, the plaintext-login policy and anti-hammering.

Certificates are verified, never skipped: every client trusts exactly the self-signed
certificate ferryd created in its data dir on first start (pinned, as a user would)."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import socket
import ssl
import subprocess
import time

import ftplib
import pytest

from ftphelp import PASSWORDS, ReuseFTP_TLS, cert_path, tls_context

TOOL_TIMEOUT = 60


def wait_for_log(srv, text, timeout=5.0) -> str:
    """The server logs a failed transfer just after the client sees it fail."""
    deadline = time.monotonic() + timeout
    while True:
        log = srv.log_tail(200)
        if text in log or time.monotonic() > deadline:
            return log


def tls_login(srv, user="alice", cls=ReuseFTP_TLS, source=None) -> ftplib.FTP_TLS:
    ftp = cls(context=tls_context(srv), timeout=10)
    ftp.connect("localhost", srv.port, timeout=10, source_address=source)
    ftp.login(user, PASSWORDS[user])
    ftp.prot_p()
    srv._clients.append(ftp)
    return ftp


def run(args, timeout=TOOL_TIMEOUT, **kw):
    return subprocess.run(args, capture_output=True, timeout=timeout, **kw)


def need(tool):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed; scripts/test.sh installs it", pytrace=False)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_first_start_prints_the_certificate_fingerprint(ferry_server):
    line = next(l for l in ferry_server.stdout_lines if l.startswith("tls certificate:"))
    printed = re.search(r"sha256=([0-9A-F:]+)", line).group(1)
    der = ssl.PEM_cert_to_DER_cert(cert_path(ferry_server).read_text())
    assert printed == ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    key_mode = (ferry_server.data_dir / "tls" / "key.pem").stat().st_mode
    assert key_mode & 0o077 == 0, "private key readable by others"


def test_feat_advertises_ftps(ftp):
    feat = ftp.sendcmd("FEAT")
    for f in (" AUTH TLS", " PBSZ", " PROT"):
        assert f in feat.splitlines(), feat


def test_ftplib_tls_list_upload_download_byte_exact(ferry_server):
    ftp = tls_login(ferry_server)
    assert ftp.sock.version() in ("TLSv1.2", "TLSv1.3")
    data = os.urandom(4 * 1024 * 1024 + 17)
    ftp.storbinary("STOR secret.bin", io.BytesIO(data))
    out = io.BytesIO()
    ftp.retrbinary("RETR secret.bin", out.write)
    assert sha256(out.getvalue()) == sha256(data)
    assert (ferry_server.home() / "secret.bin").read_bytes() == data
    names = ftp.nlst()
    assert "secret.bin" in names
    assert ftp.voidcmd("NOOP").startswith("200")


def test_upload_data_connection_gets_nothing_to_read(ferry_server):
    """On an upload's TLS data connection the server sends nothing after the handshake (no
    TLS 1.3 session tickets: the data connection resumed the control session and needs none).
    A client that only sends never reads such bytes, and closing a socket with unread bytes
    sends a reset, which throws away the end of the upload still queued at the server: lftp's
    uploads failed with 426 that way whenever the server read slower than lftp sent."""
    ftp = tls_login(ferry_server)
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("STOR quiet.bin")
    assert conn.version() == "TLSv1.3", conn.version()
    time.sleep(0.3)                                  # tickets would have arrived by now
    raw = socket.socket(fileno=os.dup(conn.fileno()))   # the TCP socket under the TLS
    try:
        pending = raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        pending = b""
    finally:
        raw.close()
    data = os.urandom(1_000_000)
    conn.sendall(data)
    conn.unwrap().close()
    assert ftp.voidresp().startswith("226")
    assert pending == b"", "the server sent bytes the uploading client never reads"
    assert (ferry_server.home() / "quiet.bin").read_bytes() == data


def test_data_connection_without_session_reuse_is_refused(ferry_server):
    # Stock ftplib makes a full handshake on each data connection: refused, as with vsftpd's
    # require_ssl_reuse; the control connection stays usable.
    (ferry_server.home() / "f.txt").write_bytes(b"hello")
    ftp = tls_login(ferry_server, cls=ftplib.FTP_TLS)
    with pytest.raises((ssl.SSLError, ftplib.Error, OSError, EOFError)):
        ftp.retrbinary("RETR f.txt", lambda b: None)
    srv_log = wait_for_log(ferry_server, "session reuse required")
    assert "session reuse required" in srv_log, srv_log


def test_data_connection_resuming_another_clients_session_is_refused(ferry_server):
    """The reuse check binds the data connection to the user's own control sessions: another
    user from the same address, with a valid session of their own, cannot take over the
    transfer."""
    (ferry_server.home() / "f.txt").write_bytes(b"private")
    victim = tls_login(ferry_server, "alice")
    thief = tls_login(ferry_server, "bob")
    # Let both control sessions receive their TLS 1.3 tickets.
    victim.voidcmd("NOOP")
    thief.voidcmd("NOOP")
    victim.reuse_from = thief
    with pytest.raises((ssl.SSLError, ftplib.Error, OSError, EOFError)):
        victim.retrbinary("RETR f.txt", lambda b: None)
    # The owner's own session works.
    victim2 = tls_login(ferry_server, "alice")
    out = io.BytesIO()
    victim2.retrbinary("RETR f.txt", out.write)
    assert out.getvalue() == b"private"


@pytest.mark.parametrize("ferry_server", [{"tls_require_session_reuse": False}], indirect=True)
def test_reuse_can_be_switched_off_for_clients_that_cannot(ferry_server):
    (ferry_server.home() / "f.txt").write_bytes(b"plain ftplib")
    ftp = tls_login(ferry_server, cls=ftplib.FTP_TLS)
    out = io.BytesIO()
    ftp.retrbinary("RETR f.txt", out.write)
    assert out.getvalue() == b"plain ftplib"


def test_curl_explicit_ftps_with_pinned_certificate(ferry_server, tmp_path):
    need("curl")
    data = os.urandom(3 * 1024 * 1024 + 5)
    src = tmp_path / "up.bin"
    src.write_bytes(data)
    base = f"ftp://alice:{PASSWORDS['alice'].replace(' ', '%20')}@localhost:{ferry_server.port}"
    common = ["curl", "-sS", "--ssl-reqd", "--cacert", str(cert_path(ferry_server))]
    r = run(common + ["-T", str(src), f"{base}/up.bin"])
    assert r.returncode == 0, r.stderr
    dst = tmp_path / "down.bin"
    r = run(common + ["-o", str(dst), f"{base}/up.bin"])
    assert r.returncode == 0, r.stderr
    assert dst.read_bytes() == data
    r = run(common + [f"{base}/"])
    assert r.returncode == 0 and "up.bin" in r.stdout.decode(), r.stderr
    # Without the pinned CA the self-signed certificate is rejected (curl exit 60).
    r = run(["curl", "-sS", "--ssl-reqd", f"{base}/"])
    assert r.returncode == 60, (r.returncode, r.stderr)


def test_curl_implicit_ftps(start_server, tmp_path):
    need("curl")
    srv = start_server(implicit_tls_listen="127.0.0.1:0")
    line = next(l for l in srv.stdout_lines if l.startswith("ferryd implicit ftps on "))
    iport = int(line.rsplit(":", 1)[1])
    data = os.urandom(1024 * 1024)
    (srv.home() / "imp.bin").write_bytes(data)
    dst = tmp_path / "imp.bin"
    url = f"ftps://alice:{PASSWORDS['alice'].replace(' ', '%20')}@localhost:{iport}/imp.bin"
    r = run(["curl", "-sS", "--cacert", str(cert_path(srv)), "-o", str(dst), url])
    assert r.returncode == 0, r.stderr
    assert dst.read_bytes() == data
    # Plain FTP spoken to the implicit port gets no greeting in clear.
    with socket.create_connection(("127.0.0.1", iport), timeout=10) as s:
        s.settimeout(10)
        s.sendall(b"USER alice\r\n")
        try:
            got = s.recv(100)
        except (ConnectionResetError, socket.timeout):
            got = b""
        assert not got.startswith(b"220"), got


def test_lftp_forced_tls_mirror_round_trip(ferry_server, tmp_path):
    need("lftp")
    tree = tmp_path / "tree"
    (tree / "données" / "sub").mkdir(parents=True)
    files = {
        "données/résumé.txt": b"bonjour\n" * 100,
        "données/sub/big.bin": os.urandom(2 * 1024 * 1024),
        "empty.txt": b"",
    }
    for rel, content in files.items():
        (tree / rel).write_bytes(content)
    back = tmp_path / "back"
    script = (
        f"set ssl:ca-file {cert_path(ferry_server)}; set ssl:verify-certificate yes; "
        "set ftp:ssl-force true; set ftp:ssl-protect-data true; set ftp:ssl-protect-list true; "
        "set net:max-retries 1; set net:timeout 10; "
        f"open -u alice,\"{PASSWORDS['alice']}\" ftp://localhost:{ferry_server.port}; "
        f"mirror -R {tree} up; mirror up {back}; quit"
    )
    r = run(["lftp", "-c", script])
    assert r.returncode == 0, (r.stdout, r.stderr)
    for rel, content in files.items():
        assert (ferry_server.home() / "up" / rel).read_bytes() == content, rel
        assert (back / rel).read_bytes() == content, rel


@pytest.mark.parametrize("ferry_server", [{"plaintext_logins_from": ["127.0.0.1/32"]}],
                         indirect=True)
def test_plaintext_login_refused_outside_allowed_networks(ferry_server):
    # 127.0.0.2 is outside 127.0.0.1/32: a password in clear is refused before it is sent.
    ftp = ftplib.FTP(timeout=10)
    ftp.connect("127.0.0.1", ferry_server.port, source_address=("127.0.0.2", 0))
    ferry_server._clients.append(ftp)
    with pytest.raises(ftplib.error_perm) as e:
        ftp.login("alice", PASSWORDS["alice"])
    assert str(e.value).startswith("530") and "AUTH TLS" in str(e.value), e.value
    # The same address over TLS logs in.
    tls = tls_login(ferry_server, source=("127.0.0.2", 0))
    assert tls.pwd() == "/"
    # 127.0.0.1 itself may still log in in clear.
    assert ferry_server.connect("alice").pwd() == "/"


@pytest.mark.parametrize("ferry_server", [{"tls": "required"}], indirect=True)
def test_tls_required_refuses_clear_logins_and_clear_data(ferry_server):
    raw = ferry_server.raw()
    r = raw.cmd("USER alice")
    assert r.code == 530 and "AUTH TLS" in r.text, r
    ftp = ReuseFTP_TLS(context=tls_context(ferry_server), timeout=10)
    ftp.connect("localhost", ferry_server.port)
    ferry_server._clients.append(ftp)
    ftp.login("alice", PASSWORDS["alice"])
    with pytest.raises(ftplib.error_perm) as e:
        ftp.nlst()  # still PROT C
    assert str(e.value).startswith("521"), e.value
    with pytest.raises(ftplib.error_perm) as e:
        ftp.voidcmd("PROT C")
    assert str(e.value).startswith("521"), e.value
    ftp.prot_p()
    ftp.nlst()


def test_ftps_command_sequence_errors(ferry_server):
    raw = ferry_server.raw()
    assert raw.cmd("PBSZ 0").code == 503
    assert raw.cmd("PROT P").code == 503
    assert raw.cmd("AUTH KERBEROS").code == 504
    ftp = tls_login(ferry_server)
    with pytest.raises(ftplib.error_perm) as e:
        ftp.voidcmd("CCC")
    assert str(e.value).startswith("534"), e.value
    with pytest.raises(ftplib.error_perm) as e:
        ftp.voidcmd("PROT S")
    assert str(e.value).startswith("536"), e.value
    assert ftp.voidcmd("NOOP").startswith("200")


@pytest.mark.parametrize("ferry_server", [{"max_login_failures": 4, "lockout_secs": 120}],
                         indirect=True)
def test_hammering_is_slowed_then_locked_out_while_others_log_in(ferry_server):
    attacker = ("127.0.0.2", 0)
    replies, times = [], []
    for guess in range(3):
        ftp = ftplib.FTP(timeout=20)
        ftp.connect("127.0.0.1", ferry_server.port, source_address=attacker)
        ferry_server._clients.append(ftp)
        start = time.monotonic()
        with pytest.raises(ftplib.error_perm) as e:
            ftp.login("alice", f"wrong-{guess}")
        times.append(time.monotonic() - start)
        replies.append(str(e.value))
    assert all(r.startswith("530") for r in replies), replies
    assert times[2] > times[0] + 0.2, f"failures should slow down: {times}"
    # Unknown user: the same reply, and at least as slow (never a faster path).
    ftp = ftplib.FTP(timeout=20)
    ftp.connect("127.0.0.1", ferry_server.port, source_address=attacker)
    ferry_server._clients.append(ftp)
    with pytest.raises(ftplib.Error) as e:
        ftp.login("nosuchuser", "whatever")
    # The 4th failure locks the address: 421 instead of 530.
    assert str(e.value).startswith("421"), e.value
    # New connections from the locked address are refused with 421 at once.
    with socket.create_connection(("127.0.0.1", ferry_server.port), timeout=10,
                                  source_address=attacker) as s:
        s.settimeout(10)
        assert s.recv(200).startswith(b"421")
    # Meanwhile the attacked user and another user log in from elsewhere without delay.
    start = time.monotonic()
    assert ferry_server.connect("alice").pwd() == "/"
    assert ferry_server.connect("bob").pwd() == "/"
    assert time.monotonic() - start < 3
    assert "locked out" in wait_for_log(ferry_server, "locked out")


def test_unknown_user_and_wrong_password_look_the_same(ferry_server):
    texts = []
    for user, pw in (("alice", "nope"), ("ghost", "nope")):
        ftp = ferry_server.ftp()
        with pytest.raises(ftplib.error_perm) as e:
            ftp.login(user, pw)
        texts.append(str(e.value))
    assert texts[0] == texts[1], texts
