import NIOCore
import Testing
import TorCells
import TorCrypto
import TestSupport

@testable import OnionRouting
import PeersmProtocol

/// A hand-driven one-hop relay facing a real `ClientCircuit`, so tests can send what a hostile exit would.
struct RawRelay {
    var circuit: ClientCircuit
    let crypto: RelayCircuitCrypto
    var rng = SplitMix64(seed: 88)
    var id: UInt32 { self.circuit.circuitID }

    init(seed: UInt64 = 3) throws {
        var seedRNG = SplitMix64(seed: seed)
        let identity = try TestRelayIdentity(index: 0, rng: &seedRNG)
        var (circuit, actions) = try ClientCircuit.build(circuitID: 0x8000_0010, path: [identity.hop], rng: SplitMix64(seed: seed))
        guard case .send(let create)? = actions.first, case .create2(let c2) = try create.message() else { throw TestError("no CREATE2") }
        let (reply, keys) = try Ntor.serverRespond(
            onionskin: Array(c2.handshakeData.readableBytesView), keys: [identity.ntor], using: &seedRNG)
        self.crypto = try RelayCircuitCrypto(keys: keys)
        let opened = circuit.receive(try ChannelCell(circuitID: 0x8000_0010, message: .created2(Created2(handshakeData: ByteBuffer(bytes: reply)))))
        guard opened == [.event(.opened)] else { throw TestError("\(opened)") }
        self.circuit = circuit
    }

    /// Originate a relay cell toward the client and feed it in.
    mutating func send(_ message: RelayMessage, stream: UInt16 = 0, tamper: (inout [UInt8]) -> Void = { _ in }) throws -> [ClientCircuitAction] {
        let cell = try RelayCell(streamID: stream, message: message)
        var bytes = Array(try cell.encode(padding: &self.rng).bytes.readableBytesView)
        try self.crypto.originateBackward(&bytes)
        tamper(&bytes)
        return self.circuit.receive(ChannelCell(circuitID: self.id, command: .relay, payload: ByteBuffer(bytes: bytes)))
    }

    /// Decrypt what the client sent toward us, with the forward digest after each cell.
    func decrypt(_ actions: [ClientCircuitAction]) throws -> [(RelayCell, [UInt8])] {
        var cells: [(RelayCell, [UInt8])] = []
        for case .send(let cell) in actions where cell.command == .relay || cell.command == .relayEarly {
            var bytes = Array(cell.payload.readableBytesView)
            guard try self.crypto.decryptForward(&bytes) else { throw TestError("unrecognized cell from the client") }
            cells.append((try RelayCell(decoding: RelayCellBody(ByteBuffer(bytes: bytes))), self.crypto.forwardDigest))
        }
        return cells
    }

    /// Open a stream and answer CONNECTED.
    mutating func connectedStream() throws -> UInt16 {
        let (stream, actions) = try self.circuit.openStream(host: "example.com", port: 443)
        #expect(try self.decrypt(actions).map { try $0.0.message() } == [.begin(try Begin(host: "example.com", port: 443))])
        let events = try self.send(.connected(.empty), stream: stream)
        #expect(events == [.event(.streamConnected(streamID: stream, .empty))])
        return stream
    }
}

func clientClosed(_ actions: [ClientCircuitAction]) -> (DestroyReason, CircuitFailure?)? {
    for case .event(.closed(let reason, let failure)) in actions { return (reason, failure) }
    return nil
}

@Suite struct CircuitClientBadInputTests {
    @Test func dataBeyondStreamWindowEndsStreamAtClient() throws {
        var relay = try RawRelay()
        let stream = try relay.connectedStream()
        _ = try relay.circuit.setStreamPaused(stream, true)
        for _ in 0..<500 {
            let actions = try relay.send(.data(ByteBuffer(bytes: [7])), stream: stream)
            #expect(!(try relay.decrypt(actions)).contains { $0.0.command == .sendme && $0.0.streamID == stream })
        }
        let over = try relay.send(.data(ByteBuffer(bytes: [7])), stream: stream)
        #expect(try relay.decrypt(over).map { try $0.0.message() } == [.end(End(reason: .torProtocol))])
        #expect(over.last == .event(.streamEnded(streamID: stream, End(reason: .torProtocol))))
        #expect(!relay.circuit.isClosed)
    }

    @Test func clientSendsStreamSendmesWhileReading() throws {
        var relay = try RawRelay()
        let stream = try relay.connectedStream()
        var streamSendmes = 0, circuitSendmes: [Sendme] = []
        var digests: [[UInt8]] = []
        for _ in 0..<200 {
            let cells = try relay.decrypt(try relay.send(.data(ByteBuffer(bytes: [1, 2, 3])), stream: stream))
            for (cell, digest) in cells where cell.command == .sendme {
                if cell.streamID == stream { streamSendmes += 1 }
                if cell.streamID == 0, case .sendme(let s) = try cell.message() { circuitSendmes.append(s); digests.append(digest) }
            }
        }
        #expect(streamSendmes == 4)  // one per 50 cells
        // Circuit SENDMEs are v1 and echo the backward digest after cells 100 and 200.
        #expect(circuitSendmes.count == 2)
        #expect(circuitSendmes.allSatisfy { if case .v1 = $0 { true } else { false } })
    }

    @Test func wrongSendmeDigestFromExitDestroysAtClient() throws {
        var relay = try RawRelay()
        let stream = try relay.connectedStream()
        let sent = try relay.decrypt(try relay.circuit.send(data: pattern(100 * 498, seed: 1), onStream: stream))
        #expect(sent.count == 100)
        let actions = try relay.send(.sendme(.v1(digest: [UInt8](repeating: 0, count: 20))))
        #expect(clientClosed(actions)! == (.protocol, .flowControl(.sendmeDigestMismatch)))
        guard case .send(let destroy)? = actions.first, case .destroy(.protocol) = try destroy.message() else {
            throw TestError("no DESTROY")
        }
    }

    @Test func rightSendmeDigestFromExitIsAccepted() throws {
        var relay = try RawRelay()
        let stream = try relay.connectedStream()
        // 1 000 cells fill the circuit window (stream SENDMEs from the exit let the stream go on).
        var sent = try relay.decrypt(try relay.circuit.send(data: pattern(1000 * 498, seed: 1), onStream: stream))
        for _ in 0..<10 { sent += try relay.decrypt(try relay.send(.sendme(.v0), stream: stream)) }
        #expect(sent.count == 1000)
        #expect(relay.circuit.circuitPackageWindow == 0)
        // The exit echoes the forward digest after the 100th DATA cell (cell 0 was the BEGIN, already counted
        // by `connectedStream`, so DATA cell 100 is sent[99]).
        let actions = try relay.send(.sendme(.v1(digest: sent[99].1)))
        #expect(clientClosed(actions) == nil)
        #expect(relay.circuit.circuitPackageWindow == 100)
    }

    @Test func tamperedCellFromExitDestroysAtClient() throws {
        var relay = try RawRelay()
        let actions = try relay.send(.drop) { $0[100] ^= 0x80 }
        #expect(clientClosed(actions)! == (.protocol, .unrecognizedRelayCell))
    }

    @Test func dataBeforeConnectedEndsStream() throws {
        var relay = try RawRelay()
        let (stream, actions) = try relay.circuit.openStream(host: "example.com", port: 80)
        _ = try relay.decrypt(actions)
        let result = try relay.send(.data(ByteBuffer(bytes: [1])), stream: stream)
        #expect(result.last == .event(.streamEnded(streamID: stream, End(reason: .torProtocol))))
    }

    @Test func extendedWithoutExtendDestroys() throws {
        var relay = try RawRelay()
        let actions = try relay.send(.extended2(Created2(handshakeData: ByteBuffer(bytes: [UInt8](repeating: 0, count: 64)))))
        #expect(clientClosed(actions)! == (.protocol, .unexpected("EXTENDED2 not awaited")))
    }

    @Test func truncatedFromExitClosesCircuit() throws {
        var relay = try RawRelay()
        let actions = try relay.send(.truncated(.connectFailed))
        #expect(clientClosed(actions)! == (.connectFailed, nil))
        #expect(relay.circuit.isClosed)
    }

    @Test func applicationMessagesReachTheClientAsEvents() throws {
        var relay = try RawRelay()
        let stream = try relay.circuit.openApplicationStream()
        let actions = try relay.send(.raw(.dbConnected, ByteBuffer(bytes: [1, 0, 0, 0])), stream: stream)
        #expect(actions == [.event(.streamMessage(streamID: stream, command: .dbConnected, body: ByteBuffer(bytes: [1, 0, 0, 0])))])
    }

    @Test func ownerErrorsDoNotTouchTheCircuit() throws {
        var relay = try RawRelay()
        #expect(throws: ClientCircuitError.unknownStream(42)) { try relay.circuit.send(data: ByteBuffer(bytes: [1]), onStream: 42) }
        #expect(throws: ClientCircuitError.invalidTarget(.badStreamTarget(reason: "port 0"))) { try relay.circuit.openStream(host: "x", port: 0) }
        let stream = try relay.circuit.openApplicationStream()
        #expect(throws: ClientCircuitError.messageTooLong(.dbQuery, 499)) {
            try relay.circuit.send(command: .dbQuery, body: pattern(499, seed: 0), onStream: stream)
        }
        #expect(!relay.circuit.isClosed)
        _ = relay.circuit.destroy()
        #expect(throws: ClientCircuitError.notOpen) { try relay.circuit.openApplicationStream() }
    }
}
