import Foundation
import Logging
import NIOCore
import NIOPosix
import NetBasics
import OnionRouting
import TorCells
import TorCrypto

/// A Tor relay: a TLS ORPort whose links run the link handshake as responder, an `OnionRelay` circuit
/// state machine, outgoing links for EXTEND2 (as an authenticating relay initiator, reusing an open
/// link to the same identity), and exit TCP connections under the exit policy.
///
/// All state is confined to one event loop (`eventLoop`): the circuit state machine spans every link,
/// and a single loop makes it lock-free. One relay thus uses one core; run several for more.
///
/// Backpressure: the relay state machine decides, the server performs. An exit stops reading its TCP
/// socket on `pauseProducer` (cells wait for circuit/stream window) until `resumeProducer`, and stream
/// SENDMEs are withheld (so the client stops) while its TCP socket is not writable. Relayed cells are
/// bounded by the 1000-cell circuit window per circuit.
public final class OnionRelayServer: @unchecked Sendable {
    public let configuration: OnionRelayServerConfiguration
    public let eventLoop: EventLoop
    public private(set) var port: Int = 0
    /// The WebSocket listener's port, if `webSocketPort` was set.
    public private(set) var webSocketPort: Int?
    public weak var application: OnionRelayApplication?
    let logger: Logger

    var relay: OnionRelay
    var serverChannel: Channel?
    var webSocketChannel: Channel?
    var links = RelayLinkRegistry()
    var exits: [ExitKey: ExitStream] = [:]
    let tlsServer: TLSContext
    var isShutDown = false

    struct ExitKey: Hashable {
        var circuit: RelayCircuitID
        var stream: UInt16
    }

    /// Start listening. The returned server runs until `shutdown()`.
    public static func start(
        _ configuration: OnionRelayServerConfiguration, on eventLoop: EventLoop,
        application: OnionRelayApplication? = nil, logger: Logger = Logger(label: "onion.relay")
    ) async throws -> OnionRelayServer {
        guard configuration.allowNonLoopbackBind || AddressClass.isLoopback(host: configuration.host) else {
            throw OnionRelayServerError.nonLoopbackBindNotAllowed(configuration.host)
        }
        let server = try OnionRelayServer(configuration: configuration, eventLoop: eventLoop, logger: logger)
        server.application = application
        let channel = try await ServerBootstrap(group: eventLoop)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                // Runs on `eventLoop` (the only loop of this bootstrap).
                channel.eventLoop.makeCompletedFuture { try server.acceptLink(channel) }
            }
            .bind(host: configuration.host, port: configuration.port).get()
        var webSocket: Channel?
        if let wsPort = configuration.webSocketPort {
            do {
                webSocket = try await ServerBootstrap(group: eventLoop)
                    .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                    .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                    .childChannelInitializer { channel in
                        WebSocketLink.configureServer(channel: channel) { upgraded in try server.acceptLink(upgraded) }
                    }
                    .bind(host: configuration.host, port: wsPort).get()
            } catch {
                try? await channel.close()
                throw error
            }
        }
        try await eventLoop.submit {
            server.serverChannel = channel
            server.port = channel.localAddress?.port ?? 0
            server.webSocketChannel = webSocket
            server.webSocketPort = webSocket?.localAddress?.port
        }.get()
        return server
    }

    init(configuration: OnionRelayServerConfiguration, eventLoop: EventLoop, logger: Logger) throws {
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.logger = logger
        self.tlsServer = try TLSContext.relay(configuration.keys)
        var relayConfiguration = configuration.relay
        relayConfiguration.identity = configuration.keys.fingerprint
        relayConfiguration.ntorKeys = [configuration.keys.ntorKey]
        self.relay = OnionRelay(configuration: relayConfiguration, rng: FastRandomNumberGenerator())
    }

    /// How clients reach this relay and extend to it (address, ORPort, identities, ntor key).
    public var descriptor: CircuitHop {
        CircuitHop(
            address: IPv4Address(self.configuration.host) ?? IPv4Address(127, 0, 0, 1), port: UInt16(self.port),
            ntorKey: self.configuration.keys.ntorKey.publicKey, ed25519Identity: self.configuration.keys.edIdentity)
    }

    /// Number of circuits through or ending at this relay.
    public func circuitCount() async throws -> Int {
        try await self.eventLoop.submit { self.relay.circuitCount }.get()
    }

    /// Bytes waiting for window on each circuit (for tests and metrics).
    public func queuedBytesByCircuit() async throws -> [RelayCircuitID: Int] {
        try await self.eventLoop.submit {
            Dictionary(uniqueKeysWithValues: self.relay.circuitIDs.map { ($0, self.relay.queuedBytes($0)) })
        }.get()
    }

    /// Links (TLS connections) currently held, open or in their handshake.
    public func linkCount() async throws -> Int {
        try await self.eventLoop.submit { self.links.count }.get()
    }

    /// RSA identities of the relays we have an open, authenticated link with (either direction).
    public func linkedRelayIdentities() async throws -> Set<RSAIdentity> {
        try await self.eventLoop.submit {
            Set(self.links.links.values.compactMap { $0.isOpen ? $0.peerIdentity : nil })
        }.get()
    }

    /// Stop listening and close every link and exit connection.
    public func shutdown() async {
        let closing: EventLoopFuture<Void> = self.eventLoop.flatSubmit {
            self.isShutDown = true
            var futures: [EventLoopFuture<Void>] = []
            if let server = self.serverChannel { futures.append(server.close()) }
            if let server = self.webSocketChannel { futures.append(server.close()) }
            for link in self.links.links.values { link.close() }
            for exit in self.exits.values { exit.channel?.close(promise: nil) }
            return EventLoopFuture.andAllComplete(futures, on: self.eventLoop)
        }
        try? await closing.get()
    }

    // MARK: actions

    func perform(_ actions: [RelayAction]) {
        for action in actions {
            switch action {
            case .send(let cell, let channel):
                self.links[channel]?.send(cell)
            case .openChannel(let target, let circuit):
                self.openChannel(target, for: circuit)
            case .connect(let circuit, let stream, let host, let port):
                self.connectExit(circuit, stream: stream, host: host, port: port)
            case .streamData(let circuit, let stream, let data):
                self.exits[ExitKey(circuit: circuit, stream: stream)]?.write(data)
            case .closeStream(let circuit, let stream, let reason):
                let key = ExitKey(circuit: circuit, stream: stream)
                if let exit = self.exits.removeValue(forKey: key) {
                    exit.closeAfterWrites()
                } else {
                    self.application?.relay(self, circuit: circuit, streamClosed: stream, reason: reason)
                }
            case .application(let circuit, let stream, let command, let body):
                if let application = self.application {
                    application.relay(self, circuit: circuit, stream: stream, received: command, body: body)
                } else {
                    self.logger.debug("no application for \(command) on \(circuit)")
                }
            case .circuitClosed(let circuit, let reason, let failure):
                if let failure { self.logger.info("circuit \(circuit) closed (\(reason)): \(failure)") }
                self.links.forget(circuit)
                self.application?.relay(self, circuitClosed: circuit, reason: reason)
            case .pauseProducer(let circuit, let stream):
                // An application stream learns it from `sendApplicationMessage`'s result.
                self.exits[ExitKey(circuit: circuit, stream: stream)]?.readPaused = true
            case .resumeProducer(let circuit, let stream):
                if let exit = self.exits[ExitKey(circuit: circuit, stream: stream)] {
                    exit.resumeReading()
                } else {
                    self.application?.relay(self, circuit: circuit, streamWritable: stream)
                }
            case .dropped(let channel, let circuitID, let reason):
                self.logger.trace("dropped on \(channel)/\(circuitID): \(reason)")
            }
        }
    }
}
