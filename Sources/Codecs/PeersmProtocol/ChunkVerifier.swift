import Crypto
import NIOCore

/// File bytes that passed verification: one whole block, in file order.
public struct VerifiedBlock: Hashable, Sendable {
    /// Block index within the answer.
    public let block: UInt32
    public let chunks: Range<UInt32>
    /// Offset in the file of `bytes`' first byte.
    public let fileOffset: UInt64
    public let bytes: ByteBuffer
}

/// Requester side of the integrity scheme: feed the DB_DATA bodies of one data query's answer as
/// they arrive and get verified file bytes out, a block at a time, in order. Pure and stateful.
///
/// Every message is checked on arrival against the plan both sides derive from the query and the
/// file info (chunk number, data length, zero signature field where no fragment belongs), so
/// reordering, dropping, splicing and padding tricks fail at the first bad message. The block's data
/// is held until its signature verifies with the key from DB_CONNECTED; nothing unverified is
/// released. After any error the verifier stays failed and rethrows that error.
public struct ChunkVerifier: @unchecked Sendable {
    // @unchecked Sendable: swift-crypto's key and SHA256 types are immutable or copy-on-write
    // values not yet annotated Sendable; every other stored property is Sendable.
    public let plan: ResponsePlan
    private let key: Curve25519.Signing.PublicKey
    private let context: [UInt8]
    private let allocator: ByteBufferAllocator

    private var block: UInt32 = 0
    private var blockChunks: Range<UInt32>
    private var blockMessages: Int
    private var messageInBlock = 0
    private var hasher = BlockHasher()
    private var signature = [UInt8](repeating: 0, count: 64)
    private var blockData: ByteBuffer
    private var failure: ChunkStreamError?
    public private(set) var isComplete = false

    /// - Parameters:
    ///   - fileInfo: the DB_CONNECTED answer to the info query (size, type, the facilitator's key).
    ///     Trusting this key is trusting the facilitator; see docs/PROTOCOL.md.
    ///   - query: the data query this answer is for, as sent (its nonce binds the signatures).
    public init(fileInfo: FileInfo, query: DBQuery, allocator: ByteBufferAllocator = ByteBufferAllocator()) throws {
        plan = try ResponsePlan(fileSize: fileInfo.size, query: query)
        key = fileInfo.publicKey
        context = BlockAuthentication.requestContext(query: query, fileSize: fileInfo.size, mimeType: fileInfo.mimeType)
        blockChunks = plan.chunks(ofBlock: 0)
        blockMessages = plan.messageCount(ofBlock: 0)
        self.allocator = allocator
        blockData = allocator.buffer(capacity: blockChunks.count * PeersmWire.chunkSize)
    }

    /// First chunk not yet verified: a resumed query starts here (always a block boundary, or the end).
    public var resumeChunk: UInt32 { isComplete ? plan.endChunk : blockChunks.lowerBound }

    /// Checks one DB_DATA; returns the block's file bytes when this message completes a block that verifies.
    public mutating func receive(_ message: DBData) throws -> VerifiedBlock? {
        if let failure { throw failure }
        do {
            return try accept(message)
        } catch let error as ChunkStreamError {
            failure = error
            throw error
        }
    }

    /// Decodes and checks one DB_DATA relay body; a malformed body is `.malformedMessage`.
    public mutating func receive(body: ByteBuffer) throws -> VerifiedBlock? {
        if let failure { throw failure }
        let message: DBData
        do {
            message = try DBData(decoding: body)
        } catch let error as PeersmProtocolError {
            failure = .malformedMessage(error)
            throw failure!
        }
        return try receive(message)
    }

    /// Call when the stream ends (DB_END, or circuit lost). Throws `.truncated` unless the answer was complete.
    public mutating func finish() throws {
        if let failure { throw failure }
        guard isComplete else {
            let error = ChunkStreamError.truncated(nextChunk: resumeChunk, missingChunks: plan.endChunk - resumeChunk)
            failure = error
            throw error
        }
    }

    private mutating func accept(_ message: DBData) throws -> VerifiedBlock? {
        guard !isComplete else { throw ChunkStreamError.dataAfterEnd(chunk: message.chunkNumber) }
        let carriesData = messageInBlock < blockChunks.count
        // A data message carries the next chunk; a signature-only message carries the end chunk number.
        let expectedChunk = carriesData ? blockChunks.lowerBound + UInt32(messageInBlock) : plan.endChunk
        guard message.chunkNumber == expectedChunk else {
            throw ChunkStreamError.unexpectedChunkNumber(expected: expectedChunk, received: message.chunkNumber)
        }
        let expectedLength = carriesData ? plan.dataLength(ofChunk: expectedChunk) : 0
        guard message.data.readableBytes == expectedLength else {
            throw ChunkStreamError.wrongDataLength(chunk: expectedChunk, expected: expectedLength, received: message.data.readableBytes)
        }
        let fragment = messageInBlock - (blockMessages - PeersmWire.fragmentsPerSignature)
        if fragment < 0 {
            guard message.signatureField == 0 else { throw ChunkStreamError.nonZeroSignatureField(chunk: expectedChunk) }
        } else {
            for i in 0..<8 { signature[fragment * 8 + i] = UInt8(truncatingIfNeeded: message.signatureField >> UInt64(56 - 8 * i)) }
        }
        if carriesData {
            hasher.add(chunk: expectedChunk, data: message.data)
            blockData.writeImmutableBuffer(message.data)
        }
        messageInBlock += 1
        return messageInBlock == blockMessages ? try sealBlock() : nil
    }

    private mutating func sealBlock() throws -> VerifiedBlock {
        let message = BlockAuthentication.signedMessage(context: context, plan: plan, block: block, digest: hasher.finalize())
        guard key.isValidSignature(signature, for: message) else {
            throw ChunkStreamError.badSignature(block: block, chunks: blockChunks)
        }
        let verified = VerifiedBlock(
            block: block, chunks: blockChunks,
            fileOffset: ChunkLayout.byteRange(ofChunk: blockChunks.lowerBound, fileSize: plan.fileSize).lowerBound,
            bytes: blockData)
        block += 1
        if block == plan.blockCount {
            isComplete = true
        } else {
            blockChunks = plan.chunks(ofBlock: block)
            blockMessages = plan.messageCount(ofBlock: block)
            messageInBlock = 0
            hasher = BlockHasher()
            // A fresh buffer: the released one now belongs to the caller.
            blockData = allocator.buffer(capacity: blockChunks.count * PeersmWire.chunkSize)
        }
        return verified
    }
}
