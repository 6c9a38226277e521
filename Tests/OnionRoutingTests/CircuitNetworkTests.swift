import NetBasics
import NIOCore
import Testing
import TorCells
import TorCrypto

@testable import OnionRouting
import PeersmProtocol

/// A client and three relays wired in memory, with real ntor keys and relay crypto.
@Suite struct CircuitNetworkTests {
    static let exitPolicy = AddressPolicy(lines: ["accept 127.0.0.1:*", "reject *:*"])!

    func network(seed: UInt64 = 1) throws -> TestNetwork {
        try TestNetwork(relayCount: 3, seed: seed) { index, config in
            if index == 2 { config.exitPolicy = Self.exitPolicy }
        }
    }

    @Test func buildsThreeHopCircuitWithNtor() throws {
        let net = try self.network()
        let id = try net.buildCircuit()
        #expect(net.events(of: id) == [.opened])
        #expect(net.relays.map(\.circuitCount) == [1, 1, 1])
        // Relays 0 and 1 each opened exactly one channel onward.
        #expect(net.existingChannel(0, 1) != nil && net.existingChannel(1, 2) != nil)
        #expect(net.existingChannel(0, 2) == nil)
    }

    /// Every random byte (circuit IDs, ntor secrets, CREATE_FAST nonces, padding, stream IDs) comes from
    /// the injected generators, so one seed gives the same cells byte for byte, and another seed does not.
    @Test(arguments: [FirstHopHandshake.ntor, .createFast])
    func sameSeedGivesIdenticalCells(firstHop: FirstHopHandshake) throws {
        func trace(seed: UInt64) throws -> [ChannelCell] {
            let net = try self.network(seed: seed)
            net.recordCells = true
            let id = try net.buildCircuit(firstHop: firstHop)
            let (stream, _) = try self.openStream(net, id)
            try net.clientCall(id) { try $0.send(data: pattern(2000, seed: 1), onStream: stream) }
            net.run()
            #expect(net.events(of: id).first == .opened)
            return net.trace
        }
        let first = try trace(seed: 9)
        #expect(first.count > 8)
        #expect(try trace(seed: 9) == first)
        #expect(try trace(seed: 10) != first)
    }

    @Test func buildsWithCreateFastFirstHop() throws {
        let net = try self.network(seed: 5)
        let id = try net.buildCircuit(firstHop: .createFast)
        #expect(net.events(of: id) == [.opened])
    }

    /// Open a stream to the exit, whose TCP connect the test simulates.
    func openStream(_ net: TestNetwork, _ id: UInt32) throws -> (UInt16, RelayCircuitID) {
        net.onConnect = { _, _, host, port in
            #expect(host == "127.0.0.1" && port == 8080)
            return .connected(.v4(IPv4Address(127, 0, 0, 1)))
        }
        var stream: UInt16 = 0
        try net.clientCall(id) { circuit in
            let (s, actions) = try circuit.openStream(host: "127.0.0.1", port: 8080)
            stream = s
            return actions
        }
        net.run()
        guard case .connect(let exitCircuit, let exitStream, _, _)? = net.relayActions(2).last(where: { if case .connect = $0 { true } else { false } }) else {
            throw TestError("exit did not connect: \(net.relayActions(2))")
        }
        #expect(exitStream == stream)
        #expect(net.events(of: id).contains(.streamConnected(streamID: stream, Connected(address: .v4(IPv4Address(127, 0, 0, 1)), ttl: 300))))
        return (stream, exitCircuit)
    }

    @Test func streamCarriesOneMebibyteEachWayWithSendmes() throws {
        let net = try self.network(seed: 2)
        let id = try net.buildCircuit()
        let (stream, exitCircuit) = try self.openStream(net, id)
        let size = 1 << 20

        // Client → exit: 2 106 DATA cells, more than the 1 000-cell circuit window and the 500-cell
        // stream window, so this completes only if SENDMEs flow back and are accepted.
        let upload = pattern(size, seed: 1)
        try net.clientCall(id) { try $0.send(data: upload, onStream: stream) }
        let queuedAfterFirstBurst = net.client.withCircuit(id) { $0.queuedBytes(onStream: stream) }!
        #expect(queuedAfterFirstBurst > 0)  // the window stopped the first burst
        net.run()
        var received = ByteBuffer()
        for case (2, .streamData(let c, let s, var data)) in net.relayEvents where c == exitCircuit && s == stream {
            received.writeBuffer(&data)
        }
        #expect(received == upload)
        #expect(net.client.withCircuit(id) { $0.queuedBytes(onStream: stream) } == 0)

        // Exit → client.
        let download = pattern(size, seed: 2)
        try net.relayCall(2) { try $0.streamReceived(exitCircuit, streamID: stream, data: download) }
        #expect(net.relays[2].queuedBytes(exitCircuit, streamID: stream) > 0)
        net.run()
        var got = ByteBuffer()
        for case .streamData(stream, var data) in net.events(of: id) { got.writeBuffer(&data) }
        #expect(got == download)
        #expect(net.relays[2].queuedBytes(exitCircuit, streamID: stream) == 0)
        // No teardown happened along the way.
        #expect(!net.events(of: id).contains { if case .closed = $0 { true } else { false } })
        #expect(net.relays.map(\.circuitCount) == [1, 1, 1])

        // END from the client closes the exit's TCP connection with the reason.
        try net.clientCall(id) { try $0.closeStream(stream, reason: .done) }
        net.run()
        #expect(net.relayActions(2).contains(.closeStream(exitCircuit, streamID: stream, .done)))
    }

    /// Two streams share the circuit window; each arrives intact and in order.
    @Test func twoConcurrentStreamsShareTheCircuit() throws {
        let net = try self.network(seed: 15)
        let id = try net.buildCircuit()
        let (a, exitCircuit) = try self.openStream(net, id)
        let (b, _) = try self.openStream(net, id)
        let size = 300_000
        try net.clientCall(id) { try $0.send(data: pattern(size, seed: 3), onStream: a) }
        try net.clientCall(id) { try $0.send(data: pattern(size, seed: 4), onStream: b) }
        try net.relayCall(2) { try $0.streamReceived(exitCircuit, streamID: a, data: pattern(size, seed: 5)) }
        try net.relayCall(2) { try $0.streamReceived(exitCircuit, streamID: b, data: pattern(size, seed: 6)) }
        net.run()
        for (stream, seed) in [(a, UInt8(3)), (b, 4)] {
            var got = ByteBuffer()
            for case (2, .streamData(exitCircuit, stream, var data)) in net.relayEvents { got.writeBuffer(&data) }
            #expect(got == pattern(size, seed: seed))
        }
        for (stream, seed) in [(a, UInt8(5)), (b, 6)] {
            var got = ByteBuffer()
            for case .streamData(stream, var data) in net.events(of: id) { got.writeBuffer(&data) }
            #expect(got == pattern(size, seed: seed))
        }
    }

    @Test func exitEndsStreamAndClientSeesReason() throws {
        let net = try self.network(seed: 3)
        let id = try net.buildCircuit()
        let (stream, exitCircuit) = try self.openStream(net, id)
        try net.relayCall(2) { try $0.closeStream(exitCircuit, streamID: stream, reason: .connReset) }
        net.run()
        #expect(net.events(of: id).last == .streamEnded(streamID: stream, End(reason: .connReset)))
    }

    @Test func exitPolicyRejectsBeginWithEndExitPolicy() throws {
        let net = try self.network(seed: 4)
        let id = try net.buildCircuit()
        var stream: UInt16 = 0
        try net.clientCall(id) { circuit in
            let (s, actions) = try circuit.openStream(host: "10.1.2.3", port: 80)
            stream = s
            return actions
        }
        net.run()
        #expect(net.relayActions(2).isEmpty)  // no connect attempted
        guard case .streamEnded(stream, let end)? = net.events(of: id).last else { throw TestError("no END") }
        #expect(end.reason == .exitPolicy)
        #expect(end.exitPolicy?.address == .v4(IPv4Address(10, 1, 2, 3)))
    }

    @Test func exitPolicyDefaultRejectsEverything() throws {
        let net = try TestNetwork(relayCount: 1, seed: 9) { _, config in config.allowSingleHopExits = true }
        let id = try net.buildCircuit()
        try net.clientCall(id) { try $0.openStream(host: "127.0.0.1", port: 80).1 }
        net.run()
        #expect(net.relayActions(0).isEmpty)
        guard case .streamEnded(_, let end)? = net.events(of: id).last else { throw TestError("no END") }
        #expect(end.reason == .exitPolicy)
    }

    @Test func connectFailureBecomesEndWithReason() throws {
        let net = try self.network(seed: 6)
        let id = try net.buildCircuit()
        net.onConnect = { _, _, _, _ in .failed(.connectRefused) }
        try net.clientCall(id) { try $0.openStream(host: "127.0.0.1", port: 1).1 }
        net.run()
        guard case .streamEnded(_, let end)? = net.events(of: id).last else { throw TestError("no END") }
        #expect(end.reason == .connectRefused)
    }

    @Test func beginDirIsRefusedWithNotDirectory() throws {
        let net = try TestNetwork(relayCount: 2, seed: 10)
        let id = try net.buildCircuit()
        let stream = try #require(net.client.withCircuit(id) { try $0.openApplicationStream() })
        try net.clientCall(id) { try $0.send(command: .beginDir, body: ByteBuffer(), onStream: stream) }
        net.run()
        #expect(net.events(of: id).last == .streamEnded(streamID: stream, End(reason: .notDirectory)))
    }

    /// The Peersm hook: DB_QUERY (81) reaches the application at the last hop, which answers with
    /// DB_CONNECTED and 700 DB_DATA cells; DB_DATA counts toward the circuit window, so this also needs
    /// the client's circuit SENDMEs to be accepted by the exit.
    @Test func applicationHookCarriesCommand81RoundTrip() throws {
        let net = try self.network(seed: 7)
        let id = try net.buildCircuit()
        let stream = try #require(net.client.withCircuit(id) { try $0.openApplicationStream() })
        var query = ByteBuffer()
        query.writeBytes([20] + [UInt8](repeating: 0xAB, count: 20) + [1, 0])
        try net.clientCall(id) { try $0.send(command: .dbQuery, body: query, onStream: stream) }
        net.run()
        guard case .application(let circuit, stream, .dbQuery, let body)? = net.relayActions(2).last else {
            throw TestError("no application event: \(net.relayActions(2))")
        }
        #expect(body == query)
        #expect(net.relayActions(0).isEmpty && net.relayActions(1).isEmpty)  // middles only forward

        var connected = ByteBuffer()
        connected.writeBytes([1, 0, 0, 9] + Array("video/mp4".utf8))
        try net.relayCall(2) { try $0.sendApplicationMessage(circuit, streamID: stream, command: .dbConnected, body: connected) }
        let payload = pattern(700 * 498, seed: 9)
        try net.relayCall(2) { try $0.sendApplicationMessage(circuit, streamID: stream, command: .dbData, body: payload) }
        #expect(net.relays[2].queuedBytes(circuit, streamID: stream) == 0)  // 700 < 1000: fits the window
        try net.relayCall(2) { try $0.sendApplicationMessage(circuit, streamID: stream, command: .dbData, body: payload) }
        #expect(net.relays[2].queuedBytes(circuit, streamID: stream) > 0)  // 1400 > 1000: must wait
        net.run()

        var data = ByteBuffer()
        var messages: [RelayCommand] = []
        for case .streamMessage(stream, let command, var body) in net.events(of: id) {
            messages.append(command)
            if command == .dbData { data.writeBuffer(&body) }
        }
        #expect(messages.first == .dbConnected)
        #expect(messages.filter { $0 == .dbData }.count == 1400)
        var expected = payload
        var second = payload
        expected.writeBuffer(&second)
        #expect(data == expected)
        #expect(net.relays[2].queuedBytes(circuit, streamID: stream) == 0)

        // The client ending the stream tells the application.
        try net.clientCall(id) { try $0.closeStream(stream, reason: .done) }
        net.run()
        #expect(net.relayActions(2).last == .closeStream(circuit, streamID: stream, .done))
        #expect(throws: OnionRelayError.unknownStream(circuit, stream)) {
            try net.relays[2].sendApplicationMessage(circuit, streamID: stream, command: .dbData, body: ByteBuffer(bytes: [1]))
        }
    }

    @Test func applicationMessageOnStreamZero() throws {
        let net = try TestNetwork(relayCount: 1, seed: 12)
        let id = try net.buildCircuit()
        var info = ByteBuffer()
        info.writeBytes([20] + [UInt8](repeating: 1, count: 20) + [0, 1])
        try net.clientCall(id) { try $0.send(command: .dbInfo, body: info, onStream: 0) }
        net.run()
        guard case .application(let circuit, 0, .dbInfo, info)? = net.relayActions(0).last else {
            throw TestError("no DB_INFO at the hook")
        }
        try net.relayCall(0) { try $0.sendApplicationMessage(circuit, streamID: 0, command: .dbEnd, body: ByteBuffer(bytes: [0])) }
        net.run()
        #expect(net.events(of: id).last == .streamMessage(streamID: 0, command: .dbEnd, body: ByteBuffer(bytes: [0])))
    }

    @Test func clientDestroyPropagatesAndDropsEverything() throws {
        let net = try self.network(seed: 8)
        let id = try net.buildCircuit()
        let (stream, exitCircuit) = try self.openStream(net, id)
        try net.clientCall(id) { $0.destroy(reason: .finished) }
        net.run()
        #expect(net.relays.map(\.circuitCount) == [0, 0, 0])
        #expect(net.client.circuitIDs.isEmpty)
        // The first hop hears FINISHED; it and the middle relay pass the DESTROY on as DESTROYED.
        for (r, reason) in [(0, DestroyReason.finished), (1, .destroyed), (2, .destroyed)] {
            #expect(net.relayActions(r).contains { if case .circuitClosed(_, reason, nil) = $0 { true } else { false } })
        }
        #expect(net.relayActions(2).contains(.closeStream(exitCircuit, streamID: stream, .destroy)))
        #expect(net.existingChannel(0, 1).map { net.relays[0].circuitCount(on: $0) } == 0)
    }

    @Test func exitDestroyReachesClientAsDestroyed() throws {
        let net = try self.network(seed: 13)
        let id = try net.buildCircuit()
        let exitCircuit = try #require(net.relays[2].circuitIDs.first)
        net.relayCall(2) { $0.destroyCircuit(exitCircuit, reason: .resourceLimit) }
        net.run()
        #expect(net.events(of: id).last == .closed(.destroyed, failure: nil))
        #expect(net.relayActions(1).contains { if case .circuitClosed(_, .resourceLimit, nil) = $0 { true } else { false } })
        #expect(net.relays.map(\.circuitCount) == [0, 0, 0])
    }

    @Test func channelCloseTearsDownBothSides() throws {
        let net = try self.network(seed: 14)
        let id = try net.buildCircuit()
        let middle = try #require(net.existingChannel(1, 2))
        net.relayCall(1) { $0.channelClosed(middle) }
        net.relayCall(2) { $0.channelClosed(middle) }
        net.run()
        // Relay 1 tells relay 0 CHANNEL_CLOSED; relay 0 relays it to the client as DESTROYED.
        #expect(net.relayActions(0).contains { if case .circuitClosed(_, .channelClosed, nil) = $0 { true } else { false } })
        #expect(net.events(of: id).last == .closed(.destroyed, failure: nil))
        #expect(net.relays.map(\.circuitCount) == [0, 0, 0])
    }
}
