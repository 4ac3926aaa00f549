"""Where a proxy's CPU time goes per request at a fixed, moderate rate
(perreq.py --only perf): `perf record -e cpu-clock` samples every thread
of the proxy (kernel and user space; the machine has no hardware
counters, but the software clock samples both), and the samples are
split by who runs: the kernel, the proxy's own code, the framework
(Pingora, tokio, http crates), the allocator, libc.

Why a fixed rate: at Garage's ~2000 req/s a proxy wakes up for almost
every event, so it pays per request what a saturated proxy spreads over
a batch (context switches, cold caches). callgrind's instruction counts
(saturated, user space only) do not show that part; this does.
"""
import os
import re
import shutil
import subprocess
import sys

# Which samples belong to whom: the first crate path in the symbol
# (`<T as pingora_core::apps::ServerApp>::process_new` -> pingora_core).
OWNERS = (
    ("own code", ("origin_pull", "bare_pingora")),
    ("Pingora", ("pingora_core", "pingora_proxy", "pingora_http", "pingora_pool", "pingora_timeout",
                 "pingora_error", "pingora_cache", "pingora_header_serde")),
    ("tokio", ("tokio", "mio")),
    ("http, httparse, bytes", ("http", "httparse", "bytes", "h2")),
    ("allocator", ("mi_", "_mi_", "malloc", "free", "cfree", "__libc_malloc", "_int_malloc", "_int_free",
                   "__libc_free", "realloc", "__rust_alloc", "__rust_dealloc")),
)


def owner(dso, sym, binary_names):
    if dso == "[kernel.kallsyms]" or sym.startswith("[k]"):
        return "kernel"
    m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)::", sym)
    head = m.group(1) if m else sym
    for name, prefixes in OWNERS:
        if name == "allocator":
            if any(sym.startswith(p) for p in prefixes):
                return name
        elif head in prefixes:
            return name
    if dso.startswith("libc") or dso.startswith("ld-linux") or dso == "[vdso]":
        return "libc, vdso"
    if dso in binary_names and dso.startswith("nginx"):
        return "own code"
    if dso in binary_names and head in ("core", "alloc", "std"):
        return "Rust core, alloc, std"
    if dso in binary_names:
        return "other crates"
    return dso


def switches(pids, kind=""):
    """Context switches of every thread of `pids` (`kind`: "" for all,
    "nonvoluntary_" for preemptions only)."""
    total = 0
    for pid in pids:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/status") as f:
                    s = f.read()
            except FileNotFoundError:
                continue
            total += sum(int(x) for x in re.findall(rf"^{kind}\w*ctxt_switches:\s+(\d+)" if kind
                                                   else r"ctxt_switches:\s+(\d+)", s, re.M))
    return total


def perf_row(paths, tmp, rate, secs, conns, load_fn, cpu_fn, keep=None, rounds=3):
    """`rounds` interleaved runs per path: `rate` req/s for `secs`
    (h2load --rps over `conns` connections) while perf samples the
    proxy's processes; the runs of a path are added up (`keep`: a folder
    to keep each run's perf.data in, for `perf report`)."""
    acc = {p: {"n": 0, "cpu": 0.0, "switches": 0, "preempted": 0, "shares": {}} for p in paths.ports}
    for r in range(rounds):
        for path in paths.ports:
            print(f"perf {path} run {r + 1}/{rounds}", file=sys.stderr, flush=True)
            one_run(paths, path, tmp, rate, secs, conns, load_fn, cpu_fn, acc[path], keep, r)
    out = {}
    for path, a in acc.items():
        samples = sum(a["shares"].values())
        us = a["cpu"] / a["n"] * 1e6
        out[path] = {"requests": a["n"], "rate": rate, "rounds": rounds, "cpu_us_per_request": us,
                     "context_switches_per_request": a["switches"] / a["n"],
                     "preemptions_per_request": a["preempted"] / a["n"], "samples": samples,
                     "us_per_request": {k: us * v / samples for k, v in a["shares"].items()} if samples else {}}
    return out


def one_run(paths, path, tmp, rate, secs, conns, load_fn, cpu_fn, acc, keep, r):
    url = paths.url(path)
    pids = paths.pids[path]
    load_fn(url, 200, conns)  # warm: upstream connections pooled
    data = os.path.join(tmp, f"perf-{path}-{r}.data")
    names = {os.path.basename(os.readlink(f"/proc/{pid}/exe")) for pid in pids}
    rec = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "4999", "-o", data,
                            "-p", ",".join(map(str, pids))],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    n = rate * secs
    cpu0, sw0, pre0 = cpu_fn(pids), switches(pids), switches(pids, "nonvoluntary_")
    load_fn(url, n, conns, rps=max(1, rate // conns))
    acc["cpu"] += cpu_fn(pids) - cpu0
    acc["switches"] += switches(pids) - sw0
    acc["preempted"] += switches(pids, "nonvoluntary_") - pre0
    acc["n"] += n
    rec.send_signal(2)
    rec.wait(60)
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(data, os.path.join(keep, f"perf.{path}.{r}.data"))
    report = subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort", "dso,sym", "-F",
                             "sample,dso,sym"], capture_output=True, text=True).stdout
    for line in report.splitlines():
        m = re.match(r"\s*(\d+)\s+(\S+)\s+(\[[.k]\])\s+(.*)", line)
        if not m:
            continue
        count, dso, kind, sym = int(m.group(1)), m.group(2), m.group(3), m.group(4).strip()
        who = "kernel" if kind == "[k]" else owner(dso, sym, names)
        acc["shares"][who] = acc["shares"].get(who, 0) + count


def print_perf(res, paths):
    p = res["perf"]
    have = [x for x in paths if x in p]
    print(f"\nCPU per request at {p[have[0]]['rate']} req/s, {p[have[0]]['rounds']} interleaved runs "
          "(perf cpu-clock samples; µs):\n")
    print("| | " + " | ".join(have) + " |")
    print("|---|" + "---|" * len(have))
    print("| CPU per request (/proc) | " + " | ".join(f"{p[x]['cpu_us_per_request']:.0f}" for x in have) + " |")
    print("| context switches per request | "
          + " | ".join(f"{p[x]['context_switches_per_request']:.2f}" for x in have) + " |")
    print("| of which preemptions | "
          + " | ".join(f"{p[x].get('preemptions_per_request', 0):.2f}" for x in have) + " |")
    whos = sorted({k for x in have for k in p[x]["us_per_request"]},
                  key=lambda k: -max(p[x]["us_per_request"].get(k, 0) for x in have))
    for k in whos:
        print(f"| {k} | " + " | ".join(f"{p[x]['us_per_request'].get(k, 0):.1f}" for x in have) + " |")
