import Testing
import NetBasics

/// Addresses and ranges as blocklists use them (one ordering for both families, zero-padded eMule quads).
@Suite struct AddressRangeTests {
    @Test func parsesIPv4IncludingZeroPaddedEmuleForm() throws {
        #expect(IPAddress("1.2.3.4")?.ipv4 == 0x0102_0304)
        #expect(IPAddress("001.009.096.105", allowingLeadingZeros: true)?.ipv4 == 0x0109_6069)
        #expect(IPAddress("001.009.096.105") == nil, "strict by default: inet_aton would read 010 as octal")
        #expect(IPAddress("255.255.255.255")?.ipv4 == .max)
        for bad in ["1.2.3", "1.2.3.4.5", "256.1.1.1", "1..2.3", "1.2.3.4 ", "a.b.c.d", "", "0001.1.1.1"] {
            #expect(IPAddress(bad) == nil, "\(bad) must not parse")
            #expect(IPAddress(bad, allowingLeadingZeros: true) == nil, "\(bad) must not parse")
        }
    }

    @Test func parsesIPv6Forms() throws {
        #expect(IPAddress("::")?.description == "::")
        #expect(IPAddress("::1")?.description == "::1")
        #expect(IPAddress("2001:DB8:0:0:8:800:200C:417A")?.description == "2001:db8::8:800:200c:417a")
        #expect(IPAddress("2001:db8::")?.description == "2001:db8::")
        #expect(IPAddress("fe80::1:2")?.description == "fe80::1:2")
        // RFC 5952 §4.2.3: the first of equal-length zero runs is compressed; a single zero group is not.
        #expect(IPAddress("2001:0:0:1:0:0:0:1")?.description == "2001:0:0:1::1")
        #expect(IPAddress("2001:db8:0:1:1:1:1:1")?.description == "2001:db8:0:1:1:1:1:1")
        // A dotted tail; ::ffff:a.b.c.d *is* the IPv4 address a.b.c.d in the shared ordering.
        #expect(IPAddress("64:ff9b::192.0.2.33")?.description == "64:ff9b::c000:221")
        #expect(IPAddress("::ffff:1.2.3.4") == IPAddress("1.2.3.4"))
        for bad in [":::", "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", "1:2:3:4:5:6:7:", ":1:2", "g::1", "::1.2.3", "1:2:3:4:5:6:7:1.2.3.4"] {
            #expect(IPAddress(bad) == nil, "\(bad) must not parse")
        }
    }

    @Test func onlyOneOrderingForBothFamilies() throws {
        let a = try #require(IPAddress("::1")), b = try #require(IPAddress("0.0.0.0")),
            c = try #require(IPAddress("255.255.255.255")), d = try #require(IPAddress("2001:db8::"))
        #expect(a < b && b < c && c < d)
        #expect(b.isIPv4 && c.isIPv4 && !a.isIPv4 && !d.isIPv4)
        #expect(IPAddress(bytes: d.bytes) == d)
        #expect(IPAddress.max.successor == nil && IPAddress.zero.predecessor == nil)
        #expect(IPAddress("0.0.0.255")?.successor == IPAddress("0.0.1.0"))
    }

    @Test func cidrAndRangeText() throws {
        let r = try IPRange(parsing: "10.1.2.3/8")
        #expect(r.first == IPAddress("10.0.0.0") && r.last == IPAddress("10.255.255.255"))
        #expect(r.addressCount == 1 << 24)
        let all4 = try IPRange(parsing: "0.0.0.0/0")
        #expect(all4.first == IPAddress.ipv4First && all4.last == IPAddress.ipv4Last && all4.addressCount == 1 << 32)
        let v6 = try IPRange(parsing: "2001:db8::/32")
        #expect(v6.last.description == "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")
        #expect(v6.addressCount == .max)
        #expect(try IPRange(parsing: "2001:db8::1/128").addressCount == 1)
        #expect(try IPRange(parsing: "1.2.3.4 - 1.2.3.9").addressCount == 6)
        #expect(throws: IPRange.Error.self) { try IPRange(parsing: "1.2.3.4/33") }
        #expect(throws: IPRange.Error.self) { try IPRange(parsing: "1.2.3.9-1.2.3.4") }
        #expect(throws: IPRange.Error.self) { try IPRange(parsing: "1.2.3.4-::1") }
    }
}
