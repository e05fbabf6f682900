#!/usr/bin/env bash
# Creates (idempotently) a test CA and the lab's server certificates in OUTDIR.
#   ca.pem ca.key                         test CA (RSA 2048)
#   NAME.pem NAME.key NAME.both.pem       for NAME in good expired soon wrongname sanonly wildcard selfsigned
# NAME.pem holds the leaf certificate only; NAME.both.pem holds certificate + key.
# Keys are world-readable on purpose (couriertls runs as `courier`, Dovecot login processes drop
# privileges): these are throw-away test keys.
# Generation happens in a temporary folder that is renamed into place, so concurrent callers are safe.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
OUT=$1
case $OUT in /*) ;; *) OUT=$PWD/$OUT ;; esac
NAMES=(good expired soon wrongname sanonly wildcard selfsigned)

complete() {
  local d=$1 n
  [ -s "$d/ca.pem" ] && [ -s "$d/ca.key" ] || return 1
  for n in "${NAMES[@]}"; do
    [ -s "$d/$n.pem" ] && [ -s "$d/$n.key" ] && [ -s "$d/$n.both.pem" ] || return 1
  done
  # Certificates valid "for a year" are regenerated once they get close to their end.
  openssl x509 -in "$d/good.pem" -noout -checkend $((30 * 86400)) >/dev/null 2>&1 || return 1
  openssl x509 -in "$d/soon.pem" -noout -checkend $((3 * 86400)) >/dev/null 2>&1 || return 1
}

if complete "$OUT"; then
  exit 0
fi

parent=$(dirname "$OUT")
mkdir -p "$parent"
TMP=$(mktemp -d "$parent/.certs.tmp.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"

openssl_q() { openssl "$@" >/dev/null 2>openssl.err || { cat openssl.err >&2; exit 1; }; }

# --- CA -------------------------------------------------------------------------------------
cat > ca.cnf <<'CNF'
[ ca ]
default_ca = labca
[ labca ]
dir = .
database = ./index.txt
new_certs_dir = ./newcerts
serial = ./serial
certificate = ./ca.pem
private_key = ./ca.key
default_md = sha256
policy = policy_any
preserve = yes
unique_subject = no
copy_extensions = none
email_in_dn = no
[ policy_any ]
commonName = supplied
organizationName = optional
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = placeholder
[ v3_ca ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
CNF
mkdir newcerts
: > index.txt
printf '%s\n' "$(openssl rand -hex 8)" > serial

openssl_q req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 -sha256 \
  -subj "/O=mailprobe lab/CN=mailprobe Lab Test CA" -extensions v3_ca -config ca.cnf

# --- leaves ---------------------------------------------------------------------------------
# leaf NAME CN SAN START END [self]
#   START/END are openssl ca dates (YYYYMMDDHHMMSSZ)
leaf() {
  local name=$1 cn=$2 san=$3 start=$4 end=$5 self=${6:-}
  cat > "$name.ext" <<EXT
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $san
subjectKeyIdentifier = hash
EXT
  openssl_q req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "/O=mailprobe lab/CN=$cn"
  if [ -n "$self" ]; then
    # Self-signed: signs its own request (the `ca` command with -selfsign uses the request's key).
    openssl_q ca -batch -config ca.cnf -selfsign -keyfile "$name.key" -cert /dev/null \
      -in "$name.csr" -out "$name.pem" -startdate "$start" -enddate "$end" \
      -extfile "$name.ext" -notext
  else
    openssl_q ca -batch -config ca.cnf -in "$name.csr" -out "$name.pem" \
      -startdate "$start" -enddate "$end" -extfile "$name.ext" -notext
  fi
  cat "$name.pem" "$name.key" > "$name.both.pem"
  rm -f "$name.csr" "$name.ext"
}

d() { date -u -d "$1" +%Y%m%d%H%M%SZ; }
NOW=$(d '-1 hour')
YEAR=$(d '+365 days')

leaf good       mail.lab.test      DNS:mail.lab.test                 "$NOW"             "$YEAR"
leaf expired    mail.lab.test      DNS:mail.lab.test                 "$(d '-400 days')" "$(d '-35 days')"
leaf soon       mail.lab.test      DNS:mail.lab.test                 "$NOW"             "$(d '+10 days')"
leaf wrongname  other.example.net  DNS:other.example.net             "$NOW"             "$YEAR"
leaf sanonly    "Lab Mail Server"  DNS:mail.lab.test                 "$NOW"             "$YEAR"
leaf wildcard   '*.lab.test'       'DNS:*.lab.test'                  "$NOW"             "$YEAR"
leaf selfsigned mail.lab.test      DNS:mail.lab.test                 "$NOW"             "$YEAR" self

# Sanity checks: everything but `selfsigned` and `expired` verifies against the CA.
for n in good soon wrongname sanonly wildcard; do
  openssl verify -CAfile ca.pem "$n.pem" >/dev/null
done

chmod 644 ./*.pem ./*.key
chmod 755 .
rm -rf newcerts index.txt* serial* ca.cnf openssl.err

# Publish: rename the finished folder into place. If another process won the race, keep its set.
if [ -e "$OUT" ]; then
  if complete "$OUT"; then
    exit 0
  fi
  old="$OUT.old.$$"
  mv "$OUT" "$old" 2>/dev/null || true
  rm -rf "$old"
fi
if mv -T "$TMP" "$OUT" 2>/dev/null; then
  trap - EXIT
elif ! complete "$OUT"; then
  echo "certs.sh: could not publish certificates into $OUT" >&2
  exit 1
fi
