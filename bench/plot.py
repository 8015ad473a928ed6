#!/usr/bin/env python3
"""plot.py RESULTS_DIR - RESULTS_DIR/plot.png: throughput (RETR/STOR 1 GiB plain, data phase
and the kit's total-time figure; FTPS RETR) and idle memory per session of Ferry beside the
peers, from the run's measure.jsonl and extra.jsonl; and, when the run has paired.jsonl, the
paired ratios every round gave beside each target (the figures the targets are judged on).
Needs matplotlib (optional for run.sh)."""
import json, os, sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from report import SERVERS, load  # noqa: E402  (same directory: one loader for both)

COLORS = {"ferry": "#d9480f", "vsftpd": "#1c7ed6", "pureftpd": "#37b24d",
          "proftpd": "#7048e8", "pyftpdlib": "#868e96"}


def get(r, *keys):
    for k in keys:
        if not isinstance(r, dict):
            return None
        r = r.get(k)
    return r


def main():
    d = sys.argv[1]
    m, x = load(os.path.join(d, "measure.jsonl")), load(os.path.join(d, "extra.jsonl"))
    groups = [
        ("RETR plain\n(kit, curl total)", lambda s: get(m.get(s), "a_retr_MBps", "median")),
        ("RETR plain\n(data phase)", lambda s: get(x.get(s), "retr", "MBps_data", "median")),
        ("STOR plain\n(kit, curl total)", lambda s: get(m.get(s), "b_stor_MBps", "median")),
        ("STOR plain\n(data phase)", lambda s: get(x.get(s), "stor", "MBps_data", "median")),
        ("FTPS RETR\n(data phase)", lambda s: get(x.get("vsftpd-tls" if s == "vsftpd" else s),
                                                  "ftps", "MBps_data", "median")),
    ]
    paired = []
    paired_path = os.path.join(d, "paired.jsonl")
    if os.path.exists(paired_path):
        with open(paired_path) as f:
            paired = [json.loads(line) for line in f if line.strip()]
    widths = [2.3, 1, 1.1] if paired else [2.3, 1]
    fig, axes = plt.subplots(1, len(widths), figsize=(4.3 * sum(widths), 5.2),
                             gridspec_kw={"width_ratios": widths})
    ax1, ax2 = axes[0], axes[1]
    w = 0.16
    for i, (s, name) in enumerate(SERVERS):
        xs, ys = [], []
        for g, (_, fn) in enumerate(groups):
            v = fn(s)
            if v is not None:
                xs.append(g + (i - 2) * w)
                ys.append(v)
        if ys:
            ax1.bar(xs, ys, w, label=name, color=COLORS[s])
    iperf = get(m.get("physical"), "iperf3_MBps", "median")
    if iperf:
        ax1.axhline(iperf, color="black", ls="--", lw=1)
        ax1.text(len(groups) - 0.5, iperf, f" iperf3 loopback {iperf:,.0f}", va="bottom", ha="right", fontsize=8)
    ax1.set_xticks(range(len(groups)))
    ax1.set_xticklabels([g for g, _ in groups], fontsize=8)
    ax1.set_ylabel("MB/s (1 MB = 1e6 B), median")
    ax1.set_title("1 GiB transfers, one client, loopback (FTPS: vsftpd with TLS on)")
    ax1.legend(fontsize=8)

    names, vals, cols = [], [], []
    for s, name in SERVERS:
        v = get(m.get(s), "d_idle_pss_kib_per_session", "max")
        if v is not None:
            names.append(f"{name}\n(200)")
            vals.append(max(v, 0.01))
            cols.append(COLORS[s])
    i10 = get(x.get("ferry"), "idle10k")
    if i10 and i10.get("pss_kib_per_session") is not None:
        names.append(f"Ferry\n({i10['opened']:,})")
        vals.append(max(i10["pss_kib_per_session"], 0.01))
        cols.append(COLORS["ferry"])
    ax2.bar(range(len(vals)), vals, color=cols)
    for i, v in enumerate(vals):
        ax2.text(i, v, f"{v:,.1f}", ha="center", va="bottom", fontsize=8)
    ax2.set_yscale("log")
    ax2.axhline(4, color="black", ls=":", lw=1)
    ax2.text(len(vals) - 0.5, 4, "target 4 KiB", va="bottom", ha="right", fontsize=8)
    ax2.set_xticks(range(len(vals)))
    ax2.set_xticklabels(names, fontsize=8)
    ax2.set_ylabel("KiB PSS per idle logged-in session (log)")
    ax2.set_title("Memory per idle session (n sessions)")
    if paired:
        plot_paired(axes[2], paired)
    fig.suptitle(f"Ferry vs peers, run {os.path.basename(os.path.normpath(d))}", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(d, "plot.png"), dpi=110)


# Each paired measure's target, as a ratio to the other side of its pair.
PAIRED_TARGETS = {"small": ("4 KiB files\nvs Pure-FTPd", 1.2), "stor": ("STOR\nvs Pure-FTPd", 1.0),
                  "retr": ("RETR curl\nvs iperf3", 0.85), "retr-raw": ("RETR raw\nvs iperf3", 0.85)}


def plot_paired(ax, paired):
    """Every round's ratio as a dot, the median as a bar, the target as a short line."""
    rows = [p for p in paired if p.get("measure") in PAIRED_TARGETS and p.get("rounds")]
    for i, p in enumerate(rows):
        label, target = PAIRED_TARGETS[p["measure"]]
        ratios = sorted(r[2] for r in p["rounds"])
        median = ratios[len(ratios) // 2] if len(ratios) % 2 else \
            (ratios[len(ratios) // 2 - 1] + ratios[len(ratios) // 2]) / 2
        ax.bar(i, median, 0.6, color=COLORS["ferry"], alpha=0.8)
        ax.scatter([i] * len(ratios), ratios, s=10, color="black", zorder=3)
        ax.hlines(target, i - 0.4, i + 0.4, colors="black", linestyles="--", lw=1)
        ax.text(i, median, f"{median:.2f}x", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([PAIRED_TARGETS[p["measure"]][0] for p in rows], fontsize=8)
    ax.set_ylabel("Ferry / other, per round (bar: median; dashed: target)")
    ax.set_title("Paired: both up at once, alternating rounds")


if __name__ == "__main__":
    main()
