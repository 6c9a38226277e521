import Foundation
import Logging
import NetBasics

/// The one owner of the libtorrent session: an actor that drives a `PieceScheduler` per torrent
/// and performs its actions through `LibtorrentSession` (the only caller of the C shim).
///
/// Streams pull: each `next()` of a stream asks this actor for the next event; the scheduler keeps
/// piece deadlines on a small window ahead of each consumer, so a slow consumer slows libtorrent
/// (the window does not move) and memory stays within `memoryBudget`. Pieces live only in the
/// shim's in-memory store and leave it once every stream that needs them has read them (pieces
/// nobody needs stay only while the budget has room, for late readers, oldest out first); a torrent
/// is removed when its last stream ends, so nothing is seeded afterwards.
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

    let session: LibtorrentSession
    private let pump: AlertPump
    private let peerEventSink: AsyncStream<PeerEvent>.Continuation
    private let logger: Logger
    private(set) var stopped = false

    private var torrents: [UInt64: OpenTorrent] = [:]
    private var torrentsByHash: [String: UInt64] = [:]
    private var streams: [UInt64: StreamState] = [:]
    private var nextToken: UInt64 = 1
    private var counters: [String: PeerCounters] = [:]
    var dhtNodes: [PeerEndpoint] = []
    var dhtReplies: [UInt64: DHTReplyBuilder] = [:]
    public private(set) var listenPort: Int = 0

    public init(settings: TorrentEngineSettings = TorrentEngineSettings(),
                logger: Logger = Logger(label: "peersm.torrent")) throws {
        self.settings = settings
        self.logger = logger
        try FileManager.default.createDirectory(atPath: settings.dataDirectory, withIntermediateDirectories: true)
        let session = try LibtorrentSession(settings)
        self.session = session
        if settings.dhtAllowLocalNodes {
            for name in ["dht_restrict_routing_ips", "dht_restrict_search_ips"] { try? session.setBool(name, false) }
        }
        var eventsCont: AsyncStream<PeerEvent>.Continuation!
        peerEvents = AsyncStream(bufferingPolicy: .bufferingNewest(4096)) { eventsCont = $0 }
        peerEventSink = eventsCont
        let (alerts, alertSink) = AsyncStream<[LibtorrentAlert]>.makeStream()
        pump = AlertPump(session: session, continuation: alertSink)
        let boundPort = session.listenPort
        listenPort = boundPort
        do {
            if !Self.policyRanges(settings).isEmpty {
                try session.setIPFilter(Self.policyRanges(settings))
            }
            for node in settings.dhtNodes {
                guard let ep = Self.parseEndpoint(node) else { throw TorrentEngineError.invalidArgument("DHT node \(node)") }
                try session.dhtAddNode(ep)
                dhtNodes.append(ep)
            }
        } catch {
            session.destroy()
            throw error
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
            session.destroy()
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
        session.destroy()
        peerEventSink.finish()
    }

    // MARK: - Torrents

    /// Adds (or finds) a torrent and waits for its metadata. The torrent stays until `close`.
    public func open(_ hashName: String, peers: [PeerEndpoint] = []) async throws -> (TorrentID, TorrentMetadata) {
        try await open(source: try TorrentSource(hashName: hashName), peers: peers)
    }

    /// Adds a torrent from .torrent bytes (kept until `close`).
    public func open(torrentFile bytes: [UInt8], peers: [PeerEndpoint] = []) async throws -> (TorrentID, TorrentMetadata) {
        try await open(source: .torrentFile(bytes), peers: peers)
    }

    private func open(source: TorrentSource, peers: [PeerEndpoint]) async throws -> (TorrentID, TorrentMetadata) {
        let t = try add(source, peers: peers)
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
        try session.connectPeer(t.id, peer)
    }

    public var openTorrents: [TorrentID] { torrents.keys.sorted().map(TorrentID.init(raw:)) }

    // MARK: - Streaming

    /// Streams `length` bytes (to the end if nil) from `offset` of one file of the torrent named by
    /// `hashName` (a magnet link or 40-hex info-hash); the largest file unless `fileIndex` is given.
    /// Events: `.progress(.torrent)`, `.progress(.dhtReady)` (DHT only), `.progress(.start)`,
    /// `.ready(info)`, then `.data` chunks in order. Malformed input throws here; a range outside
    /// the file, a metadata timeout or removal of the torrent end the stream with an error.
    /// Cancelling the consuming task, or dropping the stream, stops the fetch. Several streams may
    /// read one torrent at once; each gets every byte of its own range.
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
        t.scheduler.addStream(id)
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
        while true {
            if !st.queue.isEmpty { return st.queue.removeFirst() }
            guard let plan = t.scheduler.plan(of: st.id) else {
                guard let md = t.metadata else {
                    try await waitMetadataOrProgress(t)
                    continue
                }
                try begin(st, md)
                continue
            }
            if let chunk = st.takeChunk(max: settings.chunkSize) { return .data(chunk) }
            guard let piece = t.scheduler.nextPiece(of: st.id) else { return nil }
            try await waitPiece(t, piece)
            try Task.checkCancellation()
            let data = try readPiece(t, piece)
            perform(t, t.scheduler.consumed(st.id, piece: piece))
            let slice = plan.slice(of: piece)
            st.buffer = slice.count == data.count ? data : data.subdata(in: slice)
            st.bufferPos = 0
        }
    }

    /// Chooses the file, checks the range and hands the piece plan to the scheduler.
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
        let plan = PiecePlan(pieceLength: Int64(md.pieceLength), totalSize: md.totalSize, start: start, end: start + length)
        let readAhead = PieceScheduler.readAhead(pieceLength: md.pieceLength, memoryBudget: settings.memoryBudget,
                                                 maxPieces: settings.maxReadAheadPieces,
                                                 streams: torrents.values.reduce(0) { $0 + $1.scheduler.plannedStreams })
        do {
            perform(st.torrent, try st.torrent.scheduler.begin(st.id, plan: plan, readAhead: readAhead))
        } catch .pieceAlreadyRelayed(let p) {
            throw TorrentEngineError.pieceAlreadyRelayed(infoHash: md.infoHash, piece: p)
        }
        rebalanceRetention()
        st.queue.append(.progress(.start))
        st.queue.append(.ready(TorrentStreamInfo(
            torrent: TorrentID(raw: st.torrent.id), infoHash: md.infoHash, fileIndex: file.index,
            fileName: file.path, fileSize: file.size, mimeType: file.mimeType, offset: st.offset, length: length)))
    }

    /// Carries out the scheduler's decisions on the session (nothing once the torrent has gone).
    private func perform(_ t: OpenTorrent, _ actions: [PieceScheduler.Action]) {
        guard torrents[t.id] != nil, t.failure == nil else { return }
        for action in actions {
            switch action {
            case .setDeadline(let p, let ms): session.setDeadline(t.id, piece: p, milliseconds: ms)
            case .clearDeadline(let p): session.clearDeadline(t.id, piece: p)
            case .release(let p): session.releasePiece(t.id, piece: p)
            }
        }
    }

    private func readPiece(_ t: OpenTorrent, _ piece: Int) throws -> Data {
        let size = t.metadata.map { Int(min(Int64($0.pieceLength), $0.totalSize - Int64(piece) * Int64($0.pieceLength))) } ?? 0
        return try session.readPiece(t.id, piece: piece, size: size)
    }

    /// Ends a stream: deadlines and pieces only it needed go, and the torrent is removed when
    /// nothing else holds it (no seeding after delivery).
    fileprivate func endStream(_ sid: UInt64) {
        guard let st = streams.removeValue(forKey: sid) else { return }
        let t = st.torrent
        t.streams.remove(sid)
        perform(t, t.scheduler.removeStream(sid))
        release(t)
        rebalanceRetention()
    }

    /// What the streams' read-ahead windows leave of the memory budget is shared among the open
    /// torrents as room for pieces no stream needs any more, so that a requester who starts
    /// reading a moment after another (two peers asking for one file) still finds the first
    /// pieces in memory. Never more than the budget: past it libtorrent would stop writing while
    /// every stream waits.
    private func rebalanceRetention() {
        let open = torrents.values.filter { $0.metadata != nil && $0.failure == nil }
        guard !open.isEmpty else { return }
        let windows = open.reduce(Int64(0)) { $0 + $1.scheduler.windowBytes }
        let share = max(0, Int64(settings.memoryBudget) - windows) / Int64(open.count)
        for t in open {
            let pieceLength = Int64(max(1, t.metadata?.pieceLength ?? 1))
            perform(t, t.scheduler.setRetentionLimit(Int(share / pieceLength)))
        }
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
        let id = try session.add(source, keepTrackers: settings.useTrackers)
        let (hash, hasMetadata) = session.infoHash(id)
        let t = OpenTorrent(id: id, infoHash: hash)
        torrents[id] = t
        torrentsByHash[hash] = id
        // Every piece starts at priority 0 (the shim adds torrents that way), so nothing is fetched
        // until a stream sets deadlines. Re-zeroing when the metadata arrives would be worse than
        // redundant: it makes libtorrent send NOT_INTERESTED to peers that became interesting,
        // which ends their request-queue slow start for good (see add() in the shim).
        if hasMetadata { t.metadata = session.metadata(id) }
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
                try? session.dhtAddNode(PeerEndpoint(host: e.host, port: e.port))
            }
        }
        if dropped > 0 {
            logger.debug("ignored \(dropped) peer(s)/DHT node(s) named in a magnet link (magnetPeers: \(settings.magnetPeers.rawValue))")
        }
        return allowed
    }

    private func connect(_ t: OpenTorrent, _ peers: [PeerEndpoint]) {
        for p in peers where !t.connected.contains(p) {
            if (try? session.connectPeer(t.id, p)) != nil { t.connected.insert(p) }
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

    private func lookupPeers(_ hash: String) { session.dhtGetPeers(hash) }

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
        if t.scheduler.isReady(piece) { return }
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
        if t.scheduler.isReady(piece) { c.resume(); return }
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

    private func release(_ t: OpenTorrent) {
        t.users -= 1
        if t.users <= 0 && t.streams.isEmpty { drop(t, because: .torrentRemoved(infoHash: t.infoHash)) }
    }

    /// Removes the torrent from libtorrent (pieces leave memory) and fails whoever waits on it.
    private func drop(_ t: OpenTorrent, because error: TorrentEngineError) {
        guard torrents.removeValue(forKey: t.id) != nil else { return }
        torrentsByHash.removeValue(forKey: t.infoHash)
        session.remove(t.id)
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

    func token() -> UInt64 { defer { nextToken += 1 }; return nextToken }

    // MARK: - Alerts

    private func handle(_ batch: [LibtorrentAlert]) {
        // Batches queued before shutdown() may still arrive; the session they refer to is gone.
        guard !stopped else { return }
        for a in batch { handle(a) }
    }

    private func handle(_ alert: LibtorrentAlert) {
        switch alert {
        case .metadataReceived(let id):
            guard let t = torrents[id], t.metadata == nil else { return }
            t.metadata = session.metadata(id)
            wakeMetadataWaiters(t)
        case .pieceFinished(let id, let piece):
            guard let t = torrents[id] else { return }
            perform(t, t.scheduler.pieceFinished(piece))
            if let ws = t.pieceWaiters.removeValue(forKey: piece) { for c in ws.values { c.resume() } }
        case .torrentFailed(let id, let message):
            guard let t = torrents[id] else { return }
            // The session-local id, never the info-hash: this level is on by default.
            logger.warning("torrent error; dropping the torrent", metadata: ["torrent": "#\(t.id)", "error": "\(message)"])
            drop(t, because: .torrentFailed(infoHash: t.infoHash, reason: message))
        case .metadataFailed(let message):
            logger.info("metadata from a peer rejected: \(message)")
        case .peer(let kind, let p):
            switch kind {
            case .connected:
                counters[p.address, default: PeerCounters()].connected += 1
                emit(.connected, p)
            case .disconnected: emit(.disconnected, p)
            case .connectFailed:
                counters[p.address, default: PeerCounters()].connectFailed += 1
                emit(.connectFailed, p)
            case .blocked(let reason):
                counters[p.address, default: PeerCounters()].blocked += 1
                emit(.blocked, p, detail: reason == 0 ? "ip_filter" : "rule \(reason)")
            case .error: emit(.error, p)
            case .snubbed, .blockTimeout: emit(.requestTimeout, p)
            case .banned: emit(.badPiece, p)
            }
        case .hashFailed(let p, let piece):
            emit(.badPiece, p, detail: "piece \(piece) failed its hash check")
        case .listenSucceeded:
            listenPort = session.listenPort
        case .dhtPeer(let infoHash, let peer):
            let hex = Hex.encode(infoHash)
            guard let id = torrentsByHash[hex], let t = torrents[id], t.metadata == nil || !t.streams.isEmpty else { return }
            connect(t, [peer])
            for s in t.streams.compactMap({ streams[$0] }) where !s.sawDHT {
                s.sawDHT = true
                s.queue.append(.progress(.dhtReady))
                wakeMetadataWaiters(t)
            }
        case .alertsDropped:
            // A lost piece_finished leaves its stream waiting until the stall timeout: say so, since
            // nothing else would show why.
            logger.warning("libtorrent's alert queue overflowed and dropped alerts; a stream may stall")
        case .dhtNodeReply(let cookie, _, _), .dhtNodePeer(let cookie, _), .dhtNodeContact(let cookie, _, _),
             .dhtNodeTimeout(let cookie):
            dhtReplies[cookie]?.add(alert)
        case .other:
            break
        }
    }

    private func wakeMetadataWaiters(_ t: OpenTorrent) {
        for c in t.metadataWaiters.values { c.resume() }
        t.metadataWaiters.removeAll()
    }

    private func emit(_ kind: PeerEvent.Kind, _ p: LibtorrentAlert.Peer, detail: String? = nil) {
        peerEventSink.yield(PeerEvent(kind: kind, address: p.address, port: p.port,
                                      torrent: p.torrent.map(TorrentID.init(raw:)),
                                      infoHash: p.torrent.flatMap { torrents[$0]?.infoHash },
                                      detail: detail ?? p.message))
    }

    // MARK: - Stats, IP filter, DHT

    public func stats(_ id: TorrentID) throws -> TorrentStats { try session.torrentStats(id.raw) }

    public func peers(_ id: TorrentID) throws -> [PeerStats] { try session.peers(id.raw) }

    public func sessionStats() throws -> SessionStats {
        guard !stopped else { throw TorrentEngineError.engineStopped }
        return try session.sessionStats()
    }

    /// Connection counters per peer IP address since the engine started.
    public func peerCounters(_ address: String) -> PeerCounters { counters[address] ?? PeerCounters() }

    /// Replaces the whole IP filter (IPv4 and IPv6 first–last ranges are blocked). Under
    /// `magnetPeers = .publicOnly` the non-public ranges stay blocked as well.
    /// Note: libtorrent 2.0.8 does not apply the filter to DHT traffic (fixed in 2.0.11).
    public func replaceIPFilter(_ ranges: [IPRange]) throws {
        guard !stopped else { throw TorrentEngineError.engineStopped }
        try session.setIPFilter(ranges + Self.policyRanges(settings))
    }

    private static func policyRanges(_ settings: TorrentEngineSettings) -> [IPRange] {
        settings.magnetPeers == .publicOnly ? AddressClass.nonPublicRanges : []
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
    /// Which pieces to fetch, which are readable, which may leave memory: the streams' shared policy.
    var scheduler = PieceScheduler()
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
