import Foundation
import Testbed

extension PrivateNetwork {
    /// Why a peer-starting test is skipped here (for `.enabled(if:)` comments and logs).
    public static let skipReason: Comment =
        "needs a private network namespace: run through scripts/test (unshare -n, loopback only)"

    public struct NotPrivate: Error, CustomStringConvertible {
        public let interfaces: [Interface]
        public var description: String {
            let found = interfaces.isEmpty ? "none (/proc/self/net/dev unreadable?)"
                : interfaces.map(\.description).joined(separator: ", ")
            return "PEERSM_IN_PRIVATE_NET=1 but this network namespace is not private: only lo may be up; found \(found)"
        }
    }

    /// Whether a peer-starting test may run: true in a private network, false (skip) elsewhere, and
    /// a thrown `NotPrivate` (the test fails, naming the interfaces) where one was promised.
    public static func mayStartPeers(private isPrivate: Bool = isPrivate, expected: Bool = expected,
                                     interfaces: @autoclosure () -> [Interface] = interfaces) throws -> Bool {
        if isPrivate { return true }
        if expected { throw NotPrivate(interfaces: interfaces()) }
        return false
    }
}

#if canImport(Testing)
import Testing
public typealias Comment = Testing.Comment

extension Trait where Self == ConditionTrait {
    /// For tests that start tor, BitTorrent peers, DHT nodes or daemons: they run in a private
    /// network, are skipped elsewhere, and fail (instead of skipping) under `scripts/in-private-net`
    /// when the namespace is not private after all.
    public static var privateNetwork: Self {
        .enabled(PrivateNetwork.skipReason) { try PrivateNetwork.mayStartPeers() }
    }
}
#else
public typealias Comment = String
#endif
