#!/usr/bin/env bash
# Benchmarks, measured rather than asserted in tests:
#  1. a whole `mailprobe check` (every plugin, IMAP + SMTP) against the local lab: wall time and
#     peak memory;
#  2. TLS version enumeration of one port: mailprobe's `tls` plugin against sslscan and
#     testssl.sh on the same server (Dovecot accepting TLS 1.0 to 1.3).
# Needs: bash .ci/install-packages, and `apt-get install sslscan testssl.sh hyperfine`.
# Prints a table; nothing is compared against a threshold.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-20}
cargo build --release --locked --bin mailprobe >&2
bin=$PWD/target/release/mailprobe
state=$PWD/tests/lab/state/bench
certs=$PWD/tests/lab/state/certs
bash tests/lab/certs.sh "$certs" >&2
cleanup() {
  bash tests/lab/postfix.sh stop "$state/postfix" >&2 || true
  bash tests/lab/dovecot.sh stop "$state/dovecot" >&2 || true
}
trap cleanup EXIT
mkdir -p "$state"
LAB_CERTS=$certs LAB_IMAP_PORT=15143 LAB_IMAPS_PORT=15993 LAB_TLS_MIN=TLSv1 \
  bash tests/lab/dovecot.sh start "$state/dovecot" >&2
LAB_CERTS=$certs LAB_DOVECOT_STATE=$state/dovecot LAB_SUBMISSION_PORT=15587 \
  bash tests/lab/postfix.sh start "$state/postfix" >&2
export MAILPROBE_PASSWORD='Secr3t-Lab!'
check=("$bin" check --imap mail.lab.test:15993 --imap-security tls --smtp mail.lab.test:15587
       --connect-to mail.lab.test:127.0.0.1 --ca-file "$certs/ca.pem" --user alice@lab.test
       --format nagios)

echo "== whole check (all plugins, IMAP + SMTP), $runs runs"
"${check[@]}" >/dev/null || true
if command -v hyperfine >/dev/null; then
  hyperfine --runs "$runs" --warmup 2 -N -i "${check[*]}" 2>/dev/null | sed -n '1,4p'
fi
peak=0
for _ in $(seq 1 5); do
  kb=$( { /usr/bin/time -f '%M' "${check[@]}" >/dev/null; } 2>&1 | tail -1 )
  [ "$kb" -gt "$peak" ] && peak=$kb
done
echo "peak RSS of one check: ${peak} KiB"

echo
echo "== TLS version enumeration of 127.0.0.1:15993 (implicit TLS)"
tls=("$bin" check --imap mail.lab.test:15993 --imap-security tls --connect-to mail.lab.test:127.0.0.1
     --ca-file "$certs/ca.pem" --user alice@lab.test --only tls --format nagios)
cmds=("${tls[*]}")
command -v sslscan >/dev/null && cmds+=("sslscan --no-colour --no-heartbleed --no-check-certificate --no-cipher-details --no-groups 127.0.0.1:15993")
command -v testssl.sh >/dev/null && cmds+=("testssl.sh --quiet --protocols --color 0 127.0.0.1:15993")
if command -v hyperfine >/dev/null; then
  hyperfine --runs "${TLS_RUNS:-5}" -N -i "${cmds[@]}" 2>/dev/null | grep -E "Benchmark|Time \(mean"
else
  for c in "${cmds[@]}"; do
    start=$(date +%s%N); $c >/dev/null 2>&1 || true; end=$(date +%s%N)
    echo "$(( (end - start) / 1000000 )) ms  $c"
  done
fi
