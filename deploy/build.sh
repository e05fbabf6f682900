#!/usr/bin/env bash
# Builds mailprobe: the release binary exactly as the container image does (deploy/Dockerfile
# runs this script), so CI can build and test the very same binary without a container engine;
# or the container image itself.
#
#   deploy/build.sh [OUTDIR]                 # the binary; default OUTDIR: target/release
#   VERSION=1.2.3 deploy/build.sh            # what `mailprobe --version` reports (default: Cargo.toml's)
#   deploy/build.sh image REF                # the image REF (e.g. registry.example.com/mailprobe:1.2.3)
#   deploy/build.sh image REF --print        # only print the build command
#
# The image is built by the first of docker, podman or buildah found ($CONTAINER_ENGINE picks
# one), with the OCI labels' build args: VERSION, REVISION (git HEAD, "-dirty" when the tree has
# changes) and SOURCE (Cargo.toml's repository).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = image ]; then
  ref=${2:?usage: deploy/build.sh image REF [--print]}
  version=${VERSION:-$(sed -n 's/^version *= *"\(.*\)".*/\1/p' Cargo.toml | head -n1)}
  source=$(sed -n 's/^repository *= *"\(.*\)".*/\1/p' Cargo.toml | head -n1)
  revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
  if [ "$revision" != unknown ] && [ -n "$(git status --porcelain 2>/dev/null)" ]; then
    revision="$revision-dirty"
  fi
  # An engine that answers: a docker CLI without a daemon cannot build.
  engine=
  for e in ${CONTAINER_ENGINE:-docker podman buildah}; do
    if command -v "$e" >/dev/null 2>&1 && "$e" info >/dev/null 2>&1; then engine=$e; break; fi
  done
  sub=build
  [ "$engine" = buildah ] && sub=bud
  cmd=("${engine:-${CONTAINER_ENGINE:-docker}}" "$sub" -f deploy/Dockerfile
    --build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "SOURCE=$source"
    -t "$ref" .)
  if [ "${3:-}" = --print ]; then
    printf '%q ' "${cmd[@]}"; echo
    exit 0
  fi
  if [ -z "$engine" ]; then
    echo "build.sh: no container engine (docker, podman or buildah) here; on a machine with one, run:" >&2
    printf '  %q' "${cmd[@]}" >&2; echo >&2
    exit 3
  fi
  exec "${cmd[@]}"
fi

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
