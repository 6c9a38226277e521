import Foundation
import MetricsTestKit
import NetBasics
import Testing
import TestSupport
@testable import Blocklists
import TorrentEngine

extension BlocklistEngineTests {
    /// Imported lists enforced by a real libtorrent session against real seeders, each on a loopback
    /// address of the test's own.
    @Suite
    struct BlocklistEnforcementTests {
        /// A seeder that an imported list names is never connected (libtorrent refuses it:
        /// peer_blocked_alert → the engine's blocked event → our metric), while an unlisted seeder
        /// delivers the file, byte for byte.
        @Test(.privateNetwork)
        func blocklistKeepsListedSeederOutWhileUnlistedSeederDelivers() async throws {
            let scratch = try TemporaryDirectory("blocklist-enforce")
            let listedHost = Loopback.address(), unlistedHost = Loopback.address()
            let fixture = try TorrentFixture(in: scratch.url, name: "enforced.bin", size: 1_500_000, pieceKiB: 32, seed: 31_337)
            let listed = try await Seeder.start(.libtorrent, seeding: fixture, host: listedHost, directory: scratch.url)
            defer { listed.stop() }
            let unlisted = try await Seeder.start(.aria2, seeding: fixture, host: unlistedHost, directory: scratch.url)
            defer { unlisted.stop() }

            let metrics = TestMetrics()
            let service = try BlocklistService(store: try BlocklistStore(path: scratch.url.appendingPathComponent("bl.sqlite").path),
                                               metrics: metrics)
            let report = try await service.importList(from: try EngineRig.writeList(scratch.url, "level1.p2p", """
                # a PeerGuardian list naming the test seeder and an unrelated range
                Test monitoring peer:\(listedHost)-\(listedHost)
                Unrelated org:10.20.0.0-10.20.255.255
                """))
            #expect(report.list.rangeCount == 2 && report.issues.isEmpty)

            let engine = try EngineRig.engine(scratch.url, "fetch")
            let log = EngineEventLog()
            let blockedBefore = EngineRig.blockedPeers(metrics)
            let link = try await service.attach(engine, forward: { await log.add($0) })
            defer { link.cancel() }

            let data = try await EngineRig.fetch(engine, fixture.magnet, peers: [listed.engineEndpoint, unlisted.engineEndpoint])
            #expect(try EngineRig.sha256(data, scratch: scratch.url) == EngineRig.sha256(try fixture.contents(ofFile: 0), scratch: scratch.url))

            let sawBlock = await eventually(.seconds(5)) { await log.contains(.blocked, listedHost) }
            let events = await log.events
            #expect(sawBlock, "no blocked event for \(listedHost): \(events)")
            #expect(await engine.peerCounters(listedHost).connected == 0)
            #expect(await engine.peerCounters(listedHost).blocked >= 1)
            #expect(await engine.peerCounters(unlistedHost).connected >= 1)
            #expect(await log.contains(.connected, unlistedHost))
            #expect(await log.events.filter { $0.kind == .blocked }.allSatisfy { $0.address == listedHost && $0.detail == "ip_filter" })
            // Every blocked event became one count of the metric.
            #expect(EngineRig.blockedPeers(metrics) - blockedBefore == Int64(await log.count(.blocked, listedHost)))
            #expect(try await engine.sessionStats().payloadUploaded == 0)
            await engine.shutdown()
        }

        /// The filter changes under a running torrent: blocking a peer we are connected to drops that
        /// connection at once, the torrent stays open (same id, metadata kept) and the fetch completes
        /// from the other seeder; reconnecting to the blocked peer is refused. Removing the list lets
        /// it back in.
        @Test(.privateNetwork)
        func blocklistUpdateDropsLiveConnectionWithoutRestartingTorrent() async throws {
            let scratch = try TemporaryDirectory("blocklist-live")
            let firstHost = Loopback.address(), secondHost = Loopback.address()
            let fixture = try TorrentFixture(in: scratch.url, name: "live.bin", size: 1_200_000, pieceKiB: 32, seed: 4711)
            let first = try await Seeder.start(.libtorrent, seeding: fixture, host: firstHost, directory: scratch.url)
            defer { first.stop() }
            let second = try await Seeder.start(.aria2, seeding: fixture, host: secondHost, directory: scratch.url)
            defer { second.stop() }

            let metrics = TestMetrics()
            let service = try BlocklistService(store: try BlocklistStore(), metrics: metrics)
            let engine = try EngineRig.engine(scratch.url, "live")
            let log = EngineEventLog()
            let link = try await service.attach(engine, forward: { await log.add($0) })
            defer { link.cancel() }

            // Metadata comes from the first seeder (the only peer given); the connection stays up.
            let (id, metadata) = try await engine.open(fixture.magnet, peers: [first.engineEndpoint])
            #expect(metadata.infoHash == fixture.infoHash)
            #expect(try await eventually { try await engine.peers(id).contains { $0.endpoint.host == firstHost } })
            #expect(await engine.peerCounters(firstHost).connected >= 1)

            // Block it now: the running session drops the connection.
            let blockedBefore = EngineRig.blockedPeers(metrics)
            _ = try await service.importList(from: try EngineRig.writeList(scratch.url, "late.p2p", "Late entry:\(firstHost)-\(firstHost)\n"))
            let dropped = try await eventually(.seconds(10)) {
                try await !engine.peers(id).contains { $0.endpoint.host == firstHost }
            }
            #expect(dropped, "still connected to \(firstHost) after the filter changed")
            #expect(await eventually(.seconds(5)) { await log.contains(.disconnected, firstHost) })
            #expect(await engine.openTorrents == [id], "the torrent was not restarted")
            #expect(try await engine.stats(id).hasMetadata)

            // Asking for it again is refused by the filter, not attempted.
            let connectedBefore = await engine.peerCounters(firstHost).connected
            try await engine.connectPeer(id, first.engineEndpoint)
            #expect(await eventually(.seconds(5)) { await log.contains(.blocked, firstHost) })
            #expect(EngineRig.blockedPeers(metrics) > blockedBefore)

            // The same torrent completes from the second seeder.
            try await engine.connectPeer(id, second.engineEndpoint)
            let data = try await EngineRig.fetch(engine, fixture.magnet)
            #expect(try EngineRig.sha256(data, scratch: scratch.url) == EngineRig.sha256(try fixture.contents(ofFile: 0), scratch: scratch.url))
            #expect(await engine.peerCounters(firstHost).connected == connectedBefore)
            #expect(await engine.peerCounters(secondHost).connected >= 1)

            // Lifting the block lets the peer back in (same torrent, still running).
            #expect(try await service.removeList(named: "late"))
            try await engine.connectPeer(id, first.engineEndpoint)
            #expect(await eventually(.seconds(10)) { await engine.peerCounters(firstHost).connected > connectedBefore })
            await engine.close(id)
            await engine.shutdown()
        }

        /// Lists and detected spies live in the SQLite file: after the store and service are closed
        /// and reopened, both are still there and a brand-new engine gets them on attach, refusing the
        /// listed seeder and the spy's peer while the unlisted seeder delivers.
        @Test(.privateNetwork)
        func blocklistAndSpiesSurviveRestartAndApplyToNewEngine() async throws {
            let scratch = try TemporaryDirectory("blocklist-restart")
            let listedHost = Loopback.address(), unlistedHost = Loopback.address()
            let spyPeerHost = Loopback.address(), spyHost = Loopback.address()
            let fixture = try TorrentFixture(in: scratch.url, name: "restart.bin", size: 800_000, pieceKiB: 32, seed: 1_234)
            let listed = try await Seeder.start(.libtorrent, seeding: fixture, host: listedHost, directory: scratch.url)
            defer { listed.stop() }
            let unlisted = try await Seeder.start(.aria2, seeding: fixture, host: unlistedHost, directory: scratch.url)
            defer { unlisted.stop() }
            let spyPeer = try await Seeder.start(.libtorrent, seeding: fixture, host: spyPeerHost, directory: scratch.url)
            defer { spyPeer.stop() }
            let spy = try await EngineRig.spyNode(host: spyHost, values: ["\(spyPeerHost):\(spyPeer.port)"], directory: scratch.url)
            defer { spy.process.stop() }
            let storePath = scratch.url.appendingPathComponent("bl.sqlite").path
            let realHash = Hex.decode(fixture.infoHash)!

            // First run: import a list and hunt (the spy answers values for the fake hash).
            let (listsBefore, spiesBefore): ([ListInfo], [Detection]) = try await {
                let service = try BlocklistService(store: try BlocklistStore(path: storePath))
                _ = try await service.importList(from: try EngineRig.writeList(scratch.url, "level1.p2p", "Listed seeder:\(listedHost)-\(listedHost)\n"))
                let hunter = try EngineRig.engine(scratch.url, "hunt") { $0.dhtEnabled = true }
                let spyEP = IPEndpoint(address: IPAddress(spyHost)!, port: spy.port)
                // Only the spy answers, so no node is trusted and the hunt falls back to a plain walk
                // for the real hash, which the guard keeps away from the spy it has just caught.
                let result = try await service.hunt(infohash: realHash, through: hunter, bootstrap: [spyEP])
                #expect(Set(result.detections.map(\.address.description)) == [spyHost, spyPeerHost])
                #expect(result.trustedNodes.isEmpty && result.peers.isEmpty)
                #expect(spy.process.log.contains("get_peers \(Hex.encode(result.fakeInfohash))"))
                #expect(!spy.process.log.contains(fixture.infoHash), "the spy learned the real info-hash:\n\(spy.process.log)")
                await hunter.shutdown()
                return (try service.store.lists(), try service.store.spies(activeAt: Date()))
            }()
            #expect(listsBefore.map(\.name) == ["level1"] && spiesBefore.count == 2)

            // Second run: everything reopened from the file.
            let store = try BlocklistStore(path: storePath)
            let service = try BlocklistService(store: store)
            #expect(try store.lists() == listsBefore)
            let spiesAfter = try store.spies(activeAt: Date())
            #expect(spiesAfter.map(\.address) == spiesBefore.map(\.address))
            #expect(spiesAfter.map(\.reason) == spiesBefore.map(\.reason))
            #expect(zip(spiesAfter, spiesBefore).allSatisfy { abs($0.expiresAt.timeIntervalSince($1.expiresAt)) < 0.01 && $0.torrent == $1.torrent })
            #expect(try await service.expire() == 0)
            let union = try await service.enforcedRanges()
            #expect([listedHost, spyHost, spyPeerHost].allSatisfy { union.contains(IPAddress($0)!) })

            let engine = try EngineRig.engine(scratch.url, "fresh")
            let log = EngineEventLog()
            let link = try await service.attach(engine, forward: { await log.add($0) })
            defer { link.cancel() }
            let data = try await EngineRig.fetch(engine, fixture.magnet, peers: [listed.engineEndpoint, spyPeer.engineEndpoint, unlisted.engineEndpoint])
            #expect(try EngineRig.sha256(data, scratch: scratch.url) == EngineRig.sha256(try fixture.contents(ofFile: 0), scratch: scratch.url))
            let refusedBoth = await eventually(.seconds(5)) {
                let a = await log.contains(.blocked, listedHost), b = await log.contains(.blocked, spyPeerHost)
                return a && b
            }
            #expect(refusedBoth)
            #expect(await engine.peerCounters(listedHost).connected == 0)
            #expect(await engine.peerCounters(spyPeerHost).connected == 0)
            #expect(await engine.peerCounters(unlistedHost).connected >= 1)
            await engine.shutdown()
        }

        /// A list the size of the public level-1 lists (200,000 IPv4 ranges plus 2,000 IPv6 ones) goes
        /// into libtorrent in one replace, and is enforced: the listed seeder inside it is refused.
        @Test(.privateNetwork)
        func blocklistOfPublicListSizeIsPushedAndEnforced() async throws {
            let scratch = try TemporaryDirectory("blocklist-large")
            let listedHost = Loopback.address(), unlistedHost = Loopback.address()
            let fixture = try TorrentFixture(in: scratch.url, name: "large.bin", size: 300_000, pieceKiB: 32, seed: 77)
            let listed = try await Seeder.start(.libtorrent, seeding: fixture, host: listedHost, directory: scratch.url)
            defer { listed.stop() }
            let unlisted = try await Seeder.start(.aria2, seeding: fixture, host: unlistedHost, directory: scratch.url)
            defer { unlisted.stop() }

            // Disjoint ranges spread over 1.0.0.0–223.255.255.255 (none in 127/8), the listed seeder
            // among them, and some IPv6.
            var rng = SplitMix64(seed: 20_261_125)
            var ranges: [IPRange] = [try IPRange(parsing: listedHost)]
            var next: UInt32 = 1 << 24
            while ranges.count < 200_000 {
                next += UInt32.random(in: 16...4_000, using: &rng)
                let last = next + UInt32.random(in: 0...600, using: &rng)
                if !(127 << 24...(128 << 24) - 1).contains(next) && !(127 << 24...(128 << 24) - 1).contains(last) {
                    ranges.append(try IPRange(IPAddress(ipv4: next), IPAddress(ipv4: last)))
                }
                next = last + 1
            }
            // Every other /48, so they stay 2,000 separate ranges instead of merging.
            for i in 0..<2_000 { ranges.append(try IPRange(parsing: "2001:db8:\(String(2 * i, radix: 16))::/48")) }
            let union = IPRangeSet(merging: ranges)
            #expect(union.count == 202_000)   // 200,000 IPv4 (the listed seeder included) + 2,000 IPv6

            let engine = try EngineRig.engine(scratch.url, "large")
            let clock = ContinuousClock()
            let pushed = try await clock.measure { try await engine.replaceIPFilter(union) }
            print("pushed \(union.count) ranges (\(union.ipv4AddressCount) IPv4 addresses) to libtorrent in \(pushed)")
            #expect(pushed < .seconds(20))

            let data = try await EngineRig.fetch(engine, fixture.magnet, peers: [listed.engineEndpoint, unlisted.engineEndpoint])
            #expect(try EngineRig.sha256(data, scratch: scratch.url) == EngineRig.sha256(try fixture.contents(ofFile: 0), scratch: scratch.url))
            #expect(await eventually(.seconds(5)) { await engine.peerCounters(listedHost).blocked >= 1 })
            #expect(await engine.peerCounters(listedHost).connected == 0)
            #expect(await engine.peerCounters(unlistedHost).connected >= 1)
            await engine.shutdown()
        }
    }
}
