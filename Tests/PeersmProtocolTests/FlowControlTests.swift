import Testing
@testable import PeersmProtocol

@Suite struct FlowControlTests {
    @Test func senderAndReceiverStayInStep() throws {
        var sender = DBSendWindow()
        var receiver = DBReceiveWindow()
        var sendmes = 0
        // The requester consumes everything it receives; 5,000 messages flow without stalling.
        for _ in 0..<5000 {
            #expect(sender.canSend)
            try sender.didSend()
            try receiver.didReceive()
            let owed = receiver.didConsume()
            for _ in 0..<owed { try sender.receivedSendme() }
            sendmes += owed
            #expect(sender.window == receiver.window)
        }
        #expect(sendmes == 10)
    }

    @Test func senderStopsAtZeroAndRefusesSurplusSendme() throws {
        var sender = DBSendWindow()
        for _ in 0..<DBFlowControl.initialWindow { try sender.didSend() }
        #expect(!sender.canSend)
        #expect(throws: DBFlowControlError.windowExhausted) { try sender.didSend() }
        try sender.receivedSendme()
        try sender.receivedSendme()
        #expect(sender.window == 1000)
        #expect(throws: DBFlowControlError.unexpectedSendme) { try sender.receivedSendme() }
    }

    @Test func receiverDetectsOverrun() throws {
        var receiver = DBReceiveWindow()
        for _ in 0..<DBFlowControl.initialWindow { try receiver.didReceive() }
        #expect(throws: DBFlowControlError.windowOverrun) { try receiver.didReceive() }
        #expect(receiver.didConsume(499) == 0)
        #expect(receiver.didConsume(1) == 1)
        try receiver.didReceive()
    }
}
