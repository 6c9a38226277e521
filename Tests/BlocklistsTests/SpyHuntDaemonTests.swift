import Foundation
import NetBasics
import TestSupport
import Testing
@testable import Blocklists

/// The real `facilitatord run` binary with spy hunting on, fetched from by the real `peersm fetch`
/// over a one-hop circuit (the facilitator is the exit), inside the private network namespace.
@Suite(.serialized) struct SpyHuntDaemonTests {
    /// A running facilitatord and what a requester needs to reach it.
    struct Daemon {
        let process: ChildProcess
        let relaySpec: String
        let database: String
        /// What the daemon may write: its data directory and the state directory of its database.
        let directories: [URL]

        static func start(_ dir: TemporaryDirectory, _ extraConfig: String, magnetPeers: String = "any",
                          resolveTimeout: Int = 60) async throws -> Daemon {
            let exe = try #require(CLI.binary, "facilitatord is not built beside the tests (swift build)")
            let db = dir.url.appendingPathComponent("state/facilitator.sqlite").path
            let config = try writeFile(dir, "facilitatord.toml", """
                data_directory = "\(dir.url.appendingPathComponent("data").path)"
                log_level = "debug"
                [relay]
                host = "127.0.0.1"
                port = \(freePort())
                [facilitator]
                resolve_timeout_seconds = \(resolveTimeout)
                stall_timeout_seconds = 30
                [torrent]
                listen = "127.0.0.1:0"
                utp = false
                dht = false
                magnet_peers = "\(magnetPeers)"
                \(extraConfig)
                """.replacingOccurrences(of: "[blocklists]", with: "[blocklists]\ndatabase = \"\(db)\"\npoll_seconds = 1"))
            let p = try ChildProcess(exe, ["run", "--config", config], directory: dir.url.appendingPathComponent("run"),
                                     environment: ["PEERSM_FACILITATOR_DB": ""], name: "facilitatord")
            try await p.waitForLog(containing: "facilitator key", timeout: .seconds(60))
            let line = try #require(p.log.split(separator: "\n").first { $0.hasPrefix("relay ") })
            return Daemon(process: p, relaySpec: String(line.dropFirst("relay ".count)), database: db,
                          directories: [dir.url.appendingPathComponent("data"), dir.url.appendingPathComponent("state")])
        }

        /// `peersm fetch NAME --via <this relay>`: exit status and stderr.
        func fetch(_ name: String, to output: URL, timeout: Duration = .seconds(120)) async throws -> (status: Int32, log: String) {
            let p = try startFetch(name, to: output)
            let deadline = ContinuousClock.now + timeout
            while p.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
            if p.isRunning {
                p.stop()
                Issue.record("peersm fetch still running after \(timeout)\n\(p.log)\n--- daemon ---\n\(process.log)")
                return (-1, p.log)
            }
            return (p.exitStatus, p.log)
        }

        func startFetch(_ name: String, to output: URL) throws -> ChildProcess {
            let peersm = try #require(Self.peersmBinary, "peersm is not built beside the tests (swift build)")
            return try ChildProcess(peersm, ["fetch", name, "--via", relaySpec, "-o", output.path, "--quiet"],
                                    directory: output.deletingLastPathComponent(), name: "peersm-\(UUID().uuidString.prefix(6))")
        }

        static var peersmBinary: String? {
            guard let facilitatord = CLI.binary else { return nil }
            let candidate = URL(fileURLWithPath: facilitatord).deletingLastPathComponent().appendingPathComponent("peersm").path
            return FileManager.default.isExecutableFile(atPath: candidate) ? candidate : nil
        }

        /// Files of the daemon's that hold any of `content` (relayed content must stay in memory).
        func filesHolding(_ content: URL) throws -> [String] {
            filesHoldingContent(try Data(contentsOf: content), under: directories)
        }

        func lines(containing needle: String) -> [Substring] {
            process.log.split(separator: "\n").filter { $0.contains(needle) }
        }
    }

    static func metadata(_ key: String, in line: Substring) -> Int? {
        guard let r = line.range(of: "\(key)=(\\d+)", options: .regularExpression) else { return nil }
        return Int(line[r].dropFirst(key.count + 1))
    }

    static func sha256(_ url: URL) throws -> String { String(try runTool("sha256sum", [url.path]).prefix(64)) }

    /// An honest libtorrent DHT node and two seeders of `fixture` announced to it, each on a loopback
    /// address of its own, checked over plain KRPC. Two, because the hunt drops the head of each value
    /// list (spies put themselves first). The seeders print each BitTorrent connection they accept
    /// ("INCOMING …"). The caller stops the processes.
    static func honestDHTWithTwoSeeders(_ fixture: TorrentFixture, in dir: URL) async throws
        -> (node: String, seederHosts: [String], seeders: [ChildProcess], processes: [ChildProcess]) {
        let honestHost = Loopback.address(), seederHosts = Loopback.addresses(2)
        let honest = try await EngineRig.dhtNode(host: honestHost, directory: dir, name: "honest-dht")
        let honestNode = "\(honestHost):\(honest.port)"
        var processes = [honest.process]
        var seeders = Set<String>()
        for (host, name) in zip(seederHosts, ["seed-a", "seed-b"]) {
            let seed = try await EngineRig.dhtNode(host: host, knowing: [honestNode], seeding: fixture, directory: dir, name: name)
            processes.append(seed.process)
            seeders.insert("\(host):\(seed.port)")
        }
        let realHash = Hex.decode(fixture.infoHash)!
        let honestEP = IPEndpoint(address: IPAddress(honestHost)!, port: honest.port)
        var seen: [String] = []
        let announced = try await eventually(.seconds(60)) {
            seen = try await KRPCQuerier(start: []).getPeers(infohash: realHash, from: honestEP)?.values.map(\.description) ?? []
            return seeders.isSubset(of: seen)
        }
        if !announced { processes.forEach { $0.stop() } }
        try #require(announced, "the honest DHT node never learned both seeders; it returned \(seen)")
        return (honestNode, seederHosts, Array(processes.dropFirst()), processes)
    }

    /// BitTorrent connections `seeder` accepted from outside its DHT (the seeders find each other
    /// there and may connect; `own` are their addresses).
    static func dials(to seeder: ChildProcess, notFrom own: [String]) -> [Substring] {
        seeder.log.split(separator: "\n").filter { line in
            line.hasPrefix("INCOMING") && !own.contains { line.contains("from \($0):") }
        }
    }

    /// Topology (loopback addresses of the test's own, every bootstrap list empty but the hunt's):
    ///   spy        scripts/fake-spy-dht.py, values for ANY info-hash (a hunt bootstrap node)
    ///   honest     python3-libtorrent DHT node (the other hunt bootstrap node)
    ///   2 seeders  libtorrent DHT nodes seeding the file, announced to the honest node
    /// `peersm fetch` names the bare info-hash: no x.pe, no tracker, and the fetching engine's DHT
    /// is off, so the only peers the fetch can have are those of the daemon's guarded hunt.
    @Test(.privateNetwork)
    func daemonHuntsTheSpyBeforeTheFetchAndFetchesFromHuntedPeers() async throws {
        let dir = try TemporaryDirectory("spy-daemon")
        let fixture = try TorrentFixture(in: dir.url, name: "hunted.bin", size: 700_000, pieceKiB: 32, seed: 4242)
        let dht = try await Self.honestDHTWithTwoSeeders(fixture, in: dir.url)
        defer { dht.processes.forEach { $0.stop() } }
        let honestNode = dht.node
        let spyHost = Loopback.address()
        let spy = try await EngineRig.spyNode(host: spyHost, values: ["127.0.0.66:6881", "127.0.0.67:6881"], directory: dir.url)
        defer { spy.process.stop() }

        let daemon = try await Daemon.start(dir, """
            [blocklists]
            hunt = true
            hunt_bootstrap_nodes = ["\(spyHost):\(spy.port)", "\(honestNode)"]
            hunt_timeout_seconds = 30
            """)
        defer { daemon.process.stop() }
        #expect(daemon.process.log.contains("spy hunting on"))

        let out = dir.url.appendingPathComponent("fetched.bin")
        let fetch = try await daemon.fetch(fixture.infoHash, to: out)
        #expect(fetch.status == 0, "peersm fetch failed:\n\(fetch.log)\n--- daemon ---\n\(daemon.process.log)")
        #expect(try Self.sha256(out) == Self.sha256(fixture.contentDirectory.appendingPathComponent("hunted.bin")))
        // The seeders' own record of the dial (what the next test relies on to show there was none).
        #expect(await eventually(.seconds(5)) {
            dht.seeders.contains { !Self.dials(to: $0, notFrom: dht.seederHosts).isEmpty }
        }, "no seeder reported the daemon's connection: \(dht.seeders.map(\.log))")
        let onDisk = try daemon.filesHolding(fixture.contentDirectory.appendingPathComponent("hunted.bin"))
        #expect(onDisk.isEmpty, "relayed content in the daemon's directories: \(onDisk)")

        // One hunt served the info query and every data query after it.
        let hunts = daemon.lines(containing: "spy hunt found peers")
        #expect(hunts.count == 1, "\(daemon.process.log)")
        let hunt = try #require(hunts.first)
        #expect((Self.metadata("peers", in: hunt) ?? 0) >= 1 && (Self.metadata("spies", in: hunt) ?? 0) >= 1, "\(hunt)")
        if let ms = Self.metadata("ms", in: hunt) { print("spy hunt on the loopback DHT took \(ms) ms") }

        // The spy was asked only the fake hash (sharing the real one's first 32 bits), never the real one.
        let spyLog = spy.process.log
        #expect(spyLog.contains("get_peers \(fixture.infoHash.prefix(8))"), "the hunt never reached the spy:\n\(spyLog)")
        #expect(!spyLog.contains(fixture.infoHash), "the spy learned the real info-hash:\n\(spyLog)")

        // The spy and the peers it named are in the database, with the reason, for the CLI to show.
        let check = try CLI.run(["blocklist", "check", spyHost, "--db", daemon.database])
        #expect(check.status == 0 && check.out.contains("values-for-fake-infohash"), "\(check.out)\(check.err)")
        let named = try CLI.run(["blocklist", "check", "127.0.0.66", "--db", daemon.database])
        #expect(named.out.contains("listed-for-fake-infohash"), "\(named.out)\(named.err)")
        for host in dht.seederHosts {
            let seeder = try CLI.run(["blocklist", "check", host, "--db", daemon.database])
            #expect(!seeder.out.contains("fake-infohash"), "an honest seeder was convicted: \(seeder.out)")
        }
        daemon.process.stop(grace: .seconds(10))
    }

    /// DHT values come from nodes anyone runs: under the default `magnet_peers = "public"` the
    /// hunt's loopback peers are not dialled (a poisoned DHT answer cannot point the exit at its
    /// LAN), so the fetch ends with DB_END UNAVAILABLE after the resolve timeout.
    @Test(.privateNetwork)
    func daemonDoesNotDialHuntedPeersOnPrivateAddressesByDefault() async throws {
        let dir = try TemporaryDirectory("spy-daemon-public")
        let fixture = try TorrentFixture(in: dir.url, name: "private.bin", size: 100_000, pieceKiB: 16, seed: 4343)
        let dht = try await Self.honestDHTWithTwoSeeders(fixture, in: dir.url)
        defer { dht.processes.forEach { $0.stop() } }
        let honestNode = dht.node

        let daemon = try await Daemon.start(dir, """
            [blocklists]
            hunt = true
            hunt_bootstrap_nodes = ["\(honestNode)"]
            hunt_timeout_seconds = 10
            """, magnetPeers: "public", resolveTimeout: 15)
        defer { daemon.process.stop() }
        let out = dir.url.appendingPathComponent("fetched.bin")
        let fetch = try await daemon.fetch(fixture.infoHash, to: out)
        // The hunt did find the seeders, and the fetch still never reached them: neither accepted a
        // connection (they print each one; they pop alerts every second, hence the wait).
        let hunt = try #require(daemon.lines(containing: "spy hunt found peers").first, "\(daemon.process.log)")
        #expect((Self.metadata("peers", in: hunt) ?? 0) >= 1, "\(hunt)")
        #expect(fetch.status != 0 && fetch.log.contains("UNAVAILABLE"), "\(fetch.log)\n--- daemon ---\n\(daemon.process.log)")
        try await Task.sleep(for: .seconds(2))
        for seeder in dht.seeders {
            let dials = Self.dials(to: seeder, notFrom: dht.seederHosts)
            #expect(dials.isEmpty, "a hunted seeder on a private address was dialled: \(dials)")
        }
        daemon.process.stop(grace: .seconds(10))
    }

    /// The hunt's main path, as on a large DHT: a node whose ID shares 22 leading bits with the
    /// info-hash (hence with the fake one) passes the direct probe and is the only node asked for
    /// the real hash. Nodes (KRPC, scripts/fake-spy-dht.py) on loopback:
    ///   spy    values for any hash                                          (bootstrap)
    ///   far    honest, far from the hash, knows the seeder, names close as closer (bootstrap)
    ///   close  honest, ID 22 bits from the hash, knows the seeder
    /// each on a loopback address of the test's own.
    @Test(.privateNetwork)
    func daemonAsksOnlyProbedCloseNodesForTheRealHash() async throws {
        let dir = try TemporaryDirectory("spy-daemon-close")
        let fixture = try TorrentFixture(in: dir.url, name: "close.bin", size: 400_000, pieceKiB: 32, seed: 1313)
        let realHash = Hex.decode(fixture.infoHash)!
        let (seederHost, spyHost, farHost, closeHost) = (Loopback.address(), Loopback.address(), Loopback.address(), Loopback.address())
        let seeder = try await Seeder.start(.libtorrent, seeding: fixture, host: seederHost, directory: dir.url)
        defer { seeder.stop() }
        let script = TorrentFixture.scriptsDirectory.appendingPathComponent("fake-spy-dht.py").path
        func node(_ host: String, _ args: [String]) async throws -> (ChildProcess, UInt16) {
            let port = freePort(host: host)
            let p = try ChildProcess(TorrentFixture.python, [script, "--host", host, "--port", String(port), "--max-seconds", "300"] + args,
                                     directory: dir.url.appendingPathComponent(host), name: "dht-\(host)")
            try await p.waitForLog(containing: "listening on", timeout: .seconds(20))
            return (p, port)
        }
        // Value lists lose their head ("spies position themselves first"): 127.0.0.99 goes, the seeder stays.
        let knows = "\(fixture.infoHash)=127.0.0.99:6881,\(seederHost):\(seeder.port)"
        let closeID = nodeID(near: realHash, sharing: 22)
        let (close, closePort) = try await node(closeHost, ["--mode", "honest", "--id", Hex.encode(closeID), "--has", knows])
        defer { close.stop() }
        let farID = realHash.map { ~$0 }
        let (far, farPort) = try await node(farHost, ["--mode", "honest", "--id", Hex.encode(farID), "--has", knows,
                                                           "--nodes", "\(Hex.encode(closeID))@\(closeHost):\(closePort)"])
        defer { far.stop() }
        let (spy, spyPort) = try await node(spyHost, ["--values", "127.0.0.66:6881"])
        defer { spy.stop() }

        let daemon = try await Daemon.start(dir, """
            [blocklists]
            hunt = true
            hunt_bootstrap_nodes = ["\(spyHost):\(spyPort)", "\(farHost):\(farPort)"]
            """)
        defer { daemon.process.stop() }
        let out = dir.url.appendingPathComponent("fetched.bin")
        let fetch = try await daemon.fetch(fixture.infoHash, to: out)
        #expect(fetch.status == 0, "peersm fetch failed:\n\(fetch.log)\n--- daemon ---\n\(daemon.process.log)")
        #expect(try Self.sha256(out) == Self.sha256(fixture.contentDirectory.appendingPathComponent("close.bin")))

        let hunt = try #require(daemon.lines(containing: "spy hunt found peers").first, "\(daemon.process.log)")
        #expect(Self.metadata("trusted-nodes", in: hunt) == 1, "\(hunt)")
        if let ms = Self.metadata("ms", in: hunt) { print("spy hunt (probe path) on the loopback DHT took \(ms) ms") }
        // Only the probed close node heard the real hash; the far node and the spy saw the fake one.
        #expect(close.log.contains("get_peers \(fixture.infoHash) -> 2 value(s)"), "\(close.log)")
        #expect(Self.metadata("peers", in: hunt) == 1, "\(hunt)")
        #expect(!far.log.contains(fixture.infoHash), "\(far.log)")
        #expect(!spy.log.contains(fixture.infoHash), "\(spy.log)")
        #expect(spy.log.contains("get_peers \(fixture.infoHash.prefix(8))"), "\(spy.log)")
        let check = try CLI.run(["blocklist", "check", spyHost, "--db", daemon.database])
        #expect(check.out.contains("values-for-fake-infohash"), "\(check.out)\(check.err)")
        daemon.process.stop(grace: .seconds(10))
    }

    /// A hunt whose only bootstrap node never answers times out; the query keeps the magnet's x.pe
    /// peer and the fetch completes. The data queries that follow do not pay the timeout again.
    @Test(.privateNetwork)
    func daemonFetchProceedsWhenTheSpyHuntTimesOut() async throws {
        let dir = try TemporaryDirectory("spy-daemon-timeout")
        let fixture = try TorrentFixture(in: dir.url, name: "fallback.bin", size: 300_000, pieceKiB: 32, seed: 77)
        let (seederHost, silentHost) = (Loopback.address(), Loopback.address())
        let seeder = try await Seeder.start(.libtorrent, seeding: fixture, host: seederHost, directory: dir.url)
        defer { seeder.stop() }
        // A UDP socket that takes every datagram and answers none.
        let silentPort = freePort(host: silentHost)
        let silent = try ChildProcess(python3, ["-c", """
            import signal, socket, sys, time
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[2], int(sys.argv[1])))
            print("listening", flush=True)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                s.settimeout(1)
                try: s.recvfrom(65536)
                except socket.timeout: pass
            """, String(silentPort), silentHost], directory: dir.url.appendingPathComponent("silent"), name: "silent-dht")
        defer { silent.stop() }
        try await silent.waitForLog(containing: "listening", timeout: .seconds(20))

        let daemon = try await Daemon.start(dir, """
            [blocklists]
            hunt = true
            hunt_bootstrap_nodes = ["\(silentHost):\(silentPort)"]
            hunt_timeout_seconds = 1
            """)
        defer { daemon.process.stop() }
        let magnet = "magnet:?xt=urn:btih:\(fixture.infoHash)&dn=fallback.bin&x.pe=\(seederHost):\(seeder.port)"
        let out = dir.url.appendingPathComponent("fetched.bin")
        let started = ContinuousClock.now
        let fetch = try await daemon.fetch(magnet, to: out)
        let took = ContinuousClock.now - started
        #expect(fetch.status == 0, "peersm fetch failed:\n\(fetch.log)\n--- daemon ---\n\(daemon.process.log)")
        #expect(try Self.sha256(out) == Self.sha256(fixture.contentDirectory.appendingPathComponent("fallback.bin")))
        let onDisk = try daemon.filesHolding(fixture.contentDirectory.appendingPathComponent("fallback.bin"))
        #expect(onDisk.isEmpty, "relayed content in the daemon's directories: \(onDisk)")
        #expect(daemon.lines(containing: "spy hunt timed out").count == 1, "\(daemon.process.log)")
        #expect(daemon.lines(containing: "spy hunt found peers").isEmpty)
        // The timeout bounds the wait: 1 s of hunting, not the 2 s a silent node's query takes per round.
        #expect(took < .seconds(30), "fetch took \(took)")
        daemon.process.stop(grace: .seconds(10))
    }

    /// A peer serving pieces that fail their hash check is banned by libtorrent, and the daemon's
    /// wiring (engine peer events → BlocklistService) records it as a spy with the reason. A second
    /// fetch naming the liar and an honest seeder then completes byte-exact: the liar is refused.
    @Test(.privateNetwork)
    func daemonRecordsAPeerSendingBadPiecesAsSpy() async throws {
        let dir = try TemporaryDirectory("spy-daemon-badpiece")
        let fixture = try TorrentFixture(in: dir.url, name: "tainted.bin", size: 1_000_000, pieceKiB: 32, seed: 99)
        // The liar gets its own copy of the content (it rewrites its files) and its own address.
        let (liarHost, honestHost) = (Loopback.address(), Loopback.address())
        let liarContent = dir.url.appendingPathComponent("liar-content")
        try FileManager.default.copyItem(at: fixture.contentDirectory, to: liarContent)
        let liarPort = freePort(host: liarHost)
        let liar = try ChildProcess(TorrentFixture.python, [
            TorrentFixture.peerScript, "seed", fixture.torrentURL.path, liarContent.path,
            "--host", liarHost, "--port", String(liarPort), "--corrupt",
        ], directory: dir.url.appendingPathComponent("liar"), name: "corrupt-seeder")
        defer { liar.stop() }
        try await liar.waitForLog(containing: "LISTENING", timeout: .seconds(60))
        let honest = try await Seeder.start(.libtorrent, seeding: fixture, host: honestHost, directory: dir.url)
        defer { honest.stop() }

        let daemon = try await Daemon.start(dir, "[blocklists]\nhunt = false\n")
        defer { daemon.process.stop() }
        let base = "magnet:?xt=urn:btih:\(fixture.infoHash)&dn=tainted.bin"

        // The liar alone: its metadata is sound, every piece it sends fails the hash check.
        let doomed = try daemon.startFetch(base + "&x.pe=\(liarHost):\(liarPort)", to: dir.url.appendingPathComponent("doomed.bin"))
        defer { doomed.stop() }
        try await daemon.process.waitForLog(containing: "reason=hash-failures", timeout: .seconds(60))
        doomed.stop()
        let check = try CLI.run(["blocklist", "check", liarHost, "--db", daemon.database])
        #expect(check.status == 0 && check.out.contains("hash-failures"), "\(check.out)\(check.err)")

        // The liar and an honest seeder: the ip_filter refuses the liar, the honest one serves.
        let out = dir.url.appendingPathComponent("fetched.bin")
        let fetch = try await daemon.fetch(base + "&x.pe=\(liarHost):\(liarPort)&x.pe=\(honestHost):\(honest.port)", to: out)
        #expect(fetch.status == 0, "peersm fetch failed:\n\(fetch.log)\n--- daemon ---\n\(daemon.process.log)")
        #expect(try Self.sha256(out) == Self.sha256(fixture.contentDirectory.appendingPathComponent("tainted.bin")))
        let good = try CLI.run(["blocklist", "check", honestHost, "--db", daemon.database])
        #expect(good.status == 1 && good.out.contains("not blocked"), "the honest seeder was convicted: \(good.out)")
        daemon.process.stop(grace: .seconds(10))
    }
}

/// `[blocklists] hunt…` keys as `facilitatord run --print-config` reads them.
@Suite struct SpyHuntConfigTests {
    func run(_ dir: TemporaryDirectory, _ name: String, _ toml: String) throws -> CLI.Result {
        try CLI.run(["run", "--config", try writeFile(dir, name, toml), "--print-config"])
    }

    @Test func spyHuntSettingsAreReadAndValidated() throws {
        let dir = try TemporaryDirectory("spy-hunt-config")
        let defaults = try CLI.run(["run", "--print-config"])
        #expect(defaults.status == 0 && defaults.out.contains("hunt = false") && defaults.out.contains("hunt_timeout_seconds = 20")
                && defaults.out.contains("hunt_reuse_seconds = 120") && defaults.out.contains("hunt_listen = \"127.0.0.1:0\""), "\(defaults.out)")

        let ok = try run(dir, "ok.toml", """
            [blocklists]
            hunt = true
            hunt_bootstrap_nodes = ["router.example:6881", "127.0.0.5:7000"]
            hunt_timeout_seconds = 10
            hunt_reuse_seconds = 0
            """)
        #expect(ok.status == 0 && ok.out.contains("hunt = true")
                && ok.out.contains("hunt_bootstrap_nodes = [\"router.example:6881\", \"127.0.0.5:7000\"]"), "\(ok.err)")

        // libtorrent's own DHT beside the hunt would send the real info-hash to spies: refused.
        let both = try run(dir, "both.toml", """
            [torrent]
            dht = true
            [blocklists]
            hunt = true
            hunt_bootstrap_nodes = ["127.0.0.5:7000"]
            """)
        #expect(both.status != 0 && both.err.contains("torrent.dht = true cannot be combined with blocklists.hunt = true"), "\(both.err)")
        let noNodes = try run(dir, "nonodes.toml", "[blocklists]\nhunt = true\n")
        #expect(noNodes.status != 0 && noNodes.err.contains("blocklists.hunt_bootstrap_nodes must be non-empty"), "\(noNodes.err)")
        let badNode = try run(dir, "badnode.toml", "[blocklists]\nhunt = true\nhunt_bootstrap_nodes = [\"router.example\"]\n")
        #expect(badNode.status != 0 && badNode.err.contains("found \"router.example\""), "\(badNode.err)")
        let slow = try run(dir, "slow.toml", """
            [facilitator]
            resolve_timeout_seconds = 30
            [blocklists]
            hunt = true
            hunt_bootstrap_nodes = ["127.0.0.5:7000"]
            hunt_timeout_seconds = 30
            """)
        #expect(slow.status != 0 && slow.err.contains("below facilitator.resolve_timeout_seconds (30)"), "\(slow.err)")
    }
}

/// The engine's peer events as the daemon's wiring turns them into verdicts.
@Suite struct SpyMisbehaviourTests {
    @Test func aBanIsAConvictionAndIsRecordedOnce() async throws {
        let service = try BlocklistService(store: try BlocklistStore())
        let liar = IPEndpoint(address: IPAddress("127.0.0.7")!, port: 6881)
        let hash = [UInt8](repeating: 7, count: 20)
        let d = try await service.peerEvent(.bannedForBadData, from: liar, infohash: hash)
        #expect(d?.reason == .hashFailures && d?.detail == "banned by the engine for data failing the hash check")
        #expect(try await service.isBlocked(liar.address))
        // The same offence reported again (one ban per bad piece in flight) is not a second verdict.
        #expect(try await service.peerEvent(.bannedForBadData, from: liar, infohash: hash) == nil)
        #expect(try service.store.spies(activeAt: Date(), address: liar.address).count == 1)
        // Plain hash failures (shared blame) still need the configured count.
        let other = IPEndpoint(address: IPAddress("127.0.0.8")!, port: 6881)
        #expect(try await service.peerEvent(.hashFailure, from: other, infohash: hash) == nil)
        #expect(try await service.peerEvent(.hashFailure, from: other, infohash: hash)?.reason == .hashFailures)
    }

    @Test func infohashesFromEngineEventsAreParsed() {
        #expect(BlocklistService.infohashBytes(String(repeating: "0a", count: 20)) == [UInt8](repeating: 10, count: 20))
        #expect(BlocklistService.infohashBytes("0a") == nil)
        #expect(BlocklistService.infohashBytes(String(repeating: "zz", count: 20)) == nil)
    }
}
