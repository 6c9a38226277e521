import Foundation
import TestSupport
import Testing

/// Many requesters asking one facilitator for the same torrent at once, with the real binaries:
/// three `facilitatord` relays on loopback (the last the facilitator), a python3-libtorrent seeder,
/// and N `peersm fetch` of the same magnet started together over the same path. Every one must
/// finish byte-exact (before the piece scheduler, the second of two got DB_END TIMEOUT: the first
/// stream's read of a shared piece hid it from the second).
@Suite(.serialized) struct ConcurrentFetchTests {
    /// A relay daemon; the spec line is what `peersm --via` takes.
    struct Relay {
        let process: ChildProcess
        let spec: String

        static func start(_ dir: URL, name: String) async throws -> Relay {
            let exe = try #require(builtExecutable("facilitatord"), "swift build --product facilitatord first")
            let home = dir.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
            let config = home.appendingPathComponent("facilitatord.toml").path
            // uTP off on the daemon: on loopback its congestion control caps throughput far below TCP.
            try """
                data_directory = "\(home.appendingPathComponent("data").path)"
                [relay]
                host = "127.0.0.1"
                port = \(freePort())
                extend_to_private_addresses = true
                [torrent]
                listen = "127.0.0.1:0"
                utp = false
                magnet_peers = "any"
                [metrics]
                listen = ""
                [blocklists]
                database = "\(home.appendingPathComponent("blocklists.sqlite").path)"
                """.write(toFile: config, atomically: true, encoding: .utf8)
            let p = try ChildProcess(exe, ["run", "--config", config], directory: home,
                                     environment: ["PEERSM_FACILITATOR_DB": ""], name: name)
            try await p.waitForLog(containing: "facilitator key", timeout: .seconds(60))
            let line = try #require(p.log.split(separator: "\n").first { $0.hasPrefix("relay ") })
            return Relay(process: p, spec: String(line.dropFirst("relay ".count)))
        }
    }

    struct Outcome {
        let status: Int32
        let sha256: String
        let log: String
    }

    /// Starts `count` fetches of `magnet` at once and waits for all; returns each outcome and the wall time.
    static func fetchTogether(_ count: Int, _ magnet: String, via: String, into dir: URL, tag: String,
                              timeout: Duration = .seconds(300)) async throws -> (outcomes: [Outcome], seconds: Double) {
        let peersm = try #require(builtExecutable("peersm"), "swift build --product peersm first")
        let outputs = (0..<count).map { dir.appendingPathComponent("\(tag)-\($0).bin") }
        let clock = ContinuousClock()
        let start = clock.now
        let processes = try outputs.enumerated().map { i, out in
            try ChildProcess(peersm, ["fetch", magnet, "--via", via, "-o", out.path, "--quiet"],
                             directory: dir, name: "peersm-\(tag)-\(i)")
        }
        let deadline = start + timeout
        while processes.contains(where: \.isRunning) && clock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        let seconds = Double((clock.now - start).components.attoseconds) / 1e18 + Double((clock.now - start).components.seconds)
        var outcomes: [Outcome] = []
        for (p, out) in zip(processes, outputs) {
            if p.isRunning {
                p.stop()
                outcomes.append(Outcome(status: -1, sha256: "", log: "still running after \(timeout)\n" + p.log))
                continue
            }
            let sum = FileManager.default.fileExists(atPath: out.path) ? String(try runTool("sha256sum", [out.path]).prefix(64)) : ""
            outcomes.append(Outcome(status: p.exitStatus, sha256: sum, log: p.log))
        }
        return (outcomes, seconds)
    }

    @Test(.privateNetwork, .timeLimit(.minutes(10)))
    func twoThenEightFetchesOfOneTorrentThroughOneFacilitatorAllFinish() async throws {
        let scratch = try TemporaryDirectory("concurrent-fetch")
        let mib = Int(ProcessInfo.processInfo.environment["PEERSM_CONCURRENT_MIB"] ?? "") ?? 8
        let fixture = try TorrentFixture(in: scratch.url, name: "shared.bin", size: mib << 20, pieceKiB: 256, seed: 2026)
        let want = String(try runTool("sha256sum", [fixture.contentDirectory.appendingPathComponent("shared.bin").path]).prefix(64))
        let seeder = try await Seeder.start(.libtorrent, seeding: fixture, directory: scratch.url)
        defer { seeder.stop() }
        var relays: [Relay] = []
        defer { relays.forEach { $0.process.stop() } }
        for name in ["guard", "middle", "facilitator"] { relays.append(try await Relay.start(scratch.url, name: name)) }
        let via = relays.map(\.spec).joined(separator: ",")
        let magnet = fixture.magnet + "&x.pe=\(seeder.host):\(seeder.port)"

        var report: [String] = []
        let counts = (ProcessInfo.processInfo.environment["PEERSM_CONCURRENT_COUNTS"] ?? "1,2,8")
            .split(separator: ",").compactMap { Int($0) }
        for count in counts {
            let (outcomes, seconds) = try await Self.fetchTogether(count, magnet, via: via, into: scratch.url, tag: "x\(count)")
            for (i, o) in outcomes.enumerated() {
                #expect(o.status == 0 && o.sha256 == want,
                        "fetch \(i + 1) of \(count) together: exit \(o.status)\n\(o.log)\n--- facilitator ---\n\(relays[2].process.log.suffix(4000))")
            }
            let rate = Double(count * (mib << 20)) / seconds / 1e6
            report.append("\(count) at once: \(String(format: "%.1f", seconds)) s, aggregate \(String(format: "%.1f", rate)) MB/s")
        }
        print("concurrent-fetch \(mib) MiB: " + report.joined(separator: "; "))
        // Relayed content never reaches the facilitator's disk: nothing in its data directory is
        // as large as a piece.
        let data = scratch.url.appendingPathComponent("facilitator/data")
        let files = FileManager.default.enumerator(at: data, includingPropertiesForKeys: [.fileSizeKey])?
            .compactMap { $0 as? URL } ?? []
        for f in files {
            let size = (try? f.resourceValues(forKeys: [.fileSizeKey]).fileSize) ?? 0
            #expect(size < fixture.pieceLength, "\(f.path) holds \(size) bytes")
        }
    }
}
