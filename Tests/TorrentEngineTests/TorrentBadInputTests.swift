import Foundation
import Testing
import TestSupport
@testable import TorrentEngine

@Suite(.serialized)
struct TorrentBadInputTests {
    @Test(.privateNetwork)
    func torrentMalformedNamesAreRefused() async throws {
        let scratch = try TemporaryDirectory("torrent-bad")
        let engine = try makeEngine(scratch.url)
        for bad in ["", "abc", String(repeating: "g", count: 40), String(repeating: "a", count: 39),
                    "magnet:?dn=nohash", "magnet:?xt=urn:btih:xyz", "http://example.invalid/x.torrent"] {
            await #expect(throws: TorrentEngineError.self, "\(bad)") { _ = try await engine.stream(bad) }
        }
        do {
            _ = try await engine.stream("magnet:?xt=urn:btih:nothex")
            Issue.record("accepted a malformed magnet")
        } catch let e as TorrentEngineError {
            guard case .invalidHashName = e else { Issue.record("wrong error \(e)"); return }
        }
        await #expect(throws: TorrentEngineError.self) {
            _ = try await engine.open(torrentFile: Array("d4:infod4:name1:xee".utf8))
        }
        #expect(await engine.openTorrents.isEmpty)
        await engine.shutdown()
    }

    @Test(.privateNetwork)
    func torrentUnknownInfoHashTimesOut() async throws {
        let scratch = try TemporaryDirectory("torrent-timeout")
        let engine = try makeEngine(scratch.url) { $0.metadataTimeout = .seconds(2) }
        let started = ContinuousClock.now
        var progress: [TorrentProgress] = []
        do {
            for try await e in try await engine.stream(String(repeating: "ab", count: 20)) {
                if case .progress(let p) = e { progress.append(p) }
            }
            Issue.record("a torrent nobody has produced a stream")
        } catch let e as TorrentEngineError {
            guard case .metadataTimeout = e else { Issue.record("wrong error \(e)"); return }
        }
        let elapsed = ContinuousClock.now - started
        #expect(elapsed >= .seconds(2) && elapsed < .seconds(10))
        #expect(progress == [.torrent])
        #expect(await engine.openTorrents.isEmpty)
        await engine.shutdown()
    }

    @Test(.privateNetwork)
    func torrentRangePastEndAndRemovalMidStream() async throws {
        let scratch = try TemporaryDirectory("torrent-range")
        let fixture = try TorrentFixture(in: scratch.url, name: "range.bin", size: 4 * 1024 * 1024, pieceKiB: 64, seed: 31)
        let seeder = try await Seeder.start(.aria2, seeding: fixture, directory: scratch.url)
        defer { seeder.stop() }
        let engine = try makeEngine(scratch.url) { $0.chunkSize = 16 * 1024; $0.maxReadAheadPieces = 4 }
        let size = fixture.totalSize

        for (offset, length) in [(size, Int64?.none), (size + 10, nil), (size - 10, Int64(11)), (0, size + 1)] {
            do {
                _ = try await collect(try await engine.stream(fixture.magnet, offset: offset, length: length,
                                                              peers: [seeder.endpoint]))
                Issue.record("range \(offset)+\(String(describing: length)) past the end was served")
            } catch let e as TorrentEngineError {
                guard case .rangeNotSatisfiable(_, _, let fileSize) = e else { Issue.record("wrong error \(e)"); continue }
                #expect(fileSize == size)
            }
        }
        await #expect(throws: TorrentEngineError.self) { _ = try await engine.stream(fixture.magnet, offset: -1) }

        // Removal mid-stream: the consumer gets an error, not a hang or a crash.
        var it = try await engine.stream(fixture.magnet, peers: [seeder.endpoint]).makeAsyncIterator()
        var id: TorrentID?
        var received = 0
        while id == nil || received < 3 {
            switch try await it.next() {
            case .ready(let info)?: id = info.torrent
            case .data?: received += 1
            case .progress?: break
            case nil: Issue.record("stream ended early"); return
            }
        }
        await engine.remove(try #require(id))
        do {
            while try await it.next() != nil {}
            Issue.record("stream finished normally after its torrent was removed")
        } catch let e as TorrentEngineError {
            guard case .torrentRemoved = e else { Issue.record("wrong error \(e)"); return }
        }

        // Cancelling the consumer stops the work and drops the torrent.
        let consumer = Task {
            var n = 0
            for try await e in try await engine.stream(fixture.magnet, peers: [seeder.endpoint]) {
                if case .data = e { n += 1; try await Task.sleep(for: .milliseconds(200)) }
            }
            return n
        }
        try await Task.sleep(for: .seconds(2))
        consumer.cancel()
        _ = try? await consumer.value
        #expect(await eventually(.seconds(5)) { await engine.openTorrents.isEmpty })
        // libtorrent frees a removed torrent's storage on its own thread, a moment after the engine
        // has let the torrent go: wait (bounded) for the store to be empty.
        let storeEmptied = await eventually(.seconds(5)) { (try? await engine.sessionStats().storeBytes) == 0 }
        let stats = try await engine.sessionStats()
        #expect(storeEmptied, "\(stats.storeBytes) bytes of pieces left in memory after the torrent went")
        #expect(stats.payloadUploaded == 0)
        await engine.shutdown()
    }
}

@Suite(.serialized)
struct TorrentBackpressureTests {
    /// A slow consumer holds libtorrent back: downloads never run more than the memory budget
    /// ahead of what was consumed, and the piece store never holds more than the budget.
    @Test(.privateNetwork)
    func torrentSlowConsumerKeepsDownloadWithinMemoryBudget() async throws {
        let scratch = try TemporaryDirectory("torrent-backpressure")
        let fixture = try TorrentFixture(in: scratch.url, name: "slow.bin", size: 2 * 1024 * 1024, pieceKiB: 64, seed: 808)
        let seeder = try await Seeder.start(.aria2, seeding: fixture, directory: scratch.url)
        defer { seeder.stop() }
        let budget = 256 * 1024
        let engine = try makeEngine(scratch.url) { $0.memoryBudget = budget; $0.chunkSize = 16 * 1024 }
        var data = Data()
        var id: TorrentID?
        var worstLead: Int64 = 0
        for try await event in try await engine.stream(fixture.magnet, peers: [seeder.endpoint]) {
            switch event {
            case .ready(let info): id = info.torrent
            case .data(let chunk):
                data.append(chunk)
                try await Task.sleep(for: .milliseconds(15))
                if let id, let st = try? await engine.stats(id) {
                    worstLead = max(worstLead, st.payloadDownloaded - Int64(data.count))
                }
            case .progress: break
            }
        }
        #expect(try sha256(data, scratch: scratch.url) == sha256(try fixture.contents(ofFile: 0), scratch: scratch.url))
        // One piece of slack: the piece being consumed is counted as downloaded until released.
        #expect(worstLead <= Int64(budget + fixture.pieceLength), "downloaded \(worstLead) bytes ahead of the consumer")
        let stats = try await engine.sessionStats()
        #expect(stats.storePeakBytes <= Int64(budget + fixture.pieceLength))
        // The stream has ended, so the torrent goes; libtorrent frees its storage on its own thread.
        #expect(await eventually(.seconds(5)) { (try? await engine.sessionStats().storeBytes) == 0 })
        await engine.shutdown()
    }
}
