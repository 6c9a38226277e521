import NIOCore
import Testing
import TorCells

@testable import OnionRouting

/// Random input must never trap: every cell gets an answer (or is dropped) and the state stays usable.
@Suite struct CircuitRandomInputTests {
    static let commands: [ChannelCommand] = [.relay, .relayEarly, .create2, .createFast, .created2, .createdFast, .destroy, .padding, ChannelCommand(1), ChannelCommand(77), .versions, .netinfo]

    /// A circuit never vanishes silently, and every relay cell we emit is a full 509-byte payload.
    static func checkInvariants(_ actions: [RelayAction], existed: Bool, exists: Bool) {
        if existed && !exists {
            #expect(actions.contains { if case .circuitClosed = $0 { true } else { false } })
        }
        for case .send(let cell, _) in actions where cell.command == .relay || cell.command == .relayEarly {
            #expect(cell.payload.readableBytes == 509)
        }
    }

    @Test(arguments: [UInt64(1), 2, 3]) func randomChannelCellsAtRelay(seed: UInt64) throws {
        var hop = try RawHop { $0.exitPolicy = .acceptAll; $0.extendAllowPrivateAddresses = true }
        var rng = SeededRNG(seed)
        for _ in 0..<2000 {
            let command = Self.commands.randomElement(using: &rng)!
            let length = Bool.random(using: &rng) ? 509 : Int.random(in: 0...600, using: &rng)
            let payload = ByteBuffer(bytes: (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) })
            let circuitID = Bool.random(using: &rng) ? hop.circuitID : UInt32.random(in: 0...UInt32.max, using: &rng)
            let existed = hop.relay.hasCircuit(hop.circuit)
            let actions = hop.relay.receive(ChannelCell(circuitID: circuitID, command: command, payload: payload), on: hop.channel)
            Self.checkInvariants(actions, existed: existed, exists: hop.relay.hasCircuit(hop.circuit))
        }
    }

    /// Correctly encrypted relay cells (so they are recognized) with random headers and bodies: every
    /// relay-message parser runs on garbage.
    @Test(arguments: [UInt64(4), 5, 6]) func randomRecognizedRelayCells(seed: UInt64) throws {
        var rng = SeededRNG(seed)
        for _ in 0..<20 {
            var hop = try RawHop { $0.exitPolicy = .acceptAll; $0.extendAllowPrivateAddresses = true }
            for _ in 0..<100 where hop.relay.hasCircuit(hop.circuit) {
                var plain = (0..<509).map { _ in UInt8.random(in: 0...255, using: &rng) }
                plain[0] = UInt8.random(in: 0...20, using: &rng) | (Bool.random(using: &rng) ? 0 : 80)
                plain[1] = 0; plain[2] = 0
                plain[3] = 0; plain[4] = UInt8.random(in: 0...3, using: &rng)
                plain[9] = UInt8.random(in: 0...2, using: &rng); plain[10] = UInt8.random(in: 0...255, using: &rng)
                let actions = try hop.sendRaw(plain, early: Bool.random(using: &rng))
                Self.checkInvariants(actions, existed: true, exists: hop.relay.hasCircuit(hop.circuit))
                for case .connect(let circuit, let stream, _, _) in actions {
                    _ = try? hop.decrypt(try hop.relay.streamConnected(circuit, streamID: stream, address: nil))
                }
                _ = try? hop.decrypt(actions)
            }
        }
    }

    @Test(arguments: [UInt64(7), 8]) func randomCellsAtClient(seed: UInt64) throws {
        var rng = SeededRNG(seed)
        for _ in 0..<50 {
            var relay = try RawRelay(seed: seed)
            _ = try relay.connectedStream()
            for _ in 0..<40 where !relay.circuit.isClosed {
                var plain = (0..<509).map { _ in UInt8.random(in: 0...255, using: &rng) }
                plain[0] = UInt8.random(in: 0...20, using: &rng)
                plain[1] = 0; plain[2] = 0
                plain[9] = UInt8.random(in: 0...2, using: &rng)
                var bytes = plain
                try relay.crypto.originateBackward(&bytes)
                let actions = relay.circuit.receive(ChannelCell(circuitID: relay.id, command: Bool.random(using: &rng) ? .relay : .relayEarly, payload: ByteBuffer(bytes: bytes)))
                // Closing always comes with the event, and with our DESTROY (TRUNCATED too: we do not rebuild).
                if relay.circuit.isClosed {
                    #expect(actions.contains { if case .event(.closed) = $0 { true } else { false } })
                    #expect(actions.contains { if case .send(let c) = $0 { c.command == .destroy } else { false } })
                }
                for case .send(let cell) in actions where cell.command == .relay {
                    #expect(cell.payload.readableBytes == 509)
                }
            }
        }
    }
}
