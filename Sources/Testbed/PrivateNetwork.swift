import Foundation

/// The network hygiene rule, checked rather than assumed: whatever starts tor or BitTorrent peers
/// (the tests, the demo) runs only inside a network namespace whose sole interface is loopback
/// (`scripts/in-private-net`).
public enum PrivateNetwork {
    /// Interface names of this process's network namespace (`/proc/self/net/dev` follows the
    /// namespace; `/sys/class/net` would show the host's unless sysfs was remounted).
    public static var interfaces: [String] {
        guard let text = try? String(contentsOfFile: "/proc/self/net/dev", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").dropFirst(2).compactMap { line in
            line.split(separator: ":", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces) }
        }.sorted()
    }

    /// True when loopback is the only interface: no packet can leave the machine.
    public static var isPrivate: Bool { interfaces == ["lo"] }
}
