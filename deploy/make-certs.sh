#!/usr/bin/env bash
# Makes a CA and one certificate per vimmon role for mutual TLS. Each role's
# certificate names its identity SPIFFE-style in a URI SAN,
# spiffe://<trust-domain>/vimmon/<role>; --client adds certificates for people
# and tools, spiffe://<trust-domain>/client/<name>, which carry no role.
# Needs only bash and openssl.
set -euo pipefail

readonly roles=(server conductor executor inspector monitor)

usage() {
  cat <<'EOF'
Usage: make-certs.sh DIR [options]

Writes into DIR (made with mode 0700 if missing):
  ca.pem, ca.key                   the CA: CN "vimmon CA (TD)", EC P-256
  ROLE.pem, ROLE.key               for ROLE in server conductor executor inspector monitor:
                                   CN vimmon-ROLE, URI SAN spiffe://TD/vimmon/ROLE,
                                   DNS:localhost, IP:127.0.0.1, IP:::1 and the --san entries,
                                   serverAuth and clientAuth
  NAME.pem, NAME.key               for each --client NAME: CN NAME,
                                   URI SAN spiffe://TD/client/NAME, clientAuth only
Private keys are mode 0600.

Options:
  --trust-domain TD   SPIFFE trust domain (default vimmon.local)
  --san LIST          more subject alternative names for the role certificates,
                      comma-separated DNS:name and IP:address entries,
                      e.g. --san DNS:vimmon.example.org,IP:10.0.0.1 (may be repeated)
  --days N            validity of the certificates issued, in days (default 365)
  --ca-days N         validity of a new CA, in days (default 3650)
  --client NAME       also issue a client certificate for NAME (may be repeated)
  --reuse-ca          issue new certificates from the CA already in DIR
                      (every role certificate is issued again)
  --force             replace an existing CA: every certificate it signed stops
                      being trusted by services that load the new ca.pem
  -h, --help          this text

Exit status: 0 done, 2 bad usage or a CA in DIR that neither --force nor
--reuse-ca allows to touch, 1 anything else.
EOF
}

fail() {
  echo "make-certs.sh: $*" >&2
  exit 2
}

dir=''
trust_domain='vimmon.local'
days=365
ca_days=3650
force=0
reuse_ca=0
sans=()
clients=()

need_value() {
  [[ $# -ge 2 && -n $2 ]] || fail "$1 needs a value (see --help)"
}

while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --trust-domain) need_value "$@"; trust_domain=$2; shift 2 ;;
    --trust-domain=*) trust_domain=${1#*=}; shift ;;
    --san) need_value "$@"; sans+=("$2"); shift 2 ;;
    --san=*) sans+=("${1#*=}"); shift ;;
    --days) need_value "$@"; days=$2; shift 2 ;;
    --days=*) days=${1#*=}; shift ;;
    --ca-days) need_value "$@"; ca_days=$2; shift 2 ;;
    --ca-days=*) ca_days=${1#*=}; shift ;;
    --client) need_value "$@"; clients+=("$2"); shift 2 ;;
    --client=*) clients+=("${1#*=}"); shift ;;
    --force) force=1; shift ;;
    --reuse-ca) reuse_ca=1; shift ;;
    --) shift; [[ $# -eq 1 && -z $dir ]] || fail 'exactly one DIR'; dir=$1; shift ;;
    -*) fail "unknown option $1 (see --help)" ;;
    *) [[ -z $dir ]] || fail "exactly one DIR (got '$dir' and '$1')"; dir=$1; shift ;;
  esac
done

[[ -n $dir ]] || { usage >&2; exit 2; }
command -v openssl >/dev/null || { echo 'make-certs.sh: openssl is not on PATH' >&2; exit 1; }

# A SPIFFE trust domain: lower-case letters, digits, dots, dashes and underscores.
[[ $trust_domain =~ ^[a-z0-9._-]+$ ]] || fail "--trust-domain '$trust_domain': use lower-case letters, digits, '.', '-' and '_'"
[[ $days =~ ^[1-9][0-9]{0,5}$ ]] || fail "--days '$days': a whole number of days, at least 1"
[[ $ca_days =~ ^[1-9][0-9]{0,5}$ ]] || fail "--ca-days '$ca_days': a whole number of days, at least 1"
((force && reuse_ca)) && fail '--force and --reuse-ca contradict each other: choose one'

extra_sans=''
for list in ${sans[@]+"${sans[@]}"}; do
  IFS=',' read -r -a entries <<<"$list"
  for entry in ${entries[@]+"${entries[@]}"}; do
    entry=${entry// /}
    [[ -n $entry ]] || continue
    if [[ $entry =~ ^DNS:[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?$ || $entry =~ ^IP:[0-9A-Fa-f.:]+$ ]]; then
      extra_sans+=", $entry"
    else
      fail "--san '$entry': only DNS:name and IP:address entries (the URI SAN is the role's SPIFFE id)"
    fi
  done
done

for name in ${clients[@]+"${clients[@]}"}; do
  [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || fail "--client '$name': use letters, digits, '.', '-' and '_'"
  [[ $name != ca && " ${roles[*]} " != *" $name "* ]] || fail "--client '$name': that name is taken by the CA or a role"
done

if [[ -e $dir/ca.key ]]; then
  if ((reuse_ca)); then
    [[ -f $dir/ca.pem ]] || fail "--reuse-ca: $dir/ca.key is there but $dir/ca.pem is not"
  elif ((!force)); then
    fail "$dir/ca.key exists; --reuse-ca issues new certificates from that CA, --force replaces it (and every certificate it signed)"
  fi
elif ((reuse_ca)); then
  fail "--reuse-ca: there is no CA in $dir (no ca.key)"
fi

if [[ ! -d $dir ]]; then
  mkdir -p -- "$dir"
  chmod 0700 -- "$dir"
fi

umask 077
work=$(mktemp -d "$dir/.make-certs.XXXXXX")
trap 'rm -rf -- "$work"' EXIT

ssl() {
  local out
  if ! out=$(openssl "$@" 2>&1); then
    echo "make-certs.sh: openssl $1 failed:" >&2
    echo "$out" >&2
    exit 1
  fi
}

new_key() {
  ssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
}

# --- The CA ------------------------------------------------------------------------
if ((reuse_ca)); then
  ca_pem=$dir/ca.pem
  ca_key=$dir/ca.key
  [[ $(openssl x509 -in "$ca_pem" -noout -pubkey) == "$(openssl pkey -in "$ca_key" -pubout)" ]] ||
    fail "--reuse-ca: $dir/ca.key is not the key of $dir/ca.pem"
  if ! openssl x509 -in "$ca_pem" -noout -checkend $((days * 86400)) >/dev/null; then
    echo "make-certs.sh: warning: the CA in $dir expires before the $days days of the new certificates" >&2
  fi
else
  ca_pem=$work/ca.pem
  ca_key=$work/ca.key
  cat >"$work/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
  new_key "$ca_key"
  ssl req -x509 -new -key "$ca_key" -sha256 -days "$ca_days" -subj "/CN=vimmon CA ($trust_domain)" \
    -set_serial "0x$(openssl rand -hex 16)" -config "$work/ca.cnf" -extensions ca -out "$ca_pem"
fi

# --- Leaves --------------------------------------------------------------------------
# issue NAME CN SAN EKU: NAME.key and NAME.pem in the work folder, signed by the CA.
issue() {
  local name=$1 cn=$2 san=$3 eku=$4
  cat >"$work/$name.ext" <<EOF
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = $eku
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
subjectAltName = $san
EOF
  new_key "$work/$name.key"
  ssl req -new -key "$work/$name.key" -subj "/CN=$cn" -out "$work/$name.csr"
  ssl x509 -req -in "$work/$name.csr" -CA "$ca_pem" -CAkey "$ca_key" -set_serial "0x$(openssl rand -hex 16)" \
    -sha256 -days "$days" -extfile "$work/$name.ext" -out "$work/$name.pem"
  rm -f -- "$work/$name.csr" "$work/$name.ext"
}

issued=()
for role in "${roles[@]}"; do
  issue "$role" "vimmon-$role" "URI:spiffe://$trust_domain/vimmon/$role, DNS:localhost, IP:127.0.0.1, IP:::1$extra_sans" 'serverAuth, clientAuth'
  issued+=("$role")
done
for name in ${clients[@]+"${clients[@]}"}; do
  issue "$name" "$name" "URI:spiffe://$trust_domain/client/$name" 'clientAuth'
  issued+=("$name")
done

# --- Into place: the CA first, so a leaf never lands beside a CA that did not sign it.
install_pair() {
  chmod 0600 -- "$work/$1.key"
  chmod 0644 -- "$work/$1.pem"
  mv -f -- "$work/$1.key" "$dir/$1.key"
  mv -f -- "$work/$1.pem" "$dir/$1.pem"
}
if ((!reuse_ca)); then
  install_pair ca
  echo "CA          $dir/ca.pem  (vimmon CA ($trust_domain), $ca_days days)"
fi
for name in "${issued[@]}"; do
  install_pair "$name"
  if [[ " ${roles[*]} " == *" $name "* ]]; then
    echo "$(printf '%-11s' "$name") $dir/$name.pem  spiffe://$trust_domain/vimmon/$name"
  else
    echo "$(printf '%-11s' "$name") $dir/$name.pem  spiffe://$trust_domain/client/$name"
  fi
done

# Certificates of earlier runs that the CA in DIR did not sign (after --force).
for pem in "$dir"/*.pem; do
  [[ -f $pem && $pem != "$dir/ca.pem" ]] || continue
  if ! openssl verify -CAfile "$dir/ca.pem" "$pem" >/dev/null 2>&1; then
    echo "make-certs.sh: warning: $pem was not signed by the CA in $dir (left from an earlier CA?)" >&2
  fi
done
