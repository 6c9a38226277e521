import ArgumentParser
import Crypto
import FacilitatorNode
import FetchConsole
import Foundation
import Logging
import NetBasics
import NIOPosix
import OnionRouting
import OnionTransport
import PeersmCircuits
import TorCrypto
import PeersmProtocol
import Requester
import Testbed

/// `peersm-demo`: the whole system on this machine. Its own executable because it runs a
/// facilitator (libtorrent) in-process; the requester `peersm` links no libtorrent.
@main
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peersm-demo",
        abstract: "The whole system on this machine, loopback only: seeder → facilitator → 3-hop circuit → requester.",
        discussion: """
            Makes a random test file and its torrent, starts a third-party BitTorrent seeder on
            127.0.0.1 (aria2c, or python3-libtorrent if aria2c is missing), starts three of our onion
            relays in this process — the last one is a facilitator node as `facilitatord run` builds
            it, with its torrent engine in free-rider mode and its blocklists — then fetches the file
            by magnet link over a 3-hop circuit, verifying every block, and compares SHA-256 digests.

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
        if !PrivateNetwork.isPrivate && !outsidePrivateNamespace {
            throw ValidationError("""
                this is not a private network namespace (only lo may be up; interfaces: \(PrivateNetwork.interfaces.map(\.description).joined(separator: ", "))).
                Run scripts/demo, which runs `peersm-demo` under unshare -n with only lo up, or pass
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

        say("peersm demo — everything on 127.0.0.1 (\(PrivateNetwork.isPrivate ? "private network namespace" : "NOT a private namespace"))")
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
        let seeder = try await Seeder.start(kind, torrent: torrentURL, content: content, directory: work)
        defer { seeder.stop() }
        say("  seeder         \(kind == .aria2 ? "aria2c" : "python3-libtorrent") on 127.0.0.1:\(seeder.port)   (\(ms(clock.now - t)))")

        // 3. Three relays in this process; the last is the facilitator node with its torrent engine.
        t = clock.now
        var settings = FacilitatorNodeSettings()
        settings.dataDirectory = work.appendingPathComponent("facilitator").path
        settings.blocklistDatabase = work.appendingPathComponent("blocklists.sqlite").path
        settings.metricsListen = nil
        settings.relayPort = 0
        settings.extendToPrivateAddresses = true
        settings.facilitator.resolveTimeout = .seconds(30)
        settings.torrent.enableUTP = false  // uTP's congestion control throttles loopback
        settings.torrent.dhtAllowLocalNodes = true
        settings.torrent.magnetPeers = .any  // the demo's magnet names its loopback seeder as x.pe
        settings.torrent.metadataTimeout = .seconds(30)
        let logger = Logger(label: "peersm.demo")
        let circuits: any CircuitProvider
        let node: FacilitatorNode
        let stopRelays: () async -> Void
        if inMemoryRelays {
            let network = try LoopbackOnionNetwork(relayCount: 3)
            node = try await FacilitatorNode.start(settings, front: .inMemory(network), logger: logger)
            circuits = network
            stopRelays = { await node.shutdown(); network.shutdown() }
            say("  relays         3 onion relays wired in memory (ntor, AES-CTR layers, SENDME flow control); exit = facilitator")
        } else {
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 3)
            var servers: [OnionRelayServer] = []
            for i in 0..<2 {
                var relayConfig = OnionRelayServerConfiguration(keys: try RelayKeys.generate(now: Date()), host: "127.0.0.1", port: 0)
                relayConfig.relay.extendAllowPrivateAddresses = true
                servers.append(try await OnionRelayServer.start(relayConfig, on: group.next()))
                say("  relay \(i + 1)        \(RelaySpec.format(servers[i].descriptor))")
            }
            node = try await FacilitatorNode.start(settings, group: group, logger: logger)
            guard let exit = node.relay else { throw ValidationError("the facilitator node has no relay") }
            say("  relay 3        \(RelaySpec.format(exit.descriptor))   ← facilitator")
            circuits = OnionCircuitProvider(path: servers.map(\.descriptor) + [exit.descriptor], eventLoopGroup: group)
            stopRelays = { [servers] in
                await node.shutdown()
                for server in servers { await server.shutdown() }
                try? await group.shutdownGracefully()
            }
        }
        let facilitatorKey = Data(node.signingKey.publicKey.rawRepresentation).base64EncodedString()
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
            throw error
        }
        await stopRelays()

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
    static func chooseSeeder(_ choice: String?) throws -> Seeder.Kind {
        let aria2 = ChildProcess.which("aria2c") != nil
        switch choice {
        case "aria2"?: guard aria2 else { throw ValidationError("aria2c is not installed (scripts/deps)") }; return .aria2
        case "libtorrent"?: return .libtorrent
        case nil: return aria2 ? .aria2 : .libtorrent
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
        return Hex.encode(hasher.finalize())
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
        let hash = Hex.encode(Insecure.SHA1.hash(data: info))
        return TorrentMaker(bytes: torrent, infoHashHex: hash, pieceCount: count)
    }
}
