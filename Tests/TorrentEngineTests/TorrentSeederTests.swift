import Foundation
import NetBasics
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

    @Test(.privateNetwork)
    func torrentStreamsRangesFromAria2ByMagnet() async throws {
        try await streamRanges(from: .aria2)
    }

    @Test(.privateNetwork)
    func torrentStreamsRangesFromTransmissionByMagnet() async throws {
        try await streamRanges(from: .transmission)
    }

    @Test(.privateNetwork)
    func torrentStreamsRangesFromLibtorrentByMagnet() async throws {
        try await streamRanges(from: .libtorrent)
    }

    /// A hybrid v1+v2 multi-file torrent (pad files between files, SHA-256 block hashes checked by
    /// the in-memory store) from a libtorrent seeder: each file byte-identical.
    @Test(.privateNetwork)
    func torrentStreamsHybridV2TorrentFiles() async throws {
        let scratch = try TemporaryDirectory("torrent-hybrid")
        let fixture = try TorrentFixture(in: scratch.url, name: "hybrid", files: [
            ("one.bin", 300_000), ("two.mkv", 1_000_001), ("three.txt", 5_000),
        ], pieceKiB: 64, hybrid: true, seed: 2020)
        let seeder = try await Seeder.start(.libtorrent, seeding: fixture, directory: scratch.url)
        defer { seeder.stop() }
        let engine = try makeEngine(scratch.url)
        let (id, metadata) = try await engine.open(fixture.magnet, peers: [seeder.endpoint])
        #expect(metadata.files.contains { $0.isPadding }, "a hybrid torrent aligns files with pad files")
        for (index, file) in fixture.files.enumerated() where !file.path.contains(".pad") {
            let got = try await collect(try await engine.stream(fixture.magnet, fileIndex: index, peers: [seeder.endpoint]))
            #expect(got.info?.fileName == file.path)
            #expect(try sha256(got.data, scratch: scratch.url) == sha256(try fixture.contents(ofFile: index), scratch: scratch.url),
                    "\(file.path)")
        }
        await engine.close(id)
        #expect(try await engine.sessionStats().payloadUploaded == 0)
        await engine.shutdown()
    }
}

@Suite(.serialized)
struct TorrentTrackerTests {
    /// One file of a multi-file torrent, peers found through opentracker (aria2c announces there).
    @Test(.privateNetwork)
    func torrentStreamsOneFileOfMultiFileTorrentViaOpentracker() async throws {
        let scratch = try TemporaryDirectory("torrent-multi")
        // The announce URL is fixed before the tracker runs: the info-hash does not depend on it.
        let trackerPort = freePort()
        let announce = "http://127.0.0.1:\(trackerPort)/announce"
        let fixture = try TorrentFixture(in: scratch.url, name: "album", files: [
            ("a-readme.txt", 150_000), ("movie.webm", 1_200_000), ("notes.srt", 40_000),
        ], pieceKiB: 32, tracker: announce, seed: 77)
        let tracker = try await LocalTracker(directory: scratch.url, infoHashes: [fixture.infoHash], port: trackerPort)
        defer { tracker.stop() }
        #expect(fixture.magnet.contains("tr="))
        let seeder = try await Seeder.start(.aria2, seeding: fixture, directory: scratch.url)
        defer { seeder.stop() }
        let engine = try makeEngine(scratch.url) { $0.useTrackers = true }

        // Default: the largest file, no peer given (the tracker names the seeder).
        let largest = try await collect(try await engine.stream(fixture.magnet))
        let movie = try #require(fixture.files.firstIndex { $0.path.hasSuffix("movie.webm") })
        #expect(largest.info?.fileIndex == movie)
        #expect(largest.info?.mimeType == "video/webm")
        #expect(try sha256(largest.data, scratch: scratch.url) == sha256(try fixture.contents(ofFile: movie), scratch: scratch.url))

        // A chosen small file whose bytes start and end inside pieces shared with other files.
        let notes = try #require(fixture.files.firstIndex { $0.path.hasSuffix("notes.srt") })
        let got = try await collect(try await engine.stream(fixture.magnet, fileIndex: notes))
        #expect(got.info?.fileName.hasSuffix("notes.srt") == true)
        #expect(got.info?.mimeType == "application/x-subrip")
        #expect(try sha256(got.data, scratch: scratch.url) == sha256(try fixture.contents(ofFile: notes), scratch: scratch.url))
        #expect(try await engine.sessionStats().payloadUploaded == 0)
        await engine.shutdown()
    }
}

@Suite(.serialized)
struct TorrentFreeRiderTests {
    /// A plain libtorrent leecher connected only to us, while we hold the whole file and after the
    /// seeder has left, gets no payload; our upload counters stay at 0. The engine's data
    /// directory holds no content bytes afterwards.
    @Test(.privateNetwork)
    func torrentFreeRiderUploadsNothingAndWritesNothing() async throws {
        let scratch = try TemporaryDirectory("torrent-freerider")
        let fixture = try TorrentFixture(in: scratch.url, name: "freeride.bin", size: 2 * 1024 * 1024 + 777,
                                         pieceKiB: 64, seed: 4242)
        let seeder = try await Seeder.start(.aria2, seeding: fixture, directory: scratch.url)
        let leecher = try await ProbeLeecher(torrent: fixture, directory: scratch.url)
        defer { leecher.stop() }
        let dataDir = scratch.url.appendingPathComponent("engine-data")
        let engine = try makeEngine(scratch.url)

        // Hold the torrent open past the stream, so the leecher can ask for every piece we have.
        let (id, _) = try await engine.open(fixture.magnet, peers: [seeder.endpoint])
        try await engine.connectPeer(id, PeerEndpoint(host: leecher.host, port: leecher.port))
        let got = try await collect(try await engine.stream(fixture.magnet, peers: [seeder.endpoint]))
        #expect(try sha256(got.data, scratch: scratch.url) == sha256(try fixture.contents(ofFile: 0), scratch: scratch.url))
        seeder.stop()

        // The leecher must have seen us and wanted our pieces, or the 0 below would prove nothing.
        let ourPort = UInt16(await engine.listenPort)
        let sawUs = await eventually(.seconds(20)) {
            let r = try? leecher.report()
            return r?.peers.contains { $0.weInterested && $0.piecesTheyHave == fixture.pieceCount } ?? false
        }
        #expect(sawUs, "the leecher never saw our full bitfield/HAVEs")
        try await Task.sleep(for: .seconds(6))   // time for requests (which we must refuse)
        let report = try leecher.report()
        #expect(report.payloadDown == 0, "leecher received \(report.payloadDown) payload bytes")
        #expect(report.peers.allSatisfy { $0.down == 0 })
        let ours = try await engine.peers(id).filter { $0.endpoint.port == leecher.port }
        #expect(!ours.isEmpty, "still connected to the leecher")
        #expect(ours.allSatisfy { $0.weChoke && $0.payloadUploaded == 0 })
        let stats = try await engine.sessionStats()
        #expect(stats.payloadUploaded == 0)
        #expect(stats.payloadDownloaded >= Int64(fixture.totalSize))
        _ = ourPort

        // Disk proof: nothing of the content was ever written under the engine's data directory.
        let disk = bytesOnDisk(dataDir)
        #expect(disk.bytes == 0 && disk.files.isEmpty, "found on disk: \(disk.files)")
        // While the torrent is held, pieces nobody needs may stay in memory (retained for a late
        // reader), within the budget; once it goes, they leave memory too.
        let budget = Int64(TorrentEngineSettings().memoryBudget)
        #expect(stats.storeBytes <= budget, "pieces held: \(stats.storeBytes) bytes")
        #expect(stats.storePeakBytes > 0 && stats.storePeakBytes <= budget + 64 * 1024)
        await engine.close(id)
        #expect(await engine.openTorrents.isEmpty)
        let emptied = await eventually(.seconds(5)) { (try? await engine.sessionStats().storeBytes) == 0 }
        let left = (try? await engine.sessionStats().storeBytes) ?? -1
        #expect(emptied, "pieces still held after the torrent went: \(left) bytes")
        await engine.shutdown()
    }
}

/// Collects peer events in the background.
actor EventLog {
    var events: [PeerEvent] = []
    func add(_ e: PeerEvent) { events.append(e) }
}

@Suite(.serialized)
struct TorrentIPFilterTests {
    /// A seeder inside the IP filter (on a loopback address of its own) is never connected; the one
    /// on 127.0.0.1 serves.
    @Test(.privateNetwork)
    func torrentBlockedSeederIsNeverConnected() async throws {
        let scratch = try TemporaryDirectory("torrent-ipfilter")
        let blockedHost = Loopback.address()
        let fixture = try TorrentFixture(in: scratch.url, name: "filtered.bin", size: 1_000_000, pieceKiB: 32, seed: 9)
        let blocked = try await Seeder.start(.libtorrent, seeding: fixture, host: blockedHost, directory: scratch.url)
        defer { blocked.stop() }
        let allowed = try await Seeder.start(.aria2, seeding: fixture, directory: scratch.url)
        defer { allowed.stop() }
        let engine = try makeEngine(scratch.url)
        let log = EventLog()
        let collector = Task { for await e in engine.peerEvents { await log.add(e) } }
        try await engine.replaceIPFilter([IPRange(IPAddress(blockedHost)!), try IPRange(parsing: "fd00::-fd00::ffff")])
        await #expect(throws: TorrentEngineError.self) {
            // Reversed: `IPRange` refuses to build it; libtorrent must refuse it too when handed one.
            try await engine.replaceIPFilter([IPRange(unchecked: IPAddress("10.0.0.9")!, IPAddress("10.0.0.1")!)])
        }

        let got = try await collect(try await engine.stream(fixture.magnet, peers: [blocked.endpoint, allowed.endpoint]))
        #expect(try sha256(got.data, scratch: scratch.url) == sha256(try fixture.contents(ofFile: 0), scratch: scratch.url))
        let seenBlock = await eventually(.seconds(5)) { await log.events.contains { $0.kind == .blocked && $0.address == blockedHost } }
        collector.cancel()
        #expect(seenBlock, "a blocked event names \(blockedHost)")
        #expect(await engine.peerCounters(blockedHost).connected == 0)
        #expect(await engine.peerCounters(blockedHost).blocked >= 1)
        #expect(await engine.peerCounters("127.0.0.1").connected >= 1)
        #expect(await log.events.contains { $0.kind == .connected && $0.address == "127.0.0.1" })
        await engine.shutdown()
    }
}

