import Foundation
import Testing
import TestSupport
@testable import TorrentEngine

struct PieceAlreadyRelayedErrorTests {
    @Test func pieceAlreadyRelayedIsRecognisedByType() {
        let e = TorrentEngineError.pieceAlreadyRelayed(infoHash: String(repeating: "ab", count: 20), piece: 4)
        #expect(e.isPieceAlreadyRelayed)
        #expect(e.description.contains("piece 4") && e.description.contains("already relayed"))
        #expect(!TorrentEngineError.torrentFailed(infoHash: "x", reason: "disk full").isPieceAlreadyRelayed)
        #expect(!TorrentEngineError.stalled(infoHash: "x", piece: 4, seconds: 1).isPieceAlreadyRelayed)
    }
}

@Suite(.serialized)
struct TorrentRelayedPieceTests {
    /// A second stream asking for a piece the first already relayed (and dropped) while the first
    /// still holds the torrent ends with `isPieceAlreadyRelayed`; once the first has ended, the
    /// same range streams again.
    @Test(.privateNetwork)
    func secondStreamOverARelayedPieceGetsTheTypedError() async throws {
        let scratch = try TemporaryDirectory("torrent-relayed")
        let fixture = try TorrentFixture(in: scratch.url, name: "relayed.bin", size: 2_000_000, pieceKiB: 32, seed: 79)
        let seeder = try await Seeder.start(.libtorrent, seeding: fixture, directory: scratch.url)
        defer { seeder.stop() }
        let engine = try makeEngine(scratch.url) { $0.maxReadAheadPieces = 2; $0.chunkSize = 16 * 1024 }
        let want = try fixture.contents(ofFile: 0)

        var first: AsyncThrowingStream<TorrentStreamEvent, Error>.Iterator? =
            try await engine.stream(fixture.magnet, peers: [seeder.endpoint]).makeAsyncIterator()
        var received = 0
        while received <= 2 * fixture.pieceLength, let event = try await first?.next() {
            if case .data(let d) = event { received += d.count }
        }
        do {
            _ = try await collect(try await engine.stream(fixture.magnet, length: 1000, peers: [seeder.endpoint]))
            Issue.record("piece 0 was streamed twice while the first stream held the torrent")
        } catch let e as TorrentEngineError {
            #expect(e.isPieceAlreadyRelayed, "\(e)")
        }
        first = nil
        #expect(await eventually(.seconds(10)) { await engine.openTorrents.isEmpty })
        let again = try await collect(try await engine.stream(fixture.magnet, length: 1000, peers: [seeder.endpoint]))
        #expect(again.data == want.prefix(1000))
        await engine.shutdown()
    }
}
