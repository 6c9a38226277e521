import CTorrent
import Foundation

/// What the engine does with the peers (`x.pe`, BEP 9) and DHT nodes (`dht=`) written inside a
/// magnet link. Whoever wrote the link chose those addresses; on a facilitator that is an
/// anonymous requester, who could otherwise make the exit dial 127.0.0.1 or the LAN behind it
/// (TCP connections and BitTorrent handshakes, or DHT pings), past the relay's exit policy.
/// Peers given through the API (`peers:`, `connectPeer`) are the caller's own and always used.
public enum MagnetPeerPolicy: String, Sendable, CaseIterable {
    /// Only globally routable unicast IP addresses (see `PublicAddress`); DHT nodes given by
    /// name are dropped too (resolving them is itself a request on the requester's behalf).
    case publicOnly = "public"
    /// Every endpoint as written (loopback tests and the local demo).
    case any
    /// None: a magnet's peers and nodes are ignored. (Not `.none`, which an optional would shadow.)
    case ignored = "none"

    /// Whether an endpoint named in a magnet may be used.
    public func allows(host: String) -> Bool {
        switch self {
        case .any: return true
        case .ignored: return false
        case .publicOnly: return PublicAddress.isPublic(host)
        }
    }
}

/// Classifies IP address text: is it a globally routable unicast address (RFC 6890 registries)?
/// Pure; names (not IP literals) are never public here.
public enum PublicAddress {
    public static func isPublic(_ text: String) -> Bool {
        var host = text
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if let v4 = ipv4(host) { return isPublicV4(v4) }
        if let v6 = ipv6(host) { return isPublicV6(v6) }
        return false
    }

    /// IPv4 ranges that are not globally reachable unicast (RFC 6890, RFC 6598, RFC 5737, RFC 1112).
    static let nonPublicV4: [(prefix: UInt32, bits: Int)] = [
        (0x0000_0000, 8),    // 0.0.0.0/8 "this network", incl. the unspecified address
        (0x0A00_0000, 8),    // 10/8 private
        (0x6440_0000, 10),   // 100.64/10 carrier-grade NAT
        (0x7F00_0000, 8),    // 127/8 loopback
        (0xA9FE_0000, 16),   // 169.254/16 link-local
        (0xAC10_0000, 12),   // 172.16/12 private
        (0xC000_0000, 24),   // 192.0.0/24 IETF protocol assignments
        (0xC000_0200, 24),   // 192.0.2/24 TEST-NET-1
        (0xC058_6300, 24),   // 192.88.99/24 6to4 relay anycast (deprecated)
        (0xC0A8_0000, 16),   // 192.168/16 private
        (0xC612_0000, 15),   // 198.18/15 benchmarking
        (0xC633_6400, 24),   // 198.51.100/24 TEST-NET-2
        (0xCB00_7100, 24),   // 203.0.113/24 TEST-NET-3
        (0xE000_0000, 4),    // 224/4 multicast
        (0xF000_0000, 4),    // 240/4 reserved, incl. 255.255.255.255 broadcast
    ]

    static func isPublicV4(_ a: UInt32) -> Bool {
        !nonPublicV4.contains { a >> (32 - $0.bits) == $0.prefix >> (32 - $0.bits) }
    }

    /// Global unicast is 2000::/3; inside it, documentation, benchmarking, Teredo and 6to4 (which
    /// embed or tunnel to addresses we cannot judge) are refused. IPv4-mapped addresses
    /// (::ffff:a.b.c.d) reach the IPv4 address, so they are judged as IPv4. Everything else —
    /// ::, ::1, fe80::/10, fc00::/7 (ULA), ff00::/8 (multicast), 64:ff9b::/96 (NAT64) — is not public.
    static func isPublicV6(_ b: [UInt8]) -> Bool {
        if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff {
            return isPublicV4(UInt32(b[12]) << 24 | UInt32(b[13]) << 16 | UInt32(b[14]) << 8 | UInt32(b[15]))
        }
        guard b[0] & 0xE0 == 0x20 else { return false }
        let w0 = UInt16(b[0]) << 8 | UInt16(b[1]), w1 = UInt16(b[2]) << 8 | UInt16(b[3]), w2 = UInt16(b[4]) << 8 | UInt16(b[5])
        if w0 == 0x2001 && w1 == 0x0000 { return false }                 // 2001::/32 Teredo
        if w0 == 0x2001 && w1 == 0x0002 && w2 == 0x0000 { return false } // 2001:2::/48 benchmarking
        if w0 == 0x2001 && w1 == 0x0db8 { return false }                 // 2001:db8::/32 documentation
        if w0 == 0x2002 { return false }                                 // 2002::/16 6to4
        if w0 & 0xFFF0 == 0x3FF0 { return false }                        // 3fff::/20 documentation
        return true
    }

    /// Every non-public address as ip_filter ranges: the `nonPublicV4` list, and in IPv6 all but
    /// 2000::/3 plus the refused blocks inside it. (IPv4-mapped IPv6 falls in the blocked ::/3;
    /// libtorrent files IPv4 peers under their IPv4 rules.)
    public static let nonPublicRanges: [IPRange] = {
        func dotted(_ a: UInt32) -> String { "\(a >> 24).\(a >> 16 & 0xff).\(a >> 8 & 0xff).\(a & 0xff)" }
        let v4 = nonPublicV4.map { p -> IPRange in
            let mask: UInt32 = p.bits == 0 ? 0 : ~UInt32(0) << (32 - p.bits)
            return IPRange(first: dotted(p.prefix & mask), last: dotted(p.prefix | ~mask))
        }
        let v6 = [
            IPRange(first: "::", last: "1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            IPRange(first: "2001::", last: "2001:0:ffff:ffff:ffff:ffff:ffff:ffff"),          // Teredo
            IPRange(first: "2001:2::", last: "2001:2:0:ffff:ffff:ffff:ffff:ffff"),           // benchmarking
            IPRange(first: "2001:db8::", last: "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),    // documentation
            IPRange(first: "2002::", last: "2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),       // 6to4
            IPRange(first: "3fff::", last: "3fff:0fff:ffff:ffff:ffff:ffff:ffff:ffff"),       // documentation
            IPRange(first: "4000::", last: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        ]
        return v4 + v6
    }()

    static func ipv4(_ s: String) -> UInt32? {
        var a = in_addr()
        guard inet_pton(AF_INET, s, &a) == 1 else { return nil }
        return UInt32(bigEndian: a.s_addr)
    }

    static func ipv6(_ s: String) -> [UInt8]? {
        // A zone index ("fe80::1%eth0") names a link: never public.
        guard !s.contains("%") else { return nil }
        var a = in6_addr()
        guard inet_pton(AF_INET6, s, &a) == 1 else { return nil }
        return withUnsafeBytes(of: &a) { Array($0) }
    }
}

/// An endpoint a magnet link names, as libtorrent parsed it.
struct MagnetEndpoint: Equatable {
    enum Kind { case peer, dhtNode }
    let kind: Kind
    let host: String
    let port: UInt16
}

extension MagnetEndpoint {
    /// Lists the peers and DHT nodes of `uri` with libtorrent's own magnet parser (so the list is
    /// exactly what libtorrent would have used).
    static func parse(_ uri: String) throws -> [MagnetEndpoint] {
        var err = ct_error()
        var count = 0
        var buf = [ct_magnet_endpoint](repeating: ct_magnet_endpoint(), count: 8)
        while true {
            for i in buf.indices { buf[i].struct_size = UInt32(MemoryLayout<ct_magnet_endpoint>.size) }
            let rc = buf.withUnsafeMutableBufferPointer { ct_magnet_endpoints(uri, $0.baseAddress, $0.count, &count, &err) }
            if let e = TorrentEngineError.check(rc, err) {
                if case .invalidArgument(let why) = e { throw TorrentEngineError.invalidHashName(why) }
                throw e
            }
            if count <= buf.count { break }
            buf = [ct_magnet_endpoint](repeating: ct_magnet_endpoint(), count: count)
        }
        return buf.prefix(count).compactMap { e in
            let kind: Kind
            switch Int(e.kind) {
            case Int(CT_MAGNET_PEER): kind = .peer
            case Int(CT_MAGNET_DHT_NODE): kind = .dhtNode
            default: return nil
            }
            return MagnetEndpoint(kind: kind, host: cString(e.host), port: e.port)
        }
    }
}
