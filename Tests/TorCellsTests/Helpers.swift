import NIOCore
@testable import TorCells

/// Bytes from hex text; whitespace is ignored. Traps on bad hex (test-only input).
func hex(_ text: String) -> [UInt8] {
    let digits = text.filter { !$0.isWhitespace }
    precondition(digits.count % 2 == 0, "odd hex length")
    var out: [UInt8] = []
    var index = digits.startIndex
    while index < digits.endIndex {
        let next = digits.index(index, offsetBy: 2)
        out.append(UInt8(digits[index..<next], radix: 16)!)
        index = next
    }
    return out
}

func buffer(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }
func buffer(hex text: String) -> ByteBuffer { ByteBuffer(bytes: hex(text)) }
func bytes(_ buffer: ByteBuffer) -> [UInt8] { Array(buffer.readableBytesView) }

/// `bytes` zero-padded to a fixed cell payload.
func padded(_ bytes: [UInt8], to length: Int = 509) -> [UInt8] {
    bytes + Array(repeating: 0, count: max(0, length - bytes.count))
}

/// Deterministic generator for reproducible tests (SplitMix64).
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
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

func hexByte(_ byte: UInt8) -> String {
    let digits = Array("0123456789ABCDEF")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
}
