import Foundation
import Testing
import TestSupport
@testable import TorrentEngine

/// Our engine against seeders that are not ours, on loopback in a private network namespace.
@Suite(.serialized)
struct TorrentSeederTests {
    /// The three range shapes every seeder must serve identically: the whole file, a range in the
    /// middle crossing piece boundaries, and the last partial piece.
    func streamRanges(from kind: Seeder.Kind) async throws {
        let scratch = try TemporaryDirectory("torrent-\(kind.rawValue)")
        // 64 KiB pieces, size not a multiple of the piece: the last piece is partial.
        let fixture = try TorrentFixture(in: scratch.url, name: "clip-\(kind.rawValue).mp4",
                                         size: 3 * 1024 * 1024 + 12_345, pieceKiB: 64, seed: UInt64(kind.rawValue.count))
        let seeder = try await Seeder.start(kind, seeding: fixture, directory: scratch.url)
        defer { seeder.stop() }
        let engine = try makeEngine(scratch.url)
        let original = try fixture.contents(ofFile: 0)
        let size = Int64(original.count)
        let lastPieceStart = Int64(fixture.pieceCount - 1) * Int64(fixture.pieceLength)
        let cases: [(String, Int64, Int64?)] = [
            ("whole file", 0, nil),
            ("middle", 100_000, 1_000_000),
            ("last partial piece", lastPieceStart, size - lastPieceStart),
        ]
        for (label, offset, length) in cases {
            let got = try await collect(try await engine.stream(fixture.magnet, offset: offset, length: length,
                                                                  peers: [seeder.endpoint]))
            let want = original.subdata(in: Int(offset)..<Int(offset + (length ?? size - offset)))
            #expect(got.data.count == want.count, "\(kind) \(label): length")
            #expect(try sha256(got.data, scratch: scratch.url) == sha256(want, scratch: scratch.url), "\(kind) \(label): SHA-256")
            #expect(got.info?.mimeType == "video/mp4")
            #expect(got.info?.fileSize == size)
            #expect(got.progress.contains(.torrent) && got.progress.contains(.start))
        }
        let stats = try await engine.sessionStats()
        #expect(stats.payloadUploaded == 0)
        #expect(await engine.openTorrents.isEmpty, "the torrent is dropped once its stream ends")
        await engine.shutdown()
    }

    @Test(.enabled(if: PrivateNetwork.isPrivate, PrivateNetwork.skipReason))
    func torrentStreamsRangesFromAria2ByMagnet() async throws {
        try await streamRanges(from: .aria2)
    }

    @Test(.enabled(if: PrivateNetwork.isPrivate, PrivateNetwork.skipReason))
    func torrentStreamsRangesFromTransmissionByMagnet() async throws {
        try await streamRanges(from: .transmission)
    }
}
