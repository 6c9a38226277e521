import NIOCore

/// An IPv4 address as carried in cells (4 bytes, network order).
public struct IPv4Address: Hashable, Sendable, CustomStringConvertible {
    /// The address as a big-endian integer: 127.0.0.1 is 0x7F00_0001.
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        rawValue = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Parses dotted-quad text. Rejects leading zeros (ambiguous octal) and out-of-range parts.
    public init?<S: StringProtocol>(_ text: S) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy({ $0.isASCII && $0.isNumber }),
                  part.count == 1 || part.first != "0", let byte = UInt8(part) else { return nil }
            value = value << 8 | UInt32(byte)
        }
        rawValue = value
    }

    public var description: String {
        "\(rawValue >> 24).\(rawValue >> 16 & 0xFF).\(rawValue >> 8 & 0xFF).\(rawValue & 0xFF)"
    }
}

/// An IPv6 address as carried in cells (16 bytes, network order).
public struct IPv6Address: Hashable, Sendable, CustomStringConvertible {
    /// The first 8 bytes, big-endian.
    public var high: UInt64
    /// The last 8 bytes, big-endian.
    public var low: UInt64
    public init(high: UInt64, low: UInt64) { self.high = high; self.low = low }

    /// Builds an address from exactly 16 bytes; nil otherwise.
    public init?<C: Collection>(bytes: C) where C.Element == UInt8 {
        guard bytes.count == 16 else { return nil }
        var high: UInt64 = 0, low: UInt64 = 0
        for (i, b) in bytes.enumerated() {
            if i < 8 { high = high << 8 | UInt64(b) } else { low = low << 8 | UInt64(b) }
        }
        self.high = high; self.low = low
    }

    /// The eight 16-bit groups.
    public var groups: [UInt16] {
        (0..<8).map { i in UInt16(truncatingIfNeeded: (i < 4 ? high : low) >> (48 - 16 * UInt64(i % 4))) }
    }

    /// The 16 bytes in network order.
    public var bytes: [UInt8] {
        (0..<16).map { i in UInt8(truncatingIfNeeded: (i < 8 ? high : low) >> (56 - 8 * UInt64(i % 8))) }
    }

    /// Parses RFC 4291 text: eight hex groups, at most one `::`, optionally a trailing dotted quad.
    /// No zone IDs, no brackets.
    public init?<S: StringProtocol>(_ text: S) {
        let text = Substring(text)
        guard text.count <= 45, text.allSatisfy({ $0.isASCII }) else { return nil }
        func parseGroups(_ part: Substring, allowIPv4Tail: Bool) -> [UInt16]? {
            if part.isEmpty { return [] }
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            var out: [UInt16] = []
            for (i, piece) in pieces.enumerated() {
                if allowIPv4Tail && i == pieces.count - 1 && piece.contains(".") {
                    guard let v4 = IPv4Address(piece) else { return nil }
                    out.append(UInt16(v4.rawValue >> 16)); out.append(UInt16(v4.rawValue & 0xFFFF))
                    continue
                }
                guard (1...4).contains(piece.count), piece.allSatisfy({ $0.isHexDigit }),
                      let g = UInt16(piece, radix: 16) else { return nil }
                out.append(g)
            }
            return out
        }
        var groups: [UInt16]
        if let range = text.firstRange(of: "::") {
            let head = text[..<range.lowerBound], tail = text[range.upperBound...]
            guard !tail.contains("::"), let h = parseGroups(head, allowIPv4Tail: false),
                  let t = parseGroups(tail, allowIPv4Tail: true), h.count + t.count <= 7 else { return nil }
            groups = h + Array(repeating: 0, count: 8 - h.count - t.count) + t
        } else {
            guard let g = parseGroups(text, allowIPv4Tail: true), g.count == 8 else { return nil }
            groups = g
        }
        var high: UInt64 = 0, low: UInt64 = 0
        for (i, g) in groups.enumerated() {
            if i < 4 { high = high << 16 | UInt64(g) } else { low = low << 16 | UInt64(g) }
        }
        self.high = high; self.low = low
    }

    /// RFC 5952 text: lowercase, the longest run (≥ 2) of zero groups shortened to `::`.
    public var description: String {
        let g = groups
        var bestStart = -1, bestLength = 1, i = 0
        while i < 8 {
            if g[i] == 0 {
                var j = i
                while j < 8 && g[j] == 0 { j += 1 }
                if j - i > bestLength { bestStart = i; bestLength = j - i }
                i = j
            } else { i += 1 }
        }
        let hex = g.map { String($0, radix: 16) }
        if bestStart < 0 { return hex.joined(separator: ":") }
        return hex[..<bestStart].joined(separator: ":") + "::" + hex[(bestStart + bestLength)...].joined(separator: ":")
    }
}

/// An IPv4 or IPv6 address.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(IPv4Address)
    case v6(IPv6Address)

    /// Parses either textual form (IPv6 without brackets).
    public init?<S: StringProtocol>(_ text: S) {
        if let a = IPv4Address(text) { self = .v4(a) } else if let a = IPv6Address(text) { self = .v6(a) } else { return nil }
    }

    public var description: String {
        switch self {
        case .v4(let a): return a.description
        case .v6(let a): return a.description
        }
    }
}

extension ByteBuffer {
    @inlinable
    mutating func readIPv4(field: String) throws(CellError) -> IPv4Address {
        IPv4Address(rawValue: try readInteger(UInt32.self, field: field))
    }

    @inlinable
    mutating func readIPv6(field: String) throws(CellError) -> IPv6Address {
        let high = try readInteger(UInt64.self, field: field)
        let low = try readInteger(UInt64.self, field: field)
        return IPv6Address(high: high, low: low)
    }

    @inlinable
    mutating func writeIPv6(_ address: IPv6Address) {
        writeInteger(address.high)
        writeInteger(address.low)
    }
}
