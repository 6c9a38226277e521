import Blocklists
import Crypto
import Facilitator
import Foundation
import NetBasics
import Logging
import Metrics
import NIOCore
import NIOPosix
import OnionTransport
import PeersmCircuits
import Prometheus
import Requester
import ServiceLifecycle
import TorCrypto
import TorrentEngine

/// A running facilitator node: the one place that wires the torrent engine, the blocklists, the
/// spy hunt, the onion relay whose exit is the facilitator service, and the metrics endpoint.
/// `facilitatord run`, the demo and the tests build it here. Parts start in dependency order
/// (engine, blocklists, hunt, relay, metrics) so no circuit is accepted before the blocklists
/// filter the engine; they stop in reverse. A step that fails stops what had started and throws a
/// `NodeError` naming the step.
public final class FacilitatorNode: Service, @unchecked Sendable {
    // @unchecked: every stored property is immutable except `teardown`, guarded by `lock`.

    /// Who carries the facilitator's relay cells.
    public enum Front: Sendable {
        /// A TLS ORPort at `relayHost:relayPort` (what the daemon runs).
        case onionRelay
        /// Relays wired in memory (the demo's `--in-memory-relays`); the caller owns the network.
        case inMemory(LoopbackOnionNetwork)
    }

    public let settings: FacilitatorNodeSettings
    public let engine: TorrentEngine
    public let blocklists: BlocklistService
    public let service: FacilitatorService
    public let signingKey: Curve25519.Signing.PrivateKey
    /// nil with `Front.inMemory`.
    public let relay: OnionRelayServer?
    /// nil when `metricsListen` is nil.
    public let metrics: MetricsEndpoint?
    private let logger: Logger
    private let lock = NSLock()
    private var teardown: StopStack?

    /// The relay's spec line (`host:port:rsa_fp:ed25519:ntor`) for `peersm fetch --via`.
    public var relaySpec: String? { relay.map { RelaySpec.format($0.descriptor) } }
    /// The metrics endpoint's URL, once it listens.
    public var metricsURL: String? {
        guard let metrics, let ip = metrics.localAddress.ipAddress, let port = metrics.localAddress.port else { return nil }
        return "http://\(ListenAddress(host: ip, port: port))/metrics"
    }

    /// Builds and starts every part. `group` serves the relay and the metrics endpoint (nil: a
    /// one-thread group of the node's own, shut down with it).
    public static func start(_ settings: FacilitatorNodeSettings, front: Front = .onionRelay,
                             group: (any EventLoopGroup)? = nil, logger: Logger) async throws -> FacilitatorNode {
        // Before any part makes its instruments: swift-metrics binds them to the factory of the moment.
        let registry = settings.metricsListen == nil ? nil : metricsRegistry
        var stack = StopStack()
        do {
            let loops: any EventLoopGroup
            if let group {
                loops = group
            } else {
                let own = MultiThreadedEventLoopGroup(numberOfThreads: 1)
                stack.push { try? await own.shutdownGracefully() }
                loops = own
            }
            let dataDirectory = URL(fileURLWithPath: settings.dataDirectory)
            try FileManager.default.createDirectory(at: dataDirectory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            let key = try SigningKeyStore.loadOrCreate(in: dataDirectory)

            // 1. The fetching engine.
            var engineSettings = settings.torrent
            engineSettings.dataDirectory = dataDirectory.appendingPathComponent("torrent").path
            let engine = try TorrentEngine(settings: engineSettings, logger: Logger(label: "peersm.torrent"))
            stack.push { await engine.shutdown() }

            // 2. The blocklists, on the engine before the relay accepts a circuit, so no fetch ever
            // runs unfiltered. The database is the CLI's (same path rule), so `facilitatord blocklist
            // import` while the node runs reaches the engine at the next maintenance poll.
            let blocklists = try BlocklistService(store: try BlocklistDatabase.open(settings.blocklistDatabasePath),
                                                  logger: Logger(label: "peersm.blocklists"))
            do {
                let engineFilter = try await blocklists.attach(engine)
                stack.push { engineFilter.cancel() }
                try await blocklists.register(FilterLog(logger: logger, database: settings.blocklistDatabasePath))
            } catch {
                throw NodeError("cannot apply the blocklists to the torrent engine: \(error)")
            }
            let maintenance = Task { [poll = settings.blocklistPoll, refresh = settings.blocklistRefresh] in
                await blocklists.maintain(poll: poll, refresh: refresh)
            }
            stack.push { maintenance.cancel() }

            // 3. The spy hunt, on its own DHT-only engine (the fetching engine's DHT stays off).
            var hunting: SpyHunting?
            if settings.hunt.enabled {
                let started: SpyHunting
                do {
                    started = try await SpyHunting.start(settings.hunt, addresses: settings.torrent.magnetPeers,
                                                         blocklists: blocklists, dataDirectory: dataDirectory)
                } catch {
                    throw NodeError("cannot start the spy hunt's DHT engine: \(error)")
                }
                stack.push { await started.shutdown() }
                hunting = started
                logger.info("spy hunting on", metadata: ["bootstrap": "\(settings.hunt.bootstrapNodes.joined(separator: ","))"])
            }

            // 4. The relay, its exit the facilitator service.
            let source = TorrentContentSource(engine: engine,
                                              peerDiscovery: hunting?.peerDiscovery(allowing: settings.torrent.magnetPeers))
            let service: FacilitatorService
            var relay: OnionRelayServer?
            switch front {
            case .onionRelay:
                let bridge = FacilitatorRelayBridge()
                service = FacilitatorService(source: source, signingKey: key, transport: bridge,
                                             configuration: settings.facilitator, logger: logger)
                bridge.attach(service)
                stack.push { [service] in await service.shutdown(); bridge.finish() }
                // The relay identity persists across restarts (requesters pin it); short-lived certs are renewed on load.
                let relayKeys = try RelayKeys.loadOrCreate(directory: dataDirectory.appendingPathComponent("relay-keys"), now: Date())
                var relayConfig = OnionRelayServerConfiguration(
                    keys: relayKeys, host: settings.relayHost, port: settings.relayPort, allowNonLoopbackBind: settings.relayPublic)
                relayConfig.relay.extendAllowPrivateAddresses = settings.extendToPrivateAddresses
                relayConfig.relay.applicationCommands = FacilitatorRelayBridge.applicationCommands
                let server: OnionRelayServer
                do {
                    server = try await OnionRelayServer.start(relayConfig, on: loops.next(), logger: Logger(label: "peersm.relay"))
                } catch {
                    throw NodeError("cannot start the relay on \(settings.relayHost):\(settings.relayPort): \(error)")
                }
                bridge.attach(server)
                // The service goes quiet before its relay closes.
                stack.extendLast { await server.shutdown() }
                relay = server
            case .inMemory(let network):
                service = FacilitatorService(source: source, signingKey: key, transport: network,
                                             configuration: settings.facilitator, logger: logger)
                network.attach(service)
                stack.push { [service] in await service.shutdown() }
            }

            // 5. The metrics endpoint.
            var metrics: MetricsEndpoint?
            if let listen = settings.metricsListen, let registry {
                let gauges = EngineGauges()
                do {
                    metrics = try await MetricsEndpoint.start(host: listen.host, port: listen.port, registry: registry,
                                                              refresh: { await gauges.update(from: engine) },
                                                              group: loops, logger: logger)
                } catch {
                    throw NodeError("cannot serve metrics on \(listen.host):\(listen.port): \(error) "
                        + "(set [metrics] listen to another address, or \"\" to turn it off)")
                }
                stack.push { [metrics] in await metrics?.shutdown() }
            }
            return FacilitatorNode(settings: settings, engine: engine, blocklists: blocklists, service: service,
                                   signingKey: key, relay: relay, metrics: metrics, logger: logger, teardown: stack)
        } catch {
            await stack.unwind()
            throw error
        }
    }

    private init(settings: FacilitatorNodeSettings, engine: TorrentEngine, blocklists: BlocklistService,
                 service: FacilitatorService, signingKey: Curve25519.Signing.PrivateKey, relay: OnionRelayServer?,
                 metrics: MetricsEndpoint?, logger: Logger, teardown: StopStack) {
        self.settings = settings
        self.engine = engine
        self.blocklists = blocklists
        self.service = service
        self.signingKey = signingKey
        self.relay = relay
        self.metrics = metrics
        self.logger = logger
        self.teardown = teardown
    }

    /// Stops every part, the last started first (metrics, relay, hunt, blocklists, engine). Once.
    public func shutdown() async {
        let stack: StopStack? = lock.withLock { defer { teardown = nil }; return teardown }
        await stack?.unwind()
    }

    /// As a swift-service-lifecycle `Service`: runs until the group's graceful shutdown (SIGTERM,
    /// SIGINT), then stops in order.
    public func run() async throws {
        try? await gracefulShutdown()
        logger.info("shutting down")
        await shutdown()
    }

    /// The process's Prometheus registry. swift-metrics can be bootstrapped once per process, so
    /// every node of the process shares it.
    static let metricsRegistry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }()
}

/// What has started, as the steps that stop it, run last-first.
struct StopStack: Sendable {
    private var steps: [@Sendable () async -> Void] = []

    mutating func push(_ step: @escaping @Sendable () async -> Void) { steps.append(step) }

    /// Appends to the last step (a part that must stop right after the one before it).
    mutating func extendLast(_ step: @escaping @Sendable () async -> Void) {
        guard let last = steps.popLast() else { return push(step) }
        steps.append { await last(); await step() }
    }

    func unwind() async {
        for step in steps.reversed() { await step() }
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

// The in-memory front: the loopback network carries the service's cells and hands it its streams.
extension LoopbackOnionNetwork: FacilitatorTransport {}
extension FacilitatorService: LoopbackExitApplication {}
