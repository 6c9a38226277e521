import Testing
import NetBasics

@Suite("Addresses")
struct AddressTests {
    @Test("IPv6 parsing and RFC 5952 formatting", arguments: [
        ("2001:db8::1", "2001:db8::1"),
        ("::", "::"),
        ("::1", "::1"),
        ("1::", "1::"),
        ("2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ("0:0:0:0:0:0:0:0", "::"),
        ("::ffff:1.2.3.4", "::ffff:102:304"),
        ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
    ])
    func ipv6Valid(input: String, formatted: String) throws {
        let address = try #require(IPv6Address(input))
        #expect(address.description == formatted)
        #expect(IPv6Address(formatted) == address)
        #expect(IPv6Address(bytes: address.bytes) == address)
    }

    @Test("IPv6 rejects malformed text", arguments: [
        "", ":", ":::", "1:::2", "1::2::3", "12345::", "g::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7::8",
        "[::1]", "::1%eth0", "::1.2.3", "::256.1.1.1", "1.2.3.4::", " ::1",
    ])
    func ipv6Invalid(input: String) {
        #expect(IPv6Address(input) == nil)
    }

    @Test("IPv4 parsing and formatting")
    func ipv4() {
        #expect(IPv4Address("127.0.0.1") == IPv4Address(127, 0, 0, 1))
        #expect(IPv4Address(127, 0, 0, 1).rawValue == 0x7F00_0001)
        #expect(IPv4Address(rawValue: 0xC0A8_0102).description == "192.168.1.2")
        for bad in ["", "1.2.3", "1.2.3.4.5", "256.0.0.1", "01.2.3.4", "1..2.3", "a.b.c.d", "1.2.3.-4", "+1.2.3.4"] {
            #expect(IPv4Address(bad) == nil, "\(bad)")
        }
        #expect(IPAddress("10.0.0.1") == .v4(IPv4Address(10, 0, 0, 1)))
        #expect(IPAddress("fe80::1")?.description == "fe80::1")
        #expect(IPAddress("example.com") == nil)
    }
}
