import Crypto
import NIOCore

/// Facilitator side of the integrity scheme: feed the file bytes of one data query's answer, in
/// order, and get the DB_DATA bodies to send, in order. Pure and stateful; no I/O, no clock.
///
/// Each block of up to 128 chunks is signed once with Ed25519. The 64-byte signature travels in the
/// 8-byte signature fields of the block's last 8 messages; earlier messages carry zeros. A block of
/// fewer than 8 chunks (only ever the answer's last) is followed by signature-only messages (no data,
/// chunk number = `plan.endChunk`) so that it still has 8 fields. Because the fragments ride at the
/// end, all but the last 8 chunks of a block are released as soon as they are fed: the signer holds
/// at most 8 chunks.
public struct ChunkSigner: @unchecked Sendable {
    // @unchecked Sendable: swift-crypto's key and SHA256 types are immutable or copy-on-write
    // values not yet annotated Sendable; every other stored property is Sendable.
    public let plan: ResponsePlan
    private let key: Curve25519.Signing.PrivateKey
    private let context: [UInt8]

    private var nextChunk: UInt32
    private var block: UInt32 = 0
    private var hasher = BlockHasher()
    /// Chunks of the current block waiting for its signature.
    private var held: [(chunk: UInt32, data: ByteBuffer)] = []
    /// Bytes of a chunk split across `feed` calls.
    private var partial = ByteBuffer()
    private var fedBytes: UInt64 = 0
    public private(set) var isComplete = false

    /// - Throws: `ChunkStreamError.notADataQuery` or `.rangeNotSatisfiable` (answer DB_END RANGE),
    ///   `PeersmProtocolError` if the size or MIME type cannot be described in DB_CONNECTED.
    public init(signingKey: Curve25519.Signing.PrivateKey, fileSize: UInt64, mimeType: String, query: DBQuery) throws {
        // FileInfo validates size and type exactly as the requester's decoder will.
        _ = try FileInfo(size: fileSize, mimeType: mimeType, publicKey: signingKey.publicKey)
        plan = try ResponsePlan(fileSize: fileSize, query: query)
        key = signingKey
        context = BlockAuthentication.requestContext(query: query, fileSize: fileSize, mimeType: mimeType)
        nextChunk = plan.firstChunk
        held.reserveCapacity(PeersmWire.fragmentsPerSignature)
    }

    /// File bytes the caller must feed, in order: `plan.byteRange`.
    public var byteRange: Range<UInt64> { plan.byteRange }
    public var remainingBytes: UInt64 { UInt64(plan.byteRange.count) - fedBytes }

    /// Consumes the next file bytes and returns the messages they complete.
    public mutating func feed(_ bytes: ByteBuffer) throws -> [DBData] {
        var out: [DBData] = []
        try feed(bytes, into: &out)
        return out
    }

    /// Consumes the next file bytes, appending the messages they complete to `out`.
    /// On `excessInput` nothing is consumed.
    public mutating func feed(_ bytes: ByteBuffer, into out: inout [DBData]) throws {
        guard UInt64(bytes.readableBytes) <= remainingBytes else {
            throw ChunkStreamError.excessInput(bytes: bytes.readableBytes - Int(remainingBytes))
        }
        fedBytes += UInt64(bytes.readableBytes)
        var input = bytes
        while input.readableBytes > 0 {
            let needed = plan.dataLength(ofChunk: nextChunk) - partial.readableBytes
            if partial.readableBytes == 0 && input.readableBytes >= needed {
                try completeChunk(input.readSlice(length: needed)!, into: &out)  // whole chunk: no copy
            } else {
                let take = min(needed, input.readableBytes)
                if partial.capacity == 0 { partial.reserveCapacity(PeersmWire.chunkSize) }
                var piece = input.readSlice(length: take)!
                partial.writeBuffer(&piece)
                if take == needed {
                    let chunk = partial
                    partial = ByteBuffer()
                    try completeChunk(chunk, into: &out)
                }
            }
        }
    }

    /// Returns the messages still owed: the whole answer when it has no chunks (8 signature-only
    /// messages), otherwise nothing. Throws if file bytes are missing.
    public mutating func finish() throws -> [DBData] {
        if remainingBytes > 0 { throw ChunkStreamError.incompleteInput(missingBytes: remainingBytes) }
        var out: [DBData] = []
        if !isComplete { try sealBlock(into: &out) }  // only an answer without chunks gets here
        return out
    }

    private mutating func completeChunk(_ data: ByteBuffer, into out: inout [DBData]) throws {
        hasher.add(chunk: nextChunk, data: data)
        let chunks = plan.chunks(ofBlock: block)
        let position = Int(nextChunk - chunks.lowerBound)
        if position < chunks.count - PeersmWire.fragmentsPerSignature {
            out.append(DBData(chunkNumber: nextChunk, signatureField: 0, data: data))
        } else {
            held.append((nextChunk, data))
        }
        nextChunk += 1
        if nextChunk == chunks.upperBound { try sealBlock(into: &out) }
    }

    /// Signs the current block and emits its held chunks plus any signature-only messages.
    private mutating func sealBlock(into out: inout [DBData]) throws {
        let message = BlockAuthentication.signedMessage(context: context, plan: plan, block: block, digest: hasher.finalize())
        guard let signature = try? Array(key.signature(for: message)), signature.count == 64 else {
            throw ChunkStreamError.signingFailed
        }
        for fragment in 0..<PeersmWire.fragmentsPerSignature {
            var field: UInt64 = 0
            for byte in signature[(fragment * 8)..<(fragment * 8 + 8)] { field = field << 8 | UInt64(byte) }
            if fragment < held.count {
                out.append(DBData(chunkNumber: held[fragment].chunk, signatureField: field, data: held[fragment].data))
            } else {
                out.append(DBData(chunkNumber: plan.endChunk, signatureField: field, data: ByteBuffer()))
            }
        }
        held.removeAll(keepingCapacity: true)
        hasher = BlockHasher()
        block += 1
        if block == plan.blockCount { isComplete = true }
    }
}
