#!/bin/sh
# Makes a throwaway CA and a server certificate it signed, for localhost and
# 127.0.0.1, in DIR: ca.pem (what clients trust), cert.pem and key.pem (what
# `lumen serve --tls-cert --tls-key` takes). Used by the TLS tests.
set -eu
dir="$1"
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
# shellcheck disable=SC2086
openssl req -x509 $ec -days 2 -subj /CN=lumen-test-ca -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" 2>/dev/null
# shellcheck disable=SC2086
openssl req $ec -subj /CN=localhost -keyout "$dir/key.pem" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$dir/server.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
  -days 2 -extfile "$dir/server.ext" -out "$dir/cert.pem" 2>/dev/null
