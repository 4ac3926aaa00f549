"""Processes the benchmark starts and the measuring tools it drives.

Everything binds to 127.0.0.1 on free ports, waits for readiness by
connecting, and is killed when the run ends. Every wait is bounded.
"""
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GARAGE = os.environ.get("GARAGE_BIN", os.path.expanduser("~/.local/garage/bin/garage"))
# ORIGIN_PULL_BIN: measure another build (e.g. `--no-default-features`).
PROXY = os.environ.get("ORIGIN_PULL_BIN", os.path.join(ROOT, "target/release/origin-pull"))
# The framework's floor (bench/floor): Pingora proxying, nothing else.
BARE = os.path.join(ROOT, "target/release/bare-pingora")
# The same floor linked with origin-pull's allocator (mimalloc): the floor's
# best configuration.
BARE_MIMALLOC = os.path.join(ROOT, "target/release/bare-pingora-mimalloc")
NGINX = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")
BUCKET = "bench"
WEB_HOST = f"{BUCKET}.web.garage.localhost"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"port {port} never opened")


class Procs:
    """Owns every child process; kills them all at the end."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.children = []

    def start(self, argv, name, env=None, stop=signal.SIGTERM):
        log = open(os.path.join(self.tmp, f"{name}.log"), "w")
        p = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.children.append((p, stop))
        return p

    def close(self):
        # SIGTERM first: an nginx master killed outright leaves its
        # workers running.
        for p, stop in self.children:
            p.send_signal(stop)
        for p, _ in self.children:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


class Garage:
    """A one-node Garage with the S3 API and the website endpoint."""

    def __init__(self, procs):
        tmp = procs.tmp
        self.cfg = os.path.join(tmp, "garage.toml")
        rpc, self.s3, self.web, admin = free_port(), free_port(), free_port(), free_port()
        with open(self.cfg, "w") as f:
            f.write(
                f'metadata_dir = "{tmp}/garage-meta"\ndata_dir = "{tmp}/garage-data"\n'
                f'db_engine = "sqlite"\nreplication_factor = 1\n'
                f'rpc_bind_addr = "127.0.0.1:{rpc}"\nrpc_public_addr = "127.0.0.1:{rpc}"\n'
                f'rpc_secret = "{secrets.token_hex(32)}"\n'
                f'[s3_api]\ns3_region = "garage"\napi_bind_addr = "127.0.0.1:{self.s3}"\n'
                f'root_domain = ".s3.garage.localhost"\n'
                f'[s3_web]\nbind_addr = "127.0.0.1:{self.web}"\nroot_domain = ".web.garage.localhost"\n'
                f'[admin]\napi_bind_addr = "127.0.0.1:{admin}"\n'
            )
        self.proc = procs.start([GARAGE, "-c", self.cfg, "server"], "garage")
        wait_port(self.s3)
        node = self.cli("node", "id", "-q").strip().split("@")[0]
        self.cli("layout", "assign", "-z", "dc1", "-c", "10G", node)
        self.cli("layout", "apply", "--version", "1")
        self.cli("bucket", "create", BUCKET)
        out = self.cli("key", "create", "bench-key")
        self.key_id = re.search(r"Key ID:\s*(\S+)", out).group(1)
        self.secret = re.search(r"Secret key:\s*(\S+)", out).group(1)
        self.cli("bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "bench-key")
        self.cli("bucket", "website", "--allow", BUCKET)
        wait_port(self.web)

    def cli(self, *args):
        r = None
        for _ in range(100):  # the RPC side needs a moment after start
            r = subprocess.run([GARAGE, "-c", self.cfg, *args], capture_output=True, text=True)
            if r.returncode == 0:
                return r.stdout
            time.sleep(0.2)
        sys.exit(f"garage {' '.join(args)}: {r.stderr}")

    def client(self, port=None):
        """An S3 client of the bench bucket's key; `port` another endpoint
        (a proxy that passes `Host` on: its presigned URLs are signed for
        the host the bucket will see)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port or self.s3}",
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
            region_name="garage",
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                          max_pool_connections=32),
        )


def start_nginx(procs, name, servers, workers=2, main="", wrap=()):
    """An nginx with its own prefix, running the given `server {}` blocks;
    `main` adds main-context directives, `wrap` prefixes the command."""
    prefix = os.path.join(procs.tmp, name)
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(
            ""
            # Workers of an nginx started by root run as nobody, which
            # cannot read the bench's private temp folder.
            + ("user root;\n" if os.geteuid() == 0 else "")
            + main
            + f"worker_processes {workers};\ndaemon off;\npid {prefix}/nginx.pid;\n"
            f"error_log {prefix}/logs/error.log warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n"
            f"  client_body_temp_path {prefix}/client;\n  proxy_temp_path {prefix}/proxy;\n"
            f"  fastcgi_temp_path {prefix}/fcgi;\n  uwsgi_temp_path {prefix}/uwsgi;\n"
            f"  scgi_temp_path {prefix}/scgi;\n"
            "  keepalive_requests 100000;\n"
            + servers
            + "}\n"
        )
    return procs.start([*wrap, NGINX, "-p", prefix, "-c", conf], name)


def start_proxy(procs, garage, bucket_endpoint, rules, name="origin-pull", threads=2):
    """origin-pull with one mirror rule per (key prefix, origin URL); its
    fill spools live in the run's temp folder."""
    port = free_port()
    cfg = os.path.join(procs.tmp, f"{name}.yaml")
    spool = os.path.join(procs.tmp, f"{name}-spool")
    text = (f'listen: ["127.0.0.1:{port}"]\nthreads: {threads}\nfill: {{ spool_dir: "{spool}" }}\nsites:\n'
            f'  - name: bench\n    bucket: {{ endpoint: "{bucket_endpoint}", name: {BUCKET}, region: garage }}\n'
            f'    rules:\n')
    for prefix, url in rules:
        text += f'      - condition: {{ key_prefix: "{prefix}" }}\n        mirror: {{ url: "{url}" }}\n'
    with open(cfg, "w") as f:
        f.write(text)
    env = dict(os.environ, AWS_ACCESS_KEY_ID=garage.key_id, AWS_SECRET_ACCESS_KEY=garage.secret,
               RUST_LOG=os.environ.get("BENCH_PROXY_LOG", "warn,origin_pull=info"))
    # SIGINT: Pingora's fast shutdown (SIGTERM waits out a grace period).
    p = procs.start([PROXY, "-c", cfg], name, env=env, stop=signal.SIGINT)
    wait_port(port)
    return p, port


def start_bare(procs, upstream_port, name="bare-pingora", workers=2, binary=BARE):
    """The bare Pingora proxy in front of `upstream_port`, with
    origin-pull's worker layout and client buffers."""
    port = free_port()
    p = procs.start([binary, "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{upstream_port}",
                     "--workers", str(workers)], name, stop=signal.SIGINT)
    wait_port(port)
    return p, port


def wrk(url, conns=64, secs=5, script=None):
    """Closed-loop load with wrk; returns req/s, MB/s, p50 and p99 in ms."""
    argv = ["wrk", "-t2", f"-c{conns}", f"-d{secs}s", "--latency", "--timeout", "10s"]
    if script:
        argv += ["-s", script]
    out = subprocess.run(argv + [url], capture_output=True, text=True, timeout=secs + 60).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        sys.exit(f"wrk failed on {url}:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        sys.exit(f"wrk got {errors.group(1)} error answers from {url}")
    t = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    scale = {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1, "GB": 1024}[t.group(2)]
    return {
        "rps": float(m.group(1)),
        "MBps": float(t.group(1)) * scale,
        "p50_ms": latency(out, "50%"),
        "p99_ms": latency(out, "99%"),
    }


def latency(out, pct):
    m = re.search(rf"{re.escape(pct)}\s+([\d.]+)(us|ms|s)\b", out)
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


def cpu_seconds(pids):
    """utime + stime of processes (and their threads), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / tick


def children_of(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) / 1024


def curl_get(url, size=None, timeout=600):
    """One GET with curl, body discarded: time to first byte (ms) and to
    the end (s). Exits unless the answer is a 200 (of `size` bytes)."""
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w",
                          "%{http_code} %{size_download} %{time_starttransfer} %{time_total}", url],
                         capture_output=True, text=True, timeout=timeout).stdout.split()
    if not out or out[0] != "200" or (size is not None and int(out[1]) != size):
        sys.exit(f"{url}: HTTP {out[:2]}, wanted 200 with {size} bytes")
    return {"ttfb_ms": float(out[2]) * 1000, "total_s": float(out[3])}


def ttfb_ms(url):
    return curl_get(url, timeout=120)["ttfb_ms"]


class LoopbackQuickAck:
    """Sets `quickack 1` on the kernel's route for 127.0.0.1 for the run,
    and puts the route back after.

    Garage does not set TCP_NODELAY on its sockets, so on a reused
    connection its next answer waits for the client's delayed ACK (40 ms):
    every Garage figure would measure that timer instead of the servers.
    The route flag makes every loopback client ACK at once, for all paths
    alike (direct, nginx, origin-pull). Needs root; otherwise a no-op and
    the run records `quickack: false`.
    """

    def __init__(self, enabled):
        self.route = None
        # Set already (by hand, or by a run that died before `close`): in
        # force, and left as it was found.
        self.preset = False
        if not enabled or os.geteuid() != 0:
            return
        out = subprocess.run(["ip", "route", "show", "table", "local", "127.0.0.1"],
                             capture_output=True, text=True).stdout.strip()
        if out.startswith("local 127.0.0.1 ") and "quickack 1" in out:
            self.preset = True
        elif out.startswith("local 127.0.0.1 ") and "quickack" not in out:
            self.route = out.split()
            subprocess.run(["ip", "route", "change", *self.route, "table", "local", "quickack", "1"], check=True)

    @property
    def active(self):
        return self.route is not None or self.preset

    def close(self):
        if self.route:
            subprocess.run(["ip", "route", "change", *self.route, "table", "local"], check=True)
            self.route = None
