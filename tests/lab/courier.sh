#!/usr/bin/env bash
# Private Courier-IMAP instance for the mailprobe lab.  Usage: courier.sh start|stop STATEDIR
#
# Debian's courier-imap package conflicts with dovecot-imapd, so it is not installed: its .deb is
# fetched with `apt-get download` and unpacked into tests/lab/state/courier-root (once).
# courier-authlib (installed: courier-authdaemon, courier-authlib-userdb) reads fixed paths
# (/etc/courier/..., /run/courier/authdaemon): everything runs in a private mount namespace
# (unshare --mount) where the lab's folders are bind-mounted over those paths; the system's
# files are never written.  See tests/lab/README.md.
set -euo pipefail
# shellcheck source=tests/lab/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 2 ] || die "usage: $0 start|stop STATEDIR"
ACTION=$1
STATE=$(abs_dir "$2")
SELF="$LAB_DIR/courier.sh"
PIDFILE=$STATE/courier.pid
ROOT=${LAB_COURIER_ROOT:-$LAB_DIR/state/courier-root}

stop() {
  stop_watchdog "$STATE"
  # The pid is the leader of a process group (setsid) holding the namespace and all servers.
  STOP_GROUP=1 stop_pidfile "$PIDFILE" 10
  # couriertcpd makes itself a process group leader: its group (the login/imapd/couriertls
  # processes of open sessions) is signalled separately, in case it outlived the namespace holder.
  local pid
  if [ -f "$STATE/couriertcpd.pids" ]; then
    while read -r pid; do
      [ -n "$pid" ] && kill -TERM -- "-$pid" 2>/dev/null || true
    done < "$STATE/couriertcpd.pids"
    sleep 0.2
    while read -r pid; do
      [ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null || true
    done < "$STATE/couriertcpd.pids"
    rm -f "$STATE/couriertcpd.pids"
  fi
}

# ---------------------------------------------------------------------------------------------
# Runs inside the mount namespace: bind mounts, then authdaemond and couriertcpd in foreground.
inner() {
  local etc=$STATE/courier-etc
  mount --make-rprivate / 2>/dev/null || true
  mount --bind "$etc" /etc/courier
  if [ -d /run/courier/authdaemon ]; then
    mount --bind "$STATE/authdaemon" /run/courier/authdaemon
  else
    # No /run/courier on this machine: a private /run (only this namespace sees it).
    mount -t tmpfs -o mode=755 lab-run /run
    mkdir -p /run/courier/authdaemon
    chown courier:courier /run/courier/authdaemon
    chmod 750 /run/courier/authdaemon
    mount --bind "$STATE/authdaemon" /run/courier/authdaemon
  fi

  local pids=()
  trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait; exit 0' TERM INT HUP
  (
    set -a
    # shellcheck disable=SC1091
    . /etc/courier/authdaemonrc
    exec /usr/lib/courier/courier-authlib/authdaemond
  ) >>"$STATE/authdaemond.log" 2>&1 &
  pids+=($!)
  # imaplogin talks to authdaemond: wait for its socket.
  local i
  for i in $(seq 100); do [ -S /run/courier/authdaemon/socket ] && break; sleep 0.1; done

  # Same environment as Debian's /usr/lib/courier/imapd and imapd-ssl start scripts.
  # shellcheck disable=SC2016
  local prelude='set -a; prefix=/usr; exec_prefix=/usr; sbindir=/usr/sbin; bindir=/usr/bin;
    . /etc/courier/imapd; . /etc/courier/imapd-ssl;'
  if [ "$IMAP_PORT" != 0 ]; then
    # shellcheck disable=SC2016 # expanded by the inner sh
    env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin /bin/sh -c "$prelude"'
      IMAP_STARTTLS=$IMAPDSTARTTLS
      exec /usr/sbin/couriertcpd -address=$ADDRESS -maxprocs=$MAXDAEMONS -maxperip=$MAXPERIP \
        $TCPDOPTS $PORT "$IMAPLOGIN" "$IMAPD" ${MAILDIRPATH}' \
      >>"$STATE/courier.log" 2>&1 &
    pids+=($!)
  fi
  if [ "$IMAPS_PORT" != 0 ]; then
    # shellcheck disable=SC2016 # expanded by the inner sh
    env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin /bin/sh -c "$prelude"'
      IMAP_TLS=1
      exec /usr/sbin/couriertcpd -address=$SSLADDRESS -maxprocs=$MAXDAEMONS -maxperip=$MAXPERIP \
        $TCPDOPTS $SSLPORT $COURIERTLS -server -tcpd -user=courier \
        "$IMAPLOGIN" "$IMAPD" ${MAILDIRPATH}' \
      >>"$STATE/courier.log" 2>&1 &
    pids+=($!)
  fi
  printf '%s\n' "${pids[@]:1}" > "$STATE/couriertcpd.pids"
  wait
}

if [ "$ACTION" = _inner ]; then
  IMAP_PORT=${LAB_COURIER_IMAP_PORT:-0}
  IMAPS_PORT=${LAB_COURIER_IMAPS_PORT:-0}
  inner
  exit 0
fi

case $ACTION in
  stop) stop; exit 0 ;;
  start) ;;
  *) die "usage: $0 start|stop STATEDIR" ;;
esac
stop

CERTS=${LAB_CERTS:-$STATE/../certs}
CERT=${LAB_CERT:-good}
IMAP_PORT=${LAB_COURIER_IMAP_PORT:-0}
IMAPS_PORT=${LAB_COURIER_IMAPS_PORT:-0}
USER_NAME=${LAB_USER:-alice@lab.test}
PASSWORD=${LAB_PASSWORD:-Secr3t-Lab!}
ADDR=${LAB_ADDR:-127.0.0.1}
TLS_MIN=${LAB_TLS_MIN:-TLSv1.2}
TLS_MAX=${LAB_TLS_MAX:-TLSv1.3}
TLS_REQUIRED=${LAB_LOGINDISABLED:-0}
MAX_PERIP=${LAB_MAX_PERIP:-20}
MAIL_USER=nobody
MAIL_GROUP=nogroup

CERTS=$(cd "$CERTS" 2>/dev/null && pwd) || die "LAB_CERTS: no such folder (run certs.sh first)"
[ -s "$CERTS/$CERT.both.pem" ] || die "no certificate $CERT in $CERTS"
[ "$IMAP_PORT" != 0 ] || [ "$IMAPS_PORT" != 0 ] || die "set LAB_COURIER_IMAP_PORT and/or LAB_COURIER_IMAPS_PORT"
for p in "$IMAP_PORT" "$IMAPS_PORT"; do
  [ "$p" = 0 ] || ! port_busy "$p" || die "port $p is already in use"
done
command -v unshare >/dev/null || die "unshare (util-linux) is needed"
[ -x /usr/lib/courier/courier-authlib/authdaemond ] || die "courier-authdaemon is not installed"
command -v makeuserdb >/dev/null || die "courier-authlib-userdb is not installed"

# --- the courier-imap binaries (unpacked, not installed) -------------------------------------
IMAPD=$ROOT/usr/bin/imapd
IMAPLOGIN=$ROOT/usr/lib/courier/courier/imaplogin
if [ ! -x "$IMAPD" ] || [ ! -x "$IMAPLOGIN" ]; then
  mkdir -p "$(dirname "$ROOT")"
  dl=$(mktemp -d "$(dirname "$ROOT")/.courier-dl.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$dl'" EXIT
  if ! (cd "$dl" && apt-get download courier-imap >download.log 2>&1); then
    # The package lists may be missing on a fresh machine.
    apt-get update -qq >/dev/null 2>&1 || true
    (cd "$dl" && apt-get download courier-imap >download.log 2>&1) || {
      cat "$dl/download.log" >&2
      die "courier.sh: apt-get download courier-imap failed"
    }
  fi
  dpkg-deb -x "$dl"/courier-imap_*.deb "$dl/root"
  # A broken (incomplete) unpack is replaced; a complete one from a concurrent start is kept.
  [ -x "$IMAPD" ] || rm -rf "$ROOT"
  mv -T "$dl/root" "$ROOT" 2>/dev/null || [ -x "$IMAPD" ] || die "courier.sh: could not unpack courier-imap"
  rm -rf "$dl"
  trap - EXIT
fi

# --- configuration ---------------------------------------------------------------------------
ETC=$STATE/courier-etc
mkdir -p "$ETC" "$STATE/authdaemon" "$STATE/mail"
chmod 755 "$STATE" "$STATE/mail" "$ETC"
chown courier:courier "$STATE/authdaemon"
chmod 750 "$STATE/authdaemon"
rm -f "$STATE/courier.log" "$STATE/authdaemond.log" "$STATE/authdaemon/"*

cat > "$ETC/authdaemonrc" <<CONF
authmodulelist="authuserdb"
authmodulelistorig="authuserdb"
daemons=2
authdaemonvar=/run/courier/authdaemon
DEBUG_LOGIN=${LAB_COURIER_DEBUG_LOGIN:-0}
DEFAULTOPTIONS=""
LOGGEROPTS=""
CONF
[ -f /etc/courier/dhparams.pem ] && cp /etc/courier/dhparams.pem "$ETC/dhparams.pem"

# GnuTLS priority string from LAB_TLS_MIN/LAB_TLS_MAX (or LAB_TLS_PRIORITY verbatim).
vers=(TLSv1 TLSv1.1 TLSv1.2 TLSv1.3)
gnutls=(VERS-TLS1.0 VERS-TLS1.1 VERS-TLS1.2 VERS-TLS1.3)
idx() { local i; for i in "${!vers[@]}"; do [ "${vers[$i]}" = "$1" ] && { echo "$i"; return; }; done; die "bad TLS version $1"; }
lo=$(idx "$TLS_MIN"); hi=$(idx "$TLS_MAX")
priority="NORMAL:-VERS-ALL"
for ((i = hi; i >= lo; i--)); do priority="$priority:+${gnutls[$i]}"; done
[ "$lo" -ge 2 ] || priority="$priority:+SHA1:+SIGN-RSA-SHA1"
priority=${LAB_TLS_PRIORITY:-$priority}

cat > "$ETC/imapd" <<CONF
ADDRESS=$ADDR
PORT=$IMAP_PORT
MAXDAEMONS=40
MAXPERIP=$MAX_PERIP
TCPDOPTS="-nodnslookup -noidentlookup"
IMAP_CAPABILITY="IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE"
IMAP_KEYWORDS=1
IMAP_ACL=1
IMAP_CAPABILITY_TLS="\$IMAP_CAPABILITY AUTH=PLAIN"
IMAP_PROXY=0
IMAP_IDLE_TIMEOUT=60
IMAP_MAILBOX_SANITY_CHECK=1
IMAP_DISABLETHREADSORT=0
IMAP_CHECK_ALL_FOLDERS=0
IMAP_OBSOLETE_CLIENT=0
IMAP_UMASK=022
IMAP_USELOCKS=1
IMAP_ENHANCEDIDLE=0
IMAP_TRASHFOLDERNAME=Trash
IMAP_EMPTYTRASH=Trash:7
IMAP_MOVE_EXPUNGE_TO_TRASH=0
SENDMAIL=/usr/sbin/sendmail
HEADERFROM=X-IMAP-Sender
MAILDIRPATH=Maildir
IMAPLOGIN=$IMAPLOGIN
IMAPD=$IMAPD
CONF
cat > "$ETC/imapd-ssl" <<CONF
SSLPORT=$IMAPS_PORT
SSLADDRESS=$ADDR
IMAPDSTARTTLS=YES
IMAP_TLS_REQUIRED=$TLS_REQUIRED
COURIERTLS=/usr/bin/couriertls
TLS_PRIORITY="$priority"
TLS_CERTFILE=$CERTS/$CERT.both.pem
TLS_DHPARAMS=/etc/courier/dhparams.pem
TLS_TRUSTCERTS=/etc/ssl/certs/ca-certificates.crt
TLS_VERIFYPEER=NONE
TLS_CACHEFILE=$STATE/tlscache
TLS_CACHESIZE=524288
MAILDIRPATH=Maildir
CONF
: > "$STATE/tlscache"; chown courier:courier "$STATE/tlscache"; chmod 600 "$STATE/tlscache"

# --- user and Maildir ------------------------------------------------------------------------
uid=$(id -u "$MAIL_USER"); gid=$(getent group "$MAIL_GROUP" | cut -d: -f3)
home=$STATE/mail/$USER_NAME
md=$home/Maildir
if [ ! -d "$md/cur" ]; then
  mkdir -p "$md"/{cur,new,tmp} "$md/.Sent"/{cur,new,tmp}
  touch "$md/.Sent/maildirfolder"
  printf 'INBOX.Sent\n' > "$md/courierimapsubscribed"
  cat > "$md/new/$(date +%s).lab1.mail.lab.test" <<MSG
From: Lab Postmaster <postmaster@lab.test>
To: <$USER_NAME>
Subject: Welcome to the mailprobe Courier lab
Date: $(date -R)
Message-ID: <welcome.courier.$(date +%s)@lab.test>

This mailbox belongs to the mailprobe test lab (Courier-IMAP).
MSG
fi
chown -R "$MAIL_USER:$MAIL_GROUP" "$home"
chmod 700 "$home"

hash=$(printf '%s' "$PASSWORD" | openssl passwd -6 -stdin)
printf '%s\tuid=%s|gid=%s|home=%s|mail=%s|systempw=%s\n' "$USER_NAME" "$uid" "$gid" "$home" "$md" "$hash" > "$ETC/userdb"
chmod 600 "$ETC/userdb"
rm -f "$ETC/userdb.dat" "$ETC/userdbshadow.dat"
makeuserdb -f "$ETC/userdb" >/dev/null || die "courier.sh: makeuserdb failed"
chmod 644 "$ETC/userdb.dat"

# --- start -----------------------------------------------------------------------------------
LAB_COURIER_IMAP_PORT=$IMAP_PORT LAB_COURIER_IMAPS_PORT=$IMAPS_PORT \
  setsid unshare --mount --propagation private "$SELF" _inner "$STATE" \
  </dev/null >>"$STATE/courier.log" 2>&1 &
echo $! > "$PIDFILE"

if ! wait_ports 10 "$IMAP_PORT" "$IMAPS_PORT"; then
  log_tail "$STATE/courier.log" "$STATE/authdaemond.log"
  stop
  die "courier.sh: listeners did not come up within 10 s"
fi
for _ in $(seq 50); do [ -S "$STATE/authdaemon/socket" ] && break; sleep 0.1; done
if ! pid_alive "$(cat "$PIDFILE")" || [ ! -S "$STATE/authdaemon/socket" ]; then
  log_tail "$STATE/courier.log" "$STATE/authdaemond.log"
  stop
  die "courier.sh: courier did not start"
fi

start_watchdog "$SELF" "$STATE"
echo "courier running: pid $(cat "$PIDFILE") (process group), state $STATE, addr=$ADDR imap=$IMAP_PORT imaps=$IMAPS_PORT cert=$CERT tls=\"$priority\""
