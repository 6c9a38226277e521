import ArgumentParser
import Blocklists
import Facilitator
import Foundation
import Logging
import Metrics
import NIOPosix
import Prometheus
import Requester
import ServiceLifecycle
import OnionTransport
import TOMLKit
import TorCrypto
import TorrentEngine

/// `facilitatord run`: an onion relay (TLS ORPort) whose exit hop is the Peersm facilitator, with its
/// torrent engine. Every setting has a default; the defaults bind loopback only, and listening on a
/// public address (relay or BitTorrent) must be asked for explicitly in the config file.
public struct RunCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the relay and facilitator until SIGINT/SIGTERM.",
        discussion: """
            Reads a TOML file (see etc/facilitatord.toml; every key is optional). At start it prints \
            the relay's spec line, host:port:rsa_fp_hex:ed25519_b64:ntor_b64, to give to \
            `peersm fetch --via …` as the circuit's last hop. The engine enforces the blocklist \
            database of `facilitatord blocklist …` ([blocklists] database, else the CLI's default); \
            imports made while the daemon runs apply within [blocklists] poll_seconds.

            Spy hunting ([blocklists] hunt = true, off by default because it talks to the DHT): \
            before each query a second, torrent-less engine walks the DHT for a fake info-hash \
            sharing the real one's first 32 bits, convicts nodes that answer values for it, sybil \
            IDs and duplicate IPs, records them in the database (so the fetch's ip_filter refuses \
            them), then asks only the nodes that passed for the real info-hash and gives the \
            fetch the peers found. It needs hunt_bootstrap_nodes and torrent.dht = false \
            (libtorrent's own DHT is not filtered and would send the real info-hash to spies). \
            A hunt is bounded by hunt_timeout_seconds; a failed one leaves the query its other \
            peers. Its result serves further queries of the torrent for hunt_reuse_seconds. \
            Peers the engine bans for bad pieces, or whose requests keep timing out, are \
            recorded as spies too (`facilitatord blocklist check IP` says why).
            """)

    @Option(name: .long, help: "TOML config file (default: none, built-in defaults).")
    var config: String?

    @Flag(help: "Print the effective configuration and exit.")
    var printConfig = false

    public init() {}

    public func run() async throws {
        let settings: DaemonConfig
        do {
            settings = try DaemonConfig.load(path: config)
        } catch {
            throw ValidationError("\(error)")
        }
        if printConfig {
            print(settings.summary)
            return
        }
        // log_level applies to every logger of the process (the engines', blocklists', relay's and
        // those the libraries make with their default labels), not only to the daemon's own.
        LoggingSystem.bootstrap { [level = settings.logLevel] label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "peersm.facilitatord")
        logger.logLevel = settings.logLevel
        // Before any service makes its instruments: swift-metrics binds them to the factory of the moment.
        let registry = PrometheusCollectorRegistry()
        if settings.metricsListen != nil {
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        }

        let dataDirectory = URL(fileURLWithPath: settings.dataDirectory)
        try FileManager.default.createDirectory(at: dataDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let key = try SigningKeyStore.loadOrCreate(in: dataDirectory)
        var engineSettings = settings.torrent
        engineSettings.dataDirectory = dataDirectory.appendingPathComponent("torrent").path
        let engine = try TorrentEngine(settings: engineSettings, logger: Logger(label: "peersm.torrent"))

        // The blocklists go on the engine before the relay accepts a circuit, so no fetch ever runs
        // unfiltered. The database is the CLI's (same path rule), so `facilitatord blocklist import`
        // while the daemon runs reaches the engine at the next maintenance poll.
        let blocklists: BlocklistService
        do {
            let store = try DatabaseOptions.parse(settings.blocklistDatabase.map { ["--db=\($0)"] } ?? []).openStore()
            blocklists = try BlocklistService(store: store, logger: Logger(label: "peersm.blocklists"))
        } catch {
            await engine.shutdown()
            throw error
        }
        let engineFilter: Task<Void, Never>
        do {
            engineFilter = try await blocklists.attach(engine)
            try await blocklists.register(FilterLog(logger: logger, database: settings.blocklistDatabasePath))
        } catch {
            await engine.shutdown()
            throw CleanError("cannot apply the blocklists to the torrent engine: \(error)")
        }
        let maintenance = Task { [poll = settings.blocklistPoll, refresh = settings.blocklistRefresh] in
            await blocklists.maintain(poll: poll, refresh: refresh)
        }
        // The spy hunt runs on its own DHT-only engine before each query (the fetching engine's
        // DHT stays off); it is up before the relay takes a circuit.
        var hunting: SpyHunting?
        // A start-up step failed after the engines were up: stop them before reporting.
        func abandon(_ message: String) async -> CleanError {
            maintenance.cancel()
            engineFilter.cancel()
            await hunting?.shutdown()
            await engine.shutdown()
            return CleanError(message)
        }
        if settings.hunt.enabled {
            do {
                hunting = try await SpyHunting.start(settings.hunt, addresses: settings.torrent.magnetPeers, blocklists: blocklists,
                                                   dataDirectory: dataDirectory)
            } catch {
                throw await abandon("cannot start the spy hunt's DHT engine: \(error)")
            }
            logger.info("spy hunting on", metadata: ["bootstrap": "\(settings.hunt.bootstrapNodes.joined(separator: ","))"])
        }

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var metrics: MetricsEndpoint?
        if let (host, port) = settings.metricsListen {
            let gauges = EngineGauges()
            do {
                metrics = try await MetricsEndpoint.start(host: host, port: port, registry: registry,
                                                          refresh: { await gauges.update(from: engine) },
                                                          group: group, logger: logger)
            } catch {
                throw await abandon("cannot serve metrics on \(host):\(port): \(error) (set [metrics] listen to another address, or \"\" to turn it off)")
            }
        }
        let bridge = FacilitatorRelayBridge()
        let source = TorrentContentSource(engine: engine,
                                          peerDiscovery: hunting?.peerDiscovery(allowing: settings.torrent.magnetPeers))
        let service = FacilitatorService(source: source,
                                         signingKey: key,
                                         transport: bridge, configuration: settings.facilitator, logger: logger)
        bridge.attach(service)
        // The relay identity persists across restarts (requesters pin it); short-lived certs are renewed on load.
        let relayKeys = try RelayKeys.loadOrCreate(directory: dataDirectory.appendingPathComponent("relay-keys"), now: Date())
        var relayConfig = OnionRelayServerConfiguration(
            keys: relayKeys, host: settings.relayHost, port: settings.relayPort, allowNonLoopbackBind: settings.relayPublic)
        relayConfig.relay.extendAllowPrivateAddresses = settings.extendToPrivateAddresses
        relayConfig.relay.applicationCommands = FacilitatorRelayBridge.applicationCommands
        let server: OnionRelayServer
        do {
            server = try await OnionRelayServer.start(relayConfig, on: group.next(), logger: Logger(label: "peersm.relay"))
        } catch {
            await metrics?.shutdown()
            await service.shutdown()
            bridge.finish()
            throw await abandon("cannot start the relay on \(settings.relayHost):\(settings.relayPort): \(error)")
        }
        bridge.attach(server)
        print("relay \(RelaySpec.format(server.descriptor))")
        print("facilitator key \(Data(key.publicKey.rawRepresentation).base64EncodedString())")
        if let metrics, let ip = metrics.localAddress.ipAddress, let port = metrics.localAddress.port {
            print("metrics http://\(ip.contains(":") ? "[\(ip)]" : ip):\(port)/metrics")
        }
        fflush(stdout)

        // swift-service-lifecycle owns the signals; the parts stop in dependency order (the front door
        // first, the engines last) once SIGTERM or SIGINT arrives.
        let daemon = DaemonLifetime { [metrics, hunting, logger] in
            logger.info("shutting down")
            maintenance.cancel()
            engineFilter.cancel()
            await metrics?.shutdown()
            await service.shutdown()
            bridge.finish()
            await server.shutdown()
            await hunting?.shutdown()
            await engine.shutdown()
            try? await group.shutdownGracefully()
        }
        var lifecycleLogger = logger
        lifecycleLogger.logLevel = max(logger.logLevel, .notice)
        let serviceGroup = ServiceGroup(configuration: .init(services: [daemon], gracefulShutdownSignals: [.sigterm, .sigint],
                                                             logger: lifecycleLogger))
        try await serviceGroup.run()
    }
}

/// The running daemon as one `Service`: it waits for the group's graceful shutdown, then runs the
/// ordered teardown.
private struct DaemonLifetime: Service {
    let teardown: @Sendable () async -> Void
    init(teardown: @escaping @Sendable () async -> Void) { self.teardown = teardown }
    func run() async throws {
        try? await gracefulShutdown()
        await teardown()
    }
}

/// Logs each filter the engine receives: at start (registration pushes the current union) and on
/// every change (imports by the CLI, new or expired spies), so an operator sees what is enforced.
private final class FilterLog: IPFilterSink, @unchecked Sendable {
    // @unchecked: `last` is only touched under `lock`.
    let logger: Logger
    let database: String
    private let lock = NSLock()
    private var last: Int?
    init(logger: Logger, database: String) {
        self.logger = logger
        self.database = database
    }
    func replaceIPFilter(_ ranges: IPRangeSet) async throws {
        let previous: Int? = lock.withLock { defer { last = ranges.count }; return last }
        if let previous {
            logger.info("blocklists updated", metadata: ["ranges": "\(ranges.count)", "was": "\(previous)"])
        } else {
            logger.info("blocklists enforced", metadata: ["ranges": "\(ranges.count)", "database": "\(database)"])
        }
    }
}

/// The daemon's settings: TOML keys → typed values, each with a safe default.
struct DaemonConfig {
    var dataDirectory = "/var/lib/peersm-facilitator"
    var logLevel: Logger.Level = .info
    var relayHost = "127.0.0.1"
    var relayPort = 9001
    /// Binding a non-loopback relay address needs this set (explicit decision to go public).
    var relayPublic = false
    var extendToPrivateAddresses = false
    var facilitator = FacilitatorConfiguration()
    var torrent = TorrentEngineSettings()
    /// [blocklists] hunt… (SpyHunting.swift).
    var hunt = HuntSettings()
    /// nil: the CLI's rule ($PEERSM_FACILITATOR_DB, else `DatabaseOptions.defaultPath`).
    var blocklistDatabase: String?
    var blocklistPoll: Duration = .seconds(10)
    var blocklistRefresh: Duration = .seconds(86_400)
    /// Prometheus scrape address; nil turns the endpoint off. Non-loopback needs metricsPublic.
    var metricsListen: (host: String, port: Int)? = ("127.0.0.1", 9474)
    var metricsPublic = false

    /// The database both `run` and `blocklist …` use for this config.
    var blocklistDatabasePath: String {
        blocklistDatabase ?? ProcessInfo.processInfo.environment[DatabaseOptions.environmentKey].flatMap { $0.isEmpty ? nil : $0 }
            ?? DatabaseOptions.defaultPath
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static func load(path: String?) throws -> DaemonConfig {
        var config = DaemonConfig()
        guard let path else { return config }
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw Failure(description: "cannot read \(path): \(error.localizedDescription)")
        }
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch { throw Failure(description: "\(path): \(error)") }
        var reader = Reader(path: path)
        try config.apply(table, &reader)
        return config
    }

    private mutating func apply(_ root: TOMLTable, _ r: inout Reader) throws {
        try r.known(root, ["data_directory", "log_level", "relay", "facilitator", "torrent", "blocklists", "metrics"], in: "")
        if let v = try r.string(root, "data_directory") { dataDirectory = v }
        if let v = try r.string(root, "log_level") {
            guard let level = Logger.Level(rawValue: v) else { throw r.fail("log_level", "one of trace, debug, info, notice, warning, error, critical") }
            logLevel = level
        }
        if let relay = try r.table(root, "relay") {
            try r.known(relay, ["host", "port", "public", "extend_to_private_addresses"], in: "relay.")
            if let v = try r.string(relay, "host") { relayHost = v }
            if let v = try r.int(relay, "port", 1...65535) { relayPort = v }
            if let v = try r.bool(relay, "public") { relayPublic = v }
            if let v = try r.bool(relay, "extend_to_private_addresses") { extendToPrivateAddresses = v }
        }
        if let f = try r.table(root, "facilitator") {
            try r.known(f, ["max_streams", "max_streams_per_circuit", "resolve_timeout_seconds", "stall_timeout_seconds",
                            "max_buffered_messages"], in: "facilitator.")
            if let v = try r.int(f, "max_streams", 1...100_000) { facilitator.maxStreams = v }
            if let v = try r.int(f, "max_streams_per_circuit", 1...10_000) { facilitator.maxStreamsPerCircuit = v }
            if let v = try r.int(f, "resolve_timeout_seconds", 1...3600) { facilitator.resolveTimeout = .seconds(v) }
            if let v = try r.int(f, "stall_timeout_seconds", 1...3600) { facilitator.stallTimeout = .seconds(v) }
            if let v = try r.int(f, "max_buffered_messages", 8...100_000) { facilitator.maxBufferedMessages = v }
        }
        if let t = try r.table(root, "torrent") {
            try r.known(t, ["listen", "accept_incoming", "utp", "dht", "dht_bootstrap_nodes", "use_trackers", "magnet_peers",
                            "memory_budget_mib", "metadata_timeout_seconds", "max_torrents", "connections_limit"], in: "torrent.")
            if let v = try r.string(t, "listen") { torrent.listenInterfaces = v }
            if let v = try r.bool(t, "accept_incoming") { torrent.acceptIncoming = v }
            if let v = try r.bool(t, "utp") { torrent.enableUTP = v }
            if let v = try r.bool(t, "dht") { torrent.dhtEnabled = v }
            if let v = try r.strings(t, "dht_bootstrap_nodes") { torrent.dhtBootstrapNodes = v }
            if let v = try r.bool(t, "use_trackers") { torrent.useTrackers = v }
            if let v = try r.string(t, "magnet_peers") {
                guard let policy = MagnetPeerPolicy(rawValue: v) else {
                    throw r.fail("torrent.magnet_peers", "one of \(MagnetPeerPolicy.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))")
                }
                torrent.magnetPeers = policy
            }
            if let v = try r.int(t, "memory_budget_mib", 4...65536) { torrent.memoryBudget = v << 20 }
            if let v = try r.int(t, "metadata_timeout_seconds", 1...3600) { torrent.metadataTimeout = .seconds(v) }
            if let v = try r.int(t, "max_torrents", 1...10_000) { torrent.maxConcurrentTorrents = v }
            if let v = try r.int(t, "connections_limit", 0...100_000) { torrent.connectionsLimit = v }
        }
        if let b = try r.table(root, "blocklists") {
            try r.known(b, ["database", "poll_seconds", "refresh_hours", "hunt", "hunt_bootstrap_nodes", "hunt_listen",
                            "hunt_timeout_seconds", "hunt_reuse_seconds"], in: "blocklists.")
            if let v = try r.string(b, "database") {
                guard !v.isEmpty else { throw r.fail("blocklists.database", "a non-empty path") }
                blocklistDatabase = v
            }
            if let v = try r.int(b, "poll_seconds", 1...3600) { blocklistPoll = .seconds(v) }
            if let v = try r.int(b, "refresh_hours", 1...8760) { blocklistRefresh = .seconds(v * 3600) }
            try applyHunt(b, &r)
        }
        if let m = try r.table(root, "metrics") {
            try r.known(m, ["listen", "public"], in: "metrics.")
            if let v = try r.string(m, "listen") {
                if v.isEmpty {
                    metricsListen = nil
                } else {
                    guard let colon = v.lastIndex(of: ":"), let port = Int(v[v.index(after: colon)...]), (0...65535).contains(port)
                    else { throw r.fail("metrics.listen", "\"host:port\" (e.g. \"127.0.0.1:9474\"), or \"\" to turn it off") }
                    metricsListen = (String(v[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port)
                }
            }
            if let v = try r.bool(m, "public") { metricsPublic = v }
        }
        if !relayPublic && !Self.isLoopback(relayHost) {
            throw r.fail("relay.host", "a loopback address unless relay.public = true (going public is explicit)")
        }
        if let (host, _) = metricsListen, !metricsPublic, !Self.isLoopback(host) {
            throw r.fail("metrics.listen", "a loopback address unless metrics.public = true (going public is explicit)")
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        ["::1", "localhost"].contains(host) || host.hasPrefix("127.")
    }

    var summary: String {
        """
        data_directory = "\(dataDirectory)"
        log_level = "\(logLevel.rawValue)"
        [relay]
        host = "\(relayHost)"
        port = \(relayPort)
        public = \(relayPublic)
        extend_to_private_addresses = \(extendToPrivateAddresses)
        [facilitator]
        max_streams = \(facilitator.maxStreams)
        max_streams_per_circuit = \(facilitator.maxStreamsPerCircuit)
        resolve_timeout_seconds = \(facilitator.resolveTimeout.components.seconds)
        stall_timeout_seconds = \(facilitator.stallTimeout.components.seconds)
        max_buffered_messages = \(facilitator.maxBufferedMessages)
        [torrent]
        listen = "\(torrent.listenInterfaces)"
        accept_incoming = \(torrent.acceptIncoming)
        utp = \(torrent.enableUTP)
        dht = \(torrent.dhtEnabled)
        dht_bootstrap_nodes = [\(torrent.dhtBootstrapNodes.map { "\"\($0)\"" }.joined(separator: ", "))]
        use_trackers = \(torrent.useTrackers)
        magnet_peers = "\(torrent.magnetPeers.rawValue)"
        memory_budget_mib = \(torrent.memoryBudget >> 20)
        metadata_timeout_seconds = \(torrent.metadataTimeout.components.seconds)
        max_torrents = \(torrent.maxConcurrentTorrents)
        connections_limit = \(torrent.connectionsLimit)
        [blocklists]
        database = "\(blocklistDatabasePath)"
        \(hunt.summary)
        poll_seconds = \(blocklistPoll.components.seconds)
        refresh_hours = \(blocklistRefresh.components.seconds / 3600)
        [metrics]
        listen = "\(metricsListen.map { "\($0.host.contains(":") ? "[\($0.host)]" : $0.host):\($0.port)" } ?? "")"
        public = \(metricsPublic)
        """
    }

    /// Typed access that names the offending key on error, and rejects unknown keys (typos).
    struct Reader {
        let path: String
        var prefix = ""

        func fail(_ key: String, _ expected: String) -> Failure {
            Failure(description: "\(path): \(key) must be \(expected)")
        }
        mutating func known(_ table: TOMLTable, _ keys: [String], in prefix: String) throws {
            self.prefix = prefix
            for key in table.keys where !keys.contains(key) {
                throw Failure(description: "\(path): unknown key \(prefix)\(key) (known: \(keys.joined(separator: ", ")))")
            }
        }
        func string(_ t: TOMLTable, _ k: String) throws -> String? {
            guard let v = t[k] else { return nil }
            guard let s = v.string else { throw fail(prefix + k, "a string") }
            return s
        }
        func bool(_ t: TOMLTable, _ k: String) throws -> Bool? {
            guard let v = t[k] else { return nil }
            guard let b = v.bool else { throw fail(prefix + k, "true or false") }
            return b
        }
        func int(_ t: TOMLTable, _ k: String, _ range: ClosedRange<Int>) throws -> Int? {
            guard let v = t[k] else { return nil }
            guard let i = v.int, range.contains(i) else { throw fail(prefix + k, "an integer in \(range.lowerBound)…\(range.upperBound)") }
            return i
        }
        func strings(_ t: TOMLTable, _ k: String) throws -> [String]? {
            guard let v = t[k] else { return nil }
            guard let a = v.array else { throw fail(prefix + k, "an array of strings") }
            return try a.map { guard let s = $0.string else { throw fail(prefix + k, "an array of strings") }; return s }
        }
        func table(_ t: TOMLTable, _ k: String) throws -> TOMLTable? {
            guard let v = t[k] else { return nil }
            guard let table = v.table else { throw fail(prefix + k, "a table") }
            return table
        }
    }
}
