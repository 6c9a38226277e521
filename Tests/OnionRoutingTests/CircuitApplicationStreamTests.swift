import NIOCore
@testable import OnionRouting
import TorCells
import Testing

/// The exit's application hook (Peersm DB_*): which commands open a stream, how the application frees
/// one, and the cap on what a circuit may have queued toward its client.
@Suite struct CircuitApplicationStreamTests {
    let dbQuery = RelayCommand(81)
    let dbData = RelayCommand(83)
    let dbSendme = RelayCommand(85)

    func oneHop(_ configure: @escaping (inout OnionRelayConfiguration) -> Void = { _ in }) throws -> (TestNetwork, UInt32, RelayCircuitID) {
        let net = try TestNetwork(relayCount: 1) { _, config in configure(&config) }
        let id = try net.buildCircuit()
        let exit = try #require(net.relays[0].circuitIDs.first)
        return (net, id, exit)
    }

    func clientSend(_ net: TestNetwork, _ id: UInt32, _ command: RelayCommand, stream: UInt16) throws {
        try net.clientCall(id) { try $0.send(command: command, body: ByteBuffer(), onStream: stream) }
        net.run()
    }

    @Test func onlyTheOpeningCommandOpensAStreamAndTheApplicationReleasesIt() throws {
        let (net, id, exit) = try oneHop()
        let stream = try #require(try net.client.withCircuit(id) { try $0.openApplicationStream() } ?? nil)
        try clientSend(net, id, dbSendme, stream: stream)  // late DB_SENDME for a stream we never saw
        #expect(net.relays[0].streamCount(exit) == 0)
        #expect(!net.relayActions(0).contains { if case .application = $0 { true } else { false } })

        try clientSend(net, id, dbQuery, stream: stream)
        #expect(net.relays[0].streamCount(exit) == 1)
        try net.relayCall(0) { try $0.sendApplicationMessage(exit, streamID: stream, command: RelayCommand(84), body: ByteBuffer(bytes: [1])) }
        try net.relays[0].releaseApplicationStream(exit, streamID: stream)
        #expect(net.relays[0].streamCount(exit) == 0)
        #expect(throws: OnionRelayError.self) { try net.relays[0].releaseApplicationStream(exit, streamID: stream) }
        net.run()
        // The answer queued before the release still reached the client; no RELAY_END was sent.
        let events = net.events(of: id)
        #expect(events.contains { if case .streamMessage(stream, RelayCommand(84), _) = $0 { true } else { false } })
        #expect(!events.contains { if case .streamEnded = $0 { true } else { false } })
    }

    @Test func theOpeningCommandsAreConfigurable() throws {
        let (net, id, exit) = try oneHop { $0.applicationCommands.opening = [80, 81] }
        let stream = try #require(try net.client.withCircuit(id) { try $0.openApplicationStream() } ?? nil)
        try clientSend(net, id, RelayCommand(80), stream: stream)
        #expect(net.relays[0].streamCount(exit) == 1)
    }

    @Test func aCircuitOverItsQueueCapIsDestroyedWithResourceLimit() throws {
        let cap = 300_000
        let (net, id, exit) = try oneHop { $0.queueLimits.maximumBytes = cap }
        let stream = try #require(try net.client.withCircuit(id) { try $0.openApplicationStream() } ?? nil)
        try clientSend(net, id, dbQuery, stream: stream)
        // Nothing is delivered to the client (no run()), so no circuit SENDME comes back: after the
        // 1000-cell window everything queues.
        let body = ByteBuffer(repeating: 7, count: 498)
        var sent = 0
        while net.relays[0].hasCircuit(exit), sent < 2000 {
            net.relayCall(0) { (try? $0.sendApplicationMessage(exit, streamID: stream, command: dbData, body: body)) ?? [] }
            sent += 1
            #expect(net.relays[0].queuedBytes(exit) <= cap)
        }
        #expect(!net.relays[0].hasCircuit(exit))
        #expect(sent == 1000 + cap / 498 + 1)
        #expect(net.relayActions(0).contains { if case .circuitClosed(exit, .resourceLimit, _) = $0 { true } else { false } })
    }
}
