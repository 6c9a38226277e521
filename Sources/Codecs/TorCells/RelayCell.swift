import NIOCore

/// A decrypted relay cell: command, stream, and data (tor-spec §6.1).
///
/// Recognized and Digest are not part of this value: relay crypto owns them and accesses them on
/// `RelayCellBody` directly. Encoding leaves both zero.
public struct RelayCell: Hashable, Sendable {
    public var command: RelayCommand
    /// 0 for circuit-level commands.
    public var streamID: UInt16
    /// At most 498 bytes.
    public var data: ByteBuffer

    public init(command: RelayCommand, streamID: UInt16, data: ByteBuffer) {
        self.command = command
        self.streamID = streamID
        self.data = data
    }

    /// Encodes `message` as this cell's data.
    public init(streamID: UInt16, message: RelayMessage) throws(CellError) {
        var data = ByteBuffer()
        try message.writeBody(into: &data)
        guard data.readableBytes <= RelayCellBody.maximumDataLength else {
            throw .payloadTooLong(length: data.readableBytes, limit: RelayCellBody.maximumDataLength)
        }
        self.init(command: message.command, streamID: streamID, data: data)
    }

    /// Reads the header and data of a decrypted body. Does not check Recognized or Digest.
    /// `data` is a slice of `body`'s storage: no copy.
    public init(decoding body: RelayCellBody) throws(CellError) {
        let length = Int(body.dataLength)
        guard length <= RelayCellBody.maximumDataLength else { throw .relayDataTooLong(length) }
        guard let data = body.bytes.getSlice(at: body.bytes.readerIndex + RelayCellBody.headerLength, length: length) else {
            throw .truncated(field: "relay data")  // unreachable: the body is 509 bytes
        }
        self.init(command: body.command, streamID: body.streamID, data: data)
    }

    /// Parses `data` according to `command`.
    public func message() throws(CellError) -> RelayMessage {
        try RelayMessage(command: command, body: data)
    }

    /// Builds the 509-byte body with Recognized = 0 and Digest = 0, ready for the digest to be set.
    ///
    /// Padding follows tor-spec §6.1: 4 zero bytes after the data, then random bytes from `rng`
    /// (in production a CSPRNG such as `SystemRandomNumberGenerator`; in tests a seeded one).
    public func encode<R: RandomNumberGenerator>(padding rng: inout R) throws(CellError) -> RelayCellBody {
        let length = data.readableBytes
        guard length <= RelayCellBody.maximumDataLength else { throw .relayDataTooLong(length) }
        var out = ByteBufferAllocator().buffer(capacity: RelayCellBody.length)
        out.writeInteger(command.rawValue)
        out.writeInteger(UInt16(0))  // recognized
        out.writeInteger(streamID)
        out.writeInteger(UInt32(0))  // digest
        out.writeInteger(UInt16(length))
        out.writeImmutableBuffer(data)
        var remaining = RelayCellBody.length - out.writerIndex
        let zeros = min(4, remaining)
        out.writeRepeatingByte(0, count: zeros)
        remaining -= zeros
        if remaining > 0 {
            // One pass over the raw tail: each 64-bit draw supplies 8 bytes, little-endian.
            out.writeWithUnsafeMutableBytes(minimumWritableBytes: remaining) { tail in
                var offset = 0
                while offset < remaining {
                    var word = rng.next().littleEndian
                    let count = min(8, remaining - offset)
                    withUnsafeBytes(of: &word) { tail.baseAddress!.advanced(by: offset).copyMemory(from: $0.baseAddress!, byteCount: count) }
                    offset += count
                }
                return remaining
            }
        }
        return RelayCellBody(unchecked: out)
    }
}
