"""Helpers shared by the interop tests: a raw control-channel client, reply
code extraction for ftplib, an `ls -l` parser and manual data transfers."""

from __future__ import annotations

import ftplib
import io
import re
import socket
import time
from dataclasses import dataclass

PASSWORDS = {"alice": "alice-S3cret pw", "bob": "b0b-Secret!"}


class ConnectionClosed(Exception):
    pass


@dataclass
class Reply:
    code: int
    lines: list[str]  # raw text lines without CRLF, first line included

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def __str__(self) -> str:
        return self.text


class RawClient:
    """Minimal control-connection client: exact bytes out, parsed replies in."""

    def __init__(self, host: str, port: int, timeout: float = 10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, line: str | bytes) -> Reply:
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.send(line + b"\r\n")
        return self.reply()

    def readline(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionClosed(f"connection closed; pending bytes {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def reply(self) -> Reply:
        first = self.readline().decode("utf-8", errors="replace")
        if len(first) < 3 or not first[:3].isdigit():
            raise AssertionError(f"malformed reply line {first!r}")
        code = int(first[:3])
        lines = [first]
        if first[3:4] == "-":
            while True:
                line = self.readline().decode("utf-8", errors="replace")
                lines.append(line)
                if line[:3] == first[:3] and line[3:4] == " ":
                    break
        return Reply(code, lines)

    def login(self, user: str, password: str) -> None:
        r = self.cmd(f"USER {user}")
        assert r.code == 331, f"USER {user}: {r}"
        r = self.cmd(f"PASS {password}")
        assert r.code == 230, f"PASS: {r}"

    def wait_closed(self, timeout: float = 5) -> bytes:
        """Read until EOF (or reset); returns whatever arrived.  Fails on timeout."""
        self.sock.settimeout(timeout)
        data = self.buf
        self.buf = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return data
                data += chunk
        except ConnectionResetError:
            return data
        except socket.timeout:
            raise AssertionError(f"connection still open after {timeout}s; got {data!r}")

    def pasv(self) -> tuple[str, int]:
        r = self.cmd("PASV")
        assert r.code == 227, f"PASV: {r}"
        host, port = ftplib.parse227(r.lines[0])
        return host, port


def code(fn, *args, **kw) -> int:
    """Run an ftplib call and return the reply code it ended with."""
    try:
        resp = fn(*args, **kw)
    except (ftplib.error_perm, ftplib.error_temp, ftplib.error_reply) as e:
        return int(str(e)[:3])
    if isinstance(resp, str) and resp[:3].isdigit():
        return int(resp[:3])
    raise AssertionError(f"no reply code in {resp!r}")


def err(fn, *args, **kw) -> str:
    """Run an ftplib call that must fail; return the error reply text."""
    try:
        resp = fn(*args, **kw)
    except (ftplib.error_perm, ftplib.error_temp, ftplib.error_reply) as e:
        return str(e)
    raise AssertionError(f"expected an error reply, got success: {resp!r}")


def retr_bytes(ftp: ftplib.FTP, path: str, rest: int | None = None) -> bytes:
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {path}", out.write, rest=rest)
    return out.getvalue()


def stor_bytes(ftp: ftplib.FTP, path: str, data: bytes, cmd: str = "STOR",
               rest: int | None = None) -> str:
    return ftp.storbinary(f"{cmd} {path}", io.BytesIO(data), rest=rest)


def manual_transfer(ftp: ftplib.FTP, cmd: str, upload: bytes | None = None,
                    timeout: float = 10) -> tuple[str, str, bytes]:
    """PASV transfer done by hand so the 1xx reply text is visible.

    Returns (preliminary reply, final reply, downloaded bytes)."""
    host, port = ftp.makepasv()
    conn = socket.create_connection((host, port), timeout=timeout)
    try:
        prelim = ftp.sendcmd(cmd)
        assert prelim[:1] == "1", f"{cmd}: expected 1xx, got {prelim!r}"
        data = b""
        if upload is not None:
            conn.sendall(upload)
        else:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
    finally:
        conn.close()
    final = ftp.voidresp()
    return prelim, final, data


LS_RE = re.compile(
    r"^(?P<type>[-dlcbps])(?P<perm>[-rwxsStT]{9})[+.@]?\s+(?P<links>\d+)\s+(?P<owner>\S+)\s+"
    r"(?P<group>\S+)\s+(?P<size>\d+)\s+(?P<month>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s+"
    r"(?P<timeyear>\d{1,2}:\d{2}|\d{4})\s(?P<name>.+)$"
)


@dataclass
class LsEntry:
    type: str
    perm: str
    size: int
    month: str
    day: int
    timeyear: str
    name: str
    line: str


def parse_ls(line: str) -> LsEntry:
    m = LS_RE.match(line)
    assert m, f"not an ls -l line: {line!r}"
    return LsEntry(m["type"], m["perm"], int(m["size"]), m["month"], int(m["day"]),
                   m["timeyear"], m["name"], line)


def list_entries(ftp: ftplib.FTP, path: str | None = None) -> dict[str, LsEntry]:
    lines: list[str] = []
    if path is None:
        ftp.retrlines("LIST", lines.append)
    else:
        ftp.retrlines(f"LIST {path}", lines.append)
    entries = {}
    for line in lines:
        if line.startswith("total "):
            continue
        e = parse_ls(line)
        if e.name in (".", ".."):
            continue
        entries[e.name] = e
    return entries


def mlsd_entries(ftp: ftplib.FTP, path: str = "") -> dict[str, dict]:
    return {name: facts for name, facts in ftp.mlsd(path)
            if facts.get("type") not in ("cdir", "pdir") and name not in (".", "..")}


def wait_for_size(path, at_least, timeout=20):
    """Waits until the file at `path` holds at least `at_least` bytes; returns its size."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size >= at_least:
            return path.stat().st_size
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {at_least} bytes")


def cert_path(srv):
    """The server's self-signed certificate (made at its first start)."""
    return srv.data_dir / "tls" / "cert.pem"


def tls_context(srv):
    """A client context trusting the server's certificate. One context per server: Python only
    resumes sessions made by the same context."""
    import ssl
    ctx = getattr(srv, "_tls_ctx", None)
    if ctx is None:
        ctx = ssl.create_default_context(cafile=str(cert_path(srv)))
        srv._tls_ctx = ctx
    return ctx


class ReuseFTP_TLS(ftplib.FTP_TLS):
    """ftplib with what FileZilla, lftp, curl and rclone do: data connections resume a TLS
    session, by default the control connection's own (`reuse_from` picks another connection's,
    as rclone does when it shares one session cache between its connections, or as a thief
    would with its own)."""

    reuse_from = None

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            owner = self.reuse_from or self
            conn = self.context.wrap_socket(conn, server_hostname=self.host,
                                            session=owner.sock.session)
        return conn, size


def upload(ftp, name, data, cmd="STOR"):
    """Uploads; a refusal mid-transfer raises ftplib.Error with the server's reply, even when the
    server has already reset the data connection (it stops reading at once on 552/452)."""
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd(f"{cmd} {name}")
    try:
        conn.sendall(data)
    except OSError:
        pass  # the reply on the control connection says why
    finally:
        conn.close()
    return ftp.voidresp()
