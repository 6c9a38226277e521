import Foundation
import TestSupport
import Testing

/// `facilitatord run` serves its swift-metrics instruments on a Prometheus scrape endpoint,
/// loopback by default, and refuses a public address unless asked for explicitly.
@Suite(.serialized) struct DaemonMetricsTests {
    static func daemonConfig(_ dir: TemporaryDirectory, metrics: String) throws -> String {
        let path = dir.url.appendingPathComponent("facilitatord-\(UUID().uuidString).toml").path
        try """
            data_directory = "\(dir.url.appendingPathComponent("data").path)"
            [relay]
            port = \(freePort())
            [torrent]
            listen = "127.0.0.1:0"
            [blocklists]
            database = "\(dir.url.appendingPathComponent("blocklists.sqlite").path)"
            \(metrics)
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// (HTTP status, body) of a GET through curl, which the test machine has (scripts/deps).
    static func get(_ url: String, method: String = "GET") throws -> (Int, String) {
        let out = try runTool("curl", ["-s", "-X", method, "-w", "\n%{http_code}", url])
        let lines = out.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? -1, lines.dropLast().joined(separator: "\n"))
    }

    @Test(.privateNetwork)
    func scrapeEndpointServesTheServicesMetrics() async throws {
        let exe = try #require(builtExecutable("facilitatord"), "swift build --product facilitatord first")
        let dir = try TemporaryDirectory("daemon-metrics")
        let config = try Self.daemonConfig(dir, metrics: "[metrics]\nlisten = \"127.0.0.1:0\"")
        let daemon = try ChildProcess(exe, ["run", "--config", config], directory: dir.url.appendingPathComponent("run"),
                                      environment: ["PEERSM_FACILITATOR_DB": ""], name: "facilitatord")
        defer { daemon.stop() }
        try await daemon.waitForLog(containing: "/metrics", timeout: .seconds(60))
        let line = try #require(daemon.log.split(separator: "\n").first { $0.hasPrefix("metrics http://") })
        let url = String(line.dropFirst("metrics ".count))
        #expect(url.hasPrefix("http://127.0.0.1:") && !url.hasPrefix("http://127.0.0.1:0/"), "\(url)")

        let (status, body) = try Self.get(url)
        #expect(status == 200, "\(body)")
        // Instruments from each service, the engine gauges refreshed at scrape time, and the
        // free-rider invariant: nothing uploaded.
        for name in ["peersm_facilitator_data_bytes_total", "peersm_facilitator_active_streams",
                     "peersm_blocklist_enforced_ranges", "peersm_torrent_active_torrents"] {
            #expect(body.contains("# TYPE \(name) "), "\(name) missing from:\n\(body)")
        }
        #expect(body.split(separator: "\n").contains("peersm_torrent_payload_uploaded_bytes 0.0"), "\(body)")

        #expect(try Self.get(url.replacingOccurrences(of: "/metrics", with: "/other")).0 == 404)
        #expect(try Self.get(url, method: "POST").0 == 405)
        #expect(daemon.isRunning)
    }

    @Test func metricsSettingsAreCheckedAndLoopbackByDefault() throws {
        let exe = try #require(builtExecutable("facilitatord"), "swift build --product facilitatord first")
        let dir = try TemporaryDirectory("daemon-metrics-config")
        func printConfig(_ metrics: String) throws -> (Int32, String, String) {
            let r = try runCommand(exe, ["run", "--config", try Self.daemonConfig(dir, metrics: metrics), "--print-config"],
                                   environment: ["PEERSM_FACILITATOR_DB": ""])
            return (r.status, r.out, r.err)
        }
        let byDefault = try printConfig("")
        #expect(byDefault.0 == 0 && byDefault.1.contains("[metrics]\nlisten = \"127.0.0.1:9474\"\npublic = false"), "\(byDefault)")
        let off = try printConfig("[metrics]\nlisten = \"\"")
        #expect(off.0 == 0 && off.1.contains("[metrics]\nlisten = \"\""), "\(off)")
        let open = try printConfig("[metrics]\nlisten = \"0.0.0.0:9474\"")
        #expect(open.0 != 0 && open.2.contains("metrics.listen must be a loopback address unless metrics.public = true"), "\(open)")
        let explicit = try printConfig("[metrics]\nlisten = \"0.0.0.0:9474\"\npublic = true")
        #expect(explicit.0 == 0, "\(explicit)")
        let garbage = try printConfig("[metrics]\nlisten = \"localhost\"")
        #expect(garbage.0 != 0 && garbage.2.contains("metrics.listen must be \"host:port\""), "\(garbage)")
    }
}
