#!/usr/bin/env bash
# Private Dovecot instance for the mailprobe lab.  Usage: dovecot.sh start|stop STATEDIR
# Environment (all optional): see tests/lab/README.md.
set -euo pipefail
# shellcheck source=tests/lab/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 2 ] || die "usage: $0 start|stop STATEDIR"
ACTION=$1
STATE=$(abs_dir "$2")
SELF="$LAB_DIR/dovecot.sh"
PIDFILE=$STATE/dovecot.pid

stop() {
  stop_watchdog "$STATE"
  stop_pidfile "$PIDFILE" 10
  # Socket folder under /tmp (long STATEDIR only).
  if [ -L "$STATE/run" ]; then
    rm -rf "$(readlink "$STATE/run")"
    rm -f "$STATE/run"
  fi
}

case $ACTION in
  stop) stop; exit 0 ;;
  start) ;;
  *) die "usage: $0 start|stop STATEDIR" ;;
esac

# An instance left over in this state dir is stopped first.
stop

CERTS=${LAB_CERTS:-$STATE/../certs}
CERT=${LAB_CERT:-good}
IMAP_PORT=${LAB_IMAP_PORT:-0}
IMAPS_PORT=${LAB_IMAPS_PORT:-0}
POP3_PORT=${LAB_POP3_PORT:-0}
POP3S_PORT=${LAB_POP3S_PORT:-0}
SSL=${LAB_SSL:-yes}
TLS_MIN=${LAB_TLS_MIN:-TLSv1.2}
TLS_MAX=${LAB_TLS_MAX:-}
MAX_USERIP=${LAB_MAX_USERIP:-20}
EXTRA_USERS=${LAB_EXTRA_USERS:-0}
LOGINDISABLED=${LAB_LOGINDISABLED:-0}
# Dovecot 2.3 treats a connection whose remote IP equals its local IP as "secured" (plaintext
# LOGIN allowed, no LOGINDISABLED) whatever the settings.  A client connecting to 127.0.0.2 comes
# from 127.0.0.1, so LOGINDISABLED listens there unless LAB_ADDR says otherwise.
if [ "$LOGINDISABLED" = 1 ]; then ADDR=${LAB_ADDR:-127.0.0.2}; else ADDR=${LAB_ADDR:-127.0.0.1}; fi
LMTP=${LAB_LMTP:-1}
USER_NAME=${LAB_USER:-alice@lab.test}
PASSWORD=${LAB_PASSWORD:-Secr3t-Lab!}
MAIL_USER=nobody
MAIL_GROUP=nogroup

case $SSL in yes|no|required) ;; *) die "LAB_SSL must be yes, no or required" ;; esac
case $PASSWORD in *:*) die "LAB_PASSWORD must not contain ':'" ;; esac
if [ "$SSL" != no ]; then
  CERTS=$(cd "$CERTS" 2>/dev/null && pwd) || die "LAB_CERTS: no such folder (run certs.sh first)"
  [ -s "$CERTS/$CERT.pem" ] && [ -s "$CERTS/$CERT.key" ] || die "no certificate $CERT in $CERTS"
fi
if [ "$SSL" = no ] && { [ "$IMAPS_PORT" != 0 ] || [ "$POP3S_PORT" != 0 ]; }; then
  die "LAB_SSL=no cannot serve implicit-TLS ports"
fi
for p in "$IMAP_PORT" "$IMAPS_PORT" "$POP3_PORT" "$POP3S_PORT"; do
  [ "$p" = 0 ] || ! port_busy "$p" || die "port $p is already in use"
done

# Unix socket paths are limited to 107 bytes (Dovecot's longest lives under base_dir/login/).
# A long STATEDIR gets its sockets in a short folder under /tmp, with symlinks from STATEDIR
# (postfix.sh resolves them).
rm -f "$STATE/auth-client" "$STATE/lmtp"
if [ ${#STATE} -le 60 ]; then
  RUN=$STATE/run
  AUTH_SOCK=$STATE/auth-client
  LMTP_SOCK=$STATE/lmtp
else
  RUN=/tmp/mailprobe-lab-$(printf '%s' "$STATE" | md5sum | cut -c1-16)
  # Names differ from Dovecot's own base_dir sockets (auth-client, lmtp).
  AUTH_SOCK=$RUN/lab-auth-client
  LMTP_SOCK=$RUN/lab-lmtp
  [ -L "$STATE/run" ] || rm -rf "$STATE/run"
  ln -sfn "$RUN" "$STATE/run"
  ln -sfn "$AUTH_SOCK" "$STATE/auth-client"
  ln -sfn "$LMTP_SOCK" "$STATE/lmtp"
fi
mkdir -p "$RUN" "$STATE/state" "$STATE/mail"
rm -f "$STATE/openssl.cnf"
rm -f "$STATE/dovecot.log"

# --- users and mailboxes ------------------------------------------------------------------
uid=$(id -u "$MAIL_USER"); gid=$(getent group "$MAIL_GROUP" | cut -d: -f3)
{
  printf '%s:{PLAIN}%s:%s:%s::%s::\n' "$USER_NAME" "$PASSWORD" "$uid" "$gid" "$STATE/mail/$USER_NAME"
  if [ "$USER_NAME" != nosent@lab.test ]; then
    printf '%s:{PLAIN}%s:%s:%s::%s::\n' nosent@lab.test "$PASSWORD" "$uid" "$gid" "$STATE/mail/nosent@lab.test"
  fi
  for i in $(seq -f '%02g' 1 "$EXTRA_USERS"); do
    printf '%s:{PLAIN}%s:%s:%s::%s::\n' "user$i@lab.test" "$PASSWORD" "$uid" "$gid" "$STATE/mail/user$i@lab.test"
  done
  # Users whose passwords a passwd-file line cannot hold (CR, LF, any byte): NAME=BASE64 pairs.
  for pair in ${LAB_B64_USERS:-}; do
    printf '%s:{PLAIN.b64}%s:%s:%s::%s::\n' "${pair%%=*}" "${pair#*=}" "$uid" "$gid" "$STATE/mail/${pair%%=*}"
  done
} > "$STATE/users"
chgrp dovecot "$STATE/users"; chmod 640 "$STATE/users"

# make_maildir HOME FOLDER... : Maildir++ with the given folders (INBOX is always there),
# all subscribed, plus one welcome message in INBOX.  Existing mail is kept.
make_maildir() {
  local home=$1 md f
  shift
  md=$home/Maildir
  if [ ! -d "$md/cur" ]; then
    mkdir -p "$md"/{cur,new,tmp}
    for f in "$@"; do mkdir -p "$md/.$f"/{cur,new,tmp}; done
    printf '%s\n' "$@" > "$md/subscriptions"
    cat > "$md/new/$(date +%s).lab1.mail.lab.test" <<MSG
Return-Path: <postmaster@lab.test>
From: Lab Postmaster <postmaster@lab.test>
To: <$(basename "$home")>
Subject: Welcome to the mailprobe lab
Date: $(date -R)
Message-ID: <welcome.$(date +%s)@lab.test>

This mailbox belongs to the mailprobe test lab.
MSG
  fi
  chown -R "$MAIL_USER:$MAIL_GROUP" "$home"
  chmod 700 "$home"
}
make_maildir "$STATE/mail/$USER_NAME" Sent Drafts Trash Projects
if [ "$USER_NAME" != nosent@lab.test ]; then
  make_maildir "$STATE/mail/nosent@lab.test" Drafts Trash
fi
for i in $(seq -f '%02g' 1 "$EXTRA_USERS"); do
  make_maildir "$STATE/mail/user$i@lab.test" Sent Drafts Trash Projects
done
for pair in ${LAB_B64_USERS:-}; do
  make_maildir "$STATE/mail/${pair%%=*}" Sent Drafts Trash
done
# nobody must be able to reach the homes.
chmod 755 "$STATE" "$STATE/mail"

# --- configuration ------------------------------------------------------------------------
protocols=imap
[ "$POP3_PORT" != 0 ] || [ "$POP3S_PORT" != 0 ] && protocols="$protocols pop3"
[ "$LMTP" = 1 ] && protocols="$protocols lmtp"

case $SSL in
  no)       ssl_setting=no;       plaintext=no ;;
  yes)      ssl_setting=yes;      plaintext=no ;;
  required) ssl_setting=required; plaintext=yes ;;
esac
trusted=
if [ "$LOGINDISABLED" = 1 ]; then
  [ "$SSL" != no ] || die "LAB_LOGINDISABLED=1 needs TLS (LAB_SSL=yes|required)"
  plaintext=yes
fi

cipher_list='ALL:!kRSA:!SRP:!kDHd:!DSS:!aNULL:!eNULL:!EXPORT:!DES:!3DES:!MD5:!PSK:!RC4:!ADH:!LOW@STRENGTH'
case $TLS_MIN in
  SSLv3|TLSv1|TLSv1.1) cipher_list='ALL:@SECLEVEL=0' ;;
  TLSv1.2|TLSv1.3|ANY|LATEST) ;;
  *) die "LAB_TLS_MIN must be TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3" ;;
esac
# A cipher list of the caller's (TLS <= 1.2 suites; TLS 1.3 is left out with LAB_TLS_MAX).
if [ -n "${LAB_TLS_CIPHERS:-}" ]; then
  case $LAB_TLS_CIPHERS in *[!A-Za-z0-9:@=+!._-]*) die "LAB_TLS_CIPHERS: unexpected characters" ;; esac
  cipher_list=$LAB_TLS_CIPHERS
fi

# Dovecot 2.3 has no ssl_max_protocol: the maximum goes through an OpenSSL config file
# (OPENSSL_CONF, passed to the login processes with import_environment).
import_env='TZ CORE_OUTOFMEM CORE_ERROR'
if [ -n "$TLS_MAX" ]; then
  case $TLS_MAX in TLSv1|TLSv1.1|TLSv1.2|TLSv1.3) ;; *) die "LAB_TLS_MAX must be TLSv1..TLSv1.3" ;; esac
  cat > "$STATE/openssl.cnf" <<CNF
openssl_conf = lab_conf
[ lab_conf ]
ssl_conf = lab_ssl
[ lab_ssl ]
system_default = lab_tls
[ lab_tls ]
MaxProtocol = $TLS_MAX
CNF
  import_env="$import_env OPENSSL_CONF=$STATE/openssl.cnf"
fi

listener() { # NAME PORT SSL
  [ "$2" != 0 ] || return 0
  printf '  inet_listener %s {\n    address = '"$ADDR"'\n    port = %s\n    ssl = %s\n  }\n' "$1" "$2" "$3"
}
# Dovecot's default listeners (143/993/110/995) must be switched off explicitly.
off_listener() { printf '  inet_listener %s {\n    port = 0\n  }\n' "$1"; }

{
  cat <<CONF
# Generated by tests/lab/dovecot.sh -- do not edit, rewritten at every start.
instance_name = lab-$(basename "$STATE")
base_dir = $RUN
state_dir = $STATE/state
log_path = $STATE/dovecot.log
info_log_path = $STATE/dovecot.log
auth_verbose = yes
auth_mechanisms = plain login
protocols = $protocols
listen = $ADDR
shutdown_clients = yes
import_environment = $import_env
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
mail_max_userip_connections = $MAX_USERIP
disable_plaintext_auth = $plaintext
login_trusted_networks = $trusted
ssl = $ssl_setting
CONF
  if [ "$SSL" != no ]; then
    cat <<CONF
ssl_cert = <$CERTS/$CERT.pem
ssl_key = <$CERTS/$CERT.key
ssl_dh = </usr/share/dovecot/dh.pem
ssl_min_protocol = $TLS_MIN
ssl_cipher_list = $cipher_list
ssl_prefer_server_ciphers = yes
CONF
  fi
  cat <<CONF

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $STATE/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $STATE/users
}

namespace inbox {
  inbox = yes
  separator = /
  # No "auto =": folders exist only where dovecot.sh created them (nosent@ has no Sent).
  mailbox Sent {
    special_use = \\Sent
  }
  mailbox Drafts {
    special_use = \\Drafts
  }
  mailbox Trash {
    special_use = \\Trash
  }
  mailbox Junk {
    special_use = \\Junk
  }
}

# High-performance login mode: one long-lived imap-login process serves every connection, so
# the TLS session tickets it issues (its ticket key lives in the process) are honoured by the
# next connection, as on a production server; with the default (one process per connection)
# no session can ever be resumed.
service imap-login {
  service_count = 0
  process_min_avail = 1
CONF
  if [ "$IMAP_PORT" != 0 ]; then listener imap "$IMAP_PORT" no; else off_listener imap; fi
  if [ "$IMAPS_PORT" != 0 ]; then listener imaps "$IMAPS_PORT" yes; else off_listener imaps; fi
  echo "}"
  if [[ $protocols == *pop3* ]]; then
    echo "service pop3-login {"
    if [ "$POP3_PORT" != 0 ]; then listener pop3 "$POP3_PORT" no; else off_listener pop3; fi
    if [ "$POP3S_PORT" != 0 ]; then listener pop3s "$POP3S_PORT" yes; else off_listener pop3s; fi
    echo "}"
  fi
  cat <<CONF
service auth {
  unix_listener $AUTH_SOCK {
    mode = 0666
  }
}
service lmtp {
  unix_listener $LMTP_SOCK {
    mode = 0666
  }
}
protocol lmtp {
  postmaster_address = postmaster@lab.test
}
CONF
} > "$STATE/dovecot.conf"

# Check the configuration before starting (prints the reason on error).
if ! doveconf -c "$STATE/dovecot.conf" -n > "$STATE/doveconf.out" 2>&1; then
  cat "$STATE/doveconf.out" >&2
  die "dovecot.sh: invalid configuration $STATE/dovecot.conf"
fi

# Dovecot keeps the stderr it inherits open: never give it the caller's.
dovecot -c "$STATE/dovecot.conf" </dev/null >"$STATE/dovecot.stderr" 2>&1 || {
  log_tail "$STATE/dovecot.stderr" "$STATE/dovecot.log"
  die "dovecot.sh: dovecot failed to start"
}

deadline=$((SECONDS + 10))
until [ -s "$RUN/master.pid" ] && pid_alive "$(cat "$RUN/master.pid")"; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    log_tail "$STATE/dovecot.stderr" "$STATE/dovecot.log"
    die "dovecot.sh: no master.pid after 10 s"
  fi
  sleep 0.1
done
cp "$RUN/master.pid" "$PIDFILE"

socks=("$AUTH_SOCK")
[ "$LMTP" = 1 ] && socks+=("$LMTP_SOCK")
ok=1
wait_ports 10 "$IMAP_PORT" "$IMAPS_PORT" "$POP3_PORT" "$POP3S_PORT" || ok=0
for s in "${socks[@]}"; do
  while [ "$ok" = 1 ] && [ ! -S "$s" ]; do
    [ "$SECONDS" -lt "$deadline" ] || ok=0
    sleep 0.1
  done
done
if [ "$ok" != 1 ]; then
  log_tail "$STATE/dovecot.stderr" "$STATE/dovecot.log"
  stop
  die "dovecot.sh: listeners did not come up within 10 s"
fi

start_watchdog "$SELF" "$STATE"
echo "dovecot running: pid $(cat "$PIDFILE"), state $STATE, addr=$ADDR imap=$IMAP_PORT imaps=$IMAPS_PORT pop3=$POP3_PORT pop3s=$POP3S_PORT ssl=$SSL cert=$CERT"
