/// Which pieces a byte range needs and which bytes of each to deliver, in order. Pure arithmetic:
/// no I/O, no clock.
public struct PiecePlan: Sendable, Equatable {
    public let pieceLength: Int64
    public let totalSize: Int64
    /// Absolute byte range inside the torrent (all files concatenated), end exclusive.
    public let start: Int64
    public let end: Int64
    /// The next piece to hand to the consumer.
    public private(set) var next: Int

    public init(pieceLength: Int64, totalSize: Int64, start: Int64, end: Int64) {
        precondition(pieceLength > 0 && start >= 0 && start <= end && end <= totalSize)
        self.pieceLength = pieceLength
        self.totalSize = totalSize
        self.start = start
        self.end = end
        self.next = Int(start / pieceLength)
    }

    public var isEmpty: Bool { start == end }
    public var firstPiece: Int { Int(start / pieceLength) }
    public var lastPiece: Int { isEmpty ? firstPiece - 1 : Int((end - 1) / pieceLength) }
    public var isDone: Bool { next > lastPiece }

    /// Size of a piece (the last one may be short).
    public func size(of piece: Int) -> Int {
        Int(min(pieceLength, totalSize - Int64(piece) * pieceLength))
    }

    /// The bytes of `piece` that belong to the range, as offsets inside the piece.
    public func slice(of piece: Int) -> Range<Int> {
        let base = Int64(piece) * pieceLength
        let lo = max(start, base) - base
        let hi = min(end, base + Int64(size(of: piece))) - base
        return Int(lo)..<Int(max(lo, hi))
    }

    /// Pieces to have in flight: the next `readAhead` pieces still needed.
    public func window(readAhead: Int) -> Range<Int> {
        guard !isDone else { return next..<next }
        return next..<min(next + max(1, readAhead), lastPiece + 1)
    }

    public mutating func advance() { if !isDone { next += 1 } }
}
