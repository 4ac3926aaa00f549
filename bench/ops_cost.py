"""What metrics and the access log cost a 4 KiB hit: origin-pull before
the operations work (a baseline binary), after it with the access log off,
and after it with a JSON access log to a file, side by side on the
stand-in bucket (nginx serving the files: no signature checks), wrk -c64,
interleaved rounds. Run through `bench/ops-cost` (builds the baseline)."""
import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile

import harness as h

SIZE = 4096


def start(procs, binary, name, standin, extra=""):
    port = free = h.free_port()
    cfg = os.path.join(procs.tmp, f"{name}.yaml")
    with open(cfg, "w") as f:
        f.write(f'listen: ["127.0.0.1:{port}"]\nthreads: 2\n{extra}\nsites:\n'
                f'  - name: bench\n    bucket: {{ endpoint: "http://127.0.0.1:{standin}", '
                f'name: {h.BUCKET}, region: garage }}\n')
    env = dict(os.environ, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s", RUST_LOG="warn")
    p = procs.start([binary, "-c", cfg], name, env=env, stop=signal.SIGINT)
    h.wait_port(free)
    return p, port


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--baseline", required=True, help="origin-pull binary from before the change")
    ap.add_argument("--current", default=h.PROXY)
    ap.add_argument("--also", action="append", default=[], metavar="NAME=BINARY",
                    help="another binary in the same run (e.g. an intermediate revision)")
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="op-ops-cost-")
    procs = h.Procs(tmp)
    try:
        os.makedirs(os.path.join(tmp, "standin", h.BUCKET))
        with open(os.path.join(tmp, "standin", h.BUCKET, "obj-4k"), "wb") as f:
            f.write(os.urandom(SIZE))
        standin = h.free_port()
        h.start_nginx(procs, "nginx-standin", f"  server {{ listen 127.0.0.1:{standin}; root {tmp}/standin; }}\n")
        h.wait_port(standin)
        log = os.path.join(tmp, "access.log")
        paths = {
            "before": start(procs, a.baseline, "before", standin),
            **{n: start(procs, b, n, standin) for n, b in (x.split("=", 1) for x in a.also)},
            "after": start(procs, a.current, "after", standin),
            "after_access_log": start(procs, a.current, "after-log", standin,
                                      f'access_log: {{ path: "{log}", format: json }}'),
        }
        urls = {k: f"http://127.0.0.1:{port}/obj-4k" for k, (_, port) in paths.items()}
        for u in urls.values():
            h.wrk(u, secs=1)
        runs = {k: [] for k in urls}
        for _ in range(a.rounds):
            for k, u in urls.items():
                runs[k].append(h.wrk(u, secs=a.secs))
        res = {k: {m: statistics.median(r[m] for r in rs) for m in ("rps", "p99_ms")} for k, rs in runs.items()}
        base = res["before"]["rps"]
        print(f"{'path':<18} {'req/s':>9} {'p99 ms':>7} {'vs before':>9}")
        for k, r in res.items():
            print(f"{k:<18} {r['rps']:>9.0f} {r['p99_ms']:>7.2f} {r['rps'] / base:>9.3f}")
        lines = sum(1 for _ in open(log)) if os.path.exists(log) else 0
        print(f"access log lines written: {lines}", file=sys.stderr)
    finally:
        procs.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
