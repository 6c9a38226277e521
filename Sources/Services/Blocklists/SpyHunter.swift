import Foundation
import NetBasics

/// What the engine's DHT offers the spy hunt. libtorrent: `dht_get_peers` (the walk) and
/// `dht_direct_request` with a `get_peers` query (one node). Implementations return every reply they
/// received, with the replying node's address and ID, so the hunt can judge nodes one by one.
public protocol DHTPeerLookup: Sendable {
    /// An iterative get_peers lookup of `infohash` over the DHT: every reply received, in arrival order.
    func getPeers(infohash: [UInt8]) async throws -> [DHTResponse]
    /// One get_peers query sent to one node; nil when it did not answer in time.
    func getPeers(infohash: [UInt8], from node: IPEndpoint) async throws -> DHTResponse?
}

/// The narrower primitive an engine may offer instead: single queries plus a few nodes to start
/// from (libtorrent: `dht_direct_request` and `dht_live_nodes`). `IterativeDHTLookup` builds the
/// walk on top of it.
public protocol DHTDirectQuerying: Sendable {
    func getPeers(infohash: [UInt8], from node: IPEndpoint) async throws -> DHTResponse?
    func startingNodes() async throws -> [IPEndpoint]
}

/// A BEP 5 get_peers traversal over `DHTDirectQuerying`: query the `alpha` closest unqueried nodes
/// (XOR distance to the target) each round until the `k` closest known nodes have all answered or
/// the query budget is spent. Records every reply, as the spy hunt needs them all.
public struct IterativeDHTLookup<Querier: DHTDirectQuerying>: DHTPeerLookup {
    public let querier: Querier
    public var alpha = 3
    public var k = 8
    public var maxQueries = 64

    public init(querier: Querier) { self.querier = querier }

    public func getPeers(infohash: [UInt8], from node: IPEndpoint) async throws -> DHTResponse? {
        try await querier.getPeers(infohash: infohash, from: node)
    }

    public func getPeers(infohash target: [UInt8]) async throws -> [DHTResponse] {
        // Known nodes and their IDs (empty until a node answers or is named in a `nodes` list).
        var known: [IPEndpoint: [UInt8]] = [:]
        for ep in try await querier.startingNodes() { known[ep] = [] }
        var queried = Set<IPEndpoint>(), answered = Set<IPEndpoint>()
        var replies: [DHTResponse] = []
        // Starting nodes of unknown ID rank last, so they are queried only until IDs are known.
        func distanceKey(_ id: [UInt8]) -> [UInt8] {
            id.isEmpty ? [UInt8](repeating: 0xFF, count: target.count) : zip(id, target).map { $0 ^ $1 }
        }
        while queried.count < maxQueries {
            let ranked = known.map { (endpoint: $0.key, id: $0.value) }
                .sorted { distanceKey($0.id).lexicographicallyPrecedes(distanceKey($1.id)) }
            let topK = ranked.filter { !$0.id.isEmpty }.prefix(k)
            if topK.count == k && topK.allSatisfy({ answered.contains($0.endpoint) }) { break }
            let batch = ranked.filter { !queried.contains($0.endpoint) }.prefix(min(alpha, maxQueries - queried.count))
            if batch.isEmpty { break }
            for c in batch { queried.insert(c.endpoint) }
            let results = await withTaskGroup(of: DHTResponse?.self) { group in
                for c in batch {
                    group.addTask { try? await querier.getPeers(infohash: target, from: c.endpoint) }
                }
                var out: [DHTResponse] = []
                for await r in group { if let r { out.append(r) } }
                return out
            }
            try Task.checkCancellation()
            for r in results {
                replies.append(r)
                answered.insert(r.node)
                known[r.node] = r.nodeID
                for n in r.nodes where known[n.endpoint] == nil { known[n.endpoint] = n.id }
            }
        }
        return replies
    }
}

/// The outcome of one hunt, for the engine to act on.
public struct HuntResult: Sendable {
    public var fakeInfohash: [UInt8]
    public var detections: [Detection]
    /// Peers for the real infohash that survived filtering: the engine connects to these.
    public var peers: [IPEndpoint]
    /// Closest nodes that passed the direct probe and were asked for the real hash.
    public var trustedNodes: [IPEndpoint]
    public var droppedLeading: Int
    public var droppedBlocked: Int
}

/// torrent-live's find-spies procedure, hiding what is really asked for in its first step:
/// 1. walk the DHT for a fake infohash (real prefix, random tail) and convict nodes that answer
///    values, sybil IDs and duplicate IPs near the hash;
/// 2. probe each remaining close node directly with the fake hash (values ⇒ spy);
/// 3. ask only the clean closest nodes, one at a time, for the real hash, dropping the head of each
///    value list and blocked peers; flag IPs with many ports.
public struct SpyHunter: Sendable {
    public var detector: SpyDetector

    public init(detector: SpyDetector = SpyDetector()) { self.detector = detector }

    /// `verdicts` receives each phase's detections as soon as they are made (the fake walk's, each
    /// probe's, the many-ports check's), so a hunt cut short still leaves what it proved; the
    /// result lists them all again.
    public func hunt(infohash: [UInt8], torrent: TorrentTag, lookup: some DHTPeerLookup,
                     isBlocked: @escaping @Sendable (IPAddress) -> Bool,
                     now: @Sendable () -> Date = { Date() },
                     verdicts: @Sendable ([Detection]) async throws -> Void = { _ in }) async throws -> HuntResult {
        var rng = SystemRandomNumberGenerator()
        let fake = detector.fakeInfohash(for: infohash, using: &rng)
        let walk = try await lookup.getPeers(infohash: fake)
        let report = detector.analyzeFakeWalk(fakeInfohash: fake, responses: walk, torrent: torrent, now: now())
        var detections = report.detections
        var convicted = Set(detections.map(\.address))
        if !report.detections.isEmpty { try await verdicts(report.detections) }

        var trusted: [IPEndpoint] = []
        for suspect in report.suspects where !isBlocked(suspect.endpoint.address) {
            guard let reply = try await Self.ask(lookup, fake, suspect.endpoint) else { continue }
            let verdict = detector.judgeProbe(fakeInfohash: fake, response: reply, torrent: torrent, now: now())
            if verdict.isEmpty {
                let bits = SpyDetector.commonPrefixBits(suspect.id, fake)
                if detector.config.closestPrefix.contains(bits) { trusted.append(suspect.endpoint) }
            } else {
                detections += verdict
                verdict.forEach { convicted.insert($0.address) }
                try await verdicts(verdict)
            }
        }
        trusted.shuffle(using: &rng)

        let convictedSoFar = convicted
        let blocked: @Sendable (IPAddress) -> Bool = { convictedSoFar.contains($0) || isBlocked($0) }
        var peers: [IPEndpoint] = [], droppedLeading = 0, droppedBlocked = 0
        func take(_ reply: DHTResponse) {
            guard !blocked(reply.node.address) else { return }
            let f = detector.filterValues(reply.values, isBlocked: blocked)
            peers += f.kept
            droppedLeading += f.droppedLeading.count
            droppedBlocked += f.droppedBlocked.count
        }
        if trusted.isEmpty {
            // No clean close node (a small or young DHT): fall back to a walk for the real hash,
            // filtered alike. It is walked here, one query at a time, so that no node convicted a
            // moment ago (or blocked) is ever sent the real hash, whatever `lookup` checks itself.
            // It starts from the nodes the fake walk met: the fake hash shares the real one's
            // prefix, so they are already close to it.
            var start: [IPEndpoint] = []
            for reply in walk {
                for node in [reply.node] + reply.nodes.map(\.endpoint) where !blocked(node.address) && !start.contains(node) {
                    start.append(node)
                }
            }
            let fallback = IterativeDHTLookup(querier: AvoidingQuerier(lookup: lookup, start: start, avoid: blocked))
            for reply in try await fallback.getPeers(infohash: infohash) { take(reply) }
        } else {
            for node in trusted where !blocked(node.address) {
                if let reply = try await Self.ask(lookup, infohash, node) { take(reply) }
            }
        }
        var seen = Set<IPEndpoint>()
        peers = peers.filter { seen.insert($0).inserted }
        let manyPorts = detector.manyPorts(peers, torrent: torrent, now: now())
        let multiPort = Set(manyPorts.map(\.address))
        detections += manyPorts
        if !manyPorts.isEmpty { try await verdicts(manyPorts) }
        peers = peers.filter { !multiPort.contains($0.address) }
        peers.shuffle(using: &rng)
        return HuntResult(fakeInfohash: fake, detections: detections, peers: peers, trustedNodes: trusted,
                          droppedLeading: droppedLeading, droppedBlocked: droppedBlocked)
    }

    /// Single queries through `lookup` that are never sent to an avoided node (it counts as silent).
    struct AvoidingQuerier<Lookup: DHTPeerLookup>: DHTDirectQuerying {
        let lookup: Lookup
        let start: [IPEndpoint]
        let avoid: @Sendable (IPAddress) -> Bool
        func startingNodes() async throws -> [IPEndpoint] { start }
        func getPeers(infohash: [UInt8], from node: IPEndpoint) async throws -> DHTResponse? {
            guard !avoid(node.address) else { return nil }
            return try await SpyHunter.ask(lookup, infohash, node)
        }
    }

    /// One direct query; a node that errors is treated like one that did not answer (one bad node
    /// must not abort the hunt), but cancellation still ends it.
    static func ask(_ lookup: some DHTPeerLookup, _ hash: [UInt8], _ node: IPEndpoint) async throws -> DHTResponse? {
        do {
            return try await lookup.getPeers(infohash: hash, from: node)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            return nil
        }
    }
}
