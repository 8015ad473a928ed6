#!/usr/bin/env python3
"""report.py RESULTS_DIR - one markdown table from a bench/run.sh run: each measure, each
server (medians of the run's repetitions), the machine reference where there is one
(iperf3 loopback for RETR, sha256sum for HASH) and the ratios Ferry/vsftpd, Ferry/best peer
and Ferry/reference, with the issue-6 target and whether this run meets it.

Reads RESULTS_DIR/measure.jsonl (the peer kit's measure.py lines), extra.jsonl (bench/extra.py)
and ferryd-*.log[.gz] (for a WARN/ERROR summary). Stdlib only."""
import collections, glob, gzip, json, os, re, sys

SERVERS = [("ferry", "Ferry"), ("vsftpd", "vsftpd"), ("pureftpd", "Pure-FTPd"),
           ("proftpd", "ProFTPD"), ("pyftpdlib", "pyftpdlib")]
PEERS = [s for s, _ in SERVERS if s != "ferry"]


def load(path):
    rows = {}
    if os.path.exists(path):
        for line in open(path):
            if line.strip():
                r = json.loads(line)
                # several lines per label (run.sh calls measure.py twice): merged, later wins
                rows.setdefault(r["label"], {}).update(r)
    return rows


def fmt(v):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_ratio(v):
    return "–" if v is None else f"{v:.2f}x"


def med(r, key, agg="median"):
    v = r.get(key) if r else None
    return v[agg] if isinstance(v, dict) and agg in v else None


def spread(r, key):
    v = r.get(key) if r else None
    if not isinstance(v, dict) or "min" not in v:
        return None
    return f"{fmt(v['median'])} [{fmt(v['min'])}–{fmt(v['max'])}]"


def main():
    d = sys.argv[1]
    m = load(os.path.join(d, "measure.jsonl"))
    x = load(os.path.join(d, "extra.jsonl"))
    phys = m.get("physical")
    iperf = med(phys, "iperf3_MBps")
    dd = med(phys, "dd_MBps")
    rows = []      # (name, better, {server: value}, ref, ref_label, target_text, met, spreads)

    def kit_row(name, key, better, agg="median"):
        vals = {s: med(m.get(s), key, agg) for s, _ in SERVERS}
        sp = {s: spread(m.get(s), key) for s, _ in SERVERS}
        return name, better, vals, sp

    def ratios(vals, better, ref=None):
        f = vals.get("ferry")
        peers = [vals[p] for p in PEERS if vals.get(p)]
        best = (max(peers) if better == "hi" else min(peers)) if peers else None
        r = lambda b: f / b if f is not None and b else None           # noqa: E731
        return r(vals.get("vsftpd")), r(best), r(ref)

    fx, vt = x.get("ferry"), x.get("vsftpd-tls")

    def extra_row(name, measure, key, labels=None):
        labels = labels or {s: s for s, _ in SERVERS}
        vals = {s: med((x.get(lbl) or {}).get(measure), key) for s, lbl in labels.items()}
        sp = {s: spread((x.get(lbl) or {}).get(measure), key) for s, lbl in labels.items()}
        return name, vals, sp

    # RETR and STOR, plain: the kit's row (curl 7.88, total time), then extra.py's data phase
    # and total time with a current libcurl. RETR is judged against iperf3, STOR the best peer.
    for verb, kit_key, extra_key, ref, ref_label, target, goal in (
            ("RETR", "a_retr_MBps", "retr", iperf, "iperf3", ">= 0.85x iperf3", 0.85),
            ("STOR", "b_stor_MBps", "stor", None, "", ">= 1.0x best peer", 1.0)):
        name, better, vals, sp = kit_row(f"{verb} 1 GiB, plain, MB/s", kit_key, "hi")
        found = [(name, vals, sp)]
        extras = [("data phase only", extra_key, "MBps_data"),
                  ("libcurl 8 (total time)", f"{extra_key}-libcurl", "MBps")]
        if verb == "RETR":
            extras.append(("data phase, 128 KiB reads (raw client)", "retr-raw", "MBps"))
        for label, measure, key in extras:
            found.append(extra_row(f"{verb} 1 GiB, plain, {label}, MB/s", measure, key))
        for name, vals, sp in found:
            if not any(v is not None for v in vals.values()):
                continue
            rv, rb, rr = ratios(vals, "hi", ref)
            judged = rr if ref else rb
            rows.append((name, "hi", vals, ref, ref_label, rv, rb, rr,
                         target, None if judged is None else judged >= goal, sp))
    # FTPS (the vsftpd column holds vsftpd with TLS on)
    for key, name in (("MBps", "RETR 1 GiB, FTPS (PROT P), MB/s (vsftpd: TLS on)"),
                      ("MBps_data", "RETR 1 GiB, FTPS, data phase only, MB/s")):
        _, vals, sp = extra_row(name, "ftps", key, {"ferry": "ferry", "vsftpd": "vsftpd-tls"})
        rv, rb, rr = ratios(vals, "hi")
        rows.append((name, "hi", vals, None, "", rv, None, None,
                     ">= 1.0x vsftpd TLS", None if rv is None else rv >= 1.0, sp))
    # small files
    name, better, vals, sp = kit_row("2,000 x 4 KiB RETR, 16 clients, files/s", "c_small_files_per_s", "hi")
    rv, rb, rr = ratios(vals, better)
    rows.append((name, better, vals, None, "", rv, rb, rr,
                 ">= 1.2x best peer", None if rb is None else rb >= 1.2, sp))
    # connect rate
    vx = x.get("vsftpd")
    vals = {"ferry": med((fx or {}).get("connect"), "per_s"), "vsftpd": med((vx or {}).get("connect"), "per_s")}
    sp = {"ferry": spread((fx or {}).get("connect"), "per_s"), "vsftpd": spread((vx or {}).get("connect"), "per_s")}
    rv, rb, rr = ratios(vals, "hi")
    rows.append(("connect + 220 greeting, per s", "hi", vals, None, "", rv, None, None,
                 ">= 10x vsftpd", None if rv is None else rv >= 10, sp))
    # logins: peers with SHA-512 crypt (the kit's default) and vsftpd stock
    name, better, vals, sp = kit_row("logins/s (Ferry argon2id; peers SHA-512 crypt)", "e_logins_per_s", "hi")
    rv, rb, rr = ratios(vals, better)
    rows.append((name, better, vals, None, "", rv, rb, rr, "(context)", None, sp))
    vs = m.get("vsftpd-stock")
    vals = {"ferry": med(m.get("ferry"), "e_logins_per_s"), "vsftpd": med(vs, "e_logins_per_s")}
    sp = {"ferry": spread(m.get("ferry"), "e_logins_per_s"), "vsftpd": spread(vs, "e_logins_per_s")}
    rv, rb, rr = ratios(vals, "hi")
    rows.append(("logins/s (Ferry argon2id; vsftpd stock yescrypt)", "hi", vals, None, "", rv, None, None,
                 ">= 1.0x vsftpd stock", None if rv is None else rv >= 1.0, sp))
    # idle memory (kit: 200 sessions, MAX over reps = first rep on a fresh process)
    name, better, vals, sp = kit_row("idle PSS KiB/session (200 sessions)", "d_idle_pss_kib_per_session", "lo", "max")
    rv, rb, rr = ratios(vals, better)
    f = vals.get("ferry")
    rows.append((name, better, vals, None, "", rv, rb, rr, "<= 4 KiB", None if f is None else f <= 4, sp))
    name, better, vals, sp = kit_row("idle RSS KiB/session (200 sessions)", "d_idle_rss_kib_per_session", "lo", "max")
    rv, rb, rr = ratios(vals, better)
    rows.append((name, better, vals, None, "", rv, rb, rr, "(context)", None, sp))
    # 10k idle sessions
    i10 = (fx or {}).get("idle10k")
    if i10:
        held_ok = (i10.get("held", 0) >= i10["sessions_wanted"] and i10.get("new_login_ok")
                   and i10.get("retr_ok"))
        txt = (f"held {i10.get('held')}/{i10['sessions_wanted']}; new login "
               f"{'ok ' + fmt(i10.get('new_login_s')) + ' s' if i10.get('new_login_ok') else 'FAILED'}; "
               f"RETR {'ok ' + fmt(i10.get('retr_s')) + ' s' if i10.get('retr_ok') else 'FAILED'}")
        rows.append((f"{i10['sessions_wanted']:,} idle sessions: PSS KiB/session", "lo",
                     {"ferry": i10.get("pss_kib_per_session")}, None, "", None, None, None,
                     txt, bool(held_ok), {}))
    # listing
    vals = {"ferry": med((fx or {}).get("mlsd"), "secs"), "vsftpd": med((vx or {}).get("list"), "secs")}
    vals = {k: v * 1000 if v is not None else None for k, v in vals.items()}
    n_list = ((fx or {}).get("mlsd") or (vx or {}).get("list") or {}).get("lines")
    sp = {}
    rv, rb, rr = ratios(vals, "lo")
    rows.append((f"MLSD (vsftpd: LIST) of {n_list or '10,000'}-entry dir, ms", "lo", vals, None, "",
                 rv, None, None, "<= 1.0x vsftpd LIST", None if rv is None else rv <= 1.0, sp))
    # HASH
    h = (fx or {}).get("hash")
    hv = med(h, "hash_MBps")
    ref = med(h, "sha256sum_MBps")
    rr = hv / ref if hv and ref else None
    rows.append((f"{(h or {}).get('verb', 'HASH')} SHA-256 of cached 1 GiB, MB/s", "hi", {"ferry": hv}, ref,
                 "sha256sum", None, None, rr, ">= 0.9x sha256sum", None if rr is None else rr >= 0.9,
                 {"ferry": spread(h, "hash_MBps")} if h else {}))

    # ---------------------------------------------------------------- print
    mt = {}
    mp = os.path.join(d, "machine.txt")
    if os.path.exists(mp):
        for line in open(mp):
            k, _, v = line.partition(":")
            mt[k.strip()] = v.strip()
    print(f"Run {os.path.basename(os.path.normpath(d))}: {mt.get('date', '?')}, {mt.get('cores', '?')} cores "
          f"({mt.get('cpu', '?')}), kernel {mt.get('kernel', '?')}, ferry {mt.get('ferry', '?')}")
    print(f"Command: {mt.get('command', '?')}")
    if mt.get("ferry_changes"):
        print(f"Uncommitted changes in the measured tree: {mt['ferry_changes']}")
    if "--quick" in mt.get("command", ""):
        print("QUICK RUN: 128 MiB instead of 1 GiB, 1,000 instead of 10,000 sessions, 2,000 listing "
              "entries, 50 idle sessions, 1 rep: a harness check, not numbers to quote.")
    reps = (m.get("ferry") or {}).get("reps")
    print(f"Medians of {reps or '?'} reps (memory: max over reps); 1 MB = 1e6 B; "
          f"ratios Ferry/other from this same run.\n")
    hdr = ["measure"] + [n for _, n in SERVERS] + ["machine ref", "Ferry/vsftpd", "Ferry/best peer",
                                                   "Ferry/ref", "target", "met"]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for (name, better, vals, ref, ref_label, rv, rb, rr, target, met, _sp) in rows:
        arrow = "↑" if better == "hi" else "↓"
        cells = [f"{name} {arrow}"] + [fmt(vals.get(s)) for s, _ in SERVERS]
        if met is None and vals.get("ferry") is None and target != "(context)" and "ferry" in m:
            verdict = "**no** (no Ferry result: failed, see run.log)"
        else:
            verdict = "–" if met is None else ("**yes**" if met else "**no**")
        cells += [f"{fmt(ref)} ({ref_label})" if ref is not None else "–",
                  fmt_ratio(rv), fmt_ratio(rb), fmt_ratio(rr), target, verdict]
        print("| " + " | ".join(cells) + " |")
    print("\n↑ higher is better, ↓ lower is better. Best peer = best of vsftpd, Pure-FTPd, ProFTPD, "
          "pyftpdlib in that row (pyftpdlib logs in with plain text under HASH=stock only; here all "
          "peers verify SHA-512 crypt).")
    if phys:
        print(f"Machine: iperf3 loopback 1 stream {spread(phys, 'iperf3_MBps')} MB/s; "
              f"dd 1 GiB page cache -> /dev/null {spread(phys, 'dd_MBps')} MB/s.")

    print("\nSpread, median [min–max] per server:")
    for (name, _b, _v, _r, _rl, _1, _2, _3, _t, _m, sp) in rows:
        parts = [f"{n} {sp[s]}" for s, n in SERVERS if sp.get(s)]
        if parts:
            print(f"- {name}: " + "; ".join(parts))

    if i10:
        sa, sb = i10.get("server_after", {}), i10.get("server_before", {})
        print(f"\n10k idle sessions (Ferry): opened {i10.get('opened')} in {i10.get('open_secs')} s "
              f"({i10.get('logins_per_s')} logins/s, {i10.get('login_cpu_ms_per_session')} ms server CPU "
              f"per login), errors {i10.get('open_errors') or 'none'}, dropped while held "
              f"{i10.get('dropped_while_held')}; server PSS {sb.get('pss_kib')} -> {sa.get('pss_kib')} KiB, "
              f"RSS {sb.get('rss_kib')} -> {sa.get('rss_kib')} KiB, fds {sa.get('fds')}, threads "
              f"{sa.get('threads')}; new login while held: "
              f"{i10.get('new_login_s') if i10.get('new_login_ok') else i10.get('new_login_error')}; "
              f"RETR while held: {str(i10.get('retr_MBps')) + ' MB/s' if i10.get('retr_ok') else 'failed'}; close of all: "
              f"{i10.get('teardown_s')} s, PSS after {i10.get('server_after_close', {}).get('pss_kib')} KiB.")
    for lbl, r in x.items():
        if r.get("failures"):
            print(f"\nextra.py FAILURES for {lbl}: {r['failures']}")
        c = r.get("connect")
        if c and c.get("errors"):
            print(f"connect errors for {lbl}: {c['errors']}")
        t = r.get("ftps")
        if t and t.get("cipher"):
            print(f"FTPS {lbl}: {t['cipher']}")
    for client, keys in (("curl 7.88", ("retr", "stor", "ftps")), ("libcurl 8", ("retr-libcurl", "stor-libcurl"))):
        stalls = []
        for lbl, r in x.items():
            pres = [p for k in keys for p in (r.get(k) or {}).get("pretransfer_s", [])]
            if pres:
                slow = sum(p > 0.15 for p in pres)
                stalls.append(f"{lbl} {slow}/{len(pres)} (max {max(pres) * 1000:.0f} ms)")
        if stalls:
            print(f"{client} transfers with time_pretransfer > 150 ms (login + EPSV + the client's "
                  "data-connection stall): " + "; ".join(stalls))
    noise = []
    for s, n in SERVERS:
        r = m.get(s)
        if r:
            fr = [f"{k[0]} {r[k]['foreign_cpu_frac']:.0%}" for k in
                  ("a_retr_MBps", "b_stor_MBps", "c_small_files_per_s", "e_logins_per_s")
                  if k in r and "foreign_cpu_frac" in r[k]]
            noise.append(f"{n}: " + ", ".join(fr))
    if noise:
        print("\nForeign CPU (other processes on the machine) during a/b/c/e: " + "; ".join(noise))

    logs = sorted(glob.glob(os.path.join(d, "ferryd-*.log")) + glob.glob(os.path.join(d, "ferryd-*.log.gz")))
    for p in logs:
        op = gzip.open if p.endswith(".gz") else open
        kinds = collections.Counter()
        n = 0
        with op(p, "rt", errors="replace") as fh:
            for line in fh:
                n += 1
                mm = re.search(r"\s(WARN|ERROR)\s+(.*)", line)
                if mm:
                    msg = re.sub(r"\{[^}]*\}", "{..}", mm.group(2))
                    msg = re.sub(r"\d+(\.\d+)?", "N", msg)[:160]
                    kinds[f"{mm.group(1)} {msg}"] += 1
        print(f"\n{os.path.basename(p)}: {n} lines, {sum(kinds.values())} WARN/ERROR"
              + "".join(f"\n  {c} x {k}" for k, c in kinds.most_common(8)))


if __name__ == "__main__":
    main()
