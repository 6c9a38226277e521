import Foundation
import Testing
import TestSupport

/// The check that gates every peer-starting test (`.privateNetwork`).
struct PrivateNetworkTests {
    typealias Interface = PrivateNetwork.Interface

    /// `/proc/self/net/dev` in a fresh namespace on a kernel that adds tunnel devices to it.
    static let withTunnels = """
        Inter-|   Receive                                                |  Transmit
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
            lo:    1234      12    0    0    0     0          0         0     1234      12    0    0    0     0       0          0
          sit0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
         tunl0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0

        """

    @Test func namesComeFromEveryLineAfterTheTwoHeaders() {
        #expect(PrivateNetwork.interfaceNames(procNetDev: Self.withTunnels) == ["lo", "sit0", "tunl0"])
        let host = """
            Inter-|   Receive
             face |bytes
            enp3s0: 99 1 0 0 0 0 0 0 99 1 0 0 0 0 0 0
                lo:0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
            """
        #expect(PrivateNetwork.interfaceNames(procNetDev: host) == ["enp3s0", "lo"])
        #expect(PrivateNetwork.interfaceNames(procNetDev: "") == [])
        #expect(PrivateNetwork.interfaceNames(procNetDev: "Inter-|\n face |\n") == [])
    }

    @Test func onlyLoopbackMayBeUpAndItMustBe() {
        let lo = Interface(name: "lo", isUp: true)
        #expect(PrivateNetwork.isPrivate([lo]))
        #expect(PrivateNetwork.isPrivate([lo, Interface(name: "sit0", isUp: false), Interface(name: "tunl0", isUp: false)]))
        #expect(!PrivateNetwork.isPrivate([lo, Interface(name: "eth0", isUp: true)]))
        #expect(!PrivateNetwork.isPrivate([lo, Interface(name: "sit0", isUp: true)]))
        #expect(!PrivateNetwork.isPrivate([Interface(name: "lo", isUp: false)]))
        #expect(!PrivateNetwork.isPrivate([Interface(name: "eth0", isUp: false)]))
        #expect(!PrivateNetwork.isPrivate([]))   // /proc unreadable
    }

    @Test func notPrivateSkipsOutsideScriptsTestAndFailsInsideNamingTheInterfaces() throws {
        let found = [Interface(name: "eth0", isUp: true), Interface(name: "lo", isUp: true)]
        #expect(try PrivateNetwork.mayStartPeers(private: true, expected: true, interfaces: found))
        #expect(try PrivateNetwork.mayStartPeers(private: true, expected: false, interfaces: found))
        #expect(try PrivateNetwork.mayStartPeers(private: false, expected: false, interfaces: found) == false)
        let error = #expect(throws: PrivateNetwork.NotPrivate.self) {
            try PrivateNetwork.mayStartPeers(private: false, expected: true, interfaces: found)
        }
        #expect(error?.description.contains("eth0 (up), lo (up)") == true)
        let none = #expect(throws: PrivateNetwork.NotPrivate.self) {
            try PrivateNetwork.mayStartPeers(private: false, expected: true, interfaces: [])
        }
        #expect(none?.description.contains("none") == true)
    }

    /// Under scripts/in-private-net the real reading (names and SIOCGIFFLAGS) says private.
    @Test(.enabled(if: PrivateNetwork.expected, "runs under scripts/in-private-net"))
    func thisNamespaceReadsAsPrivate() {
        let here = PrivateNetwork.interfaces
        #expect(here.contains(Interface(name: "lo", isUp: true)), "\(here)")
        #expect(PrivateNetwork.isPrivate, "\(here)")
    }
}
