import Foundation
import NetBasics
import Testbed
#if canImport(Glibc)
import Glibc
#endif

public enum TorTestNetworkError: Error, CustomStringConvertible {
    case notPrivate
    case scriptFailed(Int32, String)
    case malformedNetworkFile(String)

    public var description: String {
        switch self {
        case .notPrivate: return "refusing to start tor outside a private network namespace (scripts/in-private-net)"
        case .scriptFailed(let code, let output): return "scripts/tor-testnet exited with \(code):\n\(output)"
        case .malformedNetworkFile(let why): return "network.json: \(why)"
        }
    }
}

/// One tor process of a `TorTestNetwork`, as recorded in `network.json` by `scripts/tor-testnet`.
/// Keys are raw bytes; relays and authorities have all of them, the client none.
public struct TorNode: Sendable, Equatable {
    public enum Role: String, Sendable, Decodable { case authority, relay, exit, client }

    public let nickname: String
    public let role: Role
    public let orPort: UInt16?
    public let dirPort: UInt16?
    public let socksPort: UInt16?
    public let controlPort: UInt16?
    public let dataDirectory: URL
    public let torrc: URL
    public let logFile: URL
    public let pid: Int32
    /// SHA-1 of the DER RSA identity key (20 bytes): the legacy relay identity (`fingerprint`).
    public let rsaIdentity: [UInt8]?
    /// Ed25519 master identity public key (32 bytes).
    public let ed25519Identity: [UInt8]?
    /// Curve25519 ntor onion public key (32 bytes), the `B` of the ntor handshake.
    public let ntorOnionKey: [UInt8]?
    /// Authorities only: SHA-1 of the v3 authority identity key (20 bytes).
    public let v3Identity: [UInt8]?

    /// Upper-case hex RSA fingerprint, as tor's logs and `DirAuthority` lines spell it.
    public var fingerprint: String? { rsaIdentity.map { Hex.encode($0, uppercase: true) } }
    public var isRelay: Bool { role != .client }
}

/// A private tor network of real C tor processes on 127.0.0.1, built by `scripts/tor-testnet`:
/// authorities, middle relays, exits and optionally a client with a SocksPort, all bootstrapped
/// (every relay in the consensus; the client at 100%) when `start` returns.
///
/// Every tor exits on its own if this process dies (`__OwningControllerProcess`), `stop()` kills
/// them, and so does deinit. Only starts inside a private network namespace.
public final class TorTestNetwork: @unchecked Sendable {
    public let directory: URL
    public let nodes: [TorNode]
    /// The `DirAuthority …` torrc lines every node uses; give them to any extra tor you start.
    public let dirAuthorityLines: [String]
    /// Wall time from the first tor starting to the network being ready.
    public let bootstrapSeconds: Double

    private let scratch: TemporaryDirectory?
    private let lock = NSLock()
    private var stopped = false

    public var authorities: [TorNode] { nodes.filter { $0.role == .authority } }
    public var middleRelays: [TorNode] { nodes.filter { $0.role == .relay } }
    public var exits: [TorNode] { nodes.filter { $0.role == .exit } }
    /// Every node with an ORPort (authorities relay too).
    public var relays: [TorNode] { nodes.filter(\.isRelay) }
    public var client: TorNode? { nodes.first { $0.role == .client } }
    public func node(_ nickname: String) -> TorNode? { nodes.first { $0.nickname == nickname } }

    /// The harness script, found relative to this source file (override with `PEERSM_TOR_TESTNET`).
    public static var scriptPath: String {
        if let path = ProcessInfo.processInfo.environment["PEERSM_TOR_TESTNET"] { return path }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/tor-testnet").path
    }

    /// Builds and starts a network and waits until it is ready (25-45 s on this machine; the
    /// first consensus needs one 20 s voting round).
    ///
    /// `authorities: 0` starts relays with no consensus at all (a few seconds): they still accept
    /// CREATE2 and EXTEND2, and exits get `RefuseUnknownExits 0` so they accept BEGIN from relays
    /// they do not know. Ready once every relay serves its own descriptor. Only for our own
    /// clients: a C tor client needs a consensus, so `client` must be false.
    /// - Parameters:
    ///   - extraTorrc: lines for every node's torrc, or for one role with a prefix
    ///     (`"client:UseEntryGuards 0"`, `"exit:…"`, `"relay:…"`, `"authority:…"`, `"server:…"`).
    ///   - directory: where the data directories go; a scratch directory removed on deinit if nil
    ///     (set `PEERSM_KEEP_TORNET=1` to keep it for reading the logs).
    public static func start(authorities: Int = 3, relays: Int = 2, exits: Int = 1, client: Bool = true,
                             extraTorrc: [String] = [], directory: URL? = nil,
                             timeout: Duration = .seconds(150)) async throws -> TorTestNetwork {
        guard PrivateNetwork.isPrivate else { throw TorTestNetworkError.notPrivate }
        let keep = ProcessInfo.processInfo.environment["PEERSM_KEEP_TORNET"] == "1"
        let scratch = directory == nil && !keep ? try TemporaryDirectory("tornet") : nil
        let dir = directory ?? scratch?.url
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("tornet-\(UUID().uuidString.prefix(8))")
        let netDir = dir.appendingPathComponent("net")
        var args = ["start", netDir.path, "--authorities", "\(authorities)", "--relays", "\(relays)",
                    "--exits", "\(exits)", "--owner-pid", "\(getpid())",
                    "--timeout", "\(timeout.components.seconds)"]
        if client { args.append("--client") }
        for line in extraTorrc { args += ["--extra-torrc", line] }
        try await runScript(args, outputIn: dir)
        do {
            let data = try Data(contentsOf: netDir.appendingPathComponent("network.json"))
            return try TorTestNetwork(json: data, scratch: scratch)
        } catch {
            _ = try? runTool(scriptPath, ["stop", netDir.path])
            throw error
        }
    }

    /// Takes over a network already started by `scripts/tor-testnet start DIR` (reads
    /// DIR/network.json); like one from `start`, it is stopped on `stop()` or deinit.
    public static func load(directory: URL) throws -> TorTestNetwork {
        let data: Data
        do { data = try Data(contentsOf: directory.appendingPathComponent("network.json")) } catch {
            throw TorTestNetworkError.malformedNetworkFile("cannot read \(directory.path)/network.json: \(error)")
        }
        return try TorTestNetwork(json: data, scratch: nil)
    }

    init(json: Data, scratch: TemporaryDirectory?) throws {
        let file: NetworkFile
        do { file = try JSONDecoder().decode(NetworkFile.self, from: json) } catch {
            throw TorTestNetworkError.malformedNetworkFile("\(error)")
        }
        guard file.version == 1 else { throw TorTestNetworkError.malformedNetworkFile("unknown version \(file.version)") }
        directory = URL(fileURLWithPath: file.directory)
        dirAuthorityLines = file.dirAuthorityLines
        bootstrapSeconds = file.bootstrapSeconds ?? 0
        nodes = try file.nodes.map { try $0.typed() }
        self.scratch = scratch
    }

    /// Kills every tor of the network (SIGTERM, then SIGKILL) and waits for them. Idempotent.
    public func stop() {
        lock.lock()
        defer { lock.unlock() }
        guard !stopped else { return }
        stopped = true
        _ = try? runTool(Self.scriptPath, ["stop", directory.path])
    }

    /// True while any of the network's tor processes still runs this network's torrc.
    public var anyProcessRunning: Bool { nodes.contains(where: isRunning) }

    /// True while `node`'s pid still runs its torrc (not a reused pid).
    public func isRunning(_ node: TorNode) -> Bool {
        guard let argv = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(node.pid)/cmdline")) else { return false }
        return argv.split(separator: 0).contains { String(decoding: $0, as: UTF8.self) == node.torrc.path }
    }

    /// SIGKILLs one tor, as a crash would (no DESTROY, no clean TLS close); false if it was not running.
    @discardableResult
    public func crash(_ node: TorNode) -> Bool {
        guard isRunning(node) else { return false }
        return kill(node.pid, SIGKILL) == 0
    }

    deinit { stop() }

    private static func runScript(_ args: [String], outputIn dir: URL) async throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let logURL = dir.appendingPathComponent("tor-testnet.log")
        let status = try await runToCompletion("/usr/bin/env", ["python3", scriptPath] + args, output: logURL)
        guard status == 0 else {
            throw TorTestNetworkError.scriptFailed(status, (try? String(contentsOf: logURL, encoding: .utf8)) ?? "")
        }
    }
}

/// Runs a program to completion with stdout and stderr in `output`, without blocking a cooperative
/// thread meanwhile (a network takes ~25 s to bootstrap; a benchmark download longer).
func runToCompletion(_ executable: String, _ arguments: [String], output: URL) async throws -> Int32 {
    _ = FileManager.default.createFile(atPath: output.path, contents: nil)
    let log = try FileHandle(forWritingTo: output)
    defer { try? log.close() }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.standardOutput = log
    process.standardError = log
    process.standardInput = FileHandle.nullDevice
    return try await withCheckedThrowingContinuation { continuation in
        process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
        // Unblocked SIGTERM for the script and the tors it daemonizes: tor inherits the runner
        // thread's blocked mask otherwise, ignores `stop`'s SIGTERM and is SIGKILLed after 5 s.
        do { try ChildProcess.withDefaultSignalMask { try process.run() } } catch {
            process.terminationHandler = nil
            continuation.resume(throwing: error)
        }
    }
}

// MARK: - network.json

private struct NetworkFile: Decodable {
    let version: Int
    let directory: String
    let bootstrapSeconds: Double?
    let dirAuthorityLines: [String]
    let nodes: [NodeRecord]
}

private struct NodeRecord: Decodable {
    let nickname: String
    let role: TorNode.Role
    let orPort, dirPort, socksPort, controlPort: UInt16?
    let dataDirectory, torrc, logFile: String
    let pid: Int32?
    let fingerprint, ed25519Identity, ntorOnionKey, v3Identity: String?

    func typed() throws -> TorNode {
        guard let pid else { throw TorTestNetworkError.malformedNetworkFile("\(nickname) has no pid") }
        func key(_ hex: String?, _ length: Int, _ what: String) throws -> [UInt8]? {
            guard let hex else { return nil }
            guard let bytes = Hex.decode(hex), bytes.count == length else {
                throw TorTestNetworkError.malformedNetworkFile("\(nickname).\(what) is not \(length) hex bytes")
            }
            return bytes
        }
        let node = TorNode(
            nickname: nickname, role: role, orPort: orPort, dirPort: dirPort, socksPort: socksPort,
            controlPort: controlPort, dataDirectory: URL(fileURLWithPath: dataDirectory),
            torrc: URL(fileURLWithPath: torrc), logFile: URL(fileURLWithPath: logFile), pid: pid,
            rsaIdentity: try key(fingerprint, 20, "fingerprint"),
            ed25519Identity: try key(ed25519Identity, 32, "ed25519Identity"),
            ntorOnionKey: try key(ntorOnionKey, 32, "ntorOnionKey"),
            v3Identity: try key(v3Identity, 20, "v3Identity"))
        if node.isRelay && (node.orPort == nil || node.rsaIdentity == nil || node.ed25519Identity == nil || node.ntorOnionKey == nil) {
            throw TorTestNetworkError.malformedNetworkFile("relay \(nickname) lacks an ORPort or a key")
        }
        return node
    }
}
