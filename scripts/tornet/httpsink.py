#!/usr/bin/env python3
"""HTTP sink for interop tests and benchmarks: serves N deterministic pseudo-random bytes.

  GET /bytes/N    N bytes of the stream (Content-Length: N)
  GET /sha256/N   hex SHA-256 of the first N bytes of the stream (text/plain)

The stream is a concatenation of 1 MiB blocks, block k = SHAKE-128(SEED || k as 8 big-endian
bytes) squeezed to 1 MiB. It is position-addressable, looks random to anything that might
compress or pattern-match it, and costs ~2 ms of CPU per MiB, so the sink is never the bottleneck
of a loopback benchmark. A client checks byte-exactness by hashing what it received and comparing
with /sha256/N, or by comparing with a direct (non-tor) fetch.

Usage: httpsink.py [--host 127.0.0.2] [--port 0]
The default host is 127.0.0.2, not .1: the tor test network's relays listen on 127.0.0.1, and a
tor client asked for a relay's own address builds a longer "enclave" circuit to that relay.
Prints "listening on HOST:PORT" once it accepts connections (port 0 = any free port).
"""

import argparse
import hashlib
import http.server
import re
import sys

SEED = b"peersm-httpsink-v1"
BLOCK = 1 << 20
MAX_BYTES = 1 << 40


def block(k):
    return hashlib.shake_128(SEED + k.to_bytes(8, "big")).digest(BLOCK)


def stream(n):
    """Yields the first n bytes of the stream in chunks of at most 1 MiB."""
    k = 0
    while n > 0:
        b = block(k)
        yield b if n >= BLOCK else b[:n]
        n -= len(b)
        k += 1


def sha256_of(n):
    h = hashlib.sha256()
    for chunk in stream(n):
        h.update(chunk)
    return h.hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "peersm-httpsink/1"

    def do_GET(self):
        m = re.fullmatch(r"/(bytes|sha256)/(\d{1,15})", self.path)
        if not m or int(m.group(2)) > MAX_BYTES:
            return self.reply(400 if m else 404, b"expected /bytes/N or /sha256/N with N <= 2^40\n")
        kind, n = m.group(1), int(m.group(2))
        if kind == "sha256":
            return self.reply(200, (sha256_of(n) + "\n").encode())
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(n))
        self.end_headers()
        try:
            for chunk in stream(n):
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. a benchmark timeout)

    def reply(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


def main():
    ap = argparse.ArgumentParser(description="deterministic-bytes HTTP sink")
    ap.add_argument("--host", default="127.0.0.2")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print("listening on %s:%d" % server.server_address[:2], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
