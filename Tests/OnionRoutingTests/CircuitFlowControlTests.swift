import NIOCore
import Testing
import TorCells
import TestSupport

@testable import OnionRouting
import PeersmProtocol

@Suite struct CircuitFlowControlTests {
    func digest(_ n: Int) -> SendmeDigest { SendmeDigest([UInt8](repeating: UInt8(n & 0xFF), count: 20))! }

    @Test func windowSizesMatchTor() {
        #expect(FlowControlParameters.circuit == FlowControlParameters(initialWindow: 1000, increment: 100))
        #expect(FlowControlParameters.stream == FlowControlParameters(initialWindow: 500, increment: 50))
    }

    @Test func onlyDataAndDbDataCount() {
        let peersm = ApplicationCommands.peersm
        #expect(peersm.flowControl(of: .data) == .circuitAndStream)
        #expect(peersm.flowControl(of: .dbData) == .circuitOnly)
        for command in [RelayCommand.begin, .end, .sendme, .connected, .extend2, .dbQuery, .dbConnected, .dbEnd, .dbSendme, .dbInfo, RelayCommand(200)] {
            #expect(peersm.flowControl(of: command) == .none, "\(command)")
        }
        // Without an application, DB_DATA is just an unknown command.
        #expect(ApplicationCommands.none.flowControl(of: .data) == .circuitAndStream)
        #expect(ApplicationCommands.none.flowControl(of: .dbData) == .none)
    }

    @Test func packageWindowStopsAtZeroAndRefills() throws {
        var window = PackageWindow(.stream)
        for _ in 0..<500 { #expect(window.canSend); window.didSend() }
        #expect(!window.canSend)
        try window.receivedSendme()
        #expect(window.window == 50)
    }

    @Test func sendmeOverflowIsAViolation() {
        var window = PackageWindow(.stream)
        #expect(throws: FlowControlViolation.sendmeOverflow(window: 500)) { try window.receivedSendme() }
        window.didSend()
        #expect(throws: FlowControlViolation.sendmeOverflow(window: 499)) { try window.receivedSendme() }
    }

    @Test func deliverWindowAsksForSendmeAt450AndRejectsOverrun() throws {
        var window = DeliverWindow(.stream)
        for i in 1...50 { #expect(try window.didReceive() == (i == 50)) }
        #expect(window.window == 450)
        for _ in 0..<450 { _ = try window.didReceive() }
        #expect(window.window == 0)
        #expect(throws: FlowControlViolation.deliverWindowExhausted) { _ = try window.didReceive() }
        window.didSendSendme()
        #expect(window.window == 50)
    }

    /// The sender records its digest at cells 100, 200, …; the receiver's SENDMEs come right after those
    /// same cells and echo the same digest.
    @Test func circuitSenderAndReceiverAgreeOnSendmePoints() throws {
        var sender = CircuitPackageWindow()
        var receiver = CircuitDeliverWindow()
        var echoed: [Sendme] = []
        for n in 1...1000 {
            let needs = sender.nextCellNeedsDigest
            #expect(needs == (n % 100 == 0), "cell \(n)")
            sender.didSend(digest: needs ? self.digest(n) : nil)
            if let sendme = try receiver.didReceive(digest: self.digest(n)) {
                #expect(n % 100 == 0)
                echoed.append(sendme)
            }
        }
        #expect(!sender.canSend)
        #expect(echoed.count == 10)
        for sendme in echoed { try sender.receivedSendme(sendme) }
        #expect(sender.window.window == 1000)
    }

    @Test func circuitSendmeDigestMustMatchOldestRecorded() throws {
        var sender = CircuitPackageWindow()
        for n in 1...200 { sender.didSend(digest: sender.nextCellNeedsDigest ? self.digest(n) : nil) }
        // Acknowledging cell 200 before cell 100 is wrong.
        #expect(throws: FlowControlViolation.sendmeDigestMismatch) {
            try sender.receivedSendme(.v1(digest: self.digest(200).bytes))
        }
    }

    @Test func circuitSendmeVersionPolicy() throws {
        var strict = CircuitPackageWindow(minimumAcceptedVersion: 1)
        var lax = CircuitPackageWindow(minimumAcceptedVersion: 0)
        for n in 1...100 {
            strict.didSend(digest: strict.nextCellNeedsDigest ? self.digest(n) : nil)
            lax.didSend(digest: lax.nextCellNeedsDigest ? self.digest(n) : nil)
        }
        #expect(throws: FlowControlViolation.unacceptableSendmeVersion(0)) { try strict.receivedSendme(.v0) }
        try lax.receivedSendme(.v0)
        #expect(lax.window.window == 1000)
        #expect(throws: FlowControlViolation.unacceptableSendmeVersion(7)) {
            try lax.receivedSendme(.unrecognized(version: 7, data: ByteBuffer()))
        }
        // An unauthenticated SENDME still may not push the window past its start.
        #expect(throws: FlowControlViolation.sendmeOverflow(window: 1000)) { try lax.receivedSendme(.v0) }
    }

    @Test func unexpectedCircuitSendme() {
        var sender = CircuitPackageWindow()
        for _ in 0..<150 { sender.didSend(digest: nil) }  // digests deliberately not recorded
        #expect(throws: FlowControlViolation.unexpectedSendme) { try sender.receivedSendme(.v1(digest: self.digest(1).bytes)) }
    }

    // MARK: the endpoint's queues

    @Test func endpointQueuesBeyondWindowsAndKeepsEndBehindData() throws {
        var endpoint = CircuitEndpoint(minimumSendmeVersion: 1, applicationCommands: .peersm)
        endpoint.addStream(1)
        for cell in relayCells(command: .data, streamID: 1, data: pattern(600 * 498, seed: 1)) { endpoint.enqueue(cell) }
        endpoint.enqueue(RelayCell(ours: .end(End(reason: .done)), streamID: 1))
        var sent = 0
        while let cell = endpoint.nextSendable() {
            #expect(cell.command == .data)
            endpoint.didSend(cell, digest: endpoint.needsDigest(cell) ? self.digest(sent) : nil)
            sent += 1
        }
        #expect(sent == 500)  // stream window
        #expect(endpoint.queuedBytes(1) == 100 * 498 + 1)  // the rest of the data and END's reason byte
        // Two stream SENDMEs free 100 cells: the rest of the data, then the END.
        try endpoint.receivedSendme(streamID: 1, .v0)
        try endpoint.receivedSendme(streamID: 1, .v0)
        var tail: [RelayCommand] = []
        while let cell = endpoint.nextSendable() { tail.append(cell.command); endpoint.didSend(cell, digest: nil) }
        #expect(tail.count == 101 && tail.last == .end)
    }

    @Test func endpointRoundRobinsBetweenStreams() {
        var endpoint = CircuitEndpoint(minimumSendmeVersion: 1, applicationCommands: .peersm)
        for id: UInt16 in [1, 2] {
            endpoint.addStream(id)
            for cell in relayCells(command: .data, streamID: id, data: pattern(3 * 498, seed: 1)) { endpoint.enqueue(cell) }
        }
        var order: [UInt16] = []
        while let cell = endpoint.nextSendable() { order.append(cell.streamID) }
        #expect(order == [1, 2, 1, 2, 1, 2])
    }

    @Test func relayCellsSplitAt498() {
        let cells = relayCells(command: .data, streamID: 3, data: pattern(1000, seed: 0))
        #expect(cells.map(\.data.readableBytes) == [498, 498, 4])
        #expect(relayCells(command: .dbEnd, streamID: 3, data: ByteBuffer()).count == 1)
    }
}

@Suite struct CircuitMultiplexerTests {
    @Test func idsFollowTheHighBitRule() {
        var rng = SplitMix64(seed: 3)
        let initiator = CircuitIDAllocator(role: .initiator)
        let responder = CircuitIDAllocator(role: .responder)
        for _ in 0..<1000 {
            let a = initiator.allocate(using: &rng) { _ in false }!
            let b = responder.allocate(using: &rng) { _ in false }!
            #expect(a & 0x8000_0000 != 0 && a != 0x8000_0000 || a & 0x7FFF_FFFF != 0)
            #expect(b & 0x8000_0000 == 0 && b != 0)
        }
        #expect(initiator.isValidPeerID(5) && !initiator.isValidPeerID(0x8000_0005) && !initiator.isValidPeerID(0))
        #expect(responder.isValidPeerID(0x8000_0005) && !responder.isValidPeerID(5))
    }

    @Test func multiplexerAcceptsOpensAndRemoves() throws {
        var rng = SplitMix64(seed: 4)
        var mux = CircuitMultiplexer<String>(role: .responder)
        try mux.acceptInbound(0x8000_0001, "client circuit")
        #expect(throws: CircuitIDError.idInUse(0x8000_0001)) { try mux.acceptInbound(0x8000_0001, "again") }
        #expect(throws: CircuitIDError.idNotInPeerRange(7)) { try mux.acceptInbound(7, "wrong half") }
        #expect(throws: CircuitIDError.idNotInPeerRange(0)) { try mux.acceptInbound(0, "reserved") }
        let ours = try mux.openOutbound("ours", using: &rng)
        #expect(ours & 0x8000_0000 == 0 && mux[ours] == "ours")
        #expect(mux.remove(0x8000_0001) == "client circuit")
        #expect(mux.removeAll().map(\.1) == ["ours"])
        #expect(mux.count == 0)
    }

    @Test func allocatorGivesUpWhenEverythingIsTaken() {
        var rng = SplitMix64(seed: 5)
        #expect(CircuitIDAllocator(role: .initiator).allocate(using: &rng) { _ in true } == nil)
    }
}
