/// An IPv4 or IPv6 address as one 128-bit value, so that both families share one ordering and one
/// range table. IPv4 addresses live in the IPv4-mapped block `::ffff:0:0/96` (RFC 4291 §2.5.5.2);
/// the parser and printer keep the family visible to users (an IPv4 address prints dotted).
public struct IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let high: UInt64
    public let low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// `a.b.c.d` as `::ffff:a.b.c.d`.
    public init(ipv4: UInt32) {
        high = 0
        low = 0x0000_FFFF_0000_0000 | UInt64(ipv4)
    }

    /// Sixteen network-order bytes.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 16 else { return nil }
        var h: UInt64 = 0, l: UInt64 = 0
        for (i, b) in bytes.enumerated() {
            if i < 8 { h = h << 8 | UInt64(b) } else { l = l << 8 | UInt64(b) }
        }
        high = h
        low = l
    }

    /// Parses dotted IPv4 (leading zeros allowed, as eMule lists write `001.009.096.105`) or IPv6
    /// text (RFC 4291 §2.2, including `::` and a trailing dotted quad). No zone IDs, no brackets.
    public init?(_ text: some StringProtocol) {
        let utf8 = Array(text.utf8)
        guard let parsed = utf8.withUnsafeBufferPointer(IPAddress.parse) else {
            return nil
        }
        self = parsed
    }

    static let ipv4MappedLowMask: UInt64 = 0xFFFF_FFFF_0000_0000
    static let ipv4MappedLowTag: UInt64 = 0x0000_FFFF_0000_0000

    public static let zero = IPAddress(high: 0, low: 0)
    public static let max = IPAddress(high: .max, low: .max)
    public static let ipv4First = IPAddress(ipv4: 0)
    public static let ipv4Last = IPAddress(ipv4: .max)

    public var isIPv4: Bool { high == 0 && low & Self.ipv4MappedLowMask == Self.ipv4MappedLowTag }

    /// The IPv4 value when this is an IPv4(-mapped) address.
    public var ipv4: UInt32? { isIPv4 ? UInt32(truncatingIfNeeded: low) : nil }

    /// Network-order bytes (16), e.g. for SQLite BLOB keys: memcmp order equals numeric order.
    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 {
            out[i] = UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64(i)))
            out[8 + i] = UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64(i)))
        }
        return out
    }

    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        a.high != b.high ? a.high < b.high : a.low < b.low
    }

    /// The next address, or nil at the top of the space.
    public var successor: IPAddress? {
        if low != .max { return IPAddress(high: high, low: low + 1) }
        if high != .max { return IPAddress(high: high + 1, low: 0) }
        return nil
    }

    /// The previous address, or nil at `::`.
    public var predecessor: IPAddress? {
        if low != 0 { return IPAddress(high: high, low: low - 1) }
        if high != 0 { return IPAddress(high: high - 1, low: .max) }
        return nil
    }

    /// Dotted quad for IPv4; RFC 5952 canonical text for IPv6.
    public var description: String {
        if let v4 = ipv4 {
            return "\(v4 >> 24).\(v4 >> 16 & 0xFF).\(v4 >> 8 & 0xFF).\(v4 & 0xFF)"
        }
        var groups = [UInt16](repeating: 0, count: 8)
        for i in 0..<4 {
            groups[i] = UInt16(truncatingIfNeeded: high >> (48 - 16 * UInt64(i)))
            groups[4 + i] = UInt16(truncatingIfNeeded: low >> (48 - 16 * UInt64(i)))
        }
        // RFC 5952 §4.2: compress the longest run (≥ 2) of zero groups, the first one on a tie.
        var bestStart = -1, bestLen = 0, i = 0
        while i < 8 {
            if groups[i] == 0 {
                var j = i
                while j < 8 && groups[j] == 0 { j += 1 }
                if j - i > bestLen && j - i >= 2 { bestStart = i; bestLen = j - i }
                i = j
            } else { i += 1 }
        }
        func hex(_ range: Range<Int>) -> String {
            range.map { String(groups[$0], radix: 16) }.joined(separator: ":")
        }
        if bestStart < 0 { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLen)..<8)
    }

    // MARK: parsing (byte-level: blocklists have hundreds of thousands of lines)

    static func parse(_ s: UnsafeBufferPointer<UInt8>) -> IPAddress? {
        if s.isEmpty { return nil }
        if s.contains(UInt8(ascii: ":")) { return parseIPv6(s) }
        return parseIPv4(s).map { IPAddress(ipv4: $0) }
    }

    static func parseIPv4(_ s: UnsafeBufferPointer<UInt8>) -> UInt32? {
        var value: UInt32 = 0, octet: UInt32 = 0, digits = 0, dots = 0
        for c in s {
            if c >= 0x30 && c <= 0x39 {
                octet = octet * 10 + UInt32(c - 0x30)
                digits += 1
                if digits > 3 || octet > 255 { return nil }
            } else if c == UInt8(ascii: ".") {
                if digits == 0 || dots == 3 { return nil }
                value = value << 8 | octet
                octet = 0; digits = 0; dots += 1
            } else {
                return nil
            }
        }
        guard dots == 3, digits > 0 else { return nil }
        return value << 8 | octet
    }

    static func parseIPv6(_ s: UnsafeBufferPointer<UInt8>) -> IPAddress? {
        var groups = [UInt16](); groups.reserveCapacity(8)
        var gapAt: Int? = nil
        var i = 0
        let n = s.count
        if n >= 2 && s[0] == UInt8(ascii: ":") && s[1] == UInt8(ascii: ":") {
            gapAt = 0; i = 2
            if i == n { return IPAddress(high: 0, low: 0) }
        } else if s[0] == UInt8(ascii: ":") {
            return nil
        }
        while i < n {
            // One field: hex group, or a dotted IPv4 tail.
            var j = i
            var sawDot = false
            while j < n && s[j] != UInt8(ascii: ":") {
                if s[j] == UInt8(ascii: ".") { sawDot = true }
                j += 1
            }
            if j == i { return nil }
            if sawDot {
                guard j == n, groups.count <= 6,
                      let v4 = parseIPv4(UnsafeBufferPointer(rebasing: s[i..<j])) else { return nil }
                groups.append(UInt16(v4 >> 16)); groups.append(UInt16(v4 & 0xFFFF))
                i = j
                break
            }
            guard j - i <= 4 else { return nil }
            var g: UInt16 = 0
            for k in i..<j {
                guard let d = hexValue(s[k]) else { return nil }
                g = g << 4 | UInt16(d)
            }
            groups.append(g)
            if groups.count > 8 { return nil }
            i = j
            if i < n {  // at a ':'
                if i + 1 < n && s[i + 1] == UInt8(ascii: ":") {
                    if gapAt != nil { return nil }
                    gapAt = groups.count
                    i += 2
                } else {
                    i += 1
                    if i == n { return nil }  // trailing single ':'
                }
            }
        }
        if let gap = gapAt {
            guard groups.count < 8 else { return nil }
            groups.insert(contentsOf: repeatElement(0, count: 8 - groups.count), at: gap)
        } else {
            guard groups.count == 8 else { return nil }
        }
        var h: UInt64 = 0, l: UInt64 = 0
        for k in 0..<4 { h = h << 16 | UInt64(groups[k]) }
        for k in 4..<8 { l = l << 16 | UInt64(groups[k]) }
        return IPAddress(high: h, low: l)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x61...0x66: return c - 0x61 + 10
        case 0x41...0x46: return c - 0x41 + 10
        default: return nil
        }
    }
}
