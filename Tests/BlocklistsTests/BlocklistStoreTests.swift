import Foundation
import NetBasics
import TestSupport
import Testing
@testable import Blocklists

/// A settable clock for expiry tests.
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current: Date
    init(_ start: Date) { current = start }
    var now: Date { lock.withLock { current } }
    func advance(_ seconds: TimeInterval) { lock.withLock { current += seconds } }
}

/// Records every filter pushed to it, as a libtorrent session would apply it.
final class RecordingSink: IPFilterSink, @unchecked Sendable {
    private let lock = NSLock()
    private var pushes: [IPRangeSet] = []
    var failNext = false
    func replaceIPFilter(_ ranges: IPRangeSet) async throws {
        try lock.withLock {
            if failNext { failNext = false; throw CocoaError(.featureUnsupported) }
            pushes.append(ranges)
        }
    }
    var all: [IPRangeSet] { lock.withLock { pushes } }
    var last: IPRangeSet? { all.last }
}

func writeFile(_ dir: TemporaryDirectory, _ name: String, _ text: String) throws -> String {
    let url = dir.url.appendingPathComponent(name)
    try text.write(to: url, atomically: true, encoding: .utf8)
    return url.path
}

@Suite struct BlocklistStoreTests {
    @Test func everythingSurvivesReopen() async throws {
        let dir = try TemporaryDirectory("blocklist-db")
        let dbPath = dir.url.appendingPathComponent("f.sqlite").path
        let list = try writeFile(dir, "level1.p2p", "Org A:1.0.0.0-1.0.0.255\nOrg B:1.0.0.128-1.0.1.10\nnope\nV6:2001:db8::-2001:db8::ff\n")
        let clock = TestClock(t0)
        var salt: [UInt8] = []
        var tagged = TorrentTag(hex: "")
        do {
            let service = try BlocklistService(store: try BlocklistStore(path: dbPath), now: { clock.now })
            let report = try await service.importList(from: try BlocklistSource(list))
            #expect(report.list.name == "level1" && report.list.rangeCount == 2 && report.mergedAway == 1)
            #expect(report.issues.map(\.line) == [3] && report.list.badLines == 1)
            tagged = await service.torrentTag(for: realHash)
            try await service.record([Detection(address: IPAddress("9.9.9.9")!, port: 6881, reason: .sybilNodeID, detail: "x",
                                                detectedAt: t0, torrent: tagged, expiresAt: t0 + 3600)])
            salt = try service.store.salt()
        }
        // A new store on the same file: as after a daemon restart.
        let store = try BlocklistStore(path: dbPath)
        #expect(try store.salt() == salt && salt.count == 32)
        let lists = try store.lists()
        #expect(lists.count == 1 && lists[0].source == list && lists[0].format == .p2p && lists[0].ipv4Addresses == 267)
        #expect(lists[0].importedAt == t0 && lists[0].ipv6Ranges == 1)
        let m = try store.matches(IPAddress("1.0.1.5")!)
        #expect(m.count == 1 && m[0].label == "Org A | Org B" && m[0].range.description == "1.0.0.0-1.0.1.10")
        #expect(try store.matches(IPAddress("1.0.1.11")!).isEmpty)
        #expect(try store.matches(IPAddress("2001:db8::80")!).first?.label == "V6")
        let spies = try store.spies(activeAt: t0 + 10)
        #expect(spies.count == 1 && spies[0].reason == .sybilNodeID && spies[0].torrent == tagged && spies[0].port == 6881)
        #expect(spies[0].expiresAt == t0 + 3600)
        #expect(try store.spies(activeAt: t0 + 3600).isEmpty)
    }

    @Test func largeListsRoundTripThroughBatchedInserts() throws {
        let store = try BlocklistStore()
        // 64-row batches plus a partial one; labels with quotes and non-ASCII survive.
        let entries = try (0..<203).map { i in
            BlocklistEntry(range: try IPRange(IPAddress(ipv4: UInt32(i) * 16), IPAddress(ipv4: UInt32(i) * 16 + 7)),
                           label: "Org \(i) «'\"»")
        }
        let parsed = ParsedBlocklist(format: .p2p, entries: entries, issues: [], allowedLines: 0, wasGzipped: false)
        let info = try store.saveList(name: "big", source: "x", parsed: parsed, merged: entries, now: t0)
        #expect(info.rangeCount == 203 && info.ipv4Addresses == 203 * 8)
        #expect(try store.entries(list: "big").map(\.entry) == entries)
        #expect(try store.allRanges().count == 203)
    }

    @Test func reimportRefreshesAndAFailedImportKeepsTheOldList() async throws {
        let dir = try TemporaryDirectory("blocklist-refresh")
        let clock = TestClock(t0)
        let service = try BlocklistService(store: try BlocklistStore(), now: { clock.now })
        let path = try writeFile(dir, "l.txt", "10.0.0.0/8\n")
        _ = try await service.importList(from: try BlocklistSource(path), name: "mine")
        clock.advance(60)
        try "11.0.0.0/8\n".write(toFile: path, atomically: true, encoding: .utf8)
        let again = try await service.importList(from: try BlocklistSource(path), name: "mine")
        #expect(again.list.importedAt == t0 && again.list.refreshedAt == t0 + 60)
        let newBlocked = try await service.isBlocked(IPAddress("11.1.1.1")!)
        let oldBlocked = try await service.isBlocked(IPAddress("10.1.1.1")!)
        #expect(newBlocked && !oldBlocked)
        try "garbage only\n".write(toFile: path, atomically: true, encoding: .utf8)
        await #expect(throws: BlocklistError.self) { try await service.importList(from: try BlocklistSource(path), name: "mine") }
        let stillBlocked = try await service.isBlocked(IPAddress("11.1.1.1")!)
        #expect(stillBlocked)
        await #expect(throws: BlocklistError.invalidName("")) { try await service.importList(from: try BlocklistSource(path), name: "") }
        #expect(try await service.removeList(named: "mine"))
        #expect(!(try await service.removeList(named: "mine")))
        let afterRemove = try await service.isBlocked(IPAddress("11.1.1.1")!)
        #expect(!afterRemove)
    }

    @Test func sinksReceiveTheUnionOnRegisterImportDetectionAndExpiry() async throws {
        let dir = try TemporaryDirectory("blocklist-sink")
        let clock = TestClock(t0)
        let service = try BlocklistService(store: try BlocklistStore(), now: { clock.now })
        let a = RecordingSink(), b = RecordingSink()
        try await service.register(a)
        try await service.register(b)
        #expect(a.all == [IPRangeSet()])
        _ = try await service.importList(from: try BlocklistSource(try writeFile(dir, "x.p2p", "X:127.0.0.2-127.0.0.2\n")))
        #expect(a.last?.contains(IPAddress("127.0.0.2")!) == true && a.last?.contains(IPAddress("127.0.0.3")!) == false)
        // A failing session does not keep the others stale.
        a.failNext = true
        _ = try await service.peerEvent(.hashFailure, from: ep("127.0.0.3:6881"), infohash: realHash)
        let d = try await service.peerEvent(.hashFailure, from: ep("127.0.0.3:6881"), infohash: realHash)
        #expect(d?.reason == .hashFailures)
        #expect(b.last?.ranges.map(\.description) == ["127.0.0.2-127.0.0.3"])
        #expect(a.all.count == 2 && b.all.count == 3)
        let check = try await service.check(IPAddress("127.0.0.3")!)
        #expect(check.isBlocked && check.lists.isEmpty && check.spies.first?.reason == .hashFailures)
        // Three days later the hash-failure verdict lapses and the sessions are told.
        clock.advance(3 * 86_400 + 1)
        #expect(try await service.expire() == 1)
        #expect(b.last?.ranges.map(\.description) == ["127.0.0.2"])
        await service.unregister(a)
        _ = try await service.removeList(named: "x")
        #expect(b.last?.isEmpty == true && a.all.count == 3)
    }

    @Test func aRunningServiceSeesListsImportedByAnotherProcess() async throws {
        let dir = try TemporaryDirectory("blocklist-2proc")
        let dbPath = dir.url.appendingPathComponent("f.sqlite").path
        let daemon = try BlocklistService(store: try BlocklistStore(path: dbPath))
        let cli = try BlocklistService(store: try BlocklistStore(path: dbPath))  // a second connection, as the CLI has
        let sink = RecordingSink()
        try await daemon.register(sink)
        #expect(try await daemon.syncWithStore() == false)
        let maintenance = Task { await daemon.maintain(poll: .milliseconds(20)) }
        defer { maintenance.cancel() }
        _ = try await cli.importList(from: try BlocklistSource(try writeFile(dir, "x.txt", "127.0.0.2\n2001:db8::/126\n")))
        let deadline = ContinuousClock.now + .seconds(10)
        while sink.last?.contains(IPAddress("127.0.0.2")!) != true && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let filter = try #require(sink.last)
        #expect(filter.contains(IPAddress("127.0.0.2")!))
        #expect(filter.ipv4Pairs.map { $0.first } == [0x7F00_0002] && filter.ipv6Pairs.count == 1)
        #expect(filter.ipv6Pairs.first?.last == IPAddress("2001:db8::3")!.bytes)
        maintenance.cancel()
        await maintenance.value
        #expect(try await daemon.syncWithStore() == false)
    }
}
