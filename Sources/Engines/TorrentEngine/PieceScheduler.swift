/// The streaming policy of one torrent, as a state machine with no I/O and no clock: which pieces
/// to ask libtorrent for (deadlines, nearest first), which verified pieces a stream may read, and
/// when a piece may leave memory. The engine reports what happened (a stream was added or learnt
/// its range, a piece was verified, a stream consumed a piece, a stream ended) and performs the
/// actions returned, in order.
///
/// Several streams may share one torrent (two requesters asking for the same file): a verified
/// piece stays readable until every stream that still needs it has read it. A piece no stream
/// needs any more is retained while the memory budget has room for it (`retentionLimit`, set by
/// the engine from what the streams' windows leave free), for a requester that starts reading a
/// moment later, then leaves memory oldest first. A piece that has left memory is not fetched
/// again by libtorrent (it counts as had), so a stream whose range needs one is refused with
/// `pieceAlreadyRelayed`.
public struct PieceScheduler: Sendable {
    public typealias StreamID = UInt64

    public enum Action: Equatable, Sendable {
        /// Ask libtorrent for the piece within `milliseconds`, at top priority. Deadlines grow with
        /// the distance from the consumer, which makes libtorrent's time-critical picker fetch in
        /// stream order; the priority keeps the ordinary picker on the piece should that picker
        /// drop it (seen with a short tick_interval: the stream stalled).
        case setDeadline(piece: Int, milliseconds: Int)
        /// No stream waits for the piece any more: drop its deadline and set its priority to 0.
        case clearDeadline(piece: Int)
        /// Drop the piece's bytes from memory: no stream will read it again.
        case release(piece: Int)
    }

    public enum Refusal: Error, Equatable, Sendable {
        /// The stream's range needs a piece that was consumed and dropped while the torrent stayed open.
        case pieceAlreadyRelayed(piece: Int)
    }

    /// Spacing of successive deadlines in a stream's window.
    public static let deadlineStepMilliseconds = 50

    private struct Slot {
        var plan: PiecePlan?
        var readAhead: Int
    }

    private var slots: [StreamID: Slot] = [:]
    /// Verified pieces held in memory.
    public private(set) var ready: Set<Int> = []
    /// Pieces consumed and dropped from memory.
    public private(set) var released: Set<Int> = []
    /// Pieces with a deadline set and not verified yet.
    public private(set) var deadlined: Set<Int> = []
    /// Verified pieces no stream needs, oldest first: kept for late readers up to `retentionLimit`.
    public private(set) var retained: [Int] = []
    /// How many unneeded pieces may stay in memory (0: every piece leaves once read).
    public private(set) var retentionLimit = 0

    public init() {}

    /// How many pieces a stream keeps in flight ahead of its consumer: the memory budget shared
    /// among the streams already reading (`streams`, this one not counted), at least 2 and at most
    /// `maxPieces`.
    public static func readAhead(pieceLength: Int, memoryBudget: Int, maxPieces: Int, streams: Int) -> Int {
        max(2, min(maxPieces, memoryBudget / max(1, pieceLength) / max(1, streams)))
    }

    // MARK: - Queries

    /// Memory the streams' read-ahead windows may fill: the pieces in any stream's window, each
    /// counted once (streams reading the same part of the file share their windows).
    public var windowBytes: Int64 {
        var pieces = Set<Int>()
        var pieceLength: Int64 = 0
        for slot in slots.values {
            guard let plan = slot.plan else { continue }
            pieceLength = plan.pieceLength
            pieces.formUnion(plan.window(readAhead: slot.readAhead))
        }
        return Int64(pieces.count) * pieceLength
    }

    /// The streams whose range is known.
    public var plannedStreams: Int { slots.values.filter { $0.plan != nil }.count }
    public var streamCount: Int { slots.count }
    public func plan(of id: StreamID) -> PiecePlan? { slots[id]?.plan }
    public func isReady(_ piece: Int) -> Bool { ready.contains(piece) }

    /// The piece the stream reads next, nil when its range is done or unknown.
    public func nextPiece(of id: StreamID) -> Int? {
        guard let plan = slots[id]?.plan, !plan.isDone else { return nil }
        return plan.next
    }

    /// Whether any stream other than `except` will still read `piece`. A stream whose range is
    /// not known yet may need any piece.
    public func isNeeded(_ piece: Int, except: StreamID? = nil) -> Bool {
        slots.contains { id, slot in
            guard id != except else { return false }
            guard let plan = slot.plan else { return true }
            return !plan.isDone && piece >= plan.next && piece <= plan.lastPiece
        }
    }

    // MARK: - Inputs

    /// A stream was opened; its range is known once the metadata is (`begin`).
    public mutating func addStream(_ id: StreamID) {
        slots[id] = Slot(plan: nil, readAhead: 2)
    }

    /// The stream's byte range is fixed: its first pieces get deadlines. Refused when the range
    /// needs a piece already dropped.
    public mutating func begin(_ id: StreamID, plan: PiecePlan, readAhead: Int) throws(Refusal) -> [Action] {
        if !plan.isEmpty {
            for p in plan.firstPiece...plan.lastPiece where released.contains(p) {
                throw .pieceAlreadyRelayed(piece: p)
            }
        }
        slots[id] = Slot(plan: plan, readAhead: max(1, readAhead))
        return window(of: id)
    }

    /// libtorrent verified a piece: it is readable until the streams that need it have read it.
    /// A piece nobody needs any more (its stream ended while it was in flight) leaves at once.
    public mutating func pieceFinished(_ piece: Int) -> [Action] {
        deadlined.remove(piece)
        released.remove(piece)
        ready.insert(piece)
        return isNeeded(piece) ? [] : drop(piece)
    }

    /// The stream read `piece` (its next one) and moves on: the piece leaves memory unless another
    /// stream still needs it, and the stream's window moves forward.
    public mutating func consumed(_ id: StreamID, piece: Int) -> [Action] {
        guard var slot = slots[id], var plan = slot.plan, !plan.isDone, plan.next == piece else { return [] }
        plan.advance()
        slot.plan = plan
        slots[id] = slot
        var actions: [Action] = isNeeded(piece) ? [] : drop(piece)
        actions += window(of: id)
        return actions
    }

    /// The stream ended (finished, cancelled or dropped): deadlines only it wanted go, and pieces
    /// only it still needed leave memory.
    public mutating func removeStream(_ id: StreamID) -> [Action] {
        guard slots.removeValue(forKey: id) != nil else { return [] }
        var actions: [Action] = []
        for p in deadlined.sorted() where !isNeeded(p) {
            deadlined.remove(p)
            actions.append(.clearDeadline(piece: p))
        }
        for p in ready.sorted() where !isNeeded(p) {
            actions += drop(p)
        }
        return actions
    }

    /// How many pieces no stream needs may stay in memory; past it the oldest leave.
    public mutating func setRetentionLimit(_ pieces: Int) -> [Action] {
        retentionLimit = max(0, pieces)
        return trimRetained()
    }

    // MARK: - Policy

    /// Deadlines on the next `readAhead` pieces of the stream still missing, nearest first.
    private mutating func window(of id: StreamID) -> [Action] {
        guard let slot = slots[id], let plan = slot.plan else { return [] }
        var actions: [Action] = []
        for (k, p) in plan.window(readAhead: slot.readAhead).enumerated()
        where !deadlined.contains(p) && !ready.contains(p) {
            deadlined.insert(p)
            actions.append(.setDeadline(piece: p, milliseconds: k * Self.deadlineStepMilliseconds))
        }
        return actions
    }

    /// A piece no stream needs: retained while there is room, released oldest first.
    private mutating func drop(_ piece: Int) -> [Action] {
        guard ready.contains(piece) else { return [] }
        if !retained.contains(piece) { retained.append(piece) }
        return trimRetained()
    }

    private mutating func trimRetained() -> [Action] {
        // A late stream may need a retained piece again: it is no longer the retention's to drop.
        retained = retained.filter { ready.contains($0) && !isNeeded($0) }
        var actions: [Action] = []
        while retained.count > retentionLimit {
            let p = retained.removeFirst()
            ready.remove(p)
            released.insert(p)
            actions.append(.release(piece: p))
        }
        return actions
    }
}
