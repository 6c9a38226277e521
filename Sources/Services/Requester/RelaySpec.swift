import Foundation
import NetBasics
import OnionRouting
import TorCells
import TorCrypto

/// A relay named on the command line or in a file, one per line:
/// `host:port:rsa_fingerprint_hex:ed25519_identity_base64:ntor_onion_key_base64`
/// (the ed25519 field may be empty or `-`; base64 with or without padding, as in tor's descriptors).
public enum RelaySpec {
    public struct ParseError: Error, CustomStringConvertible {
        public let spec: String
        public let reason: String
        public var description: String { "bad relay spec \"\(spec)\": \(reason) (expected host:port:rsa_fp_hex:ed25519_b64:ntor_b64)" }
    }

    public static func parse(_ spec: String) throws -> CircuitHop {
        let fields = spec.trimmingCharacters(in: .whitespaces).split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        func fail(_ why: String) -> ParseError { ParseError(spec: spec, reason: why) }
        guard fields.count == 5 else { throw fail("\(fields.count) fields, expected 5") }
        guard let address = IPv4Address(fields[0], allowingLeadingZeros: true) else { throw fail("host must be an IPv4 address") }
        guard let port = UInt16(fields[1]), port != 0 else { throw fail("port must be 1…65535") }
        guard let fingerprint = Hex.decode(fields[2].replacingOccurrences(of: "$", with: "")), fingerprint.count == 20 else {
            throw fail("RSA fingerprint must be 40 hex digits")
        }
        let rsa = try RSAIdentity(bytes: fingerprint)
        var ed: Ed25519Identity?
        if !fields[3].isEmpty && fields[3] != "-" {
            guard let bytes = base64(fields[3]), bytes.count == 32 else { throw fail("ed25519 identity must be 32 bytes of base64") }
            ed = try Ed25519Identity(bytes: bytes)
        }
        guard let onion = base64(fields[4]), onion.count == 32 else { throw fail("ntor onion key must be 32 bytes of base64") }
        return CircuitHop(address: address, port: port,
                          ntorKey: try NtorPublicKey(identity: rsa, onionKey: onion), ed25519Identity: ed)
    }

    /// Parses `--via`: comma-separated specs, or `@FILE` / a path to a file with one spec per line
    /// (blank lines and `#` comments ignored).
    public static func parseList(_ argument: String) throws -> [CircuitHop] {
        var items: [String] = []
        for part in argument.split(separator: ",").map(String.init) {
            let path = part.hasPrefix("@") ? String(part.dropFirst()) : part
            if part.hasPrefix("@") || (!part.contains(":") && FileManager.default.fileExists(atPath: path)) {
                guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                    throw ParseError(spec: part, reason: "cannot read file \(path)")
                }
                items += text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
                    .filter { !$0.isEmpty && !$0.hasPrefix("#") }
            } else {
                items.append(part)
            }
        }
        return try items.map(parse)
    }

    /// The spec of a hop (what `parse` reads back).
    public static func format(_ hop: CircuitHop) -> String {
        let ed = hop.ed25519Identity.map { Data($0.bytes).base64EncodedString() } ?? "-"
        return "\(hop.address):\(hop.port):\(Hex.encode(hop.ntorKey.identity.bytes, uppercase: true)):\(ed):\(Data(hop.ntorKey.onionKey).base64EncodedString())"
    }

    static func base64(_ s: String) -> [UInt8]? {
        var text = s
        while text.count % 4 != 0 { text += "=" }
        return Data(base64Encoded: text).map(Array.init)
    }
}

/// Formats progress for a terminal: bytes, rate, ETA. Pure (the caller supplies elapsed time).
public struct ProgressMeter: Sendable {
    public var width = 30
    public init(width: Int = 30) { self.width = width }

    public func line(done: UInt64, total: UInt64, elapsed: Duration) -> String {
        let seconds = max(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18, 1e-3)
        let rate = Double(done) / seconds
        let fraction = total == 0 ? 1 : min(1, Double(done) / Double(total))
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let eta = rate > 0 && total > done ? Self.clock(Double(total - done) / rate) : "--:--"
        let percent = String(format: "%3.0f%%", fraction * 100)
        return "[\(bar)] \(percent) \(Self.bytes(Double(done))) / \(Self.bytes(Double(total)))  \(Self.bytes(rate))/s  ETA \(eta)"
    }

    public static func bytes(_ n: Double) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = n
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? String(format: "%.0f", value) + " " + units[unit] : String(format: "%.1f", value) + " " + units[unit]
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%02d:%02d", s / 60, s % 60)
    }
}
