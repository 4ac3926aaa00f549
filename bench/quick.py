#!/usr/bin/env python3
"""First side-by-side measurement (a precursor of the full bench/ suite).

Starts a single-node Garage, an origin (Python's threaded http.server over a
folder), and the release origin-pull, all on free loopback ports, then:
  1. hit throughput: wrk against origin-pull and directly against Garage
     (a presigned URL, so the same signed S3 GET), same object, same
     connections, one after the other in this run; prints the ratio;
  2. miss time-to-first-byte: curl via origin-pull (distinct keys, each a
     bucket 404 + origin fetch) vs curl straight to the origin.
Needs: wrk, curl, boto3, Garage (scripts/install-garage.sh), and
`cargo build --release`. Every loop is bounded; loopback only.
"""
import http.server, json, os, re, secrets, socket, statistics, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GARAGE = os.environ.get("GARAGE_BIN", os.path.expanduser("~/.local/garage/bin/garage"))
PROXY = os.path.join(ROOT, "target/release/origin-pull")


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


def garage_cli(cfg, *args):
    for _ in range(50):
        r = subprocess.run([GARAGE, "-c", cfg, *args], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout
        time.sleep(0.2)
    sys.exit(f"garage {args}: {r.stderr}")


def wrk(url, conns=64, secs=8):
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{secs}s", "--latency", url], capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    mbs = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    scale = {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1, "GB": 1024}[mbs.group(2)]
    return rps, float(mbs.group(1)) * scale


def ttfb(url):
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{time_starttransfer}", url], capture_output=True, text=True).stdout
    return float(out) * 1000


def main():
    tmp = tempfile.mkdtemp(prefix="op-bench-")
    procs = []
    try:
        rpc, s3, admin = free_port(), free_port(), free_port()
        cfg = os.path.join(tmp, "garage.toml")
        with open(cfg, "w") as f:
            f.write(f'metadata_dir = "{tmp}/meta"\ndata_dir = "{tmp}/data"\ndb_engine = "sqlite"\nreplication_factor = 1\n'
                    f'rpc_bind_addr = "127.0.0.1:{rpc}"\nrpc_public_addr = "127.0.0.1:{rpc}"\nrpc_secret = "{secrets.token_hex(32)}"\n'
                    f'[s3_api]\ns3_region = "garage"\napi_bind_addr = "127.0.0.1:{s3}"\nroot_domain = ".s3.garage.localhost"\n'
                    f'[admin]\napi_bind_addr = "127.0.0.1:{admin}"\n')
        procs.append(subprocess.Popen([GARAGE, "-c", cfg, "server"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(s3)
        node = garage_cli(cfg, "node", "id", "-q").strip().split("@")[0]
        garage_cli(cfg, "layout", "assign", "-z", "dc1", "-c", "1G", node)
        garage_cli(cfg, "layout", "apply", "--version", "1")
        garage_cli(cfg, "bucket", "create", "bench")
        key = garage_cli(cfg, "key", "create", "bench-key")
        kid = re.search(r"Key ID:\s*(\S+)", key).group(1)
        ksec = re.search(r"Secret key:\s*(\S+)", key).group(1)
        garage_cli(cfg, "bucket", "allow", "--read", "--write", "--owner", "bench", "--key", "bench-key")

        import boto3
        from botocore.config import Config
        s3c = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{s3}", aws_access_key_id=kid, aws_secret_access_key=ksec,
                           region_name="garage", config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))
        sizes = {"4k": 4096, "1m": 1 << 20}
        for name, n in sizes.items():
            s3c.put_object(Bucket="bench", Key=f"obj-{name}", Body=os.urandom(n))

        origin_dir = os.path.join(tmp, "origin")
        os.makedirs(origin_dir)
        for i in range(30):
            with open(os.path.join(origin_dir, f"miss-{i}.bin"), "wb") as f:
                f.write(os.urandom(1 << 20))
        oport = free_port()
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=origin_dir, **k)
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", oport), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()

        pport = free_port()
        pcfg = os.path.join(tmp, "proxy.yaml")
        with open(pcfg, "w") as f:
            f.write(f'listen: ["127.0.0.1:{pport}"]\nthreads: 2\nsites:\n  - name: b\n    bucket: {{ endpoint: "http://127.0.0.1:{s3}", name: bench, region: garage }}\n'
                    f'    rules:\n      - condition: {{ key_prefix: "miss-" }}\n        mirror: {{ url: "http://127.0.0.1:{oport}/" }}\n')
        env = dict(os.environ, AWS_ACCESS_KEY_ID=kid, AWS_SECRET_ACCESS_KEY=ksec, RUST_LOG="warn")
        procs.append(subprocess.Popen([PROXY, "-c", pcfg], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(pport)

        results = {}
        for name in sizes:
            direct_url = s3c.generate_presigned_url("get_object", Params={"Bucket": "bench", "Key": f"obj-{name}"}, ExpiresIn=3600)
            proxy_url = f"http://127.0.0.1:{pport}/obj-{name}"
            wrk(proxy_url, secs=2), wrk(direct_url, secs=2)  # warm-up
            d, p = wrk(direct_url), wrk(proxy_url)
            results[f"hit_{name}"] = {"direct_rps": d[0], "proxy_rps": p[0], "direct_MBps": d[1], "proxy_MBps": p[1], "ratio": p[0] / d[0]}
        direct = [ttfb(f"http://127.0.0.1:{oport}/miss-{i}.bin") for i in range(15, 30)]
        via = [ttfb(f"http://127.0.0.1:{pport}/miss-{i}.bin") for i in range(15)]
        results["miss_ttfb_ms"] = {"direct_p50": statistics.median(direct), "proxy_p50": statistics.median(via),
                                   "added_p50": statistics.median(via) - statistics.median(direct)}
        print(json.dumps(results, indent=2))
    finally:
        for p in procs:
            p.kill()


if __name__ == "__main__":
    main()
