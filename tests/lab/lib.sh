# shellcheck shell=bash
# Helpers shared by the lab scripts (sourced, not executed).

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export LAB_DIR

die() { echo "$*" >&2; exit 1; }

# True when PID is a live (non-zombie) process.
pid_alive() {
  local pid=$1 state
  [ -n "$pid" ] && [ -e "/proc/$pid/stat" ] || return 1
  state=$(sed -E 's/^[0-9]+ \(.*\) (.).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$state" != Z ] && [ "$state" != X ]
}

# Prints the start time (clock ticks since boot) of PID; empty if gone.
pid_starttime() {
  sed -E 's/^[0-9]+ \(.*\) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'
}

# True when 127.0.0.1:PORT is in LISTEN state.
port_listening() {
  local port=$1
  if command -v ss >/dev/null 2>&1; then
    [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
  fi
}

# wait_ports TIMEOUT_SECONDS PORT... : waits until every port listens.
wait_ports() {
  local timeout=$1 port deadline
  shift
  deadline=$((SECONDS + timeout))
  for port in "$@"; do
    [ -n "$port" ] && [ "$port" != 0 ] || continue
    until port_listening "$port"; do
      [ "$SECONDS" -lt "$deadline" ] || return 1
      sleep 0.1
    done
  done
}

# True when PORT is already taken by someone (refuse to start over it).
port_busy() { port_listening "$1"; }

# stop_pidfile PIDFILE [TIMEOUT] : SIGTERM, wait, then SIGKILL. Idempotent.
# With STOP_GROUP=1 the whole process group led by PID is signalled.
stop_pidfile() {
  local file=$1 timeout=${2:-10} pid target deadline
  [ -f "$file" ] || return 0
  pid=$(tr -dc '0-9' < "$file")
  if [ -n "$pid" ] && pid_alive "$pid"; then
    target=$pid
    [ "${STOP_GROUP:-0}" = 1 ] && target=-$pid
    kill -TERM -- "$target" 2>/dev/null || true
    deadline=$((SECONDS + timeout))
    while pid_alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if pid_alive "$pid"; then
      kill -KILL -- "$target" 2>/dev/null || true
      sleep 0.2
    fi
  fi
  rm -f "$file"
}

# start_watchdog SCRIPT STATEDIR : when LAB_OWNER_PID is set, spawns a detached process that runs
# `SCRIPT stop STATEDIR` once that owner process is gone. Its pid goes to STATEDIR/watchdog.pid.
start_watchdog() {
  local script=$1 state=$2 owner=${LAB_OWNER_PID:-} st
  [ -n "$owner" ] || return 0
  pid_alive "$owner" || die "LAB_OWNER_PID=$owner is not a running process"
  st=$(pid_starttime "$owner")
  # The start time guards against the owner's pid being reused by another process.
  # shellcheck disable=SC2016 # expanded by the watchdog's bash
  setsid bash -c '
    owner=$1 st=$2 script=$3 state=$4
    while [ -e "/proc/$owner/stat" ] &&
          [ "$(sed -E "s/^[0-9]+ \(.*\) //" "/proc/$owner/stat" 2>/dev/null | cut -d" " -f20)" = "$st" ]; do
      sleep 1
    done
    exec "$script" stop "$state"
  ' lab-watchdog "$owner" "$st" "$script" "$state" </dev/null >/dev/null 2>&1 &
  echo $! > "$state/watchdog.pid"
}

# stop_watchdog STATEDIR : kills the watchdog unless we are the watchdog itself.
stop_watchdog() {
  local file=$1/watchdog.pid pid
  [ -f "$file" ] || return 0
  pid=$(tr -dc '0-9' < "$file")
  if [ -n "$pid" ] && [ "$pid" != "$$" ] && pid_alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

# log_tail FILE... : prints the last lines of existing files (for failure reports).
log_tail() {
  local f
  for f in "$@"; do
    [ -s "$f" ] || continue
    echo "---- last lines of $f ----" >&2
    tail -n 40 "$f" >&2
  done
}

# abs_path DIR : absolute path of DIR (created if needed).
abs_dir() { mkdir -p "$1" && (cd "$1" && pwd); }
