#!/usr/bin/env bash
# The main job, once: `mailprobe check` against a real mailbox when MAILPROBE_IMAP is set, and
# otherwise against the local mail lab (real Dovecot and Postfix on loopback, started here and
# stopped on exit). Extra arguments go to `mailprobe check` (e.g. --format json).
#
#   MAILPROBE_IMAP=imap.example.com:993 MAILPROBE_SMTP=smtp.example.com:587 \
#   MAILPROBE_USER=alice@example.com MAILPROBE_PASSWORD=... bash scripts/demo.sh
#
# The lab listens on fixed ports (IMAPS 14993, submission 14587); LAB_IMAPS_PORT and
# LAB_SUBMISSION_PORT move them when something else holds those.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin mailprobe
bin=target/release/mailprobe
rc=0
if [ -n "${MAILPROBE_IMAP:-}" ]; then
  : "${MAILPROBE_USER:?set MAILPROBE_USER to the mailbox login}"
  args=(check --imap "$MAILPROBE_IMAP" --user "$MAILPROBE_USER")
  [ -n "${MAILPROBE_SMTP:-}" ] && args+=(--smtp "$MAILPROBE_SMTP")
  "$bin" "${args[@]}" "$@" || rc=$?
  exit "$rc"
fi
echo "No MAILPROBE_IMAP set: checking the local mail lab (Dovecot + Postfix on 127.0.0.1)." >&2
export LAB_IMAPS_PORT=${LAB_IMAPS_PORT:-14993} LAB_SUBMISSION_PORT=${LAB_SUBMISSION_PORT:-14587}
bash tests/lab/up.sh >&2
trap 'bash tests/lab/down.sh >&2' EXIT
# The lab's ports are not the well-known 993/587: the probe finds out itself that the IMAPS port
# speaks TLS from the first byte and submission greets in clear text (STARTTLS).
MAILPROBE_PASSWORD='Secr3t-Lab!' "$bin" check \
  --imap "mail.lab.test:$LAB_IMAPS_PORT" \
  --smtp "mail.lab.test:$LAB_SUBMISSION_PORT" \
  --connect-to mail.lab.test:127.0.0.1 \
  --ca-file tests/lab/state/certs/ca.pem \
  --user alice@lab.test "$@" || rc=$?
exit "$rc"
