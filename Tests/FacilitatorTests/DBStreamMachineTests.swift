import Crypto
import NIOCore
import PeersmProtocol
import Testing

@testable import Facilitator

/// The per-stream state machine alone: no engine, no circuit, no clock.
@Suite struct DBStreamMachineTests {
    let key = Curve25519.Signing.PrivateKey()
    let name = try! HashName(infohash: Array(1...20))

    func query(first: UInt32 = 0, count: UInt16, counter: UInt8 = 0) -> DBQuery {
        DBQuery(hashName: name, firstChunk: first, chunkCount: count, counter: counter, nonce: .random())
    }

    func sent(_ actions: [DBStreamMachine.Action]) -> [PeersmMessage] {
        actions.compactMap { if case .send(let m) = $0 { return m } else { return nil } }
    }

    func dataMessages(_ actions: [DBStreamMachine.Action]) -> [DBData] {
        sent(actions).compactMap { if case .data(let d) = $0 { return d } else { return nil } }
    }

    @Test func counterFiveIsAnsweredWithLoopAndNeverResolved() {
        var m = DBStreamMachine(query: query(count: 0, counter: 5), signingKey: key)
        let actions = m.start()
        #expect(actions == [.send(.end(DBEnd(reason: .loop))), .finished(.loop, byRequester: false)])
        #expect(m.phase == .done)
        var below = DBStreamMachine(query: query(count: 0, counter: 4), signingKey: key)
        #expect(below.start() == [.openContent(name)])
    }

    @Test func infoQuerySendsProgressOnceThenFileInfoThenFinished() throws {
        var m = DBStreamMachine(query: query(count: 0), signingKey: key)
        #expect(m.start() == [.openContent(name)])
        #expect(sent(m.contentProgress(.torrent)) == [.connected(.progress(.torrent))])
        #expect(m.contentProgress(.torrent).isEmpty)  // repeated word: not resent
        #expect(sent(m.contentProgress(.start)) == [.connected(.progress(.start))])
        let actions = m.contentOpened(size: 1000, mimeType: "video/mp4")
        let info = try FileInfo(size: 1000, mimeType: "video/mp4", publicKey: key.publicKey)
        #expect(actions == [.send(.connected(.fileInfo(info))), .stopContent, .send(.end(DBEnd(reason: .finished))),
                            .finished(.finished, byRequester: false)])
    }

    @Test func unprintableMIMETypeIsServedAsOctetStream() throws {
        var m = DBStreamMachine(query: query(count: 0), signingKey: key)
        _ = m.start()
        let messages = sent(m.contentOpened(size: 5, mimeType: "bad\ntype"))
        #expect(messages.first == .connected(.fileInfo(try FileInfo(size: 5, mimeType: "application/octet-stream", publicKey: key.publicKey))))
    }

    /// A whole answer through the machine verifies with the requester's ChunkVerifier, and the DB
    /// window holds the machine at 1000 messages until a DB_SENDME arrives: an answer of 1601
    /// chunks goes out as 1000, then 500 more per DB_SENDME, and ends only with the last.
    @Test func dataAnswerVerifiesAndRespectsTheDBWindow() throws {
        let size = 1600 * 486 + 100  // 1601 chunks: more than the window and one DB_SENDME allow
        let file = testBytes(size, seed: 3)
        let q = query(count: 1601)
        var m = DBStreamMachine(query: q, signingKey: key, maxBufferedMessages: 2000)
        _ = m.start()
        let read = m.contentOpened(size: UInt64(size), mimeType: "application/octet-stream")
        #expect(read == [.readContent(0..<UInt64(size))])
        var verifier = try ChunkVerifier(fileInfo: FileInfo(size: UInt64(size), mimeType: "application/octet-stream", publicKey: key.publicKey), query: q)
        var first: [DBStreamMachine.Action] = []
        var offset = 0
        while offset < size {
            let n = min(10_000, size - offset)
            first += m.contentData(ByteBuffer(bytes: file[offset..<offset + n]))
            offset += n
        }
        first += m.contentEnded()
        // The whole answer is in the machine; the window let exactly 1000 out and nothing ends yet.
        #expect(dataMessages(first).count == DBFlowControl.initialWindow)
        #expect(m.sentData == DBFlowControl.initialWindow && m.bufferedMessages == 601)
        #expect(!sent(first).contains(.end(DBEnd(reason: .finished))) && !first.contains(.finished(.finished, byRequester: false)))

        let second = m.received(PeersmRelayCommand.dbSendme.rawValue, body: ByteBuffer())
        #expect(dataMessages(second).count == DBFlowControl.increment)
        #expect(!sent(second).contains(.end(DBEnd(reason: .finished))))
        let third = m.received(PeersmRelayCommand.dbSendme.rawValue, body: ByteBuffer())
        #expect(dataMessages(third).count == 101)
        #expect(sent(third).last == .end(DBEnd(reason: .finished)))
        #expect(third.last == .finished(.finished, byRequester: false))

        var out: [UInt8] = []
        for d in dataMessages(first + second + third) {
            if let block = try verifier.receive(d) { out += Array(block.bytes.readableBytesView) }
        }
        try verifier.finish()
        #expect(out == file)
    }

    @Test func windowStopsAtOneThousandAndSendmeReopensIt() throws {
        let chunks = 1200
        let size = chunks * 486
        var m = DBStreamMachine(query: query(count: UInt16(chunks)), signingKey: key, maxBufferedMessages: 100_000)
        _ = m.start()
        _ = m.contentOpened(size: UInt64(size), mimeType: "a/b")
        let first = m.contentData(ByteBuffer(bytes: testBytes(size, seed: 4))) + m.contentEnded()
        #expect(dataMessages(first).count == 1000)
        #expect(m.bufferedMessages == 200)
        #expect(!sent(first).contains(.end(DBEnd(reason: .finished))))
        let more = m.received(PeersmRelayCommand.dbSendme.rawValue, body: ByteBuffer())
        #expect(dataMessages(more).count == 200)
        #expect(more.last == .finished(.finished, byRequester: false))
    }

    @Test func buffersAreBoundedByWantsContent() {
        var m = DBStreamMachine(query: query(count: 3000), signingKey: key, maxBufferedMessages: 64)
        _ = m.start()
        _ = m.contentOpened(size: 3000 * 486, mimeType: "a/b")
        var fed = 0
        while m.wantsContent {
            _ = m.contentData(ByteBuffer(bytes: [UInt8](repeating: 7, count: 486 * 50)))
            fed += 1
        }
        // 1000 went out under the window; at most one feed (50 chunks) beyond the 64-message mark is held.
        #expect(m.sentData == 1000)
        #expect(m.bufferedMessages >= 64 && m.bufferedMessages < 64 + 50 + 8)
        #expect(!m.wantsContent)
        _ = m.received(PeersmRelayCommand.dbSendme.rawValue, body: ByteBuffer())
        #expect(m.wantsContent)
    }

    @Test func firstChunkPastTheEndIsRange() {
        var m = DBStreamMachine(query: query(first: 10, count: 1), signingKey: key)
        _ = m.start()
        #expect(m.contentOpened(size: 486 * 5, mimeType: "a/b") == [.stopContent, .send(.end(DBEnd(reason: .range))), .finished(.range, byRequester: false)])
    }

    @Test func requesterEndStopsContentWithoutAnswer() {
        var m = DBStreamMachine(query: query(count: 10), signingKey: key)
        _ = m.start()
        _ = m.contentOpened(size: 486 * 10, mimeType: "a/b")
        let actions = m.received(PeersmRelayCommand.dbEnd.rawValue, body: ByteBuffer(bytes: [1]))
        #expect(actions == [.stopContent, .finished(.finished, byRequester: true)])
        #expect(m.contentData(ByteBuffer(bytes: [1, 2, 3])).isEmpty)
    }

    @Test func circuitGoneStopsContent() {
        var m = DBStreamMachine(query: query(count: 0), signingKey: key)
        _ = m.start()
        #expect(m.transportClosed() == [.stopContent, .finished(.destroyed, byRequester: true)])
    }

    @Test func excessSendmeAndOutOfPlaceMessagesAreProtocolViolations() {
        var m = DBStreamMachine(query: query(count: 10), signingKey: key)
        _ = m.start()
        _ = m.contentOpened(size: 486 * 10, mimeType: "a/b")
        #expect(sent(m.received(PeersmRelayCommand.dbSendme.rawValue, body: ByteBuffer())) == [.end(DBEnd(reason: .protocolViolation))])
        var n = DBStreamMachine(query: query(count: 10), signingKey: key)
        _ = n.start()
        #expect(sent(n.received(PeersmRelayCommand.dbQuery.rawValue, body: ByteBuffer())) == [.end(DBEnd(reason: .protocolViolation))])
    }

    @Test func deadlinesMapToUnavailableWhileResolvingAndTimeoutWhileServing() {
        var resolving = DBStreamMachine(query: query(count: 0), signingKey: key)
        _ = resolving.start()
        #expect(resolving.isWaitingForSource)
        #expect(sent(resolving.deadlinePassed()) == [.end(DBEnd(reason: .unavailable))])
        var serving = DBStreamMachine(query: query(count: 10), signingKey: key)
        _ = serving.start()
        _ = serving.contentOpened(size: 4860, mimeType: "a/b")
        #expect(sent(serving.deadlinePassed()) == [.end(DBEnd(reason: .timeout))])
    }

    @Test func sourceEndingEarlyIsDestroyedAndExcessIsUnavailable() {
        var short = DBStreamMachine(query: query(count: 10), signingKey: key)
        _ = short.start()
        _ = short.contentOpened(size: 4860, mimeType: "a/b")
        _ = short.contentData(ByteBuffer(bytes: [UInt8](repeating: 0, count: 1000)))
        #expect(sent(short.contentEnded()).last == .end(DBEnd(reason: .destroyed)))
        var long = DBStreamMachine(query: query(count: 1), signingKey: key)
        _ = long.start()
        _ = long.contentOpened(size: 4860, mimeType: "a/b")
        #expect(sent(long.contentData(ByteBuffer(bytes: [UInt8](repeating: 0, count: 487)))).last == .end(DBEnd(reason: .unavailable)))
    }

    @Test func emptyFileAnswerIsSignedAndFinished() throws {
        let q = query(count: 1)
        var m = DBStreamMachine(query: q, signingKey: key)
        _ = m.start()
        let actions = m.contentOpened(size: 0, mimeType: "a/b")
        var verifier = try ChunkVerifier(fileInfo: FileInfo(size: 0, mimeType: "a/b", publicKey: key.publicKey), query: q)
        let data = dataMessages(actions)
        #expect(data.count == 8)
        for d in data { _ = try verifier.receive(d) }
        try verifier.finish()
        #expect(actions.last == .finished(.finished, byRequester: false))
    }
}
