import Foundation
import Logging
// Re-exported: the blocklist API is written in NetBasics' `IPAddress`, `IPRange` and `IPRangeSet`,
// and its clients (facilitatord's blocklist commands) name them through `import Blocklists`.
import NetBasics
import TorrentEngine

// Joins the blocklists to the torrent engine: the engine is an `IPFilterSink` (the enforced union
// becomes libtorrent's ip_filter) and a `DHTPeerLookup` (the spy hunt walks the DHT through the
// engine's read-only node), and its peer events flow back (blocked peers → metric, request timeouts
// and bad pieces → detections).
//
// Names: the engine's `PeerEndpoint` (host text and port) and `PeerEvent` (what libtorrent saw) are
// used as they are; ours are `IPEndpoint` (a parsed address) and `PeerMisbehaviour` (what the
// tracker counts). Addresses and ranges are NetBasics' on both sides.
//
// libtorrent 2.0.8 does not apply the ip_filter to DHT traffic (fixed in 2.0.11): a blocked DHT node
// is still queried, and its replies still arrive. So DHT-level spies are kept out here, in our code:
// `GuardedDHTLookup` never sends a query to a blocked node and drops blocked nodes named in replies.
// Lookups libtorrent runs by itself (a magnet's get_peers while its DHT is on) cannot be guarded that
// way; see `BlocklistService.attach(_:)` and the notes on the engine's settings there.

// MARK: - ip_filter

extension TorrentEngine: IPFilterSink {
    /// Replaces libtorrent's ip_filter with `ranges`. Running torrents keep running; libtorrent
    /// closes existing connections to peers the new filter blocks.
    public func replaceIPFilter(_ ranges: IPRangeSet) async throws {
        try replaceIPFilter(ranges.ranges)
    }
}

// MARK: - DHT lookups

extension TorrentEngine: DHTPeerLookup {
    /// The engine's own walk for `infohash`: starts at the DHT nodes added to the engine and follows
    /// every closer node named in replies. It queries whatever it is told, blocked nodes included;
    /// the spy hunt should go through `GuardedDHTLookup`.
    public func getPeers(infohash: [UInt8]) async throws -> [DHTResponse] {
        try await dhtGetPeers(infoHash: try Self.hex(infohash)).compactMap(DHTResponse.init(engineReply:))
    }

    /// One get_peers query to `node` (dht_direct_request); nil when it did not answer within 5 s.
    public func getPeers(infohash: [UInt8], from node: IPEndpoint) async throws -> DHTResponse? {
        try await getPeers(infohash: infohash, from: node, timeout: .seconds(5))
    }

    public func getPeers(infohash: [UInt8], from node: IPEndpoint, timeout: Duration) async throws -> DHTResponse? {
        let replies = try await dhtGetPeers(infoHash: try Self.hex(infohash), nodes: [PeerEndpoint(node)],
                                            maxNodes: 1, timeout: timeout)
        return replies.lazy.compactMap(DHTResponse.init(engineReply:)).first
    }

    static func hex(_ infohash: [UInt8]) throws -> String {
        guard infohash.count == 20 else {
            throw TorrentEngineError.invalidHashName("a v1 info-hash is 20 bytes, got \(infohash.count)")
        }
        return Hex.encode(infohash)
    }
}

extension PeerEndpoint {
    /// The engine's endpoint for one of ours (host text: dotted IPv4 or RFC 5952 IPv6).
    public init(_ endpoint: IPEndpoint) { self.init(host: endpoint.address.description, port: endpoint.port) }
}

extension IPEndpoint {
    /// Ours from the engine's; nil when the host is not an IP literal (libtorrent reports addresses only).
    public init?(_ endpoint: PeerEndpoint) {
        guard let address = IPAddress(endpoint.host) else { return nil }
        self.init(address: address, port: endpoint.port)
    }
}

extension DHTResponse {
    /// A reply as the hunt sees it; nil when the node did not answer (timeouts are not replies).
    init?(engineReply r: DHTNodeReply) {
        guard r.answered, r.nodeID.count == 20, let node = IPEndpoint(r.node) else { return nil }
        self.init(node: node, nodeID: r.nodeID,
                  values: r.peers.compactMap(IPEndpoint.init),
                  nodes: r.closerNodes.compactMap { n in IPEndpoint(n.endpoint).map { DHTNode(id: n.id, endpoint: $0) } })
    }
}

/// The spy hunt's view of the engine's DHT, with the blocklist applied where libtorrent 2.0.8 does
/// not: a blocked node is never sent a query (not even the fake hash), and blocked nodes named in
/// replies are left out, so the walk does not continue through them. The walk itself is
/// `IterativeDHTLookup` (BEP 5 traversal by XOR distance) over single direct queries.
///
/// With `protecting` set to the real info-hash, it also never sends that hash to a node whose reply
/// to another hash (the fake one) already convicts it under the detector's rules: the hunt records
/// its detections only when it ends, and its fallback walk (no clean close node) would otherwise
/// ask the spy it has just caught for the very hash the fake one was made to hide.
public struct GuardedDHTLookup: DHTPeerLookup, DHTDirectQuerying {
    public let engine: TorrentEngine
    /// Where each walk starts. The engine does not expose its routing table, so the daemon passes
    /// the nodes it configured (or a snapshot of live ones).
    public let bootstrap: [IPEndpoint]
    /// How long one direct query may take.
    public var queryTimeout: Duration
    public var maxQueries: Int
    private let isBlocked: @Sendable (IPAddress) async -> Bool
    private let protected: [UInt8]?
    private let detector: SpyDetector
    private let caught = CaughtNodes()

    /// Blocked means: in the service's enforced union right now (static lists and unexpired spies),
    /// re-read for every query, so a spy recorded meanwhile is avoided from then on. A failing store
    /// counts as blocked: better to skip a node than to leak a hash to a spy.
    public init(engine: TorrentEngine, bootstrap: [IPEndpoint], service: BlocklistService,
                protecting realInfohash: [UInt8]? = nil, queryTimeout: Duration = .seconds(5), maxQueries: Int = 64) {
        self.init(engine: engine, bootstrap: bootstrap, protecting: realInfohash, detector: service.hunter.detector,
                  queryTimeout: queryTimeout, maxQueries: maxQueries) { address in
            (try? await service.isBlocked(address)) ?? true
        }
    }

    public init(engine: TorrentEngine, bootstrap: [IPEndpoint], protecting realInfohash: [UInt8]? = nil,
                detector: SpyDetector = SpyDetector(), queryTimeout: Duration = .seconds(5), maxQueries: Int = 64,
                isBlocked: @escaping @Sendable (IPAddress) async -> Bool) {
        self.engine = engine
        self.bootstrap = bootstrap
        self.protected = realInfohash
        self.detector = detector
        self.queryTimeout = queryTimeout
        self.maxQueries = maxQueries
        self.isBlocked = isBlocked
    }

    public func startingNodes() async throws -> [IPEndpoint] {
        var out: [IPEndpoint] = []
        for node in bootstrap where await !isBlocked(node.address) { out.append(node) }
        return out
    }

    public func getPeers(infohash: [UInt8], from node: IPEndpoint) async throws -> DHTResponse? {
        guard await !isBlocked(node.address) else { return nil }
        if let protected, infohash == protected, caught.contains(node.address) { return nil }
        guard var reply = try await engine.getPeers(infohash: infohash, from: node, timeout: queryTimeout) else { return nil }
        if let protected, infohash != protected {
            // The torrent tag and time do not matter here: only who is convicted.
            let verdict = detector.judgeProbe(fakeInfohash: infohash, response: reply, torrent: TorrentTag(hex: ""), now: Date())
            caught.insert(verdict.map(\.address))
        }
        var closer: [DHTNode] = []
        for n in reply.nodes where await !isBlocked(n.endpoint.address) { closer.append(n) }
        reply.nodes = closer
        return reply
    }

    public func getPeers(infohash: [UInt8]) async throws -> [DHTResponse] {
        var walk = IterativeDHTLookup(querier: self)
        walk.maxQueries = maxQueries
        return try await walk.getPeers(infohash: infohash)
    }
}

/// Addresses one guarded hunt has convicted so far (queries run concurrently).
private final class CaughtNodes: @unchecked Sendable {
    private let lock = NSLock()
    private var addresses = Set<IPAddress>()
    func insert(_ new: [IPAddress]) { lock.withLock { addresses.formUnion(new) } }
    func contains(_ a: IPAddress) -> Bool { lock.withLock { addresses.contains(a) } }
}

extension BlocklistService {
    /// The hunt as the daemon runs it: through `engine`'s read-only DHT node, starting at
    /// `bootstrap`, never querying blocked nodes and never sending the real hash to a node the fake
    /// walk convicted. Detections are recorded and pushed to every attached engine before this
    /// returns, so the fetch that follows already refuses them.
    public func hunt(infohash: [UInt8], through engine: TorrentEngine, bootstrap: [IPEndpoint]) async throws -> HuntResult {
        try await hunt(infohash: infohash,
                       lookup: GuardedDHTLookup(engine: engine, bootstrap: bootstrap, service: self, protecting: infohash))
    }
}

// MARK: - Peer events back to the service

extension BlocklistService {
    /// Puts `engine` under the blocklist until its peer-event stream ends (engine shutdown) or the
    /// returned task is cancelled: the engine gets the current union now and every change later,
    /// and its peer events come back here. A peer refused by the ip_filter counts in
    /// `peersm_blocklist_blocked_peers_total{reason}`; request timeouts and bad pieces go to the
    /// misbehaviour tracker, which may record (and so block) the peer.
    ///
    /// The engine's `peerEvents` has one consumer, and this is it: pass `forward` to see the
    /// events too. Events are attributed to the info-hash they carry; `infohash` is asked only for
    /// events without one (the torrent had already left the session). Events attributable to no
    /// torrent are not tracked for misbehaviour.
    ///
    /// The engine should have its own DHT off (`dhtEnabled = false`) and get peers from
    /// `hunt(infohash:lookup:)` run on a second, torrent-less engine: libtorrent 2.0.8 does not
    /// filter DHT traffic, so a magnet's own get_peers would ask blocked nodes too.
    public func attach(_ engine: TorrentEngine,
                       infohash: @escaping @Sendable (TorrentID) async -> [UInt8]? = { _ in nil },
                       forward: (@Sendable (PeerEvent) async -> Void)? = nil) async throws -> Task<Void, Never> {
        try await register(engine)
        var logger = Logger(label: "peersm.blocklists.engine")
        logger.logLevel = self.logger.logLevel
        return Task { [weak self] in
            for await event in engine.peerEvents {
                guard let self else { return }
                await self.handle(event, infohash: infohash, logger: logger)
                await forward?(event)
            }
            await self?.unregister(engine)
        }
    }

    /// 40 hex digits → 20 bytes; nil for anything else (a v2-only hash is not tracked).
    static func infohashBytes(_ hex: String) -> [UInt8]? {
        hex.utf8.count == 40 ? Hex.decode(hex) : nil
    }

    private func handle(_ event: PeerEvent, infohash: @Sendable (TorrentID) async -> [UInt8]?,
                        logger: Logger) async {
        let kind: PeerMisbehaviour
        switch event.kind {
        case .blocked:
            guard let address = IPAddress(event.address) else { return }
            peerBlocked(address, reason: event.detail.isEmpty ? "ip_filter" : event.detail)
            return
        case .requestTimeout: kind = .requestTimeout
        // badPiece without an address is the torrent-level hash failure (nobody to blame); with one,
        // it is libtorrent's peer_ban_alert: bad data pinned on that peer.
        case .badPiece: kind = .bannedForBadData
        default: return
        }
        guard let address = IPAddress(event.address) else { return }
        var hash = event.infoHash.flatMap(Self.infohashBytes)
        if hash == nil, let torrent = event.torrent { hash = await infohash(torrent) }
        guard let hash else { return }
        do {
            try await peerEvent(kind, from: IPEndpoint(address: address, port: event.port), infohash: hash)
        } catch {
            logger.error("could not record a peer event", metadata: ["event": "\(event)", "error": "\(error)"])
        }
    }
}
