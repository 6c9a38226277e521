import Foundation

/// A third-party BitTorrent peer seeding a torrent on loopback (the demo's seeder and the tests').
/// Every one of them runs with DHT, LSD, PEX and port forwarding off and binds to the given
/// loopback address only (`Loopback.address()` gives a test one of its own).
public final class Seeder: @unchecked Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        case aria2          // aria2c 1.36, its own BitTorrent implementation
        case transmission   // transmission-cli 3.00 (libtransmission)
        case libtorrent     // python3-libtorrent 2.0.8 (same engine as ours)
    }

    public let kind: Kind
    public let host: String
    public let port: UInt16
    public let process: ChildProcess

    /// Seeds `torrent`, whose files are under `content`; its log and scratch go below `directory`.
    public static func start(_ kind: Kind, torrent: URL, content: URL, host: String = "127.0.0.1",
                             directory: URL) async throws -> Seeder {
        let port = freePort(host: host)
        let dir = directory.appendingPathComponent("\(kind.rawValue)-\(port)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let process: ChildProcess
        switch kind {
        case .aria2:
            process = try ChildProcess("aria2c", [
                "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
                "--listen-port=\(port)", "--interface=\(host)", "--seed-ratio=0.0", "--bt-seed-unverified=true",
                "--check-integrity=false", "--file-allocation=none", "--no-conf=true", "--console-log-level=notice",
                "--summary-interval=0", "--bt-detach-seed-only=true", "-d", content.path,
                torrent.path,
            ], directory: dir)
        case .transmission:
            let config = dir.appendingPathComponent("config")
            try FileManager.default.createDirectory(at: config, withIntermediateDirectories: true)
            let settings: [String: Any] = [
                "dht-enabled": false, "lpd-enabled": false, "pex-enabled": false, "utp-enabled": false,
                "port-forwarding-enabled": false, "bind-address-ipv4": host, "bind-address-ipv6": "::1",
                "peer-port": Int(port), "ratio-limit-enabled": false, "rpc-enabled": false,
                "download-dir": content.path,
            ]
            try JSONSerialization.data(withJSONObject: settings).write(to: config.appendingPathComponent("settings.json"))
            process = try ChildProcess("transmission-cli", [
                "-g", config.path, "-p", String(port), "-M", "-w", content.path, torrent.path,
            ], directory: dir)
        case .libtorrent:
            process = try ChildProcess(PeerScript.python, [
                PeerScript.path, "seed", torrent.path, content.path,
                "--host", host, "--port", String(port),
            ], directory: dir, name: "libtorrent-seeder")
        }
        if kind == .libtorrent {
            try await process.waitForLog(containing: "LISTENING", timeout: .seconds(60))   // printed once seeding
        } else {
            try await waitForTCP(host: host, port: port, timeout: .seconds(30))
        }
        return Seeder(kind: kind, host: host, port: port, process: process)
    }

    private init(kind: Kind, host: String, port: UInt16, process: ChildProcess) {
        self.kind = kind
        self.host = host
        self.port = port
        self.process = process
    }

    public func stop() { process.stop() }
}


/// The repository's python3-libtorrent helper (scripts/torrent-peer.py: make, seed, leech, dht-node).
public enum PeerScript {
    /// The repository's scripts directory (found from this source file's location).
    public static let scriptsDirectory: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("scripts")
    public static let path = scriptsDirectory.appendingPathComponent("torrent-peer.py").path
    /// Debian's python3 (python3-libtorrent lives there), not whatever python3 is first on PATH.
    public static let python = FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") ? "/usr/bin/python3" : "python3"
}
