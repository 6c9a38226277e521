import NetBasics
import NIOCore
@testable import TorCells

/// Bytes from hex text; whitespace is ignored. Traps on bad hex (test-only input).
func hex(_ text: String) -> [UInt8] {
    guard let bytes = Hex.decode(text, ignoringWhitespace: true) else { preconditionFailure("bad hex literal: \(text)") }
    return bytes
}

func buffer(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }
func buffer(hex text: String) -> ByteBuffer { ByteBuffer(bytes: hex(text)) }
func bytes(_ buffer: ByteBuffer) -> [UInt8] { Array(buffer.readableBytesView) }

/// `bytes` zero-padded to a fixed cell payload.
func padded(_ bytes: [UInt8], to length: Int = 509) -> [UInt8] {
    bytes + Array(repeating: 0, count: max(0, length - bytes.count))
}


/// Encodes a channel message payload (unpadded).
func encodePayload(_ message: ChannelMessage) throws -> [UInt8] {
    var out = ByteBuffer()
    try message.writePayload(into: &out)
    return bytes(out)
}

/// Encodes a relay message body.
func encodeBody(_ message: RelayMessage) throws -> [UInt8] {
    var out = ByteBuffer()
    try message.writeBody(into: &out)
    return bytes(out)
}

/// Runs `body` and returns the CellError it threw, or nil if it threw nothing (or another type).
func cellError<T>(_ body: () throws -> T) -> CellError? {
    do { _ = try body(); return nil } catch { return error as? CellError }
}

func hexByte(_ byte: UInt8) -> String { Hex.encode([byte], uppercase: true) }
