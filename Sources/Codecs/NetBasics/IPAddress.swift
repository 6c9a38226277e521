// IP addresses: the one parser and printer of the package (cells, exit and extend policies, magnet
// peers, blocklists, bind checks). Pure: no sockets, no resolver.
//
// Text is parsed strictly by default, the way inet_pton and the OS resolver agree on it: a dotted
// quad has four decimal parts without leading zeros ("010.0.0.1" is octal 8.0.0.1 to inet_aton, so it
// is refused rather than guessed). Blocklist files write zero-padded quads (eMule `001.009.096.105`);
// their parser opts in with `allowingLeadingZeros`.

/// An IPv4 address (4 bytes, network order).
public struct IPv4Address: Hashable, Sendable, CustomStringConvertible {
    /// The address as a big-endian integer: 127.0.0.1 is 0x7F00_0001.
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        rawValue = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Parses dotted-quad text: four decimal parts 0…255; no leading zeros unless allowed.
    public init?(_ text: some StringProtocol, allowingLeadingZeros: Bool = false) {
        let utf8 = Array(text.utf8)
        guard let value = utf8.withUnsafeBufferPointer({ IPAddress.parseIPv4($0, allowingLeadingZeros: allowingLeadingZeros) })
        else { return nil }
        rawValue = value
    }

    public var description: String {
        "\(rawValue >> 24).\(rawValue >> 16 & 0xFF).\(rawValue >> 8 & 0xFF).\(rawValue & 0xFF)"
    }
}

/// An IPv6 address (16 bytes, network order).
public struct IPv6Address: Hashable, Sendable, CustomStringConvertible {
    /// The first 8 bytes, big-endian.
    public var high: UInt64
    /// The last 8 bytes, big-endian.
    public var low: UInt64
    public init(high: UInt64, low: UInt64) { self.high = high; self.low = low }

    /// Builds an address from exactly 16 bytes; nil otherwise.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 16 else { return nil }
        var high: UInt64 = 0, low: UInt64 = 0
        for (i, b) in bytes.enumerated() {
            if i < 8 { high = high << 8 | UInt64(b) } else { low = low << 8 | UInt64(b) }
        }
        self.high = high; self.low = low
    }

    /// Parses RFC 4291 §2.2 text: eight hex groups, at most one `::`, optionally a trailing dotted
    /// quad (held to the same leading-zero rule as IPv4). No zone IDs, no brackets.
    public init?(_ text: some StringProtocol, allowingLeadingZeros: Bool = false) {
        let utf8 = Array(text.utf8)
        guard let a = utf8.withUnsafeBufferPointer({ IPAddress.parseIPv6($0, allowingLeadingZeros: allowingLeadingZeros) })
        else { return nil }
        self = a
    }

    /// The eight 16-bit groups.
    public var groups: [UInt16] {
        (0..<8).map { i in UInt16(truncatingIfNeeded: (i < 4 ? high : low) >> (48 - 16 * UInt64(i % 4))) }
    }

    /// The 16 bytes in network order.
    public var bytes: [UInt8] {
        (0..<16).map { i in UInt8(truncatingIfNeeded: (i < 8 ? high : low) >> (56 - 8 * UInt64(i % 8))) }
    }

    /// RFC 5952 text: lowercase, the first longest run (≥ 2) of zero groups shortened to `::`.
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

/// An IPv4 or IPv6 address as one 128-bit value, so that both families share one ordering and one
/// range table. IPv4 addresses live in the IPv4-mapped block `::ffff:0:0/96` (RFC 4291 §2.5.5.2):
/// `::ffff:a.b.c.d` *is* `a.b.c.d` (it reaches the same host), and prints dotted.
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
        low = Self.ipv4MappedLowTag | UInt64(ipv4)
    }

    public init(_ address: IPv4Address) { self.init(ipv4: address.rawValue) }
    public init(_ address: IPv6Address) { self.init(high: address.high, low: address.low) }
    public static func v4(_ address: IPv4Address) -> IPAddress { IPAddress(address) }
    public static func v6(_ address: IPv6Address) -> IPAddress { IPAddress(address) }

    /// Sixteen network-order bytes.
    public init?(bytes: some Collection<UInt8>) {
        guard let a = IPv6Address(bytes: bytes) else { return nil }
        self.init(a)
    }

    /// Parses dotted IPv4 or IPv6 text (RFC 4291 §2.2, including `::` and a trailing dotted quad).
    /// No zone IDs, no brackets, no names.
    public init?(_ text: some StringProtocol, allowingLeadingZeros: Bool = false) {
        let utf8 = Array(text.utf8)
        guard let parsed = utf8.withUnsafeBufferPointer({ IPAddress.parse($0, allowingLeadingZeros: allowingLeadingZeros) })
        else { return nil }
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
    public var ipv4Address: IPv4Address? { ipv4.map(IPv4Address.init(rawValue:)) }
    /// The 128 bits as an IPv6 address (an IPv4 address as `::ffff:a.b.c.d`).
    public var ipv6Address: IPv6Address { IPv6Address(high: high, low: low) }

    /// The family, for code that writes the two differently (cells, sockets).
    public enum Family: Hashable, Sendable {
        case v4(IPv4Address)
        case v6(IPv6Address)
    }

    public var family: Family {
        if let v4 = ipv4Address { return .v4(v4) }
        return .v6(ipv6Address)
    }

    /// Network-order bytes (16), e.g. for SQLite BLOB keys: memcmp order equals numeric order.
    public var bytes: [UInt8] { ipv6Address.bytes }

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
    public var description: String { ipv4Address?.description ?? ipv6Address.description }

    // MARK: parsing (byte-level: blocklists have hundreds of thousands of lines)

    /// Parses ASCII bytes as either family.
    public static func parse(_ s: UnsafeBufferPointer<UInt8>, allowingLeadingZeros: Bool = false) -> IPAddress? {
        if s.isEmpty { return nil }
        if s.contains(UInt8(ascii: ":")) { return parseIPv6(s, allowingLeadingZeros: allowingLeadingZeros).map(IPAddress.init) }
        return parseIPv4(s, allowingLeadingZeros: allowingLeadingZeros).map { IPAddress(ipv4: $0) }
    }

    static func parseIPv4(_ s: UnsafeBufferPointer<UInt8>, allowingLeadingZeros: Bool) -> UInt32? {
        var value: UInt32 = 0, octet: UInt32 = 0, digits = 0, dots = 0
        var leadingZero = false
        for c in s {
            if c >= 0x30 && c <= 0x39 {
                if digits == 1 && leadingZero && !allowingLeadingZeros { return nil }
                if digits == 0 { leadingZero = c == 0x30 }
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

    static func parseIPv6(_ s: UnsafeBufferPointer<UInt8>, allowingLeadingZeros: Bool) -> IPv6Address? {
        let n = s.count
        guard n > 0 else { return nil }
        var groups = [UInt16](); groups.reserveCapacity(8)
        var gapAt: Int? = nil
        var i = 0
        if n >= 2 && s[0] == UInt8(ascii: ":") && s[1] == UInt8(ascii: ":") {
            gapAt = 0; i = 2
            if i == n { return IPv6Address(high: 0, low: 0) }
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
                      let v4 = parseIPv4(UnsafeBufferPointer(rebasing: s[i..<j]), allowingLeadingZeros: allowingLeadingZeros)
                else { return nil }
                groups.append(UInt16(v4 >> 16)); groups.append(UInt16(v4 & 0xFFFF))
                i = j
                break
            }
            guard j - i <= 4 else { return nil }
            var g: UInt16 = 0
            for k in i..<j {
                guard let d = Hex.nibble(s[k]) else { return nil }
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
        return IPv6Address(high: h, low: l)
    }
}
