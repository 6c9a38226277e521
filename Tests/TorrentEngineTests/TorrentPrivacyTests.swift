import Foundation
import Testing
import TestSupport
@testable import TorrentEngine

/// Errors and peer events end up in logs at default levels (the facilitator logs error
/// descriptions at info): they must not say what was asked for.
struct TorrentErrorPrivacyTests {
    @Test func errorDescriptionsDoNotNameTheTorrent() {
        let ih = "0123456789abcdef0123456789abcdef01234567"
        let errors: [TorrentEngineError] = [
            .metadataTimeout(infoHash: ih, seconds: 60), .torrentRemoved(infoHash: ih),
            .torrentFailed(infoHash: ih, reason: "disk full"), .stalled(infoHash: ih, piece: 3, seconds: 120),
        ]
        for e in errors {
            #expect(!e.description.contains(ih), "\(e.description)")
            #expect(e.infoHash == ih, "callers still get the info-hash from \(e)")
        }
        #expect(TorrentEngineError.torrentFailed(infoHash: ih, reason: "disk full").description.contains("disk full"))
        #expect(TorrentEngineError.engineStopped.infoHash == nil)
    }
}

@Suite(.serialized)
struct TorrentPrivacyTests {
    /// A real fetch and a metadata timeout: no peer event detail and no error description names
    /// the info-hash or the torrent's name.
    @Test(.privateNetwork)
    func peerEventsAndErrorsDoNotNameTheTorrent() async throws {
        let scratch = try TemporaryDirectory("torrent-privacy")
        let fixture = try TorrentFixture(in: scratch.url, name: "secret-title.bin", size: 200_000, pieceKiB: 32, seed: 78)
        let seeder = try await Seeder.start(.libtorrent, seeding: fixture, directory: scratch.url)
        defer { seeder.stop() }
        let engine = try makeEngine(scratch.url) { $0.metadataTimeout = .seconds(3) }
        let log = EventLog()
        let collector = Task { for await e in engine.peerEvents { await log.add(e) } }
        let got = try await collect(try await engine.stream("\(fixture.magnet)&dn=secret-title.bin", peers: [seeder.endpoint]))
        #expect(got.data == (try fixture.contents(ofFile: 0)))
        #expect(await eventually(.seconds(5)) { await log.events.contains { $0.kind == .disconnected } })
        let events = await log.events
        #expect(events.contains { $0.kind == .connected && $0.address == seeder.host })
        for e in events {
            #expect(!e.detail.lowercased().contains(fixture.infoHash.lowercased()) && !e.detail.contains("secret-title"), "\(e)")
        }

        let unknown = String(repeating: "cd", count: 20)
        do {
            _ = try await collect(try await engine.stream(unknown))
            Issue.record("a torrent nobody has produced a stream")
        } catch let e as TorrentEngineError {
            #expect(!e.description.contains(unknown), "\(e)")
            #expect(e.infoHash == unknown)
        }
        collector.cancel()
        await engine.shutdown()
    }
}
