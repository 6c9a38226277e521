/// Reads magnet links (BEP 9) exactly as libtorrent 2.0's parse_magnet_uri reads their `xt`
/// parameters, so that the hash the spy hunt looks for (PeersmProtocol's `HashName.infohash`) is the
/// hash the engine fetches (TorrentEngine): parameter names are case-insensitive and may carry a
/// numeric suffix (`xt.1`); a name runs to the first '=', its value to the next '&'; values holding
/// a '%' are percent-decoded. Checked against TestSupport's `MagnetVectors` and the installed
/// libtorrent. (Peers, `x.pe`, and DHT nodes, `dht=`, are listed by libtorrent's own parser in
/// TorrentEngine, so the endpoints judged are exactly those libtorrent would dial.)
public enum MagnetLink {
    public enum Error: Swift.Error, Equatable, Sendable, CustomStringConvertible {
        case notAMagnetLink
        case malformedEscape
        /// A `urn:btih:` that is neither 40 hex digits nor 32 base32 characters (libtorrent would
        /// ignore the bad digits and fetch some other hash).
        case malformedBTIH
        /// Two different btih (libtorrent takes the last).
        case conflictingBTIH

        public var description: String {
            switch self {
            case .notAMagnetLink: return "not a magnet link (magnet:?…)"
            case .malformedEscape: return "magnet link with a malformed percent-escape in xt"
            case .malformedBTIH: return "magnet link whose xt=urn:btih: is neither 40 hex digits nor 32 base32 characters"
            case .conflictingBTIH: return "magnet link naming two different btih info-hashes"
            }
        }
    }

    /// The percent-decoded values of the link's `xt` parameters, in order. The `magnet:?` prefix
    /// is matched case-insensitively.
    public static func xtValues(_ uri: String) throws(Error) -> [String] {
        try xtValueBytes(uri).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The v1 info-hash (20 bytes) of the link's `xt=urn:btih:` (hex or base32 form); nil when it
    /// names none (e.g. a v2-only `btmh` link). Throws where libtorrent would fetch a hash we cannot
    /// know for sure: a malformed btih, or two different ones.
    public static func btih(_ uri: String) throws(Error) -> [UInt8]? {
        let prefix = Array("urn:btih:".utf8)
        var found: [UInt8]?
        for value in try xtValueBytes(uri) where value.starts(with: prefix) {
            let hash = value.dropFirst(prefix.count)
            let decoded: [UInt8]?
            switch hash.count {
            case 40: decoded = Hex.decode(ascii: hash)
            case 32: decoded = Base32.decode(ascii: hash)
            default: decoded = nil
            }
            guard let decoded, decoded.count == 20 else { throw .malformedBTIH }
            if let found, found != decoded { throw .conflictingBTIH }
            found = decoded
        }
        return found
    }

    /// RFC 3986 percent-decoding; nil for a truncated or non-hex escape.
    public static func percentDecoded(_ chars: some Collection<UInt8>) -> [UInt8]? {
        let chars = Array(chars)
        var out: [UInt8] = []
        out.reserveCapacity(chars.count)
        var i = 0
        while i < chars.count {
            if chars[i] == UInt8(ascii: "%") {
                guard i + 2 < chars.count, let high = Hex.nibble(chars[i + 1]), let low = Hex.nibble(chars[i + 2])
                else { return nil }
                out.append(high << 4 | low)
                i += 3
            } else {
                out.append(chars[i])
                i += 1
            }
        }
        return out
    }

    static func xtValueBytes(_ uri: String) throws(Error) -> [[UInt8]] {
        let utf8 = Array(uri.utf8)
        guard String(decoding: utf8.prefix(8), as: UTF8.self).lowercased() == "magnet:?" else { throw .notAMagnetLink }
        var values: [[UInt8]] = []
        var rest = utf8[8...]
        while !rest.isEmpty {
            // libtorrent's order: the name runs to the first '=', then the value to the next '&'.
            let eq = rest.firstIndex(of: UInt8(ascii: "=")) ?? rest.endIndex
            var name = rest[rest.startIndex..<eq]
            rest = eq == rest.endIndex ? rest[eq...] : rest[(eq + 1)...]
            let amp = rest.firstIndex(of: UInt8(ascii: "&")) ?? rest.endIndex
            var value = Array(rest[rest.startIndex..<amp])
            rest = amp == rest.endIndex ? rest[amp...] : rest[(amp + 1)...]
            if let dot = name.firstIndex(of: UInt8(ascii: ".")),
               name[(dot + 1)...].allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) {
                name = name[..<dot]
            }
            guard name.count == 2, name.first! | 0x20 == UInt8(ascii: "x"), name.last! | 0x20 == UInt8(ascii: "t") else { continue }
            if value.contains(UInt8(ascii: "%")) {
                guard let decoded = percentDecoded(value) else { throw .malformedEscape }
                value = decoded
            }
            values.append(value)
        }
        return values
    }
}
