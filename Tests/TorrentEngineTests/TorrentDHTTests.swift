import Foundation
import Testing
import TestSupport
@testable import TorrentEngine

@Suite(.serialized)
struct TorrentDHTTests {
    /// Read-only DHT: direct get_peers queries name the answering nodes (address, id) and the peers
    /// each returned; a magnet with no peer and no tracker is resolved through the DHT; and the DHT
    /// never learns about us (no announce).
    @Test(.privateNetwork)
    func torrentReadOnlyDHTFindsSeederAndNeverAnnounces() async throws {
        let scratch = try TemporaryDirectory("torrent-dht")
        let fixture = try TorrentFixture(in: scratch.url, name: "dht.bin", size: 700_000, pieceKiB: 32, seed: 5150)
        // Three python3-libtorrent DHT nodes; the last one seeds and announces itself on the DHT.
        let dht = try await LocalDHT(count: 3, seeding: fixture, directory: scratch.url)
        defer { dht.stop() }
        let seeder = PeerEndpoint(host: try #require(dht.nodes.last).host, port: try #require(dht.seederPort))
        let engine = try makeEngine(scratch.url) {
            $0.dhtEnabled = true
            $0.dhtNodes = dht.nodes.map { "\($0.host):\($0.port)" }
        }

        // Wait until some node hands out the seeder.
        var replies: [DHTNodeReply] = []
        let found = try await eventually(.seconds(40)) {
            replies = try await engine.dhtGetPeers(infoHash: fixture.infoHash, timeout: .seconds(5))
            return replies.contains { $0.peers.contains(seeder) }
        }
        #expect(found, "no DHT node returned the seeder; replies: \(replies.map { "\($0.node) answered=\($0.answered) peers=\($0.peers) closer=\($0.closerNodes.map(\.endpoint))" })")
        let answered = replies.filter(\.answered)
        #expect(!answered.isEmpty)
        #expect(answered.allSatisfy { $0.nodeID.count == 20 && $0.nodeID.contains { $0 != 0 } })
        #expect(Set(answered.map(\.node.port)).isSubset(of: Set(dht.nodes.map(\.port))))

        // A magnet with no peers and no trackers: the engine finds the seeder with get_peers.
        let magnet = "magnet:?xt=urn:btih:\(fixture.infoHash)"
        let got = try await collect(try await engine.stream(magnet))
        #expect(try sha256(got.data, scratch: scratch.url) == sha256(try fixture.contents(ofFile: 0), scratch: scratch.url))
        #expect(got.progress.first == .torrent && got.progress.contains(.dhtReady) && got.progress.last == .start)

        // Read-only and announce-free: no node ever lists our listen port for this info-hash.
        let ourPort = UInt16(await engine.listenPort)
        try await Task.sleep(for: .seconds(3))
        let after = try await engine.dhtGetPeers(infoHash: fixture.infoHash, timeout: .seconds(5))
        #expect(!after.flatMap(\.peers).isEmpty)
        #expect(!after.flatMap(\.peers).contains { $0.port == ourPort }, "the DHT learned about us")
        #expect(try await engine.sessionStats().payloadUploaded == 0)
        await engine.shutdown()
    }
}
