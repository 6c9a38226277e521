import Foundation
import NetBasics
import MetricsTestKit
import Testing
import TestSupport
@testable import Blocklists
import TorrentEngine

// Shared by the engine-level blocklist tests (BlocklistEnforcementTests, SpyDetectionEngineTests):
// real libtorrent sessions and real peers on 127.0.0.x inside the private network namespace.

/// Every engine-level blocklist test starts real peers and engines, so they run one at a time
/// (nested suites inherit `.serialized`).
@Suite(.serialized)
struct BlocklistEngineTests {}

enum EngineRig {
    /// The test gives its `BlocklistService(metrics:)` a `TestMetrics()` of its own and reads it
    /// here: the counts are that service's only, whatever other suite runs at once.
    static func blockedPeers(_ metrics: TestMetrics, reason: String = "ip_filter") -> Int64 {
        metrics.counterTotal(label: "peersm_blocklist_blocked_peers_total", dimensions: [("reason", reason)])
    }

    static func spiesDetected(_ metrics: TestMetrics, _ reason: SpyReason) -> Int64 {
        metrics.counterTotal(label: "peersm_spies_detected_total", dimensions: [("reason", reason.rawValue)])
    }

    /// A loopback engine as the daemon would run it, with the test's network rules: TCP only,
    /// listening on 127.0.0.1 only, empty DHT bootstrap list (the engine's defaults keep LSD, UPnP
    /// and NAT-PMP off), private addresses allowed in DHT routing and searches.
    static func engine(_ scratch: URL, _ name: String, configure: (inout TorrentEngineSettings) -> Void = { _ in }) throws -> TorrentEngine {
        var s = TorrentEngineSettings.loopbackTest(dataDirectory: scratch.appendingPathComponent("engine-\(name)").path)
        configure(&s)
        #expect(s.dhtBootstrapNodes.isEmpty && s.listenInterfaces.hasPrefix("127.0.0.1:"))
        return try TorrentEngine(settings: s)
    }

    /// SHA-256 by coreutils' sha256sum, so the comparison does not rest on our own code.
    static func sha256(_ data: Data, scratch: URL) throws -> String {
        let file = scratch.appendingPathComponent("sha-\(UUID().uuidString)")
        try data.write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        return String(try runTool("sha256sum", [file.path]).prefix(64))
    }

    struct FetchStalled: Error, CustomStringConvertible { let description: String }

    /// Streams the whole largest file of `magnet`. A fetch that has not finished within `timeout`
    /// is cancelled and fails with what the engine knew (torrents, their stats and peers), rather
    /// than hanging the suite. No retry: the stall this used to retry ("stream stalled with every
    /// piece downloaded") was a stream sharing its torrent with one still ending, whose read of a
    /// piece hid it from the other; `PieceScheduler` keeps a piece readable until every stream
    /// that needs it has read it.
    static func fetch(_ engine: TorrentEngine, _ magnet: String, peers: [PeerEndpoint] = [],
                      timeout: Duration = .seconds(60)) async throws -> Data {
        try await fetchOnce(engine, magnet, peers: peers, timeout: timeout)
    }

    private static func fetchOnce(_ engine: TorrentEngine, _ magnet: String, peers: [PeerEndpoint],
                                  timeout: Duration) async throws -> Data {
        let stream = try await engine.stream(magnet, peers: peers)
        let progress = FetchProgress()
        return try await withThrowingTaskGroup(of: Data?.self) { group in
            group.addTask {
                var out = Data()
                for try await event in stream {
                    await progress.note(event)
                    if case .data(let chunk) = event { out.append(chunk) }
                }
                return out
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            if let first = try await group.next(), let data = first { return data }
            var report = ["stream so far: \(await progress.summary)"]
            for id in await engine.openTorrents {
                if let st = try? await engine.stats(id) {
                    report.append("\(id): state \(st.state) metadata \(st.hasMetadata) pieces \(st.piecesHave) peers \(st.peers) down \(st.payloadDownloaded) error \(st.error ?? "-")")
                }
                for p in (try? await engine.peers(id)) ?? [] {
                    report.append("  peer \(p.endpoint) seed \(p.isSeed) down \(p.payloadDownloaded) client \(p.client)")
                }
            }
            throw FetchStalled(description: "fetch not done after \(timeout):\n" + report.joined(separator: "\n"))
        }
    }

    static func writeList(_ dir: URL, _ name: String, _ text: String) throws -> BlocklistSource {
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return .file(url.path)
    }

    /// A python3-libtorrent DHT node (a full node: it answers and stores announces) on `host`,
    /// optionally seeding a fixture and announcing itself for it. It is `torrent-peer.py dht-node`
    /// with the listen host replaced, so it keeps that script's settings (no LSD/UPnP/NAT-PMP,
    /// empty bootstrap list, local addresses allowed).
    static func dhtNode(host: String, knowing nodes: [String] = [], seeding fixture: TorrentFixture? = nil,
                        directory: URL, name: String) async throws -> (process: ChildProcess, port: UInt16) {
        let port = freePort(host: host)
        let program = """
            import argparse, importlib.util, sys
            spec = importlib.util.spec_from_file_location("torrent_peer", sys.argv[1])
            tp = importlib.util.module_from_spec(spec); spec.loader.exec_module(tp)
            host = sys.argv[2]
            base = tp.base_settings
            tp.base_settings = lambda port=0, dht=False, host_=None, utp=False, **kw: base(port, dht=dht, host=host, utp=utp)
            seed = sys.argv[5:7] if len(sys.argv) > 6 else None
            nodes = [n for n in sys.argv[4].split(",") if n]
            tp.cmd_dht_node(argparse.Namespace(port=int(sys.argv[3]), node=nodes, seed=seed))
            """
        var args = ["-c", program, TorrentFixture.peerScript, host, String(port), nodes.joined(separator: ",")]
        if let fixture { args += [fixture.torrentURL.path, fixture.contentDirectory.path] }
        let p = try ChildProcess(TorrentFixture.python, args, directory: directory.appendingPathComponent(name), name: name)
        try await p.waitForLog(containing: "LISTENING", timeout: .seconds(20))
        return (p, port)
    }

    /// scripts/fake-spy-dht.py: answers get_peers for any info-hash with `values`.
    static func spyNode(host: String, values: [String], directory: URL) async throws -> (process: ChildProcess, port: UInt16) {
        let port = freePort(host: host)
        let p = try ChildProcess(TorrentFixture.python, [
            TorrentFixture.scriptsDirectory.appendingPathComponent("fake-spy-dht.py").path, "--host", host,
            "--port", String(port), "--values", values.joined(separator: ","), "--max-seconds", "300",
        ], directory: directory.appendingPathComponent("spy"), name: "fake-spy-dht")
        try await p.waitForLog(containing: "listening on", timeout: .seconds(20))
        return (p, port)
    }
}

/// What a stream has yielded so far (for the stall report).
actor FetchProgress {
    private var events: [String] = []
    private var bytes = 0
    func note(_ e: TorrentStreamEvent) {
        switch e {
        case .progress(let p): events.append(p.rawValue)
        case .ready(let info): events.append("ready(\(info.fileSize) bytes)")
        case .data(let d): bytes += d.count
        }
    }
    var summary: String { "\(events.joined(separator: ", ")); \(bytes) data bytes" }
}

/// Peer events forwarded by `BlocklistService.attach`.
actor EngineEventLog {
    private(set) var events: [PeerEvent] = []
    func add(_ e: PeerEvent) { events.append(e) }
    func contains(_ kind: PeerEvent.Kind, _ address: String) -> Bool {
        events.contains { $0.kind == kind && $0.address == address }
    }
    func count(_ kind: PeerEvent.Kind, _ address: String) -> Int {
        events.filter { $0.kind == kind && $0.address == address }.count
    }
}

extension Seeder {
    var engineEndpoint: PeerEndpoint { .init(host: host, port: port) }
}
