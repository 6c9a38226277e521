@testable import Facilitator
import Foundation
import NIOCore
import Testing
import TestSupport
@testable import TorrentEngine

/// What info and data queries leave behind for the next query is bounded (TorrentContentSource).
@Suite struct IdleTorrentsTests {
    final class Closed: @unchecked Sendable {
        private let lock = NSLock()
        private var ids: [UInt64] = []
        func add(_ id: TorrentID) { lock.withLock { ids.append(id.raw) } }
        var list: [UInt64] { lock.withLock { ids } }
    }

    /// Evictions and expiries release on a task of their own: wait for what the test expects (no
    /// fixed sleep, which a loaded machine can outlast).
    func settle(_ done: () -> Bool) async throws {
        _ = await eventually { done() }
    }

    @Test func oneHoldPerNameAndRepeatedInfoQueriesOnlyExtendIt() async throws {
        let closed = Closed()
        let idle = IdleTorrents(capacity: 4) { closed.add($0) }
        idle.putHold("a", TorrentID(raw: 1), for: .seconds(60))
        #expect(idle.refreshHold("a", for: .seconds(60)))
        #expect(!idle.refreshHold("b", for: .seconds(60)))
        idle.putHold("a", TorrentID(raw: 2), for: .seconds(60))  // a racing second hold replaces the first
        try await settle { closed.list.count >= 1 }
        #expect(idle.count == 1)
        #expect(closed.list == [1])
        #expect(idle.takeHold("a") == TorrentID(raw: 2))
        #expect(idle.takeHold("a") == nil)
    }

    @Test func manyNamesKeepAtMostCapacityOldestEvictedFirst() async throws {
        let closed = Closed()
        let idle = IdleTorrents(capacity: 4) { closed.add($0) }
        for i in 1...16 { idle.putHold("name\(i)", TorrentID(raw: UInt64(i)), for: .seconds(60)) }
        try await settle { closed.list.count >= 12 }
        #expect(idle.count == 4)
        #expect(closed.list.sorted() == Array(1...12))
        // The newest four are still there.
        for i in 13...16 { #expect(idle.takeHold("name\(i)") == TorrentID(raw: UInt64(i))) }
    }

    /// Two requesters fetching one torrent each park their own stream (same name, other position);
    /// a stream parked at the same position replaces the one there.
    @Test func oneParkedStreamPerNameAndPositionSharingTheCapWithHolds() async throws {
        let closed = Closed()
        let idle = IdleTorrents(capacity: 3) { closed.add($0) }
        idle.putHold("a", TorrentID(raw: 1), for: .seconds(60))
        idle.park("b", reader(at: 100), for: .seconds(60))
        idle.park("b", reader(at: 200), for: .seconds(60))  // another requester of "b"
        #expect(idle.count == 3)
        idle.park("b", reader(at: 200), for: .seconds(60))  // replaces the one at 200
        #expect(idle.count == 3)
        #expect(try #require(idle.takeParked("b", at: 100)).position == 100)
        #expect(try #require(idle.takeParked("b", at: 200)).position == 200)
        #expect(idle.takeParked("b", at: 200) == nil, "the replaced stream at 200 is gone")
        idle.park("c", reader(at: 0), for: .seconds(60))
        idle.park("d", reader(at: 0), for: .seconds(60))
        idle.park("e", reader(at: 0), for: .seconds(60))  // the cap: the hold of "a", the oldest, goes
        try await settle { closed.list.count >= 1 }
        #expect(idle.count == 3)
        #expect(closed.list == [1])
        #expect(idle.takeHold("a") == nil)
    }

    @Test func evictOldestFreesRoomForALiveQueryAndEntriesExpire() async throws {
        let closed = Closed()
        let clock = ManualClock()
        let idle = IdleTorrents(capacity: 8, clock: clock) { closed.add($0) }
        idle.putHold("a", TorrentID(raw: 1), for: .seconds(60))
        idle.putHold("b", TorrentID(raw: 2), for: .milliseconds(20))
        #expect(await idle.evictOldest())
        #expect(closed.list == [1])
        try await settle { clock.sleeping == 2 }   // both lingers are timing
        clock.advance(by: .milliseconds(19))
        #expect(clock.sleeping == 2 && idle.count == 1, "nothing expires before its linger")
        clock.advance(by: .milliseconds(1))
        try await settle { idle.count == 0 && closed.list.count == 2 }
        #expect(idle.count == 0)
        #expect(closed.list == [1, 2])
        #expect(await idle.evictOldest() == false)
        clock.advance(by: .seconds(60))   // the evicted hold's linger ends too, releasing nothing more
        try await settle { clock.sleeping == 0 }
        #expect(closed.list == [1, 2])
    }

    private func reader(at position: UInt64) -> RangeReader {
        let (stream, _) = AsyncThrowingStream<TorrentStreamEvent, Error>.makeStream()
        return RangeReader(iterator: stream.makeAsyncIterator(), torrent: TorrentID(raw: 99), size: 1000,
                           mimeType: "application/octet-stream", position: position)
    }
}
