#!/usr/bin/env python3
"""A small BEP 5 (KRPC over UDP) DHT node for tests: by default a *spy* that answers get_peers for
ANY infohash with `values`, the behaviour the facilitator's fake-infohash walk must catch.

Modes
  spy      (default) get_peers(any hash) -> values (--values), plus nodes
  honest   get_peers -> values only for hashes given with --has or announced to it; otherwise nodes
Options
  --sybil  reply with a node ID minted from the queried target (shares 152 leading bits with it),
           like a sybil that positions itself next to whatever is looked up
  --nodes  id@ip:port,... returned in `nodes` (so a walk can continue to other test nodes)

ping, find_node, get_peers and announce_peer are answered; anything else gets KRPC error 204.
Binds loopback addresses only and exits by itself after --max-seconds (network hygiene).
Prints "listening on HOST:PORT id=HEX" once ready, then one line per query.
"""
import argparse
import hashlib
import ipaddress
import os
import signal
import socket
import sys
import time


# --- bencode (BEP 3) ---------------------------------------------------------------------------

class BencodeError(ValueError):
    pass


def bdecode(data):
    value, end = _decode(data, 0)
    if end != len(data):
        raise BencodeError("trailing bytes")
    return value


def _decode(data, i):
    if i >= len(data):
        raise BencodeError("truncated")
    c = data[i:i + 1]
    if c == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1:end]), end + 1
    if c == b"l":
        i += 1
        out = []
        while data[i:i + 1] != b"e":
            v, i = _decode(data, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        i += 1
        out = {}
        while data[i:i + 1] != b"e":
            k, i = _decode(data, i)
            if not isinstance(k, bytes):
                raise BencodeError("dictionary key is not a string")
            v, i = _decode(data, i)
            out[k] = v
        return out, i + 1
    if c.isdigit():
        colon = data.index(b":", i)
        n = int(data[i:colon])
        start = colon + 1
        if start + n > len(data):
            raise BencodeError("truncated string")
        return data[start:start + n], start + n
    raise BencodeError("unexpected byte %r at %d" % (c, i))


def bencode(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(bencode(x) for x in v) + b"e"
    if isinstance(v, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b"d" + b"".join(bencode(k) + bencode(x) for k, x in items) + b"e"
    raise TypeError(type(v))


# --- compact encodings (BEP 5) -----------------------------------------------------------------

def compact_peer(hostport):
    host, port = hostport.rsplit(":", 1)
    return ipaddress.IPv4Address(host).packed + int(port).to_bytes(2, "big")


def compact_node(spec):
    node_id, hostport = spec.split("@", 1)
    raw = bytes.fromhex(node_id)
    if len(raw) != 20:
        raise ValueError("node id must be 40 hex digits: %s" % spec)
    return raw + compact_peer(hostport)


def loopback(host):
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit("refusing to bind %s: loopback addresses only" % host)
    return host


def main():
    # Exit promptly on SIGTERM even when started with it ignored or blocked (both are inherited
    # across exec, and some test runners' threads block it).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.9", type=loopback)
    ap.add_argument("--port", type=int, default=6881)
    ap.add_argument("--mode", choices=["spy", "honest"], default="spy")
    ap.add_argument("--id", help="node ID, 40 hex digits (default: random)")
    ap.add_argument("--sybil", action="store_true", help="mint the reply ID from the queried target")
    ap.add_argument("--values", default="127.0.0.66:6881,127.0.0.67:6881",
                    help="peers (ip:port,...) the spy returns for any hash")
    ap.add_argument("--has", action="append", default=[],
                    help="HASHHEX=ip:port,... peers an honest node knows for one hash (repeatable)")
    ap.add_argument("--nodes", default="", help="id@ip:port,... returned as closer nodes")
    ap.add_argument("--max-seconds", type=float, default=600, help="exit after this long (default 600)")
    args = ap.parse_args()

    own_id = bytes.fromhex(args.id) if args.id else os.urandom(20)
    if len(own_id) != 20:
        raise SystemExit("--id must be 40 hex digits")
    spy_values = [compact_peer(p) for p in args.values.split(",") if p]
    nodes = b"".join(compact_node(n) for n in args.nodes.split(",") if n)
    known = {}
    for spec in args.has:
        h, peers = spec.split("=", 1)
        known.setdefault(bytes.fromhex(h), []).extend(compact_peer(p) for p in peers.split(",") if p)
    secret = os.urandom(16)

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.host, args.port))
    sock.settimeout(0.5)
    print("listening on %s:%d id=%s mode=%s%s" % (args.host, sock.getsockname()[1], own_id.hex(), args.mode,
                                                  " sybil" if args.sybil else ""), flush=True)
    deadline = time.monotonic() + args.max_seconds

    def reply_id(target):
        if args.sybil and target is not None and len(target) == 20:
            return target[:19] + bytes([target[19] ^ 0x5A])
        return own_id

    while time.monotonic() < deadline:
        try:
            data, addr = sock.recvfrom(65536)
        except socket.timeout:
            continue
        try:
            msg = bdecode(data)
            if not isinstance(msg, dict):
                raise BencodeError("message is not a dictionary")
        except (BencodeError, ValueError) as e:
            sock.sendto(bencode({"t": b"", "y": "e", "e": [203, "Protocol Error: %s" % e]}), addr)
            continue
        t = msg.get(b"t", b"")
        if msg.get(b"y") != b"q":
            continue  # replies and errors addressed to us: ignore
        q = msg.get(b"q", b"")
        a = msg.get(b"a") if isinstance(msg.get(b"a"), dict) else {}
        token = hashlib.sha1(secret + addr[0].encode()).digest()[:8]
        r = None
        if q == b"ping":
            r = {"id": own_id}
        elif q == b"find_node":
            r = {"id": reply_id(a.get(b"target")), "nodes": nodes}
        elif q == b"get_peers":
            h = a.get(b"info_hash")
            if not isinstance(h, bytes) or len(h) != 20:
                sock.sendto(bencode({"t": t, "y": "e", "e": [203, "get_peers needs a 20-byte info_hash"]}), addr)
                continue
            values = spy_values if args.mode == "spy" else known.get(h, [])
            r = {"id": reply_id(h), "token": token, "nodes": nodes}
            if values:
                r["values"] = list(values)
        elif q == b"announce_peer":
            h, port = a.get(b"info_hash"), a.get(b"port")
            if a.get(b"token") != token or not isinstance(h, bytes) or not isinstance(port, int):
                sock.sendto(bencode({"t": t, "y": "e", "e": [203, "bad token or arguments"]}), addr)
                continue
            peer_port = addr[1] if a.get(b"implied_port") else port
            known.setdefault(h, []).append(ipaddress.IPv4Address(addr[0]).packed + peer_port.to_bytes(2, "big"))
            r = {"id": own_id}
        if r is None:
            print("%s:%d %s -> error 204" % (addr[0], addr[1], q.decode(errors="replace")), flush=True)
            sock.sendto(bencode({"t": t, "y": "e", "e": [204, "Method Unknown"]}), addr)
            continue
        # Logged before replying, so a client that got the reply can already read the line.
        target = a.get(b"info_hash") or a.get(b"target") or b""
        print("%s:%d %s %s -> %d value(s)" % (addr[0], addr[1], q.decode(errors="replace"), target.hex(),
                                              len(r.get("values", []))), flush=True)
        sock.sendto(bencode({"t": t, "y": "r", "r": r}), addr)
    print("max-seconds reached, exiting", flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
