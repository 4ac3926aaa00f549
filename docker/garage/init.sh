#!/bin/sh
# One-node Garage setup, idempotent: layout, bucket $BUCKET, key
# $AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY (imported, so the other
# services know it in advance) allowed to read and write the bucket.
#   init.sh serve   start the server, set it up, keep serving (the image)
#   init.sh setup   set up a server that already runs ($GARAGE: the CLI
#                   command, default `garage -c /etc/garage.toml`)
set -eu
GARAGE=${GARAGE:-garage -c /etc/garage.toml}
READY=${READY:-/var/lib/garage/.origin-pull-ready}

retry() { # the CLI fails for a moment while the node starts
  i=0
  until "$@"; do
    i=$((i + 1))
    [ "$i" -lt 50 ] || return 1
    sleep 0.2
  done
}

setup() {
  id=$(retry $GARAGE node id -q | cut -d@ -f1)
  if ! $GARAGE layout show 2>/dev/null | grep -q "$(echo "$id" | cut -c1-16)"; then
    retry $GARAGE layout assign -z dc1 -c 1G "$id"
    retry $GARAGE layout apply --version 1
  fi
  $GARAGE bucket info "$BUCKET" >/dev/null 2>&1 || retry $GARAGE bucket create "$BUCKET"
  $GARAGE key info "$AWS_ACCESS_KEY_ID" >/dev/null 2>&1 ||
    retry $GARAGE key import --yes -n origin-pull "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"
  retry $GARAGE bucket allow --read --write --owner "$BUCKET" --key "$AWS_ACCESS_KEY_ID"
  touch "$READY"
}

case "${1:-serve}" in
  setup) setup ;;
  serve)
    rm -f "$READY"
    $GARAGE server &
    pid=$!
    # The shell is PID 1: pass `docker stop`'s SIGTERM on to Garage, or
    # Docker waits its timeout and SIGKILLs it.
    trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
    setup
    wait "$pid" || wait "$pid"
    ;;
  *) echo "usage: $0 serve|setup" >&2; exit 2 ;;
esac
