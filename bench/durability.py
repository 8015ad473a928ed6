#!/usr/bin/env python3
"""bench/durability.py - the cost of `sync_uploads` (flush before 226), paired.

Starts two ferryd processes from the same binary, one with `sync_uploads = true` (the
default) and one with `false`, each with its own temp data dir on the same file system, and
measures both in alternating rounds (the order flips every round):
  stor-1g    one STOR of a 1 GiB file from the page cache (curl -T), seconds
  stor-4k    400 STORs of 4 KiB files over one ftplib session, seconds for all
Prints each row's medians and the median of the rounds' ratios (sync / no sync).

usage: bench/durability.py [--ferryd target/release/ferryd] [--rounds 7] [--big-mib 1024]
                           [--dir /var/tmp]
"""
import argparse
import ftplib
import io
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

PASSWORD = "bench-password"


def start(ferryd, root, sync):
    data = os.path.join(root, "data")
    subprocess.run([ferryd, "--data-dir", data, "user", "add", "bench", "--password-stdin"],
                   input=(PASSWORD + "\n").encode(), check=True, capture_output=True)
    cfg = os.path.join(root, "ferry.toml")
    with open(cfg, "w") as f:
        f.write(f'log = "warn"\nsync_uploads = {"true" if sync else "false"}\n')
    proc = subprocess.Popen([ferryd, "--data-dir", data, "--config", cfg, "serve",
                             "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    for line in proc.stdout:
        m = re.match(rb"ferryd listening on [\d.]+:(\d+)", line)
        if m:
            return proc, int(m.group(1))
    raise SystemExit("ferryd did not start")


def stor_big(port, src):
    t0 = time.monotonic()
    subprocess.run(["curl", "-sS", "-T", src, f"ftp://bench:{PASSWORD}@127.0.0.1:{port}/big.bin"],
                   check=True)
    return time.monotonic() - t0


def stor_small(port, n=400):
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port)
    ftp.login("bench", PASSWORD)
    payload = os.urandom(4096)
    t0 = time.monotonic()
    for i in range(n):
        ftp.storbinary(f"STOR s{i % 50}.bin", io.BytesIO(payload))
    elapsed = time.monotonic() - t0
    ftp.quit()
    return elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferryd", default="target/release/ferryd")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--big-mib", type=int, default=1024)
    ap.add_argument("--dir", default="/var/tmp")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        src = os.path.join(tmp, "big.src")
        with open(src, "wb") as f:
            for _ in range(a.big_mib):
                f.write(os.urandom(1 << 20))
        servers = {}
        try:
            for sync in (True, False):
                root = os.path.join(tmp, "sync" if sync else "nosync")
                os.makedirs(root)
                servers[sync] = start(a.ferryd, root, sync)
            rows = {"stor-1g": stor_big, "stor-4k": None}
            results = {(row, sync): [] for row in rows for sync in (True, False)}
            for r in range(a.rounds + 1):
                order = (True, False) if r % 2 == 0 else (False, True)
                for sync in order:
                    port = servers[sync][1]
                    big = stor_big(port, src)
                    small = stor_small(port)
                    if r > 0:  # round 0 warms caches up
                        results[("stor-1g", sync)].append(big)
                        results[("stor-4k", sync)].append(small)
            print(f"rounds: {a.rounds} (after one warm-up), alternating order; seconds, lower is better")
            print(f"{'row':10} {'sync on':>10} {'sync off':>10} {'on/off: median [min-max] of rounds':>38}")
            for row in rows:
                on, off = results[(row, True)], results[(row, False)]
                ratios = [x / y for x, y in zip(on, off)]
                print(f"{row:10} {statistics.median(on):10.3f} {statistics.median(off):10.3f} "
                      f"{statistics.median(ratios):10.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]")
        finally:
            for proc, _ in servers.values():
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)


if __name__ == "__main__":
    sys.exit(main())
