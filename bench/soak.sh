#!/usr/bin/env bash
# Soak: mailprobe run with many mailboxes against the lab for a long time, while its admin port
# is hammered (scrapes, health probes, slowloris connections, connection floods) and its OTLP
# collector is down for part of the run. Measured, never asserted: it prints a sample every
# SAMPLE seconds and a summary.
#
#   bash bench/soak.sh                                   # 1,000 mailboxes, 30 min, collector down 10 min
#   MAILBOXES=100 DURATION=180 OUTAGE=60 INTERVAL=30s bash bench/soak.sh   # the short run
#
# Summary: RSS and open files (first sample after the first round, last, max), the runs that came
# due and how late the latest of them started (mailprobe_schedule_lag_seconds), the checks
# finished, an upper bound of the runs due without jitter, /healthz
# answers slower than 1 s or missing during the hammering, and whether OTLP export resumed after
# the outage (failures stop growing, the collector receives metrics again).
#
# Needs the lab's Debian packages (.ci/install-packages) and rotel-agent (pip install rotel).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

MAILBOXES=${MAILBOXES:-1000}
DURATION=${DURATION:-1800}
OUTAGE=${OUTAGE:-600}
INTERVAL=${INTERVAL:-2m}
SAMPLE=${SAMPLE:-10}
USERS=${USERS:-99}
IMAPS_PORT=${IMAPS_PORT:-17993} IMAP_PORT=${IMAP_PORT:-17143}
ADMIN_PORT=${ADMIN_PORT:-19927} GRPC_PORT=${GRPC_PORT:-14317} HTTP_PORT=${HTTP_PORT:-14318}
BIN=${MAILPROBE:-target/release/mailprobe}
if [ -z "${MAILPROBE:-}" ]; then
  cargo build --release --locked --bin mailprobe >&2
fi

log() { echo "[soak $(date +%H:%M:%S)] $*" >&2; }
die() { echo "soak: $*" >&2; exit 1; }
work=$(mktemp -d /tmp/mailprobe-soak.XXXXXX)
# The lab's own tree: Dovecot's unprivileged processes must reach the state (mktemp's is 0700).
certs=$root/tests/lab/state/certs state=$root/tests/lab/state/soak
pids=()
rotel_pid_file=$work/rotel.pid
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$rotel_pid_file" ] && kill "$(cat "$rotel_pid_file")" 2>/dev/null || true
  bash tests/lab/dovecot.sh stop "$state/dovecot" >/dev/null 2>&1 || true
  log "files kept in $work"
}
trap cleanup EXIT

rotel() {
  if command -v rotel-agent >/dev/null; then echo rotel-agent; return; fi
  python3 -c "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))" 2>/dev/null \
    || die "rotel-agent not found: pip install --pre rotel"
}
ROTEL=$(rotel)
collector_up() {
  rm -f "$rotel_pid_file"
  # Where this instance's lines begin in the shared log.
  { [ -f "$work/rotel.log" ] && wc -l <"$work/rotel.log" || echo 0; } >"$work/rotel.mark"
  "$ROTEL" start --otlp-grpc-endpoint "127.0.0.1:$GRPC_PORT" --otlp-http-endpoint "127.0.0.1:$HTTP_PORT" \
    --exporter blackhole --debug-log metrics --daemon --log-file "$work/rotel.log" \
    --pid-file "$rotel_pid_file" >/dev/null 2>&1
  for _ in $(seq 100); do [ -s "$rotel_pid_file" ] && break; sleep 0.1; done
}
collector_down() { [ -f "$rotel_pid_file" ] && kill "$(cat "$rotel_pid_file")" 2>/dev/null; rm -f "$rotel_pid_file"; }

# --- the lab ----------------------------------------------------------------------------------
log "starting the lab"
bash tests/lab/certs.sh "$certs" >&2
mkdir -p "$state"
LAB_OWNER_PID=$$ LAB_CERTS=$certs LAB_CERT=wildcard LAB_IMAP_PORT=$IMAP_PORT \
  LAB_IMAPS_PORT=$IMAPS_PORT LAB_MAX_USERIP=5000 LAB_EXTRA_USERS=$USERS \
  bash tests/lab/dovecot.sh start "$state/dovecot" >&2
collector_up

# --- the daemon -------------------------------------------------------------------------------
config=$work/mailprobe.yaml
python3 - "$MAILBOXES" "$USERS" "$config" <<PY
import sys
n, users, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with open(path, "w") as f:
    f.write(f"""interval: $INTERVAL
timeout: 30s
concurrency: 32
listen: 127.0.0.1:$ADMIN_PORT
otlp:
  endpoint: http://127.0.0.1:$GRPC_PORT
  protocol: grpc
  export_interval: 10s
mailboxes:
""")
    for i in range(n):
        u = i % users + 1
        f.write(f"""  - name: mb{i}
    imap: m{i % 10}.lab.test:$IMAPS_PORT
    imap_security: tls
    connect_to: 127.0.0.1
    ca_file: $certs/ca.pem
    user: user{u:02d}@lab.test
    password: {{ env: SOAK_PASSWORD }}
""")
PY
chmod 600 "$config"
# One mailbox checked alone first, for the record (and to see the lab answers).
SOAK_PASSWORD='Secr3t-Lab!' "$BIN" check --config "$config" --mailbox mb0 --format nagios >&2 || true
SOAK_PASSWORD='Secr3t-Lab!' MAILPROBE_LOG=warn "$BIN" run --config "$config" --web.enable-lifecycle \
  >"$work/mailprobe.log" 2>&1 &
mp=$!
pids+=("$mp")
for _ in $(seq 300); do curl -fs -o /dev/null -m 1 "http://127.0.0.1:$ADMIN_PORT/readyz" && break; sleep 0.2; done
curl -fs -o /dev/null -m 1 "http://127.0.0.1:$ADMIN_PORT/readyz" || die "the daemon did not get ready"
started=$(date +%s)

# --- the hammer -------------------------------------------------------------------------------
python3 - "$ADMIN_PORT" "$DURATION" >"$work/hammer.out" 2>&1 <<'PY' &
import asyncio, random, sys, time
port, duration = int(sys.argv[1]), float(sys.argv[2])
end = time.monotonic() + duration
counts = {"scrape": 0, "flood": 0, "slow": 0, "errors": 0}
# The hammer comes from 127.0.0.2, as an attacker or a busy scraper on another machine would;
# the samples (/healthz, /metrics) come from 127.0.0.1, as the kubelet and Prometheus would.
SRC = ("127.0.0.2", 0)
async def conn():
    return await asyncio.open_connection("127.0.0.1", port, local_addr=SRC)
async def get(path):
    r, w = await conn()
    w.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await w.drain(); await r.read(); w.close()
async def scraper():
    while time.monotonic() < end:
        try:
            await get(random.choice(["/metrics", "/healthz", "/readyz", "/nope"])); counts["scrape"] += 1
        except Exception:
            counts["errors"] += 1
        await asyncio.sleep(0.05)
async def slowloris():
    while time.monotonic() < end:
        try:
            r, w = await conn()
            w.write(b"GET /metrics HTTP/1.1\r\n"); await w.drain(); counts["slow"] += 1
            while time.monotonic() < end:
                await asyncio.sleep(5); w.write(b"X-a: b\r\n"); await w.drain()
        except Exception:
            await asyncio.sleep(0.5)
async def flood():
    while time.monotonic() < end:
        try:
            r, w = await conn(); w.close(); counts["flood"] += 1
        except Exception:
            counts["errors"] += 1
        await asyncio.sleep(0.002)
async def main():
    await asyncio.gather(*[scraper() for _ in range(8)], *[slowloris() for _ in range(64)], flood(), flood())
asyncio.run(main())
print(counts)
PY
pids+=("$!")

# --- sampling ---------------------------------------------------------------------------------
metric() { # NAME-PREFIX: the sum of the samples whose line starts with it
  awk -v p="$1" 'index($0, p) == 1 {s += $NF} END {printf "%d\n", s}' "$work/metrics.txt"
}
samples=$work/samples.csv
echo "t,rss_kib,fds,checks,export_failures,healthz_ms" >"$samples"
outage_from=$((DURATION / 3)) outage_to=$((DURATION / 3 + OUTAGE))
slow_health=0 down=0
while :; do
  t=$(( $(date +%s) - started ))
  [ "$t" -ge "$DURATION" ] && break
  if [ "$down" = 0 ] && [ "$t" -ge "$outage_from" ] && [ "$t" -lt "$outage_to" ]; then
    log "collector down"; collector_down; down=1
  elif [ "$down" = 1 ] && [ "$t" -ge "$outage_to" ]; then
    log "collector up"; collector_up; down=2; resumed_at=$t
  fi
  h0=$(date +%s%N)
  if curl -fs -o /dev/null -m 1 "http://127.0.0.1:$ADMIN_PORT/healthz"; then
    hms=$(( ($(date +%s%N) - h0) / 1000000 ))
  else
    hms=-1
  fi
  { [ "$hms" -lt 0 ] || [ "$hms" -gt 1000 ]; } && slow_health=$((slow_health + 1))
  curl -fs -m 5 "http://127.0.0.1:$ADMIN_PORT/metrics" >"$work/metrics.txt" || true
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$mp/status")
  fds=$(ls "/proc/$mp/fd" | wc -l)
  echo "$t,$rss,$fds,$(metric mailprobe_checks_total),$(metric mailprobe_telemetry_export_failures_total),$hms" >>"$samples"
  sleep "$SAMPLE"
done
elapsed=$(( $(date +%s) - started ))
wait "${pids[-1]}" 2>/dev/null || true

# --- summary ----------------------------------------------------------------------------------
interval_s=$(python3 -c "import re,sys; s='$INTERVAL'; m=re.fullmatch(r'(\d+)(s|m|h)', s); print(int(m[1]) * {'s':1,'m':60,'h':3600}[m[2]])")
python3 - "$samples" "$MAILBOXES" "$interval_s" "$elapsed" "$work" "${resumed_at:-0}" "$slow_health" <<'PY'
import csv, re, sys
samples, n, interval, elapsed, work, resumed, slow = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
rows = list(csv.DictReader(open(samples)))
after = [r for r in rows if int(r["t"]) >= interval] or rows
rss = [int(r["rss_kib"]) for r in after]; fds = [int(r["fds"]) for r in after]
checks = int(rows[-1]["checks"])
# Every mailbox's first run falls somewhere in the first interval, then one per interval.
expected = sum(max(0, (elapsed - i * interval / n) // interval + 1) for i in range(n))
fails = [(int(r["t"]), int(r["export_failures"])) for r in rows]
# Export failures counted 20 s after the collector came back, and at the end: equal when
# exporting resumed (an export in flight at the restart may still fail once).
grew_after = [f for t, f in fails if t >= resumed + 20] if resumed else []
resumed_ok = bool(grew_after) and grew_after[0] == grew_after[-1]
metrics = open(f"{work}/metrics.txt").read()
lag = {}
for m in re.finditer(r'mailprobe_schedule_lag_seconds_bucket\{le="([^"]+)"\} (\d+)', metrics):
    lag[m[1]] = int(m[2])
total = lag.get("+Inf", 0)
worst = next((le for le, c in sorted(((float(k) if k != "+Inf" else float("inf"), v) for k, v in lag.items())) if c == total), None)
mark = int(open(f"{work}/rotel.mark").read().strip() or 0)
received = sum(1 for l in open(f"{work}/rotel.log", errors="replace").readlines()[mark:] if "Received metrics" in l)
hammer = open(f"{work}/hammer.out").read().strip()
print(f"elapsed {elapsed} s, {n} mailboxes every {interval} s")
print(f"RSS after the first round: first {rss[0]//1024} MiB, last {rss[-1]//1024} MiB, max {max(rss)//1024} MiB")
print(f"open files: first {fds[0]}, last {fds[-1]}, max {max(fds)}")
print(f"runs that came due {total} (mailprobe_schedule_lag_seconds), every one started within {worst} s; checks finished {checks}")
print(f"(at most {int(expected)} runs could have come due: every first run at start-up spread, no jitter)")
print(f"/healthz slower than 1 s or missing: {slow} of {len(rows)} samples")
print(f"OTLP export after the collector came back: failures {'stopped growing' if resumed_ok else 'kept growing or not measured'}; {fails[-1][1]} failed exports in all; the restarted collector received {received} metric exports")
print(f"hammer: {hammer}")
PY
