import CTorrent
import Foundation
import Logging
import NetBasics

/// The one owner of the libtorrent session. Nothing else calls the C shim.
///
/// Streams pull: each `next()` of a stream asks this actor for the next event; the actor keeps
/// piece deadlines on a small window ahead of the consumer, so a slow consumer slows libtorrent
/// (the window does not move) and memory stays within `memoryBudget`. Pieces live only in the
/// shim's in-memory store and are dropped as soon as they are handed over; a torrent is removed
/// when its last stream ends, so nothing is seeded afterwards.
///
/// Free-rider mode (configured in the shim, checked by the tests): no peer is ever unchoked, piece
/// requests are swallowed, the DHT node is read-only and torrents never announce, no PEX, LSD,
/// UPnP or NAT-PMP, no incoming connections unless `acceptIncoming`. libtorrent still sends its
/// bitfield on connect and HAVE messages to peers lacking a piece; we limit who sees them by
/// connecting only to peers we were given or found, and by dropping the torrent after the stream.
public actor TorrentEngine {
    public let settings: TorrentEngineSettings
    /// Peer-level events (connect, disconnect, blocked, bad piece, request timeout). One consumer.
    public nonisolated let peerEvents: AsyncStream<PeerEvent>

    private let session: SessionHandle
    private let pump: AlertPump
    private let peerEventSink: AsyncStream<PeerEvent>.Continuation
    private let logger: Logger
    private var stopped = false

    private var torrents: [UInt64: OpenTorrent] = [:]
    private var torrentsByHash: [String: UInt64] = [:]
    private var streams: [UInt64: StreamState] = [:]
    private var nextToken: UInt64 = 1
    private var counters: [String: PeerCounters] = [:]
    private var dhtNodes: [PeerEndpoint] = []
    private var dhtReplies: [UInt64: DHTReplyBuilder] = [:]
    public private(set) var listenPort: Int = 0

    public init(settings: TorrentEngineSettings = TorrentEngineSettings(),
                logger: Logger = Logger(label: "peersm.torrent")) throws {
        self.settings = settings
        self.logger = logger
        try FileManager.default.createDirectory(atPath: settings.dataDirectory, withIntermediateDirectories: true)
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
        let handle = SessionHandle(raw)
        session = handle
        if settings.dhtAllowLocalNodes {
            for name in ["dht_restrict_routing_ips", "dht_restrict_search_ips"] {
                _ = ct_session_set_bool(raw, name, 0, &err)
            }
        }
        var eventsCont: AsyncStream<PeerEvent>.Continuation!
        peerEvents = AsyncStream(bufferingPolicy: .bufferingNewest(4096)) { eventsCont = $0 }
        peerEventSink = eventsCont
        let (alerts, alertSink) = AsyncStream<[EngineAlert]>.makeStream()
        pump = AlertPump(session: handle, continuation: alertSink)
        let boundPort = Int(ct_session_listen_port(raw))
        listenPort = boundPort
        if !Self.policyRanges(settings).isEmpty {
            try Self.setIPFilter(raw, Self.policyRanges(settings))
        }
        for node in settings.dhtNodes {
            guard let ep = Self.parseEndpoint(node) else { throw TorrentEngineError.invalidArgument("DHT node \(node)") }
            if let e = TorrentEngineError.check(ct_dht_add_node(raw, ep.host, ep.port, &err), err) { throw e }
            dhtNodes.append(ep)
        }
        logger.debug("session started", metadata: [
            "listen": "\(settings.listenInterfaces)", "port": "\(boundPort)", "dht": "\(settings.dhtEnabled)",
            "magnet-peers": "\(settings.magnetPeers.rawValue)",
        ])
        pump.start()
        Task { [weak self] in
            for await batch in alerts {
                guard let self else { return }
                await self.handle(batch)
            }
        }
    }

    deinit {
        // Only reached without shutdown(): stop the pump thread before the session goes.
        if !stopped {
            pump.stop()
            ct_session_destroy(session.raw)
            peerEventSink.finish()
        }
    }

    /// Stops the alert pump, fails every stream and destroys the session (idempotent).
    public func shutdown() {
        guard !stopped else { return }
        stopped = true
        for t in torrents.values { fail(t, .engineStopped) }
        torrents.removeAll()
        torrentsByHash.removeAll()
        streams.removeAll()
        pump.stop()
        ct_session_destroy(session.raw)
        peerEventSink.finish()
    }

    // MARK: - Torrents

    /// Adds (or finds) a torrent and waits for its metadata. The torrent stays until `close`.
    public func open(_ hashName: String, peers: [PeerEndpoint] = []) async throws -> (TorrentID, TorrentMetadata) {
        let t = try add(try TorrentSource(hashName: hashName), peers: peers)
        t.users += 1
        do {
            let md = try await metadata(of: t)
            return (TorrentID(raw: t.id), md)
        } catch {
            release(t)
            throw error
        }
    }

    /// Adds a torrent from .torrent bytes (kept until `close`).
    public func open(torrentFile bytes: [UInt8], peers: [PeerEndpoint] = []) async throws -> (TorrentID, TorrentMetadata) {
        let t = try add(.torrentFile(bytes), peers: peers)
        t.users += 1
        do {
            return (TorrentID(raw: t.id), try await metadata(of: t))
        } catch {
            release(t)
            throw error
        }
    }

    /// Drops one `open` reference; the torrent goes when no stream or open holds it.
    public func close(_ id: TorrentID) {
        guard let t = torrents[id.raw] else { return }
        release(t)
    }

    /// Removes a torrent now: streams on it end with `torrentRemoved`; its pieces leave memory.
    public func remove(_ id: TorrentID) {
        guard let t = torrents[id.raw] else { return }
        drop(t, because: .torrentRemoved(infoHash: t.infoHash))
    }

    public func connectPeer(_ id: TorrentID, _ peer: PeerEndpoint) throws {
        guard let t = torrents[id.raw] else { throw TorrentEngineError.torrentRemoved(infoHash: "\(id)") }
        var err = ct_error()
        if let e = TorrentEngineError.check(ct_connect_peer(session.raw, t.id, peer.host, peer.port, &err), err) { throw e }
    }

    public var openTorrents: [TorrentID] { torrents.keys.sorted().map(TorrentID.init(raw:)) }

    // MARK: - Streaming

    /// Streams `length` bytes (to the end if nil) from `offset` of one file of the torrent named by
    /// `hashName` (a magnet link or 40-hex info-hash); the largest file unless `fileIndex` is given.
    /// Events: `.progress(.torrent)`, `.progress(.dhtReady)` (DHT only), `.progress(.start)`,
    /// `.ready(info)`, then `.data` chunks in order. Malformed input throws here; a range outside
    /// the file, a metadata timeout or removal of the torrent end the stream with an error.
    /// Cancelling the consuming task, or dropping the stream, stops the fetch.
    public func stream(_ hashName: String, offset: Int64 = 0, length: Int64? = nil, fileIndex: Int? = nil,
                       peers: [PeerEndpoint] = []) throws -> AsyncThrowingStream<TorrentStreamEvent, Error> {
        try stream(source: try TorrentSource(hashName: hashName), offset: offset, length: length,
                   fileIndex: fileIndex, peers: peers)
    }

    public func stream(source: TorrentSource, offset: Int64 = 0, length: Int64? = nil, fileIndex: Int? = nil,
                       peers: [PeerEndpoint] = []) throws -> AsyncThrowingStream<TorrentStreamEvent, Error> {
        guard offset >= 0, (length ?? 0) >= 0 else {
            throw TorrentEngineError.rangeNotSatisfiable(offset: offset, length: length, fileSize: -1)
        }
        let t = try add(source, peers: peers)
        t.users += 1
        let id = token()
        let st = StreamState(id: id, torrent: t, fileIndex: fileIndex, offset: offset, length: length)
        st.queue.append(.progress(.torrent))
        streams[id] = st
        t.streams.insert(id)
        let handle = StreamHandle(engine: self, id: id)
        return AsyncThrowingStream(unfolding: { try await handle.next() })
    }

    /// Convenience for callers that only want the bytes: the info, then the data chunks.
    public func streamBytes(_ hashName: String, offset: Int64 = 0, length: Int64? = nil, fileIndex: Int? = nil,
                            peers: [PeerEndpoint] = []) throws -> AsyncThrowingStream<Data, Error> {
        let events = try stream(hashName, offset: offset, length: length, fileIndex: fileIndex, peers: peers)
        let box = EventIterator(events.makeAsyncIterator())
        return AsyncThrowingStream(unfolding: {
            while let e = try await box.iterator.next() { if case .data(let d) = e { return d } }
            return nil
        })
    }

    fileprivate func nextEvent(_ sid: UInt64) async throws -> TorrentStreamEvent? {
        guard let st = streams[sid] else { return nil }
        do {
            if let e = try await step(st) { return e }
            endStream(sid)
            return nil
        } catch {
            endStream(sid)
            throw error
        }
    }

    private func step(_ st: StreamState) async throws -> TorrentStreamEvent? {
        let t = st.torrent
        if !st.queue.isEmpty { return st.queue.removeFirst() }
        if st.plan == nil {
            guard let md = t.metadata else {
                try await waitMetadataOrProgress(t)
                return try await step(st)
            }
            try begin(st, md)
            return st.queue.removeFirst()
        }
        if let chunk = st.takeChunk(max: settings.chunkSize) { return .data(chunk) }
        guard var plan = st.plan, !plan.isDone else { return nil }
        let piece = plan.next
        refreshWindow(st)
        try await waitPiece(t, piece)
        try Task.checkCancellation()
        let data = try readPiece(t, piece)
        let slice = plan.slice(of: piece)
        plan.advance()
        st.plan = plan
        st.deadlined.remove(piece)
        t.ready.remove(piece)
        if !isNeededByOthers(t, piece, except: st.id) { releasePiece(t, piece) }
        refreshWindow(st)
        st.buffer = slice.count == data.count ? data : data.subdata(in: slice)
        st.bufferPos = 0
        if let chunk = st.takeChunk(max: settings.chunkSize) { return .data(chunk) }
        return try await step(st)
    }

    /// Chooses the file, checks the range and fixes the piece plan.
    private func begin(_ st: StreamState, _ md: TorrentMetadata) throws {
        let file: TorrentFile
        if let i = st.fileIndex {
            guard i >= 0, i < md.files.count, !md.files[i].isPadding else {
                throw TorrentEngineError.noSuchFile(index: i, fileCount: md.files.count)
            }
            file = md.files[i]
        } else {
            guard let f = md.largestFile else { throw TorrentEngineError.noSuchFile(index: 0, fileCount: 0) }
            file = f
        }
        // "Past the end": an offset at or beyond the end of a non-empty file, or a range running over it.
        let length = st.length ?? (file.size - st.offset)
        guard (st.offset < file.size || (file.size == 0 && st.offset == 0)), length >= 0,
              st.offset + length <= file.size else {
            throw TorrentEngineError.rangeNotSatisfiable(offset: st.offset, length: st.length, fileSize: file.size)
        }
        let start = file.offset + st.offset
        st.plan = PiecePlan(pieceLength: Int64(md.pieceLength), totalSize: md.totalSize, start: start, end: start + length)
        let activeStreams = max(1, streams.values.filter { $0.plan != nil }.count)
        st.readAhead = max(2, min(settings.maxReadAheadPieces, settings.memoryBudget / md.pieceLength / activeStreams))
        st.queue.append(.progress(.start))
        st.queue.append(.ready(TorrentStreamInfo(
            torrent: TorrentID(raw: st.torrent.id), infoHash: md.infoHash, fileIndex: file.index,
            fileName: file.path, fileSize: file.size, mimeType: file.mimeType, offset: st.offset, length: length)))
        for p in st.plan!.firstPiece...max(st.plan!.firstPiece, st.plan!.lastPiece) where st.torrent.released.contains(p) {
            throw TorrentEngineError.pieceAlreadyRelayed(infoHash: md.infoHash, piece: p)
        }
    }

    /// Keeps deadlines on the next `readAhead` pieces, nearest first.
    private func refreshWindow(_ st: StreamState) {
        guard let plan = st.plan, st.torrent.failure == nil else { return }
        var err = ct_error()
        for (k, p) in plan.window(readAhead: st.readAhead).enumerated()
        where !st.deadlined.contains(p) && !st.torrent.ready.contains(p) {
            // Increasing deadlines make libtorrent's time-critical picker fetch in stream order.
            // The top priority keeps the ordinary picker on the piece too, should the time-critical
            // logic drop it (seen with a short tick_interval: the stream stalled).
            if ct_set_piece_deadline(session.raw, st.torrent.id, Int32(p), Int32(k * 50), &err) == 0 {
                _ = ct_set_piece_priorities(session.raw, st.torrent.id, Int32(p), Int32(p), 7, -1, &err)
                st.deadlined.insert(p)
            }
        }
    }

    private func isNeededByOthers(_ t: OpenTorrent, _ piece: Int, except sid: UInt64) -> Bool {
        t.streams.contains { other in
            guard other != sid, let s = streams[other] else { return false }
            guard let plan = s.plan else { return true }   // range not known yet: keep to be safe
            return piece >= plan.next && piece <= plan.lastPiece
        }
    }

    private func readPiece(_ t: OpenTorrent, _ piece: Int) throws -> Data {
        let size = t.metadata.map { Int(min(Int64($0.pieceLength), $0.totalSize - Int64(piece) * Int64($0.pieceLength))) } ?? 0
        var data = Data(count: size)
        var err = ct_error()
        var len = 0
        let rc = data.withUnsafeMutableBytes { raw in
            ct_read_piece(session.raw, t.id, Int32(piece), raw.baseAddress?.assumingMemoryBound(to: UInt8.self),
                          raw.count, &len, &err)
        }
        if let e = TorrentEngineError.check(rc, err) { throw e }
        if len != size { data.count = len }
        return data
    }

    private func releasePiece(_ t: OpenTorrent, _ piece: Int) {
        var err = ct_error()
        _ = ct_release_piece(session.raw, t.id, Int32(piece), &err)
        t.released.insert(piece)
    }

    /// Ends a stream: its deadlines go, unconsumed pieces leave memory, and the torrent is removed
    /// when nothing else holds it (no seeding after delivery).
    fileprivate func endStream(_ sid: UInt64) {
        guard let st = streams.removeValue(forKey: sid) else { return }
        let t = st.torrent
        t.streams.remove(sid)
        if torrents[t.id] != nil && t.failure == nil {
            var err = ct_error()
            for p in st.deadlined where !isNeededByOthers(t, p, except: sid) {
                _ = ct_reset_piece_deadline(session.raw, t.id, Int32(p), &err)
                _ = ct_set_piece_priorities(session.raw, t.id, Int32(p), Int32(p), 0, -1, &err)
            }
            for p in t.ready where !isNeededByOthers(t, p, except: sid) {
                releasePiece(t, p)
                t.ready.remove(p)
            }
        }
        release(t)
    }

    // MARK: - Torrent bookkeeping

    private func add(_ source: TorrentSource, peers explicitPeers: [PeerEndpoint]) throws -> OpenTorrent {
        guard !stopped else { throw TorrentEngineError.engineStopped }
        var peers = explicitPeers
        if case .magnet(let uri) = source {
            peers += try allowedMagnetPeers(uri)
        }
        if let known = Self.infoHash(of: source), let id = torrentsByHash[known], let t = torrents[id] {
            connect(t, peers)
            return t
        }
        guard torrents.count < settings.maxConcurrentTorrents else {
            throw TorrentEngineError.tooManyTorrents(limit: settings.maxConcurrentTorrents)
        }
        var err = ct_error()
        var id: UInt64 = 0
        let keep: Int32 = settings.useTrackers ? 1 : 0
        let rc: Int32
        switch source {
        case .magnet(let uri): rc = ct_add_magnet(session.raw, uri, keep, &id, &err)
        case .infoHash(let hex): rc = ct_add_infohash(session.raw, hex, &id, &err)
        case .torrentFile(let bytes): rc = bytes.withUnsafeBufferPointer {
            ct_add_torrent_bytes(session.raw, $0.baseAddress, $0.count, keep, &id, &err)
        }
        }
        if let e = TorrentEngineError.check(rc, err) {
            if case .invalidArgument(let why) = e { throw TorrentEngineError.invalidHashName(why) }
            throw e
        }
        var info = ct_torrent_info()
        info.struct_size = UInt32(MemoryLayout<ct_torrent_info>.size)
        _ = ct_torrent_info_get(session.raw, id, &info, &err)
        let hash = cString(info.info_hash_hex)
        let t = OpenTorrent(id: id, infoHash: hash)
        torrents[id] = t
        torrentsByHash[hash] = id
        if info.has_metadata != 0 { t.metadata = loadMetadata(t) }
        connect(t, peers)
        if t.metadata == nil { startMetadataWatch(t) }
        logger.debug("added \(hash) as torrent#\(id)")
        return t
    }

    /// The magnet's own peers that `settings.magnetPeers` allows; its allowed DHT nodes join the
    /// routing table (DHT on only). libtorrent never sees the rest (the shim strips them).
    private func allowedMagnetPeers(_ uri: String) throws -> [PeerEndpoint] {
        var allowed: [PeerEndpoint] = []
        var dropped = 0
        for e in try MagnetEndpoint.parse(uri) {
            guard settings.magnetPeers.allows(host: e.host), e.port != 0 else { dropped += 1; continue }
            switch e.kind {
            case .peer: allowed.append(PeerEndpoint(host: e.host, port: e.port))
            case .dhtNode:
                guard settings.dhtEnabled else { continue }
                var err = ct_error()
                _ = ct_dht_add_node(session.raw, e.host, e.port, &err)
            }
        }
        if dropped > 0 {
            logger.debug("ignored \(dropped) peer(s)/DHT node(s) named in a magnet link (magnetPeers: \(settings.magnetPeers.rawValue))")
        }
        return allowed
    }

    private func connect(_ t: OpenTorrent, _ peers: [PeerEndpoint]) {
        var err = ct_error()
        for p in peers where !t.connected.contains(p) {
            if ct_connect_peer(session.raw, t.id, p.host, p.port, &err) == 0 { t.connected.insert(p) }
        }
    }

    /// Metadata timeout and, with the DHT on, repeated read-only get_peers lookups.
    private func startMetadataWatch(_ t: OpenTorrent) {
        let timeout = settings.metadataTimeout
        let dht = settings.dhtEnabled
        let hash = t.infoHash
        Task { [weak self] in
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                guard let self, await self.needsMetadata(t) else { return }
                if dht { await self.lookupPeers(hash) }
                try? await Task.sleep(for: min(.seconds(dht ? 5 : 1), deadline - ContinuousClock.now))
            }
            await self?.metadataTimedOut(t, seconds: Double(timeout.components.seconds))
        }
    }

    private func needsMetadata(_ t: OpenTorrent) -> Bool { t.metadata == nil && t.failure == nil && torrents[t.id] != nil }

    private func lookupPeers(_ hash: String) {
        var err = ct_error()
        _ = ct_dht_get_peers(session.raw, hash, &err)
    }

    private func metadataTimedOut(_ t: OpenTorrent, seconds: Double) {
        guard needsMetadata(t) else { return }
        drop(t, because: .metadataTimeout(infoHash: t.infoHash, seconds: seconds))
    }

    private func metadata(of t: OpenTorrent) async throws -> TorrentMetadata {
        while true {
            if let md = t.metadata { return md }
            try await waitMetadataOrProgress(t)
        }
    }

    /// Returns when the metadata arrives or a progress event is queued for a stream (so the
    /// consumer sees it promptly); throws when the torrent fails or times out.
    private func waitMetadataOrProgress(_ t: OpenTorrent) async throws {
        if let f = t.failure { throw f }
        if t.metadata != nil { return }
        let wid = token()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
                if Task.isCancelled { c.resume(throwing: CancellationError()); return }
                t.metadataWaiters[wid] = c
            }
        } onCancel: {
            Task { await self.cancelMetadataWaiter(t, wid) }
        }
        if let f = t.failure { throw f }
    }

    private func cancelMetadataWaiter(_ t: OpenTorrent, _ wid: UInt64) {
        t.metadataWaiters.removeValue(forKey: wid)?.resume(throwing: CancellationError())
    }

    private func waitPiece(_ t: OpenTorrent, _ piece: Int) async throws {
        if let f = t.failure { throw f }
        if t.ready.contains(piece) { return }
        let wid = token()
        // A swarm that stops delivering must not hang the consumer forever.
        let stallTimeout = settings.stallTimeout
        let timer = Task { [weak self] in
            try await Task.sleep(for: stallTimeout)
            await self?.pieceStalled(t, piece, wid, after: stallTimeout)
        }
        defer { timer.cancel() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
                self.addPieceWaiter(t, piece, wid, c)
            }
        } onCancel: {
            Task { await self.cancelPieceWaiter(t, piece, wid) }
        }
    }

    /// Registers a piece waiter, re-checking first: the piece may have been verified, or the
    /// torrent failed, since waitPiece looked (pieces now finish within milliseconds of the
    /// deadline being set; a waiter registered after its alert would wait for the stall timeout).
    private func addPieceWaiter(_ t: OpenTorrent, _ piece: Int, _ wid: UInt64, _ c: CheckedContinuation<Void, Error>) {
        if Task.isCancelled { c.resume(throwing: CancellationError()); return }
        if let f = t.failure { c.resume(throwing: f); return }
        if t.ready.contains(piece) { c.resume(); return }
        t.pieceWaiters[piece, default: [:]][wid] = c
    }

    private func pieceStalled(_ t: OpenTorrent, _ piece: Int, _ wid: UInt64, after: Duration) {
        t.pieceWaiters[piece]?.removeValue(forKey: wid)?.resume(
            throwing: TorrentEngineError.stalled(infoHash: t.infoHash, piece: piece,
                                                 seconds: Double(after.components.seconds)))
    }

    private func cancelPieceWaiter(_ t: OpenTorrent, _ piece: Int, _ wid: UInt64) {
        t.pieceWaiters[piece]?.removeValue(forKey: wid)?.resume(throwing: CancellationError())
    }

    private func loadMetadata(_ t: OpenTorrent) -> TorrentMetadata? {
        var err = ct_error()
        var info = ct_torrent_info()
        info.struct_size = UInt32(MemoryLayout<ct_torrent_info>.size)
        guard ct_torrent_info_get(session.raw, t.id, &info, &err) == 0, info.has_metadata != 0 else { return nil }
        var files: [TorrentFile] = []
        for i in 0..<Int(info.num_files) {
            var f = ct_file_info()
            f.struct_size = UInt32(MemoryLayout<ct_file_info>.size)
            guard ct_file_info_get(session.raw, t.id, Int32(i), &f, &err) == 0 else { return nil }
            files.append(TorrentFile(index: i, path: cString(f.path), size: f.size, offset: f.offset, isPadding: f.is_pad != 0))
        }
        // Every piece starts at priority 0 (the shim adds torrents that way), so nothing is fetched
        // until a stream sets deadlines. Re-zeroing here would be worse than redundant: it makes
        // libtorrent send NOT_INTERESTED to peers that became interesting when the metadata
        // arrived, which ends their request-queue slow start for good (see add() in the shim).
        return TorrentMetadata(infoHash: cString(info.info_hash_hex), name: cString(info.name),
                               pieceLength: Int(info.piece_length), pieceCount: Int(info.num_pieces),
                               totalSize: info.total_size, files: files)
    }

    private func release(_ t: OpenTorrent) {
        t.users -= 1
        if t.users <= 0 && t.streams.isEmpty { drop(t, because: .torrentRemoved(infoHash: t.infoHash)) }
    }

    /// Removes the torrent from libtorrent (pieces leave memory) and fails whoever waits on it.
    private func drop(_ t: OpenTorrent, because error: TorrentEngineError) {
        guard torrents.removeValue(forKey: t.id) != nil else { return }
        torrentsByHash.removeValue(forKey: t.infoHash)
        var err = ct_error()
        _ = ct_remove_torrent(session.raw, t.id, 1, &err)
        fail(t, error)
    }

    private func fail(_ t: OpenTorrent, _ error: TorrentEngineError) {
        if t.failure == nil { t.failure = error }
        let f = t.failure!
        for c in t.metadataWaiters.values { c.resume(throwing: f) }
        t.metadataWaiters.removeAll()
        for ws in t.pieceWaiters.values { for c in ws.values { c.resume(throwing: f) } }
        t.pieceWaiters.removeAll()
    }

    private func token() -> UInt64 { defer { nextToken += 1 }; return nextToken }

    // MARK: - Alerts

    private func handle(_ batch: [EngineAlert]) {
        // Batches queued before shutdown() may still arrive; the session they refer to is gone.
        guard !stopped else { return }
        for a in batch { handle(a) }
    }

    private func handle(_ a: EngineAlert) {
        let t = torrents[a.torrent]
        switch Int(a.kind) {
        case Int(CT_ALERT_METADATA_RECEIVED):
            guard let t, t.metadata == nil else { return }
            t.metadata = loadMetadata(t)
            for c in t.metadataWaiters.values { c.resume() }
            t.metadataWaiters.removeAll()
        case Int(CT_ALERT_PIECE_FINISHED):
            guard let t else { return }
            t.ready.insert(a.piece)
            t.released.remove(a.piece)
            if let ws = t.pieceWaiters.removeValue(forKey: a.piece) { for c in ws.values { c.resume() } }
        case Int(CT_ALERT_TORRENT_ERROR), Int(CT_ALERT_FILE_ERROR):
            guard let t else { return }
            // The session-local id, never the info-hash: this level is on by default.
            logger.warning("torrent error; dropping the torrent", metadata: ["torrent": "#\(t.id)", "error": "\(a.message)"])
            drop(t, because: .torrentFailed(infoHash: t.infoHash, reason: a.message))
        case Int(CT_ALERT_METADATA_FAILED):
            logger.info("metadata from a peer rejected: \(a.message)")
        case Int(CT_ALERT_PEER_CONNECTED):
            counters[a.address, default: PeerCounters()].connected += 1
            emit(.connected, a)
        case Int(CT_ALERT_PEER_DISCONNECTED):
            emit(.disconnected, a)
        case Int(CT_ALERT_PEER_CONNECT_FAILED):
            counters[a.address, default: PeerCounters()].connectFailed += 1
            emit(.connectFailed, a)
        case Int(CT_ALERT_PEER_BLOCKED):
            counters[a.address, default: PeerCounters()].blocked += 1
            emit(.blocked, a, detail: a.reason == 0 ? "ip_filter" : "rule \(a.reason)")
        case Int(CT_ALERT_PEER_ERROR):
            emit(.error, a)
        case Int(CT_ALERT_PEER_SNUBBED), Int(CT_ALERT_BLOCK_TIMEOUT):
            emit(.requestTimeout, a)
        case Int(CT_ALERT_PEER_BANNED):
            emit(.badPiece, a)
        case Int(CT_ALERT_HASH_FAILED):
            emit(.badPiece, a, detail: "piece \(a.piece) failed its hash check")
        case Int(CT_ALERT_LISTEN_SUCCEEDED):
            listenPort = Int(ct_session_listen_port(session.raw))
        case Int(CT_ALERT_DHT_PEER):
            let hex = a.infoHash.map { String(format: "%02x", $0) }.joined()
            guard let id = torrentsByHash[hex], let t = torrents[id], t.metadata == nil || !t.streams.isEmpty else { return }
            connect(t, [PeerEndpoint(host: a.address, port: a.port)])
            for s in t.streams.compactMap({ streams[$0] }) where !s.sawDHT {
                s.sawDHT = true
                s.queue.append(.progress(.dhtReady))
                wakeMetadataWaiters(t)
            }
        case Int(CT_ALERT_ALERTS_DROPPED):
            // A lost piece_finished leaves its stream waiting until the stall timeout: say so, since
            // nothing else would show why.
            logger.warning("libtorrent's alert queue overflowed and dropped alerts; a stream may stall")
        case Int(CT_ALERT_DHT_NODE_REPLY), Int(CT_ALERT_DHT_NODE_PEER), Int(CT_ALERT_DHT_NODE_CONTACT),
             Int(CT_ALERT_DHT_NODE_TIMEOUT):
            dhtReplies[a.cookie]?.add(a)
        default:
            break
        }
    }

    private func wakeMetadataWaiters(_ t: OpenTorrent) {
        for c in t.metadataWaiters.values { c.resume() }
        t.metadataWaiters.removeAll()
    }

    private func emit(_ kind: PeerEvent.Kind, _ a: EngineAlert, detail: String? = nil) {
        peerEventSink.yield(PeerEvent(kind: kind, address: a.address, port: a.port,
                                      torrent: a.torrent == 0 ? nil : TorrentID(raw: a.torrent),
                                      infoHash: torrents[a.torrent]?.infoHash,
                                      detail: detail ?? a.message))
    }

    // MARK: - Stats, IP filter, DHT

    public func stats(_ id: TorrentID) throws -> TorrentStats {
        var s = ct_torrent_stats()
        s.struct_size = UInt32(MemoryLayout<ct_torrent_stats>.size)
        var err = ct_error()
        if let e = TorrentEngineError.check(ct_torrent_stats_get(session.raw, id.raw, &s, &err), err) { throw e }
        return TorrentStats(state: s.state, paused: s.paused != 0, hasMetadata: s.has_metadata != 0,
                            peers: Int(s.num_peers), seeds: Int(s.num_seeds), piecesHave: Int(s.num_pieces_have),
                            payloadUploaded: s.payload_uploaded, payloadDownloaded: s.payload_downloaded,
                            downloadRate: Int(s.download_rate), error: s.error_code == 0 ? nil : cString(s.error))
    }

    public func peers(_ id: TorrentID) throws -> [PeerStats] {
        var err = ct_error()
        var count = 0
        var buf = [ct_peer_stats](repeating: ct_peer_stats(), count: 64)
        while true {
            for i in buf.indices { buf[i].struct_size = UInt32(MemoryLayout<ct_peer_stats>.size) }
            let rc = buf.withUnsafeMutableBufferPointer { ct_peer_stats_get(session.raw, id.raw, $0.baseAddress, $0.count, &count, &err) }
            if let e = TorrentEngineError.check(rc, err) { throw e }
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

    public func sessionStats() throws -> SessionStats {
        guard !stopped else { throw TorrentEngineError.engineStopped }
        var s = ct_session_stats()
        s.struct_size = UInt32(MemoryLayout<ct_session_stats>.size)
        var err = ct_error()
        if let e = TorrentEngineError.check(ct_session_stats_get(session.raw, &s, &err), err) { throw e }
        return SessionStats(payloadUploaded: s.payload_uploaded, payloadDownloaded: s.payload_downloaded,
                            storeBytes: s.store_bytes, storePeakBytes: s.store_peak_bytes,
                            requestsRefused: s.requests_refused, torrents: Int(s.num_torrents))
    }

    /// Connection counters per peer IP address since the engine started.
    public func peerCounters(_ address: String) -> PeerCounters { counters[address] ?? PeerCounters() }

    /// Replaces the whole IP filter (IPv4 and IPv6 first–last ranges are blocked). Under
    /// `magnetPeers = .publicOnly` the non-public ranges stay blocked as well.
    /// Note: libtorrent 2.0.8 does not apply the filter to DHT traffic (fixed in 2.0.11).
    public func replaceIPFilter(_ ranges: [IPRange]) throws {
        guard !stopped else { throw TorrentEngineError.engineStopped }
        try Self.setIPFilter(session.raw, ranges + Self.policyRanges(settings))
    }

    private static func policyRanges(_ settings: TorrentEngineSettings) -> [IPRange] {
        settings.magnetPeers == .publicOnly ? AddressClass.nonPublicRanges : []
    }

    private static func setIPFilter(_ raw: OpaquePointer, _ ranges: [IPRange]) throws {
        var err = ct_error()
        // IPv4 ends print dotted (they are IPv4-mapped inside `IPAddress`), so libtorrent files them
        // as address_v4 rules; IPv6 ends print in RFC 5952 form. Keep the C strings alive for the call.
        let firsts = ranges.map { strdup($0.first.description) }
        let lasts = ranges.map { strdup($0.last.description) }
        defer { (firsts + lasts).forEach { free($0) } }
        var cRanges = zip(firsts, lasts).map { ct_ip_range(first: $0, last: $1) }
        let rc = cRanges.withUnsafeMutableBufferPointer { ct_set_ip_filter(raw, $0.baseAddress, $0.count, &err) }
        if let e = TorrentEngineError.check(rc, err) { throw e }
    }

    /// Adds a node to the read-only DHT's routing table (e.g. a local test node).
    public func addDHTNode(_ node: PeerEndpoint) throws {
        guard !stopped else { throw TorrentEngineError.engineStopped }
        var err = ct_error()
        if let e = TorrentEngineError.check(ct_dht_add_node(session.raw, node.host, node.port, &err), err) { throw e }
        if !dhtNodes.contains(node) { dhtNodes.append(node) }
    }

    /// Asks DHT nodes directly for peers of `infoHash` and reports every answer: the node's
    /// address and id, the peers it returned, and the closer nodes it named, which are queried in
    /// turn (up to `maxNodes`). Starts from `nodes`, or the nodes added to this engine.
    /// Our node is read-only (BEP 43): it asks, never answers or announces.
    public func dhtGetPeers(infoHash: String, nodes: [PeerEndpoint]? = nil, maxNodes: Int = 32,
                            timeout: Duration = .seconds(10)) async throws -> [DHTNodeReply] {
        guard !stopped else { throw TorrentEngineError.engineStopped }
        guard settings.dhtEnabled else { throw TorrentEngineError.invalidArgument("the DHT is disabled") }
        let hex = infoHash.lowercased()
        guard TorrentSource.isInfoHash(hex) else { throw TorrentEngineError.invalidHashName("info-hash must be 40 hex digits") }
        var queue = nodes ?? dhtNodes
        var asked = Set<PeerEndpoint>()
        var results: [DHTNodeReply] = []
        let deadline = ContinuousClock.now + timeout
        while !queue.isEmpty && asked.count < maxNodes && ContinuousClock.now < deadline {
            var cookies: [UInt64] = []
            var err = ct_error()
            for node in queue where !asked.contains(node) && asked.count < maxNodes {
                asked.insert(node)
                let c = token()
                dhtReplies[c] = DHTReplyBuilder(node: node)
                if let e = TorrentEngineError.check(ct_dht_direct_get_peers(session.raw, node.host, node.port, hex, c, &err), err) {
                    dhtReplies[c] = nil
                    throw e
                }
                cookies.append(c)
            }
            queue = []
            while ContinuousClock.now < deadline && cookies.contains(where: { dhtReplies[$0]?.complete != true }) {
                try await Task.sleep(for: .milliseconds(50))
            }
            for c in cookies {
                guard let b = dhtReplies.removeValue(forKey: c) else { continue }
                results.append(b.reply)
                queue += b.closer.map(\.endpoint).filter { !asked.contains($0) }
            }
        }
        return results
    }

    static func parseEndpoint(_ s: String) -> PeerEndpoint? {
        HostPort.parse(s).map { PeerEndpoint(host: $0.host, port: $0.port) }
    }

    /// The v1 info-hash (lowercase hex) a source names, when it can be known before adding.
    static func infoHash(of source: TorrentSource) -> String? {
        switch source {
        case .infoHash(let h): return h.lowercased()
        case .torrentFile: return nil
        case .magnet(let uri): return (try? TorrentSource.btih(uri)) ?? nil
        }
    }
}

// MARK: - Per-torrent and per-stream state (touched only on the engine actor)

final class OpenTorrent {
    let id: UInt64
    let infoHash: String
    var metadata: TorrentMetadata?
    var failure: TorrentEngineError?
    var users = 0
    var streams = Set<UInt64>()
    /// Verified pieces held in memory and not yet consumed.
    var ready = Set<Int>()
    /// Pieces handed to a stream and dropped from memory.
    var released = Set<Int>()
    var connected = Set<PeerEndpoint>()
    var metadataWaiters: [UInt64: CheckedContinuation<Void, Error>] = [:]
    var pieceWaiters: [Int: [UInt64: CheckedContinuation<Void, Error>]] = [:]
    init(id: UInt64, infoHash: String) { self.id = id; self.infoHash = infoHash }
}

final class StreamState {
    let id: UInt64
    let torrent: OpenTorrent
    let fileIndex: Int?
    let offset: Int64
    let length: Int64?
    var queue: [TorrentStreamEvent] = []
    var plan: PiecePlan?
    var readAhead = 2
    var deadlined = Set<Int>()
    var buffer = Data()
    var bufferPos = 0
    var sawDHT = false

    init(id: UInt64, torrent: OpenTorrent, fileIndex: Int?, offset: Int64, length: Int64?) {
        self.id = id
        self.torrent = torrent
        self.fileIndex = fileIndex
        self.offset = offset
        self.length = length
    }

    func takeChunk(max: Int) -> Data? {
        guard bufferPos < buffer.count else { return nil }
        let end = Swift.min(buffer.count, bufferPos + max)
        let chunk = buffer.subdata(in: (buffer.startIndex + bufferPos)..<(buffer.startIndex + end))
        bufferPos = end
        if bufferPos == buffer.count { buffer = Data(); bufferPos = 0 }
        return chunk
    }
}

/// The unfolding closure is only ever called by one consumer at a time, so the iterator is never
/// touched concurrently.
final class EventIterator: @unchecked Sendable {
    var iterator: AsyncThrowingStream<TorrentStreamEvent, Error>.Iterator
    init(_ iterator: AsyncThrowingStream<TorrentStreamEvent, Error>.Iterator) { self.iterator = iterator }
}

/// Ties a stream's lifetime to its iterator: dropping the stream ends it in the engine.
final class StreamHandle: @unchecked Sendable {
    let engine: TorrentEngine
    let id: UInt64
    init(engine: TorrentEngine, id: UInt64) { self.engine = engine; self.id = id }
    func next() async throws -> TorrentStreamEvent? { try await engine.nextEvent(id) }
    deinit { Task { [engine, id] in await engine.endStream(id) } }
}

struct DHTReplyBuilder {
    let node: PeerEndpoint
    var nodeID: [UInt8] = []
    var answered = false
    var complete = false
    var expectedPeers = 0
    var peers: [PeerEndpoint] = []
    var closer: [(id: [UInt8], endpoint: PeerEndpoint)] = []

    init(node: PeerEndpoint) { self.node = node }

    mutating func add(_ a: EngineAlert) {
        switch Int(a.kind) {
        case Int(CT_ALERT_DHT_NODE_TIMEOUT): complete = true
        case Int(CT_ALERT_DHT_NODE_REPLY):
            answered = a.errorCode == 0
            nodeID = a.nodeID
            expectedPeers = Int(a.count)
            complete = true
        case Int(CT_ALERT_DHT_NODE_PEER): peers.append(PeerEndpoint(host: a.address2, port: a.port2))
        case Int(CT_ALERT_DHT_NODE_CONTACT): closer.append((a.nodeID, PeerEndpoint(host: a.address2, port: a.port2)))
        default: break
        }
    }

    var reply: DHTNodeReply {
        DHTNodeReply(node: node, nodeID: nodeID, answered: answered, peers: peers, closerNodes: closer)
    }
}
