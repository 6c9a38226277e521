import Foundation
import MetricsTestKit
import NetBasics
import Testing
import TestSupport
@testable import Blocklists
import TorrentEngine

extension BlocklistEngineTests {
    /// The spy hunt through the engine's read-only DHT node, against a fake spy node and honest
    /// python3-libtorrent DHT nodes on loopback addresses of the test's own, then the real fetch from
    /// the honest seeders.
    @Suite
    struct SpyDetectionEngineTests {
        /// Topology (all UDP/TCP on loopback, DHT bootstrap lists empty):
        ///   spy      scripts/fake-spy-dht.py: values for ANY info-hash, naming the monitor (a real
        ///            seeder, the spy's monitoring peer) and 127.0.0.66 (nobody)
        ///   honest   libtorrent DHT node
        ///   seedA, seedB  libtorrent DHT nodes that seed the fixture and announce themselves
        /// The hunt (fake info-hash walk, then direct probes, then the real hash asked only of nodes
        /// that passed) convicts the spy and the peers it named, stores them with reason, time and
        /// expiry, and the fetch engine's ip_filter refuses them before the fetch, which then completes
        /// from the announced seeders. The spy never sees the real info-hash.
        @Test(.privateNetwork)
        func spyHuntThroughEngineBlocksSpyBeforeFetchAndFetchSucceeds() async throws {
            let scratch = try TemporaryDirectory("spy-engine")
            let fixture = try TorrentFixture(in: scratch.url, name: "hunted.bin", size: 900_000, pieceKiB: 32, seed: 2024)
            let realHash = Hex.decode(fixture.infoHash)!
            try #require(realHash.count == 20)
            let spyHost = Loopback.address(), honestHost = Loopback.address(), monitorHost = Loopback.address()
            let seedAHost = Loopback.address(), seedBHost = Loopback.address()

            let honest = try await EngineRig.dhtNode(host: honestHost, directory: scratch.url, name: "honest-dht")
            defer { honest.process.stop() }
            let honestNode = "\(honestHost):\(honest.port)"
            let seedA = try await EngineRig.dhtNode(host: seedAHost, knowing: [honestNode], seeding: fixture,
                                                    directory: scratch.url, name: "seed-a")
            defer { seedA.process.stop() }
            let seedB = try await EngineRig.dhtNode(host: seedBHost, knowing: [honestNode], seeding: fixture,
                                                    directory: scratch.url, name: "seed-b")
            defer { seedB.process.stop() }
            let monitor = try await Seeder.start(.libtorrent, seeding: fixture, host: monitorHost, directory: scratch.url)
            defer { monitor.stop() }
            let spy = try await EngineRig.spyNode(host: spyHost, values: ["\(monitorHost):\(monitor.port)", "127.0.0.66:6881"],
                                                  directory: scratch.url)
            defer { spy.process.stop() }

            // Widened "closest" window: in a 4-node DHT no honest ID shares 20 bits with the hash, so
            // with the default 20...24 no node would be trusted and the hunt would fall back to a
            // plain walk. 0...24 keeps the real procedure: probe with the fake hash, then ask only the
            // nodes that passed.
            var config = SpyDetectorConfiguration()
            config.closestPrefix = 0...24
            let storePath = scratch.url.appendingPathComponent("bl.sqlite").path
            let metrics = TestMetrics()
            let service = try BlocklistService(store: try BlocklistStore(path: storePath), config: config, metrics: metrics)

            // The hunting engine has the DHT on and no torrents; the fetching engine has it off, so
            // libtorrent never runs a get_peers of its own (2.0.8 would not filter it).
            let hunter = try EngineRig.engine(scratch.url, "hunt") { $0.dhtEnabled = true }
            let fetcher = try EngineRig.engine(scratch.url, "fetch")
            let log = EngineEventLog()
            let huntLink = try await service.attach(hunter)
            defer { huntLink.cancel() }
            let fetchLink = try await service.attach(fetcher, forward: { await log.add($0) })
            defer { fetchLink.cancel() }
            let bootstrap = [IPEndpoint(address: IPAddress(spyHost)!, port: spy.port),
                             IPEndpoint(address: IPAddress(honestHost)!, port: honest.port)]

            // Wait until both seeders' announces reached the honest node (asked directly, not the spy).
            let seeders = Set(["\(seedAHost):\(seedA.port)", "\(seedBHost):\(seedB.port)"])
            var lastValues: [String] = []
            let announced = try await eventually(.seconds(60)) {
                let r = try await hunter.getPeers(infohash: realHash, from: bootstrap[1])
                lastValues = r?.values.map(\.description) ?? []
                return seeders.isSubset(of: lastValues)
            }
            try #require(announced, "the honest DHT node never learned both seeders; it returned \(lastValues)")
            #expect(!spy.process.log.contains(fixture.infoHash), "the spy was asked for the real hash before the hunt")

            let detectedBefore = EngineRig.spiesDetected(metrics, .valuesForFakeInfohash)
            let started = Date()
            let result = try await service.hunt(infohash: realHash, through: hunter, bootstrap: bootstrap)

            // The spy node and the peers it named are convicted, for this torrent, with an expiry.
            let spyIP = IPAddress(spyHost)!, monitorIP = IPAddress(monitorHost)!, phantomIP = IPAddress("127.0.0.66")!
            let byAddress = Dictionary(grouping: result.detections, by: \.address)
            #expect(byAddress[spyIP]?.map(\.reason) == [.valuesForFakeInfohash])
            #expect(byAddress[monitorIP]?.map(\.reason) == [.listedForFakeInfohash])
            #expect(byAddress[phantomIP]?.map(\.reason) == [.listedForFakeInfohash])
            #expect(Set(result.detections.map(\.address)) == [spyIP, monitorIP, phantomIP], "honest nodes convicted: \(result.detections)")
            #expect(EngineRig.spiesDetected(metrics, .valuesForFakeInfohash) - detectedBefore == 1)
            // The nodes that passed the probe are the honest ones, and only they were asked the real hash.
            let honestIPs: Set<IPAddress> = [IPAddress(seedAHost)!, IPAddress(honestHost)!, IPAddress(seedBHost)!]
            #expect(!result.trustedNodes.isEmpty && Set(result.trustedNodes.map(\.address)).isSubset(of: honestIPs))
            #expect(Array(result.fakeInfohash.prefix(4)) == Array(realHash.prefix(4)) && result.fakeInfohash != realHash)
            let spyLog = spy.process.log
            #expect(spyLog.contains("get_peers \(Hex.encode(result.fakeInfohash))"), "the walk never reached the spy:\n\(spyLog)")
            #expect(!spyLog.contains(fixture.infoHash), "the spy learned the real info-hash:\n\(spyLog)")
            // Peers for the real hash: announced seeders only (the head of each value list is dropped).
            #expect(!result.peers.isEmpty, "no peer survived the filtering")
            #expect(Set(result.peers.map(\.description)).isSubset(of: seeders))

            // Stored with reason, time and expiry, under the salted torrent tag.
            let stored = try service.store.spies(activeAt: Date())
            let tag = await service.torrentTag(for: realHash)
            for d in result.detections {
                let row = try #require(stored.first { $0.address == d.address && $0.reason == d.reason })
                #expect(row.torrent == tag)
                #expect(row.detectedAt >= started.addingTimeInterval(-1) && row.detectedAt <= Date())
                #expect(abs(row.expiresAt.timeIntervalSince(row.detectedAt) - config.lifetime[d.reason]!) < 1)
            }
            #expect(!stored.contains { honestIPs.contains($0.address) })

            // Both engines' filters now hold the spies.
            let union = try await service.enforcedRanges()
            #expect(union.contains(spyIP) && union.contains(monitorIP) && union.contains(phantomIP))

            // The fetch: hunted peers plus the spy's monitor (as if a tracker or PEX named it). The
            // monitor is a working seeder, and the filter still never lets us connect to it.
            let blockedBefore = EngineRig.blockedPeers(metrics)
            let peers = result.peers.map { PeerEndpoint($0) } + [monitor.engineEndpoint]
            let data = try await EngineRig.fetch(fetcher, fixture.magnet, peers: peers)
            #expect(try EngineRig.sha256(data, scratch: scratch.url) == EngineRig.sha256(try fixture.contents(ofFile: 0), scratch: scratch.url))
            #expect(await eventually(.seconds(5)) { await log.contains(.blocked, monitorHost) })
            #expect(await fetcher.peerCounters(monitorHost).connected == 0)
            #expect(EngineRig.blockedPeers(metrics) > blockedBefore)
            let served = await fetcher.peerCounters(seedAHost).connected + fetcher.peerCounters(seedBHost).connected
            #expect(served >= 1)
            // The DHT never saw the real hash from the spy's side, before or after the fetch.
            #expect(!spy.process.log.contains(fixture.infoHash))
            #expect(try await fetcher.sessionStats().payloadUploaded == 0)

            await hunter.shutdown()
            await fetcher.shutdown()
        }

        /// `GuardedDHTLookup` does what libtorrent 2.0.8 does not: a node in the enforced union is never
        /// sent a query, and blocked nodes named as closer nodes are not followed.
        @Test(.privateNetwork)
        func spyNodeOnBlocklistIsNeverQueriedByGuardedLookup() async throws {
            let scratch = try TemporaryDirectory("spy-guard")
            let spyHost = Loopback.address(), honestHost = Loopback.address()
            let spy = try await EngineRig.spyNode(host: spyHost, values: ["127.0.0.66:6881"], directory: scratch.url)
            defer { spy.process.stop() }
            let honest = try await EngineRig.dhtNode(host: honestHost, directory: scratch.url, name: "honest-dht")
            defer { honest.process.stop() }
            let service = try BlocklistService(store: try BlocklistStore())
            _ = try await service.importList(from: try EngineRig.writeList(scratch.url, "spies.p2p", "Known spy:\(spyHost)-\(spyHost)\n"))
            let engine = try EngineRig.engine(scratch.url, "guard") { $0.dhtEnabled = true }
            // The engine's ip_filter holds the spy too; it makes no difference to DHT traffic.
            let link = try await service.attach(engine)
            defer { link.cancel() }
            let spyEP = IPEndpoint(address: IPAddress(spyHost)!, port: spy.port)
            let honestEP = IPEndpoint(address: IPAddress(honestHost)!, port: honest.port)
            let lookup = GuardedDHTLookup(engine: engine, bootstrap: [spyEP, honestEP], service: service)
            let hash = (0..<20).map { UInt8($0 * 7 + 1) }

            #expect(try await lookup.getPeers(infohash: hash, from: spyEP) == nil)
            let walk = try await lookup.getPeers(infohash: hash)
            #expect(walk.map(\.node) == [honestEP], "walk replies: \(walk.map(\.node))")
            #expect(walk.first?.nodeID.count == 20)
            #expect(!spy.process.log.contains("get_peers"), "the blocked spy was queried:\n\(spy.process.log)")

            // Unguarded, the engine's own walk does reach it (libtorrent 2.0.8 does not filter the DHT).
            let raw = try await engine.getPeers(infohash: hash, from: spyEP)
            #expect(raw?.values.map(\.description) == ["127.0.0.66:6881"])
            #expect(spy.process.log.contains("get_peers \(Hex.encode(hash))"))
            await engine.shutdown()
        }
    }
}
