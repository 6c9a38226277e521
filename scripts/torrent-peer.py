#!/usr/bin/python3
"""Test and benchmark peers built on python3-libtorrent (Debian's, hence /usr/bin/python3).

  make     CONTENT OUT.torrent [--piece-kib N] [--tracker URL] [--hybrid]
           creates a torrent (v1 unless --hybrid) and prints {"info_hash", "magnet", "pieces", ...} as JSON
  seed     TORRENT DIR [--host H] [--port P] [--corrupt]          seeds DIR; prints "LISTENING <port>"
                                                       --corrupt: after the check, flip every byte of the
                                                       content in place, so it serves pieces that fail
                                                       their hash check (a misbehaving peer)
  leech    TORRENT DIR [--host H] [--port P] [--report FILE]      a plain leecher that connects to nobody by itself;
                                                       writes its payload/peer counters to FILE every 0.5 s
  download TORRENT|MAGNET DIR --peer HOST:PORT         sequential download from one peer; prints JSON timing
  dht-node [--host H] [--port P] [--node HOST:PORT]... [--seed TORRENT DIR]
                                                       a DHT node (not read-only); with --seed it also seeds
                                                       TORRENT and announces itself for it on the DHT

Every session: listens on 127.0.0.1 (or --host) only, no LSD/UPnP/NAT-PMP, empty DHT bootstrap list, TCP only
unless --utp (uTP's congestion control throttles loopback), several connections per IP allowed.
"""
import argparse
import json
import os
import sys
import time

import libtorrent as lt


def base_settings(port=0, dht=False, host="127.0.0.1", utp=False):
    return {
        "listen_interfaces": "%s:%d" % (host, port),
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_dht": dht,
        "dht_bootstrap_nodes": "",
        "enable_outgoing_utp": utp,
        "enable_incoming_utp": utp,
        "allow_multiple_connections_per_ip": True,
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.status_notification,
    }


def wait_listen(ses):
    for _ in range(100):
        if ses.listen_port():
            return ses.listen_port()
        time.sleep(0.05)
    raise SystemExit("never listened")


def cmd_make(a):
    fs = lt.file_storage()
    lt.add_files(fs, a.content)
    flags = 0 if a.hybrid else lt.create_torrent.v1_only
    ct = lt.create_torrent(fs, a.piece_kib * 1024, flags=flags)
    if a.tracker:
        ct.add_tracker(a.tracker)
    lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(a.content)))
    data = lt.bencode(ct.generate())
    with open(a.out, "wb") as f:
        f.write(data)
    ti = lt.torrent_info(a.out)
    files = [{"path": ti.files().file_path(i), "size": ti.files().file_size(i),
              "offset": ti.files().file_offset(i)} for i in range(ti.num_files())]
    print(json.dumps({
        "info_hash": str(ti.info_hashes().v1),
        "magnet": lt.make_magnet_uri(ti),
        "pieces": ti.num_pieces(),
        "piece_length": ti.piece_length(),
        "total_size": ti.total_size(),
        "files": files,
    }))


def add_params(torrent, path, seed):
    p = lt.add_torrent_params()
    p.ti = lt.torrent_info(torrent)
    p.save_path = path
    p.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    p.flags |= lt.torrent_flags.disable_dht | lt.torrent_flags.disable_lsd | lt.torrent_flags.disable_pex
    if seed:
        p.flags |= lt.torrent_flags.seed_mode
    return p


def cmd_seed(a):
    ses = lt.session(base_settings(a.port, host=a.host, utp=a.utp))
    # A full check up front (not seed_mode, which hashes lazily on first request and would slow
    # whichever downloader comes first); announce readiness only once seeding.
    h = ses.add_torrent(add_params(a.torrent, a.dir, False))
    while not h.status().is_seeding:
        time.sleep(0.05)
    if a.corrupt:
        # libtorrent believes it has every piece and never re-hashes what it serves; rewriting the
        # files in place (same inode, so its memory maps see it) makes every piece it sends bad.
        ti = h.torrent_file()
        for i in range(ti.num_files()):
            path = os.path.join(a.dir, ti.files().file_path(i))
            with open(path, "r+b") as f:
                data = bytearray(f.read())
                for j in range(len(data)):
                    data[j] ^= 0xFF
                f.seek(0)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
    print("LISTENING %d" % wait_listen(ses), flush=True)
    while True:
        time.sleep(1)


def cmd_leech(a):
    ses = lt.session(base_settings(a.port, host=a.host))
    h = ses.add_torrent(add_params(a.torrent, a.dir, False))
    print("LISTENING %d" % wait_listen(ses), flush=True)
    seen = {}
    while True:
        st = h.status()
        for p in h.get_peer_info():
            key = "%s:%d" % (p.ip[0], p.ip[1])
            e = seen.setdefault(key, {"ip": p.ip[0], "port": p.ip[1], "down": 0, "up": 0,
                                      "we_interested": False, "they_choke": True, "client": p.client.decode("latin-1") if isinstance(p.client, bytes) else p.client})
            e["down"] = max(e["down"], p.total_download)
            e["up"] = max(e["up"], p.total_upload)
            e["we_interested"] = e["we_interested"] or bool(p.flags & lt.peer_info.interesting)
            e["they_choke"] = bool(p.flags & lt.peer_info.remote_choked)
            e["pieces_they_have"] = sum(1 for x in p.pieces if x)
        report = {"payload_down": st.total_payload_download, "payload_up": st.total_payload_upload,
                  "num_pieces": st.num_pieces, "peers": list(seen.values())}
        if a.report:
            tmp = a.report + ".tmp"
            with open(tmp, "w") as f:
                json.dump(report, f)
            os.replace(tmp, a.report)
        time.sleep(0.5)


def cmd_download(a):
    ses = lt.session(base_settings(0, utp=a.utp))
    if a.torrent.startswith("magnet:"):
        p = lt.parse_magnet_uri(a.torrent)
        p.save_path = a.dir
        p.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        p.flags |= lt.torrent_flags.disable_dht | lt.torrent_flags.disable_lsd | lt.torrent_flags.disable_pex
    else:
        p = add_params(a.torrent, a.dir, False)
    p.flags |= lt.torrent_flags.sequential_download
    host, port = a.peer.rsplit(":", 1)
    t0 = time.monotonic()
    h = ses.add_torrent(p)
    h.connect_peer((host, int(port)))
    first = None
    while True:
        st = h.status()
        if first is None and st.num_pieces > 0:
            first = time.monotonic() - t0
        if st.has_metadata and (st.is_seeding or st.state in (lt.torrent_status.finished, lt.torrent_status.seeding)):
            break
        if time.monotonic() - t0 > a.timeout:
            raise SystemExit("download timed out")
        time.sleep(0.01)
    secs = time.monotonic() - t0
    size = h.torrent_file().total_size()
    print(json.dumps({"bytes": size, "seconds": secs, "first_piece_seconds": first,
                      "rate_mb_s": size / secs / 1e6}))


def cmd_dht_node(a):
    s = base_settings(a.port, dht=True, host=getattr(a, "host", "127.0.0.1"))
    s["alert_mask"] = (lt.alert.category_t.dht_notification | lt.alert.category_t.status_notification
                       | lt.alert.category_t.peer_notification)
    s["dht_announce_interval"] = 5
    ses = lt.session(s)
    for n in a.node:
        host, port = n.rsplit(":", 1)
        ses.add_dht_node((host, int(port)))
    if a.seed:
        # Seeds over the DHT: announce_peer stores this node's own listen port for the info-hash.
        p = add_params(a.seed[0], a.seed[1], True)
        p.flags &= ~lt.torrent_flags.disable_dht
        ses.add_torrent(p)
    print("LISTENING %d" % wait_listen(ses), flush=True)
    while True:
        # Accepted BitTorrent connections are printed, so a test can show nobody dialled this node.
        for alert in ses.pop_alerts():
            if isinstance(alert, lt.incoming_connection_alert):
                print("INCOMING %s" % alert.message(), flush=True)
        time.sleep(1)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make"); m.add_argument("content"); m.add_argument("out")
    m.add_argument("--piece-kib", type=int, default=256); m.add_argument("--tracker"); m.add_argument("--hybrid", action="store_true")
    s = sub.add_parser("seed"); s.add_argument("torrent"); s.add_argument("dir"); s.add_argument("--port", type=int, default=0)
    s.add_argument("--host", default="127.0.0.1"); s.add_argument("--utp", action="store_true")
    s.add_argument("--corrupt", action="store_true")
    l = sub.add_parser("leech"); l.add_argument("torrent"); l.add_argument("dir"); l.add_argument("--port", type=int, default=0)
    l.add_argument("--host", default="127.0.0.1")
    l.add_argument("--report")
    d = sub.add_parser("download"); d.add_argument("torrent"); d.add_argument("dir"); d.add_argument("--peer", required=True)
    d.add_argument("--timeout", type=float, default=600); d.add_argument("--utp", action="store_true")
    n = sub.add_parser("dht-node"); n.add_argument("--port", type=int, default=0); n.add_argument("--host", default="127.0.0.1")
    n.add_argument("--node", action="append", default=[]); n.add_argument("--seed", nargs=2, metavar=("TORRENT", "DIR"))
    a = ap.parse_args()
    {"make": cmd_make, "seed": cmd_seed, "leech": cmd_leech, "download": cmd_download, "dht-node": cmd_dht_node}[a.cmd](a)


if __name__ == "__main__":
    main()
