import NIOCore

/// ByteBuffer entry points for the channel/circuit layers: the 509-byte relay payload is addressed as
/// `offset` bytes past the buffer's reader index (e.g. 5 for a link-v4 cell `CircID(4) Command(1) Payload`).
extension ByteBuffer {
    mutating func withRelayPayload<T>(at offset: Int, _ body: (UnsafeMutableRawBufferPointer) throws -> T) throws -> T {
        guard offset >= 0, readableBytes - offset >= RelayPayload.length else {
            throw TorCryptoError.badLength(what: "relay payload in buffer", expected: offset + RelayPayload.length, actual: readableBytes)
        }
        return try withUnsafeMutableReadableBytes { all in
            try body(UnsafeMutableRawBufferPointer(rebasing: all[offset..<offset + RelayPayload.length]))
        }
    }
}

extension ClientCircuitCrypto {
    public func encryptOutbound(_ buffer: inout ByteBuffer, payloadAt offset: Int, toHop hop: Int) throws {
        try buffer.withRelayPayload(at: offset) { try encryptOutbound($0, toHop: hop) }
    }
    public func decryptInbound(_ buffer: inout ByteBuffer, payloadAt offset: Int) throws -> Int? {
        try buffer.withRelayPayload(at: offset) { try decryptInbound($0) }
    }
}

extension RelayCircuitCrypto {
    public func decryptForward(_ buffer: inout ByteBuffer, payloadAt offset: Int) throws -> Bool {
        try buffer.withRelayPayload(at: offset) { try decryptForward($0) }
    }
    public func originateBackward(_ buffer: inout ByteBuffer, payloadAt offset: Int) throws {
        try buffer.withRelayPayload(at: offset) { try originateBackward($0) }
    }
    public func relayBackward(_ buffer: inout ByteBuffer, payloadAt offset: Int) throws {
        try buffer.withRelayPayload(at: offset) { try relayBackward($0) }
    }
}
