"""Harness for the ferryd interop suite (Python ftplib against the real binary).

Every test gets its own data dir, its own users (alice, bob) and its own ferryd
process listening on an ephemeral loopback port, so tests cannot see each
other's files.  The binary is never built here: run `cargo build -p
ferry-server` first (or point FERRYD at a binary).

Storage backends: a module that sets `BACKENDS = ("local", "s3")` runs each of
its tests against both (ids `[local]` and `[s3]`), except tests marked
`local_only` (they look at the disk itself: part files, links, permissions).
On S3 each server gets its own key prefix in the bucket of the S3 server the
environment names (S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
S3_BUCKET: `scripts/seaweedfs.sh start DIR` writes them to DIR/env), and
`srv.home(user)` is an `S3Path`, a pathlib-like view of the user's objects,
so a test seeds and checks files the same way on both.
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import os
import queue
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from ftphelp import PASSWORDS, RawClient

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_DEADLINE = 20.0
USER_ADD_TIMEOUT = 120.0
LISTEN_RE = re.compile(r"^ferryd listening on (\S+):(\d+)$")

# Defaults written to every config file; tests override per server.  A short
# grace keeps teardown fast if a test leaves a client connected.
DEFAULT_CONFIG = {"shutdown_grace_secs": 2, "log": "info"}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "big: moves hundreds of MiB over loopback (binary round trip)"
    )
    config.addinivalue_line(
        "markers", "local_only: looks at the local disk itself; not run on other backends"
    )


def pytest_generate_tests(metafunc):
    """Runs the tests of a module with `BACKENDS` once per storage backend."""
    if "backend" not in metafunc.fixturenames:
        return
    if not hasattr(metafunc.module, "BACKENDS"):
        return
    backends = tuple(metafunc.module.BACKENDS)
    if metafunc.definition.get_closest_marker("local_only"):
        backends = ("local",)
    metafunc.parametrize("backend", backends)


@pytest.fixture
def backend() -> str:
    """The storage backend of the servers a test starts (parametrized by `BACKENDS`)."""
    return "local"


S3_ENV = ("S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_BUCKET")


def s3_environment() -> dict[str, str]:
    missing = [k for k in S3_ENV if not os.environ.get(k)]
    if missing:
        pytest.fail(f"S3 tests need an S3 server; {', '.join(missing)} not set. Start SeaweedFS "
                    "with `scripts/seaweedfs.sh start DIR` and `set -a; . DIR/env; set +a` "
                    "(scripts/test.sh does both)", pytrace=False)
    return {k: os.environ[k] for k in S3_ENV}


_S3_CLIENT = None


def s3_client():
    global _S3_CLIENT
    if _S3_CLIENT is None:
        import boto3
        from botocore.config import Config
        env = s3_environment()
        _S3_CLIENT = boto3.client(
            "s3", endpoint_url=env["S3_ENDPOINT"], region_name="us-east-1",
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            # Checksums only where S3 requires them: newer botocore sends bodies as aws-chunked
            # with a checksum trailer, which SeaweedFS waits on for an empty body.
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required",
                          connect_timeout=5, read_timeout=30))
        # SeaweedFS never answers a PUT sent with `Expect: 100-continue` into a directory that
        # has a marker object; ferryd's client does not send it, so neither does this one.
        _S3_CLIENT.meta.events.register("before-sign.s3.PutObject", _no_expect_continue)
    return _S3_CLIENT


def _no_expect_continue(request, **_):
    if "Expect" in request.headers:
        del request.headers["Expect"]


class S3Stat:
    def __init__(self, size: int, mtime: float):
        self.st_size = size
        self.st_mtime = mtime


class S3Writer(io.BytesIO):
    """`S3Path.open("wb")`: the object is put when the file is closed."""

    def __init__(self, path: "S3Path"):
        super().__init__()
        self.path = path

    def close(self) -> None:
        if not self.closed:
            self.path.write_bytes(self.getvalue())
        super().close()


class S3Path:
    """A file or directory of a user's home in the bucket, as pathlib shows one on disk:
    directories are key prefixes with a marker object (`dir/`), as ferryd makes them."""

    def __init__(self, bucket: str, key: str, root: str | None = None):
        self.bucket, self.key = bucket, key.rstrip("/")
        # The home's own key: `mkdir(parents=True)` makes markers up to it, not above.
        self.root = self.key if root is None else root

    def __truediv__(self, name: str) -> "S3Path":
        return S3Path(self.bucket, f"{self.key}/{name}", self.root)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    __repr__ = __str__

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def parent(self) -> "S3Path":
        if self.key == self.root:
            return self
        return S3Path(self.bucket, self.key.rpartition("/")[0], self.root)

    def _head(self):
        from botocore.exceptions import ClientError
        try:
            return s3_client().head_object(Bucket=self.bucket, Key=self.key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def write_bytes(self, data: bytes) -> int:
        s3_client().put_object(Bucket=self.bucket, Key=self.key, Body=data)
        return len(data)

    def write_text(self, text: str) -> int:
        return self.write_bytes(text.encode())

    def read_bytes(self) -> bytes:
        from botocore.exceptions import ClientError
        try:
            return s3_client().get_object(Bucket=self.bucket, Key=self.key)["Body"].read()
        except ClientError as e:
            raise FileNotFoundError(str(self)) from e

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def is_file(self) -> bool:
        return self._head() is not None

    def is_dir(self) -> bool:
        out = s3_client().list_objects_v2(Bucket=self.bucket, Prefix=self.key + "/", MaxKeys=1)
        return out.get("KeyCount", 0) > 0

    def exists(self) -> bool:
        return self.is_file() or self.is_dir()

    def stat(self) -> S3Stat:
        head = self._head()
        if head is None:
            raise FileNotFoundError(str(self))
        return S3Stat(head["ContentLength"], head["LastModified"].timestamp())

    def open(self, mode: str = "rb"):
        if mode == "wb":
            return S3Writer(self)
        if mode == "rb":
            from botocore.exceptions import ClientError
            try:
                body = s3_client().get_object(Bucket=self.bucket, Key=self.key)["Body"]
            except ClientError as e:
                raise FileNotFoundError(str(self)) from e
            return contextlib.closing(body)
        raise ValueError(f"S3Path.open: mode {mode!r}")

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        if self.is_dir() and not exist_ok:
            raise FileExistsError(str(self))
        if self.key == self.root:
            return  # the home: always there
        parent = self.key.rpartition("/")[0]
        if parent.startswith(self.root + "/"):
            if parents:
                S3Path(self.bucket, parent, self.root).mkdir(parents=True, exist_ok=True)
            elif not S3Path(self.bucket, parent, self.root).is_dir():
                raise FileNotFoundError(str(self))
        s3_client().put_object(Bucket=self.bucket, Key=self.key + "/", Body=b"")

    def unlink(self) -> None:
        s3_client().delete_object(Bucket=self.bucket, Key=self.key)

    def usage(self) -> tuple[int, int]:
        """Bytes and objects below this directory (markers left out), plus the bytes of the
        parts of its unfinished uploads: what ferryd counts for a quota."""
        total, files = 0, 0
        prefix = self.key + "/"
        paginator = s3_client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                if not o["Key"].endswith("/"):
                    total += o["Size"]
                    files += 1
        uploads = s3_client().list_multipart_uploads(Bucket=self.bucket, Prefix=prefix)
        for u in uploads.get("Uploads", []):
            parts = s3_client().list_parts(Bucket=self.bucket, Key=u["Key"],
                                           UploadId=u["UploadId"])
            total += sum(p["Size"] for p in parts.get("Parts", []))
        return total, files

    def rglob(self, pattern: str = "*"):
        """Everything below (pattern "*" only): files and directories."""
        assert pattern == "*", pattern
        seen = set()
        prefix = self.key + "/"
        paginator = s3_client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                rel = o["Key"][len(prefix):].rstrip("/")
                parts = rel.split("/")
                for i in range(1, len(parts) + 1):
                    sub = "/".join(parts[:i])
                    if sub and sub not in seen:
                        seen.add(sub)
                        yield S3Path(self.bucket, f"{self.key}/{sub}", self.root)

    def iterdir(self):
        paginator = s3_client().get_paginator("list_objects_v2")
        prefix = self.key + "/"
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            for p in page.get("CommonPrefixes", []):
                yield S3Path(self.bucket, p["Prefix"], self.root)
            for o in page.get("Contents", []):
                if o["Key"] != prefix:
                    yield S3Path(self.bucket, o["Key"], self.root)


def ferryd_binary() -> Path:
    env = os.environ.get("FERRYD")
    path = Path(env) if env else REPO_ROOT / "target" / "debug" / "ferryd"
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"ferryd binary not found or not executable at {path}; "
            "run `cargo build -p ferry-server` in the repo root (or set FERRYD=/path/to/ferryd)",
            pytrace=False,
        )
    return path


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"unsupported TOML value {v!r}")


def write_config(path: Path, cfg: dict) -> None:
    """Keys, then tables (a dict value is a `[table]`)."""
    keys = "".join(f"{k} = {toml_value(v)}\n" for k, v in cfg.items() if not isinstance(v, dict))
    tables = "".join(f"\n[{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in t.items())
                     for name, t in cfg.items() if isinstance(t, dict))
    path.write_text(keys + tables)


def run_cli(binary: Path, args: list[str], stdin: str | None = None, cwd: Path | None = None,
            timeout: float = USER_ADD_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(binary), *args],
        input=stdin.encode() if stdin is not None else None,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        cwd=cwd,
    )


class FerryServer:
    """One running ferryd process plus helpers to talk to it."""

    def __init__(self, binary: Path, root: Path, users: dict[str, str], config: dict,
                 user_args: dict[str, list[str]] | None = None, backend: str = "local"):
        self.binary = binary
        self.backend = backend
        if backend == "s3":
            env = s3_environment()
            # A prefix of its own: servers share the bucket, never each other's files.
            self.s3_prefix = f"t-{uuid.uuid4().hex[:12]}"
            self.s3_bucket = env["S3_BUCKET"]
            config = {"storage": "s3", **config, "s3": {
                "endpoint": env["S3_ENDPOINT"], "bucket": env["S3_BUCKET"],
                "prefix": self.s3_prefix, "access_key_id": env["AWS_ACCESS_KEY_ID"],
                "secret_access_key": env["AWS_SECRET_ACCESS_KEY"], "part_size_mib": 5,
                **config.get("s3", {})}}
        self.root = root
        self.data_dir = root / "data"
        self.config_path = root / "ferry.toml"
        self.log_path = root / "ferryd.stderr.log"
        self.users = dict(users)
        self.user_args = dict(user_args or {})
        self.config = {**DEFAULT_CONFIG, **config}
        self.proc: subprocess.Popen | None = None
        self.host = ""
        self.port = 0
        self.stdout_lines: list[str] = []
        self._lines: queue.Queue = queue.Queue()
        self._clients: list = []
        self._log_file = None

    # --- lifecycle -------------------------------------------------------
    def add_users(self) -> None:
        for name, pw in self.users.items():
            r = run_cli(self.binary,
                        ["--data-dir", str(self.data_dir), "user", "add", name, "--password-stdin",
                         *self.user_args.get(name, [])],
                        stdin=pw + "\n", cwd=self.root)
            if r.returncode != 0:
                pytest.fail(f"`ferryd user add {name}` failed (exit {r.returncode}):\n"
                            f"stdout: {r.stdout.decode(errors='replace')}\n"
                            f"stderr: {r.stderr.decode(errors='replace')}", pytrace=False)

    def start(self) -> None:
        # A restart must not see the previous process's end-of-output marker.
        self._lines = queue.Queue()
        write_config(self.config_path, self.config)
        self._log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(self.binary), "--data-dir", str(self.data_dir), "--config", str(self.config_path),
             "serve", "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log_file,
            cwd=self.root,
        )
        # The pump gets this start's queue: a previous process's pump, still draining, must
        # not put its end-of-output marker where this start waits for its line.
        threading.Thread(target=self._pump_stdout, args=(self.proc, self._lines),
                         daemon=True).start()
        deadline = time.monotonic() + STARTUP_DEADLINE
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                pytest.fail(f"ferryd did not print 'ferryd listening on HOST:PORT' within "
                            f"{STARTUP_DEADLINE:.0f}s; stdout so far: {self.stdout_lines!r}\n"
                            f"stderr tail:\n{self.log_tail()}", pytrace=False)
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                rc = self.proc.wait(timeout=5)
                pytest.fail(f"ferryd exited (code {rc}) before listening; stdout: "
                            f"{self.stdout_lines!r}\nstderr tail:\n{self.log_tail()}", pytrace=False)
            m = LISTEN_RE.match(line)
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
                return

    def _pump_stdout(self, proc: subprocess.Popen, lines: queue.Queue) -> None:
        # Keep draining stdout for the life of the process so it can never
        # block on a full pipe.
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            self.stdout_lines.append(line)
            lines.put(line)
        lines.put(None)

    def stop(self) -> int | None:
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        self._clients.clear()
        rc = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # this PID only
            try:
                rc = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait(timeout=10)
        elif self.proc is not None:
            rc = self.proc.returncode
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return rc

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    # --- clients ---------------------------------------------------------
    def home(self, user: str = "alice"):
        """The user's home: a `Path` on local storage, an `S3Path` on S3."""
        if self.backend == "s3":
            return S3Path(self.s3_bucket, f"{self.s3_prefix}/homes/{user}")
        return self.data_dir / "homes" / user

    def wait_for_upload(self, name: str, at_least: int, user: str = "alice",
                        timeout: float = 20) -> int:
        """Waits until the running upload to `name` (an overwrite, on disk) has stored what it
        can of `at_least` bytes: on disk the part file has them all; on S3, where only whole
        parts are stored, its multipart upload exists and holds every whole part of them.
        Returns the bytes stored."""
        if self.backend != "s3":
            from ftphelp import wait_for_size
            return wait_for_size(self.home(user) / f".{name}.ferry-part", at_least, timeout)
        part = self.config["s3"]["part_size_mib"] << 20
        want = at_least // part * part
        key = f"{self.s3_prefix}/homes/{user}/{name}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            uploads = [u for u in s3_client().list_multipart_uploads(
                Bucket=self.s3_bucket, Prefix=key).get("Uploads", []) if u["Key"] == key]
            if uploads:
                parts = s3_client().list_parts(Bucket=self.s3_bucket, Key=key,
                                               UploadId=uploads[-1]["UploadId"])
                stored = sum(p["Size"] for p in parts.get("Parts", []))
                if stored >= want:
                    return stored
            time.sleep(0.05)
        raise AssertionError(f"the upload of {key} never stored {want} bytes")

    @property
    def homes(self) -> dict[str, Path]:
        return {u: self.home(u) for u in self.users}

    def ftp(self, timeout: float = 10) -> ftplib.FTP:
        """Connected but not logged in."""
        ftp = ftplib.FTP(timeout=timeout)
        ftp.connect(self.host, self.port, timeout=timeout)
        self._clients.append(ftp)
        return ftp

    def connect(self, user: str = "alice", password: str | None = None,
                timeout: float = 10) -> ftplib.FTP:
        ftp = self.ftp(timeout=timeout)
        ftp.login(user, password if password is not None else self.users[user])
        return ftp

    def raw(self, user: str | None = None, timeout: float = 10) -> RawClient:
        """Raw control connection; greeting consumed; logged in when user given."""
        c = RawClient(self.host, self.port, timeout=timeout)
        self._clients.append(c)
        greet = c.reply()
        assert greet.code == 220, f"greeting: {greet}"
        if user is not None:
            c.login(user, self.users[user])
        return c


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for srv in getattr(item, "_ferry_servers", []):
            rep.sections.append((f"ferryd stderr tail (port {srv.port})", srv.log_tail()))


@pytest.fixture
def start_server(request, tmp_path, backend):
    """Factory: start_server(users=None, user_args=None, **config) -> FerryServer.

    users defaults to alice and bob; user_args adds flags to `user add NAME`
    (e.g. {"carol": ["--quota", "1000"]}); config keys go to the TOML file."""
    binary = ferryd_binary()
    servers: list[FerryServer] = []
    request.node._ferry_servers = servers

    def start(users: dict[str, str] | None = None, user_args: dict[str, list[str]] | None = None,
              **config) -> FerryServer:
        root = tmp_path / f"srv{len(servers)}"
        root.mkdir()
        srv = FerryServer(binary, root, PASSWORDS if users is None else users, config, user_args,
                          backend)
        servers.append(srv)
        srv.add_users()
        srv.start()
        return srv

    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture
def ferry_server(start_server, request):
    """A default server; indirect parametrization passes a config dict."""
    cfg = getattr(request, "param", None) or {}
    return start_server(**cfg)


@pytest.fixture
def ftp(ferry_server) -> ftplib.FTP:
    """alice, logged in."""
    return ferry_server.connect("alice")
