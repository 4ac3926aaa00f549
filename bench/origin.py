#!/usr/bin/env python3
"""A slow origin for the miss rows: serves a folder, answers every GET after
`--delay` seconds (a far-away origin), counts GETs per path.

`GET /__hits` returns the counts as JSON. Run as its own process so the
benchmark's clients do not share its interpreter lock.
"""
import argparse
import http.server
import json
import os
import threading
import time

HITS = {}
LOCK = threading.Lock()


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real origin
    disable_nagle_algorithm = True  # as real origins do: no 40 ms stalls

    def do_GET(self):
        if self.path == "/__hits":
            with LOCK:
                body = json.dumps(HITS).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        with LOCK:
            HITS[self.path] = HITS.get(self.path, 0) + 1
        time.sleep(self.server.delay)
        super().do_GET()

    def log_message(self, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--delay", type=float, default=0.05)
    a = ap.parse_args()
    os.chdir(a.dir)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    srv.delay = a.delay
    srv.serve_forever()


if __name__ == "__main__":
    main()
