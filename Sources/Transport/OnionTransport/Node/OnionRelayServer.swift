import Foundation
import Logging
import NIOCore
import NIOPosix
import OnionRouting
import TorCells
import TorCrypto

/// Static settings of an `OnionRelayServer`: the relay state machine's own configuration plus what
/// the sockets need.
public struct OnionRelayServerConfiguration: Sendable {
    /// TLS certificates, identities and the ntor key. They are authoritative: the server sets
    /// `relay.identity` and `relay.ntorKeys` from them.
    public var keys: RelayKeys
    /// The relay state machine's settings (policies, application commands, limits).
    public var relay: OnionRelayConfiguration
    /// Where the ORPort listens. Loopback unless `allowNonLoopbackBind` is set: a relay reachable from
    /// the network is an explicit decision.
    public var host: String
    /// 0 picks a free port (read it back from `OnionRelayServer.port`).
    public var port: Int
    /// Also accept links over node-Tor's WebSocket bridge transport (TLS inside WebSocket frames) on
    /// this port of `host` (0: a free port; nil: no WebSocket listener).
    public var webSocketPort: Int?
    public var allowNonLoopbackBind: Bool
    public var exitConnectTimeout: TimeAmount
    public var linkHandshakeTimeout: TimeAmount
    /// Stop reading an exit's TCP socket while this many bytes wait for circuit/stream window.
    public var exitReadPauseBytes: Int
    /// SO_RCVBUF of exit TCP sockets (the kernel doubles it). Bounds what an exit reads past
    /// `exitReadPauseBytes`: when the destination closes, NIO reads the socket's whole receive buffer
    /// up to EOF whatever autoRead says, and a buffer the kernel autotunes on a fast stream holds MiBs.
    public var exitReceiveBufferBytes: Int
    /// Tell application producers to pause (`sendApplicationMessage` returns false) while this many
    /// bytes wait on the circuit for window; exits also stop reading then. Per circuit: the circuit
    /// window is shared by all of its streams. Producers that honour it overshoot it by one batch at
    /// most, well below `relay.maximumQueuedBytesPerCircuit`.
    public var circuitPauseBytes: Int
    /// Inbound connections beyond this many held links are refused (closed at accept).
    public var maximumLinks: Int

    /// `relay` defaults to `OnionRelayConfiguration`'s defaults for `keys`; set its fields afterwards.
    public init(
        keys: RelayKeys, relay: OnionRelayConfiguration? = nil, host: String = "127.0.0.1", port: Int = 0,
        webSocketPort: Int? = nil, allowNonLoopbackBind: Bool = false,
        exitConnectTimeout: TimeAmount = .seconds(10),
        linkHandshakeTimeout: TimeAmount = .seconds(30), exitReadPauseBytes: Int = 128 * 1024,
        exitReceiveBufferBytes: Int = 128 * 1024,
        circuitPauseBytes: Int = 512 * 1024,
        maximumLinks: Int = 4096
    ) {
        self.keys = keys
        self.relay = relay ?? OnionRelayConfiguration(identity: keys.fingerprint, ntorKeys: [keys.ntorKey])
        self.host = host
        self.port = port
        self.webSocketPort = webSocketPort
        self.allowNonLoopbackBind = allowNonLoopbackBind
        self.exitConnectTimeout = exitConnectTimeout
        self.linkHandshakeTimeout = linkHandshakeTimeout
        self.exitReadPauseBytes = exitReadPauseBytes
        self.exitReceiveBufferBytes = exitReceiveBufferBytes
        self.circuitPauseBytes = circuitPauseBytes
        self.maximumLinks = maximumLinks
    }
}

public enum OnionRelayServerError: Error, Equatable, Sendable {
    case nonLoopbackBindNotAllowed(String)
    /// An inbound connection arrived while `maximumLinks` links were held.
    case tooManyLinks
}

/// The application hook of a relay: receives the relay messages whose command is in
/// `relay.applicationCommands` that reach this relay as the last hop, and answers
/// through `OnionRelayServer.sendApplicationMessage`.
///
/// Every method is called on `server.eventLoop`, in cell order, and must not block it: hand long work
/// (a torrent fetch) to another task and call back with `server.eventLoop.execute { … }`. The server
/// never calls the delegate for a circuit after `circuitClosed`.
public protocol OnionRelayApplication: AnyObject {
    /// A relay message with an application command. `stream` is 0 for circuit-level messages.
    func relay(_ server: OnionRelayServer, circuit: RelayCircuitID, stream: UInt16, received command: RelayCommand, body: ByteBuffer)
    /// The client ended an application stream (END), or the circuit went away under it.
    func relay(_ server: OnionRelayServer, circuit: RelayCircuitID, streamClosed stream: UInt16, reason: EndReason)
    /// The circuit is gone; forget everything about it.
    func relay(_ server: OnionRelayServer, circuitClosed circuit: RelayCircuitID, reason: DestroyReason)
    /// A stream on which `sendApplicationMessage` returned false: its circuit's queue has drained
    /// below `circuitPauseBytes`, send more.
    func relay(_ server: OnionRelayServer, circuit: RelayCircuitID, streamWritable stream: UInt16)
}

extension OnionRelayApplication {
    public func relay(_ server: OnionRelayServer, circuit: RelayCircuitID, streamWritable stream: UInt16) {}
    public func relay(_ server: OnionRelayServer, circuit: RelayCircuitID, streamClosed stream: UInt16, reason: EndReason) {}
    public func relay(_ server: OnionRelayServer, circuitClosed circuit: RelayCircuitID, reason: DestroyReason) {}
}

/// A Tor relay: a TLS ORPort whose links run the link handshake as responder, an `OnionRelay` circuit
/// state machine, outgoing links for EXTEND2 (as an authenticating relay initiator, reusing an open
/// link to the same identity), and exit TCP connections under the exit policy.
///
/// All state is confined to one event loop (`eventLoop`): the circuit state machine spans every link,
/// and a single loop makes it lock-free. One relay thus uses one core; run several for more.
///
/// Backpressure: an exit stops reading its TCP socket while cells wait for circuit/stream window, and
/// withholds stream SENDMEs (so the client stops) while its TCP socket is not writable. Relayed cells
/// are bounded by the 1000-cell circuit window per circuit.
public final class OnionRelayServer: @unchecked Sendable {
    public let configuration: OnionRelayServerConfiguration
    public let eventLoop: EventLoop
    public private(set) var port: Int = 0
    /// The WebSocket listener's port, if `webSocketPort` was set.
    public private(set) var webSocketPort: Int?
    public weak var application: OnionRelayApplication?
    let logger: Logger

    private var relay: OnionRelay
    private var serverChannel: Channel?
    private var webSocketChannel: Channel?
    private var links: [ChannelID: OnionLink] = [:]
    private var nextChannelID: UInt64 = 1
    /// Open links by the authenticated RSA identity of their peer (EXTEND2 reuses them).
    private var linksByIdentity: [RSAIdentity: ChannelID] = [:]
    /// Outgoing links still in their handshake, and the circuits waiting on each.
    private var pendingExtends: [RSAIdentity: (link: ChannelID, waiting: [RelayCircuitID])] = [:]
    private var exits: [ExitKey: ExitStream] = [:]
    /// Exit streams that stopped reading their socket for lack of window.
    private var blockedExitReads: Set<ExitKey> = []
    /// Application streams told to wait (`sendApplicationMessage` returned false: their circuit is full).
    private var blockedApplicationStreams: Set<ExitKey> = []
    private let tlsServer: TLSContext
    private var isShutDown = false

    struct ExitKey: Hashable {
        var circuit: RelayCircuitID
        var stream: UInt16
    }

    /// Start listening. The returned server runs until `shutdown()`.
    public static func start(
        _ configuration: OnionRelayServerConfiguration, on eventLoop: EventLoop,
        application: OnionRelayApplication? = nil, logger: Logger = Logger(label: "onion.relay")
    ) async throws -> OnionRelayServer {
        guard configuration.allowNonLoopbackBind || Self.isLoopback(configuration.host) else {
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

    private init(configuration: OnionRelayServerConfiguration, eventLoop: EventLoop, logger: Logger) throws {
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
            Set(self.links.values.compactMap { $0.isOpen ? $0.peerIdentity : nil })
        }.get()
    }

    /// Stop listening and close every link and exit connection.
    public func shutdown() async {
        let closing: EventLoopFuture<Void> = self.eventLoop.flatSubmit {
            self.isShutDown = true
            var futures: [EventLoopFuture<Void>] = []
            if let server = self.serverChannel { futures.append(server.close()) }
            if let server = self.webSocketChannel { futures.append(server.close()) }
            for link in self.links.values { link.close() }
            for exit in self.exits.values { exit.channel?.close(promise: nil) }
            return EventLoopFuture.andAllComplete(futures, on: self.eventLoop)
        }
        try? await closing.get()
    }

    // MARK: application API (event loop only)

    /// Send a relay message toward the client of `circuit` on `stream` (0: circuit level). DATA and
    /// bulk application commands are flow-controlled: what exceeds the window waits in the circuit's queue. Returns false
    /// once `circuitPauseBytes` or more wait on the circuit: stop producing until the delegate's
    /// `streamWritable` callback (past `relay.maximumQueuedBytesPerCircuit` the circuit is destroyed).
    /// Call on `eventLoop`.
    @discardableResult
    public func sendApplicationMessage(_ circuit: RelayCircuitID, stream: UInt16, command: RelayCommand, body: ByteBuffer) throws -> Bool {
        self.eventLoop.preconditionInEventLoop()
        self.perform(try self.relay.sendApplicationMessage(circuit, streamID: stream, command: command, body: body))
        guard !self.relay.hasCircuit(circuit) || self.relay.queuedBytes(circuit) < self.configuration.circuitPauseBytes else {
            self.blockedApplicationStreams.insert(ExitKey(circuit: circuit, stream: stream))
            return false
        }
        return true
    }

    /// End an application stream with RELAY_END. Call on `eventLoop`.
    public func endApplicationStream(_ circuit: RelayCircuitID, stream: UInt16, reason: EndReason = .done) throws {
        self.eventLoop.preconditionInEventLoop()
        self.perform(try self.relay.closeStream(circuit, streamID: stream, reason: reason))
    }

    /// The application ended an application stream by its own protocol: free it at the relay
    /// without a RELAY_END (see `OnionRelay.releaseApplicationStream`). Call on `eventLoop`.
    public func releaseApplicationStream(_ circuit: RelayCircuitID, stream: UInt16) throws {
        self.eventLoop.preconditionInEventLoop()
        try self.relay.releaseApplicationStream(circuit, streamID: stream)
    }

    /// Bytes waiting for window on all streams of a circuit. Call on `eventLoop`.
    public func queuedBytes(_ circuit: RelayCircuitID) -> Int {
        self.eventLoop.preconditionInEventLoop()
        return self.relay.queuedBytes(circuit)
    }

    /// Streams the circuit holds open at the relay (for tests and metrics). Call on `eventLoop`.
    public func streamCount(_ circuit: RelayCircuitID) -> Int {
        self.eventLoop.preconditionInEventLoop()
        return self.relay.streamCount(circuit)
    }

    /// Bytes of a stream waiting for window (pace application output on it). Call on `eventLoop`.
    public func queuedBytes(_ circuit: RelayCircuitID, stream: UInt16) -> Int {
        self.eventLoop.preconditionInEventLoop()
        return self.relay.queuedBytes(circuit, streamID: stream)
    }

    /// Tear a circuit down, DESTROY both ways. Call on `eventLoop`.
    public func destroyCircuit(_ circuit: RelayCircuitID, reason: DestroyReason = .finished) {
        self.eventLoop.preconditionInEventLoop()
        self.perform(self.relay.destroyCircuit(circuit, reason: reason))
    }

    // MARK: links

    private func allocateChannelID() -> ChannelID {
        defer { self.nextChannelID += 1 }
        return ChannelID(self.nextChannelID)
    }

    private func acceptLink(_ channel: Channel) throws {
        guard !self.isShutDown else { throw ChannelError.ioOnClosedChannel }
        guard self.links.count < self.configuration.maximumLinks else {
            self.logger.warning("refusing a link: \(self.links.count) links held (maximumLinks)")
            throw OnionRelayServerError.tooManyLinks
        }
        let endpoint = ChannelEndpoint.responder(self.configuration.keys)
        let link = OnionLink(id: self.allocateChannelID(), endpoint: endpoint, delegate: self)
        self.links[link.id] = link
        try channel.pipeline.syncOperations.addHandlers(try OnionLink.pipeline(
            tls: self.tlsServer, endpoint: endpoint, localAddresses: self.localNetinfoAddresses,
            handshakeTimeout: self.configuration.linkHandshakeTimeout))
        try channel.pipeline.syncOperations.addHandler(link)
    }

    private var localNetinfoAddresses: [NetinfoAddress] {
        IPv4Address(self.configuration.host).map { [.ipv4($0)] } ?? []
    }

    /// EXTEND2 asked for a link to `target`.
    private func openChannel(_ target: ExtendTarget, for circuit: RelayCircuitID) {
        if let id = self.linksByIdentity[target.rsaIdentity], let link = self.links[id], link.isOpen,
            target.ed25519Identity == nil || target.ed25519Identity == link.peerEd25519Identity
        {
            self.perform(self.relay.extendChannelReady(circuit, channel: id))
            return
        }
        if self.pendingExtends[target.rsaIdentity] != nil {
            self.pendingExtends[target.rsaIdentity]!.waiting.append(circuit)
            return
        }
        let link = OnionLink(
            id: self.allocateChannelID(),
            endpoint: .relayInitiator(
                self.configuration.keys,
                expecting: ExpectedPeerIdentity(rsaIdentity: target.rsaIdentity, ed25519Identity: target.ed25519Identity)),
            delegate: self)
        self.links[link.id] = link
        self.pendingExtends[target.rsaIdentity] = (link.id, [circuit])
        let host = "\(target.address)"
        self.logger.debug("extending to \(host):\(target.port) \(target.rsaIdentity) on \(link.id)")
        OnionLinkConnector.connect(host: host, port: Int(target.port), link: link, on: self.eventLoop,
                                   timeout: self.configuration.exitConnectTimeout,
                                   handshakeTimeout: self.configuration.linkHandshakeTimeout,
                                   localAddresses: self.localNetinfoAddresses)
            .whenFailure { error in
                // The link never became active: it reports nothing itself.
                self.eventLoop.assertInEventLoop()
                self.linkFailedBeforeOpen(link, error: error)
            }
    }

    private func linkFailedBeforeOpen(_ link: OnionLink, error: Error) {
        guard self.links.removeValue(forKey: link.id) != nil else { return }
        self.logger.debug("link \(link.id) failed: \(error)")
        for (identity, pending) in self.pendingExtends where pending.link == link.id {
            self.pendingExtends[identity] = nil
            for circuit in pending.waiting { self.perform(self.relay.extendChannelFailed(circuit)) }
        }
    }

    // MARK: exits

    private func connectExit(_ circuit: RelayCircuitID, stream: UInt16, host: String, port: UInt16) {
        let key = ExitKey(circuit: circuit, stream: stream)
        let exit = ExitStream(key: key, server: self)
        self.exits[key] = exit
        ClientBootstrap(group: self.eventLoop)
            .connectTimeout(self.configuration.exitConnectTimeout)
            .channelOption(ChannelOptions.autoRead, value: false)
            // One read() brings at most one 64 KiB buffer, so the queue overshoots the pause by that much.
            .channelOption(ChannelOptions.maxMessagesPerRead, value: 1)
            .channelOption(ChannelOptions.recvAllocator, value: AdaptiveRecvByteBufferAllocator(
                minimum: 64, initial: 16 * 1024, maximum: Self.exitReadBytes))
            // Set before connect, so the window scale matches.
            .channelOption(ChannelOptions.socketOption(.so_rcvbuf),
                           value: SocketOptionValue(clamping: self.configuration.exitReceiveBufferBytes))
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(exit) }
            }
            .connect(host: host, port: Int(port))
            .whenComplete { result in
                self.eventLoop.assertInEventLoop()
                switch result {
                case .success(let channel):
                    self.exitConnected(key, channel: channel)
                case .failure(let error):
                    guard self.exits.removeValue(forKey: key) != nil else { return }
                    let reason: EndReason = error is ChannelError ? .timeout : .connectRefused
                    self.perform((try? self.relay.streamConnectFailed(circuit, streamID: stream, reason: reason)) ?? [])
                }
            }
    }

    /// Largest buffer one exit read() fills.
    static let exitReadBytes = 64 * 1024

    private func exitConnected(_ key: ExitKey, channel: Channel) {
        guard self.exits[key] != nil else {
            channel.close(promise: nil)  // the stream ended while we connected
            return
        }
        let remote = channel.remoteAddress.flatMap(IPAddress.init(socketAddress:))
        // A hostname resolved to something the policy rejects (e.g. a name pointing at loopback).
        if let remote, !self.configuration.relay.exitPolicy.allows(remote, port: UInt16(channel.remoteAddress?.port ?? 0)) {
            self.exits[key] = nil
            channel.close(promise: nil)
            self.perform((try? self.relay.streamConnectFailed(key.circuit, streamID: key.stream, reason: .exitPolicy)) ?? [])
            return
        }
        do {
            self.perform(try self.relay.streamConnected(key.circuit, streamID: key.stream, address: remote))
            channel.read()
        } catch {
            self.exits[key] = nil
            channel.close(promise: nil)
        }
    }

    fileprivate func exitRead(_ key: ExitKey, _ data: ByteBuffer) {
        guard self.exits[key] != nil else { return }
        do { self.perform(try self.relay.streamReceived(key.circuit, streamID: key.stream, data: data)) } catch {
            self.exits.removeValue(forKey: key)?.channel?.close(promise: nil)
        }
    }

    /// Whether the exit may read more from its socket now; if not, it is resumed by `resumeExitReads`.
    fileprivate func exitMayRead(_ key: ExitKey) -> Bool {
        guard self.exits[key] != nil else { return false }
        if self.exitHasRoom(key) { return true }
        self.blockedExitReads.insert(key)
        return false
    }

    private func resumeApplicationStreams() {
        guard !self.blockedApplicationStreams.isEmpty else { return }
        for key in self.blockedApplicationStreams {
            guard self.relay.hasCircuit(key.circuit) else {
                self.blockedApplicationStreams.remove(key)
                continue
            }
            if self.relay.queuedBytes(key.circuit) < self.configuration.circuitPauseBytes {
                self.blockedApplicationStreams.remove(key)
                self.application?.relay(self, circuit: key.circuit, streamWritable: key.stream)
            }
        }
    }

    private func resumeExitReads() {
        self.resumeApplicationStreams()
        guard !self.blockedExitReads.isEmpty else { return }
        for key in self.blockedExitReads {
            guard let exit = self.exits[key] else {
                self.blockedExitReads.remove(key)
                continue
            }
            if self.exitHasRoom(key) {
                self.blockedExitReads.remove(key)
                exit.channel?.read()
            }
        }
    }

    private func exitHasRoom(_ key: ExitKey) -> Bool {
        self.relay.queuedBytes(key.circuit, streamID: key.stream) < self.configuration.exitReadPauseBytes
            && self.relay.queuedBytes(key.circuit) < self.configuration.circuitPauseBytes
    }

    fileprivate func exitWritabilityChanged(_ key: ExitKey, writable: Bool) {
        guard self.exits[key] != nil else { return }
        self.perform((try? self.relay.setStreamPaused(key.circuit, streamID: key.stream, !writable)) ?? [])
    }

    fileprivate func exitClosed(_ key: ExitKey) {
        guard self.exits.removeValue(forKey: key) != nil else { return }
        self.blockedExitReads.remove(key)
        self.perform((try? self.relay.closeStream(key.circuit, streamID: key.stream, reason: .done)) ?? [])
    }

    // MARK: actions

    private func perform(_ actions: [RelayAction]) {
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
                    self.blockedExitReads.remove(key)
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
                for (identity, pending) in self.pendingExtends {
                    self.pendingExtends[identity]!.waiting = pending.waiting.filter { $0 != circuit }
                }
                self.application?.relay(self, circuitClosed: circuit, reason: reason)
            case .dropped(let channel, let circuitID, let reason):
                self.logger.trace("dropped on \(channel)/\(circuitID): \(reason)")
            }
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "::1" { return true }
        if let v4 = IPv4Address(host) { return v4.rawValue >> 24 == 127 }
        return false
    }
}

extension OnionRelayServer: OnionLinkDelegate {
    func linkOpened(_ link: OnionLink, peer: ChannelPeer) {
        self.relay.channelOpened(link.id, role: link.role, peerIdentity: link.peerIdentity)
        guard let identity = link.peerIdentity else { return }
        if self.linksByIdentity[identity] == nil || self.links[self.linksByIdentity[identity]!]?.isOpen != true {
            self.linksByIdentity[identity] = link.id
        }
        if let pending = self.pendingExtends.removeValue(forKey: identity) {
            for circuit in pending.waiting { self.perform(self.relay.extendChannelReady(circuit, channel: link.id)) }
        }
    }

    func link(_ link: OnionLink, received cell: ChannelCell) {
        self.perform(self.relay.receive(cell, on: link.id))
        self.resumeExitReads()
    }

    func link(_ link: OnionLink, writable: Bool) {
        // Links whose circuits forward into this one stop reading while it cannot take more (it was
        // already paused itself by OnionLink). Resuming resumes every link, as the circuits may have
        // changed meanwhile.
        if writable {
            for other in self.links.values { other.setReadBlocked(by: link.id, false) }
        } else {
            for channel in self.relay.linkedChannels(link.id) { self.links[channel]?.setReadBlocked(by: link.id, true) }
        }
    }

    func linkClosed(_ link: OnionLink, error: Error?) {
        self.links[link.id] = nil
        for other in self.links.values { other.setReadBlocked(by: link.id, false) }
        if let error { self.logger.debug("link \(link.id) closed: \(error)") }
        if let identity = link.peerIdentity, self.linksByIdentity[identity] == link.id {
            self.linksByIdentity[identity] = nil
        }
        for (identity, pending) in self.pendingExtends where pending.link == link.id {
            self.pendingExtends[identity] = nil
            for circuit in pending.waiting { self.perform(self.relay.extendChannelFailed(circuit)) }
        }
        self.perform(self.relay.channelClosed(link.id))
    }
}

/// One exit TCP connection: bytes in and out, nothing else. Reads are pulled (autoRead off) only
/// while the circuit has room for them.
private final class ExitStream: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let key: OnionRelayServer.ExitKey
    /// Weak: a connection may outlive a shut-down server by a few events.
    weak var server: OnionRelayServer?
    private(set) var channel: Channel?
    private var context: ChannelHandlerContext?
    private var flushScheduled = false
    private var closing = false

    init(key: OnionRelayServer.ExitKey, server: OnionRelayServer) {
        self.key = key
        self.server = server
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.channel = context.channel
    }

    func write(_ data: ByteBuffer) {
        guard let context, !self.closing else { return }
        context.write(self.wrapOutboundOut(data), promise: nil)
        if !self.flushScheduled {
            self.flushScheduled = true
            context.eventLoop.execute {
                self.flushScheduled = false
                self.context?.flush()
            }
        }
    }

    /// END from the client: deliver what was written, then close.
    func closeAfterWrites() {
        guard let context, !self.closing else { return }
        self.closing = true
        // Writes complete in order: once this empty one is done, everything before it is out.
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer()), promise: written)
        let deadline = context.eventLoop.scheduleTask(in: .seconds(30)) { context.close(promise: nil) }
        written.futureResult.whenComplete { _ in
            deadline.cancel()
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.server?.exitRead(self.key, self.unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if self.server?.exitMayRead(self.key) == true { context.read() }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.server?.exitWritabilityChanged(self.key, writable: context.channel.isWritable)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.server?.exitClosed(self.key)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// Opens a TLS connection carrying an `OnionLink`.
enum OnionLinkConnector {
    static let clientTLS = Result { try TLSContext.client() }

    /// - Parameter webSocketPath: connect through the WebSocket bridge transport (GET this path) instead
    ///   of plain TCP.
    static func connect(host: String, port: Int, link: OnionLink, on eventLoop: EventLoop, timeout: TimeAmount,
                        handshakeTimeout: TimeAmount, localAddresses: [NetinfoAddress] = [],
                        webSocketPath: String? = nil) -> EventLoopFuture<Channel> {
        let tls: TLSContext
        do { tls = try self.clientTLS.get() } catch { return eventLoop.makeFailedFuture(error) }
        @Sendable func addLink(_ channel: Channel) throws {
            try channel.pipeline.syncOperations.addHandlers(try OnionLink.pipeline(
                tls: tls, endpoint: link.endpoint, localAddresses: localAddresses, handshakeTimeout: handshakeTimeout))
            try channel.pipeline.syncOperations.addHandler(link)
        }
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                if let webSocketPath {
                    return WebSocketLink.configureClient(
                        channel: channel, host: host, path: webSocketPath, upgradeTimeout: timeout, addStreamHandlers: addLink)
                }
                return channel.eventLoop.makeCompletedFuture { try addLink(channel) }
            }
            .connect(host: host, port: port)
    }
}

extension IPAddress {
    init?(socketAddress: SocketAddress) {
        guard let ip = socketAddress.ipAddress, let parsed = IPAddress(ip) else { return nil }
        self = parsed
    }
}
