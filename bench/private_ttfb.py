#!/usr/bin/env python3
"""Miss TTFB of a signed origin vs an unsigned one, in one run.

Three mirror rules on one origin-pull, each miss a distinct 4 KiB object
(first request for its key: bucket 404, origin GET, streamed, stored):

  unsigned  nginx origin, no `auth`
  signed    the same nginx, `auth: sigv4` (nginx ignores the signature, so
            the difference to `unsigned` is the proxy's signing cost alone)
  garage    a private Garage bucket, `auth: sigv4` with a read-only key
            (Garage checks every signature)

Requests are interleaved (unsigned, signed, garage, unsigned, ...) so drift
hits every row alike; each is one `curl` on a new connection, TTFB is its
`time_starttransfer`. Usage:

    python3 bench/private_ttfb.py [-n 50] [--proxy target/release/origin-pull]

Defaults to the release binary when built, else the debug one (its signing
is slower: an upper bound). Needs nginx, curl, boto3 and Garage, as
`bench/run` installs them. Loopback only; every process is stopped at the end.
"""
import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile

import harness as h

SIZE = 4096


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=50, help="misses per row")
    ap.add_argument("--proxy", help="origin-pull binary")
    ap.add_argument("--no-quickack", action="store_true",
                    help="leave the loopback route alone (see harness.LoopbackQuickAck)")
    a = ap.parse_args()
    proxy = a.proxy or next((p for p in (h.PROXY, os.path.join(h.ROOT, "target/debug/origin-pull"))
                             if os.path.exists(p)), None)
    if not proxy:
        sys.exit("no origin-pull binary: cargo build first")
    tmp = tempfile.mkdtemp(prefix="op-private-ttfb-")
    procs = h.Procs(tmp)
    quickack = h.LoopbackQuickAck(not a.no_quickack)
    active = quickack.active
    try:
        rows = run(procs, tmp, proxy, a.n)
    finally:
        procs.close()
        quickack.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"miss TTFB, {a.n} misses of {SIZE} B per row, {os.path.basename(os.path.dirname(proxy))} build, "
          f"loopback quickack {'on' if active else 'off'}")
    print(f"{'row':<10}{'median ms':>11}{'p90 ms':>9}{'mean ms':>9}")
    for name, t in rows.items():
        t = sorted(t)
        p90 = t[min(len(t) - 1, int(len(t) * 0.9))]
        print(f"{name:<10}{statistics.median(t):>11.2f}{p90:>9.2f}{statistics.mean(t):>9.2f}")
    base = statistics.median(rows["unsigned"])
    print(f"signed - unsigned (median): {statistics.median(rows['signed']) - base:+.2f} ms")


def run(procs, tmp, proxy, n):
    garage = h.Garage(procs)  # also creates the destination bucket `bench`
    # The private source: its own bucket, a key that may only read it.
    garage.cli("bucket", "create", "src")
    garage.cli("bucket", "allow", "--read", "--write", "src", "--key", "bench-key")
    out = garage.cli("key", "create", "src-reader")
    reader = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
              for line in out.splitlines() if ":" in line}
    garage.cli("bucket", "allow", "--read", "src", "--key", reader["Key ID"])
    s3 = garage.client()
    origin_dir = os.path.join(tmp, "origin")
    for d in ("u", "s"):
        os.makedirs(os.path.join(origin_dir, d))
    for i in range(n):
        for d in ("u", "s"):
            with open(os.path.join(origin_dir, d, f"{i}.bin"), "wb") as f:
                f.write(os.urandom(SIZE))
        s3.put_object(Bucket="src", Key=f"g/{i}.bin", Body=os.urandom(SIZE))

    nginx = h.free_port()
    h.start_nginx(procs, "nginx-origin", f"  server {{ listen 127.0.0.1:{nginx}; root {origin_dir}; }}\n")
    h.wait_port(nginx)

    port = h.free_port()
    sigv4 = "{ type: sigv4, region: garage, access_key_id_env: SRC_KEY, secret_access_key_env: SRC_SECRET }"
    cfg = os.path.join(tmp, "proxy.yaml")
    with open(cfg, "w") as f:
        f.write(
            f'listen: ["127.0.0.1:{port}"]\nthreads: 2\nfill: {{ spool_dir: "{tmp}/spool" }}\nsites:\n'
            f'  - name: bench\n    bucket: {{ endpoint: "http://127.0.0.1:{garage.s3}", name: {h.BUCKET}, region: garage }}\n'
            f'    rules:\n'
            f'      - condition: {{ key_prefix: "u/" }}\n        mirror: {{ url: "http://127.0.0.1:{nginx}/" }}\n'
            f'      - condition: {{ key_prefix: "s/" }}\n        mirror: {{ url: "http://127.0.0.1:{nginx}/", auth: {sigv4} }}\n'
            f'      - condition: {{ key_prefix: "g/" }}\n        mirror: {{ url: "http://127.0.0.1:{garage.s3}/src/", auth: {sigv4} }}\n'
        )
    env = dict(os.environ, AWS_ACCESS_KEY_ID=garage.key_id, AWS_SECRET_ACCESS_KEY=garage.secret,
               SRC_KEY=reader["Key ID"], SRC_SECRET=reader["Secret key"], RUST_LOG="warn")
    procs.start([proxy, "-c", cfg], "origin-pull", env=env, stop=signal.SIGINT)
    h.wait_port(port)

    rows = {"unsigned": [], "signed": [], "garage": []}
    for i in range(n):
        for name, prefix in (("unsigned", "u"), ("signed", "s"), ("garage", "g")):
            url = f"http://127.0.0.1:{port}/{prefix}/{i}.bin"
            rows[name].append(h.curl_get(url, size=SIZE, timeout=60)["ttfb_ms"])
    return rows


if __name__ == "__main__":
    main()
