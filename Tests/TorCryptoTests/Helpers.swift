import Testing
@testable import TorCrypto

/// Hex literal for vectors (spaces and newlines allowed); a malformed literal is a test bug, so it traps.
func hex(_ s: String) -> [UInt8] {
    guard let b = [UInt8](hexString: s) else { fatalError("bad hex literal in test: \(s)") }
    return b
}
