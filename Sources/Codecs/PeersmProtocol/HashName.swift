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
    ///
    /// A magnet is read exactly as the facilitator's torrent engine (libtorrent 2.0's
    /// parse_magnet_uri) reads it, so the hash hunted for is the hash fetched: parameter names are
    /// case-insensitive and may carry a numeric suffix (`xt.1`), values are percent-decoded, and a
    /// malformed btih, or two different ones, give nil (the engine refuses such a link).
    /// TorrentEngine's `MagnetLink.btih` implements the same reading (it cannot import this
    /// module); both are checked against TestSupport's `MagnetVectors`.
    public var infohash: [UInt8]? {
        if bytes.count == 20 { return bytes }
        guard let link = magnet else { return nil }
        var found: [UInt8]?
        var rest = Array(link.utf8.dropFirst("magnet:?".count))[...]
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
                guard let decoded = Self.percentDecoded(value) else { return nil }
                value = decoded
            }
            let prefix = Array("urn:btih:".utf8)
            guard value.starts(with: prefix) else { continue }
            let hash = Array(value.dropFirst(prefix.count))
            let decoded: [UInt8]?
            switch hash.count {
            case 40: decoded = Self.decodeHex(hash)
            case 32: decoded = Self.decodeBase32(hash)
            default: decoded = nil
            }
            guard let decoded, found == nil || found == decoded else { return nil }
            found = decoded
        }
        return found
    }

    /// RFC 3986 percent-decoding; nil for a truncated or non-hex escape.
    private static func percentDecoded(_ chars: [UInt8]) -> [UInt8]? {
        var out: [UInt8] = []
        var i = 0
        while i < chars.count {
            if chars[i] == UInt8(ascii: "%") {
                guard i + 2 < chars.count, let byte = decodeHex(Array(chars[(i + 1)...(i + 2)]))?.first else { return nil }
                out.append(byte)
                i += 3
            } else {
                out.append(chars[i])
                i += 1
            }
        }
        return out
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
            case UInt8(ascii: "1"): value = 8   // read as 'I', as libtorrent does
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
