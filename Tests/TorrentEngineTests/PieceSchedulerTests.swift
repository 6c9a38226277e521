import Testing
@testable import TorrentEngine

/// The piece scheduler alone: no session, no process, no clock. A small model of libtorrent
/// (`Swarm`) carries out the actions, so the tests can check what reached "libtorrent" and what
/// each stream read.
struct PieceSchedulerTests {
    typealias Action = PieceScheduler.Action

    /// 16 pieces of 100 bytes.
    static func plan(_ firstPiece: Int, _ lastPiece: Int) -> PiecePlan {
        PiecePlan(pieceLength: 100, totalSize: 1600, start: Int64(firstPiece) * 100, end: Int64(lastPiece + 1) * 100)
    }

    /// What the engine would do with the actions: deadlines libtorrent holds, pieces in memory.
    struct Swarm {
        var scheduler = PieceScheduler()
        var deadlines: [Int: Int] = [:]
        var inMemory: Set<Int> = []
        var releasedLog: [Int] = []
        var read: [PieceScheduler.StreamID: [Int]] = [:]

        mutating func apply(_ actions: [Action]) {
            for a in actions {
                switch a {
                case .setDeadline(let p, let ms): deadlines[p] = ms
                case .clearDeadline(let p): deadlines[p] = nil
                case .release(let p):
                    #expect(inMemory.remove(p) != nil, "released piece \(p) that was not in memory")
                    releasedLog.append(p)
                }
            }
        }

        mutating func open(_ id: PieceScheduler.StreamID, _ plan: PiecePlan, readAhead: Int = 3) throws {
            scheduler.addStream(id)
            apply(try scheduler.begin(id, plan: plan, readAhead: readAhead))
        }

        /// libtorrent verifies a piece (it had a deadline).
        mutating func finish(_ p: Int) {
            deadlines[p] = nil
            inMemory.insert(p)
            apply(scheduler.pieceFinished(p))
        }

        /// The stream reads its next piece if it is ready; returns the piece read.
        @discardableResult
        mutating func consume(_ id: PieceScheduler.StreamID) -> Int? {
            guard let p = scheduler.nextPiece(of: id), scheduler.isReady(p) else { return nil }
            #expect(inMemory.contains(p), "stream \(id) read piece \(p), which is not in memory")
            read[id, default: []].append(p)
            apply(scheduler.consumed(id, piece: p))
            return p
        }

        /// Finishes every deadlined piece, nearest deadline first (what a healthy swarm does).
        mutating func deliverAll() {
            while let p = deadlines.min(by: { ($0.value, $0.key) < ($1.value, $1.key) })?.key { finish(p) }
        }
    }

    @Test func inOrderDeliveryWithReadAhead() throws {
        var s = Swarm()
        try s.open(1, Self.plan(0, 9), readAhead: 3)
        #expect(s.deadlines == [0: 0, 1: 50, 2: 100], "deadlines on the first readAhead pieces, nearest first")
        // Pieces arrive out of order: the stream still reads 0 first and waits for it.
        s.finish(2)
        #expect(s.consume(1) == nil)
        s.finish(0)
        #expect(s.consume(1) == 0)
        #expect(s.releasedLog == [0], "a piece only this stream needed leaves memory once read")
        #expect(s.deadlines.keys.sorted() == [1, 3], "the window moved: piece 3 asked for, 2 is already in")
        #expect(s.consume(1) == nil, "piece 1 not verified yet")
        s.finish(1)
        #expect(s.consume(1) == 1)
        #expect(s.consume(1) == 2)
        while s.scheduler.nextPiece(of: 1) != nil {
            s.deliverAll()
            while s.consume(1) != nil {}
        }
        #expect(s.read[1] == Array(0...9))
        #expect(s.inMemory.isEmpty && s.releasedLog == Array(0...9))
        #expect(s.deadlines.isEmpty)
        // Never more than readAhead pieces asked for or held ahead of the consumer.
    }

    @Test func windowNeverRunsMoreThanReadAheadPastTheConsumer() throws {
        var s = Swarm()
        try s.open(1, Self.plan(0, 15), readAhead: 4)
        for _ in 0..<40 {
            let next = s.scheduler.nextPiece(of: 1) ?? 16
            #expect(s.deadlines.keys.allSatisfy { $0 >= next && $0 < next + 4 })
            #expect(s.inMemory.allSatisfy { $0 >= next && $0 < next + 4 })
            if let p = s.deadlines.keys.min() { s.finish(p) }
            s.consume(1)
        }
        #expect(s.read[1] == Array(0...15))
    }

    @Test func twoStreamsOnTheSameRangeBothReadEveryPiece() throws {
        var s = Swarm()
        try s.open(1, Self.plan(0, 7))
        try s.open(2, Self.plan(0, 7))
        #expect(s.deadlines == [0: 0, 1: 50, 2: 100], "the second stream asks for nothing twice")
        s.finish(0)
        #expect(s.consume(1) == 0)
        #expect(s.releasedLog.isEmpty, "stream 2 still needs piece 0")
        #expect(s.scheduler.isReady(0), "piece 0 stays readable for stream 2")
        #expect(s.consume(2) == 0)
        #expect(s.releasedLog == [0], "released once both have read it")
        for _ in 0..<20 {
            s.deliverAll()
            s.consume(1)
            s.consume(2)
        }
        #expect(s.read[1] == Array(0...7))
        #expect(s.read[2] == Array(0...7))
        #expect(s.inMemory.isEmpty)
        #expect(s.releasedLog.sorted() == Array(0...7), "each piece released exactly once")
    }

    @Test func overlappingRangesShareOnlyTheOverlap() throws {
        var s = Swarm()
        try s.open(1, Self.plan(0, 9))
        try s.open(2, Self.plan(5, 14))
        #expect(Set(s.deadlines.keys) == [0, 1, 2, 5, 6, 7])
        for _ in 0..<30 {
            s.deliverAll()
            s.consume(1)
        }
        #expect(s.read[1] == Array(0...9))
        #expect(s.releasedLog == [0, 1, 2, 3, 4], "pieces 5…9 are kept for stream 2")
        #expect(s.inMemory == [5, 6, 7, 8, 9], "stream 2's first pieces; stream 1 has ended its range")
        for _ in 0..<30 {
            s.deliverAll()
            s.consume(2)
        }
        #expect(s.read[2] == Array(5...14))
        #expect(s.inMemory.isEmpty)
    }

    @Test func oneStreamFarBehindTheOther() throws {
        var s = Swarm()
        try s.open(1, Self.plan(0, 15), readAhead: 2)
        try s.open(2, Self.plan(0, 15), readAhead: 2)
        // Stream 1 races ahead; stream 2 reads nothing for a while.
        for _ in 0..<12 {
            s.deliverAll()
            s.consume(1)
        }
        #expect(s.read[1] == Array(0...11))
        #expect(s.releasedLog.isEmpty, "everything stream 1 read, stream 2 still needs")
        #expect(s.scheduler.nextPiece(of: 2) == 0)
        // Stream 2 catches up from memory, releasing behind itself, with nothing fetched again.
        var fetched = 0
        for _ in 0..<40 {
            fetched += s.deadlines.count
            s.deliverAll()
            s.consume(2)
            s.consume(1)
        }
        #expect(s.read[1] == Array(0...15))
        #expect(s.read[2] == Array(0...15))
        #expect(s.inMemory.isEmpty)
        #expect(s.releasedLog.sorted() == Array(0...15), "each piece released exactly once")
        #expect(fetched <= 4, "only the last pieces past stream 1 were still to fetch (fetched \(fetched))")
    }

    @Test func cancelMidStreamClearsItsDeadlinesAndDropsItsPieces() throws {
        var s = Swarm()
        try s.open(1, Self.plan(0, 9), readAhead: 4)
        s.finish(0)
        s.finish(1)
        s.consume(1)
        #expect(s.inMemory == [1])
        #expect(Set(s.deadlines.keys) == [2, 3, 4])
        s.apply(s.scheduler.removeStream(1))
        #expect(s.deadlines.isEmpty, "nobody waits for pieces 2…4 any more")
        #expect(s.inMemory.isEmpty, "piece 1 was only needed by the cancelled stream")
        // A piece in flight that arrives after the cancel leaves memory at once.
        s.inMemory.insert(3)
        s.apply(s.scheduler.pieceFinished(3))
        #expect(s.inMemory.isEmpty)
        #expect(s.scheduler.streamCount == 0)
    }

    @Test func cancellingOneStreamKeepsWhatTheOtherStillNeeds() throws {
        var s = Swarm()
        try s.open(1, Self.plan(0, 9), readAhead: 3)
        try s.open(2, Self.plan(2, 9), readAhead: 3)
        s.deliverAll()
        s.consume(1)
        #expect(s.inMemory == [1, 2, 3, 4])
        s.apply(s.scheduler.removeStream(1))
        #expect(s.inMemory == [2, 3, 4], "piece 1 goes; 2…4 are stream 2's")
        #expect(s.deadlines.isEmpty, "no deadline stream 2 still wants was cleared (it had all three in memory)")
        #expect(s.scheduler.isReady(2))
        #expect(s.consume(2) == 2)
    }

    @Test func aStreamOverAReleasedPieceIsRefused() throws {
        var s = Swarm()
        try s.open(1, Self.plan(0, 9))
        s.finish(0)
        s.consume(1)
        #expect(s.releasedLog == [0])
        s.scheduler.addStream(2)
        #expect(throws: PieceScheduler.Refusal.pieceAlreadyRelayed(piece: 0)) {
            try s.scheduler.begin(2, plan: Self.plan(0, 3), readAhead: 2)
        }
        // A range past the released piece is fine.
        s.apply(try s.scheduler.begin(2, plan: Self.plan(1, 3), readAhead: 2))
        #expect(s.scheduler.plan(of: 2) != nil)
    }

    @Test func aStreamWhoseRangeIsUnknownKeepsEveryPiece() throws {
        var s = Swarm()
        try s.open(1, Self.plan(0, 3))
        s.scheduler.addStream(2)   // waiting for metadata: it may need any piece
        s.deliverAll()
        while s.consume(1) != nil { s.deliverAll() }
        #expect(s.read[1] == [0, 1, 2, 3])
        #expect(s.releasedLog.isEmpty)
        s.apply(try s.scheduler.begin(2, plan: Self.plan(2, 3), readAhead: 2))
        #expect(s.consume(2) == 2)
        s.apply(s.scheduler.removeStream(2))
        s.apply(s.scheduler.removeStream(1))
        #expect(s.inMemory.isEmpty)
        #expect(s.releasedLog.sorted() == [0, 1, 2, 3])
    }

    @Test func emptyRangeNeedsNothing() throws {
        var s = Swarm()
        try s.open(1, PiecePlan(pieceLength: 100, totalSize: 1600, start: 300, end: 300))
        #expect(s.deadlines.isEmpty)
        #expect(s.scheduler.nextPiece(of: 1) == nil)
        #expect(!s.scheduler.isNeeded(3))
    }

    @Test func aLateStreamIsServedFromRetainedPiecesWithinTheLimit() throws {
        var s = Swarm()
        s.apply(s.scheduler.setRetentionLimit(3))
        try s.open(1, Self.plan(0, 9), readAhead: 2)
        for _ in 0..<5 {
            s.deliverAll()
            s.consume(1)
        }
        #expect(s.read[1] == [0, 1, 2, 3, 4])
        #expect(s.releasedLog == [0, 1], "only the three pieces read last stay in memory")
        #expect(s.scheduler.retained == [2, 3, 4])
        // A stream starting at piece 2 reads it from memory, and nothing it needs is released.
        s.scheduler.addStream(2)
        s.apply(try s.scheduler.begin(2, plan: Self.plan(2, 9), readAhead: 2))
        #expect(s.consume(2) == 2)
        #expect(s.scheduler.retained == [2], "3 and 4 are stream 2's now, not the retention's")
        s.apply(s.scheduler.setRetentionLimit(0))
        #expect(s.releasedLog == [0, 1, 2])
        #expect(s.consume(2) == 3, "a piece a stream still needs survives any limit")
        // One starting at piece 0 comes too late.
        s.scheduler.addStream(3)
        #expect(throws: PieceScheduler.Refusal.pieceAlreadyRelayed(piece: 0)) {
            try s.scheduler.begin(3, plan: Self.plan(0, 9), readAhead: 2)
        }
        s.apply(s.scheduler.removeStream(3))   // the engine ends a refused stream
        for _ in 0..<20 {
            s.deliverAll()
            s.consume(1)
            s.consume(2)
        }
        #expect(s.read[1] == Array(0...9))
        #expect(s.read[2] == Array(2...9))
        #expect(s.inMemory.isEmpty && s.scheduler.retained.isEmpty)
    }

    @Test func retentionNeverHoldsMoreThanItsLimit() throws {
        var s = Swarm()
        s.apply(s.scheduler.setRetentionLimit(4))
        try s.open(1, Self.plan(0, 15), readAhead: 3)
        for _ in 0..<40 {
            s.deliverAll()
            s.consume(1)
            #expect(s.scheduler.retained.count <= 4)
            #expect(s.inMemory.count <= 4 + 3, "retained pieces plus the window")
        }
        #expect(s.read[1] == Array(0...15))
        #expect(s.scheduler.retained == [12, 13, 14, 15])
        s.apply(s.scheduler.removeStream(1))
        s.apply(s.scheduler.setRetentionLimit(0))
        #expect(s.inMemory.isEmpty)
    }

    @Test func windowBytesCountsEachWindowPieceOnce() throws {
        var s = Swarm()
        try s.open(1, Self.plan(0, 9), readAhead: 3)
        s.scheduler.addStream(2)
        #expect(s.scheduler.windowBytes == 300, "a stream whose range is unknown has no window yet")
        s.apply(try s.scheduler.begin(2, plan: Self.plan(0, 9), readAhead: 2))
        #expect(s.scheduler.windowBytes == 300, "the same pieces 0…2 and 0…1")
        try s.open(3, Self.plan(8, 15), readAhead: 4)
        #expect(s.scheduler.windowBytes == 700, "pieces 0…2 and 8…11")
        try s.open(4, Self.plan(14, 15), readAhead: 4)
        #expect(s.scheduler.windowBytes == 900, "a window ends with its range: 14, 15")
    }

    @Test func readAheadSharesTheBudget() {
        #expect(PieceScheduler.readAhead(pieceLength: 1 << 20, memoryBudget: 64 << 20, maxPieces: 64, streams: 0) == 64)
        #expect(PieceScheduler.readAhead(pieceLength: 1 << 20, memoryBudget: 64 << 20, maxPieces: 16, streams: 1) == 16)
        #expect(PieceScheduler.readAhead(pieceLength: 1 << 20, memoryBudget: 64 << 20, maxPieces: 64, streams: 4) == 16)
        #expect(PieceScheduler.readAhead(pieceLength: 16 << 20, memoryBudget: 16 << 20, maxPieces: 64, streams: 3) == 2,
                "never fewer than 2")
    }
}
