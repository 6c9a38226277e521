/// What an address is for, after the IANA special-purpose registries (RFC 6890 and later): the one
/// table behind every "may we reach this address for someone else?" decision — EXTEND2 targets
/// (OnionRouting), peers and DHT nodes named inside magnet links and peers the spy hunt finds
/// (TorrentEngine's `MagnetPeerPolicy`), the engine's ip_filter floor, and bind checks.
public enum AddressClass: String, Sendable, CaseIterable {
    /// None of the rows: globally routable unicast.
    case global
    case unspecified        // ::/128
    case thisNetwork        // 0/8
    case loopback           // 127/8, ::1
    case privateUse         // 10/8, 172.16/12, 192.168/16 (RFC 1918)
    case sharedAddressSpace // 100.64/10 carrier-grade NAT (RFC 6598)
    case linkLocal          // 169.254/16, fe80::/10
    case uniqueLocal        // fc00::/7 (RFC 4193)
    case ietfProtocol       // 192.0.0/24
    case documentation      // TEST-NET-1/2/3 (RFC 5737), 2001:db8::/32, 3fff::/20 (RFC 9637)
    case benchmarking       // 198.18/15 (RFC 2544), 2001:2::/48
    case relayAnycast       // 192.88.99/24 6to4 relay anycast (deprecated, RFC 7526)
    case multicast          // 224/4, ff00::/8
    case broadcast          // 255.255.255.255
    case reserved           // 240/4; IPv6 outside 2000::/3 that no row above names
    case translation        // 64:ff9b::/96, 64:ff9b:1::/48 (NAT64: they reach IPv4 addresses we cannot judge)
    case discardOnly        // 100::/64
    case teredo             // 2001::/32 (tunnels to an embedded IPv4 address)
    case sixToFour          // 2002::/16 (likewise)

    public struct Row: Sendable {
        public let range: IPRange
        public let addressClass: AddressClass
    }

    /// The table; the first row that holds an address decides. IPv4 rows judge IPv4 addresses
    /// (including `::ffff:a.b.c.d`, which is the IPv4 address), IPv6 rows the rest.
    public static let table: [Row] = {
        func row(_ cidr: String, _ c: AddressClass) -> Row {
            let slash = cidr.firstIndex(of: "/")!
            let range = try! IPRange(address: IPAddress(cidr[..<slash])!, prefixLength: Int(cidr[cidr.index(after: slash)...])!)
            return Row(range: range, addressClass: c)
        }
        return [
            row("0.0.0.0/8", .thisNetwork),
            row("10.0.0.0/8", .privateUse),
            row("100.64.0.0/10", .sharedAddressSpace),
            row("127.0.0.0/8", .loopback),
            row("169.254.0.0/16", .linkLocal),
            row("172.16.0.0/12", .privateUse),
            row("192.0.0.0/24", .ietfProtocol),
            row("192.0.2.0/24", .documentation),
            row("192.88.99.0/24", .relayAnycast),
            row("192.168.0.0/16", .privateUse),
            row("198.18.0.0/15", .benchmarking),
            row("198.51.100.0/24", .documentation),
            row("203.0.113.0/24", .documentation),
            row("224.0.0.0/4", .multicast),
            row("255.255.255.255/32", .broadcast),
            row("240.0.0.0/4", .reserved),

            row("::/128", .unspecified),
            row("::1/128", .loopback),
            row("64:ff9b::/96", .translation),
            row("64:ff9b:1::/48", .translation),
            row("100::/64", .discardOnly),
            row("::/3", .reserved),              // the rest below global unicast 2000::/3
            row("2001::/32", .teredo),
            row("2001:2::/48", .benchmarking),
            row("2001:db8::/32", .documentation),
            row("2002::/16", .sixToFour),
            row("3fff::/20", .documentation),
            row("fc00::/7", .uniqueLocal),
            row("fe80::/10", .linkLocal),
            row("ff00::/8", .multicast),
            row("4000::/2", .reserved),
            row("8000::/1", .reserved),
        ]
    }()

    public static func classify(_ address: IPAddress) -> AddressClass {
        let v4 = address.isIPv4
        return table.first { $0.range.isIPv4 == v4 && $0.range.contains(address) }?.addressClass ?? .global
    }

    public var isPublic: Bool { self == .global }

    /// Whether `host` is an IP literal of a globally routable unicast address. Brackets around
    /// IPv6 are allowed; a zone index (`fe80::1%eth0`) names a link and is never public; names are
    /// never public (resolving one is itself a request on someone else's behalf). Parsing is strict,
    /// as inet_pton's, so what is judged is what a resolver would dial.
    public static func isPublic(host: String) -> Bool {
        guard let address = literal(host) else { return false }
        return address.isPublic
    }

    /// Whether binding `host` keeps a socket on this machine: `localhost`, 127/8, `::1` in any
    /// spelling (brackets allowed), or an IPv4-mapped loopback address.
    public static func isLoopback(host: String) -> Bool {
        if host.lowercased() == "localhost" { return true }
        return literal(host).map { classify($0) == .loopback } ?? false
    }

    /// Every non-public address as ranges (an ip_filter floor): the table merged within each
    /// family. IPv4 ranges print dotted; the IPv6 ones include `::/3`, hence the IPv4-mapped block,
    /// which libtorrent files under IPv6 while it judges IPv4 peers by the IPv4 ranges.
    public static let nonPublicRanges: [IPRange] = {
        let ranges = table.map(\.range)
        // Per family: the IPv6 row ::/3 holds the IPv4-mapped block, and a set never mixes families.
        return IPRangeSet(merging: ranges.filter(\.isIPv4)).ranges + IPRangeSet(merging: ranges.filter { !$0.isIPv4 }).ranges
    }()

    private static func literal(_ host: String) -> IPAddress? {
        var text = Substring(host)
        if text.hasPrefix("[") && text.hasSuffix("]") { text = text.dropFirst().dropLast() }
        return IPAddress(text)
    }
}

extension IPAddress {
    public var addressClass: AddressClass { AddressClass.classify(self) }
    /// Globally routable unicast: no row of `AddressClass.table` holds it.
    public var isPublic: Bool { addressClass.isPublic }
}
