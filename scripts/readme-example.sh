#!/usr/bin/env bash
# Regenerates the two example reports in README.md from real runs against the mail lab, so the
# README shows what the probe prints today:
#   compliant      scripts/demo.sh (the README's first command)
#   non-compliant  a Dovecot that accepts only TLS 1.3, with a certificate 10 days from expiry
#                  and mail_max_userip_connections=2, on IMAPS port 24993 (LAB_NC_PORT)
# Each block sits between `<!-- BEGIN example:NAME -->` and `<!-- END example:NAME -->`.
#   bash scripts/readme-example.sh           rewrite README.md
#   bash scripts/readme-example.sh --print   print the blocks instead
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-write}
work=$(mktemp -d)
nc_state=tests/lab/state/readme-noncompliant
cleanup() {
  bash tests/lab/dovecot.sh stop "$nc_state" >&2 || true
  rm -rf "$work"
}
trap cleanup EXIT

rc=0
bash scripts/demo.sh > "$work/compliant" || rc=$?
[ "$rc" -eq 0 ] || { cat "$work/compliant" >&2; echo "readme-example: the demo exited $rc, not 0" >&2; exit 1; }

port=${LAB_NC_PORT:-24993}
bash tests/lab/certs.sh tests/lab/state/certs >&2
LAB_CERTS=$PWD/tests/lab/state/certs LAB_CERT=soon LAB_TLS_MIN=TLSv1.3 LAB_MAX_USERIP=2 \
  LAB_IMAPS_PORT=$port bash tests/lab/dovecot.sh start "$nc_state" >&2
rc=0
MAILPROBE_PASSWORD='Secr3t-Lab!' target/release/mailprobe check \
  --imap "mail.lab.test:$port" --imap-security tls \
  --connect-to mail.lab.test:127.0.0.1 --ca-file tests/lab/state/certs/ca.pem \
  --user alice@lab.test > "$work/noncompliant" || rc=$?
[ "$rc" -eq 2 ] || { cat "$work/noncompliant" >&2; echo "readme-example: the non-compliant example exited $rc, not 2" >&2; exit 1; }

if [ "$mode" = --print ]; then
  cat "$work/compliant"; echo; cat "$work/noncompliant"
  exit 0
fi
for name in compliant noncompliant; do
  grep -q "^<!-- BEGIN example:$name -->\$" README.md && grep -q "^<!-- END example:$name -->\$" README.md \
    || { echo "readme-example: README.md has no <!-- BEGIN/END example:$name --> markers" >&2; exit 1; }
  awk -v name="$name" -v file="$work/$name" '
    $0 == "<!-- BEGIN example:" name " -->" {
      print; print "```"
      while ((getline line < file) > 0) print line
      print "```"; skip = 1; next
    }
    $0 == "<!-- END example:" name " -->" { skip = 0 }
    !skip { print }
  ' README.md > "$work/README.md"
  cp "$work/README.md" README.md
done
echo "README.md: example reports regenerated" >&2
