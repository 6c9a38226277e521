import NIOCore
import NetBasics
import TorCells
import TorCrypto

/// Names a relay-side circuit by its previous hop: the channel it came in on and the ID the previous
/// hop chose. Stable for the circuit's lifetime; exits and the application use it as a handle.
public struct RelayCircuitID: Hashable, Sendable, CustomStringConvertible {
    public var channel: ChannelID
    public var circuitID: UInt32
    public init(channel: ChannelID, circuitID: UInt32) {
        self.channel = channel
        self.circuitID = circuitID
    }
    public var description: String { "\(channel)/\(circuitID)" }
}

/// The relay (OR) side: every circuit that passes through or ends at this relay, across all its
/// channels. Sans-I/O: the owner registers channels, feeds cells and completion events, and performs
/// the returned actions. Peer input never traps: bad input yields DESTROY/END with a reason.
///
/// Forwarding crosses channels, so one value owns all of them: confine it to one event loop (or an
/// actor) and hop there from each channel handler. Crypto state lives in reference-typed TorCrypto
/// objects: do not copy the relay and use both copies.
public struct OnionRelay {
    public let configuration: OnionRelayConfiguration

    struct Channel {
        var circuits: CircuitMultiplexer<Side>
        var peerIdentity: RSAIdentity?
    }

    /// Which end of a circuit a channel's circuit ID is.
    enum Side: Hashable {
        /// This channel leads toward the client.
        case previous(RelayCircuitID)
        /// This channel leads away from the client; the value names the circuit.
        case next(RelayCircuitID)
    }

    enum ExtendState {
        case none
        case awaitingChannel(Create2)
        case awaitingCreated
        case extended
    }

    enum StreamState {
        case connecting
        case open
        /// Opened implicitly by an application message; carries application commands only.
        case application
    }

    struct Circuit {
        let crypto: RelayCircuitCrypto
        var next: (channel: ChannelID, circuitID: UInt32)?
        var extend: ExtendState = .none
        var relayEarlyReceived = 0
        var endpoint: CircuitEndpoint
        var streams: [UInt16: StreamState] = [:]
        /// Streams whose producer we told to pause (`RelayAction.pauseProducer`), and what it is.
        var pausedProducers: [UInt16: Producer] = [:]
    }

    var channels: [ChannelID: Channel] = [:]
    var circuits: [RelayCircuitID: Circuit] = [:]
    /// Handshake secrets, padding and circuit IDs: a CSPRNG in production, seeded in tests.
    var rng: any RandomNumberGenerator

    public init(configuration: OnionRelayConfiguration, rng: any RandomNumberGenerator = SystemRandomNumberGenerator()) {
        self.configuration = configuration
        self.rng = rng
    }

    public var circuitCount: Int { self.circuits.count }
    public var circuitIDs: [RelayCircuitID] { Array(self.circuits.keys) }
    public func hasCircuit(_ id: RelayCircuitID) -> Bool { self.circuits[id] != nil }
    /// The channels that circuits on `channel` lead to (their other side): where cells read from
    /// `channel` are forwarded, and where cells written to it come from.
    public func linkedChannels(_ channel: ChannelID) -> Set<ChannelID> {
        guard let entry = self.channels[channel] else { return [] }
        var linked: Set<ChannelID> = []
        for (_, side) in entry.circuits.circuits {
            switch side {
            case .previous(let id): if let next = self.circuits[id]?.next { linked.insert(next.channel) }
            case .next(let id): linked.insert(id.channel)
            }
        }
        return linked
    }
    /// Circuits registered on a channel, either side (for tests and metrics).
    public func circuitCount(on channel: ChannelID) -> Int { self.channels[channel]?.circuits.count ?? 0 }
    /// Bytes queued on a stream waiting for window: stop reading its TCP connection above a limit.
    public func queuedBytes(_ circuit: RelayCircuitID, streamID: UInt16) -> Int {
        self.circuits[circuit]?.endpoint.queuedBytes(streamID) ?? 0
    }
    /// Bytes queued on all streams of a circuit (bounded by `queueLimits.maximumBytes`).
    public func queuedBytes(_ circuit: RelayCircuitID) -> Int {
        self.circuits[circuit]?.endpoint.totalQueuedBytes ?? 0
    }
    /// Streams (exit and application) the circuit holds open.
    public func streamCount(_ circuit: RelayCircuitID) -> Int { self.circuits[circuit]?.streams.count ?? 0 }

    // MARK: channels

    /// A channel finished its link handshake. `role`: whether we initiated it (decides our circuit-ID
    /// half). `peerIdentity`: the authenticated RSA identity of a relay peer; nil for clients.
    public mutating func channelOpened(_ channel: ChannelID, role: ChannelRole, peerIdentity: RSAIdentity?) {
        self.channels[channel] = Channel(circuits: CircuitMultiplexer(role: role), peerIdentity: peerIdentity)
    }

    /// The channel is gone: every circuit on it dies, and the other side of each is told.
    public mutating func channelClosed(_ channel: ChannelID) -> [RelayAction] {
        guard let entry = self.channels.removeValue(forKey: channel) else { return [] }
        var actions: [RelayAction] = []
        for (_, side) in entry.circuits.circuits {
            switch side {
            case .previous(let id), .next(let id):
                actions += self.close(id, reason: .channelClosed, failure: .channelClosed, notify: true)
            }
        }
        return actions
    }

    // MARK: cells

    /// Feed a cell received on `channel` (already framed by the channel layer).
    public mutating func receive(_ cell: ChannelCell, on channel: ChannelID) -> [RelayAction] {
        let side = self.channels[channel]?.circuits[cell.circuitID]
        var actions = self.receiveCell(cell, on: channel)
        // A SENDME (or an END dropping a stream's queue) may have made room for paused producers.
        switch side {
        case .previous(let id)?, .next(let id)?: actions += self.resumeProducers(id)
        case nil: break
        }
        return actions
    }

    mutating func receiveCell(_ cell: ChannelCell, on channel: ChannelID) -> [RelayAction] {
        guard let entry = self.channels[channel] else {
            return [.dropped(channel, circuitID: cell.circuitID, reason: "cell on unregistered channel")]
        }
        let side = entry.circuits[cell.circuitID]
        let message: ChannelMessage
        do {
            message = try cell.message()
        } catch {
            switch side {
            case .previous(let id)?, .next(let id)?:
                return self.close(id, reason: .protocol, failure: .malformed(error), notify: true)
            case nil:
                if [.create2, .createFast].contains(cell.command), cell.circuitID != 0 {
                    return [self.destroyCell(cell.circuitID, .protocol, on: channel)]
                }
                return [.dropped(channel, circuitID: cell.circuitID, reason: "malformed \(cell.command): \(error)")]
            }
        }

        switch message {
        case .create2, .createFast:
            guard side == nil else {
                return [.dropped(channel, circuitID: cell.circuitID, reason: "\(cell.command) for a circuit ID in use")]
            }
            return self.create(message, circuitID: cell.circuitID, on: channel)
        case .unknown(.create, _):
            // TAP is gone (tor 0.4.9); refuse like any unsupported handshake.
            guard side == nil, cell.circuitID != 0 else { return [.dropped(channel, circuitID: cell.circuitID, reason: "CREATE")] }
            return [self.destroyCell(cell.circuitID, .protocol, on: channel)]
        case .destroy(let reason):
            switch side {
            case .previous(let id)?, .next(let id)?:
                // Propagate as DESTROYED, not the peer's reason: a reason relayed end to end is a side
                // channel between colluding hops (tor bug 40649). The owner still sees the real one.
                return self.close(id, reason: reason, failure: nil, notify: true, except: channel, sending: .destroyed)
            case nil:
                return [.dropped(channel, circuitID: cell.circuitID, reason: "DESTROY for an unknown circuit")]
            }
        case .relay(let body), .relayEarly(let body):
            let early = message.command == .relayEarly
            switch side {
            case .previous(let id)?: return self.forward(id, body, early: early)
            case .next(let id)?: return self.backward(id, body, early: early)
            case nil:
                // tor-spec §5: relay cells for unknown circuits are dropped.
                return [.dropped(channel, circuitID: cell.circuitID, reason: "\(cell.command) for an unknown circuit")]
            }
        case .created2(let created):
            guard case .next(let id)? = side, case .awaitingCreated? = self.circuits[id]?.extend else {
                return self.unexpected(side, channel, cell)
            }
            // The next hop's reply must fit one relay cell; a hostile one might not.
            guard let extended = try? RelayCell(streamID: 0, message: .extended2(created)) else {
                return self.close(id, reason: .protocol, failure: .malformed(.payloadTooLong(
                    length: created.handshakeData.readableBytes + 2, limit: RelayCellBody.maximumDataLength)), notify: true)
            }
            self.circuits[id]!.extend = .extended
            return self.originateNow(id, extended)
        case .padding, .vpadding, .paddingNegotiate:
            return []
        case .unknown:
            // tor ignores cell commands it does not know (newer peers may send them).
            return [.dropped(channel, circuitID: cell.circuitID, reason: "unknown cell command \(cell.command)")]
        case .versions, .certs, .authChallenge, .authenticate, .netinfo:
            return [.dropped(channel, circuitID: cell.circuitID, reason: "link-handshake cell \(cell.command) after the handshake")]
        case .createdFast:
            return self.unexpected(side, channel, cell)
        }
    }

    mutating func unexpected(_ side: Side?, _ channel: ChannelID, _ cell: ChannelCell) -> [RelayAction] {
        switch side {
        case .previous(let id)?, .next(let id)?:
            return self.close(id, reason: .protocol, failure: .unexpected("\(cell.command) on an open circuit"), notify: true)
        case nil:
            return [.dropped(channel, circuitID: cell.circuitID, reason: "\(cell.command) for an unknown circuit")]
        }
    }

    /// CREATE2 / CREATE_FAST from a previous hop.
    mutating func create(_ message: ChannelMessage, circuitID: UInt32, on channel: ChannelID) -> [RelayAction] {
        guard circuitID != 0 else { return [.dropped(channel, circuitID: 0, reason: "\(message.command) on circuit 0")] }
        guard self.channels[channel]!.circuits.allocator.isValidPeerID(circuitID) else {
            // tor closes circuits whose ID has the wrong high bit for the peer's role.
            return [self.destroyCell(circuitID, .protocol, on: channel)]
        }
        guard self.channels[channel]!.circuits.count < self.configuration.maximumCircuitsPerChannel else {
            return [self.destroyCell(circuitID, .resourceLimit, on: channel)]
        }
        let reply: ChannelMessage
        let keys: CircuitKeys
        do {
            switch message {
            case .create2(let create):
                guard create.handshakeType == Ntor.handshakeType else {
                    return [self.destroyCell(circuitID, .protocol, on: channel)]
                }
                let result = try Ntor.serverRespond(
                    onionskin: Array(create.handshakeData.readableBytesView), keys: self.configuration.ntorKeys,
                    using: &self.rng)
                reply = .created2(Created2(handshakeData: ByteBuffer(bytes: result.reply)))
                keys = result.keys
            case .createFast(let create):
                let y = randomBytes(CreateFastHandshake.nonceLength, using: &self.rng)
                let result = try CreateFastHandshake.serverRespond(x: create.keyMaterial, y: y)
                reply = .createdFast(try TorCells.CreatedFast(
                    keyMaterial: Array(result.reply[0..<20]), derivativeKeyData: Array(result.reply[20..<40])))
                keys = result.keys
            default:
                return []
            }
        } catch {
            return [self.destroyCell(circuitID, .protocol, on: channel)]
        }
        let crypto: RelayCircuitCrypto
        do { crypto = try RelayCircuitCrypto(keys: keys) } catch { return [self.destroyCell(circuitID, .internal, on: channel)] }
        let id = RelayCircuitID(channel: channel, circuitID: circuitID)
        do {
            try self.channels[channel]!.circuits.acceptInbound(circuitID, .previous(id))
        } catch {
            return [.dropped(channel, circuitID: circuitID, reason: "\(error)")]
        }
        self.circuits[id] = Circuit(crypto: crypto, endpoint: CircuitEndpoint(
            minimumSendmeVersion: self.configuration.minimumSendmeVersion,
            applicationCommands: self.configuration.applicationCommands))
        return [self.cell(reply, circuitID: circuitID, on: channel)]
    }

    /// Tear a circuit down (e.g. the application is done with it): DESTROY both ways.
    public mutating func destroyCircuit(_ id: RelayCircuitID, reason: DestroyReason = .finished) -> [RelayAction] {
        self.close(id, reason: reason, failure: nil, notify: true)
    }

    // MARK: sending toward the client

    /// We end a stream ourselves: END to the client, and close its TCP connection.
    mutating func endStream(_ id: RelayCircuitID, _ streamID: UInt16, reason: EndReason, closeTCP: Bool = true) -> [RelayAction] {
        let state = self.circuits[id]!.streams.removeValue(forKey: streamID)
        self.circuits[id]!.endpoint.removeStream(streamID)
        var actions = self.originateNow(id, RelayCell(ours: .end(End(reason: reason)), streamID: streamID))
        if closeTCP, state != nil { actions.append(.closeStream(id, streamID: streamID, reason)) }
        return actions
    }

    mutating func streamSendmes(_ id: RelayCircuitID, _ streamID: UInt16, count: Int) -> [RelayAction] {
        (0..<count).flatMap { _ in self.originateNow(id, RelayCell(ours: .sendme(.v0), streamID: streamID)) }
    }

    /// Queue cells toward the client and send what the windows allow. `producer`: the exit or
    /// application stream that produced them, paused if the circuit is now full.
    mutating func originate(_ id: RelayCircuitID, _ cells: [RelayCell], producer: Producer? = nil, on streamID: UInt16 = 0) -> [RelayAction] {
        for cell in cells { self.circuits[id]!.endpoint.enqueue(cell) }
        let actions = self.drain(id)
        let queued = self.circuits[id]!.endpoint.totalQueuedBytes
        guard queued <= self.configuration.queueLimits.maximumBytes else {
            return actions + self.close(id, reason: .resourceLimit, failure: .resourceLimit(
                "\(queued) bytes queued toward the client (limit \(self.configuration.queueLimits.maximumBytes))"), notify: true)
        }
        guard let producer else { return actions }
        return actions + self.pauseIfFull(id, producer, streamID)
    }

    /// Send a control cell (SENDME, END, EXTENDED2, ...) now, bypassing the queues.
    mutating func originateNow(_ id: RelayCircuitID, _ cell: RelayCell) -> [RelayAction] {
        guard let out = self.encrypt(id, cell) else { return [] }
        return [out]
    }

    mutating func drain(_ id: RelayCircuitID) -> [RelayAction] {
        var actions: [RelayAction] = []
        while let cell = self.circuits[id]!.endpoint.nextSendable() {
            let needsDigest = self.circuits[id]!.endpoint.needsDigest(cell)
            guard let out = self.encrypt(id, cell) else { break }
            actions.append(out)
            let digest = needsDigest ? SendmeDigest(self.circuits[id]!.crypto.backwardDigest) : nil
            self.circuits[id]!.endpoint.didSend(cell, digest: digest)
            // A stream already forgotten (END sent, application stream released) keeps its flow
            // state only until its queue is out.
            if cell.streamID != 0, self.circuits[id]!.streams[cell.streamID] == nil,
                self.circuits[id]!.endpoint.hasNothingQueued(cell.streamID)
            {
                self.circuits[id]!.endpoint.removeStream(cell.streamID)
            }
        }
        return actions
    }

    mutating func encrypt(_ id: RelayCircuitID, _ cell: RelayCell) -> RelayAction? {
        do {
            var body = try cell.encode(padding: &self.rng)
            let crypto = self.circuits[id]!.crypto
            try body.withUnsafeMutableBytes { try crypto.originateBackward($0) }
            return .send(ChannelCell(circuitID: id.circuitID, command: .relay, payload: body.bytes), on: id.channel)
        } catch {
            assertionFailure("could not originate \(cell.command): \(error)")
            return nil
        }
    }

    // MARK: teardown

    /// Drop the circuit and everything it holds; DESTROY the sides other than `except` when `notify`, with
    /// reason `sending` if given, else `reason`.
    mutating func close(
        _ id: RelayCircuitID, reason: DestroyReason, failure: CircuitFailure?, notify: Bool, except: ChannelID? = nil,
        sending wireReason: DestroyReason? = nil
    ) -> [RelayAction] {
        guard let circuit = self.circuits.removeValue(forKey: id) else { return [] }
        var actions: [RelayAction] = []
        self.channels[id.channel]?.circuits.remove(id.circuitID)
        if notify, except != id.channel, self.channels[id.channel] != nil {
            actions.append(self.destroyCell(id.circuitID, wireReason ?? reason, on: id.channel))
        }
        if let next = circuit.next {
            self.channels[next.channel]?.circuits.remove(next.circuitID)
            if notify, except != next.channel, self.channels[next.channel] != nil {
                actions.append(self.destroyCell(next.circuitID, wireReason ?? reason, on: next.channel))
            }
        }
        for streamID in circuit.streams.keys.sorted() {
            actions.append(.closeStream(id, streamID: streamID, .destroy))
        }
        actions.append(.circuitClosed(id, reason, failure: failure))
        return actions
    }

    func destroyCell(_ circuitID: UInt32, _ reason: DestroyReason, on channel: ChannelID) -> RelayAction {
        self.cell(.destroy(reason), circuitID: circuitID, on: channel)
    }

    func cell(_ message: ChannelMessage, circuitID: UInt32, on channel: ChannelID) -> RelayAction {
        var payload = ByteBuffer()
        do { try message.writePayload(into: &payload) } catch { preconditionFailure("unencodable \(message.command): \(error)") }
        return .send(ChannelCell(circuitID: circuitID, command: message.command, payload: payload), on: channel)
    }
}

extension RelayCell {
    /// A relay cell for a message we build ourselves, which always fits.
    init(ours message: RelayMessage, streamID: UInt16) {
        do {
            try self.init(streamID: streamID, message: message)
        } catch {
            preconditionFailure("locally built \(message.command) does not fit a relay cell: \(error)")
        }
    }
}
