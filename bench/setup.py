"""Starts the whole bench: Garage, two origins, a stand-in bucket, the nginx
DIY proxy, two throttling relays (a slow link to the origin for the herd, a
slow bucket), origin-pull three times: in front of Garage, of the
stand-in, and of the slow bucket; and the bare Pingora proxy (bench/floor)
in front of the stand-in.
"""
import hashlib
import os
import subprocess
import sys

from harness import BARE, BARE_MIMALLOC, BUCKET, WEB_HOST, Garage, free_port, start_bare, start_nginx, start_proxy, wait_port

HIT_SIZES = {"4k": 4096, "1m": 1 << 20}
SWEEP_SIZE = 16 << 10
# Miss-row scale, full run and `--quick` (a smoke run): object bytes, and
# the cold sweep's object count.
SIZES = {
    "sweep_n": (2000, 500),         # distinct 16 KiB objects per cold sweep
    "ttfb": (64 << 20, 16 << 20),   # miss TTFB
    "big": (1 << 30, 64 << 20),     # memory: 8 distinct misses
    "egress": (8 << 20, 8 << 20),   # 100 clients, one key
    "herd": (64 << 20, 16 << 20),   # 100 clients, one key, slow link
    "slowbucket": (256 << 20, 32 << 20),  # one miss per round, bucket at 20 MB/s
}
# The herd's origin answers after 50 ms and sends at this rate, so a body
# takes long enough to tell clients that follow the live fill from
# clients that wait for it to end.
HERD_ORIGIN_RATE = 50e6
# The slow bucket's link, each direction (20 MB/s).
SLOW_BUCKET_RATE = 20e6


class Bench:
    def __init__(self, procs, quick=False):
        self.procs = procs
        tmp = procs.tmp
        self.garage = Garage(procs)
        self.s3 = self.garage.client()
        standin = os.path.join(tmp, "standin", BUCKET)
        os.makedirs(standin)
        for name, size in HIT_SIZES.items():
            data = os.urandom(size)
            self.s3.put_object(Bucket=BUCKET, Key=f"obj-{name}", Body=data)
            with open(os.path.join(standin, f"obj-{name}"), "wb") as f:
                f.write(data)
        self.sizes = {k: v[1 if quick else 0] for k, v in SIZES.items()}
        self.sweep_n = self.sizes["sweep_n"]
        self.origin_dir = os.path.join(tmp, "origin")
        self.sweep_md5 = self.make_origin_files()

        # Origins: nginx (fast, counts GETs in its access log) and a
        # Python one that answers after 50 ms, as a remote origin would.
        self.fast_origin = free_port()
        self.origin_log = os.path.join(tmp, "origin-access.log")
        start_nginx(procs, "nginx-origin", f"""
  server {{ listen 127.0.0.1:{self.fast_origin}; root {self.origin_dir};
           access_log {self.origin_log}; }}
""")
        self.slow_origin = free_port()
        procs.start([sys.executable, os.path.join(os.path.dirname(__file__), "origin.py"),
                     "--dir", self.origin_dir, "--port", str(self.slow_origin), "--delay", "0.05"],
                    "slow-origin")
        # The stand-in bucket: static files at the bucket's paths, no
        # signature checks, far faster than Garage.
        self.standin = free_port()
        start_nginx(procs, "nginx-standin", f"""
  server {{ listen 127.0.0.1:{self.standin}; root {tmp}/standin; }}
""")
        self.nginx_garage, self.nginx_standin = free_port(), free_port()
        self.nginx = start_nginx(procs, "nginx-diy", self.diy_conf(tmp))
        # Throttling relays: the herd's link to the slow origin, and the
        # slow bucket (in front of Garage's S3 port).
        self.herd_link, self.slow_bucket = free_port(), free_port()
        for name, port, target, rate in (("herd-link", self.herd_link, self.slow_origin, HERD_ORIGIN_RATE),
                                         ("slow-bucket", self.slow_bucket, self.garage.s3, SLOW_BUCKET_RATE)):
            procs.start([sys.executable, os.path.join(os.path.dirname(__file__), "relay.py"),
                         "--port", str(port), "--target", str(target), "--rate", str(rate)], name)
        for p in (self.fast_origin, self.slow_origin, self.standin, self.nginx_garage, self.nginx_standin,
                  self.herd_link, self.slow_bucket):
            wait_port(p)

        slow = f"http://127.0.0.1:{self.slow_origin}/"
        fast = f"http://127.0.0.1:{self.fast_origin}/"
        herd = f"http://127.0.0.1:{self.herd_link}/"
        self.proxy, self.proxy_port = start_proxy(
            procs, self.garage, f"http://127.0.0.1:{self.garage.s3}",
            [("slow/", slow), ("herd/", herd), ("", fast)])
        self.proxy_standin, self.proxy_standin_port = start_proxy(
            procs, self.garage, f"http://127.0.0.1:{self.standin}", [("", fast)], name="origin-pull-standin")
        # The framework's floor: Pingora proxying to the stand-in, nothing else.
        self.bare, self.bare_port = start_bare(procs, self.standin)
        # ... and with origin-pull's allocator, when bench/run built it.
        self.bare_mimalloc, self.bare_mimalloc_port = None, None
        if os.path.exists(BARE_MIMALLOC):
            self.bare_mimalloc, self.bare_mimalloc_port = start_bare(
                procs, self.standin, name="bare-pingora-mimalloc", binary=BARE_MIMALLOC)
        # The floor in front of Garage too (it passes requests unchanged,
        # so its URLs are presigned for its own host): what the framework
        # alone costs where Garage shares the cores.
        self.bare_garage = {}
        for path, name, binary in (("bare_pingora", "bare-pingora-garage", BARE),
                                   ("bare_pingora_mimalloc", "bare-pingora-mimalloc-garage", BARE_MIMALLOC)):
            if os.path.exists(binary):
                proc, port = start_bare(procs, self.garage.s3, name=name, binary=binary)
                self.bare_garage[path] = (proc, self.garage.client(port))
        # The slow-bucket row's own instance: nothing else shares its bucket link.
        self.proxy_slowbucket, self.proxy_slowbucket_port = start_proxy(
            procs, self.garage, f"http://127.0.0.1:{self.slow_bucket}", [("", slow)],
            name="origin-pull-slowbucket")

    def make_origin_files(self):
        d = self.origin_dir
        for sub in ("slow/sweep", "fast/sweep", "herd"):
            os.makedirs(os.path.join(d, sub))
        md5 = {}
        for i in range(self.sweep_n):
            data = os.urandom(SWEEP_SIZE)
            for sub in ("slow/sweep", "fast/sweep"):
                with open(os.path.join(d, sub, f"{i}.bin"), "wb") as f:
                    f.write(data)
            md5[i] = hashlib.md5(data).hexdigest()
        # Large objects: one random file under many names (the proxy sees
        # distinct keys; the disk holds one copy).
        for name, copies, subs in (("ttfb", 10, ("slow", "fast")), ("big", 8, ("slow", "fast")),
                                   ("egress", 2, ("slow", "fast")), ("herd", 1, ("herd",)),
                                   ("slowbucket", 6, ("slow",))):
            src = os.path.join(d, f"{name}.src")
            with open(src, "wb") as f:
                subprocess.run(["head", "-c", str(self.sizes[name]), "/dev/urandom"], stdout=f, check=True)
            for i in range(copies):
                for sub in subs:
                    os.symlink(src, os.path.join(d, sub, f"{name}-{i}.bin"))
        return md5

    def diy_conf(self, tmp):
        """The do-it-yourself alternative: nginx in front of the bucket, a
        404 goes to the origin and the answer is kept with `proxy_store`.
        Upstream keep-alive is on, as any tuned setup has it."""
        store = os.path.join(tmp, "nginx-store")
        os.makedirs(store)
        servers = f"""
  upstream garage_web {{ server 127.0.0.1:{self.garage.web}; keepalive 64; }}
  upstream standin {{ server 127.0.0.1:{self.standin}; keepalive 64; }}
  upstream origin {{ server 127.0.0.1:{self.fast_origin}; keepalive 64; }}
  proxy_http_version 1.1;
"""
        for port, upstream, host, prefix in ((self.nginx_garage, "garage_web", WEB_HOST, ""),
                                             (self.nginx_standin, "standin", "standin", f"/{BUCKET}")):
            servers += f"""
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://{upstream}{prefix}$uri;
      # A location's proxy_set_header replaces every inherited one, so
      # `Connection ""` (upstream keep-alive) is set here, not in http{{}}.
      proxy_set_header Host {host};
      proxy_set_header Connection "";
      proxy_intercept_errors on;
      error_page 404 = @origin;
    }}
    location @origin {{
      proxy_pass http://origin;
      proxy_set_header Host origin;
      proxy_set_header Connection "";
      proxy_store {store}$uri;
      proxy_store_access user:rw group:r all:r;
    }}
  }}
"""
        return servers

    def presigned(self, key, client=None):
        return (client or self.s3).generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key},
                                                          ExpiresIn=3600)

    def stored(self, prefix):
        """{key: etag} of the objects under `prefix` in Garage."""
        out = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for o in page.get("Contents", []):
                out[o["Key"]] = o["ETag"].strip('"')
        return out
