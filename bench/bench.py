#!/usr/bin/env python3
"""origin-pull side by side with the bucket itself and the nginx DIY setup.

Run through `bench/run` (installs what is missing, builds the release
binary). Prints one table and writes bench/results/<timestamp>.json and
bench/results/latest.json. Loopback only; every loop and wait is bounded.
`--quick` shortens every measurement (a smoke run, not for the README).
"""
import argparse
import datetime
import http.client
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import harness as h
from setup import HERD_ORIGIN_RATE, HIT_SIZES, SLOW_BUCKET_RATE, Bench
from report import print_table
from tls import TlsBench, tls_rows

ROUNDS = 3
# What `--only` can pick (hit includes the latency rows' calibration).
GROUPS = ("hit", "latency", "miss", "memory", "tls")


def hit_urls(b, name):
    """The paths to object `obj-<name>`, behind Garage and behind the
    stand-in bucket (the hit and latency rows read the same URLs). The
    stand-in also has the bare Pingora proxy: the framework's floor."""
    return {
        "garage": {
            "direct": b.presigned(f"obj-{name}"),
            "origin_pull": f"http://127.0.0.1:{b.proxy_port}/obj-{name}",
            "nginx": f"http://127.0.0.1:{b.nginx_garage}/obj-{name}",
            **{p: b.presigned(f"obj-{name}", client) for p, (_, client) in b.bare_garage.items()},
        },
        "standin": {
            "direct": f"http://127.0.0.1:{b.standin}/{h.BUCKET}/obj-{name}",
            "origin_pull": f"http://127.0.0.1:{b.proxy_standin_port}/obj-{name}",
            "nginx": f"http://127.0.0.1:{b.nginx_standin}/obj-{name}",
            "bare_pingora": f"http://127.0.0.1:{b.bare_port}/{h.BUCKET}/obj-{name}",
            **({"bare_pingora_mimalloc": f"http://127.0.0.1:{b.bare_mimalloc_port}/{h.BUCKET}/obj-{name}"}
               if b.bare_mimalloc else {}),
        },
    }


def path_pids(b, row):
    """The processes whose CPU time each measured path of `row` costs."""
    pids = {
        "origin_pull": lambda: [(b.proxy if row == "garage" else b.proxy_standin).pid],
        "nginx": lambda: h.children_of(b.nginx.pid),
    }
    if row == "standin":
        pids["bare_pingora"] = lambda: [b.bare.pid]
        if b.bare_mimalloc:
            pids["bare_pingora_mimalloc"] = lambda: [b.bare_mimalloc.pid]
    else:
        for p, (proc, _) in b.bare_garage.items():
            pids[p] = lambda proc=proc: [proc.pid]
    return pids


def hit_rows(b, secs, rounds):
    """Row 1 (Garage behind every path) and row 2 (the stand-in bucket)."""
    out = {}
    for row in ("garage", "standin"):
        for name in HIT_SIZES:
            targets = hit_urls(b, name)[row]
            runs = {p: [] for p in targets}
            pids = path_pids(b, row)
            measured = [p for p in pids if p in targets]
            cpu = {p: 0.0 for p in measured}
            served = {p: 0.0 for p in measured}
            requests = {p: 0.0 for p in measured}
            for p, url in targets.items():
                h.wrk(url, secs=1)  # warm-up: connections, caches
            for _ in range(rounds):  # interleaved, so drift hits all paths alike
                for p, url in targets.items():
                    before = h.cpu_seconds(pids[p]()) if p in cpu else 0
                    r = h.wrk(url, secs=secs)
                    if p in cpu:
                        cpu[p] += h.cpu_seconds(pids[p]()) - before
                        served[p] += r["MBps"] * secs / 1024
                        requests[p] += r["rps"] * secs
                    runs[p].append(r)
            res = {p: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for p, rs in runs.items()}
            for p in measured:
                res[p]["cpu_s_per_GiB"] = cpu[p] / served[p]
                res[p]["cpu_us_per_req"] = cpu[p] / requests[p] * 1e6
            res["ratio_direct"] = res["origin_pull"]["rps"] / res["direct"]["rps"]
            res["ratio_nginx"] = res["origin_pull"]["rps"] / res["nginx"]["rps"]
            for bare in ("bare_pingora", "bare_pingora_mimalloc"):
                if bare in res:
                    res[f"ratio_{bare.replace('_pingora', '')}"] = res["origin_pull"]["rps"] / res[bare]["rps"]
                    res[bare]["ratio_direct"] = res[bare]["rps"] / res["direct"]["rps"]
            out[f"{row}_{name}"] = res
            print(f"  {row} {name}: x{res['ratio_direct']:.2f} direct, x{res['ratio_nginx']:.2f} nginx",
                  file=sys.stderr)
    return out


def latency_row(targets, rate, secs, rounds, tmp, pids=None):
    """p50/p99 at a fixed request rate: each of `conns` connections pauses
    10 ms between requests (wrk's `delay()`), `conns` chosen from a short
    calibration run so that all paths get about `rate` (Little's law).
    `rounds` runs per path, interleaved, median of each figure (one run's
    p99 is its 50 slowest answers: a single run swung by 3 ms). For the
    paths in `pids`, CPU per request at this rate too (at a fixed rate it
    does not depend on how fast the path is, as it does under full load)."""
    pause = 10
    script = os.path.join(tmp, "pace.lua")
    with open(script, "w") as f:
        f.write(f"function delay() return {pause} end\n")
    pids = pids or {}
    conns, runs, cpu, done = {}, {p: [] for p in targets}, {p: 0.0 for p in pids}, {p: 0.0 for p in pids}
    for p, u in targets.items():
        guess = max(2, math.ceil(rate * pause / 1000))
        lat = h.wrk(u, conns=guess, secs=1, script=script)["p50_ms"]
        conns[p] = max(2, math.ceil(rate * (pause + lat) / 1000))
    for _ in range(rounds):
        for p, u in targets.items():
            before = h.cpu_seconds(pids[p]()) if p in pids else 0
            r = h.wrk(u, conns=conns[p], secs=secs, script=script)
            if p in pids:
                cpu[p] += h.cpu_seconds(pids[p]()) - before
                done[p] += r["rps"] * secs
            runs[p].append(r)
    res = {}
    for p, rs in runs.items():
        res[p] = {k: statistics.median(x[k] for x in rs) for k in rs[0]}
        res[p]["p99_runs_ms"] = [x["p99_ms"] for x in rs]
        res[p]["conns"] = conns[p]
        if p in pids:
            res[p]["cpu_us_per_req"] = cpu[p] / done[p] * 1e6
    res["target_rps"] = rate
    res["rounds"] = rounds
    res["added_p50_ms"] = res["origin_pull"]["p50_ms"] - res["direct"]["p50_ms"]
    res["added_p99_ms"] = res["origin_pull"]["p99_ms"] - res["direct"]["p99_ms"]
    res["p99_over_nginx_ms"] = res["origin_pull"]["p99_ms"] - res["nginx"]["p99_ms"]
    return res


def latency_rows(b, hit, secs, rounds):
    """Garage paths at half the direct maximum (as the issue asks), and the
    stand-in paths at half the slowest one's maximum (the stand-in alone
    is far faster than any proxy in front of it)."""
    urls = hit_urls(b, "4k")
    s = hit["standin_4k"]
    slowest = min(s[p]["rps"] for p in urls["standin"])
    garage_rate = hit["garage_4k"]["direct"]["rps"] / 2
    return {
        "garage": latency_row(urls["garage"], garage_rate, secs, rounds, b.procs.tmp, path_pids(b, "garage")),
        "standin": latency_row(urls["standin"], slowest / 2, secs, rounds, b.procs.tmp, path_pids(b, "standin")),
    }


def wait_stored(b, keys, timeout=120):
    """Write-back runs after the answer: wait (bounded) until `keys` exist."""
    end = time.time() + timeout
    while time.time() < end:
        have = b.stored(os.path.commonprefix(keys))
        if all(k in have for k in keys):
            return have
        time.sleep(0.2)
    return b.stored(os.path.commonprefix(keys))


def ttfb_row(b, n):
    """64 MiB (--quick: 16) from an origin that answers after 50 ms; each
    proxy GET is a miss (distinct keys); the write-back is let finish
    between samples."""
    direct, via = [], []
    for i in range(n):
        direct.append(h.ttfb_ms(f"http://127.0.0.1:{b.slow_origin}/slow/ttfb-{i}.bin"))
        via.append(h.ttfb_ms(f"http://127.0.0.1:{b.proxy_port}/slow/ttfb-{i}.bin"))
        wait_stored(b, [f"slow/ttfb-{i}.bin"])
    d, v = statistics.median(direct), statistics.median(via)
    return {"direct_p50_ms": d, "origin_pull_p50_ms": v, "added_ms": v - d, "samples": n,
            "object_MiB": b.sizes["ttfb"] >> 20}


def fetch_all(port, paths, conns=32):
    """GET every path once over `conns` keep-alive connections; seconds."""
    todo = list(paths)
    lock = threading.Lock()
    failures = []

    def worker():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if not todo:
                    return
                p = todo.pop()
            c.request("GET", p)
            r = c.getresponse()
            r.read()
            if r.status != 200:
                failures.append((p, r.status))

    start = time.monotonic()
    with ThreadPoolExecutor(conns) as ex:
        for f in [ex.submit(worker) for _ in range(conns)]:
            f.result()
    if failures:
        sys.exit(f"fetch failures: {failures[:5]}")
    return time.monotonic() - start


def sweep_row(b, origin, port_direct):
    """2,000 (--quick: 500) distinct 16 KiB objects, read once; then all
    present and intact (ETag = MD5 of a single PUT) in the bucket."""
    paths = [f"/{origin}/sweep/{i}.bin" for i in range(b.sweep_n)]
    direct = fetch_all(port_direct, paths)
    via = fetch_all(b.proxy_port, paths)
    have = wait_stored(b, [f"{origin}/sweep/{i}.bin" for i in range(b.sweep_n)])
    intact = sum(1 for i, m in b.sweep_md5.items() if have.get(f"{origin}/sweep/{i}.bin") == m)
    return {"direct_s": direct, "origin_pull_s": via, "ratio": via / direct, "stored_intact": intact,
            "objects": b.sweep_n}


def outcome(log, key):
    """The write-back outcome the proxy logged for `key`, if any yet."""
    with open(log) as f:
        text = f.read()
    for word in ("stored", "abandoned", "failed"):
        if f"write-back {word} key={json.dumps(key)}" in text:
            return word
    return None


def wait_outcome(log, key, timeout):
    """Polls the proxy's log (bounded) until the write-back of `key` ended;
    the outcome (None: still running at the bound)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        word = outcome(log, key)
        if word:
            return word
        time.sleep(0.1)
    return outcome(log, key)


def origin_gets(b, path):
    """GETs the slow origin has answered for `path` so far."""
    c = http.client.HTTPConnection("127.0.0.1", b.slow_origin, timeout=10)
    c.request("GET", "/__hits")
    hits = json.loads(c.getresponse().read())
    c.close()
    return hits.get(path, 0)


def memory_row(b, clients=8):
    """Peak RSS while `clients` pull distinct large objects (misses)."""
    pid = b.proxy.pid
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM: the peak of this test alone
    keys = [f"fast/big-{i}.bin" for i in range(clients)]
    size = os.path.getsize(os.path.join(b.origin_dir, keys[0]))
    procs = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                                 f"http://127.0.0.1:{b.proxy_port}/{k}"], stdout=subprocess.PIPE, text=True)
             for k in keys]
    start = time.monotonic()
    answers = [p.communicate(timeout=600)[0].split() for p in procs]
    secs = time.monotonic() - start
    if any(a != ["200", str(size)] for a in answers):
        sys.exit(f"memory test: bad answers {answers}")
    peak = h.peak_rss_mib(pid)
    log = os.path.join(b.procs.tmp, "origin-pull.log")
    end = time.time() + 300
    while time.time() < end and any(outcome(log, k) is None for k in keys):
        time.sleep(0.5)
    outcomes = [outcome(log, k) for k in keys]
    return {"clients": clients, "object_MiB": size >> 20, "peak_rss_MiB": peak, "seconds": secs,
            "stored": outcomes.count("stored"), "abandoned": outcomes.count("abandoned"),
            "failed": outcomes.count("failed"), "unfinished": outcomes.count(None)}


def egress_row(b, n=100):
    """`n` concurrent GETs of one missing 8 MiB key: origin GETs seen by
    origin-pull (one shared fill: 1) and by nginx DIY (one per client);
    then origin-pull's write-back outcome."""
    size = b.sizes["egress"]

    def burst(port, key):
        gate = threading.Barrier(n)
        codes = []

        def one():
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            gate.wait(30)
            c.request("GET", key)
            r = c.getresponse()
            codes.append((r.status, len(r.read())))

        with ThreadPoolExecutor(n) as ex:
            for f in [ex.submit(one) for _ in range(n)]:
                f.result()
        if any(c != (200, size) for c in codes):
            sys.exit(f"egress: bad answers {set(codes)}")
        with open(b.origin_log) as f:
            return sum(1 for line in f if f"GET {key} " in line)

    via = burst(b.proxy_port, "/fast/egress-0.bin")
    stored = wait_outcome(os.path.join(b.procs.tmp, "origin-pull.log"), "fast/egress-0.bin", 60)
    return {"clients": n, "object_MiB": size >> 20, "origin_pull_origin_gets": via,
            "origin_pull_write_back": stored, "nginx_diy_origin_gets": burst(b.nginx_garage, "/fast/egress-1.bin")}


def herd_row(b, n=100):
    """`n` clients, connected beforehand and released together, GET one
    missing 64 MiB (--quick: 16) object whose origin answers after 50 ms
    and sends at HERD_ORIGIN_RATE. Each client's time to first byte (the
    response head, as curl's time_starttransfer) and to its first body
    bytes, counted from its own request; clients in the order they sent."""
    key = "/herd/herd-0.bin"
    size = b.sizes["herd"]
    gate = threading.Barrier(n)

    def one():
        c = http.client.HTTPConnection("127.0.0.1", b.proxy_port, timeout=120)
        c.connect()
        gate.wait(30)
        start = time.monotonic()
        c.request("GET", key)
        r = c.getresponse()
        head = time.monotonic()
        got = len(r.read1(1 << 16))
        body = time.monotonic()
        buf = bytearray(1 << 20)
        while True:
            k = r.readinto(buf)
            if not k:
                break
            got += k
        end = time.monotonic()
        c.close()
        return {"start": start, "ttfb_ms": (head - start) * 1000, "first_body_ms": (body - start) * 1000,
                "total_s": end - start, "status": r.status, "bytes": got}

    with ThreadPoolExecutor(n) as ex:
        clients = [f.result() for f in [ex.submit(one) for _ in range(n)]]
    bad = {(c["status"], c["bytes"]) for c in clients} - {(200, size)}
    if bad:
        sys.exit(f"herd: bad answers {bad}")
    clients.sort(key=lambda c: c["start"])
    t0 = clients[0]["start"]
    ttfb = [c["ttfb_ms"] for c in clients]
    stored = wait_outcome(os.path.join(b.procs.tmp, "origin-pull.log"), key[1:], 120)
    return {"clients": n, "object_MiB": size >> 20, "origin_MBps": HERD_ORIGIN_RATE / 1e6,
            "first_ttfb_ms": ttfb[0], "median_ttfb_ms": statistics.median(ttfb), "last_ttfb_ms": ttfb[-1],
            "max_ttfb_ms": max(ttfb), "ratio_last_first": ttfb[-1] / ttfb[0],
            "send_spread_ms": (clients[-1]["start"] - t0) * 1000,
            "median_total_s": statistics.median(c["total_s"] for c in clients),
            "origin_gets": origin_gets(b, key), "write_back": stored,
            "per_client": [{"sent_ms": round((c["start"] - t0) * 1000, 3), "ttfb_ms": round(c["ttfb_ms"], 3),
                            "first_body_ms": round(c["first_body_ms"], 3), "total_s": round(c["total_s"], 3)}
                           for c in clients]}


def slow_bucket_row(b, rounds):
    """A 256 MiB (--quick: 32) miss through the origin-pull instance whose
    bucket sits behind a relay throttled to SLOW_BUCKET_RATE, against the
    same object straight from the origin (+50 ms): client times (curl,
    body discarded), then when the write-back stored the object, polled
    until stored (bounded: 60 s + 3x the link's time for the object).
    As a control, the same miss (another key, same bytes) through the
    origin-pull in front of Garage at full speed: what the miss path
    costs without a slow bucket."""
    size = b.sizes["slowbucket"]
    log = os.path.join(b.procs.tmp, "origin-pull-slowbucket.log")
    samples = []
    for i in range(rounds):
        key, control = f"slow/slowbucket-{i}.bin", f"slow/slowbucket-{rounds + i}.bin"
        direct = h.curl_get(f"http://127.0.0.1:{b.slow_origin}/{key}", size)["total_s"]
        fast_bucket = h.curl_get(f"http://127.0.0.1:{b.proxy_port}/{control}", size)["total_s"]
        wait_outcome(os.path.join(b.procs.tmp, "origin-pull.log"), control, 120)
        gets = origin_gets(b, f"/{key}")
        start = time.monotonic()
        via = h.curl_get(f"http://127.0.0.1:{b.proxy_slowbucket_port}/{key}", size)["total_s"]
        word = wait_outcome(log, key, 60 + 3 * size / SLOW_BUCKET_RATE)
        stored_after = time.monotonic() - start if word == "stored" else None
        if word == "stored":
            # Garage itself (not through the relay) has it, whole.
            stored_len = b.s3.head_object(Bucket=h.BUCKET, Key=key)["ContentLength"]
            word = "stored" if stored_len == size else f"stored {stored_len} bytes"
        samples.append({"direct_s": direct, "origin_pull_s": via, "fast_bucket_s": fast_bucket, "write_back": word,
                        "stored_after_s": stored_after, "origin_gets": origin_gets(b, f"/{key}") - gets})
    d = statistics.median(s["direct_s"] for s in samples)
    v = statistics.median(s["origin_pull_s"] for s in samples)
    after = [s["stored_after_s"] for s in samples if s["write_back"] == "stored"]
    return {"object_MiB": size >> 20, "bucket_MBps": SLOW_BUCKET_RATE / 1e6, "bucket_link_s": size / SLOW_BUCKET_RATE,
            "direct_s": d, "origin_pull_s": v, "ratio": v / d, "rounds": rounds,
            "fast_bucket_s": statistics.median(s["fast_bucket_s"] for s in samples),
            "stored": len(after), "stored_after_s": statistics.median(after) if after else None,
            "samples": samples}


def serve(b):
    """Keeps the bench up for manual probing and profiling."""
    print(json.dumps({"proxy": b.proxy_port, "proxy_pid": b.proxy.pid, "proxy_standin": b.proxy_standin_port,
                      "proxy_standin_pid": b.proxy_standin.pid, "garage_s3": b.garage.s3, "garage_web": b.garage.web,
                      "garage_pid": b.garage.proc.pid, "nginx_pid": b.nginx.pid, "standin": b.standin, "nginx_garage": b.nginx_garage,
                      "nginx_standin": b.nginx_standin, "bare_pingora": b.bare_port,
                      "bare_pingora_pid": b.bare.pid, "slow_origin": b.slow_origin, "fast_origin": b.fast_origin,
                      "proxy_slowbucket": b.proxy_slowbucket_port, "slow_bucket_relay": b.slow_bucket,
                      "herd_link_relay": b.herd_link,
                      "direct_4k": b.presigned("obj-4k"), "direct_1m": b.presigned("obj-1m"),
                      # The bare floors in front of Garage, with a URL presigned for each.
                      "bare_garage": {p: {"pid": proc.pid, "url_4k": b.presigned("obj-4k", client)}
                                      for p, (proc, client) in b.bare_garage.items()}}), flush=True)
    try:
        time.sleep(3600)
    except KeyboardInterrupt:
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--serve", action="store_true", help="start everything, print the ports, wait (for profiling)")
    ap.add_argument("--no-quickack", action="store_true",
                    help="leave loopback delayed ACKs alone (Garage figures then show 40 ms stalls)")
    ap.add_argument("--only", help="comma-separated groups to run (default all): " + ",".join(GROUPS))
    ap.add_argument("--rounds", type=int, help=f"interleaved runs per throughput and latency figure ({ROUNDS})")
    a = ap.parse_args()
    secs, rounds = (2, 1) if a.quick else (5, ROUNDS)
    rounds = a.rounds or rounds
    only = set(a.only.split(",")) if a.only else set(GROUPS)
    if only - set(GROUPS):
        sys.exit(f"--only: unknown group(s) {','.join(only - set(GROUPS))}; groups: {','.join(GROUPS)}")
    # SIGTERM ends the run through `finally`, so no child outlives it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    tmp = tempfile.mkdtemp(prefix="op-bench-")
    procs = h.Procs(tmp)
    quickack = h.LoopbackQuickAck(not a.no_quickack)
    quickack_used = quickack.active
    started = time.time()
    try:
        print(f"setting up in {tmp}", file=sys.stderr)
        b = Bench(procs, quick=a.quick)
        if a.serve:
            serve(b)
            return
        res = {}
        if only & {"hit", "latency"}:  # the latency rates come from the hit rows
            print("hit throughput", file=sys.stderr)
            res["hit"] = hit_rows(b, secs, rounds)
        if "latency" in only:
            print("hit latency", file=sys.stderr)
            res["latency"] = latency_rows(b, res["hit"], secs, rounds)
        if "miss" in only:
            print("miss ttfb", file=sys.stderr)
            res["miss_ttfb"] = ttfb_row(b, 3 if a.quick else 9)
            print("herd ttfb", file=sys.stderr)
            res["herd_ttfb"] = herd_row(b)
            print("cold sweep", file=sys.stderr)
            res["cold_sweep"] = sweep_row(b, "slow", b.slow_origin)
            res["cold_sweep_fast_origin"] = sweep_row(b, "fast", b.fast_origin)
        if "memory" in only:
            print("memory", file=sys.stderr)
            res["memory"] = memory_row(b)
        if "miss" in only:
            print("egress", file=sys.stderr)
            res["egress"] = egress_row(b)
            print("slow bucket", file=sys.stderr)
            res["slow_bucket"] = slow_bucket_row(b, 1 if a.quick else ROUNDS)
        if "tls" in only:
            print("tls", file=sys.stderr)
            res["tls"] = tls_rows(TlsBench(procs, standin=b.standin), secs, rounds)
    finally:
        procs.close()
        quickack.close()
        shutil.rmtree(tmp, ignore_errors=True)
    res["meta"] = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   "quick": a.quick, "quickack": quickack_used, "seconds": round(time.time() - started), "cpus": os.cpu_count(),
                   "kernel": platform.release(), "wrk_seconds": secs, "rounds": rounds, "groups": sorted(only)}
    out_dir = os.path.join(h.ROOT, "bench", "results")
    os.makedirs(out_dir, exist_ok=True)
    stamp = res["meta"]["date"].replace(":", "").replace("+0000", "Z")
    partial = a.quick or only != set(GROUPS)
    names = [f"{stamp}-{'quick' if a.quick else 'partial'}.json"] if partial else [f"{stamp}.json", "latest.json"]
    for name in names:
        with open(os.path.join(out_dir, name), "w") as f:
            json.dump(res, f, indent=2)
    print_table(res)


if __name__ == "__main__":
    main()
