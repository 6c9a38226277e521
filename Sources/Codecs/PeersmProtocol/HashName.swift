import NetBasics

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
    /// A magnet is read as the facilitator's torrent engine (libtorrent 2.0's parse_magnet_uri)
    /// reads it — NetBasics' `MagnetLink`, which the engine uses too — so the hash hunted for is the
    /// hash fetched; a malformed btih, or two different ones, give nil (the engine refuses such a link).
    public var infohash: [UInt8]? {
        if bytes.count == 20 { return bytes }
        guard let link = magnet else { return nil }
        return (try? MagnetLink.btih(link)) ?? nil
    }

    public var description: String {
        if let link = magnet { return link }
        return Hex.encode(bytes)
    }
}
