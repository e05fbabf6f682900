#!/usr/bin/env bash
# Fleet-scale benchmark of mailprobe on the local lab (Dovecot + Postfix), measured, never asserted.
#
#   bash bench/run.sh                 # every part, one table at the end
#   bash bench/run.sh scan rtt        # only some parts: scan | cpu | server | rss | round | rtt | fleet
#
# Parts:
#   scan   TLS version scan of one port: `mailprobe check --only tls` vs sslscan (protocols only)
#          vs `testssl -p`, wall and CPU, with hyperfine.
#   cpu    daemon CPU per full check (IMAP+SMTP, and IMAP only) vs prometheus-blackbox-exporter CPU
#          per TLS probe (/probe, tcp prober with TLS) of the same server, from /proc/PID/stat.
#   server CPU the lab's Dovecot and Postfix spend (their process trees, reaped children
#          included) per check of the daemon, without and with a cadence, next to one plain
#          client session (Python imaplib: TLS, LOGIN, SELECT INBOX, LOGOUT).
#   rss    daemon RSS idle with 4 mailboxes (and blackbox_exporter's), and with 10,000 mailboxes
#          scheduled (5 min interval, IMAP only, against the lab); schedule lag p50/p99 from
#          mailprobe_schedule_lag_seconds.
#   round  10,000 mailboxes (IMAP only) until every one holds a result (mailprobe_checks_total
#          reaches 10,000, at most FULL_ROUND_TIMEOUT s): RSS and peak RSS then.
#   rtt    a full check through bench/delayproxy.py (50 ms RTT): wall time / RTT.
#   fleet  100 and 1,000 mailboxes on one server behind the proxy (interval 120 s, timeout 10 s):
#          how many were judged within one interval, and the requirements that fail although a
#          lone check of the same mailbox passes them (failures of the probe's own making).
#
# Installs sslscan, testssl.sh, hyperfine and prometheus-blackbox-exporter from Debian when they
# are missing (as root), builds mailprobe in release, runs the lab from tests/lab/ on its own
# ports, and stops everything it started on exit. Knobs (environment): SCAN_RUNS, TESTSSL_RUNS,
# CPU_WINDOW, BB_PROBES, SERVER_WINDOW, PLAIN_SESSIONS, CADENCE_HOURS, FULL_ROUND_TIMEOUT, LAG_WINDOW, FLEET_SIZES, FLEET_USERS, FLEET_CAP, RTT_MS, RTT_RUNS.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

all=(scan cpu server rss round rtt fleet)
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=("${all[@]}")
for p in "${parts[@]}"; do
  case " ${all[*]} " in *" $p "*) ;; *) echo "unknown part '$p'; use some of: ${all[*]}" >&2; exit 2 ;; esac
done
want() { case " ${parts[*]} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

SCAN_RUNS=${SCAN_RUNS:-20}
TESTSSL_RUNS=${TESTSSL_RUNS:-3}
CPU_WINDOW=${CPU_WINDOW:-30}
BB_PROBES=${BB_PROBES:-300}
SERVER_WINDOW=${SERVER_WINDOW:-30}
PLAIN_SESSIONS=${PLAIN_SESSIONS:-100}
# The cadence the `server` part assumes for its average over time (checks every 5 min).
CADENCE_HOURS=${CADENCE_HOURS:-6}
LAG_WINDOW=${LAG_WINDOW:-120}
FULL_ROUND_TIMEOUT=${FULL_ROUND_TIMEOUT:-1200}
ROUND_SIZE=${ROUND_SIZE:-10000}
FULL_ROUND_INTERVAL=${FULL_ROUND_INTERVAL:-4m}
FLEET_SIZES=${FLEET_SIZES:-100 1000}
# The fleet parts' mailboxes belong to this many lab users (user01@lab.test ...): the probe
# budgets connections per user and server address, as servers limit them, so one user's
# mailboxes take turns. Their server_connections (the cap per server address) is FLEET_CAP.
FLEET_USERS=${FLEET_USERS:-99}
FLEET_CAP=${FLEET_CAP:-96}
RTT_MS=${RTT_MS:-50}
RTT_RUNS=${RTT_RUNS:-3}
one_way_ms=$(python3 -c "print($RTT_MS / 2)")

# Ports: lab servers, the delay proxy in front of them, the daemons' /metrics, blackbox_exporter.
IMAP_PORT=15143 IMAPS_PORT=15993 SUB_PORT=15587
P_IMAP=16143 P_IMAPS=16993 P_SUB=16587
DAEMON_PORT=19925 BB_PORT=19115

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

# --- tools ------------------------------------------------------------------------------------
need_pkgs=()
for pair in python3:python3 hyperfine:hyperfine sslscan:sslscan testssl:testssl.sh \
            prometheus-blackbox-exporter:prometheus-blackbox-exporter \
            dovecot:dovecot-imapd postfix:postfix openssl:openssl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need_pkgs+=("${pair#*:}")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing Debian packages: ${need_pkgs[*]} (install them, or run as root)"
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Packages must not start their system services (blackbox_exporter would take port 9115).
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
  timeout 600 apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null \
    || { timeout 300 apt-get update -qq && timeout 600 apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null; } \
    || die "apt-get install ${need_pkgs[*]} failed"
fi

log "building mailprobe (release)"
cargo build --release --locked --bin mailprobe >&2
bin=$root/target/release/mailprobe
state=$root/tests/lab/state/bench
certs=$root/tests/lab/state/certs
work=$(mktemp -d /tmp/mailprobe-bench.XXXXXX)
results=$work/results.md
: > "$results"
ticks=$(getconf CLK_TCK)
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
export BENCH_PASSWORD='Secr3t-Lab!'

# --- cleanup: everything this script started ----------------------------------------------------
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  bash tests/lab/postfix.sh stop "$state/postfix" >/dev/null 2>&1 || true
  bash tests/lab/dovecot.sh stop "$state/dovecot" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers ----------------------------------------------------------------------------------
row() { printf '| %s | %s | %s | %s | %s |\n' "$@" >> "$results"; }

# wait_for SECONDS CMD... : polls CMD every 0.2 s, bounded.
wait_for() {
  local limit=$1 end
  shift
  end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.2
  done
}

http_get() { python3 - "$1" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=30) as r:
    sys.stdout.write(r.read().decode())
PY
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
mib() { python3 -c "print(f'{$1 / 1024:.1f} MiB')"; }

# Sum of mailprobe_checks_total over verdicts.
checks_done() { http_get "http://127.0.0.1:$DAEMON_PORT/metrics" | awk '/^mailprobe_checks_total\{/ {s += $2} END {print s + 0}'; }
have_checks() { [ "$(checks_done)" -ge "$1" ]; }

# write_config FILE COUNT INTERVAL TIMEOUT MODE : MODE = imap+smtp | imap | fleet10k | proxied
# (CADENCE, when set, is the `cadence:` block's one line, e.g. "{ tls_versions: 1h }").
write_config() {
  python3 - "$@" "$certs/ca.pem" "$DAEMON_PORT" "$FLEET_USERS" "$FLEET_CAP" "${CADENCE:-}" <<'PY'
import sys
path, count, interval, timeout, mode, ca, port, users, cap, cadence = sys.argv[1:]
count, users = int(count), int(users)
out = [f"interval: {interval}", f"timeout: {timeout}", f"listen: 127.0.0.1:{port}"]
if cadence:
    out.append(f"cadence: {cadence}")
if mode in ("fleet10k", "proxied"):
    out.append(f"server_connections: {cap}")
out.append("mailboxes:")
for i in range(count):
    if mode == "fleet10k":
        # 10 host aliases x 2 ports of one address (one server cap), FLEET_USERS users.
        host = f"m{i % 10}.lab.test"
        imap, sec = ("15993", "tls") if (i // 10) % 2 == 0 else ("15143", "starttls")
        user = f"user{(i // 20) % users + 1:02d}@lab.test"
        smtp = None
    elif mode == "proxied":
        host, imap, sec, smtp = "mail.lab.test", "16993", "tls", "16587"
        user = f"user{i % users + 1:02d}@lab.test"
    else:
        host, imap, sec, user = "mail.lab.test", "15993", "tls", "alice@lab.test"
        smtp = "15587" if mode == "imap+smtp" else None
    out += [f"  - name: mb{i:05d}", f"    imap: {host}:{imap}", f"    imap_security: {sec}"]
    if smtp:
        out += [f"    smtp: {host}:{smtp}", "    smtp_security: starttls"]
    out += [f"    user: {user}", "    password: { env: BENCH_PASSWORD }",
            "    connect_to: 127.0.0.1", f"    ca_file: {ca}"]
open(path, "w").write("\n".join(out) + "\n")
PY
}

daemon_pid=
start_daemon() {
  "$bin" run --config "$1" >"$work/daemon.log" 2>&1 &
  daemon_pid=$!
  pids+=("$daemon_pid")
  wait_for "${2:-60}" http_get "http://127.0.0.1:$DAEMON_PORT/readyz" \
    || { tail -20 "$work/daemon.log" >&2; die "the daemon did not get ready"; }
}
stop_daemon() {
  [ -n "$daemon_pid" ] || return 0
  kill -TERM "$daemon_pid" 2>/dev/null || true
  for _ in $(seq 1 120); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$daemon_pid" 2>/dev/null || true
  wait "$daemon_pid" 2>/dev/null || true
  daemon_pid=
}

bb_pid=
start_blackbox() {
  cat > "$work/blackbox.yml" <<YML
modules:
  imaps_tls:
    prober: tcp
    timeout: 5s
    tcp:
      tls: true
      tls_config:
        ca_file: $certs/ca.pem
        server_name: mail.lab.test
YML
  prometheus-blackbox-exporter --config.file="$work/blackbox.yml" \
    --web.listen-address="127.0.0.1:$BB_PORT" >"$work/blackbox.log" 2>&1 &
  bb_pid=$!
  pids+=("$bb_pid")
  wait_for 20 http_get "http://127.0.0.1:$BB_PORT/metrics" || die "blackbox_exporter did not start"
}
stop_blackbox() {
  [ -n "$bb_pid" ] || return 0
  kill -TERM "$bb_pid" 2>/dev/null || true
  wait "$bb_pid" 2>/dev/null || true
  bb_pid=
}

proxy_pid=
start_proxy() {
  python3 bench/delayproxy.py --one-way-ms "$one_way_ms" \
    "$P_IMAP:127.0.0.1:$IMAP_PORT" "$P_IMAPS:127.0.0.1:$IMAPS_PORT" "$P_SUB:127.0.0.1:$SUB_PORT" \
    >"$work/proxy.out" 2>&1 &
  proxy_pid=$!
  pids+=("$proxy_pid")
  wait_for 10 grep -q ready "$work/proxy.out" || die "the delay proxy did not start"
}

# --- the lab ----------------------------------------------------------------------------------
log "starting the lab"
bash tests/lab/certs.sh "$certs" >&2
mkdir -p "$state"
# Wildcard certificate: the 10,000-mailbox config reaches one Dovecot as m0..m9.lab.test.
# mail_max_userip_connections and Postfix's per-client limit are raised: the fleet parts run
# hundreds of mailboxes as FLEET_USERS users from one address (the probe itself never holds more
# than 3 IMAP connections per user and address).
LAB_OWNER_PID=$$ LAB_CERTS=$certs LAB_CERT=wildcard LAB_IMAP_PORT=$IMAP_PORT \
  LAB_IMAPS_PORT=$IMAPS_PORT LAB_TLS_MIN=TLSv1 LAB_MAX_USERIP=5000 LAB_EXTRA_USERS=$FLEET_USERS \
  bash tests/lab/dovecot.sh start "$state/dovecot" >&2
LAB_OWNER_PID=$$ LAB_CERTS=$certs LAB_CERT=wildcard LAB_DOVECOT_STATE=$state/dovecot \
  LAB_SUBMISSION_PORT=$SUB_PORT LAB_SMTP_CLIENT_LIMIT=1000 \
  bash tests/lab/postfix.sh start "$state/postfix" >&2

check=("$bin" check --imap "mail.lab.test:$IMAPS_PORT" --imap-security tls
       --smtp "mail.lab.test:$SUB_PORT" --smtp-security starttls
       --connect-to mail.lab.test:127.0.0.1 --ca-file "$certs/ca.pem" --user alice@lab.test
       --password-env BENCH_PASSWORD)
"${check[@]}" --format nagios >&2 || true

# --- scan ---------------------------------------------------------------------------------------
hyper_stats() { # JSON INDEX -> "mean_ms cpu_ms"
  python3 - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][int(sys.argv[2])]
print(f"{r['mean'] * 1000:.2f} {(r['user'] + r['system']) * 1000:.2f}")
PY
}
if want scan; then
  log "scan: hyperfine, $SCAN_RUNS runs (testssl: $TESTSSL_RUNS)"
  tls_cmd="$bin check --imap mail.lab.test:$IMAPS_PORT --imap-security tls --connect-to mail.lab.test:127.0.0.1 --ca-file $certs/ca.pem --user alice@lab.test --password-env BENCH_PASSWORD --only tls --format nagios"
  sslscan_cmd="sslscan --no-colour --no-ciphersuites --no-cipher-details --no-groups --no-heartbleed --no-fallback --no-renegotiation --no-compression --no-check-certificate 127.0.0.1:$IMAPS_PORT"
  testssl_cmd="testssl --quiet --color 0 --warnings off -p 127.0.0.1:$IMAPS_PORT"
  $tls_cmd >&2 || true
  hyperfine -N -i --warmup 2 --runs "$SCAN_RUNS" --export-json "$work/scan.json" \
    "$tls_cmd" "$sslscan_cmd" >&2
  hyperfine -N -i --runs "$TESTSSL_RUNS" --export-json "$work/testssl.json" "$testssl_cmd" >&2
  read -r mp_wall mp_cpu < <(hyper_stats "$work/scan.json" 0)
  read -r ss_wall ss_cpu < <(hyper_stats "$work/scan.json" 1)
  read -r ts_wall ts_cpu < <(hyper_stats "$work/testssl.json" 0)
  ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
  r_ss=$(ratio "$ss_wall" "$mp_wall"); r_ts=$(ratio "$ts_wall" "$mp_wall"); r_cpu=$(ratio "$mp_cpu" "$ss_cpu")
  met=no; python3 -c "import sys; sys.exit(0 if $r_ss >= 5 and $r_ts >= 1000 else 1)" && met=yes
  row "\`check --only tls\` wall (one port, SSLv3–TLS 1.3)" "$mp_wall ms" \
      "sslscan $ss_wall ms (${r_ss}×); testssl -p $ts_wall ms (${r_ts}×)" \
      "≥ 5× faster than sslscan, ≥ 1000× than testssl" "$met"
  met=no; python3 -c "import sys; sys.exit(0 if $r_cpu <= 0.25 else 1)" && met=yes
  row "same, CPU (user+sys)" "$mp_cpu ms" "sslscan $ss_cpu ms (ratio ${r_cpu}); testssl $ts_cpu ms" \
      "≤ ¼ of sslscan's" "$met"
fi

# --- cpu ----------------------------------------------------------------------------------------
# daemon_cpu_per_check MODE : sets cpu_ms (per check) and cpu_n (checks measured).
daemon_cpu_per_check() {
  write_config "$work/cpu.yml" 4 2s 20s "$1"
  start_daemon "$work/cpu.yml"
  wait_for 60 have_checks 4 || die "no checks finished"
  local c0 n0 c1 n1
  c0=$(cpu_ticks "$daemon_pid"); n0=$(checks_done)
  sleep "$CPU_WINDOW"
  c1=$(cpu_ticks "$daemon_pid"); n1=$(checks_done)
  stop_daemon
  cpu_n=$((n1 - n0))
  cpu_ms=$(python3 -c "print(f'{($c1 - $c0) * 1000 / $ticks / max($cpu_n, 1):.2f}')")
}
if want cpu; then
  log "cpu: blackbox_exporter, $BB_PROBES probes"
  start_blackbox
  url="http://127.0.0.1:$BB_PORT/probe?module=imaps_tls&target=127.0.0.1:$IMAPS_PORT"
  http_get "$url" | grep -q '^probe_success 1' || die "blackbox_exporter's probe failed: $(http_get "$url" | grep probe_success)"
  c0=$(cpu_ticks "$bb_pid")
  python3 - "$url" "$BB_PROBES" <<'PY'
import sys, urllib.request
for _ in range(int(sys.argv[2])):
    urllib.request.urlopen(sys.argv[1], timeout=10).read()
PY
  c1=$(cpu_ticks "$bb_pid")
  stop_blackbox
  bb_ms=$(python3 -c "print(f'{($c1 - $c0) * 1000 / $ticks / $BB_PROBES:.2f}')")
  log "cpu: daemon, 4 mailboxes every 2 s, ${CPU_WINDOW} s per mode"
  daemon_cpu_per_check imap+smtp; full_ms=$cpu_ms full_n=$cpu_n
  daemon_cpu_per_check imap; imap_ms=$cpu_ms imap_n=$cpu_n
  met=no; python3 -c "import sys; sys.exit(0 if $full_ms <= $bb_ms else 1)" && met=yes
  row "daemon CPU per full check, IMAP+SMTP ($full_n checks)" "$full_ms ms" \
      "blackbox_exporter $bb_ms ms per TLS probe ($BB_PROBES probes)" "≤ 1.0× blackbox_exporter" "$met"
  met=no; python3 -c "import sys; sys.exit(0 if $imap_ms <= $bb_ms else 1)" && met=yes
  row "daemon CPU per full check, IMAP only ($imap_n checks)" "$imap_ms ms" \
      "blackbox_exporter $bb_ms ms" "≤ 1.0× blackbox_exporter" "$met"
fi

# --- server -------------------------------------------------------------------------------------
# CPU ticks of the lab's Dovecot and Postfix: every live process under their masters, each with
# its reaped children (utime+stime+cutime+cstime), so processes that ended in the window count.
server_ticks() {
  python3 - "$(cat "$state/dovecot/dovecot.pid")" "$(cat "$state/postfix/postfix.pid")" <<'PY'
import os, sys
roots = {int(p) for p in sys.argv[1:] if p.strip()}
stat = {}
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            s = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        f = s[s.rindex(")") + 2:].split()
        # after the name: state ppid ... utime(14) stime(15) cutime(16) cstime(17), 1-based
        stat[int(d)] = (int(f[1]), sum(int(x) for x in f[11:15]))
tree, grew = set(roots) & set(stat), True
while grew:
    more = {p for p, (pp, _) in stat.items() if pp in tree and p not in tree}
    tree |= more
    grew = bool(more)
print(sum(stat[p][1] for p in tree))
PY
}
plain_sessions() {
  python3 - "$IMAPS_PORT" "$certs/ca.pem" "$1" <<'PY'
import imaplib, os, ssl, sys
port, ca, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
class Client(imaplib.IMAP4_SSL):
    # Connects to 127.0.0.1 and verifies the certificate for mail.lab.test, as the probe does.
    def _create_socket(self, timeout):
        sock = imaplib.IMAP4._create_socket(self, timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname="mail.lab.test")
for _ in range(n):
    c = Client("127.0.0.1", port, ssl_context=ctx, timeout=10)
    c.login("alice@lab.test", os.environ["BENCH_PASSWORD"])
    c.select("INBOX")
    c.logout()
PY
}
# server_cpu_per_check : sets srv_ms and srv_n for the daemon of $work/server.yml.
server_cpu_per_check() {
  start_daemon "$work/server.yml"
  wait_for 60 have_checks 4 || die "no checks finished"
  sleep 1
  local c0 n0 c1 n1
  c0=$(server_ticks); n0=$(checks_done)
  sleep "$SERVER_WINDOW"
  c1=$(server_ticks); n1=$(checks_done)
  stop_daemon
  srv_n=$((n1 - n0))
  srv_ms=$(python3 -c "print(f'{($c1 - $c0) * 1000 / $ticks / max($srv_n, 1):.2f}')")
}
if want server; then
  log "server: $PLAIN_SESSIONS plain imaplib sessions"
  plain_sessions 2 >&2
  c0=$(server_ticks)
  plain_sessions "$PLAIN_SESSIONS" >&2
  c1=$(server_ticks)
  plain_ms=$(python3 -c "print(f'{($c1 - $c0) * 1000 / $ticks / $PLAIN_SESSIONS:.2f}')")
  log "server: daemon, 4 mailboxes (IMAP+SMTP) every 2 s, ${SERVER_WINDOW} s, no cadence"
  write_config "$work/server.yml" 4 2s 20s imap+smtp
  server_cpu_per_check; full_srv=$srv_ms full_srv_n=$srv_n
  log "server: the same within a cadence"
  CADENCE="{ tls_versions: 1h, certificate: 1h, connections: 1h }" \
    write_config "$work/server.yml" 4 2s 20s imap+smtp
  server_cpu_per_check; cad_srv=$srv_ms cad_srv_n=$srv_n
  # Every 5 min with a cadence of CADENCE_HOURS: one full check, then the rest within it.
  per_round=$((CADENCE_HOURS * 12))
  avg_srv=$(python3 -c "print(f'{($full_srv + ($per_round - 1) * $cad_srv) / $per_round:.2f}')")
  ratio_full=$(python3 -c "print(f'{$full_srv / $plain_ms:.1f}')")
  ratio_avg=$(python3 -c "print(f'{$avg_srv / $plain_ms:.2f}')")
  row "CPU of the lab's Dovecot+Postfix per full check, IMAP+SMTP, no cadence ($full_srv_n checks)" \
      "$full_srv ms (${ratio_full}× one plain session)" \
      "one plain imaplib session (TLS, LOGIN, SELECT INBOX, LOGOUT): $plain_ms ms ($PLAIN_SESSIONS sessions)" \
      "≤ one plain session per scheduled check, averaged over time" "no"
  met=no; python3 -c "import sys; sys.exit(0 if $avg_srv <= $plain_ms else 1)" && met=yes
  row "same, within a cadence of 1h for versions, certificate, connections ($cad_srv_n checks)" \
      "$cad_srv ms; averaged over time at 5 min with a ${CADENCE_HOURS}h cadence: $avg_srv ms (${ratio_avg}×)" \
      "plain session $plain_ms ms" "≤ one plain session per scheduled check, averaged over time" "$met"
fi

# --- rss + schedule lag ---------------------------------------------------------------------------
# Quantiles from the cumulative buckets, interpolated inside a bucket as histogram_quantile does.
lag_quantiles() {
  python3 -c '
import re, sys
b = []
for line in sys.stdin:
    m = re.match(r"mailprobe_schedule_lag_seconds_bucket\{le=\"([^\"]+)\"\} (\S+)", line)
    if m:
        b.append((float("inf") if m[1] == "+Inf" else float(m[1]), float(m[2])))
b.sort()
total = b[-1][1] if b else 0
def q(p):
    if total == 0:
        return "n/a"
    rank, lo, below = p * total, 0.0, 0.0
    for le, c in b:
        if c >= rank:
            if le == float("inf"):
                return f"> {lo:g} s"
            if le > 1:
                # Wide buckets: interpolating would invent precision (and exceed the window).
                return f"{lo:g}–{le:g} s"
            return f"{lo + (le - lo) * (rank - below) / max(c - below, 1e-9):.3f} s"
        lo, below = le, c
print("|".join([q(0.5), q(0.99), str(int(total))]))
'
}
if want rss; then
  log "rss: blackbox_exporter idle"
  start_blackbox; sleep 2
  bb_rss=$(rss_kib "$bb_pid" VmRSS); stop_blackbox
  log "rss: daemon with 4 mailboxes (IMAP+SMTP), after the first round"
  write_config "$work/idle.yml" 4 5m 30s imap+smtp
  start_daemon "$work/idle.yml"
  wait_for 90 have_checks 4 || die "the first round did not finish"
  sleep 2
  idle_rss=$(rss_kib "$daemon_pid" VmRSS)
  idle_anon=$(rss_kib "$daemon_pid" RssAnon); idle_file=$(rss_kib "$daemon_pid" RssFile)
  stop_daemon
  met=no; [ "$idle_rss" -le $((10 * 1024)) ] && met=yes
  row "RSS, idle with 4 mailboxes" "$(mib "$idle_rss") (heap and stacks $(mib "$idle_anon"), mapped binary and libraries $(mib "$idle_file"))" "blackbox_exporter $(mib "$bb_rss")" "≤ 10 MiB" "$met"

  log "rss: daemon with 10,000 mailboxes (IMAP only, 5 min interval), ${LAG_WINDOW} s"
  write_config "$work/fleet10k.yml" 10000 5m 30s fleet10k
  t0=$SECONDS
  start_daemon "$work/fleet10k.yml" 180
  ready_s=$((SECONDS - t0))
  ready_rss=$(rss_kib "$daemon_pid" VmRSS)
  sleep "$LAG_WINDOW"
  end_rss=$(rss_kib "$daemon_pid" VmRSS); hwm=$(rss_kib "$daemon_pid" VmHWM)
  http_get "http://127.0.0.1:$DAEMON_PORT/metrics" > "$work/fleet10k.metrics"
  stop_daemon
  done_n=$(awk '/^mailprobe_checks_total\{/ {s += $2} END {print s + 0}' "$work/fleet10k.metrics")
  IFS='|' read -r p50 p99 started < <(lag_quantiles < "$work/fleet10k.metrics")
  per=$(python3 -c "print(f'{($end_rss - $idle_rss) * 1024 / 9996 / 1000:.1f}')")
  met=no; [ "$hwm" -le $((64 * 1024)) ] && met=yes
  row "RSS, 10,000 mailboxes scheduled (5 min interval)" \
      "$(mib "$ready_rss") when ready (${ready_s} s); $(mib "$end_rss") after ${LAG_WINDOW} s, peak $(mib "$hwm") (≈ $per KB per mailbox)" \
      "—" "≤ 64 MiB" "$met"
  met=no; case $p99 in *n/a*|*">"*|*–*) ;; *) python3 -c "import sys; sys.exit(0 if ${p99% s} < 1 else 1)" && met=yes ;; esac
  row "schedule lag with 10,000 mailboxes (first ${LAG_WINDOW} s)" \
      "p50 ${p50}, p99 ${p99} over ${started} started runs (${done_n} finished)" "—" "p99 < 1 s" "$met"
fi

# --- round: 10,000 mailboxes until each holds a result ------------------------------------------
# Mailboxes with a report: the status API lists each with `last_check` once it has one.
judged_count() {
  http_get "http://127.0.0.1:$DAEMON_PORT/api/v1/mailboxes" | python3 -c '
import json, sys
print(sum(1 for m in json.load(sys.stdin).get("mailboxes", []) if m.get("last_check")))'
}
if want round; then
  log "round: $ROUND_SIZE mailboxes (IMAP only, interval $FULL_ROUND_INTERVAL, timeout 20 s) until each has a result (at most ${FULL_ROUND_TIMEOUT} s)"
  write_config "$work/round.yml" "$ROUND_SIZE" "$FULL_ROUND_INTERVAL" 20s fleet10k
  t0=$SECONDS
  start_daemon "$work/round.yml" 180
  ready_rss=$(rss_kib "$daemon_pid" VmRSS)
  wait_for "$FULL_ROUND_TIMEOUT" have_checks "$ROUND_SIZE" || log "round: not every mailbox finished in time"
  round_s=$((SECONDS - t0))
  sleep 2
  judged=$(judged_count)
  round_rss=$(rss_kib "$daemon_pid" VmRSS); round_hwm=$(rss_kib "$daemon_pid" VmHWM)
  round_anon=$(rss_kib "$daemon_pid" RssAnon)
  http_get "http://127.0.0.1:$DAEMON_PORT/metrics" > "$work/round.metrics"
  stop_daemon
  round_done=$(awk '/^mailprobe_checks_total\{/ {s += $2} END {print s + 0}' "$work/round.metrics")
  per=$(python3 -c "print(f'{($round_rss - $ready_rss) * 1024 / max($judged, 1) / 1000:.1f}')")
  met=no; [ "$judged" -ge "$ROUND_SIZE" ] && [ "$round_hwm" -le $((64 * 1024)) ] && met=yes
  row "RSS, $ROUND_SIZE mailboxes after a full round (every mailbox holding a result)" \
      "$(mib "$round_rss") (heap and stacks $(mib "$round_anon")), peak $(mib "$round_hwm"); $judged mailboxes with a result, $round_done checks finished, ${round_s} s from start; $(mib "$ready_rss") when ready (≈ $per KB per stored result)" \
      "—" "≤ 64 MiB after every mailbox has a result" "$met"
fi

# --- rtt ----------------------------------------------------------------------------------------
if want rtt || want fleet; then
  start_proxy
  pcheck=("$bin" check --imap "mail.lab.test:$P_IMAPS" --imap-security tls
          --smtp "mail.lab.test:$P_SUB" --smtp-security starttls
          --connect-to mail.lab.test:127.0.0.1 --ca-file "$certs/ca.pem" --user alice@lab.test
          --password-env BENCH_PASSWORD --timeout 60s)
fi
if want rtt; then
  log "rtt: full check through the ${RTT_MS} ms proxy, $RTT_RUNS runs"
  "${pcheck[@]}" --format nagios >&2 || true
  hyperfine -N -i --runs "$RTT_RUNS" --export-json "$work/rtt.json" \
    "${pcheck[*]} --format nagios" "${check[*]} --format nagios" >&2 || true
  read -r far _ < <(hyper_stats "$work/rtt.json" 0)
  read -r near _ < <(hyper_stats "$work/rtt.json" 1)
  rtts=$(python3 -c "print(f'{$far / $RTT_MS:.1f}')")
  net=$(python3 -c "print(f'{($far - $near) / $RTT_MS:.1f}')")
  met=no; python3 -c "import sys; sys.exit(0 if $rtts <= 10 else 1)" && met=yes
  row "wall time of a full check (IMAP+SMTP) at ${RTT_MS} ms RTT" \
      "$(python3 -c "print(f'{$far / 1000:.2f} s')") = $rtts RTT ($net RTT above the same check without delay, $near ms)" \
      "—" "≤ 10 RTT" "$met"
fi

# --- fleet --------------------------------------------------------------------------------------
if want fleet; then
  # What a lone check of the same mailbox fails is the server's doing, not the probe's.
  "${pcheck[@]}" --format json > "$work/lone.json" || true
  lone_fail=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(",".join(x["id"] for x in r["requirements"] if x["status"] == "fail"))' "$work/lone.json")
  log "fleet: a lone check fails: ${lone_fail:-nothing}"
  for n in $FLEET_SIZES; do
    log "fleet: $n mailboxes behind the proxy, interval 120 s, timeout 10 s; 130 s"
    write_config "$work/fleet.yml" "$n" 120s 10s proxied
    start_daemon "$work/fleet.yml" 120
    sleep 130
    http_get "http://127.0.0.1:$DAEMON_PORT/metrics" > "$work/fleet-$n.metrics"
    stop_daemon
    summary=$(python3 - "$work/fleet-$n.metrics" "$lone_fail" "$n" <<'PY'
import re, sys, collections
text = open(sys.argv[1]).read()
lone = set(filter(None, sys.argv[2].split(",")))
n = int(sys.argv[3])
judged = set(re.findall(r'^mailprobe_requirement_status\{mailbox="([^"]+)"', text, re.M))
noncompliant = len(re.findall(r'^mailprobe_compliant\{[^}]*\} 0(\.0)?$', text, re.M))
own = collections.Counter()
for mb, req in re.findall(r'^mailprobe_requirement_status\{mailbox="([^"]+)",requirement="([^"]+)"\} 0(?:\.0)?$', text, re.M):
    if req not in lone:
        own[req] += 1
owns = ", ".join(f"{k} ×{v}" for k, v in own.most_common(5)) or "none"
print(f"{len(judged)}|{noncompliant}|{sum(own.values())}|{owns}")
PY
)
    IFS='|' read -r judged noncomp own owns <<<"$summary"
    met=no; [ "$judged" -eq "$n" ] && [ "$own" -eq 0 ] && met=yes
    row "$n mailboxes on one server at ${RTT_MS} ms RTT, interval 120 s, timeout 10 s" \
        "after 130 s: $judged of $n judged, $noncomp non-compliant; $own failing requirements of the probe's own making ($owns)" \
        "a lone check fails: ${lone_fail:-nothing}" "all judged within one interval; 0 of the probe's own" "$met"
  done
fi

# --- the table ----------------------------------------------------------------------------------
echo
echo "mailprobe fleet benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average at start: $load_at_start, at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| figure | mailprobe | anchor, same run | goal | met |"
echo "|---|---|---|---|---|"
cat "$results"
