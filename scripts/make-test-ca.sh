#!/usr/bin/env bash
# make-test-ca.sh: makes a test CA and certificates for an rdb cluster with mutual TLS.
#
# Usage: scripts/make-test-ca.sh DIR [NODE_ID...]        (node ids default to 1 2 3)
#
# Writes into DIR (created if missing):
#   ca.pem, ca-key.pem                the CA (self-signed, valid 30 days)
#   node-<ID>.pem, node-<ID>-key.pem  one per node; DNS names node-<ID>.rdb (the node's
#                                     identity, checked by peers) and server.rdb (checked
#                                     by clients)
#   client.pem, client-key.pem        a client certificate (DNS name client.rdb, no node id)
# Keys are ECDSA P-256 in PKCS#8 PEM. For tests only: the CA key sits next to the
# certificates. Needs openssl (Debian: apt-get install openssl).

set -euo pipefail

if [[ $# -lt 1 || "$1" == -* ]]; then
  echo "usage: $0 DIR [NODE_ID...]" >&2
  exit 2
fi
if ! command -v openssl >/dev/null; then
  echo "make-test-ca.sh: openssl not found (Debian: apt-get install openssl)" >&2
  exit 2
fi
DIR=$1
shift
IDS=("$@")
if [[ ${#IDS[@]} -eq 0 ]]; then IDS=(1 2 3); fi
for id in "${IDS[@]}"; do
  if ! [[ "$id" =~ ^[1-9][0-9]*$ ]]; then
    echo "make-test-ca.sh: node id \`$id\` is not a positive integer" >&2
    exit 2
  fi
done
mkdir -p "$DIR"
DAYS=30

new_key() { # FILE
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
  chmod 600 "$1"
}

# The CA.
new_key "$DIR/ca-key.pem"
openssl req -x509 -new -key "$DIR/ca-key.pem" -sha256 -days "$DAYS" \
  -subj "/CN=rdb test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$DIR/ca.pem"

issue() { # NAME COMMON_NAME SAN USAGES
  local name=$1 common_name=$2 san=$3 usages=$4 extensions
  extensions=$(mktemp)
  printf '%s\n' \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=$usages" \
    "subjectAltName=$san" >"$extensions"
  new_key "$DIR/$name-key.pem"
  openssl req -new -key "$DIR/$name-key.pem" -subj "/CN=$common_name" \
    | openssl x509 -req -CA "$DIR/ca.pem" -CAkey "$DIR/ca-key.pem" -CAcreateserial \
        -sha256 -days "$DAYS" -extfile "$extensions" -out "$DIR/$name.pem" 2>/dev/null
  rm -f "$extensions"
}

for id in "${IDS[@]}"; do
  issue "node-$id" "node-$id.rdb" "DNS:node-$id.rdb,DNS:server.rdb" "serverAuth,clientAuth"
done
issue client client.rdb "DNS:client.rdb" "clientAuth"
rm -f "$DIR/ca.srl"
echo "make-test-ca.sh: wrote the CA, ${#IDS[@]} node certificates and a client certificate to $DIR"
