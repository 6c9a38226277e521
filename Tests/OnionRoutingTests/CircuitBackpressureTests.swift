import NetBasics
import NIOCore
@testable import OnionRouting
import TorCells
import Testing

/// The relay decides backpressure toward the client against `queueLimits`: a producer that fills its
/// circuit's queue (or, an exit, its stream's) gets `pauseProducer` once, `resumeProducer` once the
/// client's SENDMEs drained it, and a producer that ignores the pause gets its circuit destroyed
/// with RESOURCELIMIT. No sockets: the test plays client, exit socket and application.
@Suite struct CircuitBackpressureTests {
    let dbQuery = RelayCommand(81)
    let dbData = RelayCommand(83)
    let cell = RelayCellBody.maximumDataLength

    func pauses(_ net: TestNetwork, _ r: Int) -> [RelayAction] {
        net.relayActions(r).filter { if case .pauseProducer = $0 { true } else { false } }
    }
    func resumes(_ net: TestNetwork, _ r: Int) -> [RelayAction] {
        net.relayActions(r).filter { if case .resumeProducer = $0 { true } else { false } }
    }

    /// One hop with an application stream open at the exit.
    func applicationStream(_ limits: CircuitQueueLimits) throws -> (TestNetwork, UInt32, RelayCircuitID, UInt16) {
        let net = try TestNetwork(relayCount: 1) { _, config in config.queueLimits = limits }
        let id = try net.buildCircuit()
        let exit = try #require(net.relays[0].circuitIDs.first)
        let stream = try #require(try net.client.withCircuit(id) { try $0.openApplicationStream() } ?? nil)
        try net.clientCall(id) { try $0.send(command: dbQuery, body: ByteBuffer(), onStream: stream) }
        net.run()
        return (net, id, exit, stream)
    }

    /// One hop whose exit has a connected exit stream (the test plays its TCP socket).
    func exitStream(_ limits: CircuitQueueLimits) throws -> (TestNetwork, RelayCircuitID, UInt16) {
        let net = try TestNetwork(relayCount: 1) { _, config in
            config.queueLimits = limits
            config.allowSingleHopExits = true
            config.exitPolicy = AddressPolicy(lines: ["accept 127.0.0.1:*", "reject *:*"])!
        }
        let id = try net.buildCircuit()
        net.onConnect = { _, _, _, _ in .connected(.v4(IPv4Address(127, 0, 0, 1))) }
        var stream: UInt16 = 0
        try net.clientCall(id) { circuit in
            let (s, actions) = try circuit.openStream(host: "127.0.0.1", port: 80)
            stream = s
            return actions
        }
        net.run()
        return (net, try #require(net.relays[0].circuitIDs.first), stream)
    }

    @Test func anApplicationCrossingThePauseIsPausedOnceAndResumedWhenTheClientDrainsIt() throws {
        let limits = CircuitQueueLimits(pauseBytes: 20_000, maximumBytes: 1 << 20)
        let (net, id, exit, stream) = try applicationStream(limits)
        let body = ByteBuffer(repeating: 1, count: cell)
        // Nothing reaches the client (no run()), so after the 1000-cell circuit window everything queues.
        var sent = 0
        while pauses(net, 0).isEmpty, sent < 2000 {
            #expect(net.relays[0].queuedBytes(exit) < limits.pauseBytes)
            try net.relayCall(0) { try $0.sendApplicationMessage(exit, streamID: stream, command: dbData, body: body) }
            sent += 1
        }
        #expect(sent == 1000 + limits.pauseBytes / cell + 1)
        #expect(net.relays[0].queuedBytes(exit) >= limits.pauseBytes)
        #expect(pauses(net, 0) == [.pauseProducer(exit, streamID: stream)])
        #expect(net.relays[0].isProducerPaused(exit, streamID: stream))
        // Sending on regardless does not repeat the pause.
        try net.relayCall(0) { try $0.sendApplicationMessage(exit, streamID: stream, command: dbData, body: body) }
        #expect(pauses(net, 0).count == 1)
        #expect(resumes(net, 0).isEmpty)

        // The client reads: its circuit SENDMEs open the window, the queue drains below the pause.
        net.run()
        #expect(net.relays[0].queuedBytes(exit) < limits.pauseBytes)
        #expect(resumes(net, 0) == [.resumeProducer(exit, streamID: stream)])
        #expect(!net.relays[0].isProducerPaused(exit, streamID: stream))
        let received = net.events(of: id).filter { if case .streamMessage(stream, dbData, _) = $0 { true } else { false } }
        #expect(received.count == sent + 1)
    }

    @Test func aProducerIgnoringThePauseGetsDestroyResourceLimitAtTheCap() throws {
        let limits = CircuitQueueLimits(pauseBytes: 20_000, maximumBytes: 60_000)
        let (net, id, exit, stream) = try applicationStream(limits)
        let body = ByteBuffer(repeating: 2, count: cell)
        var sent = 0
        while net.relays[0].hasCircuit(exit), sent < 2000 {
            net.relayCall(0) { (try? $0.sendApplicationMessage(exit, streamID: stream, command: dbData, body: body)) ?? [] }
            sent += 1
            #expect(net.relays[0].queuedBytes(exit) <= limits.maximumBytes)
        }
        #expect(sent == 1000 + limits.maximumBytes / cell + 1)
        #expect(pauses(net, 0) == [.pauseProducer(exit, streamID: stream)])
        #expect(resumes(net, 0).isEmpty)
        #expect(net.relayActions(0).contains { if case .circuitClosed(exit, .resourceLimit, _?) = $0 { true } else { false } })
        // The client learns it from DESTROY RESOURCELIMIT.
        net.run()
        #expect(net.events(of: id).contains { if case .closed(.resourceLimit, _) = $0 { true } else { false } })
    }

    @Test func anExitStreamPausesOnItsOwnQueueAndResumesOnItsStreamSendmes() throws {
        let limits = CircuitQueueLimits(pauseBytes: 1 << 20, exitStreamPauseBytes: 10_000, maximumBytes: 4 << 20)
        let (net, exit, stream) = try exitStream(limits)
        let chunk = ByteBuffer(repeating: 3, count: cell)
        // The 500-cell stream window runs out long before the circuit's; then the stream's queue fills.
        var reads = 0
        while pauses(net, 0).isEmpty, reads < 2000 {
            try net.relayCall(0) { try $0.streamReceived(exit, streamID: stream, data: chunk) }
            reads += 1
        }
        #expect(reads == 500 + limits.exitStreamPauseBytes / cell + 1)
        #expect(net.relays[0].queuedBytes(exit, streamID: stream) >= limits.exitStreamPauseBytes)
        #expect(net.relays[0].queuedBytes(exit) < limits.pauseBytes)
        #expect(pauses(net, 0) == [.pauseProducer(exit, streamID: stream)])

        net.run()
        #expect(net.relays[0].queuedBytes(exit, streamID: stream) < limits.exitStreamPauseBytes)
        #expect(resumes(net, 0) == [.resumeProducer(exit, streamID: stream)])
    }

    @Test func anExitStreamThatEndsWhilePausedIsNotResumed() throws {
        let limits = CircuitQueueLimits(pauseBytes: 1 << 20, exitStreamPauseBytes: 10_000, maximumBytes: 4 << 20)
        let (net, exit, stream) = try exitStream(limits)
        let chunk = ByteBuffer(repeating: 4, count: cell)
        while pauses(net, 0).isEmpty {
            try net.relayCall(0) { try $0.streamReceived(exit, streamID: stream, data: chunk) }
        }
        // The exit's socket closes (END after the queued data); once drained there is nothing to resume.
        try net.relayCall(0) { try $0.closeStream(exit, streamID: stream, reason: .done) }
        net.run()
        #expect(resumes(net, 0).isEmpty)
        #expect(!net.relays[0].isProducerPaused(exit, streamID: stream))
    }
}
