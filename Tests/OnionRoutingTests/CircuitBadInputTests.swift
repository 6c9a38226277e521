import NetBasics
import NIOCore
import Testing
import TorCells
import TorCrypto
import TestSupport

@testable import OnionRouting
import PeersmProtocol

/// A hand-driven client talking to one relay, so tests can send exactly the malformed, tampered or
/// out-of-protocol cells a hostile client would.
struct RawHop {
    var relay: OnionRelay
    let identity: TestRelayIdentity
    let channel = ChannelID(1)
    let circuitID: UInt32 = 0x8000_0042
    let crypto = ClientCircuitCrypto()
    var rng = SplitMix64(seed: 77)
    var circuit: RelayCircuitID { RelayCircuitID(channel: self.channel, circuitID: self.circuitID) }

    /// A relay with one client channel and an open one-hop circuit.
    init(previousHop: RSAIdentity? = nil, configure: (inout OnionRelayConfiguration) -> Void = { _ in }) throws {
        var seed = SplitMix64(seed: 5)
        self.identity = try TestRelayIdentity(index: 0, rng: &seed)
        var config = OnionRelayConfiguration(identity: self.identity.rsa, ntorKeys: [self.identity.ntor])
        config.allowSingleHopExits = true  // the raw client is this relay's only hop
        config.applicationCommands = .peersm
        configure(&config)
        self.relay = OnionRelay(configuration: config, rng: SplitMix64(seed: 6))
        self.relay.channelOpened(self.channel, role: .responder, peerIdentity: previousHop)
        let (state, onionskin) = Ntor.clientStart(relay: self.identity.ntor.publicKey)
        let actions = self.relay.receive(
            try ChannelCell(circuitID: self.circuitID, message: .create2(Create2(handshakeType: 2, handshakeData: ByteBuffer(bytes: onionskin)))),
            on: self.channel)
        guard case .send(let reply, _)? = actions.first, case .created2(let created) = try reply.message() else {
            throw TestError("no CREATED2: \(actions)")
        }
        try self.crypto.addHop(try Ntor.clientFinish(state: state, reply: Array(created.handshakeData.readableBytesView)))
    }

    /// Encrypt a relay cell to the hop (digest set by the crypto layer) and feed it in.
    mutating func send(_ message: RelayMessage, stream: UInt16 = 0, early: Bool = false) throws -> [RelayAction] {
        try self.send(RelayCell(streamID: stream, message: message), early: early)
    }

    mutating func send(_ cell: RelayCell, early: Bool = false, tamper: (inout [UInt8]) -> Void = { _ in }) throws -> [RelayAction] {
        let body = try cell.encode(padding: &self.rng)
        return try self.sendRaw(Array(body.bytes.readableBytesView), early: early, tamper: tamper)
    }

    /// Raw 509 plaintext bytes: lets a test break the relay header itself.
    mutating func sendRaw(_ plaintext: [UInt8], early: Bool = false, tamper: (inout [UInt8]) -> Void = { _ in }) throws -> [RelayAction] {
        var bytes = plaintext
        try self.crypto.encryptOutbound(&bytes, toHop: 0)
        tamper(&bytes)
        let cell = ChannelCell(circuitID: self.circuitID, command: early ? .relayEarly : .relay, payload: ByteBuffer(bytes: bytes))
        return self.relay.receive(cell, on: self.channel)
    }

    /// Decrypt the relay cells the relay sent us.
    func decrypt(_ actions: [RelayAction]) throws -> [RelayCell] {
        try self.decryptWithDigests(actions).map(\.0)
    }

    /// Decrypt, also returning the backward running digest after each cell (what a SENDME v1 echoes).
    func decryptWithDigests(_ actions: [RelayAction]) throws -> [(RelayCell, [UInt8])] {
        var cells: [(RelayCell, [UInt8])] = []
        for case .send(let cell, self.channel) in actions where cell.command == .relay && cell.circuitID == self.circuitID {
            var bytes = Array(cell.payload.readableBytesView)
            guard try self.crypto.decryptInbound(&bytes) == 0 else { throw TestError("unrecognized cell from the relay") }
            cells.append((try RelayCell(decoding: RelayCellBody(ByteBuffer(bytes: bytes))), self.crypto.inboundDigest(hop: 0)!))
        }
        return cells
    }
}

/// The DESTROY sent on `channel` for `circuitID`, if any.
func destroyReason(_ actions: [RelayAction], circuitID: UInt32) -> DestroyReason? {
    for case .send(let cell, _) in actions where cell.command == .destroy && cell.circuitID == circuitID {
        if case .destroy(let reason) = try? cell.message() { return reason }
    }
    return nil
}

func closedFailure(_ actions: [RelayAction]) -> CircuitFailure? {
    for case .circuitClosed(_, _, let failure) in actions { return failure }
    return nil
}

@Suite struct CircuitBadInputTests {
    static let acceptLocal = AddressPolicy(lines: ["accept 127.0.0.1:*"])!

    // MARK: malformed cells

    @Test func truncatedCreate2GetsDestroyProtocol() throws {
        var hop = try RawHop()
        // HTYPE 2, HLEN 84, but only 10 bytes of HDATA: a fixed cell pads with zeros, so send it as a
        // variable-size payload the way a broken framer might hand it over.
        let cell = ChannelCell(circuitID: 0x8000_0100, command: .create2, payload: ByteBuffer(bytes: [0, 2, 1, 0xF8] + [UInt8](repeating: 1, count: 10)))
        let actions = hop.relay.receive(cell, on: hop.channel)
        #expect(destroyReason(actions, circuitID: 0x8000_0100) == .protocol)
        #expect(hop.relay.circuitCount == 1)  // only the harness's own circuit
    }

    @Test func truncatedRelayPayloadDestroysCircuit() throws {
        var hop = try RawHop()
        let cell = ChannelCell(circuitID: hop.circuitID, command: .relay, payload: ByteBuffer(bytes: [UInt8](repeating: 0, count: 100)))
        let actions = hop.relay.receive(cell, on: hop.channel)
        #expect(destroyReason(actions, circuitID: hop.circuitID) == .protocol)
        #expect(closedFailure(actions) == .malformed(.badRelayBodyLength(100)))
        #expect(hop.relay.circuitCount == 0)
    }

    @Test func oversizedRelayLengthDestroysCircuit() throws {
        var hop = try RawHop()
        var plain = [UInt8](repeating: 0, count: 509)
        plain[0] = RelayCommand.data.rawValue
        plain[4] = 1  // stream 1
        plain[9] = 0x02; plain[10] = 0x58  // Length 600 > 498
        let actions = try hop.sendRaw(plain)
        #expect(destroyReason(actions, circuitID: hop.circuitID) == .protocol)
        #expect(closedFailure(actions) == .malformed(.relayDataTooLong(600)))
    }

    @Test func unknownCommandsAreDroppedNotFatal() throws {
        var hop = try RawHop()
        let unknownChannel = hop.relay.receive(
            ChannelCell(circuitID: hop.circuitID, command: ChannelCommand(50), payload: ByteBuffer(bytes: [UInt8](repeating: 0, count: 509))),
            on: hop.channel)
        #expect(unknownChannel.allSatisfy { if case .dropped = $0 { true } else { false } })
        let unknownRelay = try hop.send(RelayCell(command: RelayCommand(200), streamID: 0, data: ByteBuffer(bytes: [1, 2, 3])))
        #expect(unknownRelay.count == 1)
        guard case .dropped? = unknownRelay.first else { throw TestError("\(unknownRelay)") }
        #expect(hop.relay.hasCircuit(hop.circuit))
    }

    @Test func tapCreateIsRefused() throws {
        var hop = try RawHop()
        let actions = hop.relay.receive(
            ChannelCell(circuitID: 0x8000_0200, command: .create, payload: ByteBuffer(bytes: [UInt8](repeating: 7, count: 509))), on: hop.channel)
        #expect(destroyReason(actions, circuitID: 0x8000_0200) == .protocol)
    }

    // MARK: digests and unknown circuits

    @Test func wrongDigestAtLastHopDestroysWithProtocol() throws {
        var hop = try RawHop()
        let actions = try hop.send(RelayCell(ours: .drop, streamID: 0)) { bytes in bytes[30] ^= 0x01 }
        #expect(destroyReason(actions, circuitID: hop.circuitID) == .protocol)
        #expect(closedFailure(actions) == .unrecognizedRelayCell)
        #expect(!hop.relay.hasCircuit(hop.circuit))
    }

    @Test func relayCellForUnknownCircuitIsIgnored() throws {
        var hop = try RawHop()
        let cell = ChannelCell(circuitID: 0x8000_7777, command: .relay, payload: ByteBuffer(bytes: [UInt8](repeating: 9, count: 509)))
        let actions = hop.relay.receive(cell, on: hop.channel)
        #expect(actions == [.dropped(hop.channel, circuitID: 0x8000_7777, reason: "RELAY for an unknown circuit")])
        let destroy = hop.relay.receive(try ChannelCell(circuitID: 0x8000_7777, message: .destroy(.finished)), on: hop.channel)
        #expect(destroy.count == 1 && destroyReason(destroy, circuitID: 0x8000_7777) == nil)
    }

    @Test func create2WithWrongCircuitIDHalfIsRefused() throws {
        var hop = try RawHop()
        let (_, onionskin) = Ntor.clientStart(relay: hop.identity.ntor.publicKey)
        // The client opened the channel, so its IDs must have the high bit set.
        let actions = hop.relay.receive(
            try ChannelCell(circuitID: 0x0000_0005, message: .create2(Create2(handshakeType: 2, handshakeData: ByteBuffer(bytes: onionskin)))),
            on: hop.channel)
        #expect(destroyReason(actions, circuitID: 5) == .protocol)
        #expect(hop.relay.circuitCount == 1)
    }

    @Test func create2ForAnotherRelaysKeyIsRefused() throws {
        var hop = try RawHop()
        var seed = SplitMix64(seed: 99)
        let stranger = try TestRelayIdentity(index: 5, rng: &seed)
        let (_, onionskin) = Ntor.clientStart(relay: stranger.ntor.publicKey)
        let actions = hop.relay.receive(
            try ChannelCell(circuitID: 0x8000_0300, message: .create2(Create2(handshakeType: 2, handshakeData: ByteBuffer(bytes: onionskin)))),
            on: hop.channel)
        #expect(destroyReason(actions, circuitID: 0x8000_0300) == .protocol)
        let ntorV3 = hop.relay.receive(
            try ChannelCell(circuitID: 0x8000_0301, message: .create2(Create2(handshakeType: 3, handshakeData: ByteBuffer(bytes: onionskin)))),
            on: hop.channel)
        #expect(destroyReason(ntorV3, circuitID: 0x8000_0301) == .protocol)
    }

    // MARK: RELAY_EARLY

    @Test func moreThanEightRelayEarlyDestroys() throws {
        var hop = try RawHop()
        for _ in 0..<8 {
            #expect(try hop.send(.drop, early: true).isEmpty)
        }
        let ninth = try hop.send(.drop, early: true)
        #expect(destroyReason(ninth, circuitID: hop.circuitID) == .protocol)
        #expect(closedFailure(ninth) == .tooManyRelayEarly)
    }

    @Test func inboundRelayEarlyTowardClientDestroys() throws {
        let net = try TestNetwork(relayCount: 2, seed: 21)
        let id = try net.buildCircuit()
        let cell = ChannelCell(circuitID: id, command: .relayEarly, payload: ByteBuffer(bytes: [UInt8](repeating: 3, count: 509)))
        guard case .circuit(_, let actions) = net.client.receive(cell) else { throw TestError("not routed") }
        guard case .send(let destroy)? = actions.first, case .destroy(.protocol) = try destroy.message() else {
            throw TestError("no DESTROY: \(actions)")
        }
        #expect(actions.last == .event(.closed(.protocol, failure: .inboundRelayEarly)))
        #expect(net.client.circuitIDs.isEmpty)
    }

    @Test func inboundRelayEarlyAtMiddleRelayDestroys() throws {
        let net = try TestNetwork(relayCount: 2, seed: 22)
        let id = try net.buildCircuit()
        let channel = try #require(net.existingChannel(0, 1))
        // The relays' circuit on channel 0–1: relay 1 knows it by the ID relay 0 picked.
        let nextID = try #require(net.relays[1].circuitIDs.first).circuitID
        let cell = ChannelCell(circuitID: nextID, command: .relayEarly, payload: ByteBuffer(bytes: [UInt8](repeating: 3, count: 509)))
        let actions = net.relays[0].receive(cell, on: channel)
        #expect(closedFailure(actions) == .inboundRelayEarly)
        net.handleRelay(0, actions)
        net.run()
        #expect(net.events(of: id).last == .closed(.protocol, failure: nil))
    }

    // MARK: EXTEND2

    func extend(to address: IPv4Address, identity: [UInt8] = [UInt8](repeating: 0x11, count: 20)) -> RelayMessage {
        .extend2(Extend2(
            linkSpecifiers: [.ipv4(address, port: 9001), .rsaIdentity(identity)], handshakeType: 2,
            handshakeData: ByteBuffer(bytes: [UInt8](repeating: 0, count: 84))))
    }

    @Test func extendToPrivateAddressIsRefused() throws {
        var hop = try RawHop()
        let actions = try hop.send(self.extend(to: IPv4Address(10, 0, 0, 1)), early: true)
        #expect(destroyReason(actions, circuitID: hop.circuitID) == .protocol)
        #expect(closedFailure(actions) == .extendRefused("private address 10.0.0.1"))
        #expect(!actions.contains { if case .openChannel = $0 { true } else { false } })
    }

    // Public addresses just past CGNAT (100.64/10) and benchmarking (198.18/15): the documentation
    // blocks are not public, so EXTEND2 refuses them before any policy line (AddressPolicyAgreementTests).
    @Test func extendForbiddenByPolicyIsRefused() throws {
        var hop = try RawHop { $0.extendPolicy = AddressPolicy(lines: ["reject 100.128.0.0/24:*", "accept *:*"])! }
        let refused = try hop.send(self.extend(to: IPv4Address(100, 128, 0, 7)), early: true)
        #expect(closedFailure(refused) == .extendRefused("100.128.0.7:9001 rejected by extend policy"))

        var allowed = try RawHop { $0.extendPolicy = AddressPolicy(lines: ["reject 100.128.0.0/24:*", "accept *:*"])! }
        let actions = try allowed.send(self.extend(to: IPv4Address(198, 20, 0, 9)), early: true)
        guard case .openChannel(let target, _)? = actions.first else { throw TestError("\(actions)") }
        #expect(target.address == IPv4Address(198, 20, 0, 9) && target.port == 9001)
    }

    @Test func extendBackToPreviousHopIsRefused() throws {
        let previous = try RSAIdentity(bytes: [UInt8](repeating: 0x22, count: 20))
        var hop = try RawHop(previousHop: previous) { $0.extendAllowPrivateAddresses = true }
        let actions = try hop.send(self.extend(to: IPv4Address(203, 0, 113, 1), identity: previous.bytes), early: true)
        #expect(closedFailure(actions) == .extendRefused("extend back to the previous hop"))
    }

    @Test func extendInPlainRelayCellIsRefused() throws {
        var hop = try RawHop()
        let actions = try hop.send(self.extend(to: IPv4Address(203, 0, 113, 1)), early: false)
        #expect(closedFailure(actions) == .extendNotInRelayEarly)
    }

    @Test func extendWithoutIdentityIsRefused() throws {
        var hop = try RawHop()
        let message = RelayMessage.extend2(Extend2(
            linkSpecifiers: [.ipv4(IPv4Address(203, 0, 113, 1), port: 9001)], handshakeType: 2,
            handshakeData: ByteBuffer(bytes: [UInt8](repeating: 0, count: 84))))
        let actions = try hop.send(message, early: true)
        #expect(closedFailure(actions) == .extendRefused("no RSA identity link specifier"))
    }

    @Test func resolveGetsTransientError() throws {
        var hop = try RawHop()
        var name = ByteBuffer()
        name.writeString("example.com\0")
        let cells = try hop.decrypt(try hop.send(RelayCell(command: .resolve, streamID: 5, data: name)))
        #expect(cells.count == 1 && cells[0].command == .resolved && cells[0].streamID == 5)
        #expect(cells.first?.data == ByteBuffer(bytes: [0xF0, 0, 0, 0, 0, 0]))
    }

    @Test func truncateDropsTheNextHopAndAnswersTruncated() throws {
        var hop = try RawHop { $0.extendAllowPrivateAddresses = true }
        let (next, nextID) = try CircuitBadInputFromNextHopTests().extended(&hop)
        _ = try hop.decrypt(hop.relay.receive(
            try ChannelCell(circuitID: nextID, message: .created2(Created2(handshakeData: ByteBuffer(bytes: [UInt8](repeating: 5, count: 64))))),
            on: next))
        let actions = try hop.send(.truncate)
        #expect(destroyReason(actions, circuitID: nextID) == .requested)
        #expect(try hop.decrypt(actions).map { try $0.message() } == [.truncated(.requested)])
        #expect(hop.relay.hasCircuit(hop.circuit) && hop.relay.circuitCount(on: next) == 0)
    }

    // MARK: resource limits

    @Test func circuitsPerChannelAreBounded() throws {
        var hop = try RawHop { $0.maximumCircuitsPerChannel = 1 }  // the harness's circuit uses it
        let (_, onionskin) = Ntor.clientStart(relay: hop.identity.ntor.publicKey)
        let actions = hop.relay.receive(
            try ChannelCell(circuitID: 0x8000_0400, message: .create2(Create2(handshakeType: 2, handshakeData: ByteBuffer(bytes: onionskin)))),
            on: hop.channel)
        #expect(destroyReason(actions, circuitID: 0x8000_0400) == .resourceLimit)
    }

    @Test func streamsPerCircuitAreBounded() throws {
        var hop = try RawHop {
            $0.exitPolicy = Self.acceptLocal
            $0.maximumStreamsPerCircuit = 2
        }
        _ = try hop.send(.begin(try Begin(host: "127.0.0.1", port: 80)), stream: 1)
        _ = try hop.send(.raw(.dbQuery, ByteBuffer(bytes: [0])), stream: 2)
        let third = try hop.send(.begin(try Begin(host: "127.0.0.1", port: 80)), stream: 3)
        #expect(try hop.decrypt(third).map { try $0.message() } == [.end(End(reason: .resourceLimit))])
        let fourth = try hop.send(.raw(.dbQuery, ByteBuffer(bytes: [0])), stream: 4)
        #expect(try hop.decrypt(fourth).map { try $0.message() } == [.end(End(reason: .resourceLimit))])
    }

    // MARK: flow control

    /// Open an exit stream on the raw hop and answer its connect.
    func connectedStream(_ hop: inout RawHop, stream: UInt16 = 7) throws {
        let actions = try hop.send(.begin(try Begin(host: "127.0.0.1", port: 80)), stream: stream)
        guard case .connect(_, stream, "127.0.0.1", 80)? = actions.first else { throw TestError("\(actions)") }
        let connected = try hop.decrypt(try hop.relay.streamConnected(hop.circuit, streamID: stream, address: nil))
        #expect(connected.map(\.command) == [.connected])
    }

    @Test func singleHopExitRefusedByDefault() throws {
        var hop = try RawHop {
            $0.exitPolicy = Self.acceptLocal
            $0.allowSingleHopExits = false
        }
        let actions = try hop.send(.begin(try Begin(host: "127.0.0.1", port: 80)), stream: 3)
        #expect(try hop.decrypt(actions).map { try $0.message() } == [.end(End(reason: .torProtocol))])
        #expect(!actions.contains { if case .connect = $0 { true } else { false } })
    }

    @Test func dataBeyondStreamWindowEndsStream() throws {
        var hop = try RawHop { $0.exitPolicy = Self.acceptLocal }
        try self.connectedStream(&hop)
        _ = try hop.relay.setStreamPaused(hop.circuit, streamID: 7, true)  // the TCP side stops draining
        var sendmes = 0
        for i in 0..<500 {
            let actions = try hop.send(.data(ByteBuffer(bytes: [UInt8(i & 0xFF)])), stream: 7)
            #expect(actions.contains { if case .streamData = $0 { true } else { false } })
            sendmes += try hop.decrypt(actions).filter { $0.command == .sendme && $0.streamID == 7 }.count
        }
        #expect(sendmes == 0)  // withheld while paused
        let over = try hop.send(.data(ByteBuffer(bytes: [1])), stream: 7)
        let cells = try hop.decrypt(over)
        #expect(cells.contains { $0.command == .end && $0.streamID == 7 && (try? $0.message()) == .end(End(reason: .torProtocol)) })
        #expect(over.contains(.closeStream(hop.circuit, streamID: 7, .torProtocol)))
        #expect(hop.relay.hasCircuit(hop.circuit))  // a stream-level violation keeps the circuit
    }

    @Test func resumingAStreamSendsOwedSendmes() throws {
        var hop = try RawHop { $0.exitPolicy = Self.acceptLocal }
        try self.connectedStream(&hop)
        _ = try hop.relay.setStreamPaused(hop.circuit, streamID: 7, true)
        var circuitSendmes = 0
        for _ in 0..<120 {
            let cells = try hop.decrypt(try hop.send(.data(ByteBuffer(bytes: [0])), stream: 7))
            #expect(!cells.contains { $0.command == .sendme && $0.streamID == 7 })
            circuitSendmes += cells.filter { $0.command == .sendme && $0.streamID == 0 }.count
        }
        #expect(circuitSendmes == 1)  // circuit level is not paused: one SENDME v1 after 100 cells
        let resumed = try hop.decrypt(try hop.relay.setStreamPaused(hop.circuit, streamID: 7, false))
        #expect(resumed.filter { $0.command == .sendme && $0.streamID == 7 }.count == 2)  // window 380 → 480
    }

    @Test func sendmeWithWrongDigestDestroys() throws {
        var hop = try RawHop { $0.exitPolicy = Self.acceptLocal }
        try self.connectedStream(&hop)
        let cells = try hop.decrypt(try hop.relay.streamReceived(hop.circuit, streamID: 7, data: pattern(100 * 498, seed: 3)))
        #expect(cells.count == 100)
        let actions = try hop.send(.sendme(.v1(digest: [UInt8](repeating: 0xEE, count: 20))))
        #expect(destroyReason(actions, circuitID: hop.circuitID) == .protocol)
        #expect(closedFailure(actions) == .flowControl(.sendmeDigestMismatch))
    }

    @Test func sendmeWithRightDigestRefillsWindow() throws {
        var hop = try RawHop { $0.exitPolicy = Self.acceptLocal }
        try self.connectedStream(&hop)
        // 1 200 cells: 1 000 go out, 200 wait for the circuit window.
        var first = try hop.decryptWithDigests(try hop.relay.streamReceived(hop.circuit, streamID: 7, data: pattern(1200 * 498, seed: 4)))
        #expect(first.count == 500)  // the stream window
        for _ in 0..<10 { first += try hop.decryptWithDigests(try hop.send(.sendme(.v0), stream: 7)) }
        #expect(first.count == 1000)  // now the circuit window
        #expect(try hop.decrypt(try hop.send(.sendme(.v0), stream: 7)).isEmpty)
        _ = try hop.send(.sendme(.v0), stream: 7)
        // Echo the digest after the 100th cell, as an honest client would: 100 more cells go out.
        let more = try hop.decrypt(try hop.send(.sendme(.v1(digest: first[99].1))))
        #expect(more.count == 100)
        // The second SENDME must echo the digest after cell 200, not a replay of the first.
        let replay = try hop.send(.sendme(.v1(digest: first[99].1)))
        #expect(closedFailure(replay) == .flowControl(.sendmeDigestMismatch))
    }

    @Test func unexpectedSendmeDestroys() throws {
        var hop = try RawHop()
        let actions = try hop.send(.sendme(.v1(digest: [UInt8](repeating: 1, count: 20))))
        #expect(destroyReason(actions, circuitID: hop.circuitID) == .protocol)
        #expect(closedFailure(actions) == .flowControl(.sendmeOverflow(window: 1000)))
    }

    @Test func unauthenticatedSendmeRefusedByDefault() throws {
        var hop = try RawHop { $0.exitPolicy = Self.acceptLocal }
        try self.connectedStream(&hop)
        _ = try hop.decrypt(try hop.relay.streamReceived(hop.circuit, streamID: 7, data: pattern(100 * 498, seed: 3)))
        let actions = try hop.send(.sendme(.v0))
        #expect(closedFailure(actions) == .flowControl(.unacceptableSendmeVersion(0)))
    }

    @Test func unauthenticatedSendmeAcceptedWhenConfigured() throws {
        var hop = try RawHop {
            $0.exitPolicy = Self.acceptLocal
            $0.minimumSendmeVersion = 0
        }
        try self.connectedStream(&hop)
        _ = try hop.decrypt(try hop.relay.streamReceived(hop.circuit, streamID: 7, data: pattern(100 * 498, seed: 3)))
        #expect(try hop.send(.sendme(.v0)).isEmpty)
        #expect(hop.relay.hasCircuit(hop.circuit))
    }

    // MARK: stream IDs

    @Test func dataOnStreamZeroDestroys() throws {
        var hop = try RawHop()
        let actions = try hop.send(.data(ByteBuffer(bytes: [1, 2])), stream: 0)
        #expect(closedFailure(actions) == .badStreamID(.data, 0))
    }

    @Test func dataForUnknownStreamIsDropped() throws {
        var hop = try RawHop()
        let actions = try hop.send(.data(ByteBuffer(bytes: [1, 2])), stream: 9)
        guard case .dropped? = actions.first else { throw TestError("\(actions)") }
        #expect(hop.relay.hasCircuit(hop.circuit))
    }

    // MARK: client side

    @Test func clientRejectsCreated2WithBadAuth() throws {
        var seed = SplitMix64(seed: 31)
        let relay = try TestRelayIdentity(index: 0, rng: &seed)
        var (circuit, _) = try ClientCircuit.build(circuitID: 0x8000_0001, path: [relay.hop], rng: SplitMix64(seed: 1))
        let reply = ChannelCell(circuitID: 0x8000_0001, command: .created2, payload: ByteBuffer(bytes: [0, 64] + [UInt8](repeating: 9, count: 64)))
        let actions = circuit.receive(reply)
        guard case .event(.closed(.protocol, .handshakeFailed?))? = actions.last else { throw TestError("\(actions)") }
        #expect(circuit.isClosed)
    }

    @Test func clientDestroysOnUnrecognizedRelayCell() throws {
        let net = try TestNetwork(relayCount: 1, seed: 32)
        let id = try net.buildCircuit()
        let junk = ChannelCell(circuitID: id, command: .relay, payload: pattern(509, seed: 5))
        guard case .circuit(_, let actions) = net.client.receive(junk) else { throw TestError("not routed") }
        #expect(actions.last == .event(.closed(.protocol, failure: .unrecognizedRelayCell)))
    }

    @Test func clientIgnoresCellsForUnknownCircuits() throws {
        var mux = ClientCircuitMultiplexer(rng: SplitMix64(seed: 1))
        let outcome = mux.receive(ChannelCell(circuitID: 0x8000_1234, command: .relay, payload: pattern(509, seed: 1)))
        #expect(outcome == .dropped(circuitID: 0x8000_1234, reason: "RELAY for an unknown circuit"))
    }
}

@Suite struct CircuitBadInputFromNextHopTests {
    /// Extend the raw hop's circuit toward a simulated next relay; returns the next channel and the
    /// circuit ID the relay picked on it.
    func extended(_ hop: inout RawHop) throws -> (ChannelID, UInt32) {
        let nextIdentity = try RSAIdentity(bytes: [UInt8](repeating: 0x33, count: 20))
        let extend = RelayMessage.extend2(Extend2(
            linkSpecifiers: [.ipv4(IPv4Address(127, 0, 0, 9), port: 9001), .rsaIdentity(nextIdentity.bytes)],
            handshakeType: 2, handshakeData: ByteBuffer(bytes: [UInt8](repeating: 0, count: 84))))
        let asked = try hop.send(extend, early: true)
        guard case .openChannel(let target, let circuit)? = asked.first else { throw TestError("\(asked)") }
        #expect(target.rsaIdentity == nextIdentity && circuit == hop.circuit)
        let next = ChannelID(2)
        hop.relay.channelOpened(next, role: .initiator, peerIdentity: nextIdentity)
        let sent = hop.relay.extendChannelReady(hop.circuit, channel: next)
        guard case .send(let create, next)? = sent.first, create.command == .create2 else { throw TestError("\(sent)") }
        #expect(create.circuitID & 0x8000_0000 != 0)  // we initiated that channel
        return (next, create.circuitID)
    }

    /// A next hop answering CREATE2 with a reply too big for EXTENDED2 must not crash the relay.
    @Test func oversizedCreated2FromNextHopDestroysBothWays() throws {
        var hop = try RawHop { $0.extendAllowPrivateAddresses = true }
        let (next, nextID) = try self.extended(&hop)
        let big = ChannelCell(circuitID: nextID, command: .created2, payload: ByteBuffer(bytes: [0x01, 0xF4] + [UInt8](repeating: 1, count: 500)))
        let actions = hop.relay.receive(big, on: next)
        #expect(closedFailure(actions) == .malformed(.payloadTooLong(length: 502, limit: 498)))
        #expect(destroyReason(actions, circuitID: hop.circuitID) == .protocol)
        #expect(destroyReason(actions, circuitID: nextID) == .protocol)
        #expect(hop.relay.circuitCount == 0 && hop.relay.circuitCount(on: next) == 0)
    }

    @Test func created2FromNextHopBecomesExtended2() throws {
        var hop = try RawHop { $0.extendAllowPrivateAddresses = true }
        let (next, nextID) = try self.extended(&hop)
        let reply = try ChannelCell(circuitID: nextID, message: .created2(Created2(handshakeData: ByteBuffer(bytes: [UInt8](repeating: 5, count: 64)))))
        let cells = try hop.decrypt(hop.relay.receive(reply, on: next))
        #expect(try cells.map { try $0.message() } == [.extended2(Created2(handshakeData: ByteBuffer(bytes: [UInt8](repeating: 5, count: 64))))])
        // A second EXTEND2 on the same circuit is refused.
        let again = try hop.send(.extend2(Extend2(linkSpecifiers: [], handshakeType: 2, handshakeData: ByteBuffer())), early: true)
        #expect(closedFailure(again) == .alreadyExtended)
    }

    @Test func destroyFromNextHopPropagatesAsDestroyed() throws {
        var hop = try RawHop { $0.extendAllowPrivateAddresses = true }
        let (next, nextID) = try self.extended(&hop)
        let actions = hop.relay.receive(try ChannelCell(circuitID: nextID, message: .destroy(.orIdentity)), on: next)
        // The peer's reason is not relayed (a side channel, tor bug 40649); the owner still learns it.
        #expect(destroyReason(actions, circuitID: hop.circuitID) == .destroyed)
        #expect(actions.contains(.circuitClosed(hop.circuit, .orIdentity, failure: nil)))
        #expect(destroyReason(actions, circuitID: nextID) == nil)  // not echoed back
        #expect(hop.relay.circuitCount == 0)
    }

    @Test func failedChannelOpenDestroysWithConnectFailed() throws {
        var hop = try RawHop { $0.extendAllowPrivateAddresses = true }
        let extend = RelayMessage.extend2(Extend2(
            linkSpecifiers: [.ipv4(IPv4Address(127, 0, 0, 9), port: 9001), .rsaIdentity([UInt8](repeating: 0x33, count: 20))],
            handshakeType: 2, handshakeData: ByteBuffer(bytes: [UInt8](repeating: 0, count: 84))))
        _ = try hop.send(extend, early: true)
        let actions = hop.relay.extendChannelFailed(hop.circuit)
        #expect(destroyReason(actions, circuitID: hop.circuitID) == .connectFailed)
    }
}
