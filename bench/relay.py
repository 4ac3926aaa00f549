#!/usr/bin/env python3
"""A throttling TCP relay: forwards 127.0.0.1:`--port` to 127.0.0.1:`--target`
and lets bytes through at `--rate` bytes/s in each direction, over all
connections together (a link that slow, not a per-connection cap).

Put in front of Garage's S3 port it is a slow bucket; in front of an origin
it is a slow origin. Bytes pass unchanged (Host headers and signatures
included). Run as its own process so the benchmark's clients do not share
its interpreter lock.
"""
import argparse
import socket
import threading
import time

CHUNK = 64 << 10


class Pace:
    """Hands out send slots so that bytes leave at `rate` per second: a
    token bucket holding at most BURST seconds' worth, so a late wake-up
    is made up for but an idle link earns no more than that."""

    BURST = 0.05

    def __init__(self, rate):
        self.rate = rate
        self.lock = threading.Lock()
        self.next = time.monotonic()

    def wait(self, n):
        with self.lock:
            now = time.monotonic()
            start = max(self.next, now - self.BURST)
            self.next = start + n / self.rate
        if start > now:
            time.sleep(start - now)  # the throttle itself, not a wait for an event


def pipe(src, dst, pace):
    """Copies until `src` ends, then half-closes `dst`; on an error shuts
    both sockets so the other direction ends too."""
    try:
        while True:
            data = src.recv(CHUNK)
            if not data:
                break
            pace.wait(len(data))
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def handle(client, target, up, down):
    try:
        server = socket.create_connection(("127.0.0.1", target), 10)
    except OSError:
        client.close()
        return
    server.settimeout(None)
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    back = threading.Thread(target=pipe, args=(server, client, down), daemon=True)
    back.start()
    pipe(client, server, up)
    back.join()
    client.close()
    server.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--target", type=int, required=True)
    ap.add_argument("--rate", type=float, required=True, help="bytes per second, each direction")
    a = ap.parse_args()
    up, down = Pace(a.rate), Pace(a.rate)
    srv = socket.create_server(("127.0.0.1", a.port), backlog=256)
    while True:
        client, _ = srv.accept()
        threading.Thread(target=handle, args=(client, a.target, up, down), daemon=True).start()


if __name__ == "__main__":
    main()
