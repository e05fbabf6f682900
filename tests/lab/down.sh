#!/usr/bin/env bash
# Stops the lab started by up.sh.
set -euo pipefail
LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$LAB_DIR/postfix.sh" stop "$LAB_DIR/state/default/postfix"
"$LAB_DIR/dovecot.sh" stop "$LAB_DIR/state/default/dovecot"
echo "mailprobe lab stopped"
