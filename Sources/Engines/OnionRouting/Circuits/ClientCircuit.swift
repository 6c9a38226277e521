import NIOCore
import NetBasics
import TorCells
import TorCrypto

/// A relay the client builds a circuit through: where to reach it and the keys that authenticate it.
public struct CircuitHop: Sendable {
    public var address: IPv4Address
    public var port: UInt16
    /// RSA identity fingerprint and ntor onion key.
    public var ntorKey: NtorPublicKey
    public var ed25519Identity: Ed25519Identity?

    public init(address: IPv4Address, port: UInt16, ntorKey: NtorPublicKey, ed25519Identity: Ed25519Identity? = nil) {
        self.address = address
        self.port = port
        self.ntorKey = ntorKey
        self.ed25519Identity = ed25519Identity
    }

    /// EXTEND2 link specifiers in the order C tor sends them: 00 IPv4, 02 RSA id, 03 Ed25519 id.
    public var linkSpecifiers: [LinkSpecifier] {
        var specs: [LinkSpecifier] = [.ipv4(self.address, port: self.port), .rsaIdentity(self.ntorKey.identity.bytes)]
        if let ed = self.ed25519Identity { specs.append(.ed25519Identity(ed.bytes)) }
        return specs
    }
}

/// What a client circuit tells its owner.
public enum ClientCircuitEvent: Hashable, Sendable {
    /// Every hop of the path answered; streams may be opened.
    case opened
    /// The exit accepted a BEGIN.
    case streamConnected(streamID: UInt16, Connected)
    /// DATA on a stream.
    case streamData(streamID: UInt16, ByteBuffer)
    /// Any other relay message on a stream or at circuit level (stream 0) that the circuit does not
    /// consume itself — in particular an application's commands (`ApplicationCommands`).
    case streamMessage(streamID: UInt16, command: RelayCommand, body: ByteBuffer)
    /// The stream is gone: END from the exit, or our END after the exit broke the stream's protocol.
    case streamEnded(streamID: UInt16, End)
    /// The circuit is gone. `failure` is set when our side tore it down because of bad input
    /// (log it); nil when the peer sent DESTROY or the owner asked.
    case closed(DestroyReason, failure: CircuitFailure?)
}

/// What the owner must do after feeding the circuit an input.
public enum ClientCircuitAction: Hashable, Sendable {
    /// Write this cell on the circuit's channel.
    case send(ChannelCell)
    case event(ClientCircuitEvent)
}

/// Errors from the owner's own calls (not from the peer): these do not tear the circuit down.
public enum ClientCircuitError: Error, Hashable, Sendable {
    case notOpen
    case unknownStream(UInt16)
    case noFreeStreamID
    case pathTooLong(Int)
    case emptyPath
    case invalidTarget(CellError)
    /// A non-data relay message longer than one cell (498 bytes); only DATA and bulk application
    /// commands are split.
    case messageTooLong(RelayCommand, Int)
}

/// Which handshake the client runs with the first hop.
public enum FirstHopHandshake: Hashable, Sendable {
    /// CREATE2 with ntor (the default; authenticates the relay's onion key).
    case ntor
    /// CREATE_FAST: relies on the TLS link alone, as C tor does when it lacks the hop's ntor key.
    case createFast
}

/// A client (OP) circuit: builds an N-hop path with CREATE2/CREATE_FAST then EXTEND2s, then carries
/// streams to the last hop. Sans-I/O: the owner feeds it decoded channel cells and API calls, and
/// performs the returned actions. It never traps on peer input.
///
/// No clocks: build and stream timeouts are the owner's, who calls `destroy` / `closeStream` when they fire.
/// Crypto state lives in reference-typed TorCrypto objects: do not copy a circuit and use both copies.
public struct ClientCircuit {
    public enum Phase: Hashable, Sendable {
        /// Waiting for the handshake reply of `path[hop]`.
        case building(hop: Int)
        case open
        case closed
    }

    private enum StreamPhase { case connecting, open }

    public let circuitID: UInt32
    public let path: [CircuitHop]
    public private(set) var phase: Phase

    private let crypto = ClientCircuitCrypto()
    private var ntorState: Ntor.ClientState?
    private var createFastState: CreateFastHandshake.ClientState?
    /// One flow-control endpoint per established hop.
    private var hops: [CircuitEndpoint] = []
    /// Streams, all terminating at the last hop.
    private var streamPhases: [UInt16: StreamPhase] = [:]
    private var lastStreamID: UInt16
    private var relayEarlySent = 0
    private var rng: any RandomNumberGenerator
    private let minimumSendmeVersion: UInt8
    private let applicationCommands: ApplicationCommands

    /// Start building. Returns the circuit and the CREATE2 / CREATE_FAST cell to send.
    ///
    /// - Parameters:
    ///   - rng: randomness for the handshakes' ephemeral secrets, relay-cell padding and stream IDs: a CSPRNG
    ///     in production; a seeded generator makes a test's every byte reproducible.
    ///   - minimumSendmeVersion: lowest SENDME version accepted from the hops (1 = authenticated only).
    ///   - applicationCommands: the application's commands, for their flow control and splitting.
    public static func build(
        circuitID: UInt32,
        path: [CircuitHop],
        firstHop: FirstHopHandshake = .ntor,
        rng: any RandomNumberGenerator = SystemRandomNumberGenerator(),
        minimumSendmeVersion: UInt8 = 1,
        applicationCommands: ApplicationCommands = .none
    ) throws(ClientCircuitError) -> (ClientCircuit, [ClientCircuitAction]) {
        guard !path.isEmpty else { throw .emptyPath }
        // Each hop after the first costs one RELAY_EARLY EXTEND2.
        guard path.count - 1 <= maximumRelayEarlyCells else { throw .pathTooLong(path.count) }
        var circuit = ClientCircuit(
            circuitID: circuitID, path: path, rng: rng, minimumSendmeVersion: minimumSendmeVersion,
            applicationCommands: applicationCommands)
        let message: ChannelMessage
        switch firstHop {
        case .ntor:
            let (state, onionskin) = Ntor.clientStart(relay: path[0].ntorKey, using: &circuit.rng)
            circuit.ntorState = state
            message = .create2(Create2(handshakeType: Ntor.handshakeType, handshakeData: ByteBuffer(bytes: onionskin)))
        case .createFast:
            let x = randomBytes(CreateFastHandshake.nonceLength, using: &circuit.rng)
            do {
                let (state, x) = try CreateFastHandshake.clientStart(x: x)
                circuit.createFastState = state
                message = .createFast(try TorCells.CreateFast(keyMaterial: x))
            } catch {
                preconditionFailure("20 random bytes are valid CREATE_FAST material")
            }
        }
        return (circuit, [circuit.channelCell(message)])
    }

    private init(
        circuitID: UInt32, path: [CircuitHop], rng: any RandomNumberGenerator, minimumSendmeVersion: UInt8,
        applicationCommands: ApplicationCommands
    ) {
        self.circuitID = circuitID
        self.path = path
        self.phase = .building(hop: 0)
        self.minimumSendmeVersion = minimumSendmeVersion
        self.applicationCommands = applicationCommands
        var rng = rng
        // A random first stream ID, as C tor does, so IDs do not count the circuit's streams from 1.
        self.lastStreamID = UInt16.random(in: 1...UInt16.max, using: &rng)
        self.rng = rng
    }

    public var isClosed: Bool { self.phase == .closed }
    public var openStreamIDs: [UInt16] { Array(self.streamPhases.keys) }

    /// Bytes queued on a stream waiting for window: stop reading from the application above a limit.
    public func queuedBytes(onStream id: UInt16) -> Int { self.hops.last?.queuedBytes(id) ?? 0 }

    /// The circuit's package window toward the last hop (for tests and metrics).
    public var circuitPackageWindow: Int { self.hops.last?.circuitPackage.window.window ?? 0 }

    // MARK: inputs from the channel

    /// Feed a cell that arrived on the channel for this circuit.
    public mutating func receive(_ cell: ChannelCell) -> [ClientCircuitAction] {
        guard self.phase != .closed else { return [] }
        let message: ChannelMessage
        do {
            message = try cell.message()
        } catch {
            return self.fail(.malformed(error))
        }
        switch message {
        case .destroy(let reason):
            self.teardown()
            return [.event(.closed(reason, failure: nil))]
        case .created2(let created):
            guard self.phase == .building(hop: 0), let state = self.ntorState else {
                return self.fail(.unexpected("CREATED2 not awaited"))
            }
            do {
                return self.firstHopAnswered(
                    try Ntor.clientFinish(state: state, reply: Array(created.handshakeData.readableBytesView)))
            } catch {
                return self.fail(.handshakeFailed("CREATED2: \(error)"))
            }
        case .createdFast(let created):
            guard self.phase == .building(hop: 0), let state = self.createFastState else {
                return self.fail(.unexpected("CREATED_FAST not awaited"))
            }
            do {
                return self.firstHopAnswered(
                    try CreateFastHandshake.clientFinish(state: state, reply: created.keyMaterial + created.derivativeKeyData))
            } catch {
                return self.fail(.handshakeFailed("CREATED_FAST: \(error)"))
            }
        case .relay(let body):
            return self.receiveRelay(body)
        case .relayEarly:
            return self.fail(.inboundRelayEarly)
        case .padding, .vpadding, .paddingNegotiate, .unknown:
            // Padding, and commands newer than us: tor ignores them.
            return []
        default:
            return self.fail(.unexpected("\(cell.command) cell on a client circuit"))
        }
    }

    /// The channel under the circuit closed: nothing can be sent any more.
    public mutating func channelClosed() -> [ClientCircuitAction] {
        guard self.phase != .closed else { return [] }
        self.teardown()
        return [.event(.closed(.channelClosed, failure: .channelClosed))]
    }

    // MARK: inputs from the owner

    /// Tear the circuit down and tell the first hop.
    public mutating func destroy(reason: DestroyReason = .finished) -> [ClientCircuitAction] {
        guard self.phase != .closed else { return [] }
        self.teardown()
        return [self.channelCell(.destroy(reason)), .event(.closed(reason, failure: nil))]
    }

    /// Open a stream to `host:port` at the last hop with RELAY_BEGIN. Expect `.streamConnected` or `.streamEnded`.
    public mutating func openStream(host: String, port: UInt16) throws(ClientCircuitError) -> (UInt16, [ClientCircuitAction]) {
        let begin: Begin
        do { begin = try Begin(host: host, port: port) } catch { throw .invalidTarget(error) }
        let id = try self.reserveStream(phase: .connecting)
        return (id, self.sendToExit([self.relayCell(.begin(begin), streamID: id)]))
    }

    /// Reserve a stream ID without BEGIN, for application protocols that open streams implicitly
    /// (an application command that opens a stream is sent on a fresh stream ID directly).
    public mutating func openApplicationStream() throws(ClientCircuitError) -> UInt16 {
        try self.reserveStream(phase: .open)
    }

    /// Send bytes on a stream as DATA cells, subject to the stream and circuit windows: what does not fit
    /// is queued and goes out as SENDMEs arrive.
    public mutating func send(data: ByteBuffer, onStream id: UInt16) throws(ClientCircuitError) -> [ClientCircuitAction] {
        try self.send(command: .data, body: data, onStream: id)
    }

    /// Send an arbitrary relay message (e.g. an application command) on a stream, or at circuit level with
    /// stream 0. DATA and bulk application bodies longer than 498 bytes are split into several cells; other
    /// messages must fit one cell, since splitting would change their meaning.
    public mutating func send(command: RelayCommand, body: ByteBuffer, onStream id: UInt16) throws(ClientCircuitError) -> [ClientCircuitAction] {
        guard self.phase == .open else { throw .notOpen }
        guard id == 0 || self.streamPhases[id] != nil else { throw .unknownStream(id) }
        guard body.readableBytes <= RelayCellBody.maximumDataLength || self.applicationCommands.splits(command) else {
            throw .messageTooLong(command, body.readableBytes)
        }
        return self.sendToExit(relayCells(command: command, streamID: id, data: body))
    }

    /// Close a stream with RELAY_END (queued behind the stream's pending data).
    public mutating func closeStream(_ id: UInt16, reason: EndReason = .done) throws(ClientCircuitError) -> [ClientCircuitAction] {
        guard self.phase == .open else { throw .notOpen }
        guard self.streamPhases.removeValue(forKey: id) != nil else { throw .unknownStream(id) }
        // The END queues behind the stream's pending data; `drain` forgets the stream once it is out.
        return self.sendToExit([self.relayCell(.end(End(reason: reason)), streamID: id)])
    }

    /// Backpressure from the application: while paused, stream SENDMEs are withheld so the exit stops
    /// once the stream window (500 cells) is used; resuming sends the SENDMEs owed.
    public mutating func setStreamPaused(_ id: UInt16, _ paused: Bool) throws(ClientCircuitError) -> [ClientCircuitAction] {
        guard self.phase == .open else { throw .notOpen }
        guard self.streamPhases[id] != nil else { throw .unknownStream(id) }
        let hop = self.hops.count - 1
        return self.streamSendmes(id, count: self.hops[hop].setPaused(id, paused))
    }

    // MARK: internals

    private mutating func streamSendmes(_ id: UInt16, count: Int) -> [ClientCircuitAction] {
        let hop = self.hops.count - 1
        return (0..<count).compactMap { _ in self.originate(self.relayCell(.sendme(.v0), streamID: id), toHop: hop, early: false) }
    }

    private mutating func reserveStream(phase: StreamPhase) throws(ClientCircuitError) -> UInt16 {
        guard self.phase == .open else { throw .notOpen }
        guard let id = self.hops[self.hops.count - 1].freeStreamID(after: self.lastStreamID) else { throw .noFreeStreamID }
        self.lastStreamID = id
        self.streamPhases[id] = phase
        self.hops[self.hops.count - 1].addStream(id)
        return id
    }

    private mutating func firstHopAnswered(_ keys: CircuitKeys) -> [ClientCircuitAction] {
        self.ntorState = nil
        self.createFastState = nil
        return self.addHop(keys)
    }

    /// A hop answered: add its layer, then extend to the next one or report the circuit open.
    private mutating func addHop(_ keys: CircuitKeys) -> [ClientCircuitAction] {
        do { try self.crypto.addHop(keys) } catch { return self.fail(.crypto("\(error)")) }
        self.hops.append(CircuitEndpoint(
            minimumSendmeVersion: self.minimumSendmeVersion, applicationCommands: self.applicationCommands))
        let next = self.hops.count
        guard next < self.path.count else {
            self.phase = .open
            return [.event(.opened)]
        }
        self.phase = .building(hop: next)
        let (state, onionskin) = Ntor.clientStart(relay: self.path[next].ntorKey, using: &self.rng)
        self.ntorState = state
        let extend = Extend2(
            linkSpecifiers: self.path[next].linkSpecifiers, handshakeType: Ntor.handshakeType,
            handshakeData: ByteBuffer(bytes: onionskin))
        // EXTEND2 must ride in RELAY_EARLY and goes to the current last hop.
        return self.originate(self.relayCell(.extend2(extend), streamID: 0), toHop: next - 1, early: true)
            .map { [$0] } ?? self.fail(.resourceLimit("RELAY_EARLY budget exhausted"))
    }

    private mutating func receiveRelay(_ body: RelayCellBody) -> [ClientCircuitAction] {
        var body = body
        let hop: Int?
        do {
            hop = try body.withUnsafeMutableBytes { try self.crypto.decryptInbound($0) }
        } catch {
            return self.fail(.crypto("\(error)"))
        }
        guard let hop else { return self.fail(.unrecognizedRelayCell) }
        let cell: RelayCell
        let message: RelayMessage
        do {
            cell = try RelayCell(decoding: body)
            message = try cell.message()
        } catch {
            return self.fail(.malformed(error))
        }

        // Flow control first: every DATA counts, whatever happens to it next.
        let digest = SendmeDigest(self.crypto.inboundDigest(hop: hop) ?? [])
        var actions: [ClientCircuitAction] = []
        do {
            if let sendme = try self.hops[hop].receivedCircuitLevel(cell, digest: digest) {
                if let out = self.originate(self.relayCell(.sendme(sendme), streamID: 0), toHop: hop, early: false) {
                    actions.append(out)
                }
            }
        } catch {
            return self.fail(.flowControl(error))
        }

        switch message {
        case .extended2(let created):
            guard case .building(let building) = self.phase, building == hop + 1, let state = self.ntorState else {
                return self.fail(.unexpected("EXTENDED2 not awaited"))
            }
            let keys: CircuitKeys
            do {
                keys = try Ntor.clientFinish(state: state, reply: Array(created.handshakeData.readableBytesView))
            } catch {
                return self.fail(.handshakeFailed("\(error)"))
            }
            self.ntorState = nil
            return actions + self.addHop(keys)
        case .sendme(let sendme):
            do {
                try self.hops[hop].receivedSendme(streamID: cell.streamID, sendme)
            } catch {
                return self.fail(.flowControl(error))
            }
            return actions + self.drain(hop: hop)
        case .truncated(let reason):
            // We do not rebuild partial circuits: treat like a DESTROY from that hop onward.
            self.teardown()
            return actions + [self.channelCell(.destroy(.none)), .event(.closed(reason, failure: nil))]
        case .drop:
            return actions
        default:
            break
        }

        // Everything else belongs to a stream at the last hop (or is a circuit-level application message).
        guard self.phase == .open, hop == self.hops.count - 1 else {
            return self.fail(.unexpected("\(cell.command) from hop \(hop) before the circuit opened"))
        }
        let id = cell.streamID
        if id == 0 {
            guard !cell.command.isStreamCommand else {
                return self.fail(.badStreamID(cell.command, 0))
            }
            return actions + [.event(.streamMessage(streamID: 0, command: cell.command, body: cell.data))]
        }
        guard let streamPhase = self.streamPhases[id] else {
            // Late cells for a stream we closed: harmless, drop (tor-spec §6.3 half-closed streams).
            return actions
        }
        do {
            actions += self.streamSendmes(id, count: try self.hops[hop].receivedStreamLevel(cell))
        } catch {
            return actions + self.endStream(id, reason: .torProtocol, failure: .flowControl(error))
        }
        switch message {
        case .connected(let connected):
            guard streamPhase == .connecting else {
                return actions + self.endStream(id, reason: .torProtocol, failure: .unexpected("CONNECTED on an open stream"))
            }
            self.streamPhases[id] = .open
            return actions + [.event(.streamConnected(streamID: id, connected))]
        case .data(let data):
            guard streamPhase == .open else {
                return actions + self.endStream(id, reason: .torProtocol, failure: .unexpected("DATA before CONNECTED"))
            }
            return actions + [.event(.streamData(streamID: id, data))]
        case .end(let end):
            self.streamPhases[id] = nil
            self.hops[hop].removeStream(id)
            return actions + [.event(.streamEnded(streamID: id, end))]
        default:
            return actions + [.event(.streamMessage(streamID: id, command: cell.command, body: cell.data))]
        }
    }

    /// We end a stream because the exit broke its protocol: END TORPROTOCOL out, event up.
    private mutating func endStream(_ id: UInt16, reason: EndReason, failure: CircuitFailure) -> [ClientCircuitAction] {
        self.streamPhases[id] = nil
        let hop = self.hops.count - 1
        self.hops[hop].removeStream(id)
        var actions: [ClientCircuitAction] = []
        if let out = self.originate(self.relayCell(.end(End(reason: reason)), streamID: id), toHop: hop, early: false) {
            actions.append(out)
        }
        actions.append(.event(.streamEnded(streamID: id, End(reason: reason))))
        return actions
    }

    private mutating func sendToExit(_ cells: [RelayCell]) -> [ClientCircuitAction] {
        let hop = self.hops.count - 1
        for cell in cells { self.hops[hop].enqueue(cell) }
        return self.drain(hop: hop)
    }

    /// Send every queued cell the windows of `hop` allow.
    private mutating func drain(hop: Int) -> [ClientCircuitAction] {
        var actions: [ClientCircuitAction] = []
        while let cell = self.hops[hop].nextSendable() {
            let needsDigest = self.hops[hop].needsDigest(cell)
            guard let out = self.originate(cell, toHop: hop, early: false) else { break }
            actions.append(out)
            self.hops[hop].didSend(cell, digest: needsDigest ? SendmeDigest(self.crypto.outboundDigest(hop: hop) ?? []) : nil)
            if cell.command == .end, self.streamPhases[cell.streamID] == nil, self.hops[hop].queuedBytes(cell.streamID) == 0 {
                self.hops[hop].removeStream(cell.streamID)
            }
        }
        return actions
    }

    /// Encrypt a relay cell for `hop` and frame it. Returns nil if the RELAY_EARLY budget is spent.
    private mutating func originate(_ cell: RelayCell, toHop hop: Int, early: Bool) -> ClientCircuitAction? {
        if early {
            guard self.relayEarlySent < maximumRelayEarlyCells else { return nil }
            self.relayEarlySent += 1
        }
        do {
            var body = try cell.encode(padding: &self.rng)
            try body.withUnsafeMutableBytes { try self.crypto.encryptOutbound($0, toHop: hop) }
            return self.channelCell(early ? .relayEarly(body) : .relay(body))
        } catch {
            // Only reachable if our own cell were oversized: a bug, reported as a dropped cell.
            assertionFailure("could not originate \(cell.command): \(error)")
            return nil
        }
    }

    private func relayCell(_ message: RelayMessage, streamID: UInt16) -> RelayCell {
        do {
            return try RelayCell(streamID: streamID, message: message)
        } catch {
            preconditionFailure("locally built \(message.command) does not fit a relay cell: \(error)")
        }
    }

    private func channelCell(_ message: ChannelMessage) -> ClientCircuitAction {
        var payload = ByteBuffer()
        do { try message.writePayload(into: &payload) } catch { preconditionFailure("unencodable \(message.command)") }
        return .send(ChannelCell(circuitID: self.circuitID, command: message.command, payload: payload))
    }

    /// Tear down because of bad input: DESTROY with the failure's reason, and tell the owner why.
    private mutating func fail(_ failure: CircuitFailure) -> [ClientCircuitAction] {
        let reason = failure.destroyReason
        self.teardown()
        return [self.channelCell(.destroy(reason)), .event(.closed(reason, failure: failure))]
    }

    /// Drop every per-circuit resource.
    private mutating func teardown() {
        self.phase = .closed
        self.ntorState = nil
        self.createFastState = nil
        self.hops.removeAll()
        self.streamPhases.removeAll()
        self.crypto.truncate(to: 0)
    }
}
