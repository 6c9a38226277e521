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

/// `log_level` reaches every logger the daemon makes: the torrent engines' (the fetching one and
/// the spy hunt's), not only the daemon's own.
@Suite(.serialized) struct DaemonLogLevelTests {
    /// Starts the daemon with `level` and spy hunting on (its engine starts at once; the bootstrap
    /// node is only asked at a query) and returns its output once it is up.
    static func startupLog(_ level: String) async throws -> String {
        let exe = try #require(builtExecutable("facilitatord"), "swift build --product facilitatord first")
        let dir = try TemporaryDirectory("daemon-log-level")
        let path = dir.url.appendingPathComponent("facilitatord.toml").path
        try """
            data_directory = "\(dir.url.appendingPathComponent("data").path)"
            log_level = "\(level)"
            [relay]
            port = \(freePort())
            [torrent]
            listen = "127.0.0.1:0"
            [metrics]
            listen = ""
            [blocklists]
            database = "\(dir.url.appendingPathComponent("blocklists.sqlite").path)"
            hunt = true
            hunt_bootstrap_nodes = ["127.0.0.9:7000"]
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let daemon = try ChildProcess(exe, ["run", "--config", path], directory: dir.url.appendingPathComponent("run"),
                                      environment: ["PEERSM_FACILITATOR_DB": ""], name: "facilitatord")
        defer { daemon.stop() }
        try await daemon.waitForLog(containing: "facilitator key", timeout: .seconds(60))
        return daemon.log
    }

    @Test(.privateNetwork)
    func logLevelAppliesToTheEngineLoggers() async throws {
        let debug = try await Self.startupLog("debug")
        #expect(debug.contains("peersm.torrent: ") && debug.contains("session started"), "\(debug)")
        #expect(debug.contains("peersm.torrent.hunt: "), "\(debug)")
        let quiet = try await Self.startupLog("warning")
        #expect(!quiet.contains("session started") && !quiet.contains(" info ") && !quiet.contains(" debug "), "\(quiet)")
    }
}
