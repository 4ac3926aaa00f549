#!/usr/bin/env python3
"""The TLS row: 4 KiB and 1 MiB hits over HTTPS, HTTP/1.1 (wrk) and
HTTP/2 (h2load), origin-pull against nginx. Both terminate TLS with the
same certificate (ECDSA P-256) and cipher (TLS 1.3, TLS_AES_256_GCM_SHA384:
nginx is limited to it, and rustls follows the client's order, whose first
choice it is; the negotiated cipher of each is checked and recorded), have
2 workers, and proxy to the same stand-in bucket (nginx serving the
objects as static files, plain HTTP, upstream keep-alive).

Alone: `bench/run --only tls` (needs wrk, nginx, openssl, h2load from the
Debian package nghttp2-client, and the release binary; no Garage).
`bench/bench.py` also runs it at the end of a full run.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import harness as h
from report import tls_rows_table

CIPHER = "TLS_AES_256_GCM_SHA384"
SIZES = {"4k": 4096, "1m": 1 << 20}


class TlsBench:
    """nginx and origin-pull, each terminating TLS in front of the stand-in
    bucket `standin` (a port; started here when None)."""

    def __init__(self, procs, standin=None):
        tmp = procs.tmp
        self.dir = os.path.join(tmp, "tls")
        os.makedirs(self.dir, exist_ok=True)
        self.cert, self.key = os.path.join(self.dir, "cert.pem"), os.path.join(self.dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj", "/CN=bench.test",
                        "-addext", "subjectAltName=DNS:bench.test,IP:127.0.0.1"],
                       check=True, capture_output=True)
        if standin is None:
            root = os.path.join(self.dir, "standin")
            os.makedirs(os.path.join(root, h.BUCKET))
            for name, size in SIZES.items():
                with open(os.path.join(root, h.BUCKET, f"obj-{name}"), "wb") as f:
                    f.write(os.urandom(size))
            standin = h.free_port()
            h.start_nginx(procs, "nginx-tls-standin", f"\n  server {{ listen 127.0.0.1:{standin}; root {root}; }}\n")
            h.wait_port(standin)
        self.nginx_port, self.proxy_port = h.free_port(), h.free_port()
        self.nginx = h.start_nginx(procs, "nginx-tls", f"""
  upstream standin {{ server 127.0.0.1:{standin}; keepalive 64; }}
  proxy_http_version 1.1;
  server {{
    listen 127.0.0.1:{self.nginx_port} ssl http2;
    ssl_certificate {self.cert};
    ssl_certificate_key {self.key};
    ssl_protocols TLSv1.3;
    ssl_conf_command Ciphersuites {CIPHER};
    location / {{
      proxy_pass http://standin/{h.BUCKET}$uri;
      proxy_set_header Host standin;
      proxy_set_header Connection "";
    }}
  }}
""")
        cfg = os.path.join(self.dir, "origin-pull-tls.yaml")
        with open(cfg, "w") as f:
            f.write(f'listen:\n  - addr: "127.0.0.1:{self.proxy_port}"\n    tls:\n      h2: true\n'
                    f'      certificates: [{{ cert: "{self.cert}", key: "{self.key}" }}]\n'
                    f'threads: 2\nfill: {{ spool_dir: "{self.dir}/spool" }}\nsites:\n'
                    f'  - name: bench\n    bucket: {{ endpoint: "http://127.0.0.1:{standin}", '
                    f'name: {h.BUCKET}, region: garage }}\n')
        env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                   RUST_LOG=os.environ.get("BENCH_PROXY_LOG", "warn,origin_pull=info"))
        self.proxy = procs.start([h.PROXY, "-c", cfg], "origin-pull-tls", env=env, stop=signal.SIGINT)
        h.wait_port(self.nginx_port)
        h.wait_port(self.proxy_port)

    def targets(self, name):
        return {"origin_pull": f"https://127.0.0.1:{self.proxy_port}/obj-{name}",
                "nginx": f"https://127.0.0.1:{self.nginx_port}/obj-{name}"}

    def pids(self):
        return {"origin_pull": [self.proxy.pid], "nginx": h.children_of(self.nginx.pid)}


def negotiated(port):
    """(TLS version, cipher, ALPN) a client offering h2 gets from `port`."""
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "bench.test",
                          "-alpn", "h2,http/1.1"], input="", capture_output=True, text=True, timeout=30,
                         # After the handshake s_client prints what the server sent raw: an
                         # h2 server's SETTINGS frame is binary (a full run died on a 0x80).
                         encoding="utf-8", errors="replace").stdout
    m = re.search(r"New, (\S+), Cipher is (\S+)", out)
    alpn = re.search(r"ALPN protocol: (\S+)", out)
    if not m:
        sys.exit(f"no TLS handshake with port {port}:\n{out}")
    return {"version": m.group(1), "cipher": m.group(2), "alpn": alpn.group(1) if alpn else None}


def h2load(url, conns=64, secs=5):
    """HTTP/2 closed-loop load: `conns` connections, one stream each (as
    wrk's connections), 2 threads. req/s and MB/s."""
    argv = ["h2load", "-t2", f"-c{conns}", "-m1", "-D", str(secs), url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 60).stdout
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s, ([\d.]+)(\w+)/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    if not m or not done or not proto or proto.group(1) != "h2":
        sys.exit(f"h2load failed on {url}:\n{out}")
    if done.group(1) != done.group(2):
        sys.exit(f"h2load: {done.group(1)} done but {done.group(2)} succeeded on {url}")
    scale = {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1, "GB": 1024}[m.group(3)]
    return {"rps": float(m.group(1)), "MBps": float(m.group(2)) * scale}


def check(url, size, http2):
    """One GET with curl: 200, the whole object, the protocol asked for."""
    flag = "--http2" if http2 else "--http1.1"
    out = subprocess.run(["curl", "-sk", flag, "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{http_version}",
                          url], capture_output=True, text=True, timeout=60).stdout.split()
    want = ["200", str(size), "2" if http2 else "1.1"]
    if out != want:
        sys.exit(f"{url}: got {out}, wanted {want}")


def tls_rows(tb, secs, rounds):
    """Per size and protocol: median req/s of `rounds` interleaved runs of
    origin-pull and nginx, their ratio, and CPU seconds per GiB served."""
    out = {"handshake": {p: negotiated(port) for p, port in
                         (("origin_pull", tb.proxy_port), ("nginx", tb.nginx_port))}}
    ciphers = {v["cipher"] for v in out["handshake"].values()}
    if len(ciphers) != 1:
        print(f"  warning: ciphers differ: {out['handshake']}", file=sys.stderr)
    pids = tb.pids()
    for name, size in SIZES.items():
        targets = tb.targets(name)
        for proto, load in (("h1", h.wrk), ("h2", h2load)):
            for url in targets.values():
                check(url, size, proto == "h2")
                load(url, secs=1)  # warm-up
            runs = {p: [] for p in targets}
            cpu = {p: 0.0 for p in targets}
            served = {p: 0.0 for p in targets}
            for _ in range(rounds):
                for p, url in targets.items():
                    before = h.cpu_seconds(pids[p])
                    r = load(url, secs=secs)
                    cpu[p] += h.cpu_seconds(pids[p]) - before
                    served[p] += r["MBps"] * secs / 1024
                    runs[p].append(r)
            res = {p: {k: statistics.median(x[k] for x in rs) for k in ("rps", "MBps")} for p, rs in runs.items()}
            for p in targets:
                res[p]["cpu_s_per_GiB"] = cpu[p] / served[p] if served[p] else None
            res["ratio_nginx"] = res["origin_pull"]["rps"] / res["nginx"]["rps"]
            out[f"{proto}_{name}"] = res
            print(f"  tls {proto} {name}: x{res['ratio_nginx']:.2f} nginx", file=sys.stderr)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s per figure (a smoke run)")
    a = ap.parse_args()
    secs, rounds = (2, 1) if a.quick else (5, 3)
    for tool in ("wrk", "h2load", "openssl", "curl"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing (h2load: apt-get install nghttp2-client)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    tmp = tempfile.mkdtemp(prefix="op-bench-tls-")
    procs = h.Procs(tmp)
    started, load = time.time(), os.getloadavg()
    try:
        res = {"tls": tls_rows(TlsBench(procs), secs, rounds)}
    finally:
        procs.close()
        shutil.rmtree(tmp, ignore_errors=True)
    res["meta"] = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   "quick": a.quick, "seconds": round(time.time() - started), "cpus": os.cpu_count(),
                   "wrk_seconds": secs, "rounds": rounds, "loadavg_before": load}
    out_dir = os.path.join(h.ROOT, "bench", "results")
    os.makedirs(out_dir, exist_ok=True)
    stamp = res["meta"]["date"].replace(":", "").replace("+0000", "Z")
    with open(os.path.join(out_dir, f"{stamp}-tls{'-quick' if a.quick else ''}.json"), "w") as f:
        json.dump(res, f, indent=2)
    print("| figure | measured | result | target |")
    print("|---|---|---|---|")
    for row in tls_rows_table(res["tls"]):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
