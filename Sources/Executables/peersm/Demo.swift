import ArgumentParser
import Crypto
import Facilitator
import Foundation
import Logging
import NIOPosix
import OnionRouting
import OnionTransport
import TorCrypto
import PeersmProtocol
import Requester
import TorrentEngine

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The whole system on this machine, loopback only: seeder → facilitator → 3-hop circuit → requester.",
        discussion: """
            Makes a random test file and its torrent, starts a third-party BitTorrent seeder on
            127.0.0.1 (aria2c, or python3-libtorrent if aria2c is missing), starts three of our onion
            relays in this process — the last one is the facilitator, with its own torrent engine in
            free-rider mode — then fetches the file by magnet link over a 3-hop circuit, verifying every
            block, and compares SHA-256 digests.

            The seeder is a real BitTorrent client: it must not be reachable from, or reach, other
            machines. Run this through scripts/demo (a private network namespace with only lo up). Outside
            such a namespace the demo refuses unless you pass --outside-private-namespace.
            """)

    @Option(name: .customLong("size-mib"), help: "Size of the test file in MiB.")
    var sizeMiB = 32

    @Option(name: .customLong("piece-kib"), help: "Torrent piece size in KiB.")
    var pieceKiB = 256

    @Option(help: "Seeder: aria2 or libtorrent (default: aria2 if aria2c is installed).")
    var seeder: String?

    @Flag(help: "Run even though this is not a private network namespace (everything still binds 127.0.0.1).")
    var outsidePrivateNamespace = false

    @Flag(help: "Keep the working directory (test file, torrent, fetched copy, seeder log).")
    var keep = false

    @Flag(help: "Log what the facilitator and the engine do.")
    var verbose = false

    @Option(help: ArgumentHelp(
        "Benchmark: after our fetch, download the same torrent directly from the same seeder with this "
            + "python3-libtorrent script (scripts/torrent-peer.py) and compare.", valueName: "torrent-peer.py"))
    var directBaseline: String?

    @Flag(help: "Wire the relays in memory (no TLS, no sockets) instead of real TLS ORPorts on 127.0.0.1.")
    var inMemoryRelays = false

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = verbose ? .debug : .warning
            return handler
        }
        let interfaces = DemoEnvironment.networkInterfaces()
        if interfaces != ["lo"] && !outsidePrivateNamespace {
            throw ValidationError("""
                this is not a private network namespace (interfaces: \(interfaces.joined(separator: ", "))).
                Run scripts/demo, which runs `peersm demo` under unshare -n with only lo up, or pass
                --outside-private-namespace to run the seeder here anyway (it binds 127.0.0.1 only).
                """)
        }
        guard sizeMiB >= 1, sizeMiB <= 4096, pieceKiB >= 16, pieceKiB <= 16384, pieceKiB & (pieceKiB - 1) == 0 else {
            throw ValidationError("--size-mib must be 1…4096 and --piece-kib a power of two, 16…16384")
        }
        let kind = try DemoEnvironment.chooseSeeder(seeder)
        let clock = ContinuousClock()
        let work = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("peersm-demo-\(getpid())")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { if !keep { try? FileManager.default.removeItem(at: work) } }
        func say(_ s: String) { print(s); fflush(stdout) }

        say("peersm demo — everything on 127.0.0.1 (\(interfaces == ["lo"] ? "private network namespace" : "NOT a private namespace"))")
        // 1. The content and its torrent.
        var t = clock.now
        let content = work.appendingPathComponent("content")
        try FileManager.default.createDirectory(at: content, withIntermediateDirectories: true)
        let file = content.appendingPathComponent("peersm-demo.bin")
        try DemoEnvironment.writeRandomFile(file, bytes: sizeMiB << 20)
        let torrent = try TorrentMaker.make(file: file, pieceLength: pieceKiB << 10)
        let torrentURL = work.appendingPathComponent("peersm-demo.torrent")
        try Data(torrent.bytes).write(to: torrentURL)
        say("  test file      \(sizeMiB) MiB, \(torrent.pieceCount) pieces of \(pieceKiB) KiB, infohash \(torrent.infoHashHex)   (\(ms(clock.now - t)))")

        // 2. A third-party seeder.
        t = clock.now
        let seeder = try await DemoSeeder.start(kind, torrent: torrentURL, content: content, directory: work)
        defer { seeder.stop() }
        say("  seeder         \(seeder.name) on 127.0.0.1:\(seeder.port)   (\(ms(clock.now - t)))")

        // 3. Three relays in this process; the last is the facilitator with its torrent engine.
        t = clock.now
        var settings = TorrentEngineSettings()
        settings.enableUTP = false  // uTP's congestion control throttles loopback
        settings.dataDirectory = work.appendingPathComponent("engine").path
        settings.dhtAllowLocalNodes = true
        settings.magnetPeers = .any  // the demo's magnet names its loopback seeder as x.pe
        settings.metadataTimeout = .seconds(30)
        let engine = try TorrentEngine(settings: settings)
        let key = try SigningKeyStore.loadOrCreate(in: work.appendingPathComponent("facilitator"))
        var config = FacilitatorConfiguration()
        config.resolveTimeout = .seconds(30)
        let source = TorrentContentSource(engine: engine)
        let circuits: any CircuitProvider
        var stopRelays: () async -> Void
        if inMemoryRelays {
            let network = try LoopbackOnionNetwork(relayCount: 3)
            let service = FacilitatorService(source: source, signingKey: key, transport: network, configuration: config)
            network.attach(service)
            circuits = network
            stopRelays = { await service.shutdown(); network.shutdown() }
            say("  relays         3 onion relays wired in memory (ntor, AES-CTR layers, SENDME flow control); exit = facilitator")
        } else {
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 3)
            let bridge = FacilitatorRelayBridge()
            let service = FacilitatorService(source: source, signingKey: key, transport: bridge, configuration: config)
            bridge.attach(service)
            var servers: [OnionRelayServer] = []
            for i in 0..<3 {
                var relayConfig = OnionRelayServerConfiguration(keys: try RelayKeys.generate(now: Date()), host: "127.0.0.1", port: 0)
                relayConfig.relay.extendAllowPrivateAddresses = true
                relayConfig.relay.applicationCommands = FacilitatorRelayBridge.applicationCommands
                let server = try await OnionRelayServer.start(relayConfig, on: group.next())
                if i == 2 { bridge.attach(server) }
                servers.append(server)
                say("  relay \(i + 1)        \(RelaySpec.format(server.descriptor))\(i == 2 ? "   ← facilitator" : "")")
            }
            circuits = OnionCircuitProvider(path: servers.map(\.descriptor), eventLoopGroup: group)
            stopRelays = {
                await service.shutdown()
                bridge.finish()
                for server in servers { await server.shutdown() }
                try? await group.shutdownGracefully()
            }
        }
        let facilitatorKey = Data(key.publicKey.rawRepresentation).base64EncodedString()
        say("  facilitator    Ed25519 key \(facilitatorKey)   (\(ms(clock.now - t)))")

        // 4. Fetch by magnet link over a 3-hop circuit.
        let magnet = "magnet:?xt=urn:btih:\(torrent.infoHashHex)&dn=peersm-demo.bin&x.pe=127.0.0.1:\(seeder.port)"
        say("  magnet         \(magnet)")
        let output = work.appendingPathComponent("fetched.bin")
        let result: FetchResult
        do {
            result = try await runFetch(Requester(circuits: circuits), try HashName(magnet: magnet), to: output, quiet: false)
        } catch {
            await stopRelays()
            await engine.shutdown()
            throw error
        }
        await stopRelays()
        await engine.shutdown()

        // Optional baseline: a plain libtorrent download from the same seeder, same run.
        var baseline: (seconds: Double, firstPiece: Double)?
        if let script = directBaseline {
            let dir = work.appendingPathComponent("direct")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            p.arguments = [script, "download", torrentURL.path, dir.path, "--peer", "127.0.0.1:\(seeder.port)"]
            let pipe = Pipe()
            p.standardOutput = pipe
            try p.run()
            let out = pipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            if let json = try? JSONSerialization.jsonObject(with: out) as? [String: Any],
               let secs = json["seconds"] as? Double, let first = json["first_piece_seconds"] as? Double {
                baseline = (secs, first)
            } else {
                say("  baseline       failed: \(String(decoding: out, as: UTF8.self))")
            }
        }

        // 5. Compare.
        let want = try DemoEnvironment.sha256(file)
        let got = try DemoEnvironment.sha256(output)
        let seconds = Double(result.elapsed.components.seconds) + Double(result.elapsed.components.attoseconds) / 1e18
        say("")
        say("  file info      \(ms(result.timeToFileInfo))  (circuit built, metadata fetched from the seeder, DB_CONNECTED)")
        if let first = result.timeToFirstData { say("  first block    \(ms(first))  (first 62 KB block verified)") }
        say("  transfer       \(ProgressMeter.bytes(Double(result.bytes))) in \(ms(result.elapsed)) = \(ProgressMeter.bytes(Double(result.bytes) / max(seconds, 1e-3)))/s, \(result.queries) queries, \(result.circuitsBuilt) circuit(s)")
        say("  seeded         \(want)")
        say("  fetched        \(got)")
        if let baseline, let firstMessage = result.timeToFirstDataMessage {
            let ours = seconds
            let oursFirst = Double(firstMessage.components.seconds) + Double(firstMessage.components.attoseconds) / 1e18
            let direct = Double(result.bytes) / baseline.seconds
            say("  first DB_DATA  \(ms(firstMessage))  (from the start, circuit and both queries included)")
            say("  direct         python3-libtorrent from the same seeder: \(ProgressMeter.bytes(direct))/s, first piece after \(String(format: "%.0f", baseline.firstPiece * 1000)) ms")
            say(String(format: "  ratio          rate %.2f× direct (goal ≥ 0.8×); first data %.2f× first piece (goal ≤ 1.2×)",
                       baseline.seconds / ours, oursFirst / max(baseline.firstPiece, 1e-3)))
        }
        if want == got {
            say("  sha256 match")
        } else {
            say("  sha256 MISMATCH")
            throw ExitCode(1)
        }
        if keep { say("  kept           \(work.path)") }
    }

    private func ms(_ d: Duration) -> String {
        let c = d.components
        return String(format: "%.0f ms", Double(c.seconds) * 1000 + Double(c.attoseconds) / 1e15)
    }
}

enum DemoEnvironment {
    /// Interfaces of this process's network namespace (/proc/self/net/dev follows the namespace;
    /// /sys/class/net may show the host's).
    static func networkInterfaces() -> [String] {
        guard let text = try? String(contentsOfFile: "/proc/self/net/dev", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").dropFirst(2).compactMap { line in
            line.split(separator: ":", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces) }
        }.sorted()
    }

    static func which(_ tool: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(dir)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    static func chooseSeeder(_ choice: String?) throws -> DemoSeeder.Kind {
        switch choice {
        case "aria2"?: guard which("aria2c") != nil else { throw ValidationError("aria2c is not installed (scripts/deps)") }; return .aria2
        case "libtorrent"?: return .libtorrent
        case nil: return which("aria2c") != nil ? .aria2 : .libtorrent
        case let other?: throw ValidationError("unknown seeder \(other): aria2 or libtorrent")
        }
    }

    /// Pseudo-random bytes (SplitMix64): incompressible enough, and fast.
    static func writeRandomFile(_ url: URL, bytes: Int) throws {
        FileManager.default.createFile(atPath: url.path, contents: nil)
        let handle = try FileHandle(forWritingTo: url)
        defer { try? handle.close() }
        var state = UInt64.random(in: .min ... .max)
        let block = 1 << 20
        var remaining = bytes
        var buffer = [UInt8](repeating: 0, count: block)
        while remaining > 0 {
            buffer.withUnsafeMutableBytes { raw in
                let words = raw.bindMemory(to: UInt64.self)
                for i in 0..<words.count {
                    state &+= 0x9E37_79B9_7F4A_7C15
                    var z = state
                    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                    words[i] = z ^ (z >> 31)
                }
            }
            let n = min(block, remaining)
            try handle.write(contentsOf: buffer[0..<n])
            remaining -= n
        }
    }

    static func sha256(_ url: URL) throws -> String {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}

/// A single-file v1 .torrent (BEP 3), no announce: peers come from the magnet's x.pe.
struct TorrentMaker {
    let bytes: [UInt8]
    let infoHashHex: String
    let pieceCount: Int

    static func make(file: URL, pieceLength: Int) throws -> TorrentMaker {
        let handle = try FileHandle(forReadingFrom: file)
        defer { try? handle.close() }
        var pieces: [UInt8] = []
        var length = 0
        var count = 0
        while let piece = try handle.read(upToCount: pieceLength), !piece.isEmpty {
            pieces += Array(Insecure.SHA1.hash(data: piece))
            length += piece.count
            count += 1
        }
        func string(_ b: [UInt8]) -> [UInt8] { Array("\(b.count):".utf8) + b }
        func string(_ s: String) -> [UInt8] { string(Array(s.utf8)) }
        func int(_ n: Int) -> [UInt8] { Array("i\(n)e".utf8) }
        // Keys in sorted order, as bencode requires.
        let info: [UInt8] = Array("d".utf8) + string("length") + int(length) + string("name") + string(file.lastPathComponent)
            + string("piece length") + int(pieceLength) + string("pieces") + string(pieces) + Array("e".utf8)
        let torrent = Array("d".utf8) + string("created by") + string("peersm demo") + string("info") + info + Array("e".utf8)
        let hash = Insecure.SHA1.hash(data: info).map { String(format: "%02x", $0) }.joined()
        return TorrentMaker(bytes: torrent, infoHashHex: hash, pieceCount: count)
    }
}

/// The third-party seeder, a child process bound to 127.0.0.1 with DHT, LSD, PEX and port mapping off.
final class DemoSeeder: @unchecked Sendable {
    enum Kind { case aria2, libtorrent }
    let name: String
    let port: UInt16
    private let process: Process

    private init(name: String, port: UInt16, process: Process) {
        self.name = name
        self.port = port
        self.process = process
    }

    static func start(_ kind: Kind, torrent: URL, content: URL, directory: URL) async throws -> DemoSeeder {
        let port = try freeLoopbackPort()
        let log = directory.appendingPathComponent("seeder.log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let process = Process()
        let name: String
        switch kind {
        case .aria2:
            name = "aria2c"
            process.executableURL = URL(fileURLWithPath: DemoEnvironment.which("aria2c") ?? "/usr/bin/aria2c")
            process.arguments = [
                "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
                "--listen-port=\(port)", "--interface=127.0.0.1", "--seed-ratio=0.0", "--bt-seed-unverified=true",
                "--check-integrity=false", "--file-allocation=none", "--no-conf=true", "--console-log-level=notice",
                "--summary-interval=0", "--bt-detach-seed-only=true", "-d", content.path, torrent.path,
            ]
        case .libtorrent:
            name = "python3-libtorrent"
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = ["-c", libtorrentSeeder, torrent.path, content.path, String(port)]
        }
        process.currentDirectoryURL = directory
        let output = try FileHandle(forWritingTo: log)
        process.standardOutput = output
        process.standardError = output
        do { try process.run() } catch {
            throw ValidationError("cannot start \(name): \(error)")
        }
        let seeder = DemoSeeder(name: name, port: port, process: process)
        let deadline = ContinuousClock.now + .seconds(30)
        while !canConnect(port: port) {
            guard process.isRunning, ContinuousClock.now < deadline else {
                seeder.stop()
                let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
                throw ValidationError("\(name) did not start listening on 127.0.0.1:\(port):\n\(text.suffix(2000))")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        return seeder
    }

    /// SIGTERM, then SIGKILL after a grace period (aria2c can linger on SIGTERM).
    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        for _ in 0..<30 where process.isRunning { usleep(100_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    private static let libtorrentSeeder = """
        import sys, time, libtorrent as lt
        torrent, save, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
        s = lt.session({"listen_interfaces": "127.0.0.1:%d" % port, "enable_dht": False, "enable_lsd": False,
                        "enable_upnp": False, "enable_natpmp": False, "dht_bootstrap_nodes": "",
                        "enable_outgoing_utp": False, "enable_incoming_utp": False})
        h = s.add_torrent({"ti": lt.torrent_info(torrent), "save_path": save, "flags": lt.torrent_flags.seed_mode})
        while True: time.sleep(1)
        """

    private static func freeLoopbackPort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ValidationError("socket() failed") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw ValidationError("no free port on 127.0.0.1") }
        return UInt16(bigEndian: addr.sin_port)
    }

    private static func canConnect(port: UInt16) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        addr.sin_port = port.bigEndian
        return withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}

extension LoopbackOnionNetwork: FacilitatorTransport {}
extension FacilitatorService: LoopbackExitApplication {}
