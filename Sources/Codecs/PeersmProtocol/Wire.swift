import NIOCore

// Shared reading/writing helpers: each turns a short read into `.truncated(field)`.
extension ByteBuffer {
    mutating func readField<T: FixedWidthInteger>(_ field: PeersmField, as: T.Type = T.self) throws -> T {
        guard let value = readInteger(endianness: .big, as: T.self) else { throw PeersmProtocolError.truncated(field) }
        return value
    }

    mutating func readFieldBytes(_ field: PeersmField, length: Int) throws -> [UInt8] {
        guard let bytes = readBytes(length: length) else { throw PeersmProtocolError.truncated(field) }
        return bytes
    }

    /// Big-endian unsigned integer of `length` bytes (the seed's "variable length" numbers).
    mutating func readVarUInt(_ field: PeersmField, length: Int) throws -> UInt64 {
        precondition(length <= 8)
        guard readableBytes >= length else { throw PeersmProtocolError.truncated(field) }
        var value: UInt64 = 0
        for _ in 0..<length { value = value << 8 | UInt64(readInteger(as: UInt8.self)!) }
        return value
    }

    func requireFullyConsumed() throws {
        if readableBytes != 0 { throw PeersmProtocolError.trailingBytes(readableBytes) }
    }

    /// Writes `[length 1][big-endian value in the fewest bytes, at least one]`: node-Tor writes 0 as `01 00`.
    mutating func writeVarUIntWithLength(_ value: UInt64) {
        let width = max(1, (UInt64.bitWidth - value.leadingZeroBitCount + 7) / 8)
        writeInteger(UInt8(width))
        for i in stride(from: width - 1, through: 0, by: -1) { writeInteger(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) }
    }
}

/// Visible ASCII and space: MIME types and progress words end up in logs and HTTP headers.
func isPrintableASCII(_ bytes: [UInt8]) -> Bool {
    bytes.allSatisfy { $0 >= 0x20 && $0 <= 0x7E }
}
