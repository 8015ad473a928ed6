#!/usr/bin/env bash
# bench/run.sh [--quick] [--only STEPS] [--reps N] [--no-install] [--out DIR]
#
# Ferry (ferryd) against the reference FTP servers of the peer kit in ../shared/bench/peers
# (relative to the repository root), on loopback, one server at a time, back to back:
#   physical      iperf3 loopback + dd page-cache limits          (kit: measure.sh --physical)
#   ferry         fresh ferryd: kit's verify.sh + measure.sh; then restarted fresh for
#                 bench/extra.py: 10k idle sessions, HASH vs sha256sum, MLSD of 10k entries,
#                 connect+greeting rate, FTPS RETR
#   vsftpd        kit's vsftpd.sh (HASH=sha512): verify + measure; extra: LIST of the same
#                 10k-entry directory, connect+greeting rate
#   vsftpd-stock  vsftpd with its stock password hash (HASH=stock, yescrypt): login rate only
#   vsftpd-tls    bench/vsftpd-tls.sh (vsftpd + explicit FTPS): FTPS RETR
#   pureftpd proftpd pyftpdlib   kit's start script: verify + measure
#   paired        a fresh ferryd and Pure-FTPd up at once, measured in alternation by
#                 bench/paired.py (4 KiB files, STOR; RETR in alternation with iperf3):
#                 ratios that survive the host's drift
# Every server measured for RETR/STOR by the kit is also measured by extra.py's retr/stor,
# which report the data-phase rate beside the kit's (see extra.py: curl can stall ~200 ms
# before the data connection with fast servers, which the kit's figure includes), and by
# retr-libcurl/stor-libcurl: the kit's total-time definition with a current libcurl (pycurl,
# installed into a venv at $BENCH_VENV, default /var/tmp/ferry-bench-venv), which has no stall.
# then prints one table (bench/report.py) and writes everything to bench/results/<date>-<time>/:
# measure.jsonl (kit format), extra.jsonl, run.log, ferryd-*.log, machine.txt, table.md,
# plot.png (if python3 has matplotlib).
#
#   --quick        small sizes, 1 rep, no warm-up (for iterating on the harness; not numbers)
#   --only LIST    comma-separated steps from the list above (default: all)
#   --reps N       repetitions per measure (default 3; the medians are reported)
#   --no-install   never run the kit's install.sh (fail instead when a peer is missing)
#   --out DIR      results directory (default bench/results/<date>-<time>)
#
# Needs root (the kit's start scripts create a local user and chroot), bash, python3, curl,
# iperf3, openssl, cargo. Ports: ferryd 127.0.0.1:2125, passive 14000-14999; the peers use
# the kit's ports (2121-2124, passive 10000-13999). Every server started here is stopped by
# its PID (also on Ctrl-C); temp dirs are removed.
set -uo pipefail
REPO=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
BENCH=$REPO/bench
PEERS=${PEERS_DIR:-$(dirname "$REPO")/shared/bench/peers}
ALL_STEPS=physical,ferry,vsftpd,vsftpd-stock,vsftpd-tls,pureftpd,proftpd,pyftpdlib,paired
QUICK=0; STEPS=$ALL_STEPS; REPS=3; INSTALL=1; OUT=
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --only) STEPS=$2; shift ;;
    --only=*) STEPS=${1#--only=} ;;
    --reps) REPS=$2; shift ;;
    --no-install) INSTALL=0 ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | grep '^#' | cut -c3-; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for s in ${STEPS//,/ }; do
  case ",$ALL_STEPS," in *",$s,"*) ;; *) echo "unknown step '$s' (steps: $ALL_STEPS)" >&2; exit 2 ;; esac
done
want() { case ",$STEPS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

[ -x "$PEERS/measure.sh" ] || { echo "peer kit not found at $PEERS (set PEERS_DIR)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root: the peer servers need a local user and chroot" >&2; exit 1; }

FERRY_PORT=2125
declare -A PORTS=([vsftpd]=2121 [pureftpd]=2122 [proftpd]=2123 [pyftpdlib]=2124)
if [ "$QUICK" = 1 ]; then
  REPS=1
  DATA=/var/tmp/ferry-bench-quick       # the kit's 1 GiB big.bin stays untouched
  BIG_MIB=128
  MEASURE_ARGS=(--reps 1 --warmup 0 --big-mib $BIG_MIB --small-n 200 --idle 50 --logins 20 --data "$DATA")
  PHYS_ARGS=(--reps 1 --data "$DATA" --big-mib $BIG_MIB)
  EXTRA_ARGS=(--reps 1 --warmup 0 --big-mib $BIG_MIB --sessions 1000 --list-n 2000 --conn-n 500
              --retr-mib 20 --data "$DATA")
else
  DATA=/var/tmp/ftpbench-data            # the kit's default data dir (big.bin = 1 GiB random)
  BIG_MIB=1024
  MEASURE_ARGS=(--reps "$REPS" --data "$DATA")
  PHYS_ARGS=(--reps "$REPS" --data "$DATA")
  EXTRA_ARGS=(--reps "$REPS" --big-mib $BIG_MIB --data "$DATA")
fi

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-$BENCH/results/$STAMP$([ "$QUICK" = 1 ] && echo -quick)}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/run.log") 2>&1

FERRY_PID=; FTMP=; CURRENT_PEER=
stop_ferry() {
  [ -n "$FERRY_PID" ] || return 0
  if kill -0 "$FERRY_PID" 2>/dev/null; then
    kill -TERM "$FERRY_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$FERRY_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$FERRY_PID" 2>/dev/null && echo "ferryd: had to SIGKILL pid $FERRY_PID"
  fi
  wait "$FERRY_PID" 2>/dev/null
  echo "ferryd: stopped pid $FERRY_PID"
  FERRY_PID=
}
cleanup() {
  stop_ferry
  if [ -n "$CURRENT_PEER" ]; then "$CURRENT_PEER" stop || true; CURRENT_PEER=; fi
  [ -n "$FTMP" ] && rm -rf "$FTMP"
  FTMP=
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

section() { echo; echo "=================== $* ($(date +%H:%M:%S))"; }

# ---------------------------------------------------------------- peers + build
section "set-up"
peers_missing() {
  [ -x /usr/sbin/vsftpd ] && [ -x /opt/ftp-peers/pure-ftpd/usr/sbin/pure-ftpd ] \
    && [ -x /opt/ftp-peers/proftpd/usr/sbin/proftpd ] && python3 -c 'import pyftpdlib' 2>/dev/null \
    && command -v iperf3 >/dev/null && command -v curl >/dev/null && return 1
  return 0
}
if peers_missing; then
  [ "$INSTALL" = 1 ] || { echo "peers missing and --no-install given"; exit 1; }
  echo "peers missing: running $PEERS/install.sh"
  "$PEERS/install.sh" || { echo "install.sh failed"; exit 1; }
fi
for p in 2121 2122 2123 2124 $FERRY_PORT; do
  if ss -ltnH "sport = :$p" | grep -q .; then
    echo "port $p is already in use - stop that server first:"; ss -ltnpH "sport = :$p"; exit 1
  fi
done
# A current libcurl (pycurl's wheel bundles one) for the retr-libcurl/stor-libcurl measures:
# curl 7.88 stalls ~200 ms before fast servers' data connections (see bench/libcurl_xfer.py).
VENV=${BENCH_VENV:-/var/tmp/ferry-bench-venv}
XFER=(retr stor retr-raw)
if { [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"; } \
   && { "$VENV/bin/python" -c 'import pycurl' 2>/dev/null || "$VENV/bin/pip" install -q pycurl; } \
   && "$VENV/bin/python" -c 'import pycurl; print("libcurl client:", pycurl.version)'; then
  EXTRA_ARGS+=(--libcurl-python "$VENV/bin/python")
  XFER+=(retr-libcurl stor-libcurl)
else
  echo "no pycurl in $VENV: the libcurl rows are skipped"
fi
XFERS=$(IFS=,; echo "${XFER[*]}")
echo "building ferryd (release)"
( cd "$REPO" && cargo build --release -p ferry-server ) || { echo "cargo build failed"; exit 1; }
FERRYD=${CARGO_TARGET_DIR:-$REPO/target}/release/ferryd
[ -x "$FERRYD" ] || { echo "no $FERRYD"; exit 1; }

{
  echo "date: $(date -Iseconds)"
  echo "host: $(hostname)"
  echo "cores: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "kernel: $(uname -r)"
  echo "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
  echo "ferry: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet HEAD -- crates 2>/dev/null || echo '+dirty')"
  echo "ferry_changes: $(git -C "$REPO" status --short -- crates 2>/dev/null | awk '{print $2}' | tr '\n' ' ')"
  echo "command: bench/run.sh $([ "$QUICK" = 1 ] && echo '--quick ')--reps $REPS$([ "$STEPS" != "$ALL_STEPS" ] && echo " --only $STEPS")"
  echo "loadavg: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"
echo "results -> $OUT"
M=$OUT/measure.jsonl; X=$OUT/extra.jsonl

# ------------------------------------------------------------------- helpers
start_ferry() {   # $1 = name of this start (log file suffix)
  "$FERRYD" --config "$FTMP/ferry.toml" serve > "$OUT/ferryd-$1.stdout" 2> "$OUT/ferryd-$1.log" &
  FERRY_PID=$!
  for _ in $(seq 1 200); do
    grep -q "ferryd listening on" "$OUT/ferryd-$1.stdout" 2>/dev/null && break
    kill -0 "$FERRY_PID" 2>/dev/null || { echo "ferryd exited during start-up:"; cat "$OUT/ferryd-$1.log"; FERRY_PID=; return 1; }
    sleep 0.1
  done
  grep -q "ferryd listening on" "$OUT/ferryd-$1.stdout" || { echo "ferryd did not start in 20 s"; return 1; }
  echo "ferryd started: pid $FERRY_PID ($1), $(grep -h 'listening\|certificate' "$OUT/ferryd-$1.stdout" | tr '\n' ' ')"
}

ferry_setup() {   # fresh temp data dir + config + the bench user; sets FTMP and D
  FTMP=$(mktemp -d /tmp/ferry-bench.XXXXXX)
  D=$FTMP/data
  mkdir -p "$D"
  cat > "$FTMP/ferry.toml" <<EOF
listen = "127.0.0.1:$FERRY_PORT"
data_dir = "$D"
passive_ports = "14000-14999"
max_sessions = 20000
max_sessions_per_ip = 20000
# extra.py opens 10,000 sessions from one address with 200 logins in flight
max_unauthenticated = 20000
max_unauthenticated_per_ip = 20000
# as the peers, which do not flush uploads before 226; bench/durability.py measures the cost
# of the default (sync_uploads = true) separately
sync_uploads = false
# as the peers (vsftpd idle_session_timeout=600): opening 10,000 argon2id logins takes minutes
idle_timeout_secs = 600
shutdown_grace_secs = 5
# as the kit's vsftpd (xferlog_enable=NO): measure the server, not its logger; BENCHMARKS.md
# gives the cost of log = "info" (a line per session and per transfer)
log = "warn"
EOF
  echo benchpass | "$FERRYD" --config "$FTMP/ferry.toml" --data-dir "$D" user add bench --password-stdin \
    || { echo "ferryd user add failed"; exit 1; }
}

measure() {   # PORT LABEL [extra measure.py args]
  # Two invocations of the kit's measure.py (d,a,b,e then c): it stops at the first measure
  # that fails, and c (2,000 passive data connections per rep) is the one most likely to, so
  # a failure there does not cost the login rate. report.py merges the two lines per label.
  local port=$1 label=$2; shift 2
  local onlys=("--only d,a,b,e" "--only c")
  case " $* " in *" --only "*) onlys=("") ;; esac
  for o in "${onlys[@]}"; do
    # shellcheck disable=SC2086
    timeout 1800 "$PEERS/measure.sh" 127.0.0.1 "$port" bench benchpass --label "$label" \
      --json "$M" "${MEASURE_ARGS[@]}" $o "$@" || echo "$label: measure ${o:-$*} FAILED (rc=$?)"
  done
}

extra() {   # PORT LABEL [extra.py args]
  local port=$1 label=$2; shift 2
  timeout 2400 python3 "$BENCH/extra.py" 127.0.0.1 "$port" --label "$label" --json "$X" \
    "${EXTRA_ARGS[@]}" "$@" > "$OUT/extra-$label.json" || echo "$label: extra FAILED (rc=$?)"
}

verify() {   # PORT LABEL
  timeout 300 "$PEERS/verify.sh" 127.0.0.1 "$1" bench benchpass || { echo "$2: verify FAILED"; return 1; }
}

peer() {   # NAME: kit start script -> verify -> measure -> stop
  local p=$1
  section "$p"
  CURRENT_PEER=$PEERS/$p.sh
  "$PEERS/$p.sh" start || { echo "$p: start FAILED"; CURRENT_PEER=; return; }
  if verify "${PORTS[$p]}" "$p"; then
    measure "${PORTS[$p]}" "$p"
    extra "${PORTS[$p]}" "$p" --root "/srv/ftpbench/$p" --measures "$XFERS"
  fi
  "$PEERS/$p.sh" stop; CURRENT_PEER=
}

# ------------------------------------------------------------------- steps
if want physical; then
  section "physical limits (iperf3, dd)"
  timeout 600 "$PEERS/measure.sh" --physical --json "$M" "${PHYS_ARGS[@]}" || echo "physical: FAILED"
fi

if want ferry; then
  section "ferry"
  ferry_setup
  HOME_=$D/homes/bench
  if start_ferry measure; then
    verify $FERRY_PORT ferry && measure $FERRY_PORT ferry --pid "$FERRY_PID"
    stop_ferry
    # idle memory is only meaningful on a fresh process: start again for the extra measures
    if start_ferry extra; then
      extra $FERRY_PORT ferry --pid "$FERRY_PID" --root "$HOME_" --cacert "$D/tls/cert.pem" \
        --measures "idle10k,hash,mlsd,connect,$XFERS,ftps"
      stop_ferry
    fi
  fi
  rm -rf "$FTMP"; FTMP=
fi

VS_ROOT=/srv/ftpbench/vsftpd
if want vsftpd; then
  section "vsftpd"
  CURRENT_PEER=$PEERS/vsftpd.sh
  if "$PEERS/vsftpd.sh" start; then
    verify 2121 vsftpd && measure 2121 vsftpd
    extra 2121 vsftpd --root "$VS_ROOT" --measures "list,connect,$XFERS"
    "$PEERS/vsftpd.sh" stop
  else
    echo "vsftpd: start FAILED"
  fi
  CURRENT_PEER=
  rm -rf "${VS_ROOT:?}/bench_list10k"
fi

if want vsftpd-stock; then
  section "vsftpd with its stock password hash (HASH=stock): logins only"
  CURRENT_PEER=$PEERS/vsftpd.sh
  if HASH=stock "$PEERS/vsftpd.sh" start; then
    measure 2121 vsftpd-stock --only e
    "$PEERS/vsftpd.sh" stop
  else
    echo "vsftpd-stock: start FAILED"
  fi
  CURRENT_PEER=
fi

if want vsftpd-tls; then
  section "vsftpd with explicit FTPS (bench/vsftpd-tls.sh)"
  CURRENT_PEER=$BENCH/vsftpd-tls.sh
  if "$BENCH/vsftpd-tls.sh" start "$VS_ROOT"; then
    extra 2121 vsftpd-tls --root "$VS_ROOT" --measures ftps \
      --cacert "$(cat /tmp/ftpbench-vsftpd-tls.dir)/cert.pem"
    "$BENCH/vsftpd-tls.sh" stop
  else
    echo "vsftpd-tls: start FAILED"
  fi
  CURRENT_PEER=
fi

for p in pureftpd proftpd pyftpdlib; do
  want $p && peer $p
done

# Ratios that survive the host's drift: Ferry and Pure-FTPd (the best peer of the 4 KiB and
# STOR measures) up at once, measured in alternation by bench/paired.py.
if want paired; then
  section "paired: ferry and pureftpd in alternation (bench/paired.py)"
  if [ "$QUICK" = 1 ]; then
    echo "skipped with --quick (paired.py measures full sizes only)"
  else
    ferry_setup
    if start_ferry paired; then
      CURRENT_PEER=$PEERS/pureftpd.sh
      if "$CURRENT_PEER" start; then
        timeout 1800 python3 "$BENCH/paired.py" --ferry "$FERRY_PORT:$FERRY_PID" \
          --peer "Pure-FTPd:${PORTS[pureftpd]}" --rounds 9 --data "$DATA" --out "$OUT" \
          || echo "paired: FAILED"
        "$CURRENT_PEER" stop
      else
        echo "pureftpd: start FAILED"
      fi
      CURRENT_PEER=
      stop_ferry
    fi
    rm -rf "$FTMP"; FTMP=
  fi
fi

# ------------------------------------------------------------------- report
section "report"
for f in "$OUT"/ferryd-*.log; do
  [ -f "$f" ] || continue
  n=$(grep -c -E ' (WARN|ERROR) ' "$f")
  echo "$(basename "$f"): $(wc -l < "$f") lines, $n WARN/ERROR"
done
if [ -f "$M" ]; then   # the kit's own table, from the lines merged per label
  python3 - "$M" > "$OUT/measure-merged.jsonl" <<'EOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    if line.strip():
        r = json.loads(line)
        rows.setdefault(r["label"], {}).update(r)
for r in rows.values():
    print(json.dumps(r))
EOF
  python3 "$PEERS/report.py" "$OUT/measure-merged.jsonl" > "$OUT/kit-report.md" 2>&1
fi
python3 "$BENCH/report.py" "$OUT" | tee "$OUT/table.md"
[ -f "$OUT/paired.md" ] && tee -a "$OUT/table.md" < "$OUT/paired.md"
if python3 -c 'import matplotlib' 2>/dev/null; then
  python3 "$BENCH/plot.py" "$OUT" && echo "plot: $OUT/plot.png"
else
  echo "(no matplotlib for python3: no plot)"
fi
for f in "$OUT"/ferryd-*.log; do    # keep results small: big logs compressed
  [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt 131072 ] && gzip -9 "$f"
done
echo "results: $OUT"
