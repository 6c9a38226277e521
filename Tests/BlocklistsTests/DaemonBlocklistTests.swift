import Foundation
import NetBasics
import TestSupport
import Testing

/// `facilitatord run` enforces the blocklist database the CLI writes: the union is on the engine at
/// start, and an import made while the daemon runs reaches it without a restart.
@Suite(.serialized) struct DaemonBlocklistTests {
    /// The number in the last `ranges=N` of a log line containing `message`.
    static func ranges(in log: String, _ message: String) -> Int? {
        guard let line = log.split(separator: "\n").last(where: { $0.contains(message) }),
              let r = line.range(of: #"ranges=(\d+)"#, options: .regularExpression) else { return nil }
        return Int(line[r].dropFirst("ranges=".count))
    }

    @Test(.privateNetwork)
    func daemonEnforcesImportedListsAndPicksUpLiveImports() async throws {
        let exe = try #require(CLI.binary, "facilitatord is not built beside the tests (swift build --product facilitatord)")
        let dir = try TemporaryDirectory("blocklist-daemon")
        let db = dir.url.appendingPathComponent("state/facilitator.sqlite").path
        let first = try writeFile(dir, "first.p2p", "Doc net:192.0.2.0-192.0.2.255\nOther:198.51.100.7-198.51.100.9\n")
        let imp = try CLI.run(["blocklist", "import", first, "--db", db])
        #expect(imp.status == 0, "\(imp.err)")

        let config = try writeFile(dir, "facilitatord.toml", """
            data_directory = "\(dir.url.appendingPathComponent("data").path)"
            [relay]
            host = "127.0.0.1"
            port = \(freePort())
            [torrent]
            listen = "127.0.0.1:0"
            [blocklists]
            database = "\(db)"
            poll_seconds = 1
            """)
        let daemon = try ChildProcess(exe, ["run", "--config", config], directory: dir.url.appendingPathComponent("run"),
                                      environment: ["PEERSM_FACILITATOR_DB": ""], name: "facilitatord")
        defer { daemon.stop() }
        try await daemon.waitForLog(containing: "blocklists enforced", timeout: .seconds(60))
        #expect(Self.ranges(in: daemon.log, "blocklists enforced") == 2, "\(daemon.log)")
        // The filter is applied before the relay takes circuits, hence before its spec line is printed.
        try await daemon.waitForLog(containing: "relay 127.0.0.1:", timeout: .seconds(60))
        let log = daemon.log
        let enforcedAt = try #require(log.range(of: "blocklists enforced")), relayAt = try #require(log.range(of: "relay 127.0.0.1:"))
        #expect(enforcedAt.lowerBound < relayAt.lowerBound)

        // A second process (the CLI) adds a list to the same database; the daemon's poll applies it.
        let second = try writeFile(dir, "second.p2p", "More:203.0.113.0-203.0.113.15\n")
        let imp2 = try CLI.run(["blocklist", "import", second, "--db", db])
        #expect(imp2.status == 0, "\(imp2.err)")
        try await daemon.waitForLog(containing: "blocklists updated", timeout: .seconds(30))
        #expect(Self.ranges(in: daemon.log, "blocklists updated") == 3, "\(daemon.log)")

        daemon.stop(grace: .seconds(10))
        #expect(!daemon.isRunning)
        #expect(daemon.log.contains("shutting down"))
    }

    @Test func badBlocklistSettingsAreRejected() throws {
        let dir = try TemporaryDirectory("blocklist-daemon-config")
        let config = try writeFile(dir, "bad.toml", "[blocklists]\npoll_seconds = 0\n")
        let r = try CLI.run(["run", "--config", config, "--print-config"])
        #expect(r.status != 0 && r.err.contains("blocklists.poll_seconds must be an integer in 1…3600"), "\(r.err)")
        let typo = try writeFile(dir, "typo.toml", "[blocklists]\ndatabse = \"x\"\n")
        let t = try CLI.run(["run", "--config", typo, "--print-config"])
        #expect(t.status != 0 && t.err.contains("unknown key blocklists.databse"), "\(t.err)")
        let ok = try writeFile(dir, "ok.toml", "[blocklists]\ndatabase = \"/tmp/x.sqlite\"\nrefresh_hours = 2\n")
        let o = try CLI.run(["run", "--config", ok, "--print-config"])
        #expect(o.status == 0 && o.out.contains("database = \"/tmp/x.sqlite\"") && o.out.contains("refresh_hours = 2"), "\(o.err)")
    }
}
