import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The network hygiene rule, checked rather than assumed: whatever starts tor or BitTorrent peers
/// (the tests, the demo) runs only inside a network namespace where loopback is the only interface that is up
/// (`scripts/in-private-net`). Some kernels add tunnel devices (sit0, tunl0, ip6tnl0…) to every new
/// namespace; they stay down there, and a down interface sends nothing, so they are accepted.
public enum PrivateNetwork {
    public struct Interface: Equatable, Sendable, CustomStringConvertible {
        public let name: String
        public let isUp: Bool
        public init(name: String, isUp: Bool) {
            self.name = name
            self.isUp = isUp
        }
        public var description: String { "\(name) (\(isUp ? "up" : "down"))" }
    }

    /// Interface names in a `/proc/<pid>/net/dev` text (two header lines, then `name: counters`).
    public static func interfaceNames(procNetDev text: String) -> [String] {
        text.split(separator: "\n").dropFirst(2).compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces)
            return name.isEmpty ? nil : name
        }.sorted()
    }

    /// Private: loopback is listed and up, and every other interface is down.
    public static func isPrivate(_ interfaces: [Interface]) -> Bool {
        interfaces.contains { $0.name == "lo" && $0.isUp } && interfaces.allSatisfy { $0.name == "lo" || !$0.isUp }
    }

    /// This process's namespace: names from `/proc/self/net/dev` (it follows the namespace;
    /// `/sys/class/net` shows the host's unless sysfs was remounted), flags from SIOCGIFFLAGS on a
    /// socket, which is in the same namespace. Empty when `/proc` cannot be read.
    public static var interfaces: [Interface] {
        guard let text = try? String(contentsOfFile: "/proc/self/net/dev", encoding: .utf8) else { return [] }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { if fd >= 0 { close(fd) } }
        return interfaceNames(procNetDev: text).map { Interface(name: $0, isUp: fd >= 0 && isUp($0, socket: fd)) }
    }

    private static func isUp(_ name: String, socket fd: Int32) -> Bool {
        var request = ifreq()
        let bytes = Array(name.utf8.prefix(Int(IFNAMSIZ) - 1))
        withUnsafeMutableBytes(of: &request.ifr_ifrn.ifrn_name) { raw in
            raw.copyBytes(from: bytes)
        }
        guard ioctl(fd, UInt(SIOCGIFFLAGS), &request) == 0 else { return false }
        return Int32(request.ifr_ifru.ifru_flags) & Int32(IFF_UP) != 0
    }

    /// Checked once per test process.
    public static let isPrivate: Bool = isPrivate(interfaces)

    /// Set by `scripts/in-private-net`: here a network that is not private is an error, not a skip.
    public static var expected: Bool { ProcessInfo.processInfo.environment["PEERSM_IN_PRIVATE_NET"] == "1" }
}
