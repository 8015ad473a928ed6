"""A pyftpdlib server for ferry's integration tests: a third-party server, not ours.

Prints "PORT <n>" on stdout once listening on 127.0.0.1 (ephemeral port), then serves until
killed. Options add what the tests need:

  --tls CERT KEY          explicit FTPS (AUTH TLS, PBSZ, PROT) with this certificate
  --hash {none,hash,xsha} offer HASH + RANG (draft-bryan-ftpext-hash) or only legacy XSHA256
  --mutate-after-send {flip,append}
                          after a RETR completes, change the file on disk (same size with
                          flip, longer with append): the copy the client got is now stale,
                          and only a verification after the transfer can notice
"""

import argparse
import hashlib
import os
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer

try:
    from pyftpdlib.handlers import TLS_FTPHandler
except ImportError:  # pyopenssl missing: only plain FTP
    TLS_FTPHandler = None


def digest_of(path, algo, start=0, end=None):
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        f.seek(start)
        left = None if end is None else end - start + 1
        while True:
            n = 1 << 20 if left is None else min(1 << 20, left)
            if n == 0:
                break
            chunk = f.read(n)
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    return h.hexdigest()


ALGOS = {"SHA-256": "sha256", "MD5": "md5"}


def make_handler(base, opts):
    class Handler(base):
        proto_cmds = dict(base.proto_cmds)
        hash_algo = "SHA-256"
        rang = None

        if opts.hash == "hash":
            proto_cmds["HASH"] = dict(perm="r", auth=True, arg=True, help="Syntax: HASH <SP> path")
            proto_cmds["RANG"] = dict(perm=None, auth=True, arg=True, help="Syntax: RANG <SP> start end")
        if opts.hash in ("hash", "xsha"):
            proto_cmds["XSHA256"] = dict(perm="r", auth=True, arg=True, help="Syntax: XSHA256 <SP> path")

        def __init__(self, *args, **kwargs):
            base.__init__(self, *args, **kwargs)
            self._base_feats = list(getattr(self, "_extra_feats", []))

        def ftp_FEAT(self, line):
            extra = []
            if opts.hash == "hash":
                marks = ["SHA-256", "MD5"]
                extra.append("HASH " + ";".join(m + ("*" if m == self.hash_algo else "") for m in marks))
                extra.append("RANG STREAM")
            if opts.hash in ("hash", "xsha"):
                extra.append("XSHA256")
            self._extra_feats = list(self._base_feats) + extra
            return base.ftp_FEAT(self, line)

        def ftp_OPTS(self, line):
            parts = line.split(" ", 1)
            if parts[0].upper() == "HASH" and opts.hash == "hash":
                if len(parts) == 1:
                    self.respond("200 " + self.hash_algo)
                elif parts[1].upper() in ALGOS:
                    self.hash_algo = parts[1].upper()
                    self.respond("200 " + self.hash_algo)
                else:
                    self.respond("501 unknown algorithm")
                return
            return base.ftp_OPTS(self, line)

        def ftp_RANG(self, line):
            try:
                start, end = (int(x) for x in line.split())
            except ValueError:
                self.respond("501 RANG start end")
                return
            if start == 1 and end == 0:
                self.rang = None
                self.respond("350 Restarting at 0. Range reset.")
            elif end < start:
                self.respond("501 bad range")
            else:
                self.rang = (start, end)
                self.respond("350 Restarting at %d. End byte range at %d." % (start, end))

        def ftp_HASH(self, path):
            if not os.path.isfile(path):
                self.respond("550 not a file")
                return
            size = os.path.getsize(path)
            start, end = self.rang if self.rang else (0, max(size - 1, 0))
            self.rang = None
            hexd = digest_of(path, ALGOS[self.hash_algo], start, end)
            self.respond("213 %s %d-%d %s %s" % (self.hash_algo, start, end, hexd, self.fs.fs2ftp(path)))

        def ftp_XSHA256(self, path):
            if not os.path.isfile(path):
                self.respond("550 not a file")
                return
            self.respond("250 " + digest_of(path, "sha256"))

        def on_file_sent(self, file):
            if opts.mutate_after_send == "flip":
                with open(file, "r+b") as f:
                    b = f.read(1)
                    f.seek(0)
                    f.write(bytes([(b[0] ^ 0xFF) if b else 0]))
            elif opts.mutate_after_send == "append":
                with open(file, "ab") as f:
                    f.write(b"changed on the server")

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--user", default="alice")
    p.add_argument("--password", default="alice-pw")
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--hash", choices=["none", "hash", "xsha"], default="none")
    p.add_argument("--mutate-after-send", choices=["flip", "append"])
    opts = p.parse_args()

    auth = DummyAuthorizer()
    auth.add_user(opts.user, opts.password, opts.root, perm="elradfmwMT")
    if opts.tls:
        if TLS_FTPHandler is None:
            sys.exit("pyopenssl is required for --tls (pip install pyopenssl)")
        base = TLS_FTPHandler
    else:
        base = FTPHandler
    handler = make_handler(base, opts)
    if opts.tls:
        handler.certfile = opts.tls[0]
        handler.keyfile = opts.tls[1]
    handler.authorizer = auth
    handler.passive_ports = None
    handler.permit_foreign_addresses = False
    handler.banner = "pyftpdlib test server ready."
    # With sendfile the kernel may still be sending file pages when on_file_sent changes the
    # file, so the client would receive the change too; plain reads keep the test honest.
    handler.use_sendfile = False
    server = FTPServer(("127.0.0.1", 0), handler)
    print("PORT %d" % server.address[1], flush=True)
    server.serve_forever(timeout=0.5, handle_exit=True)


if __name__ == "__main__":
    main()
