import ArgumentParser
import FacilitatorNode
import Foundation
import Logging
import ServiceLifecycle

/// `facilitatord run`: an onion relay (TLS ORPort) whose exit hop is the Peersm facilitator, with its
/// torrent engine. Every setting has a default; the defaults bind loopback only, and listening on a
/// public address (relay or BitTorrent) must be asked for explicitly in the config file.
public struct RunCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the relay and facilitator until SIGINT/SIGTERM.",
        discussion: """
            Reads a TOML file (every key is optional: `facilitatord config sample`, which is \
            etc/facilitatord.toml, lists them with their defaults). At start it prints \
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

    @Flag(help: "Print the effective configuration (every key, as TOML) and exit.")
    var printConfig = false

    public init() {}

    public func run() async throws {
        let settings: FacilitatorNodeSettings
        do {
            settings = try ConfigFile.load(path: config)
        } catch {
            throw ValidationError("\(error)")
        }
        if printConfig {
            print(ConfigFile.effective(settings), terminator: "")
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

        // A failed start-up step throws a NodeError whose text names it.
        let node = try await FacilitatorNode.start(settings, logger: logger)
        if let spec = node.relaySpec { print("relay \(spec)") }
        print("facilitator key \(Data(node.signingKey.publicKey.rawRepresentation).base64EncodedString())")
        if let url = node.metricsURL { print("metrics \(url)") }
        fflush(stdout)

        // swift-service-lifecycle owns the signals; on SIGTERM or SIGINT the node stops its parts in
        // reverse start order (the front door first, the engines last).
        var lifecycleLogger = logger
        lifecycleLogger.logLevel = max(logger.logLevel, .notice)
        let serviceGroup = ServiceGroup(configuration: .init(services: [node],
                                                             gracefulShutdownSignals: [.sigterm, .sigint],
                                                             logger: lifecycleLogger))
        try await serviceGroup.run()
    }
}
