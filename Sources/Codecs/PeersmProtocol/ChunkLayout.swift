/// Chunk arithmetic. Chunks are numbered from 0; chunk k holds file bytes [k·486, (k+1)·486),
/// the last chunk holds the 1…486 bytes that remain. An empty file has no chunks.
public enum ChunkLayout {
    public static func chunkCount(fileSize: UInt64) -> UInt64 {
        (fileSize + UInt64(PeersmWire.chunkSize) - 1) / UInt64(PeersmWire.chunkSize)
    }

    /// File bytes of chunk `chunk`; empty if it is past the end.
    public static func byteRange(ofChunk chunk: UInt32, fileSize: UInt64) -> Range<UInt64> {
        let start = min(UInt64(chunk) * UInt64(PeersmWire.chunkSize), fileSize)
        return start..<min(start + UInt64(PeersmWire.chunkSize), fileSize)
    }
}

/// Errors of the signed chunk stream, on either side. Verification errors name the chunk (or the
/// block's chunks) that failed and why; a verifier that has thrown stays failed.
public enum ChunkStreamError: Error, Equatable, Sendable {
    /// A data query with `nb chunks` 0 (that is an info query) cannot be served or verified as data.
    case notADataQuery
    /// The first chunk asked for is past the end of the file (the facilitator answers DB_END RANGE).
    case rangeNotSatisfiable(firstChunk: UInt32, fileChunks: UInt64)

    /// More file bytes were fed than the answer covers.
    case excessInput(bytes: Int)
    /// `finish()` was called before all the answer's file bytes were fed.
    case incompleteInput(missingBytes: UInt64)

    // Signer
    /// swift-crypto could not produce a signature (it reports only internal failures).
    case signingFailed

    // Verifier
    /// A DB_DATA body did not decode.
    case malformedMessage(PeersmProtocolError)
    /// A DB_DATA arrived with another chunk number than the next expected one (reordered, replayed, dropped).
    case unexpectedChunkNumber(expected: UInt32, received: UInt32)
    /// A DB_DATA for `chunk` has the wrong number of data bytes.
    case wrongDataLength(chunk: UInt32, expected: Int, received: Int)
    /// A DB_DATA whose signature field must be zero (it carries no fragment) is not.
    case nonZeroSignatureField(chunk: UInt32)
    /// The signature over block `block` (chunks `chunks`) does not verify with the facilitator's key:
    /// forged or altered data, chunk numbers or fragments, data from another request, or another key.
    case badSignature(block: UInt32, chunks: Range<UInt32>)
    /// A DB_DATA arrived after the answer was complete.
    case dataAfterEnd(chunk: UInt32)
    /// The stream ended before the answer was complete; `nextChunk` is where a resumed query must start.
    case truncated(nextChunk: UInt32, missingChunks: UInt32)
}

/// The shape of the answer to one data query: which chunks it carries and how they group into
/// signed blocks. Signer and verifier derive it from the same inputs, so they agree on every boundary.
public struct ResponsePlan: Hashable, Sendable {
    public let fileSize: UInt64
    public let firstChunk: UInt32
    /// Chunks actually sent: the requested count clipped at the end of the file; 0 when the query
    /// starts exactly at the end (an empty file, or nothing left), which still gets one signed, empty block.
    public let chunkCount: UInt32

    public init(fileSize: UInt64, query: DBQuery) throws {
        guard !query.isInfoRequest else { throw ChunkStreamError.notADataQuery }
        guard fileSize <= PeersmWire.maxFileSize else { throw PeersmProtocolError.invalidValue(.size, fileSize) }
        let fileChunks = ChunkLayout.chunkCount(fileSize: fileSize)
        guard UInt64(query.firstChunk) <= fileChunks else {
            throw ChunkStreamError.rangeNotSatisfiable(firstChunk: query.firstChunk, fileChunks: fileChunks)
        }
        self.fileSize = fileSize
        self.firstChunk = query.firstChunk
        self.chunkCount = UInt32(min(UInt64(query.chunkCount), fileChunks - UInt64(query.firstChunk)))
    }

    /// One past the last chunk sent; also the chunk number of signature-only messages.
    public var endChunk: UInt32 { firstChunk + chunkCount }

    /// File bytes the answer carries.
    public var byteRange: Range<UInt64> {
        let start = ChunkLayout.byteRange(ofChunk: firstChunk, fileSize: fileSize).lowerBound
        let end = chunkCount == 0 ? start : ChunkLayout.byteRange(ofChunk: endChunk - 1, fileSize: fileSize).upperBound
        return start..<end
    }

    /// Blocks of `PeersmWire.blockChunks` chunks from `firstChunk`; the last may be short; at least one.
    public var blockCount: UInt32 {
        max(1, (chunkCount + UInt32(PeersmWire.blockChunks) - 1) / UInt32(PeersmWire.blockChunks))
    }

    /// Chunks of block `index`.
    public func chunks(ofBlock index: UInt32) -> Range<UInt32> {
        // In 64 bits: near chunk 2³² − 1, start + 128 would overflow UInt32.
        let start = UInt64(firstChunk) + UInt64(index) * UInt64(PeersmWire.blockChunks)
        let end = min(start + UInt64(PeersmWire.blockChunks), UInt64(endChunk))
        return UInt32(min(start, UInt64(endChunk)))..<UInt32(end)
    }

    /// DB_DATA messages that carry block `index`: its chunks, then signature-only messages up to 8.
    public func messageCount(ofBlock index: UInt32) -> Int {
        max(chunks(ofBlock: index).count, PeersmWire.fragmentsPerSignature)
    }

    /// DB_DATA messages in the whole answer.
    public var messageCount: Int {
        let full = Int(blockCount) - 1
        return full * PeersmWire.blockChunks + messageCount(ofBlock: blockCount - 1)
    }

    /// Data bytes chunk `chunk` must carry.
    public func dataLength(ofChunk chunk: UInt32) -> Int {
        ChunkLayout.byteRange(ofChunk: chunk, fileSize: fileSize).count
    }
}
