#!/usr/bin/env bash
# Builds the release binary of mailprobe exactly as the container image does (deploy/Dockerfile
# runs this script), so CI can build and test the very same binary without a Docker engine.
#
#   deploy/build.sh [OUTDIR]          # default OUTDIR: target/release
#   VERSION=1.2.3 deploy/build.sh     # what `mailprobe --version` reports (default: Cargo.toml's)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/release}
# The binary reads MAILPROBE_VERSION at compile time (option_env!, src/cli.rs).
if [ -n "${VERSION:-}" ]; then
  export MAILPROBE_VERSION=$VERSION
fi
cargo build --release --locked --bin mailprobe
if [ "$out" != target/release ]; then
  install -D -m 0755 target/release/mailprobe "$out/mailprobe"
fi
"$out/mailprobe" --version
