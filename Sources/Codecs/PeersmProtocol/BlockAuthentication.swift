import Crypto
import NIOCore

/// What a block signature covers (scheme v1). Shared by ChunkSigner and ChunkVerifier so both
/// build byte-identical messages.
///
///     context = SHA-256("peersm/db-data/v1/request\0" ‖ u8 len ‖ hash_name ‖ nonce[16]
///                       ‖ u64 file size ‖ u16 len ‖ MIME type ‖ u32 first chunk ‖ u16 nb chunks)
///     digest  = SHA-256(for each chunk of the block: u32 chunk nb ‖ u16 data length ‖ data)
///     signed  = "peersm/db-data/v1/block\0" ‖ context[32] ‖ u32 block index ‖ u32 first chunk of block
///               ‖ u16 chunks in block ‖ u8 final (1 for the answer's last block) ‖ digest[32]
enum BlockAuthentication {
    static let requestLabel = Array("peersm/db-data/v1/request\0".utf8)
    static let blockLabel = Array("peersm/db-data/v1/block\0".utf8)

    static func requestContext(query: DBQuery, fileSize: UInt64, mimeType: String) -> [UInt8] {
        var input = ByteBuffer()
        input.writeBytes(requestLabel)
        input.writeInteger(UInt8(query.hashName.bytes.count))
        input.writeBytes(query.hashName.bytes)
        input.writeBytes(query.nonce.bytes)
        input.writeInteger(fileSize)
        let type = Array(mimeType.utf8)
        input.writeInteger(UInt16(type.count))
        input.writeBytes(type)
        input.writeInteger(query.firstChunk)
        input.writeInteger(query.chunkCount)
        return input.withUnsafeReadableBytes { Array(SHA256.hash(data: $0)) }
    }

    static func signedMessage(context: [UInt8], plan: ResponsePlan, block: UInt32, digest: SHA256.Digest) -> [UInt8] {
        let chunks = plan.chunks(ofBlock: block)
        var message: [UInt8] = []
        message.reserveCapacity(blockLabel.count + 32 + 11 + 32)
        message += blockLabel
        message += context
        appendBigEndian(block, to: &message)
        appendBigEndian(chunks.lowerBound, to: &message)
        appendBigEndian(UInt16(chunks.count), to: &message)
        message.append(block == plan.blockCount - 1 ? 1 : 0)
        digest.withUnsafeBytes { message.append(contentsOf: $0) }
        return message
    }

    private static func appendBigEndian<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }
}

/// Running SHA-256 over one block's (chunk number, length, data) triples.
struct BlockHasher: @unchecked Sendable {
    // @unchecked Sendable: swift-crypto's key and SHA256 types are immutable or copy-on-write
    // values not yet annotated Sendable; every other stored property is Sendable.
    private var hasher = SHA256()

    mutating func add(chunk: UInt32, data: ByteBuffer) {
        // u32 chunk ‖ u16 length, as the first 6 bytes of one big-endian UInt64 (one update call).
        let header = (UInt64(chunk) << 32 | UInt64(UInt16(truncatingIfNeeded: data.readableBytes)) << 16).bigEndian
        withUnsafeBytes(of: header) { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0.prefix(6))) }
        data.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
    }

    func finalize() -> SHA256.Digest { hasher.finalize() }
}
