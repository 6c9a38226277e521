import Logging
import NIOCore
import NetBasics
import OnionRouting
import OnionTransport
import PeersmProtocol
import TorCells
import TorCrypto

/// Our own onion relays and a client, wired in memory (no sockets): real ntor handshakes, real onion
/// layers, real circuit and stream flow control, cells delivered in order as over TCP. The last relay
/// is the exit whose Peersm application hook is exposed as `exitEvents` (feed them to a facilitator)
/// and `sendFromExit` (its answers). Used by `peersm-demo` and the tests; the node runtime replaces it
/// with TLS links.
public actor LoopbackOnionNetwork: CircuitProvider {
    /// What the exit's application sees.
    public enum ExitEvent: Sendable {
        case message(RelayCircuitID, streamID: UInt16, command: UInt8, body: ByteBuffer)
        /// RELAY_END from the client on an application stream.
        case streamClosed(RelayCircuitID, streamID: UInt16)
        case circuitClosed(RelayCircuitID)
        /// The exit's queue for the circuit drained after `isWritable(circuit:)` said false.
        case circuitWritable(RelayCircuitID)
    }

    private enum ExitOutput: Sendable {
        case batch(RelayCircuitID, UInt16, [(command: PeersmRelayCommand, body: ByteBuffer)], bytes: Int)
        case release(RelayCircuitID, UInt16)
    }

    private enum Node: Hashable { case client, relay(Int) }

    public nonisolated let exitEvents: AsyncStream<ExitEvent>
    private let exitEventSink: AsyncStream<ExitEvent>.Continuation
    private let outboxSink: AsyncStream<ExitOutput>.Continuation
    /// Backpressure of the exit's answers, as `FacilitatorRelayBridge` does over TLS.
    private nonisolated let gate = CircuitSendGate(pauseBytes: LoopbackOnionNetwork.circuitPauseBytes)
    public static let circuitPauseBytes = CircuitQueueLimits.standard.pauseBytes

    public nonisolated let path: [CircuitHop]
    private var relays: [OnionRelay]
    private let identities: [RSAIdentity]
    private var client = ClientCircuitMultiplexer(applicationCommands: .peersm)
    private let clientChannel = ChannelID(0)
    private var channelEnds: [ChannelID: (Node, Node)] = [:]
    private var nextChannel: UInt64 = 1
    private var inFlight: [(ChannelCell, ChannelID, Node)] = []
    /// Cells for the client held while it "stops reading its link" (`setClientReading(false)`).
    private var clientReading = true
    private var heldForClient: [(ChannelCell, ChannelID, Node)] = []
    private var inFlightHead = 0
    private var running = false
    private var builds: [UInt32: CheckedContinuation<Void, Error>] = [:]
    private var streams: [UInt32: [UInt16: AsyncThrowingStream<DBInbound, Error>.Continuation]] = [:]
    /// Cells carried so far (for reports).
    public private(set) var cellsDelivered = 0

    public init(relayCount: Int = 3) throws {
        precondition(relayCount >= 1)
        var relays: [OnionRelay] = []
        var identities: [RSAIdentity] = []
        var path: [CircuitHop] = []
        var generator = SystemRandomNumberGenerator()
        for i in 0..<relayCount {
            let rsa = try RSAIdentity(bytes: (0..<20).map { _ in UInt8.random(in: 0...255, using: &generator) })
            let ntor = NtorSecretKey.generate(identity: rsa)
            let config = OnionRelayConfiguration(
                identity: rsa, ntorKeys: [ntor], extendAllowPrivateAddresses: true, applicationCommands: .peersm)
            relays.append(OnionRelay(configuration: config))
            identities.append(rsa)
            path.append(CircuitHop(address: IPv4Address(127, 0, 0, UInt8(i + 1)), port: 9001, ntorKey: ntor.publicKey))
        }
        self.relays = relays
        self.identities = identities
        self.path = path
        (exitEvents, exitEventSink) = AsyncStream.makeStream()
        let (outbox, outboxSink) = AsyncStream<ExitOutput>.makeStream()
        self.outboxSink = outboxSink
        channelEnds[clientChannel] = (.client, .relay(0))
        self.relays[0].channelOpened(clientChannel, role: .responder, peerIdentity: nil)
        Task { [weak self] in
            for await output in outbox {
                guard let self else { return }
                switch output {
                case .batch(let circuit, let stream, let batch, let bytes): await self.exitSend(circuit, stream, batch, bytes: bytes)
                case .release(let circuit, let stream): await self.exitRelease(circuit, stream)
                }
            }
        }
    }

    /// The exit's answers, in order (the shape of Facilitator's `FacilitatorTransport`). Non-blocking.
    public nonisolated func send(circuit: RelayCircuitID, streamID: UInt16, command: PeersmRelayCommand, body: ByteBuffer) {
        send(circuit: circuit, streamID: streamID, batch: [(command, body)])
    }

    /// Several answers for one stream, in order, delivered in one actor hop.
    public nonisolated func send(circuit: RelayCircuitID, streamID: UInt16, batch: [(command: PeersmRelayCommand, body: ByteBuffer)]) {
        let bytes = batch.reduce(0) { $0 + $1.body.readableBytes }
        _ = gate.submitted(circuit, bytes: bytes)
        outboxSink.yield(.batch(circuit, streamID, batch, bytes: bytes))
    }

    /// False while the exit holds `circuitPauseBytes` or more for the circuit (see `CircuitSendGate`);
    /// `ExitEvent.circuitWritable` follows once it drained.
    public nonisolated func isWritable(circuit: RelayCircuitID) -> Bool { gate.isWritable(circuit) }

    /// The exit application is done with a stream: the exit relay forgets it (no RELAY_END).
    public nonisolated func endStream(circuit: RelayCircuitID, streamID: UInt16) {
        outboxSink.yield(.release(circuit, streamID))
    }

    /// Delivers the exit's events to `application`, in order, until `shutdown`.
    public nonisolated func attach(_ application: any LoopbackExitApplication) {
        let events = exitEvents
        Task {
            for await event in events {
                switch event {
                case .message(let circuit, let streamID, let command, let body):
                    await application.received(circuit: circuit, streamID: streamID, command: command, body: body)
                case .streamClosed(let circuit, let streamID):
                    await application.streamClosed(circuit: circuit, streamID: streamID)
                case .circuitClosed(let circuit):
                    await application.circuitClosed(circuit)
                case .circuitWritable(let circuit):
                    await application.circuitWritable(circuit)
                }
            }
        }
    }

    /// Stops delivering exit answers and events.
    public nonisolated func shutdown() {
        outboxSink.finish()
        exitEventSink.finish()
    }

    // MARK: client side

    /// Builds a circuit through every relay (3 hops by default); the last is the facilitator.
    public func buildCircuit() async throws -> any FacilitatorCircuit {
        let (id, actions) = try client.buildCircuit(path: path)
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            builds[id] = continuation
            handleClient(id, actions)
            run()
        }
        return LoopbackCircuit(network: self, id: id)
    }

    /// Kills a client circuit at the first relay, as if that relay went down: DESTROY both ways.
    public func killCircuit(_ id: UInt32) {
        handleRelay(0, relays[0].destroyCircuit(RelayCircuitID(channel: clientChannel, circuitID: id), reason: .connectFailed))
        run()
    }

    /// Client circuits currently open.
    public var openCircuits: [UInt32] { client.circuitIDs }

    /// Simulates a client that stops (false) or resumes reading its link to the first relay: cells
    /// for it are held, so it sends no circuit SENDMEs, while what it sends still goes out.
    public func setClientReading(_ reading: Bool) {
        clientReading = reading
        if reading {
            inFlight.append(contentsOf: heldForClient)
            heldForClient.removeAll()
            run()
        }
    }

    /// Cells held for the client while it does not read.
    public var cellsHeldForClient: Int { heldForClient.count }
    /// The exit relay's circuits (its view: previous-hop channel and ID).
    public var exitCircuits: [RelayCircuitID] { relays[relays.count - 1].circuitIDs }
    /// Bytes the exit relay holds queued toward the client on a circuit.
    public func exitQueuedBytes(_ circuit: RelayCircuitID) -> Int { relays[relays.count - 1].queuedBytes(circuit) }
    /// Streams the exit relay holds open on a circuit.
    public func exitStreamCount(_ circuit: RelayCircuitID) -> Int { relays[relays.count - 1].streamCount(circuit) }

    fileprivate func openStream(_ id: UInt32) throws -> DBStreamChannel {
        guard let streamID = try client.withCircuit(id, { try $0.openApplicationStream() }) else {
            throw CircuitLost("circuit \(id) is closed")
        }
        let (inbound, sink) = AsyncThrowingStream<DBInbound, Error>.makeStream()
        streams[id, default: [:]][streamID] = sink
        return DBStreamChannel(
            streamID: streamID, inbound: inbound,
            send: { [weak self] command, body in
                guard let self else { throw CircuitLost("network gone") }
                try await self.clientSend(id, streamID, command, body)
            },
            close: { [weak self] in await self?.clientCloseStream(id, streamID) })
    }

    private func clientSend(_ id: UInt32, _ streamID: UInt16, _ command: PeersmRelayCommand, _ body: ByteBuffer) throws {
        let actions: [ClientCircuitAction]?
        do {
            actions = try client.withCircuit(id) { try $0.send(command: RelayCommand(command.rawValue), body: body, onStream: streamID) }
        } catch {
            throw CircuitLost("\(error)")
        }
        guard let actions else { throw CircuitLost("circuit \(id) is closed") }
        handleClient(id, actions)
        run()
    }

    private func clientCloseStream(_ id: UInt32, _ streamID: UInt16) {
        streams[id]?.removeValue(forKey: streamID)?.finish()
        if let actions = try? client.withCircuit(id, { try $0.closeStream(streamID) }) {
            handleClient(id, actions)
            run()
        }
    }

    fileprivate func destroy(_ id: UInt32) {
        if let actions = client.withCircuit(id, { $0.destroy() }) {
            handleClient(id, actions)
            run()
        }
    }

    // MARK: exit side

    private func exitSend(_ circuit: RelayCircuitID, _ streamID: UInt16, _ batch: [(command: PeersmRelayCommand, body: ByteBuffer)], bytes: Int) {
        let exit = relays.count - 1
        let resumed = gate.deliver(circuit, bytes: bytes, batch, send: { message in
            handleRelay(exit, try relays[exit].sendApplicationMessage(
                circuit, streamID: streamID, command: RelayCommand(message.command.rawValue), body: message.body))
        }, queued: { relays[exit].queuedBytes(circuit) })
        if resumed { exitEventSink.yield(.circuitWritable(circuit)) }
        run()
    }

    private func exitRelease(_ circuit: RelayCircuitID, _ streamID: UInt16) {
        // Already gone if the client sent RELAY_END or the circuit closed.
        try? relays[relays.count - 1].releaseApplicationStream(circuit, streamID: streamID)
    }

    // MARK: delivery

    /// Delivers cells until none is in flight. Re-entrant calls return at once (the outer loop continues).
    private func run() {
        guard !running else { return }
        running = true
        defer { running = false }
        while inFlightHead < inFlight.count {
            let (cell, channel, to) = inFlight[inFlightHead]
            inFlightHead += 1
            if inFlightHead >= 4096 {
                inFlight.removeFirst(inFlightHead)
                inFlightHead = 0
            }
            cellsDelivered += 1
            switch to {
            case .client where !clientReading:
                heldForClient.append((cell, channel, to))
            case .client:
                if case .circuit(let id, let actions) = client.receive(cell) { handleClient(id, actions) }
            case .relay(let r):
                handleRelay(r, relays[r].receive(cell, on: channel))
            }
        }
        inFlight.removeAll(keepingCapacity: true)
        inFlightHead = 0
    }

    private func handleClient(_ id: UInt32, _ actions: [ClientCircuitAction]) {
        for action in actions {
            switch action {
            case .send(let cell):
                inFlight.append((cell, clientChannel, .relay(0)))
            case .event(.opened):
                builds.removeValue(forKey: id)?.resume()
            case .event(.streamMessage(let streamID, let command, let body)):
                streams[id]?[streamID]?.yield(DBInbound(command: command.rawValue, body: body))
            case .event(.streamEnded(let streamID, _)):
                streams[id]?.removeValue(forKey: streamID)?.finish()
            case .event(.closed(let reason, let failure)):
                let why = failure.map { "\($0)" } ?? "DESTROY \(reason)"
                builds.removeValue(forKey: id)?.resume(throwing: CircuitLost(why))
                for (_, sink) in streams.removeValue(forKey: id) ?? [:] { sink.finish(throwing: CircuitLost(why)) }
            case .event:
                break  // BEGIN streams are not used here
            }
        }
    }

    private func handleRelay(_ r: Int, _ actions: [RelayAction]) {
        let isExit = r == relays.count - 1
        for action in actions {
            switch action {
            case .send(let cell, let channel):
                guard let ends = channelEnds[channel] else { continue }
                inFlight.append((cell, channel, ends.0 == .relay(r) ? ends.1 : ends.0))
            case .openChannel(let target, let circuit):
                guard let t = identities.firstIndex(of: target.rsaIdentity) else {
                    handleRelay(r, relays[r].extendChannelFailed(circuit))
                    continue
                }
                handleRelay(r, relays[r].extendChannelReady(circuit, channel: channel(between: r, and: t)))
            case .connect(let circuit, let streamID, _, _):
                // Our relays are not exits for TCP.
                if let more = try? relays[r].streamConnectFailed(circuit, streamID: streamID, reason: .exitPolicy) {
                    handleRelay(r, more)
                }
            case .application(let circuit, let streamID, let command, let body) where isExit:
                exitEventSink.yield(.message(circuit, streamID: streamID, command: command.rawValue, body: body))
            case .closeStream(let circuit, let streamID, _) where isExit:
                exitEventSink.yield(.streamClosed(circuit, streamID: streamID))
            case .resumeProducer(let circuit, _) where isExit:
                // The exit relay decided the circuit's queue drained, as it tells `OnionRelayServer`.
                if gate.queueChanged(circuit, queued: relays[r].queuedBytes(circuit)) {
                    exitEventSink.yield(.circuitWritable(circuit))
                }
            case .circuitClosed(let circuit, _, _) where isExit:
                gate.remove(circuit)
                exitEventSink.yield(.circuitClosed(circuit))
            default:
                break
            }
        }
    }

    private func channel(between a: Int, and b: Int) -> ChannelID {
        if let existing = channelEnds.first(where: { $0.value == (.relay(a), .relay(b)) || $0.value == (.relay(b), .relay(a)) }) {
            return existing.key
        }
        let channel = ChannelID(nextChannel)
        nextChannel += 1
        channelEnds[channel] = (.relay(a), .relay(b))
        relays[a].channelOpened(channel, role: .initiator, peerIdentity: identities[b])
        relays[b].channelOpened(channel, role: .responder, peerIdentity: identities[a])
        return channel
    }
}

/// What runs at the exit of a `LoopbackOnionNetwork` (FacilitatorService has exactly these methods).
public protocol LoopbackExitApplication: Sendable {
    func received(circuit: RelayCircuitID, streamID: UInt16, command: UInt8, body: ByteBuffer) async
    func streamClosed(circuit: RelayCircuitID, streamID: UInt16) async
    func circuitClosed(_ circuit: RelayCircuitID) async
    /// The exit's queue for the circuit drained after the transport said it was not writable.
    func circuitWritable(_ circuit: RelayCircuitID) async
}

/// A circuit of a `LoopbackOnionNetwork`.
public struct LoopbackCircuit: FacilitatorCircuit {
    let network: LoopbackOnionNetwork
    public let id: UInt32

    public func openStream() async throws -> DBStreamChannel { try await network.openStream(id) }
    public func close() async { await network.destroy(id) }
}
