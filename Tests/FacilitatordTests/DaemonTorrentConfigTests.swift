import Foundation
import TestSupport
import Testing

/// `[torrent] magnet_peers`: which peers written inside a requester's magnet link the daemon dials.
struct DaemonTorrentConfigTests {
    static func printConfig(_ dir: TemporaryDirectory, _ toml: String) throws -> (status: Int32, out: String, err: String) {
        let exe = try #require(builtExecutable("facilitatord"), "swift build --product facilitatord first")
        let path = dir.url.appendingPathComponent("facilitatord-\(UUID().uuidString).toml").path
        try toml.write(toFile: path, atomically: true, encoding: .utf8)
        let r = try runCommand(exe, ["run", "--config", path, "--print-config"], environment: ["PEERSM_FACILITATOR_DB": ""])
        return (r.status, r.out, r.err)
    }

    @Test func magnetPeersIsPublicByDefaultAndValidated() throws {
        let dir = try TemporaryDirectory("daemon-magnet-peers")
        let byDefault = try Self.printConfig(dir, "")
        #expect(byDefault.status == 0 && byDefault.out.contains("magnet_peers = \"public\""), "\(byDefault)")
        for value in ["public", "any", "none"] {
            let r = try Self.printConfig(dir, "[torrent]\nmagnet_peers = \"\(value)\"\n")
            #expect(r.status == 0 && r.out.contains("magnet_peers = \"\(value)\""), "\(value): \(r)")
        }
        let bad = try Self.printConfig(dir, "[torrent]\nmagnet_peers = \"all\"\n")
        #expect(bad.status != 0 && bad.err.contains("torrent.magnet_peers must be one of \"public\", \"any\", \"none\""), "\(bad)")
        let wrongType = try Self.printConfig(dir, "[torrent]\nmagnet_peers = true\n")
        #expect(wrongType.status != 0 && wrongType.err.contains("torrent.magnet_peers must be a string"), "\(wrongType)")
    }
}
