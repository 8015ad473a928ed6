#!/usr/bin/env python3
"""extra.py - the measures the peer kit's measure.py lacks (stdlib only, loopback only).

usage:
  extra.py HOST PORT [--user bench --password benchpass] --label NAME --measures LIST
           [--root DIR] [--pid PID] [--reps 3] [--json FILE] [--cacert PEM] [options]

Measures (--measures, comma separated; run in this order):
  idle10k  --sessions (10000) logged-in idle sessions held at once by one selectors-based
           client (sliding window of --batch connects/logins in flight). Server PSS/RSS
           before and after, KiB per session; while they are held: one new login (time)
           and a RETR of a --retr-mib (100) MiB file (time, MB/s) must work. Measure it
           on a freshly started server (heap re-use hides growth otherwise).
  hash     HASH <big> (draft-bryan-ftpext-hash; XSHA256 if HASH is refused) of the cached
           --big-name file vs `sha256sum` of the same file on disk   [MB/s, 1 MB = 1e6 B]
  mlsd     MLSD of a directory of --list-n (10000) files: time from the command to the
           226 reply, data read to EOF                                 [s]
  list     the same with LIST (for servers without MLSD, i.e. vsftpd)  [s]
  connect  connect + read the 220 greeting + close, --conn-n (2000) times split over
           --conn-workers (4) forked clients                          [connections/s]
  ftps     RETR of --big-name over explicit FTPS (AUTH TLS, PROT P): curl --ssl-reqd
           --cacert PEM -> /dev/null                                   [MB/s]
  retr     plain RETR of --big-name with curl, as the kit's measure a  [MB/s]
  stor     plain STOR of --data/big.bin with curl, as the kit's measure b (DELEted after)
           retr/stor/ftps report two rates: over curl's time_total (the kit's definition)
           and over the data phase only (time_total - time_pretransfer): curl 7.88 can
           stall ~200 ms before it opens the data connection when the EPSV reply is
           already there after its send (seen with fast servers), which the first includes.
  retr-raw plain RETR of --big-name by a raw-socket client that reads 128 KiB at a time, as
           iperf3's receiver does: data phase (RETR sent -> 226 read) [MB/s]. curl 7.88 reads
           16 KiB at a time and is the slower end of the kit's RETR; this shows the server's
           own pace next to iperf3's.
  retr-libcurl, stor-libcurl
           retr/stor with a current libcurl instead of the curl tool: bench/libcurl_xfer.py
           run by --libcurl-python (a python with pycurl; bench/run.sh makes a venv), which
           connects the data connection at once (no 200 ms stall), so its time_total rate
           is the kit's definition without the old client's stall.

--root is the user's home on local disk: the listing directory, the --retr-mib file and
(if missing) the --big-name file (copied from --data/big.bin) are created there directly.
hash/mlsd/list/connect/ftps run --warmup (1) discarded rep(s) first, then --reps.
Everything is bounded: socket timeouts, curl --max-time, per-measure deadlines.
"""
import argparse, errno, ftplib, ipaddress, json, multiprocessing as mp, os, re, resource
import selectors, shutil, socket, statistics, subprocess, sys, time

OP_TIMEOUT = 30
LIBCURL_XFER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libcurl_xfer.py")
CURL_W = "%{size_download} %{size_upload} %{time_pretransfer} %{time_total}"
TICK = os.sysconf("SC_CLK_TCK")
LIST_DIR = "bench_list10k"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def summarize(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "all": xs}


# ----------------------------------------------------------------- server process
def find_listener_pid(port):
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True,
                         text=True, timeout=10).stdout
    pids = sorted({int(p) for p in re.findall(r"pid=(\d+)", out)})
    return pids[0] if pids else None


def tree(root):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                s = open(f"/proc/{d}/stat").read()
                kids.setdefault(int(s[s.rindex(")") + 2:].split()[1]), []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def proc_info(root):
    """Summed over the process tree: procs, rss/pss KiB, open fds, threads, CPU s."""
    n = rss = pss = fds = threads = 0
    cpu = 0.0
    for p in tree(root):
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
            s = open(f"/proc/{p}/stat").read()
            f = s[s.rindex(")") + 2:].split()
            cpu += (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / TICK
            threads += int(f[17])
            fds += len(os.listdir(f"/proc/{p}/fd"))
            n += 1
        except (OSError, ValueError, IndexError):
            pass
    return {"procs": n, "rss_kib": rss, "pss_kib": pss, "fds": fds, "threads": threads,
            "cpu_s": round(cpu, 2)}


# ----------------------------------------------------------------------- FTP helpers
def reply_complete(buf):
    """(code, text, rest) once buf holds one complete reply (RFC 959 multi-line), else None."""
    if b"\r\n" not in buf and b"\n" not in buf:
        return None
    lines = buf.split(b"\n")
    first = lines[0]
    if len(first) < 4:
        return (None, first, b"") if len(lines) > 1 else None
    code = first[:3]
    if first[3:4] != b"-":
        return code, first.strip(), b"\n".join(lines[1:])
    for i, line in enumerate(lines[1:-1], 1):
        if line[:3] == code and line[3:4] == b" ":
            return code, b"\n".join(lines[:i + 1]).strip(), b"\n".join(lines[i + 1:])
    return None


def ftp_login(a):
    f = ftplib.FTP(timeout=OP_TIMEOUT)
    f.connect(a.host, a.port)
    f.login(a.user, a.password)
    return f


def ftp_url(a, path):
    return f"ftp://{a.host}:{a.port}/{path}"


def curl(args, timeout, client=None):
    """Runs curl, or with `client` (a python with pycurl) bench/libcurl_xfer.py, which takes
    the same -o/-T/--user/--max-time options and prints what `-w CURL_W` prints."""
    cmd = [client, LIBCURL_XFER] if client else ["curl", "-sS", "-w", CURL_W]
    r = subprocess.run(cmd + ["--max-time", str(timeout)] + args,
                       capture_output=True, text=True, timeout=timeout + 30)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[-1]} rc={r.returncode}: {r.stderr.strip()[-300:]}")
    return r.stdout, r.stderr


def cache_file(path):
    subprocess.run(["cat", path], stdout=subprocess.DEVNULL, timeout=300, check=True)


def ensure_file(path, size, src=None):
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    log(f"creating {path} ({size >> 20} MiB)")
    tmp = path + ".tmp"
    if src and os.path.exists(src) and os.path.getsize(src) >= size:
        with open(src, "rb") as i, open(tmp, "wb") as o:
            left = size
            while left:
                b = i.read(min(left, 1 << 20))
                o.write(b)
                left -= len(b)
    else:
        with open(tmp, "wb") as o:
            for _ in range(size >> 20):
                o.write(os.urandom(1 << 20))
            o.write(os.urandom(size & ((1 << 20) - 1)))
    os.replace(tmp, path)


# ------------------------------------------------------------- idle sessions (10k)
class Conn:
    __slots__ = ("sock", "state", "buf", "t0")


def open_sessions(a, n, deadline):
    """Open n logged-in sessions (sliding window of a.batch in flight).
    Returns (held sockets, error counts, seconds)."""
    sel = selectors.DefaultSelector()
    held, errors = [], {}
    started = inflight = 0
    t_start = time.perf_counter()
    script = {"greet": ("220", f"USER {a.user}\r\n".encode(), "user"),
              "user": ("331", f"PASS {a.password}\r\n".encode(), "pass"),
              "pass": ("230", None, "done")}

    def fail(c, why):
        nonlocal inflight
        errors[why] = errors.get(why, 0) + 1
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
        inflight -= 1

    last_note = time.time()
    while (started < n or inflight) and time.time() < deadline:
        while started < n and inflight < a.batch:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            c = Conn()
            c.sock, c.state, c.buf, c.t0 = s, "connect", b"", time.time()
            err = s.connect_ex((a.host, a.port))
            started += 1
            inflight += 1
            if err not in (0, errno.EINPROGRESS):
                fail(c, f"connect errno {err}")
                continue
            sel.register(s, selectors.EVENT_WRITE, c)
        for key, _ in sel.select(timeout=1.0):
            c = key.data
            if c.state == "connect":
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(c, f"connect errno {err}")
                    continue
                c.state = "greet"
                sel.modify(c.sock, selectors.EVENT_READ, c)
                continue
            try:
                chunk = c.sock.recv(4096)
            except OSError as e:
                fail(c, f"recv {e.__class__.__name__}")
                continue
            if not chunk:
                fail(c, f"closed in {c.state}")
                continue
            c.buf += chunk
            r = reply_complete(c.buf)
            if r is None:
                continue
            code, text, c.buf = r
            want, send, nxt = script[c.state]
            if code != want.encode():
                fail(c, f"{c.state}: {text[:60].decode(errors='replace')}")
                continue
            if send:
                try:
                    c.sock.sendall(send)     # tiny; the socket buffer always takes it
                except OSError as e:
                    fail(c, f"send {e.__class__.__name__}")
                    continue
            c.state = nxt
            if nxt == "done":
                sel.unregister(c.sock)
                held.append(c.sock)
                inflight -= 1
        now = time.time()
        for key in list(sel.get_map().values()):       # per-session timeout
            if now - key.data.t0 > 120:
                fail(key.data, f"timeout in {key.data.state}")
        if now - last_note > 15:
            last_note = now
            log(f"    ... {len(held)} sessions logged in, {inflight} in flight, errors {errors}")
    for key in list(sel.get_map().values()):
        fail(key.data, "deadline")
    sel.close()
    return held, errors, time.perf_counter() - t_start


def count_dropped(held):
    """Held sessions the server has closed or written to (e.g. 421) since login."""
    sel = selectors.DefaultSelector()
    for s in held:
        sel.register(s, selectors.EVENT_READ)
    n = len(sel.select(timeout=0))
    sel.close()
    return n


def m_idle10k(a, pid):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.sessions + 1000
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < a.sessions + 100:
        raise RuntimeError(f"client RLIMIT_NOFILE {soft} (hard {hard}) too low for {a.sessions} sessions")
    res = {"sessions_wanted": a.sessions, "client_nofile": soft}
    before = proc_info(pid)
    res["server_before"] = before
    log(f"  idle10k: opening {a.sessions} sessions ({a.batch} in flight); server {before}")
    held, errors, secs = open_sessions(a, a.sessions, time.time() + a.idle_deadline)
    res.update(opened=len(held), open_errors=errors, open_secs=round(secs, 1),
               logins_per_s=round(len(held) / secs, 1) if secs else None)
    try:
        time.sleep(2.0)
        after = proc_info(pid)
        res["server_after"] = after
        res["login_cpu_ms_per_session"] = round((after["cpu_s"] - before["cpu_s"]) * 1000 / max(1, len(held)), 2)
        res["pss_kib_per_session"] = round((after["pss_kib"] - before["pss_kib"]) / max(1, len(held)), 2)
        res["rss_kib_per_session"] = round((after["rss_kib"] - before["rss_kib"]) / max(1, len(held)), 2)
        log(f"  idle10k: {len(held)} held after {secs:.1f} s, errors {errors}; server {after}")
        # while they are held: a new login, and a RETR of the --retr-mib file
        t0 = time.perf_counter()
        try:
            f = ftp_login(a)
            res["new_login_ok"] = True
            res["new_login_s"] = round(time.perf_counter() - t0, 4)
            f.quit()
        except ftplib.all_errors + (EOFError,) as e:
            res["new_login_ok"] = False
            res["new_login_error"] = repr(e)
        try:
            t0 = time.perf_counter()
            v, vd, pre, _ = curl_xfer(a, ["-o", "/dev/null", ftp_url(a, a.retr_name)],
                                      a.retr_mib << 20, "RETR while held")
            res.update(retr_ok=True, retr_s=round(time.perf_counter() - t0, 3),
                       retr_MBps=round(v, 1), retr_MBps_data=round(vd, 1),
                       retr_pretransfer_s=round(pre, 3))
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            res.update(retr_ok=False, retr_error=str(e))
        res["dropped_while_held"] = count_dropped(held)
        res["server_during_probes"] = proc_info(pid)
        res["held"] = res["opened"] - res["dropped_while_held"]
        log(f"  idle10k: new login ok={res.get('new_login_ok')} {res.get('new_login_s')} s;"
            f" RETR {a.retr_mib} MiB ok={res.get('retr_ok')} {res.get('retr_s')} s;"
            f" dropped {res['dropped_while_held']}")
    finally:
        t0 = time.perf_counter()
        for s in held:
            s.close()
        base = before["fds"]
        for _ in range(600):                 # <= 60 s for the server to tear them down
            if proc_info(pid)["fds"] <= base + 5:
                break
            time.sleep(0.1)
        res["teardown_s"] = round(time.perf_counter() - t0, 2)
        res["server_after_close"] = proc_info(pid)
    return res


# -------------------------------------------------------------------------- hash
def m_hash(a, path, size):
    f = ftp_login(a)
    verb = "HASH"
    try:
        f.sendcmd("OPTS HASH SHA-256")
    except ftplib.error_perm:
        verb = "XSHA256"
    out = {"verb": verb}
    cache_file(path)
    server, local, digest = [], [], None
    for r in range(a.warmup + a.reps):
        t0 = time.perf_counter()
        try:
            resp = f.sendcmd(f"{verb} {a.big_name}")
        except ftplib.error_perm as e:
            if verb == "HASH":
                verb = out["verb"] = "XSHA256"
                t0 = time.perf_counter()
                resp = f.sendcmd(f"{verb} {a.big_name}")
            else:
                raise RuntimeError(f"{verb}: {e}") from e
        t_srv = time.perf_counter() - t0
        m = re.search(r"\b([0-9a-fA-F]{64})\b", resp)
        if not m:
            raise RuntimeError(f"no SHA-256 in reply {resp!r}")
        t0 = time.perf_counter()
        sr = subprocess.run(["sha256sum", path], capture_output=True, text=True, timeout=300, check=True)
        t_loc = time.perf_counter() - t0
        digest = sr.stdout.split()[0]
        if m.group(1).lower() != digest:
            raise RuntimeError(f"{verb} digest {m.group(1)} != sha256sum {digest}")
        tag = "warm-up (discarded)" if r < a.warmup else f"rep {r - a.warmup + 1}/{a.reps}"
        log(f"  hash {tag}: {verb} {size / t_srv / 1e6:.0f} MB/s  sha256sum {size / t_loc / 1e6:.0f} MB/s")
        if r >= a.warmup:
            server.append(size / t_srv / 1e6)
            local.append(size / t_loc / 1e6)
    f.quit()
    out["hash_MBps"] = summarize(server)
    out["sha256sum_MBps"] = summarize(local)
    out["digest_equal"] = True
    return out


# ------------------------------------------------------------------------ listing
def ensure_list_dir(root, n):
    d = os.path.join(root, LIST_DIR)
    os.makedirs(d, exist_ok=True)
    have = set(os.listdir(d))
    made = 0
    for i in range(n):
        name = f"entry_{i:05d}.dat"
        if name not in have:
            with open(os.path.join(d, name), "wb") as fh:
                fh.write(b"x" * (i % 997))
            made += 1
    extra = sorted(have - {f"entry_{i:05d}.dat" for i in range(n)})
    for name in extra:
        os.remove(os.path.join(d, name))
    if made or extra:
        # A directory made just now must not be written back while it is listed: a peer's
        # directory made in an earlier run would not be.
        os.sync()


def one_listing(f, verb):
    host, port = f.makepasv()
    data = socket.create_connection((host, port), timeout=OP_TIMEOUT)
    t0 = time.perf_counter()
    f.putcmd(f"{verb} {LIST_DIR}")
    resp = f.getresp()
    if not resp.startswith("1"):
        data.close()
        raise RuntimeError(f"{verb}: {resp}")
    nbytes = nlines = 0
    while True:
        b = data.recv(1 << 16)
        if not b:
            break
        nbytes += len(b)
        nlines += b.count(b"\n")
    data.close()
    resp = f.voidresp()
    return time.perf_counter() - t0, nbytes, nlines


def m_listing(a, verb):
    f = ftp_login(a)
    times, info = [], None
    for r in range(a.warmup + a.reps):
        t, nbytes, nlines = one_listing(f, verb)
        if nlines < a.list_n:
            raise RuntimeError(f"{verb} returned {nlines} lines, want >= {a.list_n}")
        tag = "warm-up (discarded)" if r < a.warmup else f"rep {r - a.warmup + 1}/{a.reps}"
        log(f"  {verb} {a.list_n} entries {tag}: {t * 1000:.1f} ms, {nbytes} B, {nlines} lines")
        if r >= a.warmup:
            times.append(t)
        info = {"bytes": nbytes, "lines": nlines}
    f.quit()
    return {"verb": verb, "secs": summarize(times), **info}


# ------------------------------------------------------------------------ connect
def _connect_worker(host, port, n, go, q):
    ok, errs = 0, {}
    go.wait(60)
    t_end = time.time() + 120
    for _ in range(n):
        if time.time() > t_end:
            errs["deadline"] = errs.get("deadline", 0) + 1
            break
        try:
            s = socket.create_connection((host, port), timeout=OP_TIMEOUT)
            buf = b""
            while True:
                b = s.recv(4096)
                if not b:
                    raise ConnectionError("closed before greeting")
                buf += b
                r = reply_complete(buf)
                if r:
                    break
            s.close()
            if r[0] == b"220":
                ok += 1
            else:
                k = r[1][:40].decode(errors="replace")
                errs[k] = errs.get(k, 0) + 1
        except OSError as e:
            k = e.__class__.__name__
            errs[k] = errs.get(k, 0) + 1
    q.put((ok, errs, time.perf_counter()))


def m_connect(a):
    ctx = mp.get_context("fork")
    vals, errors = [], {}
    for r in range(a.warmup + a.reps):
        go, q = ctx.Event(), ctx.Queue()
        per = [a.conn_n // a.conn_workers + (1 if i < a.conn_n % a.conn_workers else 0)
               for i in range(a.conn_workers)]
        procs = [ctx.Process(target=_connect_worker, args=(a.host, a.port, k, go, q), daemon=True)
                 for k in per]
        for p in procs:
            p.start()
        time.sleep(0.3)
        t0 = time.perf_counter()
        go.set()
        res = [q.get(timeout=200) for _ in procs]
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
        ok = sum(x[0] for x in res)
        for x in res:
            for k, v in x[1].items():
                errors[k] = errors.get(k, 0) + v
        rate = ok / (max(x[2] for x in res) - t0)
        tag = "warm-up (discarded)" if r < a.warmup else f"rep {r - a.warmup + 1}/{a.reps}"
        log(f"  connect+greeting {tag}: {ok}/{a.conn_n} ok, {rate:.0f}/s")
        if r >= a.warmup:
            vals.append(rate)
        time.sleep(1)
    return {"per_s": summarize(vals), "errors": errors, "n": a.conn_n, "workers": a.conn_workers}


# ------------------------------------------------------------- curl transfers
def curl_xfer(a, args, size, what, client=None):
    """One curl transfer. Returns (MB/s over curl's time_total, as the kit's measure.py
    computes it; MB/s over the data phase only = time_total - time_pretransfer, which leaves
    out login, EPSV and curl's own stalls before the data connection; time_pretransfer;
    the TLS cipher or, with `client`, libcurl's version)."""
    # -v only where its output is needed (the TLS cipher): it changes curl's timing
    verbose = ["-v"] if "--ssl-reqd" in args else []
    out, err = curl(verbose + args + ["--user", f"{a.user}:{a.password}"], 600, client)
    lines = out.splitlines()
    down, up, pre, total = lines[0].split()
    nb = int(down) or int(up)
    if nb != size:
        raise RuntimeError(f"{what}: {nb} bytes moved, want {size}")
    m = re.findall(r"SSL connection using (\S+) / (\S+)", err)
    cipher = " / ".join(m[-1]) if m else None
    if client:
        cipher = f"libcurl {lines[1]}" if len(lines) > 1 else "libcurl"
    pre, total = float(pre), float(total)
    return size / total / 1e6, size / (total - pre) / 1e6, pre, cipher


def m_curl(a, size, what, args_fn, after=None, client=None):
    tot, data, pres, cipher = [], [], [], None
    for r in range(a.warmup + a.reps):
        subprocess.run(["sync"], timeout=120)
        time.sleep(1)
        v, vd, pre, c = curl_xfer(a, args_fn(), size, what, client)
        cipher = c or cipher
        if after:
            after()
        tag = "warm-up (discarded)" if r < a.warmup else f"rep {r - a.warmup + 1}/{a.reps}"
        log(f"  {what} {size >> 20} MiB {tag}: {v:.0f} MB/s (data phase {vd:.0f} MB/s,"
            f" pretransfer {pre * 1000:.0f} ms){' ' + cipher if c else ''}")
        if r >= a.warmup:
            tot.append(v)
            data.append(vd)
            pres.append(pre)
    return {"MBps": summarize(tot), "MBps_data": summarize(data), "pretransfer_s": pres,
            "cipher": cipher}


def m_ftps(a, size):
    if not a.cacert:
        raise RuntimeError("ftps needs --cacert")
    return m_curl(a, size, "FTPS RETR", lambda: ["--ssl-reqd", "--cacert", a.cacert, "-o", "/dev/null",
                                                   ftp_url(a, a.big_name)])


def m_retr(a, size, client=None):
    return m_curl(a, size, "RETR", lambda: ["-o", "/dev/null", ftp_url(a, a.big_name)],
                  client=client)


def m_stor(a, size, local, client=None):
    name = "bench_up_extra.bin"

    def dele():
        f = ftp_login(a)
        f.delete(name)
        f.quit()
        subprocess.run(["sync"], timeout=120)
    cache_file(local)
    return m_curl(a, size, "STOR", lambda: ["-T", local, ftp_url(a, name)], dele, client)


# ------------------------------------------------------------- raw-socket RETR
RAW_READ = 128 << 10   # iperf3's default read size


class Control:
    """A bare control connection: one command, one complete reply."""
    def __init__(self, a):
        self.sock = socket.create_connection((a.host, a.port), timeout=OP_TIMEOUT)
        self.buf = b""
        self.expect(b"220")
        self.cmd(f"USER {a.user}", b"331")
        self.cmd(f"PASS {a.password}", b"230")
        self.cmd("TYPE I", b"200")

    def reply(self):
        while (got := reply_complete(self.buf)) is None:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise RuntimeError("control connection closed")
            self.buf += chunk
        code, text, self.buf = got
        return code, text

    def expect(self, *codes):
        got, text = self.reply()
        if got not in codes:
            want = " or ".join(c.decode() for c in codes)
            raise RuntimeError(f"expected {want}: {text!r}")
        return text

    def cmd(self, line, code):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.expect(code)

    def passive(self):
        text = self.cmd("EPSV", b"229")
        port = int(re.search(rb"\|\|\|(\d+)\|", text).group(1))
        return socket.create_connection((self.sock.getpeername()[0], port), timeout=OP_TIMEOUT)


def raw_retr(a, size):
    """One RETR read RAW_READ bytes at a time: (MB/s from RETR sent to 226 read, this
    process's CPU seconds per GiB received)."""
    c = Control(a)
    data = c.passive()
    buf = memoryview(bytearray(RAW_READ))
    cpu0, t0 = time.process_time(), time.perf_counter()
    c.sock.sendall(f"RETR {a.big_name}\r\n".encode())
    # RFC 959 allows either preliminary reply (pyftpdlib sends 125).
    c.expect(b"125", b"150")
    n = 0
    while k := data.recv_into(buf):
        n += k
    data.close()
    c.expect(b"226")
    secs, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    c.sock.close()
    if n != size:
        raise RuntimeError(f"raw RETR: {n} bytes, want {size}")
    return size / secs / 1e6, cpu / (size / (1 << 30))


def m_retr_raw(a, size):
    rates, cpus = [], []
    for r in range(a.warmup + a.reps):
        subprocess.run(["sync"], timeout=120)
        time.sleep(1)
        v, cpu = raw_retr(a, size)
        tag = "warm-up (discarded)" if r < a.warmup else f"rep {r - a.warmup + 1}/{a.reps}"
        log(f"  raw RETR {size >> 20} MiB {tag}: {v:.0f} MB/s (client CPU {cpu:.2f} s/GiB)")
        if r >= a.warmup:
            rates.append(v)
            cpus.append(cpu)
    return {"MBps": summarize(rates), "client_cpu_s_per_gib": summarize(cpus),
            "read_bytes": RAW_READ}


# --------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--user", default="bench")
    ap.add_argument("--password", default="benchpass")
    ap.add_argument("--label", required=True)
    ap.add_argument("--measures", default="idle10k,hash,mlsd,connect,ftps")
    ap.add_argument("--root", default=None, help="the user's home on local disk")
    ap.add_argument("--pid", type=int, default=None)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--cacert", default=None)
    ap.add_argument("--libcurl-python", default=None,
                    help="a python with pycurl, for retr-libcurl/stor-libcurl")
    ap.add_argument("--data", default="/var/tmp/ftpbench-data", help="dir with big.bin (kit's)")
    ap.add_argument("--big-name", default="bench_big.bin")
    ap.add_argument("--big-mib", type=int, default=1024)
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--idle-deadline", type=int, default=900, help="s to open all sessions")
    ap.add_argument("--retr-mib", type=int, default=100)
    ap.add_argument("--list-n", type=int, default=10000)
    ap.add_argument("--conn-n", type=int, default=2000)
    ap.add_argument("--conn-workers", type=int, default=4)
    a = ap.parse_args()
    if not ipaddress.ip_address(a.host).is_loopback:
        ap.error("HOST must be a loopback address")
    a.reps = max(1, min(a.reps, 10))
    a.retr_name = f"bench_retr{a.retr_mib}m.bin"
    size = a.big_mib << 20
    measures = [m for m in a.measures.split(",") if m]
    pid = a.pid or find_listener_pid(a.port)
    res = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "kind": "extra", "label": a.label,
           "host": a.host, "port": a.port, "pid": pid, "reps": a.reps,
           "loadavg_start": os.getloadavg()[0]}
    big = os.path.join(a.root, a.big_name) if a.root else None
    if a.root and any(m in measures for m in ("hash", "ftps", "retr", "retr-raw", "retr-libcurl")):
        ensure_file(big, size, os.path.join(a.data, "big.bin"))
    failures = {}
    for m in measures:
        log(f"extra {a.label}: {m}")
        try:
            if m == "idle10k":
                if not pid:
                    raise RuntimeError("server PID unknown")
                if not a.root:
                    raise RuntimeError("idle10k needs --root (for the RETR file)")
                ensure_file(os.path.join(a.root, a.retr_name), a.retr_mib << 20,
                            os.path.join(a.data, "big.bin"))
                res["idle10k"] = m_idle10k(a, pid)
            elif m == "hash":
                if not big:
                    raise RuntimeError("hash needs --root")
                res["hash"] = m_hash(a, big, size)
            elif m in ("mlsd", "list"):
                if not a.root:
                    raise RuntimeError(f"{m} needs --root")
                ensure_list_dir(a.root, a.list_n)
                res[m] = m_listing(a, m.upper())
            elif m == "connect":
                res["connect"] = m_connect(a)
            elif m == "ftps":
                res["ftps"] = m_ftps(a, size)
            elif m == "retr":
                res["retr"] = m_retr(a, size)
            elif m == "retr-raw":
                res[m] = m_retr_raw(a, size)
            elif m == "stor":
                res["stor"] = m_stor(a, size, os.path.join(a.data, "big.bin"))
            elif m in ("retr-libcurl", "stor-libcurl"):
                if not a.libcurl_python:
                    raise RuntimeError(f"{m} needs --libcurl-python")
                if m == "retr-libcurl":
                    res[m] = m_retr(a, size, a.libcurl_python)
                else:
                    res[m] = m_stor(a, size, os.path.join(a.data, "big.bin"), a.libcurl_python)
            else:
                raise RuntimeError(f"unknown measure {m}")
        except Exception as e:                                     # noqa: BLE001
            log(f"  {m} FAILED: {e!r}")
            failures[m] = repr(e)
    if failures:
        res["failures"] = failures
    res["loadavg_end"] = os.getloadavg()[0]
    if pid:
        res["server_end"] = proc_info(pid)
    if a.json:
        with open(a.json, "a") as fh:
            fh.write(json.dumps(res) + "\n")
    print(json.dumps(res, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
