import Testing
@testable import TorCrypto

/// Hex literal for vectors (spaces and newlines allowed); a malformed literal is a test bug, so it traps.
func hex(_ s: String) -> [UInt8] {
    guard let b = [UInt8](hexString: s) else { fatalError("bad hex literal in test: \(s)") }
    return b
}

/// Yields fixed 64-bit words, so a test can say exactly which bytes an RNG-driven API must consume.
struct ScriptedGenerator: RandomNumberGenerator {
    var words: [UInt64]
    init(bytes: [UInt8]) {
        precondition(bytes.count % 8 == 0)
        words = stride(from: 0, to: bytes.count, by: 8).map { i in
            (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[i + $1]) << (8 * UInt64($1)) }
        }
    }
    mutating func next() -> UInt64 { words.removeFirst() }
}
