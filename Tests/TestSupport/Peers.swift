import Foundation
import Testbed

extension Seeder {
    /// Seeds a test fixture (see `Seeder.start(_:torrent:content:host:directory:)`).
    public static func start(_ kind: Kind, seeding fixture: TorrentFixture, host: String = "127.0.0.1",
                             directory: URL) async throws -> Seeder {
        try await start(kind, torrent: fixture.torrentURL, content: fixture.contentDirectory, host: host, directory: directory)
    }
}

/// A plain python3-libtorrent leecher that connects to nobody by itself and reports what it got
/// from whom (used to show that our engine serves nothing).
public final class ProbeLeecher: @unchecked Sendable {
    public struct Report: Sendable {
        public let payloadDown: Int64
        public let peers: [(address: String, port: Int, down: Int64, weInterested: Bool, piecesTheyHave: Int)]
    }

    public let host: String
    public let port: UInt16
    public let process: ChildProcess
    private let reportURL: URL

    public init(torrent fixture: TorrentFixture, host: String = "127.0.0.1", directory: URL) async throws {
        let dir = directory.appendingPathComponent("leecher")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        self.host = host
        port = freePort(host: host)
        reportURL = dir.appendingPathComponent("report.json")
        process = try ChildProcess(TorrentFixture.python, [
            TorrentFixture.peerScript, "leech", fixture.torrentURL.path, dir.appendingPathComponent("data").path,
            "--host", host, "--port", String(port), "--report", reportURL.path,
        ], directory: dir, name: "libtorrent-leecher")
        try await waitForTCP(host: host, port: port, timeout: .seconds(30))
    }

    public func report() throws -> Report {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: reportURL)) as? [String: Any] ?? [:]
        let peers = (json["peers"] as? [[String: Any]] ?? []).map {
            (address: $0["ip"] as? String ?? "", port: $0["port"] as? Int ?? 0, down: Int64($0["down"] as? Int ?? 0),
             weInterested: $0["we_interested"] as? Bool ?? false, piecesTheyHave: $0["pieces_they_have"] as? Int ?? 0)
        }
        return Report(payloadDown: Int64(json["payload_down"] as? Int ?? 0), peers: peers)
    }

    public func stop() { process.stop() }
}

/// opentracker on loopback (HTTP announce at /announce). Debian builds it with a whitelist, so
/// the info-hashes it may track are given up front.
public final class LocalTracker: @unchecked Sendable {
    public let port: UInt16
    public let process: ChildProcess
    public var announceURL: String { "http://127.0.0.1:\(port)/announce" }

    public init(directory: URL, infoHashes: [String], port: UInt16 = freePort()) async throws {
        self.port = port
        let dir = directory.appendingPathComponent("opentracker")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        // opentracker chroots to -d and drops to "nobody" before reading the whitelist.
        try (infoHashes.joined(separator: "\n") + "\n").write(to: dir.appendingPathComponent("whitelist.txt"),
                                                                 atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o644],
                                              ofItemAtPath: dir.appendingPathComponent("whitelist.txt").path)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory.path)
        process = try ChildProcess("opentracker", ["-i", "127.0.0.1", "-p", String(port), "-P", String(port),
                                                   "-d", dir.path, "-w", "whitelist.txt"], directory: dir)
        try await waitForTCP(port: port, timeout: .seconds(15))
    }

    public func stop() { process.stop() }
}

/// A small DHT on loopback: python3-libtorrent nodes (full nodes, not read-only) that know each
/// other. With `seeding`, the last node also seeds that fixture and announces itself on the DHT
/// (ordinary announce_peer), so it is found at `(nodes.last.host, seederPort)`.
public final class LocalDHT: @unchecked Sendable {
    public let nodes: [(host: String, port: UInt16)]
    private let processes: [ChildProcess]

    public var seederPort: UInt16? { seeding ? nodes.last?.port : nil }
    private let seeding: Bool

    /// All nodes on `host` (by default a loopback address of this DHT's own), on ports of their own.
    public init(count: Int = 3, seeding fixture: TorrentFixture? = nil, host: String = Loopback.address(),
                directory: URL) async throws {
        var nodes: [(String, UInt16)] = []
        var processes: [ChildProcess] = []
        for i in 0..<count {
            let port = freePort(host: host)
            var args = [TorrentFixture.peerScript, "dht-node", "--host", host, "--port", String(port)]
            for n in nodes { args += ["--node", "\(n.0):\(n.1)"] }
            if i == count - 1, let fixture {
                args += ["--seed", fixture.torrentURL.path, fixture.contentDirectory.path]
            }
            let dir = directory.appendingPathComponent("dht-\(i)")
            processes.append(try ChildProcess(TorrentFixture.python, args, directory: dir, name: "dht-node-\(i)"))
            try await processes.last!.waitForLog(containing: "LISTENING", timeout: .seconds(20))
            nodes.append((host, port))
        }
        self.nodes = nodes
        self.processes = processes
        seeding = fixture != nil
    }

    public func stop() { processes.forEach { $0.stop() } }
}
