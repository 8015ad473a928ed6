#!/usr/bin/env python3
"""paired.py - Ferry and one peer measured in alternation, for ratios that survive a noisy host.

usage:
  paired.py --ferry PORT[:PID] --peer LABEL:PORT[:PID] [--measures small,stor,retr,retr-raw] [--rounds 5]
            [--out DIR]

On this shared 2-core VM the same measure of the same server moves by up to 1.5x from one
minute to the next (the host under the VM is busy or not; no steal time shows it). A table
that measures Ferry and the peers minutes apart mixes that drift into its ratios. Here both
servers run at once, and each round measures one rep of each, back to back, in alternating
order (Ferry first in odd rounds, the peer first in even ones); every round gives a ratio and
the report is the median of the rounds' ratios, beside each server's median.

Measures (the clients are the kit's and extra.py's own, unchanged):
  small  the kit's measure c: 2,000 x 4 KiB RETR by 16 forked ftplib clients  [files/s]
  stor   extra.py's STOR: curl -T of the cached 1 GiB file, data phase only    [MB/s]
         (DELEted and `sync`ed after each transfer)
  retr   extra.py's RETR of the 1 GiB file, data phase only, paired not with the peer but
         with the RETR target's reference: the kit's iperf3 loopback figure (10 s, 1 stream)
  retr-raw  the same RETR by extra.py's raw-socket client (128 KiB reads, as iperf3's
         receiver), paired with iperf3 the same way: the server's pace without curl's 16 KiB
         reads

Both servers need the user bench/benchpass; the kit's seeding (measure.py's seed) runs first
for each. Writes paired.jsonl and paired.md (a table) to --out. Loopback only, bounded.
"""
import argparse, ipaddress, json, os, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.environ.get("PEERS_DIR", os.path.join(HERE, "..", "..", "shared", "bench", "peers"))
sys.path.insert(0, PEERS)
sys.path.insert(0, HERE)
import measure as kit   # noqa: E402  the peer kit's measure.py
import extra            # noqa: E402

UP_NAME = "bench_up_paired.bin"


class Target:
    def __init__(self, label, spec, data):
        parts = spec.split(":")
        self.label, self.port = label, int(parts[0])
        self.pid = int(parts[1]) if len(parts) > 1 else kit.find_listener_pid(self.port)
        # the attribute set the kit's and extra.py's functions read
        self.host = self.host_url = "127.0.0.1"
        self.user, self.password = "bench", "benchpass"
        self.small_n, self.small_kib, self.clients = 2000, 4, 16
        self.small_bytes = self.small_kib << 10
        self.big_mib = 1024
        self.big_bytes = self.big_mib << 20
        self.big_name = kit.BIG_NAME
        self.data = data


def m_small(t):
    return kit.m_small(t)


class Reference:
    """The machine's own figure on one side of a pair (no server)."""
    def __init__(self, label):
        self.label = label


def m_retr(t):
    if isinstance(t, Reference):
        return kit.p_iperf(t)
    _, data_phase, _, _ = extra.curl_xfer(t, ["-o", "/dev/null", extra.ftp_url(t, kit.BIG_NAME)],
                                          t.big_bytes, "RETR")
    return data_phase


def m_retr_raw(t):
    if isinstance(t, Reference):
        return kit.p_iperf(t)
    return extra.raw_retr(t, t.big_bytes)[0]


def m_stor(t, local):
    _, data_phase, _, _ = extra.curl_xfer(t, ["-T", local, extra.ftp_url(t, UP_NAME)],
                                          t.big_bytes, "STOR")
    f = kit.ftp_login(t)
    f.delete(UP_NAME)
    f.quit()
    return data_phase


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ferry", required=True, help="PORT[:PID]")
    ap.add_argument("--peer", required=True, help="LABEL:PORT[:PID]")
    ap.add_argument("--measures", default="small,stor,retr,retr-raw")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--data", default="/var/tmp/ftpbench-data", help="dir with the kit's big.bin")
    ap.add_argument("--out", default=".")
    a = ap.parse_args()
    rounds = max(1, min(a.rounds, 20))
    peer_label, peer_spec = a.peer.split(":", 1)
    ferry, peer = Target("ferry", a.ferry, a.data), Target(peer_label, peer_spec, a.data)
    big = kit.ensure_local_big(ferry)
    for t in (ferry, peer):
        if not ipaddress.ip_address(t.host).is_loopback:
            sys.exit("loopback only")
        kit.log(f"paired: seeding {t.label} on port {t.port} ...")
        kit.seed(t, big)
    iperf3 = Reference("iperf3")
    # measure: (function of a target, what, the other side of the pair)
    fns = {"small": (m_small, "4 KiB files, 16 clients, files/s", peer),
           "stor": (lambda t: m_stor(t, big), "STOR 1 GiB, data phase, MB/s", peer),
           "retr": (m_retr, "RETR 1 GiB, data phase, MB/s (vs iperf3 loopback)", iperf3),
           "retr-raw": (m_retr_raw, "RETR 1 GiB, data phase, 128 KiB reads (raw client), MB/s "
                        "(vs iperf3 loopback)", iperf3)}
    results = []
    for name in [m for m in a.measures.split(",") if m]:
        fn, what, other = fns[name]
        kit.log(f"paired {name}: 1 discarded warm-up each, then {rounds} rounds")
        for t in (ferry, other):
            kit.settle()
            fn(t)
        rows = []
        for r in range(rounds):
            order = (ferry, other) if r % 2 == 0 else (other, ferry)
            got = {}
            for t in order:
                kit.settle()
                got[t.label] = fn(t)
            ratio = got["ferry"] / got[other.label]
            rows.append((got["ferry"], got[other.label], ratio))
            kit.log(f"  round {r + 1}/{rounds} ({order[0].label} first): ferry {got['ferry']:.0f}"
                    f"  {other.label} {got[other.label]:.0f}  ratio {ratio:.2f}")
        med = lambda i: statistics.median(x[i] for x in rows)   # noqa: E731
        results.append({"measure": name, "what": what, "peer": other.label, "rounds": rows,
                        "ferry_median": med(0), "peer_median": med(1), "ratio_median": med(2),
                        "ratio_min": min(x[2] for x in rows), "ratio_max": max(x[2] for x in rows)})
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "paired.jsonl"), "a") as fh:
        for res in results:
            fh.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **res}) + "\n")
    lines = ["", f"Paired with {peer.label} (both servers up at once, one rep each per round, "
             f"alternating order; `bench/paired.py`, {rounds} rounds; RETR is paired with "
             "iperf3, its target's reference):", "",
             "| measure | Ferry (median) | other (median) | Ferry/other: median of "
             "the rounds' ratios [min–max] |", "|---|---|---|---|"]
    for res in results:
        lines.append(f"| {res['what']} | {res['ferry_median']:,.0f} | {res['peer']} "
                     f"{res['peer_median']:,.0f} | **{res['ratio_median']:.2f}x** "
                     f"[{res['ratio_min']:.2f}–{res['ratio_max']:.2f}] |")
    with open(os.path.join(a.out, "paired.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
