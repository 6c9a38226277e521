import NIOCore
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

/// Where an EXTEND2 asks us to go, from its link specifiers.
public struct ExtendTarget: Hashable, Sendable {
    public var address: IPv4Address
    public var port: UInt16
    public var rsaIdentity: RSAIdentity
    public var ed25519Identity: Ed25519Identity?
    /// The optional IPv6 OR address ([01] link specifier); port 0 when absent.
    public var ipv6Address: IPv6Address?
    public var ipv6Port: UInt16 = 0

    public init(address: IPv4Address, port: UInt16, rsaIdentity: RSAIdentity, ed25519Identity: Ed25519Identity?) {
        self.address = address
        self.port = port
        self.rsaIdentity = rsaIdentity
        self.ed25519Identity = ed25519Identity
    }

    /// Read the link specifiers; tor requires an IPv4 address and an RSA identity (tor-spec §5.1.2).
    init(linkSpecifiers: [LinkSpecifier]) throws(CircuitFailure) {
        var v4: (IPv4Address, UInt16)?
        var v6: (IPv6Address, UInt16)?
        var rsa: RSAIdentity?
        var ed: Ed25519Identity?
        for spec in linkSpecifiers {
            switch spec {
            case .ipv4(let a, let port): if v4 == nil { v4 = (a, port) }
            case .ipv6(let a, let port): if v6 == nil { v6 = (a, port) }
            case .rsaIdentity(let id): if rsa == nil { rsa = try? RSAIdentity(bytes: id) }
            case .ed25519Identity(let id): if ed == nil { ed = try? Ed25519Identity(bytes: id) }
            case .unknown: break
            }
        }
        guard let v4 else { throw .extendRefused("no IPv4 link specifier") }
        guard let rsa else { throw .extendRefused("no RSA identity link specifier") }
        guard v4.1 != 0 else { throw .extendRefused("port 0") }
        self.init(address: v4.0, port: v4.1, rsaIdentity: rsa, ed25519Identity: ed)
        self.ipv6Address = v6?.0
        self.ipv6Port = v6?.1 ?? 0
    }
}

/// Static configuration of the relay side.
public struct OnionRelayConfiguration: Sendable {
    /// Our RSA identity: we refuse to extend to ourselves.
    public var identity: RSAIdentity
    /// Current (and, during rotation, previous) ntor onion keys.
    public var ntorKeys: [NtorSecretKey]
    /// Which (address, port) BEGIN may reach. Default: nothing.
    public var exitPolicy: AddressPolicy
    /// Which (address, port) EXTEND2 may reach.
    public var extendPolicy: AddressPolicy
    /// Allow extending to loopback/private addresses (tor's ExtendAllowPrivateAddresses; test networks).
    public var extendAllowPrivateAddresses: Bool
    /// Relay commands recognised at this hop that are handed to the application, which of them open
    /// a stream, and which count toward the circuit window. Default: none.
    public var applicationCommands: ApplicationCommands
    /// Bytes one circuit may have queued toward the client (waiting for the circuit or stream window).
    /// The owner pauses its producers well below this; a circuit that still goes over (a client that
    /// withholds SENDMEs while something keeps producing) is destroyed with RESOURCELIMIT rather than
    /// allowed to grow without bound.
    public var maximumQueuedBytesPerCircuit: Int
    /// Lowest SENDME version accepted from clients (0 admits node-Tor's empty SENDMEs).
    public var minimumSendmeVersion: UInt8
    /// Accept BEGIN on a circuit whose previous hop is a client (not an authenticated relay). C tor
    /// refuses, so that it is not used as a one-hop proxy; the application hook is not affected.
    public var allowSingleHopExits: Bool
    /// Circuits one channel may carry; more CREATEs get DESTROY RESOURCELIMIT. Bounds what one peer
    /// can make us hold.
    public var maximumCircuitsPerChannel: Int
    /// Streams (exit and application) one circuit may hold; more get END RESOURCELIMIT.
    public var maximumStreamsPerCircuit: Int

    public init(
        identity: RSAIdentity, ntorKeys: [NtorSecretKey], exitPolicy: AddressPolicy = .rejectAll,
        extendPolicy: AddressPolicy = .acceptAll, extendAllowPrivateAddresses: Bool = false,
        applicationCommands: ApplicationCommands = .none,
        minimumSendmeVersion: UInt8 = 1,
        allowSingleHopExits: Bool = false, maximumCircuitsPerChannel: Int = 8192, maximumStreamsPerCircuit: Int = 1024,
        maximumQueuedBytesPerCircuit: Int = 4 << 20
    ) {
        self.identity = identity
        self.ntorKeys = ntorKeys
        self.exitPolicy = exitPolicy
        self.extendPolicy = extendPolicy
        self.extendAllowPrivateAddresses = extendAllowPrivateAddresses
        self.applicationCommands = applicationCommands
        self.minimumSendmeVersion = minimumSendmeVersion
        self.allowSingleHopExits = allowSingleHopExits
        self.maximumCircuitsPerChannel = maximumCircuitsPerChannel
        self.maximumStreamsPerCircuit = maximumStreamsPerCircuit
        self.maximumQueuedBytesPerCircuit = maximumQueuedBytesPerCircuit
    }
}

/// What the relay state machine asks its owner to do.
public enum RelayAction: Hashable, Sendable {
    /// Write this cell on that channel.
    case send(ChannelCell, on: ChannelID)
    /// Find an open channel to `target` (checking its identities) or open one, then call
    /// `extendChannelReady(_:channel:)`, or `extendChannelFailed(_:reason:)`.
    case openChannel(ExtendTarget, for: RelayCircuitID)
    /// Exit: open a TCP connection (the policy allowed it; for a hostname, re-check the resolved address
    /// with `AddressPolicy.allows`), then call `streamConnected` or `streamConnectFailed`.
    case connect(RelayCircuitID, streamID: UInt16, host: String, port: UInt16)
    /// Exit: write these bytes to the stream's TCP connection. Clients may send data optimistically
    /// right after BEGIN, so this can come before the connect completes: buffer it until then.
    case streamData(RelayCircuitID, streamID: UInt16, ByteBuffer)
    /// The stream is gone (END received, protocol violation, or the circuit is gone): the exit closes
    /// its TCP connection, the application forgets its stream.
    case closeStream(RelayCircuitID, streamID: UInt16, EndReason)
    /// Application hook: a relay message with an application command arrived for us.
    /// Answer with `sendApplicationMessage`.
    case application(RelayCircuitID, streamID: UInt16, command: RelayCommand, body: ByteBuffer)
    /// The circuit is gone and all its resources dropped. `failure` is set when we tore it down because
    /// of bad input (log it); nil when a peer sent DESTROY or the owner asked.
    case circuitClosed(RelayCircuitID, DestroyReason, failure: CircuitFailure?)
    /// An input was ignored (per tor-spec: e.g. a cell for an unknown circuit). Worth a debug log.
    case dropped(ChannelID, circuitID: UInt32, reason: String)
}

/// Errors from the owner's own calls; they do not change any circuit.
public enum OnionRelayError: Error, Hashable, Sendable {
    case unknownCircuit(RelayCircuitID)
    case unknownStream(RelayCircuitID, UInt16)
    case unknownChannel(ChannelID)
    /// A non-data relay message longer than one cell (498 bytes); only DATA and bulk application
    /// commands are split.
    case messageTooLong(RelayCommand, Int)
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

    private struct Channel {
        var circuits: CircuitMultiplexer<Side>
        var peerIdentity: RSAIdentity?
    }

    /// Which end of a circuit a channel's circuit ID is.
    private enum Side: Hashable {
        /// This channel leads toward the client.
        case previous(RelayCircuitID)
        /// This channel leads away from the client; the value names the circuit.
        case next(RelayCircuitID)
    }

    private enum ExtendState {
        case none
        case awaitingChannel(Create2)
        case awaitingCreated
        case extended
    }

    private enum StreamState {
        case connecting
        case open
        /// Opened implicitly by an application message; carries application commands only.
        case application
    }

    private struct Circuit {
        let crypto: RelayCircuitCrypto
        var next: (channel: ChannelID, circuitID: UInt32)?
        var extend: ExtendState = .none
        var relayEarlyReceived = 0
        var endpoint: CircuitEndpoint
        var streams: [UInt16: StreamState] = [:]
    }

    private var channels: [ChannelID: Channel] = [:]
    private var circuits: [RelayCircuitID: Circuit] = [:]
    /// Handshake secrets, padding and circuit IDs: a CSPRNG in production, seeded in tests.
    private var rng: any RandomNumberGenerator

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
    /// Bytes queued on all streams of a circuit (bounded by `maximumQueuedBytesPerCircuit`).
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

    private mutating func unexpected(_ side: Side?, _ channel: ChannelID, _ cell: ChannelCell) -> [RelayAction] {
        switch side {
        case .previous(let id)?, .next(let id)?:
            return self.close(id, reason: .protocol, failure: .unexpected("\(cell.command) on an open circuit"), notify: true)
        case nil:
            return [.dropped(channel, circuitID: cell.circuitID, reason: "\(cell.command) for an unknown circuit")]
        }
    }

    /// CREATE2 / CREATE_FAST from a previous hop.
    private mutating func create(_ message: ChannelMessage, circuitID: UInt32, on channel: ChannelID) -> [RelayAction] {
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

    // MARK: relay cells

    /// A relay cell travelling away from the client.
    private mutating func forward(_ id: RelayCircuitID, _ body: RelayCellBody, early: Bool) -> [RelayAction] {
        if early {
            self.circuits[id]!.relayEarlyReceived += 1
            guard self.circuits[id]!.relayEarlyReceived <= maximumRelayEarlyCells else {
                return self.close(id, reason: .protocol, failure: .tooManyRelayEarly, notify: true)
            }
        }
        var body = body
        let recognized: Bool
        do {
            let crypto = self.circuits[id]!.crypto
            recognized = try body.withUnsafeMutableBytes { try crypto.decryptForward($0) }
        } catch {
            return self.close(id, reason: .internal, failure: .crypto("\(error)"), notify: true)
        }
        if recognized { return self.handleRecognized(id, body, early: early) }
        guard let next = self.circuits[id]!.next, case .extended = self.circuits[id]!.extend else {
            // Last hop and the digest does not match: someone tampered with the cell.
            return self.close(id, reason: .protocol, failure: .unrecognizedRelayCell, notify: true)
        }
        let command: ChannelCommand = early ? .relayEarly : .relay
        return [.send(ChannelCell(circuitID: next.circuitID, command: command, payload: body.bytes), on: next.channel)]
    }

    /// A relay cell from the next hop travelling toward the client: add our layer and pass it on.
    private mutating func backward(_ id: RelayCircuitID, _ body: RelayCellBody, early: Bool) -> [RelayAction] {
        guard !early else { return self.close(id, reason: .protocol, failure: .inboundRelayEarly, notify: true) }
        var body = body
        do {
            let crypto = self.circuits[id]!.crypto
            try body.withUnsafeMutableBytes { try crypto.relayBackward($0) }
        } catch {
            return self.close(id, reason: .internal, failure: .crypto("\(error)"), notify: true)
        }
        return [.send(ChannelCell(circuitID: id.circuitID, command: .relay, payload: body.bytes), on: id.channel)]
    }

    /// A relay cell addressed to this hop.
    private mutating func handleRecognized(_ id: RelayCircuitID, _ body: RelayCellBody, early: Bool) -> [RelayAction] {
        let cell: RelayCell
        do { cell = try RelayCell(decoding: body) } catch {
            return self.close(id, reason: .protocol, failure: .malformed(error), notify: true)
        }

        var actions: [RelayAction] = []
        do {
            let digest = SendmeDigest(self.circuits[id]!.crypto.forwardDigest)
            if let sendme = try self.circuits[id]!.endpoint.receivedCircuitLevel(cell, digest: digest) {
                actions += self.originateNow(id, RelayCell(ours: .sendme(sendme), streamID: 0))
            }
        } catch {
            return self.close(id, reason: .protocol, failure: .flowControl(error), notify: true)
        }

        let streamID = cell.streamID
        if self.configuration.applicationCommands.contains(cell.command) {
            if streamID != 0 && self.circuits[id]!.streams[streamID] == nil {
                guard self.configuration.applicationCommands.opening.contains(cell.command.rawValue) else {
                    return actions + [.dropped(id.channel, circuitID: id.circuitID, reason: "\(cell.command) for unknown stream \(streamID)")]
                }
                guard self.circuits[id]!.streams.count < self.configuration.maximumStreamsPerCircuit else {
                    return actions + self.originateNow(id, RelayCell(ours: .end(End(reason: .resourceLimit)), streamID: streamID))
                }
                self.circuits[id]!.streams[streamID] = .application
                self.circuits[id]!.endpoint.addStream(streamID)
            }
            return actions + [.application(id, streamID: streamID, command: cell.command, body: cell.data)]
        }

        let message: RelayMessage
        do { message = try cell.message() } catch {
            if cell.command.isStreamCommand && streamID != 0 {
                return actions + self.endStream(id, streamID, reason: .torProtocol)
            }
            return self.close(id, reason: .protocol, failure: .malformed(error), notify: true)
        }
        if cell.command.isStreamCommand && streamID == 0 {
            return self.close(id, reason: .protocol, failure: .badStreamID(cell.command, 0), notify: true)
        }

        switch message {
        case .extend2(let extend):
            return actions + self.extend(id, extend, early: early)
        case .sendme(let sendme):
            do {
                try self.circuits[id]!.endpoint.receivedSendme(streamID: streamID, sendme)
            } catch {
                return self.close(id, reason: .protocol, failure: .flowControl(error), notify: true)
            }
            return actions + self.drain(id)
        case .begin(let begin):
            return actions + self.begin(id, streamID, begin)
        case .beginDir:
            // We are not a directory cache.
            return actions + self.originateNow(id, RelayCell(ours: .end(End(reason: .notDirectory)), streamID: streamID))
        case .data(let data):
            guard let state = self.circuits[id]!.streams[streamID], state != .application else {
                return actions + [.dropped(id.channel, circuitID: id.circuitID, reason: "DATA for unknown stream \(streamID)")]
            }
            do {
                actions += self.streamSendmes(id, streamID, count: try self.circuits[id]!.endpoint.receivedStreamLevel(cell))
            } catch {
                return actions + self.endStream(id, streamID, reason: .torProtocol)
            }
            return actions + [.streamData(id, streamID: streamID, data)]
        case .end(let end):
            guard self.circuits[id]!.streams.removeValue(forKey: streamID) != nil else { return actions }
            self.circuits[id]!.endpoint.removeStream(streamID)
            return actions + [.closeStream(id, streamID: streamID, end.reason)]
        case .truncate:
            var out = actions
            if let next = self.circuits[id]!.next {
                self.channels[next.channel]?.circuits.remove(next.circuitID)
                out.append(self.destroyCell(next.circuitID, .requested, on: next.channel))
            }
            self.circuits[id]!.next = nil
            self.circuits[id]!.extend = .none
            return out + self.originateNow(id, RelayCell(ours: .truncated(.requested), streamID: 0))
        case .drop:
            return actions
        case .connected, .extended2, .truncated:
            return self.close(id, reason: .protocol, failure: .unexpected("\(cell.command) sent toward the exit"), notify: true)
        case .raw(.resolve, _) where streamID != 0:
            // We do not resolve names for clients: answer RESOLVED with one "transient error" entry
            // (type 0xF0, empty value, TTL 0) rather than leave the client waiting.
            let resolved = RelayCell(command: .resolved, streamID: streamID, data: ByteBuffer(bytes: [0xF0, 0, 0, 0, 0, 0]))
            return actions + self.originateNow(id, resolved)
        case .raw(let command, _):
            return actions + [.dropped(id.channel, circuitID: id.circuitID, reason: "unsupported relay command \(command)")]
        }
    }

    private mutating func extend(_ id: RelayCircuitID, _ extend: Extend2, early: Bool) -> [RelayAction] {
        guard early else { return self.close(id, reason: .protocol, failure: .extendNotInRelayEarly, notify: true) }
        guard case .none = self.circuits[id]!.extend, self.circuits[id]!.next == nil else {
            return self.close(id, reason: .protocol, failure: .alreadyExtended, notify: true)
        }
        let target: ExtendTarget
        do { target = try ExtendTarget(linkSpecifiers: extend.linkSpecifiers) } catch {
            return self.close(id, reason: .protocol, failure: error, notify: true)
        }
        if let refusal = self.extendRefusal(target, from: id) {
            return self.close(id, reason: .protocol, failure: .extendRefused(refusal), notify: true)
        }
        self.circuits[id]!.extend = .awaitingChannel(extend.create2)
        return [.openChannel(target, for: id)]
    }

    private func extendRefusal(_ target: ExtendTarget, from id: RelayCircuitID) -> String? {
        if target.rsaIdentity == self.configuration.identity { return "extend to ourselves" }
        if let previous = self.channels[id.channel]?.peerIdentity, previous == target.rsaIdentity {
            return "extend back to the previous hop"
        }
        let address = IPAddress.v4(target.address)
        if address.isInternal && !self.configuration.extendAllowPrivateAddresses {
            return "private address \(target.address)"
        }
        if !self.configuration.extendPolicy.allows(address, port: target.port) {
            return "\(target.address):\(target.port) rejected by extend policy"
        }
        return nil
    }

    private mutating func begin(_ id: RelayCircuitID, _ streamID: UInt16, _ begin: Begin) -> [RelayAction] {
        guard self.circuits[id]!.streams[streamID] == nil else {
            return [.dropped(id.channel, circuitID: id.circuitID, reason: "BEGIN for stream \(streamID) already in use")]
        }
        guard self.circuits[id]!.streams.count < self.configuration.maximumStreamsPerCircuit else {
            return self.originateNow(id, RelayCell(ours: .end(End(reason: .resourceLimit)), streamID: streamID))
        }
        if !self.configuration.allowSingleHopExits && self.channels[id.channel]?.peerIdentity == nil {
            return self.originateNow(id, RelayCell(ours: .end(End(reason: .torProtocol)), streamID: streamID))
        }
        let policy = self.configuration.exitPolicy
        let allowed: Bool
        var rejected: End.ExitPolicyRejection?
        if let address = IPAddress(begin.host) {
            allowed = policy.allows(address, port: begin.port)
            rejected = End.ExitPolicyRejection(address: address, ttl: 0)
        } else {
            allowed = policy.mightAllowHostname(port: begin.port)
        }
        guard allowed else {
            return self.originateNow(id, RelayCell(ours: .end(End(reason: .exitPolicy, exitPolicy: rejected)), streamID: streamID))
        }
        self.circuits[id]!.streams[streamID] = .connecting
        self.circuits[id]!.endpoint.addStream(streamID)
        return [.connect(id, streamID: streamID, host: begin.host, port: begin.port)]
    }

    // MARK: owner inputs

    /// The channel for a pending EXTEND2 is ready: send CREATE2 on it.
    public mutating func extendChannelReady(_ id: RelayCircuitID, channel: ChannelID) -> [RelayAction] {
        guard let circuit = self.circuits[id], case .awaitingChannel(let create) = circuit.extend else { return [] }
        guard channel != id.channel, self.channels[channel] != nil else {
            return self.close(id, reason: .connectFailed, failure: .extendRefused("no usable channel"), notify: true)
        }
        let nextID: UInt32
        do {
            nextID = try self.channels[channel]!.circuits.openOutbound(.next(id), using: &self.rng)
        } catch {
            return self.close(id, reason: .resourceLimit, failure: .resourceLimit("circuit IDs on \(channel)"), notify: true)
        }
        self.circuits[id]!.next = (channel, nextID)
        self.circuits[id]!.extend = .awaitingCreated
        return [self.cell(.create2(create), circuitID: nextID, on: channel)]
    }

    /// Opening the channel for a pending EXTEND2 failed.
    public mutating func extendChannelFailed(_ id: RelayCircuitID, reason: DestroyReason = .connectFailed) -> [RelayAction] {
        guard let circuit = self.circuits[id], case .awaitingChannel = circuit.extend else { return [] }
        return self.close(id, reason: reason, failure: nil, notify: true)
    }

    /// Exit: the TCP connection for a BEGIN is up. Sends CONNECTED.
    public mutating func streamConnected(_ id: RelayCircuitID, streamID: UInt16, address: IPAddress?, ttl: UInt32 = 300) throws(OnionRelayError) -> [RelayAction] {
        guard self.circuits[id]?.streams[streamID] == .connecting else { throw .unknownStream(id, streamID) }
        self.circuits[id]!.streams[streamID] = .open
        var connected = Connected(address: address, ttl: ttl)
        if case .v4(let a)? = address, a.rawValue == 0 { connected = .empty }
        return self.originate(id, [RelayCell(ours: .connected(connected), streamID: streamID)])
    }

    /// Exit: the TCP connection for a BEGIN failed. Sends END with `reason`.
    public mutating func streamConnectFailed(_ id: RelayCircuitID, streamID: UInt16, reason: EndReason) throws(OnionRelayError) -> [RelayAction] {
        guard self.circuits[id]?.streams[streamID] == .connecting else { throw .unknownStream(id, streamID) }
        return self.endStream(id, streamID, reason: reason, closeTCP: false)
    }

    /// Exit: bytes read from the stream's TCP connection; sent as DATA as the windows allow.
    public mutating func streamReceived(_ id: RelayCircuitID, streamID: UInt16, data: ByteBuffer) throws(OnionRelayError) -> [RelayAction] {
        guard self.circuits[id]?.streams[streamID] == .open else { throw .unknownStream(id, streamID) }
        return self.originate(id, relayCells(command: .data, streamID: streamID, data: data))
    }

    /// Exit: the TCP connection closed (or the application ends a stream). Sends END after queued data.
    public mutating func closeStream(_ id: RelayCircuitID, streamID: UInt16, reason: EndReason = .done) throws(OnionRelayError) -> [RelayAction] {
        guard self.circuits[id]?.streams[streamID] != nil else { throw .unknownStream(id, streamID) }
        self.circuits[id]!.streams[streamID] = nil
        return self.originate(id, [RelayCell(ours: .end(End(reason: reason)), streamID: streamID)])
    }

    /// Exit backpressure: the stream's TCP connection stopped (or resumed) accepting writes. While
    /// paused, stream SENDMEs are withheld, so the client stops after its 500-cell stream window;
    /// resuming sends the SENDMEs owed.
    public mutating func setStreamPaused(_ id: RelayCircuitID, streamID: UInt16, _ paused: Bool) throws(OnionRelayError) -> [RelayAction] {
        guard self.circuits[id]?.streams[streamID] != nil else { throw .unknownStream(id, streamID) }
        return self.streamSendmes(id, streamID, count: self.circuits[id]!.endpoint.setPaused(streamID, paused))
    }

    /// Application hook: send a relay message back toward the client on `streamID` (0: circuit level).
    /// Bulk application commands and DATA are flow-controlled: what does not fit the window is queued, and
    /// bodies over 498 bytes are split into several cells. Other messages must fit one cell.
    public mutating func sendApplicationMessage(_ id: RelayCircuitID, streamID: UInt16, command: RelayCommand, body: ByteBuffer) throws(OnionRelayError) -> [RelayAction] {
        guard self.circuits[id] != nil else { throw .unknownCircuit(id) }
        guard body.readableBytes <= RelayCellBody.maximumDataLength || self.configuration.applicationCommands.splits(command) else {
            throw .messageTooLong(command, body.readableBytes)
        }
        if streamID != 0 {
            guard self.circuits[id]!.streams[streamID] != nil else { throw .unknownStream(id, streamID) }
        }
        return self.originate(id, relayCells(command: command, streamID: streamID, data: body))
    }

    /// Application hook: the application is done with an application stream (its protocol ended it):
    /// forget it without a RELAY_END, so its ID and slot are free even if the client
    /// never sends RELAY_END. Cells already queued on it are still sent. A later RELAY_END from the
    /// client for it is ignored.
    public mutating func releaseApplicationStream(_ id: RelayCircuitID, streamID: UInt16) throws(OnionRelayError) {
        guard self.circuits[id]?.streams[streamID] == .application else { throw .unknownStream(id, streamID) }
        self.circuits[id]!.streams[streamID] = nil
        if self.circuits[id]!.endpoint.hasNothingQueued(streamID) { self.circuits[id]!.endpoint.removeStream(streamID) }
    }

    /// Tear a circuit down (e.g. the application is done with it): DESTROY both ways.
    public mutating func destroyCircuit(_ id: RelayCircuitID, reason: DestroyReason = .finished) -> [RelayAction] {
        self.close(id, reason: reason, failure: nil, notify: true)
    }

    // MARK: sending toward the client

    /// We end a stream ourselves: END to the client, and close its TCP connection.
    private mutating func endStream(_ id: RelayCircuitID, _ streamID: UInt16, reason: EndReason, closeTCP: Bool = true) -> [RelayAction] {
        let state = self.circuits[id]!.streams.removeValue(forKey: streamID)
        self.circuits[id]!.endpoint.removeStream(streamID)
        var actions = self.originateNow(id, RelayCell(ours: .end(End(reason: reason)), streamID: streamID))
        if closeTCP, state != nil { actions.append(.closeStream(id, streamID: streamID, reason)) }
        return actions
    }

    private mutating func streamSendmes(_ id: RelayCircuitID, _ streamID: UInt16, count: Int) -> [RelayAction] {
        (0..<count).flatMap { _ in self.originateNow(id, RelayCell(ours: .sendme(.v0), streamID: streamID)) }
    }

    /// Queue cells toward the client and send what the windows allow.
    private mutating func originate(_ id: RelayCircuitID, _ cells: [RelayCell]) -> [RelayAction] {
        for cell in cells { self.circuits[id]!.endpoint.enqueue(cell) }
        let actions = self.drain(id)
        let queued = self.circuits[id]!.endpoint.totalQueuedBytes
        guard queued <= self.configuration.maximumQueuedBytesPerCircuit else {
            return actions + self.close(id, reason: .resourceLimit, failure: .resourceLimit(
                "\(queued) bytes queued toward the client (limit \(self.configuration.maximumQueuedBytesPerCircuit))"), notify: true)
        }
        return actions
    }

    /// Send a control cell (SENDME, END, EXTENDED2, ...) now, bypassing the queues.
    private mutating func originateNow(_ id: RelayCircuitID, _ cell: RelayCell) -> [RelayAction] {
        guard let out = self.encrypt(id, cell) else { return [] }
        return [out]
    }

    private mutating func drain(_ id: RelayCircuitID) -> [RelayAction] {
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

    private mutating func encrypt(_ id: RelayCircuitID, _ cell: RelayCell) -> RelayAction? {
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
    private mutating func close(
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

    private func destroyCell(_ circuitID: UInt32, _ reason: DestroyReason, on channel: ChannelID) -> RelayAction {
        self.cell(.destroy(reason), circuitID: circuitID, on: channel)
    }

    private func cell(_ message: ChannelMessage, circuitID: UInt32, on channel: ChannelID) -> RelayAction {
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
