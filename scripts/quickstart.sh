#!/usr/bin/env bash
# The quickstart in one command. Installs what is missing (Rust through
# rustup, a C compiler and cmake for the build, python3), builds
# origin-pull (release), then starts
#  - a local origin: python3 -m http.server over data/quickstart-origin/,
#    which holds hello.txt, on 127.0.0.1:8081, and
#  - origin-pull with conf/quickstart.yaml on 127.0.0.1:8080: the embedded
#    bucket over data/quickstart/ with a mirror rule to that origin.
# Then, from another shell:
#   curl -i http://127.0.0.1:8080/hello.txt  # a miss: from the origin, stored
#   curl -i http://127.0.0.1:8080/hello.txt  # a bucket hit, same x-oss-tag
# Ctrl-C stops both. `--check` makes the two requests itself, prints them
# and exits 0 when the first came from the origin and the second from
# the bucket.
# Environment: PORT (8080), ORIGIN_PORT (8081), DATA (./data), and BIN to
# run an origin-pull binary already built instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/need.sh

PORT=${PORT:-8080}
ORIGIN_PORT=${ORIGIN_PORT:-8081}
DATA=${DATA:-$ROOT/data}
check=false
[ "${1:-}" = --check ] && check=true

need python3
if $check; then need curl; fi
if [ -z "${BIN:-}" ]; then
  need cmake # pingora-core's flate2 uses zlib-ng, which builds with cmake
  need_rust
  cargo build --release
  BIN=$ROOT/target/release/origin-pull
fi

mkdir -p "$DATA/quickstart" "$DATA/quickstart-origin"
echo "hello from the origin" >"$DATA/quickstart-origin/hello.txt"
# The first GET must be a miss: drop the copy an earlier run stored.
rm -f "$DATA/quickstart/hello.txt"

work=$(mktemp -d)
pids=()
origin_pid="" proxy_pid=""
cleanup() {
  # origin-pull: SIGINT, Pingora's fast stop (SIGTERM waits out a grace
  # period). The origin: SIGTERM (a background job ignores SIGINT).
  [ -z "$proxy_pid" ] || kill -INT "$proxy_pid" 2>/dev/null || true
  [ -z "$origin_pid" ] || kill -TERM "$origin_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

config=$ROOT/conf/quickstart.yaml
if [ "$PORT" != 8080 ] || [ "$ORIGIN_PORT" != 8081 ] || [ "$DATA" != "$ROOT/data" ]; then
  # Same file with other ports or folder (the tests run it this way).
  config=$work/quickstart.yaml
  sed -e "s#127.0.0.1:8080#127.0.0.1:$PORT#" \
    -e "s#127.0.0.1:8081/#127.0.0.1:$ORIGIN_PORT/#" \
    -e "s#\"../data/quickstart\"#\"$DATA/quickstart\"#" \
    "$ROOT/conf/quickstart.yaml" >"$config"
  for want in "127.0.0.1:$PORT" "127.0.0.1:$ORIGIN_PORT/" "$DATA/quickstart"; do
    grep -qF "$want" "$config" || {
      echo "conf/quickstart.yaml changed: cannot set $want" >&2
      exit 1
    }
  done
fi

if $check; then
  origin_log=$work/origin.log proxy_log=$work/origin-pull.log
else
  origin_log=/dev/stderr proxy_log=/dev/stderr
fi
python3 -m http.server "$ORIGIN_PORT" --bind 127.0.0.1 \
  --directory "$DATA/quickstart-origin" >"$origin_log" 2>&1 &
origin_pid=$!
RUST_LOG=${RUST_LOG:-info} "$BIN" -c "$config" >"$proxy_log" 2>&1 &
proxy_pid=$!
pids=("$origin_pid" "$proxy_pid")

# Ready when both ports accept (checked every 0.1 s, 60 s at most).
for port in "$ORIGIN_PORT" "$PORT"; do
  for i in $(seq 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    for p in "${pids[@]}"; do
      kill -0 "$p" 2>/dev/null || {
        echo "a quickstart process exited; its log:" >&2
        cat "$work"/*.log >&2 2>/dev/null || true
        exit 1
      }
    done
    [ "$i" = 600 ] && { echo "port $port never opened" >&2; exit 1; }
    sleep 0.1
  done
done

url=http://127.0.0.1:$PORT/hello.txt
if ! $check; then
  cat <<MSG

origin-pull is on 127.0.0.1:$PORT, the origin on 127.0.0.1:$ORIGIN_PORT. In another shell:

  curl -i $url   # first: a miss, fetched from the origin and stored
  curl -i $url   # then: a bucket hit (ETag, Last-Modified), same x-oss-tag
  ls $DATA/quickstart/                  # hello.txt, written back

Ctrl-C stops both.
MSG
  wait -n "${pids[@]}"
  exit 1
fi

fail() {
  echo "quickstart check failed: $1" >&2
  cat "$work"/*.log >&2
  exit 1
}
first=$(curl -si "$url")
echo "$first"
echo
# The write-back finishes just after the response: wait for its log line.
for i in $(seq 600); do
  grep -q 'write-back .*stored' "$proxy_log" && break
  [ "$i" = 600 ] && fail "the miss was not stored"
  sleep 0.1
done
second=$(curl -si "$url")
echo "$second"
for r in "$first" "$second"; do
  grep -q "^HTTP/1.[01] 200" <<<"$r" || fail "not a 200"
  grep -qi "^x-oss-tag: MIRROR http%3A%2F%2F127.0.0.1%3A$ORIGIN_PORT%2Fhello.txt" <<<"$r" ||
    fail "no x-oss-tag"
  grep -q "hello from the origin" <<<"$r" || fail "wrong body"
done
grep -qi "^etag:" <<<"$second" || fail "the second answer is not from the bucket"
[ "$(grep -c 'GET /hello.txt' "$origin_log")" = 1 ] || fail "the origin was asked more than once"
cmp -s "$DATA/quickstart/hello.txt" "$DATA/quickstart-origin/hello.txt" || fail "not stored"
echo
echo "quickstart check: miss from the origin, stored, then a bucket hit"
