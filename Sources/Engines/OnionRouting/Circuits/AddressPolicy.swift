// Exit and extend policies: which (address, port) pairs this relay will connect to on a stream's behalf
// (BEGIN) or open a channel to (EXTEND2). Syntax follows tor's ExitPolicy lines:
//   "accept 127.0.0.1:*", "reject 10.0.0.0/8:*", "accept *:80-443", "accept [::1]:8080", "reject *:*".
// First match wins; an address that matches no rule is rejected. Whether an EXTEND2 target is
// public at all is NetBasics' `AddressClass` (OnionRelay.extendRefusal), the table the engine's
// magnet-peer policy uses too.

import NetBasics

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
            if let a = IPv4Address(addressPart) {
                let length = bits ?? 32
                guard (0...32).contains(length) else { return nil }
                self.pattern = .v4(network: a.rawValue, prefixLength: length)
            } else if addressPart.hasPrefix("["), addressPart.hasSuffix("]"),  // tor requires brackets for IPv6
                let a = IPv6Address(addressPart.dropFirst().dropLast())
            {
                let length = bits ?? 128
                guard (0...128).contains(length) else { return nil }
                self.pattern = .v6(network: a.bytes, prefixLength: length)
            } else {
                return nil
            }
        }
        self.action = action
    }

    public func matches(_ address: IPAddress, port: UInt16) -> Bool {
        guard self.ports.contains(port) else { return false }
        switch (self.pattern, address.family) {
        case (.any, _):
            return true
        case (.v4(let network, let length), .v4(let address)):
            guard length > 0 else { return true }
            return address.rawValue >> (32 - length) == network >> (32 - length)
        case (.v6(let network, let length), .v6(let address)):
            // The pattern is public and could be built by hand: never index past 16 bytes.
            guard network.count == 16, (0...128).contains(length) else { return false }
            let b = address.bytes
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
        case .v4(let n, let l): address = IPv4Address(rawValue: n).description + (l == 32 ? "" : "/\(l)")
        case .v6(let n, let l): address = "[\(IPv6Address(bytes: n).map { "\($0)" } ?? "invalid")]" + (l == 128 ? "" : "/\(l)")
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
