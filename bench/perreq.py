#!/usr/bin/env python3
"""What one hit (4 KiB unless `--size`) costs each proxy, in measures that do not depend on
how loaded the machine is: system calls per request (`strace -c -f`) and
user-space instructions per request (`valgrind --tool=callgrind`).

The paths, all in front of the same stand-in bucket (nginx serving a
4 KiB file at the bucket's path): origin-pull, the bare Pingora proxy
(bench/floor) and nginx with upstream keep-alive. Needs the release
binaries (`bench/run` builds them, or see bench/floor/src/main.rs),
nginx, h2load (nghttp2-client), strace and valgrind.

    python3 bench/perreq.py                 # both measures
    python3 bench/perreq.py --only strace   # or callgrind
    python3 bench/perreq.py --write-buffer 1460   # client write buffer of both Pingora paths
    python3 bench/perreq.py --only perf     # CPU per request at 2000 req/s, kernel and user,
                                            # split by who runs (bench/cpuprofile.py; needs perf)

Results go to stdout as one table and to bench/results/perreq-<time>.json.
`--keep DIR` keeps the callgrind dumps there (callgrind_annotate reads
them: where the instructions go).
"""
import argparse
import datetime
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import cpuprofile
import harness as h

SIZE = 4096
# The binaries measured; --proxy-bin / --bare-bin measure others (e.g.
# built against a patched Pingora).
PROXY, BARE = h.PROXY, h.BARE
# bare_pingora_mimalloc: the floor with origin-pull's allocator (bench/run
# builds it).
PATHS = ("origin_pull", "bare_pingora", "bare_pingora_mimalloc", "nginx")


class Paths:
    """The stand-in bucket and the three proxies in front of it; `wrap`
    prefixes each proxy's command line (valgrind), `workers` is each
    proxy's worker count."""

    def __init__(self, procs, which, wrap=(), workers=2, write_buffer=None, env=None, read_buffer=None):
        tmp = procs.tmp
        # Environment of the two Pingora paths (e.g. LD_PRELOAD of another malloc).
        self.env = dict(os.environ, **(env or {}))
        os.makedirs(os.path.join(tmp, "standin", h.BUCKET))
        with open(os.path.join(tmp, "standin", h.BUCKET, "obj"), "wb") as f:
            f.write(os.urandom(SIZE))
        self.standin = h.free_port()
        h.start_nginx(procs, "nginx-standin", f"""
  server {{ listen 127.0.0.1:{self.standin}; root {tmp}/standin; }}
""")
        h.wait_port(self.standin)
        self.ports, self.pids = {}, {}
        if "nginx" in which:
            self.start_nginx(procs, wrap, workers)
        if "bare_pingora" in which:
            self.start_bare(procs, wrap, workers, write_buffer, read_buffer)
        if "bare_pingora_mimalloc" in which:
            self.start_bare(procs, wrap, workers, write_buffer, read_buffer, "bare_pingora_mimalloc")
        if "origin_pull" in which:
            self.start_origin_pull(procs, wrap, workers, write_buffer, read_buffer)

    def start_nginx(self, procs, wrap, workers):
        # A single process under valgrind (no master to follow).
        port = h.free_port()
        nginx = h.start_nginx(procs, "nginx-proxy", f"""
  upstream standin {{ server 127.0.0.1:{self.standin}; keepalive 64; }}
  proxy_http_version 1.1;
  server {{
    listen 127.0.0.1:{port};
    location / {{ proxy_pass http://standin; proxy_set_header Connection ""; }}
  }}
""", workers=workers, main="master_process off;\n" if wrap else "", wrap=wrap)
        h.wait_port(port, timeout=120)
        self.ports["nginx"] = port
        self.pids["nginx"] = [nginx.pid] if wrap else h.children_of(nginx.pid)

    def start_bare(self, procs, wrap, workers, write_buffer, read_buffer, name="bare_pingora"):
        port = h.free_port()
        binary = BARE if name == "bare_pingora" else h.BARE_MIMALLOC
        argv = [*wrap, binary, "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{self.standin}",
                "--workers", str(workers)]
        if write_buffer is not None:
            argv += ["--write-buffer", str(write_buffer)]
        if read_buffer is not None:
            argv += ["--read-buffer", str(read_buffer)]
        p = procs.start(argv, name, env=self.env, stop=signal.SIGINT)
        h.wait_port(port, timeout=120)
        self.ports[name], self.pids[name] = port, [p.pid]

    def start_origin_pull(self, procs, wrap, workers, write_buffer, read_buffer):
        """Its bucket is the stand-in (which ignores signatures)."""
        tmp = procs.tmp
        port = h.free_port()
        cfg = os.path.join(tmp, "origin-pull.yaml")
        limits = ", ".join(f"downstream_{k}_buffer_bytes: {v}" for k, v in (("write", write_buffer),
                                                                             ("read", read_buffer)) if v is not None)
        limits = f"limits: {{ {limits} }}\n" if limits else ""
        with open(cfg, "w") as f:
            f.write(f'listen: ["127.0.0.1:{port}"]\nthreads: {workers}\n{limits}'
                    f'fill: {{ spool_dir: "{tmp}/spool" }}\nsites:\n  - name: bench\n'
                    f'    bucket: {{ endpoint: "http://127.0.0.1:{self.standin}", name: {h.BUCKET} }}\n')
        env = dict(self.env, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret", RUST_LOG="warn")
        p = procs.start([*wrap, PROXY, "-c", cfg], "origin-pull", env=env, stop=signal.SIGINT)
        h.wait_port(port, timeout=120)
        self.ports["origin_pull"], self.pids["origin_pull"] = port, [p.pid]

    def url(self, path):
        prefix = "" if path == "origin_pull" else f"/{h.BUCKET}"
        return f"http://127.0.0.1:{self.ports[path]}{prefix}/obj"


def load(url, n, conns, rps=None):
    """Exactly `n` GETs over `conns` keep-alive connections (h2load in
    HTTP/1.1 mode, one request at a time per connection; `rps` requests
    per second per connection if given); the number that succeeded (all,
    or the run stops)."""
    pace = ["--rps", str(rps)] if rps else []
    out = subprocess.run(["h2load", "--h1", "-n", str(n), "-c", str(conns), "-t", "1", *pace, url],
                         capture_output=True, text=True, timeout=900).stdout
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    if not m or int(m.group(1)) != n:
        sys.exit(f"h2load on {url}: not {n} answers:\n{out}")
    return n


def strace_row(paths, tmp, n, conns):
    """System calls per request of each proxy (all its threads)."""
    out = {}
    for path in paths.ports:
        url = paths.url(path)
        print(f"strace {path}", file=sys.stderr, flush=True)
        load(url, 200, conns)  # warm: upstream connections pooled
        log = os.path.join(tmp, f"strace-{path}.txt")
        argv = ["strace", "-c", "-f", "-o", log]
        for pid in paths.pids[path]:
            argv += ["-p", str(pid)]
        tracer = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
        wait_traced(paths.pids[path])
        done = load(url, n, conns)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
        calls = parse_strace(log)
        out[path] = {"requests": done, "per_request": {k: v / done for k, v in calls.items()},
                     "total_per_request": sum(calls.values()) / done}
    return out


def wait_traced(pids, timeout=30):
    """Until every thread of `pids` has a tracer (strace attaches them one
    by one after it starts)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        tids = [t for pid in pids for t in os.listdir(f"/proc/{pid}/task")]
        traced = 0
        for pid in pids:
            for t in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{t}/status") as f:
                    if re.search(r"TracerPid:\s+[1-9]", f.read()):
                        traced += 1
        if traced == len(tids):
            return
        time.sleep(0.05)
    sys.exit(f"strace did not attach to {pids}")


def parse_strace(log):
    calls = {}
    with open(log) as f:
        for line in f:
            fields = line.split()
            # % time, seconds, usecs/call, calls, [errors], syscall
            if len(fields) >= 5 and re.match(r"^[\d.]+$", fields[0]) and fields[-1] != "total":
                calls[fields[-1]] = int(fields[3])
    return calls


def callgrind_row(procs, which, n, conns, keep, env):
    """User-space instructions per request: each proxy with one worker
    under callgrind (all threads counted together), counters zeroed after
    a warm-up, dumped after `n` requests."""
    cg = os.path.join(procs.tmp, "callgrind")
    os.makedirs(cg)
    wrap = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={cg}/callgrind.out.%p")
    paths = Paths(procs, which, wrap=wrap, workers=1, env=env)
    out = {}
    for path in paths.ports:
        url = paths.url(path)
        pid = paths.pids[path][0]
        print(f"callgrind {path}", file=sys.stderr, flush=True)
        load(url, 300, conns)
        subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
        done = load(url, n, conns)
        subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
        dumps = sorted(glob.glob(f"{cg}/callgrind.out.{pid}.*"), key=lambda d: int(d.rsplit(".", 1)[1]))
        if not dumps:
            sys.exit(f"no callgrind dump for {path} in {cg}")
        out[path] = {"requests": done, "instructions_per_request": dump_total(dumps[-1]) / done}
        if keep:
            os.makedirs(keep, exist_ok=True)
            shutil.copy(dumps[-1], os.path.join(keep, f"callgrind.{path}"))
    return out


def dump_total(path):
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("strace", "callgrind", "perf"))
    ap.add_argument("--requests", type=int, default=5000, help="requests measured per path (strace)")
    ap.add_argument("--cg-requests", type=int, default=2000, help="requests measured per path (callgrind)")
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--rate", type=int, default=2000,
                    help="req/s of the perf measure (about Garage's rate in the hit row)")
    ap.add_argument("--perf-secs", type=int, default=10, help="seconds per perf run")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved perf runs per path")
    ap.add_argument("--write-buffer", type=int, help="client write buffer of origin-pull and bare Pingora")
    ap.add_argument("--read-buffer", type=int, help="client read buffer of origin-pull and bare Pingora")
    ap.add_argument("--size", type=int, default=4096, help="object bytes")
    ap.add_argument("--keep", help="keep the callgrind dumps (and perf.data files) in this folder")
    ap.add_argument("--preload", help="LD_PRELOAD for the Pingora paths (another malloc)")
    ap.add_argument("--proxy-bin", default=h.PROXY)
    ap.add_argument("--bare-bin", default=h.BARE)
    ap.add_argument("--paths", default=",".join(p for p in PATHS if p != "bare_pingora_mimalloc"
                                                 or os.path.exists(h.BARE_MIMALLOC)),
                    help="which of " + ",".join(PATHS))
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    which = set(a.paths.split(","))
    global PROXY, BARE, SIZE
    PROXY, BARE, SIZE = a.proxy_bin, a.bare_bin, a.size
    env = {"LD_PRELOAD": a.preload} if a.preload else {}
    res = {"meta": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "object_bytes": a.size, "conns": a.conns, "write_buffer": a.write_buffer,
                    "read_buffer": a.read_buffer,
                    "preload": a.preload, "proxy_bin": a.proxy_bin, "bare_bin": a.bare_bin}}
    # perf is not in the default set: it needs perf(1) (linux-perf) and a
    # perf_event_paranoid that lets root sample the kernel.
    for what in ("strace", "callgrind", "perf"):
        if what not in (a.only or "strace,callgrind").split(","):
            continue
        tmp = tempfile.mkdtemp(prefix=f"op-perreq-{what}-")
        procs = h.Procs(tmp)
        try:
            if what == "strace":
                paths = Paths(procs, which, write_buffer=a.write_buffer, env=env, read_buffer=a.read_buffer)
                res["strace"] = strace_row(paths, tmp, a.requests, a.conns)
            elif what == "perf":
                paths = Paths(procs, which, write_buffer=a.write_buffer, env=env, read_buffer=a.read_buffer)
                res["perf"] = cpuprofile.perf_row(paths, tmp, a.rate, a.perf_secs, 16, load, h.cpu_seconds,
                                                    a.keep, a.rounds)
            else:
                res["callgrind"] = callgrind_row(procs, which, a.cg_requests, a.conns, a.keep, env)
        finally:
            procs.close()
            shutil.rmtree(tmp, ignore_errors=True)
    out_dir = os.path.join(h.ROOT, "bench", "results")
    os.makedirs(out_dir, exist_ok=True)
    stamp = res["meta"]["date"].replace(":", "").replace("+0000", "Z")
    with open(os.path.join(out_dir, f"perreq-{stamp}.json"), "w") as f:
        json.dump(res, f, indent=2)
    print_table(res)


def print_table(res):
    paths = [p for p in PATHS if any(p in res.get(k, {}) for k in ("strace", "callgrind", "perf"))]
    print(f"| per hit of {res['meta']['object_bytes']} bytes | " + " | ".join(paths) + " |")
    print("|---|" + "---|" * len(paths))
    if "callgrind" in res:
        c = res["callgrind"]
        print("| user-space instructions (callgrind, 1 worker) | "
              + " | ".join(f"{c[p]['instructions_per_request']:,.0f}" if p in c else "-" for p in paths) + " |")
    if "strace" in res:
        s = res["strace"]
        have = [p for p in paths if p in s]
        print("| system calls (strace -c -f) | "
              + " | ".join(f"{s[p]['total_per_request']:.2f}" if p in s else "-" for p in paths) + " |")
        names = sorted({k for p in have for k, v in s[p]["per_request"].items() if v >= 0.05},
                       key=lambda k: -max(s[p]["per_request"].get(k, 0) for p in have))
        for k in names:
            print(f"| `{k}` | " + " | ".join(f"{s[p]['per_request'].get(k, 0):.2f}" if p in s else "-"
                                            for p in paths) + " |")
    if "perf" in res:
        cpuprofile.print_perf(res, paths)


if __name__ == "__main__":
    main()
