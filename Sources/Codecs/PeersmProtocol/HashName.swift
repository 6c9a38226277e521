/// What a requester asks for: a 20-byte BitTorrent infohash (or a Peersm hash_name), or a magnet
/// link as UTF-8. On the wire it is opaque bytes, 1…255 long; `infohash` interprets it.
public struct HashName: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws {
        guard (1...PeersmWire.maxHashNameLength).contains(bytes.count) else {
            throw PeersmProtocolError.invalidLength(.hashName, bytes.count)
        }
        self.bytes = bytes
    }

    public init(infohash: [UInt8]) throws {
        guard infohash.count == 20 else { throw PeersmProtocolError.invalidLength(.hashName, infohash.count) }
        self.bytes = infohash
    }

    /// A magnet link; it must fit the one-byte length prefix, so long tracker lists must be dropped first.
    public init(magnet: String) throws {
        guard magnet.hasPrefix("magnet:?") else { throw PeersmProtocolError.invalidText(.hashName) }
        try self.init(bytes: Array(magnet.utf8))
    }

    /// The magnet link, if the bytes are one.
    public var magnet: String? {
        guard bytes.count != 20, let text = String(validating: bytes, as: UTF8.self), text.hasPrefix("magnet:?") else { return nil }
        return text
    }

    /// The v1 infohash: the bytes themselves when 20 long, else the `xt=urn:btih:` of a magnet
    /// link (40 hex digits or 32 base32 characters, BEP 9). nil when neither.
    public var infohash: [UInt8]? {
        if bytes.count == 20 { return bytes }
        guard let link = magnet else { return nil }
        let query = link.dropFirst("magnet:?".count)
        for parameter in query.split(separator: "&") {
            let lower = parameter.lowercased()
            guard lower.hasPrefix("xt=urn:btih:") else { continue }
            let value = Array(parameter.dropFirst("xt=urn:btih:".count).utf8)
            if value.count == 40, let decoded = Self.decodeHex(value) { return decoded }
            if value.count == 32, let decoded = Self.decodeBase32(value) { return decoded }
        }
        return nil
    }

    public var description: String {
        if let link = magnet { return link }
        return bytes.map { String($0, radix: 16).leftPadded(to: 2) }.joined()
    }

    private static func decodeHex(_ chars: [UInt8]) -> [UInt8]? {
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let high = nibble(chars[i]), let low = nibble(chars[i + 1]) else { return nil }
            out.append(high << 4 | low)
            i += 2
        }
        return out
    }

    /// RFC 4648 base32 without padding: 32 characters → 20 bytes.
    private static func decodeBase32(_ chars: [UInt8]) -> [UInt8]? {
        var out: [UInt8] = []
        var buffer: UInt64 = 0
        var bits = 0
        for c in chars {
            let value: UInt8
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = c - UInt8(ascii: "A")
            case UInt8(ascii: "a")...UInt8(ascii: "z"): value = c - UInt8(ascii: "a")
            case UInt8(ascii: "2")...UInt8(ascii: "7"): value = c - UInt8(ascii: "2") + 26
            default: return nil
            }
            buffer = buffer << 5 | UInt64(value)
            bits += 5
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: buffer >> UInt64(bits)))
            }
        }
        return out.count == 20 ? out : nil
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
