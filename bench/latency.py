#!/usr/bin/env python3
"""latency.py - small-file fetch latency with curl 7.88 and libcurl 8: ferryd vs vsftpd vs
pyftpdlib in one run, loopback only (stdlib only; libcurl through a venv's pycurl).

usage (as root: the peer kit's start scripts create a local user and chroot):
  bench/latency.py [--ferryd target/release/ferryd] [--fetches 20] [--rounds 1]
                   [--warmup 1] [--json FILE] [--clients curl,libcurl]

What it does:
  * starts ferryd (fresh temp data dir, user bench/benchpass, log = "warn", listening on
    127.0.0.1:0; the address is read from its "ferryd listening on ADDR" stdout line),
    vsftpd (127.0.0.1:2121) and pyftpdlib (127.0.0.1:2124) with the peer kit's scripts
    (../shared/bench/peers, or $PEERS_DIR), each peer with a fresh temp root;
  * puts the same 4 KiB random file `f4k` in each server's root;
  * for each client - curl 7.88 (`/usr/bin/curl -s -o /dev/null -w '%{time_pretransfer}
    %{time_total}' ftp://bench:benchpass@127.0.0.1:PORT/f4k`) and libcurl 8 (the venv's
    python running bench/libcurl_xfer.py; the venv is made like bench/run.sh makes it when
    missing) - fetches the file --fetches times from each server, interleaving the servers
    fetch by fetch (ferryd, vsftpd, pyftpdlib, ferryd, ...) so the host's drift hits all
    alike, after --warmup discarded fetch(es) per server. --rounds N repeats that N times
    (the table pools the rounds; the JSON keeps every sample and each round's ratio);
  * reports per client and server: mean, median, max of time_total (ms), stalls (fetches
    with time_total > --stall-ms, default 100), the median time_pretransfer (connect, login,
    EPSV and the data connection: curl 7.88's stall falls inside it; the login is ferryd's
    argon2id, ~20 ms, vs the peers' SHA-512 crypt, ~2.4 ms), the mean over the fetches that
    did not stall, and ferryd's mean / the best peer's mean. Markdown table on stdout, JSON
    (every sample too) to --json.

Every server started here is stopped by its PID (ferryd: SIGTERM then SIGKILL; peers: the
kit's `stop`, which kills the PID it recorded and its descendants), also on Ctrl-C, SIGTERM
and errors; the temp dirs are removed. See BENCHMARKS.md, "curl stalls", for why curl 7.88
waits ~200 ms before some data connections.
"""
import argparse, json, os, platform, re, shutil, signal, statistics, subprocess, sys
import tempfile, time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBCURL_XFER = os.path.join(REPO, "bench", "libcurl_xfer.py")
HOST = "127.0.0.1"
USER, PASSWORD = "bench", "benchpass"
FILE_NAME, FILE_SIZE = "f4k", 4096
PEER_PORTS = {"vsftpd": 2121, "pyftpdlib": 2124}
CURL = "/usr/bin/curl"
CURL_W = "%{size_download} %{time_pretransfer} %{time_total}"
FETCH_TIMEOUT = 30


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd, timeout=120, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def port_in_use(port):
    out = run(["ss", "-ltnH", f"sport = :{port}"], timeout=10).stdout
    return bool(out.strip())


class Servers:
    """The servers this script started; stop() stops each by its PID."""

    def __init__(self, a):
        self.a = a
        self.tmp = tempfile.mkdtemp(prefix="ferry-latency.")
        os.chmod(self.tmp, 0o755)          # vsftpd's chroot (as user bench) is below it
        self.ferry = None                  # Popen
        self.ferry_out = None
        self.peers_started = []            # kit script paths
        self.ports = {}                    # server name -> port
        self.info = {}

    # -------------------------------------------------------------- ferryd
    def start_ferryd(self):
        a = self.a
        d = os.path.join(self.tmp, "ferry-data")
        os.makedirs(d)
        conf = os.path.join(self.tmp, "ferry.toml")
        with open(conf, "w") as fh:
            fh.write(f'listen = "{HOST}:0"\ndata_dir = "{d}"\nlog = "warn"\n')
        r = subprocess.run([a.ferryd, "--config", conf, "--data-dir", d, "user", "add", USER,
                            "--password-stdin"], input=PASSWORD + "\n", capture_output=True,
                           text=True, timeout=120)
        if r.returncode:
            raise RuntimeError(f"ferryd user add failed: {r.stderr.strip()[-500:]}")
        home = os.path.join(d, "homes", USER)
        os.makedirs(home, exist_ok=True)
        self.put_file(home)
        self.ferry_out = os.path.join(self.tmp, "ferryd.stdout")
        err = os.path.join(self.tmp, "ferryd.log")
        with open(self.ferry_out, "w") as o, open(err, "w") as e:
            # own session: a Ctrl-C reaches this script only, which stops ferryd by its PID
            self.ferry = subprocess.Popen([a.ferryd, "--config", conf, "serve"], stdout=o,
                                          stderr=e, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            m = re.search(r"ferryd listening on (\S+):(\d+)", open(self.ferry_out).read())
            if m:
                if m.group(1) != HOST:
                    raise RuntimeError(f"ferryd listens on {m.group(1)}, not {HOST}")
                self.ports["ferryd"] = int(m.group(2))
                log(f"ferryd started: pid {self.ferry.pid}, {HOST}:{m.group(2)}")
                self.info["ferryd"] = {"pid": self.ferry.pid, "port": int(m.group(2))}
                return
            if self.ferry.poll() is not None:
                raise RuntimeError(f"ferryd exited during start-up: {open(err).read()[-1000:]}")
            time.sleep(0.05)
        raise RuntimeError("ferryd did not print 'ferryd listening on' in 20 s")

    def stop_ferryd(self):
        p, self.ferry = self.ferry, None
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
                log(f"ferryd: had to SIGKILL pid {p.pid}")
        log(f"ferryd: stopped pid {p.pid} (exit {p.returncode})")
        err = os.path.join(self.tmp, "ferryd.log")
        if os.path.exists(err):
            lines = open(err, errors="replace").read().splitlines()
            bad = [line for line in lines if " WARN " in line or " ERROR " in line]
            self.info.setdefault("ferryd", {})["log_warn_error_lines"] = len(bad)
            for line in bad[:5]:
                log(f"  ferryd log: {line}")

    # -------------------------------------------------------------- peers
    def start_peer(self, name):
        port = PEER_PORTS[name]
        script = os.path.join(self.a.peers_dir, f"{name}.sh")
        if port_in_use(port):
            raise RuntimeError(f"port {port} ({name}) is already in use: stop that server "
                               f"first (this script only stops servers it started)")
        root = os.path.join(self.tmp, name)
        os.makedirs(root)
        self.put_file(root)
        # The kit's ensure_root chowns ROOT to bench; the file must be readable by bench.
        pidf = f"/tmp/ftpbench-{name}.pid"
        before = open(pidf).read() if os.path.exists(pidf) else None
        r = run([script, "start", root], timeout=60)
        pid = open(pidf).read().strip() if os.path.exists(pidf) else None
        if pid is not None and pid != (before or "").strip():
            self.peers_started.append(script)      # its pidfile is ours: stop it at the end
        if r.returncode:
            raise RuntimeError(f"{name}: start failed: {(r.stdout + r.stderr).strip()[-800:]}")
        self.ports[name] = port
        self.info[name] = {"pid": int(pid), "port": port, "root": root}
        log(f"{name} started: pid {pid}, {HOST}:{port}")

    def stop_peers(self):
        while self.peers_started:
            script = self.peers_started.pop()
            try:
                r = run([script, "stop"], timeout=60)
                log((r.stdout + r.stderr).strip())
            except Exception as e:                                    # noqa: BLE001
                log(f"{script} stop failed: {e!r}")

    # -------------------------------------------------------------- common
    def put_file(self, d):
        path = os.path.join(d, FILE_NAME)
        with open(path, "wb") as fh:
            fh.write(self.a.payload)
        os.chmod(path, 0o644)

    def stop(self):
        try:
            self.stop_ferryd()
        finally:
            self.stop_peers()
            shutil.rmtree(self.tmp, ignore_errors=True)


# ------------------------------------------------------------------ clients
def fetch_curl(a, port):
    url = f"ftp://{USER}:{PASSWORD}@{HOST}:{port}/{FILE_NAME}"
    r = run([CURL, "-s", "-S", "-o", "/dev/null", "--max-time", str(FETCH_TIMEOUT),
             "-w", CURL_W, url], timeout=FETCH_TIMEOUT + 15)
    if r.returncode:
        raise RuntimeError(f"curl rc={r.returncode}: {r.stderr.strip()[-300:]}")
    size, pre, total = r.stdout.split()
    return int(float(size)), float(pre), float(total)


def fetch_libcurl(a, port):
    url = f"ftp://{HOST}:{port}/{FILE_NAME}"
    r = run([a.python, LIBCURL_XFER, "--user", f"{USER}:{PASSWORD}", "-o", "/dev/null",
             "--max-time", str(FETCH_TIMEOUT), url], timeout=FETCH_TIMEOUT + 15)
    if r.returncode:
        raise RuntimeError(f"libcurl_xfer rc={r.returncode}: {r.stderr.strip()[-300:]}")
    down, _up, pre, total = r.stdout.splitlines()[0].split()
    return int(float(down)), float(pre), float(total)


def fetch_curl_reused(a, port, n):
    """One curl 7.88 run fetching the file n + 1 times over one control connection (curl
    reuses it for URLs of the same host): the first fetch pays the login and is dropped, the
    others are EPSV + RETR each, where the stall happens without the login around it."""
    url = f"ftp://{USER}:{PASSWORD}@{HOST}:{port}/{FILE_NAME}"
    cmd = [CURL, "-s", "-S", "--max-time", str(FETCH_TIMEOUT * (n + 1)), "-w", CURL_W + "\n"]
    for _ in range(n + 1):
        cmd += ["-o", "/dev/null", url]
    r = run(cmd, timeout=FETCH_TIMEOUT * (n + 1) + 15)
    if r.returncode:
        raise RuntimeError(f"curl rc={r.returncode}: {r.stderr.strip()[-300:]}")
    rows = [line.split() for line in r.stdout.splitlines() if line.strip()]
    return [(int(float(size)), float(pre), float(total)) for size, pre, total in rows[1:]]


CLIENTS = {"curl": fetch_curl, "libcurl": fetch_libcurl}
# Clients that fetch a whole batch over one connection (no login per fetch).
BATCH_CLIENTS = {"curl-reused": fetch_curl_reused}


def client_versions(a):
    v = {"curl": run([CURL, "--version"], timeout=10).stdout.splitlines()[0]}
    v["curl-reused"] = v["curl"]
    if "libcurl" in a.clients:
        v["libcurl"] = run([a.python, "-c", "import pycurl; print(pycurl.version)"],
                           timeout=30).stdout.strip()
    return v


def ensure_venv(a):
    """The venv of bench/run.sh (python3 -m venv + pip install pycurl) if it is missing."""
    if os.path.exists(a.python) and run([a.python, "-c", "import pycurl"], timeout=30).returncode == 0:
        return
    venv = os.path.dirname(os.path.dirname(a.python))
    log(f"making the pycurl venv at {venv}")
    if not os.path.exists(a.python):
        subprocess.run(["python3", "-m", "venv", venv], check=True, timeout=300)
    subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "pycurl"], check=True,
                   timeout=900)


# ------------------------------------------------------------------ measure
def measure(a, servers, ports):
    """samples[client][server] = [{round, i, pretransfer_s, total_s}, ...]"""
    samples = {c: {s: [] for s in servers} for c in a.clients}
    for rnd in range(a.rounds):
        for c in a.clients:
            if c in BATCH_CLIENTS:
                for s in servers:
                    for i, (size, pre, total) in enumerate(BATCH_CLIENTS[c](a, ports[s], a.fetches)):
                        if size != FILE_SIZE:
                            raise RuntimeError(f"{c} from {s}: {size} bytes, want {FILE_SIZE}")
                        samples[c][s].append({"round": rnd, "i": i, "pretransfer_s": pre,
                                              "total_s": total})
                continue
            fetch = CLIENTS[c]
            for i in range(-a.warmup, a.fetches):
                for s in servers:
                    size, pre, total = fetch(a, ports[s])
                    if size != FILE_SIZE:
                        raise RuntimeError(f"{c} from {s}: {size} bytes, want {FILE_SIZE}")
                    if i >= 0:
                        samples[c][s].append({"round": rnd, "i": i, "pretransfer_s": pre,
                                              "total_s": total})
            line = "  ".join(
                f"{s} mean {statistics.mean(x['total_s'] for x in samples[c][s] if x['round'] == rnd) * 1000:.1f} ms"
                for s in servers)
            log(f"round {rnd + 1}/{a.rounds} {c}: {line}")
    return samples


def summarize(xs, stall_s):
    tot = [x["total_s"] * 1000 for x in xs]
    pre = [x["pretransfer_s"] * 1000 for x in xs]
    calm = [t for t in tot if t <= stall_s * 1000]
    return {"n": len(tot), "mean_ms": statistics.mean(tot), "median_ms": statistics.median(tot),
            "min_ms": min(tot), "max_ms": max(tot),
            "stalls": sum(t > stall_s * 1000 for t in tot),
            "pretransfer_median_ms": statistics.median(pre),
            "pretransfer_mean_ms": statistics.mean(pre),
            "mean_without_stalls_ms": statistics.mean(calm) if calm else None}


def ratio(summ, servers, key="mean_ms"):
    peers = [s for s in servers if s != "ferryd"]
    if "ferryd" not in servers or not peers:
        return None, None
    best = min(peers, key=lambda s: summ[s][key])
    return summ["ferryd"][key] / summ[best][key], best


def report(a, servers, samples):
    stall_s = a.stall_ms / 1000
    out = {"summary": {}, "ratio": {}, "per_round_ratio": {}}
    lines = [f"4 KiB RETR, {a.fetches} fetches per server and client"
             f"{f' x {a.rounds} rounds' if a.rounds > 1 else ''}, servers interleaved; "
             f"time_total in ms; stall = time_total > {a.stall_ms:g} ms; pretransfer = "
             f"time_pretransfer: connect, login (ferryd: argon2id; peers: SHA-512 crypt), EPSV, "
             f"data connection (curl 7.88's ~200 ms stall falls inside it); mean w/o stalls = "
             f"mean over the fetches that did not stall", "",
             "| client | server | mean | median | max | stalls | pretransfer median |"
             " mean w/o stalls | ferryd mean / best peer mean |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for c in a.clients:
        summ = {s: summarize(samples[c][s], stall_s) for s in servers}
        r, best = ratio(summ, servers)
        rm, best_m = ratio(summ, servers, "median_ms")
        out["summary"][c] = summ
        out["ratio"][c] = {"mean_ratio": r, "best_peer_by_mean": best,
                           "median_ratio": rm, "best_peer_by_median": best_m}
        per = []
        for rnd in range(a.rounds):
            sr = {s: summarize([x for x in samples[c][s] if x["round"] == rnd], stall_s)
                  for s in servers}
            per.append(ratio(sr, servers)[0])
        out["per_round_ratio"][c] = per
        for s in servers:
            m = summ[s]
            cell = ""
            if s == "ferryd" and r is not None:
                cell = f"**{r:.2f}x** (best peer: {best})"
                if a.rounds > 1:
                    cell += " rounds: " + ", ".join(f"{x:.2f}" for x in per)
            lines.append(f"| {c} | {s} | {m['mean_ms']:.1f} | {m['median_ms']:.1f} |"
                         f" {m['max_ms']:.1f} | {m['stalls']}/{m['n']} |"
                         f" {m['pretransfer_median_ms']:.1f} |"
                         f" {'-' if m['mean_without_stalls_ms'] is None else format(m['mean_without_stalls_ms'], '.1f')} |"
                         f" {cell} |")
    return "\n".join(lines), out


# ------------------------------------------------------------------ main
def main():
    default_ferryd = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")),
                                  "release", "ferryd")
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ferryd", default=default_ferryd, help="ferryd binary (release build)")
    ap.add_argument("--fetches", type=int, default=20, help="measured fetches per server, client and round")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1,
                    help="discarded fetches per server and client before each round's series")
    ap.add_argument("--stall-ms", type=float, default=100.0)
    ap.add_argument("--clients", default="curl,curl-reused,libcurl",
                    help="curl and libcurl: a new connection (and login) per fetch; "
                         "curl-reused: one curl run, one login, the fetches over one connection")
    ap.add_argument("--servers", default="ferryd,vsftpd,pyftpdlib")
    ap.add_argument("--python", default=os.path.join(os.environ.get("BENCH_VENV", "/var/tmp/ferry-bench-venv"), "bin", "python"),
                    help="a python with pycurl (made with python3 -m venv + pip if missing)")
    ap.add_argument("--peers-dir", default=os.environ.get(
        "PEERS_DIR", os.path.join(os.path.dirname(REPO), "shared", "bench", "peers")))
    ap.add_argument("--json", default=None, help="write the results (JSON) to this file")
    a = ap.parse_args()
    a.clients = [c for c in a.clients.split(",") if c]
    servers = [s for s in a.servers.split(",") if s]
    for c in a.clients:
        if c not in CLIENTS and c not in BATCH_CLIENTS:
            ap.error(f"unknown client {c} (clients: {','.join([*CLIENTS, *BATCH_CLIENTS])})")
    for s in servers:
        if s != "ferryd" and s not in PEER_PORTS:
            ap.error(f"unknown server {s} (servers: ferryd,{','.join(PEER_PORTS)})")
    if a.fetches < 1 or a.rounds < 1 or a.warmup < 0:
        ap.error("--fetches and --rounds must be >= 1, --warmup >= 0")
    if os.geteuid() != 0 and any(s in PEER_PORTS for s in servers):
        ap.error("run as root: the peer kit's start scripts create a local user and chroot")
    if "ferryd" in servers and not os.access(a.ferryd, os.X_OK):
        ap.error(f"no ferryd binary at {a.ferryd} (cargo build --release -p ferry-server)")
    if "libcurl" in a.clients:
        ensure_venv(a)
    a.payload = os.urandom(FILE_SIZE)

    # SIGTERM -> SystemExit, so the finally below stops the servers (Ctrl-C: KeyboardInterrupt)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    meta = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "kind": "latency",
            "command": " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
            "host": platform.node(), "cores": os.cpu_count(),
            "ferryd": os.path.abspath(a.ferryd) if "ferryd" in servers else None,
            "ferry_rev": run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], timeout=10).stdout.strip(),
            "ferry_crates_dirty": run(["git", "-C", REPO, "diff", "--quiet", "HEAD", "--", "crates"],
                                      timeout=10).returncode != 0,
            "file_bytes": FILE_SIZE, "fetches": a.fetches, "rounds": a.rounds,
            "warmup": a.warmup, "stall_ms": a.stall_ms, "servers": servers,
            "clients": client_versions(a), "loadavg_start": os.getloadavg(),
            "uptime_start": run(["uptime"], timeout=10).stdout.strip()}
    log(f"load: {meta['uptime_start']}")
    srv = Servers(a)
    try:
        for s in servers:
            srv.start_ferryd() if s == "ferryd" else srv.start_peer(s)
        t0 = time.time()
        samples = measure(a, servers, srv.ports)
        meta["measure_s"] = round(time.time() - t0, 1)
    finally:
        srv.stop()
    meta["loadavg_end"] = os.getloadavg()
    meta["uptime_end"] = run(["uptime"], timeout=10).stdout.strip()
    meta["server_info"] = srv.info
    table, res = report(a, servers, samples)
    print(table)
    print(f"\nload average: start {' '.join(f'{x:.2f}' for x in meta['loadavg_start'])},"
          f" end {' '.join(f'{x:.2f}' for x in meta['loadavg_end'])}; {meta['cores']} cores")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({**meta, **res, "samples": samples}, fh, indent=1)
            fh.write("\n")
        log(f"json: {a.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted (servers stopped)")
        sys.exit(130)
