#!/usr/bin/env python3
"""s3.py - ferryd on S3 storage against a direct S3 client on the same bucket.

usage:
  bench/s3.py [--rounds 3] [--mib 1024] [--ferryd target/release/ferryd]

Starts SeaweedFS (scripts/seaweedfs.sh, loopback, a temp dir) and one ferryd with
`storage = "s3"` on it, then per round, in alternating order:
  - STOR of a MIB-sized file with curl -T through ferryd, and the same file put by boto3
    (upload_file, multipart with ferryd's part size, 1 thread: one part in flight, as ferryd);
  - RETR of it with curl through ferryd, and boto3's download_fileobj (1 thread);
and samples ferryd's resident memory (VmRSS) during the STOR. Prints MB/s medians, the median of
the rounds' ratios ferryd/boto3, and the RSS peak above ferryd's idle RSS. Loopback only; stops
what it started.
"""
import argparse, os, statistics, subprocess, sys, tempfile, threading, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PART_MIB = 8


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--ferryd", default=str(REPO / "target/release/ferryd"))
    a = ap.parse_args()
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    tmp = Path(tempfile.mkdtemp(prefix="ferry-s3-bench."))
    sw = tmp / "seaweed"
    subprocess.run([str(REPO / "scripts/seaweedfs.sh"), "start", str(sw)], check=True,
                   capture_output=True, timeout=300)
    ferry = None
    try:
        env = dict(l.split("=", 1) for l in (sw / "env").read_text().split())
        conf = tmp / "ferry.toml"
        conf.write_text(
            f'listen = "127.0.0.1:0"\ndata_dir = "{tmp}/data"\nlog = "warn"\n'
            f'storage = "s3"\n[s3]\nendpoint = "{env["S3_ENDPOINT"]}"\n'
            f'bucket = "{env["S3_BUCKET"]}"\nprefix = "bench"\n'
            f'access_key_id = "{env["AWS_ACCESS_KEY_ID"]}"\n'
            f'secret_access_key = "{env["AWS_SECRET_ACCESS_KEY"]}"\npart_size_mib = {PART_MIB}\n')
        subprocess.run([a.ferryd, "--config", str(conf), "user", "add", "bench",
                        "--password-stdin"], input="benchpass\n", text=True, check=True,
                       capture_output=True, timeout=120)
        out = tmp / "ferryd.out"
        ferry = subprocess.Popen([a.ferryd, "--config", str(conf), "serve"],
                                 stdout=open(out, "w"), stderr=subprocess.DEVNULL,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        port = None
        for _ in range(200):
            t = out.read_text()
            if "listening on" in t:
                port = t.split("listening on ")[1].split()[0].rsplit(":", 1)[1]
                break
            time.sleep(0.1)
        assert port, "ferryd did not start"
        src = tmp / "src.bin"
        with open(src, "wb") as f:
            block = os.urandom(64 << 20)
            for _ in range(max(1, a.mib // 64)):
                f.write(block)
        size = src.stat().st_size
        s3 = boto3.client("s3", endpoint_url=env["S3_ENDPOINT"], region_name="us-east-1",
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                          config=Config(s3={"addressing_style": "path"},
                                        request_checksum_calculation="when_required",
                                        response_checksum_validation="when_required"))
        tc = TransferConfig(multipart_threshold=PART_MIB << 20, multipart_chunksize=PART_MIB << 20,
                            max_concurrency=1, use_threads=False)
        url = f"ftp://bench:benchpass@127.0.0.1:{port}"
        idle = rss_kib(ferry.pid)
        peak = [idle]

        def ferry_stor():
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    peak[0] = max(peak[0], rss_kib(ferry.pid))
                    time.sleep(0.02)
            th = threading.Thread(target=sample)
            th.start()
            t0 = time.perf_counter()
            subprocess.run(["curl", "-sS", "-T", str(src), f"{url}/f.bin"], check=True,
                           timeout=900)
            secs = time.perf_counter() - t0
            stop.set()
            th.join()
            return secs

        def ferry_retr():
            t0 = time.perf_counter()
            subprocess.run(["curl", "-sS", "-o", "/dev/null", f"{url}/f.bin"], check=True,
                           timeout=900)
            return time.perf_counter() - t0

        def boto_stor():
            t0 = time.perf_counter()
            s3.upload_file(str(src), env["S3_BUCKET"], "direct/f.bin", Config=tc)
            return time.perf_counter() - t0

        def boto_retr():
            t0 = time.perf_counter()
            with open(os.devnull, "wb") as null:
                s3.download_fileobj(env["S3_BUCKET"], "direct/f.bin", null, Config=tc)
            return time.perf_counter() - t0

        rows = {"STOR": (ferry_stor, boto_stor), "RETR": (ferry_retr, boto_retr)}
        res = {k: ([], [], []) for k in rows}
        for r in range(a.rounds):
            for name, (fa, fb) in rows.items():
                order = (fa, fb) if r % 2 == 0 else (fb, fa)
                times = {f: f() for f in order}
                mf, mb = size / times[fa] / 1e6, size / times[fb] / 1e6
                res[name][0].append(mf)
                res[name][1].append(mb)
                res[name][2].append(mf / mb)
                print(f"round {r + 1} {name}: ferryd {mf:.0f} MB/s, boto3 {mb:.0f} MB/s",
                      file=sys.stderr)
        print(f"| measure ({a.mib} MiB, {PART_MIB} MiB parts) | ferryd MB/s | boto3 MB/s | "
              f"ferryd/boto3 median [min-max] |")
        print("|---|---:|---:|---|")
        for name, (f, b, r) in res.items():
            print(f"| {name} | {statistics.median(f):.0f} | {statistics.median(b):.0f} | "
                  f"{statistics.median(r):.2f}x [{min(r):.2f}-{max(r):.2f}] |")
        print(f"\nferryd RSS: idle {idle / 1024:.1f} MiB, peak during STOR "
              f"{peak[0] / 1024:.1f} MiB (+{(peak[0] - idle) / 1024:.1f} MiB)")
    finally:
        if ferry is not None:
            ferry.terminate()
            ferry.wait(10)
        subprocess.run([str(REPO / "scripts/seaweedfs.sh"), "stop", str(sw)],
                       capture_output=True, timeout=120)
        subprocess.run(["rm", "-rf", str(tmp)])


if __name__ == "__main__":
    main()
