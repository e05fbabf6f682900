#!/usr/bin/env bash
# Starts the "main" lab for humans on fixed ports, state in tests/lab/state/default:
#   Dovecot  IMAP 14143 (STARTTLS), IMAPS 14993       user alice@lab.test / Secr3t-Lab!
#   Postfix  submission 14587 (STARTTLS), submissions 14465, delivering into Dovecot
# Certificates (CA: tests/lab/state/certs/ca.pem) are for mail.lab.test.  Stop with down.sh.
# Environment variables of dovecot.sh/postfix.sh (LAB_CERT, LAB_TLS_MIN, ...) still apply.
set -euo pipefail
# shellcheck source=tests/lab/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE=$LAB_DIR/state
unset LAB_OWNER_PID
export LAB_CERTS=$STATE/certs
"$LAB_DIR/certs.sh" "$LAB_CERTS"

LAB_IMAP_PORT=${LAB_IMAP_PORT:-14143} LAB_IMAPS_PORT=${LAB_IMAPS_PORT:-14993} \
  "$LAB_DIR/dovecot.sh" start "$STATE/default/dovecot"
LAB_DOVECOT_STATE=$STATE/default/dovecot \
  LAB_SUBMISSION_PORT=${LAB_SUBMISSION_PORT:-14587} LAB_SUBMISSIONS_PORT=${LAB_SUBMISSIONS_PORT:-14465} \
  "$LAB_DIR/postfix.sh" start "$STATE/default/postfix" || {
  "$LAB_DIR/dovecot.sh" stop "$STATE/default/dovecot"
  exit 1
}

cat <<INFO

mailprobe lab is up (stop it with tests/lab/down.sh):
  IMAP        127.0.0.1:${LAB_IMAP_PORT:-14143}  (STARTTLS)
  IMAPS       127.0.0.1:${LAB_IMAPS_PORT:-14993}
  submission  127.0.0.1:${LAB_SUBMISSION_PORT:-14587}  (STARTTLS, AUTH after TLS)
  submissions 127.0.0.1:${LAB_SUBMISSIONS_PORT:-14465}
  user        ${LAB_USER:-alice@lab.test} / ${LAB_PASSWORD:-Secr3t-Lab!}  (also nosent@lab.test, no Sent folder)
  TLS name    mail.lab.test, CA $LAB_CERTS/ca.pem
  logs        $STATE/default/dovecot/dovecot.log, $STATE/default/postfix/postfix.log
  try         openssl s_client -starttls imap -connect 127.0.0.1:${LAB_IMAP_PORT:-14143} -CAfile $LAB_CERTS/ca.pem -verify_hostname mail.lab.test
INFO
