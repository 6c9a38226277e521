import Foundation
import NetBasics

/// Constant-time equality for secrets (AUTH, KH, certificate digests): the time depends only on the lengths.
@inlinable
public func constantTimeEqual<A: Collection<UInt8>, B: Collection<UInt8>>(_ a: A, _ b: B) -> Bool {
    guard a.count == b.count else { return false }
    var diff: UInt8 = 0
    for (x, y) in zip(a, b) { diff |= x ^ y }
    return diff == 0
}

/// `count` bytes from `rng`, each 64-bit draw supplying 8 bytes little-endian (so a seeded generator gives
/// the same bytes on every platform). Secret only if `rng` is a CSPRNG: `SystemRandomNumberGenerator` in
/// production, a seeded generator in tests that must be reproducible.
public func randomBytes(_ count: Int, using rng: inout some RandomNumberGenerator) -> [UInt8] {
    var out = [UInt8]()
    out.reserveCapacity(max(0, count) + 7)
    while out.count < count {
        withUnsafeBytes(of: rng.next().littleEndian) { out.append(contentsOf: $0) }
    }
    out.removeLast(out.count - max(0, count))
    return out
}

func isAllZero<C: Collection<UInt8>>(_ bytes: C) -> Bool {
    var acc: UInt8 = 0
    for b in bytes { acc |= b }
    return acc == 0
}

func requireLength<C: Collection<UInt8>>(_ bytes: C, _ n: Int, _ what: String) throws {
    guard bytes.count == n else { throw TorCryptoError.badLength(what: what, expected: n, actual: bytes.count) }
}

extension Array where Element == UInt8 {
    /// Lower-case hex; used for fingerprints and file names.
    public var hexString: String { Hex.encode(self) }

    /// Parses hex (either case; spaces and newlines ignored). Nil on any other character or an odd count.
    public init?(hexString: String) {
        guard let bytes = Hex.decode(hexString, ignoringWhitespace: true) else { return nil }
        self = bytes
    }
}

/// Big-endian field helpers for the certificate codecs.
extension Array where Element == UInt8 {
    mutating func appendBE(_ v: UInt16) { append(UInt8(v >> 8)); append(UInt8(v & 0xFF)) }
    mutating func appendBE(_ v: UInt32) {
        append(UInt8(v >> 24)); append(UInt8((v >> 16) & 0xFF)); append(UInt8((v >> 8) & 0xFF)); append(UInt8(v & 0xFF))
    }
}

/// A bounds-checked reader over a byte slice; every read throws instead of trapping.
struct ByteReader {
    private let bytes: [UInt8]
    private(set) var offset: Int = 0
    private let what: String

    init(_ bytes: [UInt8], what: String) {
        self.bytes = bytes
        self.what = what
    }

    var remaining: Int { bytes.count - offset }

    mutating func take(_ n: Int) throws -> [UInt8] {
        guard n >= 0, n <= remaining else { throw TorCryptoError.malformedCertificate("\(what): truncated") }
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }

    mutating func u8() throws -> UInt8 { try take(1)[0] }
    mutating func u16() throws -> UInt16 { let b = try take(2); return UInt16(b[0]) << 8 | UInt16(b[1]) }
    mutating func u32() throws -> UInt32 {
        let b = try take(4)
        return UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3])
    }
}
