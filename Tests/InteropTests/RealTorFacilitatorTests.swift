import Crypto
import Facilitator
import Foundation
import NetBasics
import NIOPosix
import OnionRouting
import OnionTransport
import PeersmCircuits
import PeersmProtocol
import Requester
import TestSupport
import Testing
import TorCrypto
import TorrentEngine

/// The product path with a real C tor relay in the middle: a third-party BitTorrent seeder (aria2c)
/// → our facilitator (our relay whose exit hop is the FacilitatorService on a free-rider torrent
/// engine) ← C tor middle relay ← our guard relay ← Requester. C tor extends to our facilitator only
/// after our relay authenticated as a relay, and relays the onion-encrypted DB_* cells it cannot
/// read; the Requester verifies every block and the file must come out byte-exact.
@Suite("RealTor facilitator", .serialized)
struct RealTorFacilitatorTests {
    @Test("RealTor facilitator: aria2c → our facilitator ← tor middle ← our guard ← requester, magnet, byte-exact",
          .privateNetwork, .timeLimit(.minutes(3)))
    func magnetFetchThroughTorMiddle() async throws {
        let size = 6 * 1024 * 1024 + 333
        let env = try await RealTorFacilitatorEnvironment.start(size: size, seed: 0x7031)
        let middle = env.tor.middleRelays[0]
        let out = env.scratch.url.appendingPathComponent("fetched.bin")
        let words = WordList()
        let result: FetchResult, before: TorTraffic, after: TorTraffic
        let facilitatorLinks: Set<RSAIdentity>, guardLinks: Set<RSAIdentity>, engineStats: SessionStats
        do {
            before = try TorControl.traffic(port: try #require(middle.controlPort))
            result = try await env.requester().fetch(try env.magnet, to: out) { p in
                if case .facilitator(let word) = p.stage { words.add(word) }
            }
            after = try TorControl.traffic(port: try #require(middle.controlPort))
            facilitatorLinks = try await env.facilitator.linkedRelayIdentities()
            guardLinks = try await env.guardRelay.linkedRelayIdentities()
            engineStats = try await env.engine.sessionStats()
        } catch {
            await env.stop()
            throw error
        }
        await env.stop()

        print("RealTor facilitator: \(size) bytes in \(String(format: "%.2f", seconds(result.elapsed))) s "
              + "(file info after \(String(format: "%.2f", seconds(result.timeToFileInfo))) s); "
              + "tor middle wrote \(after.written - before.written) bytes")
        let fetched = try Data(contentsOf: out)
        #expect(fetched.count == size)
        #expect(sha256Hex(fetched) == sha256Hex(try env.fixture.contents(ofFile: 0)))
        #expect(result.bytes == UInt64(size) && result.fileInfo.size == UInt64(size))
        #expect(result.circuitsBuilt == 1)
        #expect(words.words.contains("torrent") && words.words.contains("start"))
        // The path really went through C tor: the facilitator's only relay link is the one the tor
        // middle opened and authenticated (our guard never linked to it directly), our guard's peer
        // is that tor, and the tor middle itself wrote at least the whole file (as relay cells; its
        // counters include loopback because TestingTorNetwork sets CountPrivateBandwidth 1).
        let torIdentity = try RSAIdentity(bytes: try #require(middle.rsaIdentity))
        #expect(facilitatorLinks == [torIdentity])
        #expect(guardLinks.contains(torIdentity))
        #expect(!guardLinks.contains(env.facilitator.descriptor.ntorKey.identity))
        #expect(after.written - before.written >= UInt64(size))
        // The facilitator's engine took the file from the seeder and gave nothing back.
        #expect(engineStats.payloadDownloaded >= Int64(size))
        #expect(engineStats.payloadUploaded == 0)
    }

    @Test("RealTor facilitator: by bare infohash; tor middle killed mid-transfer, requester resumes through another tor middle, byte-exact",
          .privateNetwork, .timeLimit(.minutes(3)))
    func torMiddleKilledMidTransferResumes() async throws {
        let size = 10 * 1024 * 1024 + 77
        // A bare infohash names no peer: the facilitator is configured with the seeder as a known peer.
        let env = try await RealTorFacilitatorEnvironment.start(size: size, seed: 0x7032, seederIsKnownPeer: true)
        let (first, second) = (env.tor.middleRelays[0], env.tor.middleRelays[1])
        let out = env.scratch.url.appendingPathComponent("fetched.bin")
        let killed = FireOnce()
        let resumedFrom = Recorded<UInt32>()
        let crashed = Recorded<Bool>()
        let result: FetchResult, secondBefore: TorTraffic, secondAfter: TorTraffic
        let facilitatorLinks: Set<RSAIdentity>, activeStreams: Int
        do {
            secondBefore = try TorControl.traffic(port: try #require(second.controlPort))
            // One data query covers the whole file (default chunksPerQuery), so the kill lands inside
            // it and the resume is a query from the first unverified chunk on the new circuit.
            result = try await env.requester().fetch(try env.infohash, to: out) { p in
                switch p.stage {
                case .transferring where p.verifiedBytes > 1024 * 1024 && killed.fire():
                    // A crash, not a clean shutdown: tor gets no chance to send DESTROY itself.
                    crashed.set(env.tor.crash(first))
                case .resumed(let chunk):
                    resumedFrom.set(chunk)
                default:
                    break
                }
            }
            secondAfter = try TorControl.traffic(port: try #require(second.controlPort))
            facilitatorLinks = try await env.facilitator.linkedRelayIdentities()
            // The killed query's work was stopped when its circuit died (no stream left behind).
            try await Task.sleep(for: .milliseconds(200))
            activeStreams = await env.service.activeStreams
        } catch {
            await env.stop()
            throw error
        }
        await env.stop()

        let fetched = try Data(contentsOf: out)
        #expect(killed.fired && crashed.value == true)
        #expect(!env.tor.isRunning(first))
        #expect(fetched.count == size)
        #expect(sha256Hex(fetched) == sha256Hex(try env.fixture.contents(ofFile: 0)))
        #expect(result.circuitsBuilt == 2)
        // Resumed from the first unverified chunk, past the megabyte already verified: not restarted.
        let chunk = try #require(resumedFrom.value)
        #expect(UInt64(chunk) * UInt64(PeersmWire.chunkSize) >= 1024 * 1024)
        // The rest came through the second C tor: it is the facilitator's relay link now (the dead
        // tor's link is gone), and it wrote at least the bytes that were still missing.
        #expect(facilitatorLinks == [try RSAIdentity(bytes: try #require(second.rsaIdentity))])
        #expect(secondAfter.written - secondBefore.written >= UInt64(size) - UInt64(chunk) * UInt64(PeersmWire.chunkSize))
        #expect(activeStreams == 0)
        print("RealTor facilitator resume: killed tor middle after >1 MiB, resumed at chunk \(chunk), "
              + "\(size) bytes in \(String(format: "%.2f", seconds(result.elapsed))) s over \(result.circuitsBuilt) circuits")
    }
}

/// A seeded torrent, our facilitator and guard relays, and two C tor middle relays (no authorities:
/// relays answer CREATE2/EXTEND2 without a consensus, and C tor extends to our authenticated relay).
final class RealTorFacilitatorEnvironment: @unchecked Sendable {
    let scratch: TemporaryDirectory
    let fixture: TorrentFixture
    let seeder: Seeder
    let tor: TorTestNetwork
    let engine: TorrentEngine
    let service: FacilitatorService
    let bridge: FacilitatorRelayBridge
    let guardRelay: OnionRelayServer
    let facilitator: OnionRelayServer
    let group: MultiThreadedEventLoopGroup

    /// `seederIsKnownPeer`: the facilitator's content source offers the seeder as a peer for every
    /// torrent (so a bare infohash resolves without DHT or tracker).
    static func start(size: Int, seed: UInt64, seederIsKnownPeer: Bool = false) async throws -> RealTorFacilitatorEnvironment {
        let scratch = try TemporaryDirectory("realtor-facilitator")
        // tor's relays start in a few seconds; the seeder meanwhile.
        async let torNetwork = TorTestNetwork.start(authorities: 0, relays: 2, exits: 0, client: false)
        let fixture = try TorrentFixture(in: scratch.url, name: "payload.bin", size: size, pieceKiB: 64, seed: seed)
        let seeder = try await Seeder.start(.aria2, seeding: fixture, directory: scratch.url)
        let tor: TorTestNetwork
        do { tor = try await torNetwork } catch {
            seeder.stop()
            throw error
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        do {
            // Composed as `facilitatord run` does: free-rider engine (loopback, TCP only) → content
            // source → service → bridge → our relay.
            let engine = try TorrentEngine(settings: .loopbackTest(dataDirectory: scratch.url.appendingPathComponent("engine").path))
            var config = FacilitatorConfiguration()
            config.resolveTimeout = .seconds(30)
            let bridge = FacilitatorRelayBridge()
            let known = seederIsKnownPeer ? [PeerEndpoint(host: seeder.host, port: seeder.port)] : []
            let service = FacilitatorService(source: TorrentContentSource(engine: engine, extraPeers: known),
                                             signingKey: Curve25519.Signing.PrivateKey(),
                                             transport: bridge, configuration: config)
            bridge.attach(service)
            var facilitatorConfig = OnionRelayServerConfiguration(keys: try RelayKeys.generate(now: Date()))
            facilitatorConfig.relay.applicationCommands = FacilitatorRelayBridge.applicationCommands
            let facilitator = try await OnionRelayServer.start(facilitatorConfig, on: group.next())
            bridge.attach(facilitator)
            var guardConfig = OnionRelayServerConfiguration(keys: try RelayKeys.generate(now: Date()))
            guardConfig.relay.extendAllowPrivateAddresses = true
            let guardRelay = try await OnionRelayServer.start(guardConfig, on: group.next())
            return RealTorFacilitatorEnvironment(scratch: scratch, fixture: fixture, seeder: seeder, tor: tor, engine: engine,
                                                 service: service, bridge: bridge, guardRelay: guardRelay,
                                                 facilitator: facilitator, group: group)
        } catch {
            seeder.stop()
            tor.stop()
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private init(scratch: TemporaryDirectory, fixture: TorrentFixture, seeder: Seeder, tor: TorTestNetwork, engine: TorrentEngine,
                 service: FacilitatorService, bridge: FacilitatorRelayBridge, guardRelay: OnionRelayServer,
                 facilitator: OnionRelayServer, group: MultiThreadedEventLoopGroup) {
        self.scratch = scratch
        self.fixture = fixture
        self.seeder = seeder
        self.tor = tor
        self.engine = engine
        self.service = service
        self.bridge = bridge
        self.guardRelay = guardRelay
        self.facilitator = facilitator
        self.group = group
    }

    /// The fixture's magnet link with the seeder as its `x.pe` peer (BEP 9): no tracker, no DHT.
    var magnet: HashName { get throws { try HashName(magnet: "\(fixture.magnet)&x.pe=\(seeder.host):\(seeder.port)") } }

    /// The fixture's bare 20-byte infohash.
    var infohash: HashName {
        get throws {
            try HashName(infohash: Hex.decode(fixture.infoHash) ?? [])
        }
    }

    /// A requester whose circuits are our guard → C tor middle → our facilitator, taking the tor
    /// middles in turn (circuit n uses middle n mod 2), so a rebuilt circuit avoids the previous tor.
    func requester(_ configure: (inout FetchOptions) -> Void = { _ in }) throws -> Requester {
        var options = FetchOptions()
        configure(&options)
        let paths = try tor.middleRelays.map { [guardRelay.descriptor, try CircuitHop(torNode: $0), facilitator.descriptor] }
        return Requester(circuits: RoundRobinCircuits(paths: paths, group: group), options: options)
    }

    func stop() async {
        await service.shutdown()
        bridge.finish()
        await guardRelay.shutdown()
        await facilitator.shutdown()
        await engine.shutdown()
        try? await group.shutdownGracefully()
        seeder.stop()
        tor.stop()
    }
}

/// Circuits over real TLS links along fixed paths, one path after the other.
struct RoundRobinCircuits: CircuitProvider {
    let paths: [[CircuitHop]]
    let group: MultiThreadedEventLoopGroup
    private let built = Counter()

    init(paths: [[CircuitHop]], group: MultiThreadedEventLoopGroup) {
        self.paths = paths
        self.group = group
    }

    func buildCircuit() async throws -> any FacilitatorCircuit {
        let path = paths[built.next() % paths.count]
        return try await OnionCircuitProvider(path: path, eventLoopGroup: group, buildTimeout: .seconds(20)).buildCircuit()
    }
}

private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func next() -> Int { lock.withLock { defer { value += 1 }; return value } }
}

private final class FireOnce: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false
    var fired: Bool { lock.withLock { done } }
    func fire() -> Bool { lock.withLock { defer { done = true }; return !done } }
}

private final class Recorded<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T?
    var value: T? { lock.withLock { stored } }
    func set(_ v: T) { lock.withLock { if stored == nil { stored = v } } }
}

private final class WordList: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func add(_ w: String) { lock.withLock { list.append(w) } }
    var words: [String] { lock.withLock { list } }
}

private func sha256Hex(_ data: Data) -> String { Hex.encode(SHA256.hash(data: data)) }

private func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
