import Foundation
import NetBasics
import Testing
import TestSupport
@testable import Blocklists

/// `SpyHuntDiscovery` over an in-memory DHT: what the daemon does before each query, minus the
/// network. The DHT here is a function from (node, hash) to a reply, so each case is exact.
@Suite struct SpyHuntDiscoveryTests {
    static let spy = IPEndpoint(address: IPAddress("127.0.0.4")!, port: 6881)
    static let honest = IPEndpoint(address: IPAddress("127.0.0.5")!, port: 6881)
    static let seeders = (1...4).map { IPEndpoint(address: IPAddress("10.7.0.\($0)")!, port: 51413) }
    static let realHash = (0..<20).map { UInt8($0 &* 13 &+ 5) }

    /// A DHT of two nodes: a spy that returns values for any hash, and an honest node that knows
    /// the real swarm. Counts the hunts (walks of a hash that is not the real one) it serves.
    final class FakeDHT: DHTPeerLookup, @unchecked Sendable {
        /// hangRealHash: answers the fake walk, then never answers a query for the real hash.
        enum Behaviour { case answer, hang, fail, hangRealHash }
        let behaviour: Behaviour
        private let lock = NSLock()
        private var asked: [(node: IPEndpoint, hash: [UInt8])] = []
        init(_ behaviour: Behaviour) { self.behaviour = behaviour }

        var fakeWalks: Int { lock.withLock { Set(asked.filter { $0.hash != realHash }.map(\.hash)).count } }
        func wasAsked(_ node: IPEndpoint, for hash: [UInt8]) -> Bool { lock.withLock { asked.contains { $0.node == node && $0.hash == hash } } }

        struct Down: Error, CustomStringConvertible { var description: String { "DHT engine is down" } }

        func getPeers(infohash: [UInt8], from node: IPEndpoint) async throws -> DHTResponse? {
            switch behaviour {
            case .hang: try await Task.sleep(for: .seconds(3600))
            case .fail: throw Down()
            case .hangRealHash where infohash == realHash: try await Task.sleep(for: .seconds(3600))
            case .answer, .hangRealHash: break
            }
            lock.withLock { asked.append((node, infohash)) }
            if node == spy {
                return DHTResponse(node: node, nodeID: [UInt8](repeating: 0x11, count: 20),
                                   values: [IPEndpoint(address: IPAddress("127.0.0.66")!, port: 1)])
            }
            return DHTResponse(node: node, nodeID: [UInt8](repeating: 0x22, count: 20),
                               values: infohash == realHash ? seeders : [])
        }

        func getPeers(infohash: [UInt8]) async throws -> [DHTResponse] {
            var out: [DHTResponse] = []
            for node in [spy, honest] { if let r = try await getPeers(infohash: infohash, from: node) { out.append(r) } }
            return out
        }
    }

    /// The walk as the daemon guards it: the real hash never goes to a node the fake walk convicted.
    struct Guarded: DHTPeerLookup {
        let dht: FakeDHT
        let realHash: [UInt8]
        let caught = Caught()
        final class Caught: @unchecked Sendable {
            let lock = NSLock(); var set = Set<IPAddress>()
        }
        func getPeers(infohash: [UInt8], from node: IPEndpoint) async throws -> DHTResponse? {
            if infohash == realHash, caught.lock.withLock({ caught.set.contains(node.address) }) { return nil }
            let r = try await dht.getPeers(infohash: infohash, from: node)
            if infohash != realHash, let r, !r.values.isEmpty { caught.lock.withLock { _ = caught.set.insert(node.address) } }
            return r
        }
        func getPeers(infohash: [UInt8]) async throws -> [DHTResponse] {
            var out: [DHTResponse] = []
            for node in [SpyHuntDiscoveryTests.spy, SpyHuntDiscoveryTests.honest] {
                if let r = try await getPeers(infohash: infohash, from: node) { out.append(r) }
            }
            return out
        }
    }

    /// On a manual clock: the timeout and the windows pass only when a test advances it, so a slow
    /// hunt on a loaded machine is never cut by accident.
    func discovery(_ dht: FakeDHT, timeout: Duration = .seconds(5), reuse: Duration = .seconds(120),
                   retry: Duration = .seconds(15), clock: ManualClock = ManualClock()) throws -> (SpyHuntDiscovery, BlocklistService) {
        let service = try BlocklistService(store: try BlocklistStore())
        var config = SpyHuntDiscovery.Configuration()
        config.timeout = timeout
        config.reuseWindow = reuse
        config.retryAfterFailure = retry
        return (SpyHuntDiscovery(service: service, configuration: config, clock: clock) { real in Guarded(dht: dht, realHash: real) }, service)
    }

    @Test func spyHuntFindsPeersRecordsSpiesAndServesTheFollowingQueriesFromItsResult() async throws {
        let dht = FakeDHT(.answer)
        let (discovery, service) = try discovery(dht)
        let first = await discovery.discover(Self.realHash)
        guard case .hunted(let detections, _) = first.outcome else { Issue.record("\(first.outcome)"); return }
        #expect(detections == 2)   // the spy node and the peer it named
        // The honest node's list loses its head (spies place themselves first); the rest is kept.
        #expect(Set(first.peers) == Set(Self.seeders.dropFirst()))
        #expect(try await service.check(Self.spy.address).spies.map(\.reason) == [.valuesForFakeInfohash])
        #expect(try await service.isBlocked(IPAddress("127.0.0.66")!))
        #expect(!dht.wasAsked(Self.spy, for: Self.realHash), "the spy was sent the real info-hash")
        #expect(dht.wasAsked(Self.honest, for: Self.realHash))

        // The data queries that follow reuse the hunt; a peer convicted meanwhile is left out.
        try await service.record([Detection(address: first.peers[0].address, port: nil, reason: .hashFailures, detail: "test",
                                            detectedAt: Date(), torrent: TorrentTag(hex: "00"), expiresAt: Date() + 60)])
        let second = await discovery.discover(Self.realHash)
        #expect(second.outcome == .reused)
        #expect(Set(second.peers) == Set(first.peers.dropFirst()))
        #expect(dht.fakeWalks == 1)
        // In the engine's terms, for TorrentContentSource.
        let enginePeers = await discovery.peers(for: Self.realHash)
        #expect(Set(enginePeers.map(\.description)) == Set(second.peers.map(\.description)))
    }

    @Test func spyHuntForConcurrentQueriesRunsOnce() async throws {
        let dht = FakeDHT(.answer)
        let (discovery, _) = try discovery(dht)
        let outcomes = await withTaskGroup(of: SpyHuntDiscovery.Outcome.self) { group in
            for _ in 0..<4 { group.addTask { await discovery.discover(Self.realHash).outcome } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(dht.fakeWalks == 1, "\(outcomes)")
        #expect(outcomes.allSatisfy { if case .hunted = $0 { true } else { $0 == .reused } })
    }

    @Test func spyHuntIsRunAgainOnceItsResultIsStale() async throws {
        let dht = FakeDHT(.answer)
        let clock = ManualClock()
        let (discovery, _) = try discovery(dht, reuse: .milliseconds(200), clock: clock)
        _ = await discovery.discover(Self.realHash)
        clock.advance(by: .milliseconds(199))
        #expect(await discovery.discover(Self.realHash).outcome == .reused)
        clock.advance(by: .milliseconds(1))
        guard case .hunted = await discovery.discover(Self.realHash).outcome else { Issue.record("not hunted again"); return }
        #expect(dht.fakeWalks == 2)
    }

    /// A hunt that never ends (here: a lookup that sleeps an hour) is cut at the timeout and yields
    /// no peers, so the query goes on with the peers it has; the next query does not wait again.
    @Test func spyHuntTimeoutYieldsNoPeersWithinTheBound() async throws {
        let dht = FakeDHT(.hang)
        let clock = ManualClock()
        let (discovery, service) = try discovery(dht, timeout: .milliseconds(500), clock: clock)
        let hunt = Task { await discovery.discover(Self.realHash) }
        #expect(await eventually { clock.sleeping == 1 }, "the timeout is not running")
        clock.advance(by: .milliseconds(499))
        #expect(clock.sleeping == 1, "cut before the timeout")
        clock.advance(by: .milliseconds(1))
        try #require(await eventually { clock.sleeping == 0 }, "the timeout did not fire")
        let result = await hunt.value
        #expect(result.outcome == .timedOut && result.peers.isEmpty)
        #expect(result.duration == .milliseconds(500))
        let again = await discovery.discover(Self.realHash)
        #expect(again.outcome == .backingOff && again.peers.isEmpty)
        #expect(try await service.enforcedRanges().isEmpty, "a cut hunt recorded verdicts")
    }

    /// Cut after the fake walk: no peers, but the spy it exposed stays convicted.
    @Test func spyHuntCutShortKeepsTheVerdictsItAlreadyMade() async throws {
        let dht = FakeDHT(.hangRealHash)
        let clock = ManualClock()
        let (discovery, service) = try discovery(dht, timeout: .milliseconds(500), clock: clock)
        let hunt = Task { await discovery.discover(Self.realHash) }
        // The fake walk's verdicts are in; the walk of the real hash hangs.
        let convicted = try await eventually {
            let spy = try await service.isBlocked(Self.spy.address)
            let named = try await service.isBlocked(IPAddress("127.0.0.66")!)
            return spy && named
        }
        #expect(convicted, "the fake walk convicted nobody")
        #expect(await eventually { clock.sleeping == 1 })
        clock.advance(by: .milliseconds(500))
        try #require(await eventually { clock.sleeping == 0 }, "the timeout did not fire")
        let result = await hunt.value
        #expect(result.outcome == .timedOut && result.peers.isEmpty)
        #expect(try await service.check(Self.spy.address).spies.map(\.reason) == [.valuesForFakeInfohash])
        #expect(try await service.isBlocked(IPAddress("127.0.0.66")!))
    }

    @Test func spyHuntFailureYieldsNoPeersAndIsRetriedLater() async throws {
        let dht = FakeDHT(.fail)
        let clock = ManualClock()
        let (discovery, _) = try discovery(dht, retry: .milliseconds(200), clock: clock)
        // Answered with the clock standing still: a failure does not wait for the timeout.
        let result = await discovery.discover(Self.realHash)
        #expect(result.outcome == .failed("DHT engine is down") && result.peers.isEmpty)
        #expect(await discovery.discover(Self.realHash).outcome == .backingOff)
        clock.advance(by: .milliseconds(199))
        #expect(await discovery.discover(Self.realHash).outcome == .backingOff)
        clock.advance(by: .milliseconds(1))
        #expect(await discovery.discover(Self.realHash).outcome == .failed("DHT engine is down"))
    }

    /// The daemon's lookup resolves its bootstrap list at each hunt; nothing resolvable is a
    /// failed hunt (logged, no peers), not a crash.
    @Test func spyHuntBootstrapEntriesAreParsedAndBadOnesRejected() async throws {
        #expect(DHTBootstrap.split("router.example:6881")! == ("router.example", 6881))
        #expect(DHTBootstrap.split("[::1]:7000")! == ("::1", 7000))
        for bad in ["router.example", ":6881", "host:0", "host:70000", "a b:1"] { #expect(DHTBootstrap.split(bad) == nil, "\(bad)") }
        let nodes = try await DHTBootstrap.resolve(["127.0.0.4:6881", "[::1]:7000"])
        #expect(nodes.map(\.description) == ["127.0.0.4:6881", "[::1]:7000"])
        await #expect(throws: DHTBootstrap.Failure.self) { try await DHTBootstrap.resolve(["nonsense"]) }
    }
}
