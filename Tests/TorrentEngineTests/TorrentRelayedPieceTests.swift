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
    /// A second stream asking for a piece the first already relayed (and dropped, the budget having
    /// no room to retain it) while the first still holds the torrent ends with
    /// `isPieceAlreadyRelayed`; once the first has ended, the same range streams again.
    @Test(.privateNetwork)
    func secondStreamOverARelayedPieceGetsTheTypedError() async throws {
        let scratch = try TemporaryDirectory("torrent-relayed")
        let fixture = try TorrentFixture(in: scratch.url, name: "relayed.bin", size: 2_000_000, pieceKiB: 32, seed: 79)
        let seeder = try await Seeder.start(.libtorrent, seeding: fixture, directory: scratch.url)
        defer { seeder.stop() }
        // A budget the two-piece window fills: nothing read can be retained for a late stream.
        let engine = try makeEngine(scratch.url) {
            $0.maxReadAheadPieces = 2; $0.chunkSize = 16 * 1024; $0.memoryBudget = 2 * fixture.pieceLength
        }
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

    /// With room in the budget, a stream that starts at piece 0 after another has read past it is
    /// served from the pieces retained in memory: byte-exact, with nothing fetched twice.
    @Test(.privateNetwork)
    func aLateStreamIsServedFromRetainedPieces() async throws {
        let scratch = try TemporaryDirectory("torrent-retained")
        let fixture = try TorrentFixture(in: scratch.url, name: "retained.bin", size: 2_000_000, pieceKiB: 32, seed: 80)
        let seeder = try await Seeder.start(.libtorrent, seeding: fixture, directory: scratch.url)
        defer { seeder.stop() }
        let engine = try makeEngine(scratch.url) { $0.maxReadAheadPieces = 2; $0.chunkSize = 16 * 1024 }
        let want = try fixture.contents(ofFile: 0)
        var first: AsyncThrowingStream<TorrentStreamEvent, Error>.Iterator? =
            try await engine.stream(fixture.magnet, peers: [seeder.endpoint]).makeAsyncIterator()
        var id: TorrentID?
        var received = 0
        while received <= 4 * fixture.pieceLength, let event = try await first?.next() {
            if case .data(let d) = event { received += d.count }
            if case .ready(let info) = event { id = info.torrent }
        }
        let downloadedBefore = try await engine.stats(try #require(id)).payloadDownloaded
        let late = try await collect(try await engine.stream(fixture.magnet, length: 200_000, peers: [seeder.endpoint]))
        #expect(late.data == want.prefix(200_000))
        let downloadedAfter = try await engine.stats(try #require(id)).payloadDownloaded
        #expect(downloadedAfter - downloadedBefore <= Int64(2 * fixture.pieceLength),
                "the late stream's pieces came from memory, not the swarm again")
        first = nil
        await engine.shutdown()
    }
}
