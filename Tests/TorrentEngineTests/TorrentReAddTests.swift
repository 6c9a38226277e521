import Foundation
import Testing
import TestSupport
@testable import TorrentEngine

@Suite(.serialized)
struct TorrentReAddTests {
    /// A torrent removed when its stream ends and added again at once (the next query of the same
    /// file) has, for a moment, two in-memory storages of the same hash. Each stream must read and
    /// release its own pieces: with a memory budget smaller than the file, releases that went to
    /// the dying storage would leave the budget full and the stream stalled.
    @Test(.privateNetwork)
    func torrentStreamedAgainRightAfterRemovalReadsItsOwnPieces() async throws {
        let scratch = try TemporaryDirectory("torrent-readd")
        let fixture = try TorrentFixture(in: scratch.url, name: "again.bin", size: 1_500_000, pieceKiB: 32, seed: 81)
        let seeder = try await Seeder.start(.libtorrent, seeding: fixture, directory: scratch.url)
        defer { seeder.stop() }
        let budget = 256 * 1024
        let engine = try makeEngine(scratch.url) {
            $0.memoryBudget = budget
            $0.chunkSize = 16 * 1024
            $0.stallTimeout = .seconds(15)
        }
        let want = try fixture.contents(ofFile: 0)
        let torrentFile = try [UInt8](Data(contentsOf: fixture.torrentURL))
        for round in 1...6 {
            // From the .torrent the metadata is there at once, so the new storage exists while the
            // old one may still be going; by magnet it comes after the metadata exchange.
            let source: TorrentSource = round % 2 == 0 ? .magnet(fixture.magnet) : .torrentFile(torrentFile)
            let got = try await collect(try await engine.stream(source: source, peers: [seeder.endpoint]))
            #expect(got.data == want, "round \(round)")
        }
        let stats = try await engine.sessionStats()
        #expect(stats.storePeakBytes <= Int64(budget + 2 * fixture.pieceLength), "peak \(stats.storePeakBytes)")
        await engine.shutdown()
    }
}
