import Foundation

// The read-only DHT: nodes for the routing table and the direct get_peers walk the spy hunt uses.
extension TorrentEngine {
    /// Adds a node to the read-only DHT's routing table (e.g. a local test node).
    public func addDHTNode(_ node: PeerEndpoint) throws {
        guard !stopped else { throw TorrentEngineError.engineStopped }
        try session.dhtAddNode(node)
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
            for node in queue where !asked.contains(node) && asked.count < maxNodes {
                asked.insert(node)
                let c = token()
                dhtReplies[c] = DHTReplyBuilder(node: node)
                do {
                    try session.dhtDirectGetPeers(node, infoHashHex: hex, cookie: c)
                } catch {
                    dhtReplies[c] = nil
                    throw error
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
}

/// Collects the alerts that answer one direct get_peers query.
struct DHTReplyBuilder {
    let node: PeerEndpoint
    var nodeID: [UInt8] = []
    var answered = false
    var complete = false
    var peers: [PeerEndpoint] = []
    var closer: [(id: [UInt8], endpoint: PeerEndpoint)] = []

    init(node: PeerEndpoint) { self.node = node }

    mutating func add(_ alert: LibtorrentAlert) {
        switch alert {
        case .dhtNodeTimeout: complete = true
        case .dhtNodeReply(_, let id, let ok):
            answered = ok
            nodeID = id
            complete = true
        case .dhtNodePeer(_, let peer): peers.append(peer)
        case .dhtNodeContact(_, let id, let node): closer.append((id, node))
        default: break
        }
    }

    var reply: DHTNodeReply {
        DHTNodeReply(node: node, nodeID: nodeID, answered: answered, peers: peers, closerNodes: closer)
    }
}
