#!/usr/bin/env bash
# Runs every test: unit tests, and integration tests against real Dovecot, Postfix, Courier-IMAP,
# an OpenTelemetry collector, Prometheus and Alertmanager, all started by the tests on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Two test threads: the lab servers and the probes share the machine's 2 cores.
cargo test --workspace --locked -- --test-threads=2
