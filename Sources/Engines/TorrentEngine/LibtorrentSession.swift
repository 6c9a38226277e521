import CTorrent
import Foundation
import NetBasics

/// The one Swift type that calls the C shim: a libtorrent session's lifetime, shim return codes
/// turned into `TorrentEngineError`, C strings and structs turned into Swift values. The shim is
/// thread-safe; the engine actor and the alert pump thread share one instance, and `destroy` runs
/// only after the pump has stopped.
final class LibtorrentSession: @unchecked Sendable {
    private let raw: OpaquePointer
    private let lock = NSLock()
    private var destroyed = false

    init(_ settings: TorrentEngineSettings) throws {
        var err = ct_error()
        let raw: OpaquePointer? = settings.listenInterfaces.withCString { listen in
            settings.dhtBootstrapNodes.joined(separator: ",").withCString { boot in
                settings.dataDirectory.withCString { save in
                    var cfg = ct_settings()
                    cfg.struct_size = UInt32(MemoryLayout<ct_settings>.size)
                    cfg.listen_interfaces = listen
                    cfg.dht_bootstrap_nodes = boot
                    cfg.enable_dht = settings.dhtEnabled ? 1 : 0
                    cfg.enable_incoming = settings.acceptIncoming ? 1 : 0
                    cfg.enable_utp = settings.enableUTP ? 1 : 0
                    cfg.connections_limit = Int32(clamping: settings.connectionsLimit)
                    cfg.alert_queue_size = 0
                    cfg.memory_budget = Int64(settings.memoryBudget)
                    cfg.save_path = save
                    return ct_session_create(&cfg, &err)
                }
            }
        }
        guard let raw else {
            throw TorrentEngineError.check(err.code == 0 ? Int32(CT_EINTERNAL) : err.code, err)
                ?? TorrentEngineError.invalidArgument("session creation failed")
        }
        self.raw = raw
    }

    /// Destroys the session (idempotent). The caller stops the alert pump first.
    func destroy() {
        lock.lock()
        defer { lock.unlock() }
        guard !destroyed else { return }
        destroyed = true
        ct_session_destroy(raw)
    }

    // MARK: - Session

    var listenPort: Int { Int(ct_session_listen_port(raw)) }

    func setBool(_ name: String, _ value: Bool) throws {
        var err = ct_error()
        try check(ct_session_set_bool(raw, name, value ? 1 : 0, &err), err)
    }

    func sessionStats() throws -> SessionStats {
        var s = ct_session_stats()
        s.struct_size = UInt32(MemoryLayout<ct_session_stats>.size)
        var err = ct_error()
        try check(ct_session_stats_get(raw, &s, &err), err)
        return SessionStats(payloadUploaded: s.payload_uploaded, payloadDownloaded: s.payload_downloaded,
                            storeBytes: s.store_bytes, storePeakBytes: s.store_peak_bytes,
                            requestsRefused: s.requests_refused, torrents: Int(s.num_torrents))
    }

    /// Replaces the IP filter with these blocked first–last ranges.
    func setIPFilter(_ ranges: [IPRange]) throws {
        var err = ct_error()
        // IPv4 ends print dotted (they are IPv4-mapped inside `IPAddress`), so libtorrent files them
        // as address_v4 rules; IPv6 ends print in RFC 5952 form. Keep the C strings alive for the call.
        let firsts = ranges.map { strdup($0.first.description) }
        let lasts = ranges.map { strdup($0.last.description) }
        defer { (firsts + lasts).forEach { free($0) } }
        var cRanges = zip(firsts, lasts).map { ct_ip_range(first: $0, last: $1) }
        let rc = cRanges.withUnsafeMutableBufferPointer { ct_set_ip_filter(raw, $0.baseAddress, $0.count, &err) }
        try check(rc, err)
    }

    // MARK: - Torrents

    /// Adds a torrent; `invalidArgument` from the shim means libtorrent refused the hash_name.
    func add(_ source: TorrentSource, keepTrackers: Bool) throws -> UInt64 {
        var err = ct_error()
        var id: UInt64 = 0
        let keep: Int32 = keepTrackers ? 1 : 0
        let rc: Int32
        switch source {
        case .magnet(let uri): rc = ct_add_magnet(raw, uri, keep, &id, &err)
        case .infoHash(let hex): rc = ct_add_infohash(raw, hex, &id, &err)
        case .torrentFile(let bytes): rc = bytes.withUnsafeBufferPointer {
            ct_add_torrent_bytes(raw, $0.baseAddress, $0.count, keep, &id, &err)
        }
        }
        if let e = TorrentEngineError.check(rc, err) {
            if case .invalidArgument(let why) = e { throw TorrentEngineError.invalidHashName(why) }
            throw e
        }
        return id
    }

    /// Removes a torrent and drops its pieces from memory (errors ignored: it may be gone already).
    func remove(_ id: UInt64) {
        var err = ct_error()
        _ = ct_remove_torrent(raw, id, 1, &err)
    }

    func connectPeer(_ id: UInt64, _ peer: PeerEndpoint) throws {
        var err = ct_error()
        try check(ct_connect_peer(raw, id, peer.host, peer.port, &err), err)
    }

    /// The info-hash (lowercase hex) and whether the metadata is known.
    func infoHash(_ id: UInt64) -> (hex: String, hasMetadata: Bool) {
        var err = ct_error()
        var info = ct_torrent_info()
        info.struct_size = UInt32(MemoryLayout<ct_torrent_info>.size)
        _ = ct_torrent_info_get(raw, id, &info, &err)
        return (cString(info.info_hash_hex), info.has_metadata != 0)
    }

    /// The torrent's metadata, nil until libtorrent has it.
    func metadata(_ id: UInt64) -> TorrentMetadata? {
        var err = ct_error()
        var info = ct_torrent_info()
        info.struct_size = UInt32(MemoryLayout<ct_torrent_info>.size)
        guard ct_torrent_info_get(raw, id, &info, &err) == 0, info.has_metadata != 0 else { return nil }
        var files: [TorrentFile] = []
        for i in 0..<Int(info.num_files) {
            var f = ct_file_info()
            f.struct_size = UInt32(MemoryLayout<ct_file_info>.size)
            guard ct_file_info_get(raw, id, Int32(i), &f, &err) == 0 else { return nil }
            files.append(TorrentFile(index: i, path: cString(f.path), size: f.size, offset: f.offset, isPadding: f.is_pad != 0))
        }
        return TorrentMetadata(infoHash: cString(info.info_hash_hex), name: cString(info.name),
                               pieceLength: Int(info.piece_length), pieceCount: Int(info.num_pieces),
                               totalSize: info.total_size, files: files)
    }

    // MARK: - Pieces

    /// A deadline `ms` from now at top priority (the scheduler's `setDeadline`).
    func setDeadline(_ id: UInt64, piece: Int, milliseconds ms: Int) {
        var err = ct_error()
        if ct_set_piece_deadline(raw, id, Int32(piece), Int32(clamping: ms), &err) == 0 {
            _ = ct_set_piece_priorities(raw, id, Int32(piece), Int32(piece), 7, -1, &err)
        }
    }

    /// No deadline and priority 0 (the scheduler's `clearDeadline`).
    func clearDeadline(_ id: UInt64, piece: Int) {
        var err = ct_error()
        _ = ct_reset_piece_deadline(raw, id, Int32(piece), &err)
        _ = ct_set_piece_priorities(raw, id, Int32(piece), Int32(piece), 0, -1, &err)
    }

    /// The verified bytes of a piece (`size` is the piece's length).
    func readPiece(_ id: UInt64, piece: Int, size: Int) throws -> Data {
        var data = Data(count: size)
        var err = ct_error()
        var len = 0
        let rc = data.withUnsafeMutableBytes { buf in
            ct_read_piece(raw, id, Int32(piece), buf.baseAddress?.assumingMemoryBound(to: UInt8.self), buf.count, &len, &err)
        }
        try check(rc, err)
        if len != size { data.count = len }
        return data
    }

    func releasePiece(_ id: UInt64, piece: Int) {
        var err = ct_error()
        _ = ct_release_piece(raw, id, Int32(piece), &err)
    }

    func torrentStats(_ id: UInt64) throws -> TorrentStats {
        var s = ct_torrent_stats()
        s.struct_size = UInt32(MemoryLayout<ct_torrent_stats>.size)
        var err = ct_error()
        try check(ct_torrent_stats_get(raw, id, &s, &err), err)
        return TorrentStats(state: s.state, paused: s.paused != 0, hasMetadata: s.has_metadata != 0,
                            peers: Int(s.num_peers), seeds: Int(s.num_seeds), piecesHave: Int(s.num_pieces_have),
                            payloadUploaded: s.payload_uploaded, payloadDownloaded: s.payload_downloaded,
                            downloadRate: Int(s.download_rate), error: s.error_code == 0 ? nil : cString(s.error))
    }

    func peers(_ id: UInt64) throws -> [PeerStats] {
        var err = ct_error()
        var count = 0
        var buf = [ct_peer_stats](repeating: ct_peer_stats(), count: 64)
        while true {
            for i in buf.indices { buf[i].struct_size = UInt32(MemoryLayout<ct_peer_stats>.size) }
            let rc = buf.withUnsafeMutableBufferPointer { ct_peer_stats_get(raw, id, $0.baseAddress, $0.count, &count, &err) }
            try check(rc, err)
            if count <= buf.count { break }
            buf = [ct_peer_stats](repeating: ct_peer_stats(), count: count + 16)
        }
        return buf.prefix(count).map { p in
            PeerStats(endpoint: PeerEndpoint(host: cString(p.address), port: p.port), isSeed: p.is_seed != 0,
                      isUTP: p.is_utp != 0, isIncoming: p.is_incoming != 0, weChoke: p.we_choke != 0,
                      peerInterested: p.peer_interested != 0, payloadUploaded: p.payload_uploaded,
                      payloadDownloaded: p.payload_downloaded, client: cString(p.client))
        }
    }

    // MARK: - DHT

    func dhtAddNode(_ node: PeerEndpoint) throws {
        var err = ct_error()
        try check(ct_dht_add_node(raw, node.host, node.port, &err), err)
    }

    /// A read-only get_peers lookup; peers come back as `.dhtPeer` alerts.
    func dhtGetPeers(_ infoHashHex: String) {
        var err = ct_error()
        _ = ct_dht_get_peers(raw, infoHashHex, &err)
    }

    /// One direct get_peers query; the answer comes back as `.dhtNode*` alerts carrying `cookie`.
    func dhtDirectGetPeers(_ node: PeerEndpoint, infoHashHex: String, cookie: UInt64) throws {
        var err = ct_error()
        try check(ct_dht_direct_get_peers(raw, node.host, node.port, infoHashHex, cookie, &err), err)
    }

    // MARK: - Alerts

    /// Blocks up to `timeoutMilliseconds` for an alert (pump thread only); true if one is pending.
    func waitForAlerts(timeoutMilliseconds: Int32) -> Bool { ct_wait_alerts(raw, timeoutMilliseconds) != 0 }

    /// Pops pending alerts into `buffer`, decoded; at most `buffer.count`.
    func popAlerts(_ buffer: inout [ct_alert]) -> [LibtorrentAlert] {
        let n = buffer.withUnsafeMutableBufferPointer { ct_pop_alerts(raw, $0.baseAddress, $0.count) }
        return buffer[0..<n].map(LibtorrentAlert.init)
    }

    private func check(_ rc: Int32, _ err: ct_error) throws {
        if let e = TorrentEngineError.check(rc, err) { throw e }
    }
}
