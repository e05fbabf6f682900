#!/usr/bin/env bash
# How long a large configuration takes to load, measured, never asserted.
#
#   bash bench/load.sh                 # 100,000 mailboxes (and 10,000 and 20,000 for the slope)
#   SIZES="5000 50000" bash bench/load.sh
#
# For each size it writes a configuration of that many mailboxes (10 host names, password from
# the environment) and measures:
#   validate  wall time and peak RSS of `mailprobe validate` (GNU time);
#   run       seconds from the start of `mailprobe run` until /healthz answers, and until /readyz
#             answers 200 (the configuration loaded and every mailbox scheduled), and the RSS then.
# No mail server is needed: the mailboxes' first checks are spread over the interval (5 min), so
# none starts within the measurement. Builds mailprobe in release unless MAILPROBE names a binary.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-10000 20000 100000}
PORT=${PORT:-19926}
BIN=${MAILPROBE:-target/release/mailprobe}
if [ -z "${MAILPROBE:-}" ]; then
  cargo build --release --locked --bin mailprobe >&2
fi
command -v /usr/bin/time >/dev/null || { echo "bench: needs GNU time (Debian package time)" >&2; exit 1; }
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

config() { # N FILE
  python3 - "$1" "$2" "$PORT" <<'PY'
import sys
n, path, port = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(path, "w") as f:
    f.write(f"interval: 5m\ntimeout: 30s\nconcurrency: 32\nlisten: 127.0.0.1:{port}\nmailboxes:\n")
    for i in range(n):
        f.write(f"  - name: mb{i}\n    imap: m{i % 10}.lab.test:993\n    imap_security: tls\n"
                f"    connect_to: 127.0.0.1\n    user: user{i}@lab.test\n"
                f"    password: {{ env: BENCH_PASSWORD }}\n")
PY
}

now() { date +%s.%N; }
printf '| mailboxes | validate wall | validate peak RSS | run: /healthz after | run: /readyz after | run RSS when ready |\n'
printf '|---|---|---|---|---|---|\n'
for n in $SIZES; do
  file=$work/c$n.yaml
  config "$n" "$file"
  chmod 600 "$file"
  out=$(BENCH_PASSWORD=x /usr/bin/time -f '%e %M' "$BIN" validate --config "$file" 2>&1 >/dev/null | tail -1)
  v_wall=${out% *}; v_rss=${out#* }
  t0=$(now)
  BENCH_PASSWORD=x MAILPROBE_LOG=error "$BIN" run --config "$file" >/dev/null 2>&1 &
  pid=$!
  until curl -fs -o /dev/null -m 1 "http://127.0.0.1:$PORT/healthz"; do
    sleep 0.05; kill -0 "$pid" 2>/dev/null || { echo "bench: run exited" >&2; exit 1; }
  done
  t1=$(now)
  until curl -fs -o /dev/null -m 1 "http://127.0.0.1:$PORT/readyz"; do sleep 0.05; done
  t2=$(now)
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  printf '| %s | %s s | %s MiB | %.2f s | %.2f s | %s MiB |\n' "$n" "$v_wall" "$((v_rss / 1024))" \
    "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t0" | bc)" "$((rss / 1024))"
done
