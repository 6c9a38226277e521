import Foundation
import NetBasics
import Testing
@testable import Blocklists

func ep(_ s: String) -> IPEndpoint {
    let parts = s.split(separator: ":")
    return IPEndpoint(address: IPAddress(parts[0])!, port: UInt16(parts[1])!)
}

/// A node ID sharing exactly `bits` leading bits with `hash` (the next bit differs).
func nodeID(near hash: [UInt8], sharing bits: Int, filler: UInt8 = 0x33) -> [UInt8] {
    var id = [UInt8](repeating: filler, count: 20)
    for i in 0..<20 {
        let keep = max(0, min(8, bits - 8 * i))
        let mask: UInt8 = keep == 8 ? 0xFF : UInt8(0xFF << (8 - keep) & 0xFF)
        id[i] = hash[i] & mask | id[i] & ~mask
    }
    if bits < 160 {
        let byte = bits / 8, bit = 7 - bits % 8
        id[byte] = id[byte] & ~(1 << bit) | (~hash[byte] & (1 << bit))
    }
    return id
}

let realHash: [UInt8] = Array(0..<20).map { UInt8($0 * 13 &+ 7) }
let tag = TorrentTag(infohash: realHash, salt: [1, 2, 3])
let t0 = Date(timeIntervalSince1970: 1_800_000_000)

@Suite struct SpyDetectorTests {
    let detector = SpyDetector()

    @Test func fakeInfohashKeepsThe32BitPrefixOnly() {
        var rng = SystemRandomNumberGenerator()
        let a = detector.fakeInfohash(for: realHash, using: &rng)
        let b = detector.fakeInfohash(for: realHash, using: &rng)
        #expect(Array(a.prefix(4)) == Array(realHash.prefix(4)) && a.count == 20)
        #expect(a != realHash && a != b)  // 128 random bits: equal only by a bug
        var cfg = SpyDetectorConfiguration()
        cfg.fakePrefixBits = 24 + 3
        let odd = SpyDetector(config: cfg).fakeInfohash(for: realHash, using: &rng)
        #expect(SpyDetector.commonPrefixBits(odd, realHash) >= 27)
        #expect(SpyDetector.commonPrefixBits(nodeID(near: realHash, sharing: 21), realHash) == 21)
        #expect(SpyDetector.commonPrefixBits(realHash, realHash) == 160)
    }

    @Test func spyAnsweringValuesForTheFakeHashIsConvictedWithItsValues() {
        let fake = nodeID(near: realHash, sharing: 40)
        let responses = [
            DHTResponse(node: ep("127.0.0.9:6881"), nodeID: nodeID(near: fake, sharing: 3),
                        values: [ep("127.0.0.66:6881"), ep("127.0.0.67:6881")]),
            DHTResponse(node: ep("127.0.0.10:6881"), nodeID: nodeID(near: fake, sharing: 5), nodes: []),
        ]
        let report = detector.analyzeFakeWalk(fakeInfohash: fake, responses: responses, torrent: tag, now: t0)
        #expect(report.detections.map(\.reason) == [.valuesForFakeInfohash, .listedForFakeInfohash, .listedForFakeInfohash])
        #expect(report.detections.map(\.address.description) == ["127.0.0.9", "127.0.0.66", "127.0.0.67"])
        #expect(report.detections[0].expiresAt == t0 + 30 * 86_400 && report.detections[0].torrent == tag)
        #expect(report.suspects.isEmpty)
    }

    @Test func idPrefixSybilsAndDuplicateIPsNearTheHash() {
        let fake = nodeID(near: realHash, sharing: 40)
        let responses = [
            DHTResponse(node: ep("127.0.0.20:1"), nodeID: nodeID(near: fake, sharing: 36)),   // sybil
            DHTResponse(node: ep("127.0.0.21:1"), nodeID: nodeID(near: fake, sharing: 22)),   // close, suspect
            DHTResponse(node: ep("127.0.0.22:1"), nodeID: nodeID(near: fake, sharing: 21)),   // duplicate IP …
            DHTResponse(node: ep("127.0.0.22:2"), nodeID: nodeID(near: fake, sharing: 23, filler: 0x44)),  // … two IDs
            DHTResponse(node: ep("127.0.0.23:1"), nodeID: nodeID(near: fake, sharing: 12)),   // far: ignored
            DHTResponse(node: ep("127.0.0.24:1"), nodeID: nodeID(near: fake, sharing: 26)),   // close, beyond 24: suspect
        ]
        let report = detector.analyzeFakeWalk(fakeInfohash: fake, responses: responses, torrent: tag, now: t0)
        let byReason = Dictionary(grouping: report.detections, by: \.reason).mapValues { $0.map(\.address.description) }
        #expect(byReason == [.sybilNodeID: ["127.0.0.20"], .duplicateNodeIP: ["127.0.0.22"]])
        #expect(report.suspects.map(\.endpoint.description) == ["127.0.0.24:1", "127.0.0.21:1"])
    }

    @Test func valueListHeadDropping() {
        #expect(detector.leadingDropCount(0) == 0)
        #expect(detector.leadingDropCount(1) == 1)
        #expect(detector.leadingDropCount(20) == 1)
        #expect(detector.leadingDropCount(21) == 4)    // ceil(2.1) + 1
        #expect(detector.leadingDropCount(30) == 4)    // ceil(3.0) + 1
        #expect(detector.leadingDropCount(100) == 11)
        let values = (1...25).map { ep("10.0.0.\($0):6881") }
        let f = detector.filterValues(values) { $0 == IPAddress("10.0.0.10") }
        #expect(f.droppedLeading == Array(values.prefix(4)))
        #expect(f.droppedBlocked == [values[9]])
        #expect(f.kept.count == 20 && f.kept.first == values[4])
    }

    @Test func manyPortsFromOneIPOnlyOnceEnoughPeersWereSeen() {
        var peers = (1...19).map { ep("10.0.1.\($0):6881") }
        peers.append(ep("10.0.1.1:6882"))
        #expect(detector.manyPorts(peers, torrent: tag, now: t0).isEmpty == false)
        #expect(detector.manyPorts(Array(peers.suffix(5)) + [ep("10.0.1.1:6881")], torrent: tag, now: t0).isEmpty)
        let d = detector.manyPorts(peers + peers, torrent: tag, now: t0)  // duplicates count once
        #expect(d.count == 1 && d[0].address == IPAddress("10.0.1.1") && d[0].reason == .manyPorts)
        #expect(d[0].detail == "listed with 2 ports (6881,6882)")
    }

    @Test func timeoutsAndHashFailuresOverAWindow() {
        var tracker = PeerMisbehaviourTracker()
        let peer = ep("10.9.9.9:51413")
        #expect(tracker.record(.requestTimeout, from: peer, torrent: tag, now: t0) == nil)
        #expect(tracker.record(.requestTimeout, from: peer, torrent: tag, now: t0 + 10) == nil)
        // The first timeout leaves the 600 s window before the third arrives: no verdict yet.
        #expect(tracker.record(.requestTimeout, from: peer, torrent: tag, now: t0 + 601) == nil)
        // A burst (every outstanding block timing out at once) is one incident.
        #expect(tracker.record(.requestTimeout, from: peer, torrent: tag, now: t0 + 602) == nil)
        let d = tracker.record(.requestTimeout, from: peer, torrent: tag, now: t0 + 607)
        #expect(d?.reason == .requestTimeouts && d?.expiresAt == t0 + 607 + 86_400)
        #expect(tracker.record(.hashFailure, from: peer, torrent: tag, now: t0 + 603) == nil)
        #expect(tracker.record(.hashFailure, from: peer, torrent: tag, now: t0 + 604)?.reason == .hashFailures)
        #expect(tracker.record(.hashFailure, from: ep("10.9.9.8:1"), torrent: tag, now: t0 + 604) == nil)
    }

    @Test func torrentTagIsSaltedAndNotTheInfohash() {
        let a = TorrentTag(infohash: realHash, salt: [1]), b = TorrentTag(infohash: realHash, salt: [2])
        #expect(a != b && a.hex.count == 64)
        #expect(!a.hex.contains(Hex.encode(realHash)))
    }
}

/// DHT replies recorded per (queried hash, node): the lookup answers from them, so the hunt runs
/// its real logic on a fixed scenario. A walk returns every recorded reply for that hash.
struct RecordedDHT: DHTPeerLookup {
    /// Node → reply maker, given the queried hash (a spy answers any hash; the fake one is random).
    var nodes: [IPEndpoint: @Sendable ([UInt8]) -> DHTResponse?]
    /// Which node was sent which hash: a walk sends it to every node, a direct query to one.
    let heard = HeardLog()
    init(nodes: [IPEndpoint: @Sendable ([UInt8]) -> DHTResponse?]) { self.nodes = nodes }
    func getPeers(infohash: [UInt8]) async throws -> [DHTResponse] {
        let order = nodes.keys.sorted { $0.description < $1.description }
        order.forEach { heard.add($0, infohash) }
        return order.compactMap { nodes[$0]!(infohash) }
    }
    func getPeers(infohash: [UInt8], from node: IPEndpoint) async throws -> DHTResponse? {
        heard.add(node, infohash)
        return nodes[node]?(infohash)
    }
}

final class HeardLog: @unchecked Sendable {
    // @unchecked: `pairs` is only touched under `lock`.
    private let lock = NSLock()
    private var pairs: [(node: IPEndpoint, hash: [UInt8])] = []
    func add(_ node: IPEndpoint, _ hash: [UInt8]) { lock.withLock { pairs.append((node, hash)) } }
    func nodes(hearing hash: [UInt8]) -> Set<IPEndpoint> { lock.withLock { Set(pairs.filter { $0.hash == hash }.map(\.node)) } }
}

@Suite struct SpyHunterTests {
    @Test func huntConvictsSpiesBeforeAskingCleanCloseNodesForTheRealHash() async throws {
        let honestPeers = (1...30).map { ep("10.1.0.\($0):6881") }
        let spy = ep("127.0.0.9:6881"), sly = ep("127.0.0.12:6881"), clean = ep("127.0.0.11:6881")
        let dht = RecordedDHT(nodes: [
            // Answers values for any hash.
            spy: { h in DHTResponse(node: spy, nodeID: nodeID(near: h, sharing: 2), values: [ep("127.0.0.66:1")]) },
            // Close to any hash and silent in the walk's reply… but answers values to the direct probe.
            sly: { h in
                DHTResponse(node: sly, nodeID: nodeID(near: h, sharing: 21), values: h == realHash ? honestPeers : [ep("10.7.7.7:1")])
            },
            // Close and clean: knows peers only for the real hash (one of them a many-ports IP).
            clean: { h in
                DHTResponse(node: clean, nodeID: nodeID(near: h, sharing: 22),
                            values: h == realHash ? honestPeers + [ep("10.1.0.30:7000"), ep("127.0.0.66:1")] : [])
            },
        ])
        // The walk should not see sly's values: make its walk reply value-free by wrapping.
        struct WalkHidesSly: DHTPeerLookup {
            let inner: RecordedDHT; let sly: IPEndpoint
            func getPeers(infohash: [UInt8]) async throws -> [DHTResponse] {
                try await inner.getPeers(infohash: infohash).map { r in
                    var r = r
                    if r.node == sly { r.values = [] }
                    return r
                }
            }
            func getPeers(infohash: [UInt8], from node: IPEndpoint) async throws -> DHTResponse? {
                try await inner.getPeers(infohash: infohash, from: node)
            }
        }
        let result = try await SpyHunter().hunt(infohash: realHash, torrent: tag, lookup: WalkHidesSly(inner: dht, sly: sly),
                                                isBlocked: { _ in false }, now: { t0 })
        let convicted = Dictionary(grouping: result.detections, by: \.reason).mapValues { Set($0.map(\.address.description)) }
        #expect(convicted[.valuesForFakeInfohash] == ["127.0.0.9", "127.0.0.12"])
        #expect(convicted[.listedForFakeInfohash] == ["127.0.0.66", "10.7.7.7"])
        #expect(convicted[.manyPorts] == ["10.1.0.30"])
        #expect(result.trustedNodes == [clean])
        #expect(dht.heard.nodes(hearing: realHash) == [clean], "only the clean close node is asked for the real hash")
        #expect(Array(result.fakeInfohash.prefix(4)) == Array(realHash.prefix(4)) && result.fakeInfohash != realHash)
        // clean's list of 32: the first ceil(3.2)+1 = 5 dropped, the listed spy and the many-ports IP removed.
        #expect(result.droppedLeading == 5 && result.droppedBlocked == 1)
        #expect(Set(result.peers) == Set(honestPeers[5..<29]))
    }

    @Test func withoutCleanCloseNodesTheHuntFallsBackToAFilteredWalk() async throws {
        let spy = ep("127.0.0.9:6881"), far = ep("127.0.0.13:6881")
        let dht = RecordedDHT(nodes: [
            spy: { h in DHTResponse(node: spy, nodeID: nodeID(near: h, sharing: 1), values: [ep("10.5.5.5:1")]) },
            far: { h in DHTResponse(node: far, nodeID: nodeID(near: h, sharing: 4),
                                    values: h == realHash ? [ep("10.2.0.1:1"), ep("10.2.0.2:1"), ep("10.2.0.3:1")] : []) },
        ])
        let result = try await SpyHunter().hunt(infohash: realHash, torrent: tag, lookup: dht,
                                                isBlocked: { $0 == IPAddress("10.2.0.3") }, now: { t0 })
        #expect(result.trustedNodes.isEmpty)
        #expect(result.peers == [ep("10.2.0.2:1")])  // first dropped, 10.2.0.3 blocked; the spy's values ignored
        #expect(Set(result.detections.map(\.address.description)) == ["127.0.0.9", "10.5.5.5"])
        // The fallback walk never sent the real hash to the spy convicted by the fake walk.
        #expect(dht.heard.nodes(hearing: realHash) == [far])
    }
}

/// Single queries answered from a fixed topology (node i knows nodes i+1…i+3): the walk must
/// follow `nodes` toward the target and stop within its budget.
struct ChainQuerier: DHTDirectQuerying {
    let ids: [[UInt8]]
    func endpoint(_ i: Int) -> IPEndpoint { ep("10.8.0.\(i + 1):6881") }
    func startingNodes() async throws -> [IPEndpoint] { [endpoint(0)] }
    func getPeers(infohash: [UInt8], from node: IPEndpoint) async throws -> DHTResponse? {
        guard let i = (0..<ids.count).first(where: { endpoint($0) == node }) else { return nil }
        if i == 7 { throw CocoaError(.featureUnsupported) }  // one broken node: treated as silent
        let next = (i + 1..<min(i + 4, ids.count)).map { DHTNode(id: ids[$0], endpoint: endpoint($0)) }
        return DHTResponse(node: node, nodeID: ids[i], values: [], nodes: next)
    }
}

@Suite struct SpyDHTWalkTests {
    @Test func iterativeLookupFollowsNodesTowardTheTarget() async throws {
        // IDs get closer to the target as i grows: node i shares i+1 leading bits with it.
        let target = realHash
        let ids = (0..<40).map { nodeID(near: target, sharing: $0 + 1) }
        var walk = IterativeDHTLookup(querier: ChainQuerier(ids: ids))
        let replies = try await walk.getPeers(infohash: target)
        let reached = Set(replies.map(\.node))
        #expect(reached.contains(ep("10.8.0.40:6881")))       // the closest node was found
        #expect(!reached.contains(ep("10.8.0.8:6881")))       // the broken one did not stop the walk
        #expect(replies.count <= walk.maxQueries)
        walk.maxQueries = 5
        #expect(try await walk.getPeers(infohash: target).count <= 5)
    }
}
