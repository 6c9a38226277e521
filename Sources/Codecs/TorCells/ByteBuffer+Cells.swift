import NIOCore

// Throwing readers: every parse goes through these so that running out of bytes is always a
// `CellError.truncated` naming the field, never a nil to forget or a trap.
extension ByteBuffer {
    @inlinable
    mutating func readInteger<T: FixedWidthInteger>(_: T.Type = T.self, field: String) throws(CellError) -> T {
        guard let value = self.readInteger(as: T.self) else { throw .truncated(field: field) }
        return value
    }

    @inlinable
    mutating func readSlice(length: Int, field: String) throws(CellError) -> ByteBuffer {
        guard let value = self.readSlice(length: length) else { throw .truncated(field: field) }
        return value
    }

    @inlinable
    mutating func readBytes(length: Int, field: String) throws(CellError) -> [UInt8] {
        guard let value = self.readBytes(length: length) else { throw .truncated(field: field) }
        return value
    }

    /// Writes `bytes`, which must have exactly `count` elements.
    @inlinable
    mutating func writeFixed(_ bytes: [UInt8], count: Int, field: String) throws(CellError) {
        guard bytes.count == count else { throw .badFieldLength(field: field, expected: count, actual: bytes.count) }
        self.writeBytes(bytes)
    }

    /// Writes a big-endian UInt16 length prefix followed by `body`.
    @inlinable
    mutating func writeLengthPrefixed16(_ body: ByteBuffer, field: String) throws(CellError) {
        guard body.readableBytes <= Int(UInt16.max) else {
            throw .payloadTooLong(length: body.readableBytes, limit: Int(UInt16.max))
        }
        self.writeInteger(UInt16(body.readableBytes))
        self.writeImmutableBuffer(body)
    }
}
