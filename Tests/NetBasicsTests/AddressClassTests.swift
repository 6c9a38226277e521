import NetBasics
import Testing

@Suite struct AddressClassTests {
    /// Each row's first and last address are not public, and in the row's class unless an earlier
    /// row (first match wins) holds them: ::/128 and ::1 sit inside ::/3, broadcast inside 240/4.
    @Test func everyRowAtItsEdges() throws {
        for (index, row) in AddressClass.table.enumerated() {
            for edge in [row.range.first, row.range.last] {
                #expect(!edge.isPublic, "\(edge) in \(row.range)")
                let earlier = AddressClass.table[..<index].first { $0.range.isIPv4 == edge.isIPv4 && $0.range.contains(edge) }
                #expect(edge.addressClass == (earlier?.addressClass ?? row.addressClass), "\(edge) in \(row.range)")
            }
        }
        #expect(AddressClass.table.count == 32)
    }

    @Test("IPv4 rows", arguments: [
        ("0.0.0.0", AddressClass.thisNetwork), ("0.255.255.255", .thisNetwork), ("1.0.0.0", .global),
        ("10.0.0.0", .privateUse), ("10.255.255.255", .privateUse), ("11.0.0.0", .global), ("9.255.255.255", .global),
        ("100.63.255.255", .global), ("100.64.0.0", .sharedAddressSpace), ("100.127.255.255", .sharedAddressSpace), ("100.128.0.0", .global),
        ("126.255.255.255", .global), ("127.0.0.0", .loopback), ("127.255.255.255", .loopback), ("128.0.0.0", .global),
        ("169.253.255.255", .global), ("169.254.0.0", .linkLocal), ("169.254.255.255", .linkLocal), ("169.255.0.0", .global),
        ("172.15.255.255", .global), ("172.16.0.0", .privateUse), ("172.31.255.255", .privateUse), ("172.32.0.0", .global),
        ("191.255.255.255", .global), ("192.0.0.0", .ietfProtocol), ("192.0.0.255", .ietfProtocol), ("192.0.1.0", .global),
        ("192.0.2.0", .documentation), ("192.0.2.255", .documentation), ("192.0.3.0", .global),
        ("192.88.98.255", .global), ("192.88.99.0", .relayAnycast), ("192.88.99.255", .relayAnycast), ("192.88.100.0", .global),
        ("192.167.255.255", .global), ("192.168.0.0", .privateUse), ("192.168.255.255", .privateUse), ("192.169.0.0", .global),
        ("198.17.255.255", .global), ("198.18.0.0", .benchmarking), ("198.19.255.255", .benchmarking), ("198.20.0.0", .global),
        ("198.51.99.255", .global), ("198.51.100.0", .documentation), ("198.51.100.255", .documentation), ("198.51.101.0", .global),
        ("203.0.112.255", .global), ("203.0.113.0", .documentation), ("203.0.113.255", .documentation), ("203.0.114.0", .global),
        ("223.255.255.255", .global), ("224.0.0.0", .multicast), ("239.255.255.255", .multicast),
        ("240.0.0.0", .reserved), ("255.255.255.254", .reserved), ("255.255.255.255", .broadcast),
    ])
    func ipv4(text: String, expected: AddressClass) throws {
        let address = try #require(IPAddress(text))
        #expect(address.addressClass == expected)
        #expect(address.isPublic == (expected == .global))
        // ::ffff:a.b.c.d is the same host.
        #expect(try #require(IPAddress("::ffff:\(text)")).addressClass == expected)
    }

    @Test("IPv6 rows", arguments: [
        ("::", AddressClass.unspecified), ("::1", .loopback), ("::2", .reserved), ("::127.0.0.1", .reserved),
        ("64:ff9b::", .translation), ("64:ff9b::ffff:ffff", .translation), ("64:ff9b:1::1", .translation),
        ("100::", .discardOnly), ("100::ffff:ffff:ffff:ffff", .discardOnly), ("100:0:0:1::", .reserved),
        ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", .reserved), ("2000::", .global),
        ("2001::", .teredo), ("2001:0:ffff:ffff:ffff:ffff:ffff:ffff", .teredo), ("2001:1::", .global),
        ("2001:2::", .benchmarking), ("2001:2:0:ffff:ffff:ffff:ffff:ffff", .benchmarking), ("2001:2:1::", .global),
        ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", .global), ("2001:db8::", .documentation),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", .documentation), ("2001:db9::", .global),
        ("2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", .global), ("2002::", .sixToFour), ("2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", .sixToFour),
        ("2003::", .global), ("3ffe:ffff::", .global), ("3fff::", .documentation), ("3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", .documentation),
        ("3fff:1000::", .global), ("3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", .global), ("4000::", .reserved),
        ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", .reserved), ("fc00::", .uniqueLocal), ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", .uniqueLocal),
        ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", .reserved), ("fe80::", .linkLocal), ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", .linkLocal),
        ("fec0::", .reserved), ("ff00::", .multicast), ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", .multicast),
        ("2606:4700:4700::1111", .global),
    ])
    func ipv6(text: String, expected: AddressClass) throws {
        let address = try #require(IPAddress(text))
        #expect(address.addressClass == expected)
        #expect(address.isPublic == (expected == .global))
    }

    @Test func hostText() {
        #expect(AddressClass.isPublic(host: "8.8.8.8") && AddressClass.isPublic(host: "[2606:4700:4700::1111]"))
        for host in ["[fe80::1]", "fe80::1%lo", "example.com", "localhost", "", "[]", "08.8.8.8", "8.8.8", "::ffff:08.8.8.8"] {
            #expect(!AddressClass.isPublic(host: host), "\(host)")
        }
    }

    /// The bind check: one rule for the relay server and the daemon's config.
    @Test func loopbackHosts() {
        for host in ["localhost", "LocalHost", "127.0.0.1", "127.1.2.3", "127.255.255.255", "::1", "[::1]", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1"] {
            #expect(AddressClass.isLoopback(host: host), "\(host)")
        }
        for host in ["0.0.0.0", "::", "128.0.0.1", "126.255.255.255", "127.evil.example", "127.1", "0127.0.0.1", "localhost.", "10.0.0.1", "::2", ""] {
            #expect(!AddressClass.isLoopback(host: host), "\(host)")
        }
    }

    /// The ip_filter floor: within each family disjoint and sorted, and it holds exactly the non-public addresses.
    @Test func nonPublicRangesAreTheTable() throws {
        let ranges = AddressClass.nonPublicRanges
        for family in [true, false] {
            let part = ranges.filter { $0.isIPv4 == family }
            for (a, b) in zip(part, part.dropFirst()) { #expect(a.last < b.first && !a.touches(b), "\(a) \(b)") }
        }
        for text in ["0.0.0.0", "10.1.1.1", "192.0.2.1", "198.18.0.1", "198.51.100.1", "203.0.113.1", "255.255.255.255",
                     "::", "::1", "64:ff9b::1", "2001:db8::1", "fe80::1", "ff02::1", "8000::"] {
            let a = try #require(IPAddress(text))
            #expect(ranges.contains { $0.contains(a) }, "\(text)")
        }
        // IPv4 addresses are judged by the IPv4 ranges (libtorrent's ip_filter keeps the families apart;
        // the IPv6 range ::/3 holds the IPv4-mapped block).
        for text in ["8.8.8.8", "198.20.0.1", "2606:4700:4700::1111", "2001:1::1"] {
            let a = try #require(IPAddress(text))
            #expect(!ranges.contains { $0.isIPv4 == a.isIPv4 && $0.contains(a) }, "\(text)")
        }
        #expect(ranges.contains(try IPRange(parsing: "::-1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")))
    }
}
