// Exit and extend policies: which (address, port) pairs this relay will connect to on a stream's behalf
// (BEGIN) or open a channel to (EXTEND2). Syntax follows tor's ExitPolicy lines:
//   "accept 127.0.0.1:*", "reject 10.0.0.0/8:*", "accept *:80-443", "accept [::1]:8080", "reject *:*".
// First match wins; an address that matches no rule is rejected.

/// An IP address, as found in link specifiers, BEGIN targets and policies.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(UInt32)
    case v6([UInt8])  // 16 bytes

    /// Parse dotted-quad IPv4 or (bracketed or bare) IPv6 text. Hostnames return nil.
    public init?(_ text: some StringProtocol) {
        var text = Substring(text)
        if text.hasPrefix("["), text.hasSuffix("]") { text = text.dropFirst().dropLast() }
        if let v4 = Self.parseIPv4(text) {
            self = .v4(v4)
        } else if let v6 = Self.parseIPv6(text) {
            self = .v6(v6)
        } else {
            return nil
        }
    }

    public init(ipv4Bytes b: some Collection<UInt8>) {
        precondition(b.count == 4)
        self = .v4(b.reduce(0) { $0 << 8 | UInt32($1) })
    }

    public var description: String {
        switch self {
        case .v4(let a):
            return "\(a >> 24).\(a >> 16 & 0xFF).\(a >> 8 & 0xFF).\(a & 0xFF)"
        case .v6(let b):
            let groups = stride(from: 0, to: 16, by: 2).map { String(UInt16(b[$0]) << 8 | UInt16(b[$0 + 1]), radix: 16) }
            return "[" + groups.joined(separator: ":") + "]"
        }
    }

    /// Loopback, private (RFC 1918), link-local, unspecified, CGNAT, multicast and similar ranges that
    /// a public relay must not be tricked into reaching.
    public var isInternal: Bool {
        switch self {
        case .v4(let a):
            let internalNets: [(UInt32, Int)] = [
                (0x0000_0000, 8), (0x0A00_0000, 8), (0x6440_0000, 10), (0x7F00_0000, 8), (0xA9FE_0000, 16),
                (0xAC10_0000, 12), (0xC0A8_0000, 16), (0xE000_0000, 4), (0xF000_0000, 4),
            ]
            return internalNets.contains { net, bits in a >> (32 - bits) == net >> (32 - bits) }
        case .v6(let b):
            if b.allSatisfy({ $0 == 0 }) || b == [UInt8](repeating: 0, count: 15) + [1] { return true }
            if b[0] == 0xFE && b[1] & 0xC0 == 0x80 { return true }  // fe80::/10
            if b[0] & 0xFE == 0xFC { return true }  // fc00::/7
            if b[0] == 0xFF { return true }  // multicast
            if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xFF && b[11] == 0xFF {  // ::ffff:a.b.c.d
                return IPAddress(ipv4Bytes: b[12..<16]).isInternal
            }
            return false
        }
    }

    private static func parseIPv4(_ text: Substring) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy(\.isASCII), let octet = UInt8(part) else { return nil }
            value = value << 8 | UInt32(octet)
        }
        return value
    }

    private static func parseIPv6(_ text: Substring) -> [UInt8]? {
        guard text.contains(":"), text.count <= 45 else { return nil }
        let halves = text.components(separatedByDoubleColon: ())
        guard halves.count <= 2 else { return nil }
        func groups(_ part: Substring) -> [UInt16]? {
            if part.isEmpty { return [] }
            var out: [UInt16] = []
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, piece) in pieces.enumerated() {
                if index == pieces.count - 1, piece.contains("."), let v4 = parseIPv4(piece) {
                    out += [UInt16(v4 >> 16), UInt16(v4 & 0xFFFF)]
                } else {
                    guard (1...4).contains(piece.count), let g = UInt16(piece, radix: 16) else { return nil }
                    out.append(g)
                }
            }
            return out
        }
        guard let head = groups(halves[0]) else { return nil }
        var all = head
        if halves.count == 2 {
            guard let tail = groups(halves[1]), head.count + tail.count < 8 else { return nil }
            all += [UInt16](repeating: 0, count: 8 - head.count - tail.count) + tail
        }
        guard all.count == 8 else { return nil }
        return all.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    }
}

extension Substring {
    /// Split at the first "::" (at most two parts), without Foundation.
    fileprivate func components(separatedByDoubleColon: Void) -> [Substring] {
        var index = self.startIndex
        while index < self.endIndex {
            let next = self.index(after: index)
            if self[index] == ":", next < self.endIndex, self[next] == ":" {
                let rest = self[self.index(after: next)...]
                if rest.contains("::") || rest.hasPrefix(":") { return [self, "", ""] }  // invalid: reported as 3 parts
                return [self[..<index], rest]
            }
            index = next
        }
        return [self]
    }
}

/// One policy line.
public struct AddressPolicyRule: Hashable, Sendable, CustomStringConvertible {
    public enum Action: String, Hashable, Sendable { case accept, reject }
    public enum Pattern: Hashable, Sendable {
        case any
        case v4(network: UInt32, prefixLength: Int)
        case v6(network: [UInt8], prefixLength: Int)
    }

    public var action: Action
    public var pattern: Pattern
    public var ports: ClosedRange<UInt16>

    public init(_ action: Action, _ pattern: Pattern, ports: ClosedRange<UInt16> = 1...65535) {
        self.action = action
        self.pattern = pattern
        self.ports = ports
    }

    /// Parse `accept|reject ADDR[/BITS]:PORT[-PORT]`; ADDR is `*`, IPv4 or `[IPv6]`; PORT is `*` or a number.
    public init?(_ line: some StringProtocol) {
        let words = line.split(separator: " ", omittingEmptySubsequences: true)
        guard words.count == 2, let action = Action(rawValue: words[0].lowercased()) else { return nil }
        let spec = words[1]
        guard let colon = spec.lastIndex(of: ":") else { return nil }
        let addressText = spec[..<colon]
        let portText = spec[spec.index(after: colon)...]

        if portText == "*" {
            self.ports = 1...65535
        } else if let dash = portText.firstIndex(of: "-") {
            guard let lo = UInt16(portText[..<dash]), let hi = UInt16(portText[portText.index(after: dash)...]),
                lo >= 1, lo <= hi
            else { return nil }
            self.ports = lo...hi
        } else {
            guard let port = UInt16(portText), port >= 1 else { return nil }
            self.ports = port...port
        }

        if addressText == "*" {
            self.pattern = .any
        } else {
            var addressPart = addressText
            var bits: Int?
            if let slash = addressText.lastIndex(of: "/") {
                guard let b = Int(addressText[addressText.index(after: slash)...]) else { return nil }
                bits = b
                addressPart = addressText[..<slash]
            }
            switch IPAddress(addressPart) {
            case .v4(let a)?:
                let length = bits ?? 32
                guard (0...32).contains(length) else { return nil }
                self.pattern = .v4(network: a, prefixLength: length)
            case .v6(let b)?:
                guard addressPart.hasPrefix("[") else { return nil }  // tor requires brackets for IPv6
                let length = bits ?? 128
                guard (0...128).contains(length) else { return nil }
                self.pattern = .v6(network: b, prefixLength: length)
            case nil:
                return nil
            }
        }
        self.action = action
    }

    public func matches(_ address: IPAddress, port: UInt16) -> Bool {
        guard self.ports.contains(port) else { return false }
        switch (self.pattern, address) {
        case (.any, _):
            return true
        case (.v4(let network, let length), .v4(let a)):
            guard length > 0 else { return true }
            return a >> (32 - length) == network >> (32 - length)
        case (.v6(let network, let length), .v6(let b)):
            for bit in 0..<length where (network[bit / 8] ^ b[bit / 8]) & (0x80 >> (bit % 8)) != 0 {
                return false
            }
            return true
        default:
            return false
        }
    }

    public var description: String {
        let address: String
        switch self.pattern {
        case .any: address = "*"
        case .v4(let n, let l): address = IPAddress.v4(n).description + (l == 32 ? "" : "/\(l)")
        case .v6(let n, let l): address = IPAddress.v6(n).description + (l == 128 ? "" : "/\(l)")
        }
        let ports = self.ports == 1...65535 ? "*" : self.ports.count == 1 ? "\(self.ports.lowerBound)" : "\(self.ports.lowerBound)-\(self.ports.upperBound)"
        return "\(self.action.rawValue) \(address):\(ports)"
    }
}

/// An ordered list of rules; the first that matches decides; no match means reject.
public struct AddressPolicy: Hashable, Sendable, CustomStringConvertible {
    public var rules: [AddressPolicyRule]

    public init(rules: [AddressPolicyRule]) {
        self.rules = rules
    }

    /// Parse one rule per element, e.g. `["accept 127.0.0.1:*", "reject *:*"]`. Returns nil and the bad
    /// line through `badLine` if any line does not parse, so configuration errors are reported, not ignored.
    public init?(lines: [String], badLine: ((String) -> Void)? = nil) {
        var rules: [AddressPolicyRule] = []
        for line in lines {
            guard let rule = AddressPolicyRule(line) else {
                badLine?(line)
                return nil
            }
            rules.append(rule)
        }
        self.rules = rules
    }

    /// The default for exits: nothing is allowed.
    public static let rejectAll = AddressPolicy(rules: [AddressPolicyRule(.reject, .any)])
    /// Everything is allowed (for extend policies of relays that trust their callers; tests).
    public static let acceptAll = AddressPolicy(rules: [AddressPolicyRule(.accept, .any)])

    public func allows(_ address: IPAddress, port: UInt16) -> Bool {
        self.rules.first { $0.matches(address, port: port) }?.action == .accept
    }

    /// Whether a hostname (not yet resolved) could be allowed: only rules with a wildcard address can be
    /// decided before resolution, the way tor treats unresolved BEGIN targets. The connector must check
    /// `allows(_:port:)` again on the resolved address.
    public func mightAllowHostname(port: UInt16) -> Bool {
        for rule in self.rules where rule.ports.contains(port) {
            if rule.pattern == .any { return rule.action == .accept }
            if rule.action == .accept { return true }  // some address might match after resolution
        }
        return false
    }

    public var description: String { self.rules.map(\.description).joined(separator: ", ") }
}
