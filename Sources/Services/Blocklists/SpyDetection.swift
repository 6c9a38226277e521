import Crypto
import Foundation
import NetBasics

// The "find spies" half of torrent-live, as pure code: every function takes what was observed and
// the current time, and returns verdicts. No I/O, no clock (the caller passes `now`).

/// An IP address and port (a DHT node, or a peer from a `values` list).
public struct IPEndpoint: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16
    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }
    public var description: String { address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)" }
}

/// A DHT node as a `nodes` entry names it.
public struct DHTNode: Hashable, Sendable {
    public var id: [UInt8]
    public var endpoint: IPEndpoint
    public init(id: [UInt8], endpoint: IPEndpoint) {
        self.id = id
        self.endpoint = endpoint
    }
}

/// One node's reply to a `get_peers` query (BEP 5): who answered, with which node ID, and what it returned.
public struct DHTResponse: Hashable, Sendable {
    /// The address the reply came from.
    public var node: IPEndpoint
    /// The `id` in the reply (20 bytes).
    public var nodeID: [UInt8]
    /// Peers the node returned in `values` for the queried infohash.
    public var values: [IPEndpoint]
    /// Closer nodes the node returned in `nodes`/`nodes6`.
    public var nodes: [DHTNode]
    public init(node: IPEndpoint, nodeID: [UInt8], values: [IPEndpoint] = [], nodes: [DHTNode] = []) {
        self.node = node
        self.nodeID = nodeID
        self.values = values
        self.nodes = nodes
    }
}

/// Why an address was judged a spy.
public enum SpyReason: String, Codable, Sendable, CaseIterable {
    /// A DHT node returned `values` for the fake infohash, which nobody has: it answers for any hash.
    case valuesForFakeInfohash = "values-for-fake-infohash"
    /// A peer listed in such `values`: only a spy announces a hash it cannot have seen elsewhere.
    case listedForFakeInfohash = "listed-for-fake-infohash"
    /// A node ID sharing far more leading bits with the (partly secret) fake hash than chance allows.
    case sybilNodeID = "sybil-node-id"
    /// Several node IDs or ports from one IP among the nodes closest to the hash.
    case duplicateNodeIP = "duplicate-node-ip"
    /// One IP listed with several ports in the peers returned for the real hash.
    case manyPorts = "many-ports"
    /// Repeated piece-request timeouts from one peer during a fetch.
    case requestTimeouts = "request-timeouts"
    /// Repeated pieces failing their hash check from one peer.
    case hashFailures = "hash-failures"
}

/// The torrent a detection concerns, without naming it: SHA-256(installation salt ‖ infohash).
/// The database and logs never hold which content a requester asked for.
public struct TorrentTag: Hashable, Sendable, CustomStringConvertible {
    public let hex: String
    public init(hex: String) { self.hex = hex }
    public init(infohash: [UInt8], salt: [UInt8]) {
        var h = SHA256()
        h.update(data: salt)
        h.update(data: infohash)
        hex = Hex.encode(h.finalize())
    }
    public var description: String { String(hex.prefix(16)) }
}

/// One verdict: an address, why, when, for which (hashed) torrent, and until when it stays blocked.
public struct Detection: Hashable, Sendable {
    public var address: IPAddress
    public var port: UInt16?
    public var reason: SpyReason
    /// Human detail ("answered 3 values", "shares 31 bits"…).
    public var detail: String
    public var detectedAt: Date
    public var torrent: TorrentTag
    public var expiresAt: Date

    public init(address: IPAddress, port: UInt16?, reason: SpyReason, detail: String, detectedAt: Date,
                torrent: TorrentTag, expiresAt: Date) {
        self.address = address
        self.port = port
        self.reason = reason
        self.detail = detail
        self.detectedAt = detectedAt
        self.torrent = torrent
        self.expiresAt = expiresAt
    }
}

public struct SpyDetectorConfiguration: Sendable {
    /// Leading bits of the real infohash kept in the fake one (torrent-live's AB_PREFIX): the walk
    /// reaches the real hash's neighbourhood while the remaining bits are ours alone.
    public var fakePrefixBits = 32
    /// Node-ID prefix lengths (shared with the fake hash) of the "closest" nodes torrent-live trusts
    /// for the real query after they pass the direct probe.
    public var closestPrefix: ClosedRange<Int> = 20...24
    /// A node ID sharing at least this many bits is a sybil: with ~2^24 DHT nodes, an honest ID
    /// shares ≥ 28 bits with a given hash with probability ~6%, and a fake-hash bit past the 32nd
    /// can only be matched by an ID minted after seeing our query.
    public var sybilPrefixBits = 28
    /// At most this many closest nodes are probed and asked for the real hash (torrent-live: 20).
    public var maxClosest = 20
    /// Value lists longer than this lose their first ceil(10%)+1 entries, shorter ones their first.
    public var valueListDropThreshold = 20
    /// The many-ports check runs once at least this many peers were collected (torrent-live: 20).
    public var manyPortsMinimumPeers = 20
    /// Distinct ports from one IP that make it a spy.
    public var manyPortsThreshold = 2
    public var requestTimeoutLimit = 3
    /// Request timeouts from one peer closer together than this count as one incident.
    public var requestTimeoutBurst: TimeInterval = 5
    public var hashFailureLimit = 2
    /// Bans the engine pronounced (libtorrent bans a peer only when bad data is pinned on it: it
    /// alone sent a failed piece, or smart_ban matched its blocks), so one is enough by default.
    public var banLimit = 1
    /// Peer events older than this are forgotten.
    public var peerEventWindow: TimeInterval = 600
    /// How long each kind of verdict blocks. Sure signs last longer than circumstantial ones.
    public var lifetime: [SpyReason: TimeInterval] = [
        .valuesForFakeInfohash: 30 * 86_400, .listedForFakeInfohash: 7 * 86_400, .sybilNodeID: 30 * 86_400,
        .duplicateNodeIP: 7 * 86_400, .manyPorts: 7 * 86_400,
        .requestTimeouts: 86_400, .hashFailures: 3 * 86_400,
    ]

    public init() {}

    public func expiry(_ reason: SpyReason, from now: Date) -> Date { now + (lifetime[reason] ?? 86_400) }
}

/// What the fake-hash walk revealed.
public struct FakeWalkReport: Sendable {
    public var detections: [Detection]
    /// Nodes close to the hash (prefix ≥ closestPrefix.lowerBound) that were not convicted; each must
    /// still pass a direct get_peers(fake) probe before it is trusted. Deduplicated by IP, closest first.
    public var suspects: [DHTNode]
}

/// The result of filtering one `values` list from the real query.
public struct ValueFilterResult: Sendable, Equatable {
    public var kept: [IPEndpoint]
    public var droppedLeading: [IPEndpoint]
    public var droppedBlocked: [IPEndpoint]
}

public struct SpyDetector: Sendable {
    public var config: SpyDetectorConfiguration

    public init(config: SpyDetectorConfiguration = .init()) { self.config = config }

    /// The first `fakePrefixBits` of the real infohash, then random bits (torrent-live's fakeinfohash).
    public func fakeInfohash(for infohash: [UInt8], using rng: inout some RandomNumberGenerator) -> [UInt8] {
        var out = (0..<infohash.count).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let full = min(config.fakePrefixBits / 8, infohash.count)
        for i in 0..<full { out[i] = infohash[i] }
        let rest = config.fakePrefixBits % 8
        if rest > 0 && full < infohash.count {
            let mask = UInt8(0xFF << (8 - rest) & 0xFF)
            out[full] = infohash[full] & mask | out[full] & ~mask
        }
        // Never equal to the real hash, even by a one-in-2^128 draw.
        if out == infohash, let last = out.indices.last { out[last] ^= 1 }
        return out
    }

    /// Number of equal leading bits.
    public static func commonPrefixBits(_ a: [UInt8], _ b: [UInt8]) -> Int {
        var bits = 0
        for (x, y) in zip(a, b) {
            let d = x ^ y
            if d == 0 { bits += 8; continue }
            return bits + d.leadingZeroBitCount
        }
        return bits
    }

    /// Judges every reply of the walk for the fake hash.
    public func analyzeFakeWalk(fakeInfohash fake: [UInt8], responses: [DHTResponse], torrent: TorrentTag,
                                now: Date) -> FakeWalkReport {
        var detections: [Detection] = []
        var convicted = Set<IPAddress>()
        func convict(_ ep: IPEndpoint, _ reason: SpyReason, _ detail: String) {
            detections.append(Detection(address: ep.address, port: ep.port, reason: reason, detail: detail,
                                        detectedAt: now, torrent: torrent, expiresAt: config.expiry(reason, from: now)))
            convicted.insert(ep.address)
        }
        var close: [(node: DHTNode, bits: Int)] = []
        for r in responses {
            if !r.values.isEmpty {
                convict(r.node, .valuesForFakeInfohash, "returned \(r.values.count) peer(s) for a hash nobody has")
                for v in r.values where !convicted.contains(v.address) {
                    convict(v, .listedForFakeInfohash, "listed by \(r.node) for a hash nobody has")
                }
                continue
            }
            let bits = Self.commonPrefixBits(r.nodeID, fake)
            if bits >= config.sybilPrefixBits {
                convict(r.node, .sybilNodeID, "node ID shares \(bits) leading bits with a hash made for this lookup")
            } else if bits >= config.closestPrefix.lowerBound {
                close.append((DHTNode(id: r.nodeID, endpoint: r.node), bits))
            }
        }
        // Several IDs or ports from one IP near the hash: a sybil farm (torrent-live, setTorrent).
        let byIP = Dictionary(grouping: close, by: { $0.node.endpoint.address })
        for (ip, group) in byIP where group.count > 1 && !convicted.contains(ip) {
            let ports = Set(group.map { $0.node.endpoint.port }).sorted().map(String.init).joined(separator: ",")
            convict(IPEndpoint(address: ip, port: group[0].node.endpoint.port), .duplicateNodeIP,
                    "\(group.count) node IDs near the hash from one IP (ports \(ports))")
        }
        let suspects = close.filter { !convicted.contains($0.node.endpoint.address) }
            .sorted { $0.bits > $1.bits }
            .map(\.node)
        return FakeWalkReport(detections: detections, suspects: Array(suspects.prefix(config.maxClosest)))
    }

    /// Verdict on a direct get_peers(fake) probe of one suspect: any values convict it.
    public func judgeProbe(fakeInfohash fake: [UInt8], response: DHTResponse, torrent: TorrentTag, now: Date) -> [Detection] {
        analyzeFakeWalk(fakeInfohash: fake, responses: [response], torrent: torrent, now: now).detections
    }

    /// How many leading entries of a value list of `count` peers are dropped: "spies position
    /// themselves first", so ceil(10%)+1 of a long list, else just the first.
    public func leadingDropCount(_ count: Int) -> Int {
        guard count > 0 else { return 0 }
        if count > config.valueListDropThreshold { return min(count, (count + 9) / 10 + 1) }
        return 1
    }

    /// Drops the head of a value list and the already-blocked peers.
    public func filterValues(_ values: [IPEndpoint], isBlocked: (IPAddress) -> Bool) -> ValueFilterResult {
        let n = leadingDropCount(values.count)
        var kept: [IPEndpoint] = [], blocked: [IPEndpoint] = []
        for v in values.dropFirst(n) {
            if isBlocked(v.address) { blocked.append(v) } else { kept.append(v) }
        }
        return ValueFilterResult(kept: kept, droppedLeading: Array(values.prefix(n)), droppedBlocked: blocked)
    }

    /// IPs offering several ports among the peers collected for the real hash (checked only once
    /// enough peers were seen that a honest swarm would not repeat an IP).
    public func manyPorts(_ peers: [IPEndpoint], torrent: TorrentTag, now: Date) -> [Detection] {
        let unique = Set(peers)
        guard unique.count >= config.manyPortsMinimumPeers else { return [] }
        return Dictionary(grouping: unique, by: \.address)
            .filter { $0.value.count >= config.manyPortsThreshold }
            .sorted { $0.key < $1.key }
            .map { ip, eps in
                Detection(address: ip, port: nil, reason: .manyPorts,
                          detail: "listed with \(eps.count) ports (\(eps.map { String($0.port) }.sorted().joined(separator: ",")))",
                          detectedAt: now, torrent: torrent, expiresAt: config.expiry(.manyPorts, from: now))
            }
    }
}

/// Events the engine reports about a peer during a fetch.
public enum PeerMisbehaviour: Sendable, Equatable {
    case requestTimeout
    /// A piece this peer contributed to failed its hash check (others may have contributed too).
    case hashFailure
    /// The engine banned the peer for sending data that failed the hash check (attribution certain).
    case bannedForBadData
}

/// Counts timeouts and hash failures per IP within a sliding window; a peer over a limit is a spy
/// (torrent-live level 2: wires that time out, peers sending bad pieces). Pure: time is passed in.
public struct PeerMisbehaviourTracker: Sendable {
    public let config: SpyDetectorConfiguration
    private var events: [IPAddress: [(kind: PeerMisbehaviour, at: Date)]] = [:]

    public init(config: SpyDetectorConfiguration = .init()) { self.config = config }

    /// Records one event; returns a detection the moment the peer crosses its limit (once per crossing).
    public mutating func record(_ event: PeerMisbehaviour, from peer: IPEndpoint, torrent: TorrentTag, now: Date) -> Detection? {
        var list = (events[peer.address] ?? []).filter { now.timeIntervalSince($0.at) <= config.peerEventWindow }
        // One stalled peer makes libtorrent time out every block it had been asked for at once (and
        // snub it): a burst is one incident, or any slow peer would be convicted on its first stall.
        if event == .requestTimeout,
           let last = list.last(where: { $0.kind == .requestTimeout }), now.timeIntervalSince(last.at) < config.requestTimeoutBurst {
            events[peer.address] = list
            return nil
        }
        list.append((event, now))
        let count = list.filter { $0.kind == event }.count
        let (limit, reason): (Int, SpyReason) = switch event {
        case .requestTimeout: (config.requestTimeoutLimit, .requestTimeouts)
        case .hashFailure: (config.hashFailureLimit, .hashFailures)
        case .bannedForBadData: (config.banLimit, .hashFailures)
        }
        if count >= limit {
            events[peer.address] = list.filter { $0.kind != event }
            return Detection(address: peer.address, port: peer.port, reason: reason,
                             detail: event == .bannedForBadData && count == 1 ? "banned by the engine for data failing the hash check"
                                : "\(count) \(event.noun) within \(Int(config.peerEventWindow)) s",
                             detectedAt: now, torrent: torrent, expiresAt: config.expiry(reason, from: now))
        }
        events[peer.address] = list
        return nil
    }

    /// Forgets stale events (call now and then so idle peers do not accumulate).
    public mutating func prune(now: Date) {
        events = events.compactMapValues { list in
            let fresh = list.filter { now.timeIntervalSince($0.at) <= config.peerEventWindow }
            return fresh.isEmpty ? nil : fresh
        }
    }
}

extension PeerMisbehaviour {
    var noun: String {
        switch self {
        case .requestTimeout: return "request timeouts"
        case .hashFailure: return "hash failures"
        case .bannedForBadData: return "bans for data failing the hash check"
        }
    }
}
