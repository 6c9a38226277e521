import NetBasics
import Testing
import TorCells

@testable import OnionRouting

@Suite struct CircuitAddressPolicyTests {
    func v4(_ text: String) -> IPAddress { .v4(IPv4Address(text)!) }
    func v6(_ text: String) -> IPAddress { .v6(IPv6Address(text)!) }

    @Test func defaultRejectsEverything() {
        #expect(!AddressPolicy.rejectAll.allows(self.v4("127.0.0.1"), port: 80))
        #expect(!AddressPolicy.rejectAll.mightAllowHostname(port: 80))
        #expect(!AddressPolicy(rules: []).allows(self.v4("1.2.3.4"), port: 1))  // no match: reject
    }

    @Test func handBuiltMalformedV6PatternMatchesNothingAndPrints() {
        let rule = AddressPolicyRule(.accept, .v6(network: [1, 2], prefixLength: 200))
        #expect(!rule.matches(self.v6("::1"), port: 80))
        #expect(rule.description == "accept [invalid]/200:*")
    }

    @Test func acceptLoopbackOnly() throws {
        let policy = try #require(AddressPolicy(lines: ["accept 127.0.0.1:*", "reject *:*"]))
        #expect(policy.allows(self.v4("127.0.0.1"), port: 8080))
        #expect(!policy.allows(self.v4("127.0.0.2"), port: 8080))
        #expect(!policy.allows(self.v6("::1"), port: 8080))
        // A hostname might resolve to 127.0.0.1: allowed to try, to be re-checked after resolution.
        #expect(policy.mightAllowHostname(port: 80))
    }

    @Test func networksAndPortRangesFirstMatchWins() throws {
        let policy = try #require(AddressPolicy(lines: [
            "reject 10.0.0.0/8:*", "accept *:80-443", "accept [2001:db8::]/32:22", "reject *:*",
        ]))
        #expect(!policy.allows(self.v4("10.9.9.9"), port: 80))
        #expect(policy.allows(self.v4("93.184.216.34"), port: 443))
        #expect(!policy.allows(self.v4("93.184.216.34"), port: 444))
        #expect(policy.allows(self.v6("2001:db8::5"), port: 22))
        #expect(!policy.allows(self.v6("2001:db9::5"), port: 22))
        #expect(!policy.mightAllowHostname(port: 8080))
        #expect(policy.mightAllowHostname(port: 80))
        #expect(policy.description == "reject 10.0.0.0/8:*, accept *:80-443, accept [2001:db8::]/32:22, reject *:*")
    }

    @Test func badLinesAreReported() {
        for line in ["allow *:*", "accept 1.2.3:80", "accept *:0", "accept *:90-80", "accept 1.2.3.4/33:*", "accept ::1:80", "accept *"] {
            var reported: String?
            #expect(AddressPolicy(lines: [line], badLine: { reported = $0 }) == nil, "\(line)")
            #expect(reported == line)
        }
    }

    /// What EXTEND2 refuses as private (NetBasics' `AddressClass`, shared with the torrent engine).
    @Test func internalAddresses() {
        for text in ["127.0.0.1", "10.1.1.1", "192.168.0.1", "172.16.5.5", "169.254.1.1", "100.64.0.1", "0.0.0.0", "224.0.0.1",
                     "192.0.2.1", "198.51.100.1", "203.0.113.1", "198.18.0.1", "198.19.255.255"] {
            #expect(!self.v4(text).isPublic, "\(text)")
        }
        for text in ["8.8.8.8", "172.32.0.1", "192.169.0.1", "198.20.0.1"] { #expect(self.v4(text).isPublic, "\(text)") }
        for text in ["::1", "::", "fe80::1", "fd00::1", "ff02::1", "::ffff:10.0.0.1", "2001:db8::1", "64:ff9b::a00:1"] {
            #expect(!self.v6(text).isPublic, "\(text)")
        }
        #expect(self.v6("2606:4700:4700::1111").isPublic)
    }
}
