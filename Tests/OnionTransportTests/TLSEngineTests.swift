import NIOCore
import OnionTransport
import Testing

/// The sans-I/O engine alone: two engines pumped in memory, no sockets.
@Suite struct TLSEngineTests {
    /// Moves ciphertext between the two engines until neither has anything to send.
    /// Returns the plaintext each side received.
    @discardableResult
    static func pump(_ a: TLSEngine, _ b: TLSEngine) throws -> (toA: [UInt8], toB: [UInt8]) {
        var toA: [UInt8] = [], toB: [UInt8] = []
        for _ in 0..<64 {
            var moved = false
            if let out = a.drainOutbound() {
                moved = true
                let r = try b.feed(ciphertext: out)
                if let p = r.plaintext { toB += p.readableBytesView }
            }
            if let out = b.drainOutbound() {
                moved = true
                let r = try a.feed(ciphertext: out)
                if let p = r.plaintext { toA += p.readableBytesView }
            }
            if !moved { return (toA, toB) }
        }
        Issue.record("engines kept talking after 64 rounds")
        return (toA, toB)
    }

    static func connectedPair() throws -> (client: TLSEngine, server: TLSEngine) {
        let cert = try TestCertificate.shared()
        let client = try TLSEngine(context: try TLSContext.client())
        let server = try TLSEngine(context: try cert.serverContext())
        try client.startHandshake()
        try server.startHandshake()
        try pump(client, server)
        return (client, server)
    }

    @Test func handshakeExchangeAndExporterAgree() throws {
        let cert = try TestCertificate.shared()
        let (client, server) = try Self.connectedPair()
        #expect(client.isHandshakeComplete && server.isHandshakeComplete)
        #expect(!client.isServer && server.isServer)
        #expect(client.protocolVersion == "TLSv1.3")
        #expect(client.peerCertificateDER == cert.certificateDER)
        #expect(server.localCertificateDER == cert.certificateDER)
        #expect(server.peerCertificateDER == nil) // a Tor initiator presents no TLS certificate
        #expect(client.localCertificateDER == nil)

        let identity = randomBytes(32)
        let label = TLSEngine.torAuth0003ExporterLabel
        let c = try client.exportKeyingMaterial(label: label, context: identity, length: 32)
        let s = try server.exportKeyingMaterial(label: label, context: identity, length: 32)
        #expect(c == s)
        #expect(c.count == 32)
        #expect(c != [UInt8](repeating: 0, count: 32))
        var otherIdentity = identity
        otherIdentity[0] ^= 1
        #expect(try client.exportKeyingMaterial(label: label, context: otherIdentity, length: 32) != c)
        #expect(try client.exportKeyingMaterial(label: "EXPORTER other", context: identity, length: 32) != c)

        let up = randomBytes(70_000), down = randomBytes(1_000)
        try client.write(plaintext: ByteBuffer(bytes: up))
        try server.write(plaintext: ByteBuffer(bytes: down))
        let got = try Self.pump(client, server)
        #expect(got.toB == up)
        #expect(got.toA == down)
    }

    @Test func handshakeCompletedIsReportedOnceWithTheFirstData() throws {
        let cert = try TestCertificate.shared()
        let client = try TLSEngine(context: try TLSContext.client())
        let server = try TLSEngine(context: try cert.serverContext())
        try client.startHandshake()
        let hello = try #require(client.drainOutbound())
        let first = try server.feed(ciphertext: hello)
        #expect(!first.handshakeCompleted) // TLS 1.3: the server waits for the client's Finished
        let flight = try #require(server.drainOutbound())
        let second = try client.feed(ciphertext: flight)
        #expect(second.handshakeCompleted && client.isHandshakeComplete)
        // The client's Finished and its first record travel together; the server completes and
        // decrypts in the same feed.
        try client.write(plaintext: ByteBuffer(string: "VERSIONS"))
        let third = try server.feed(ciphertext: try #require(client.drainOutbound()))
        #expect(third.handshakeCompleted)
        #expect(third.plaintext.map { String(buffer: $0) } == "VERSIONS")
        let fourth = try server.feed(ciphertext: ByteBuffer())
        #expect(!fourth.handshakeCompleted)
    }

    @Test func byteAtATimeDelivery() throws {
        // Records split at every byte boundary (as a WebSocket or a slow TCP path may deliver them).
        let cert = try TestCertificate.shared()
        let client = try TLSEngine(context: try TLSContext.client())
        let server = try TLSEngine(context: try cert.serverContext())
        try client.startHandshake()
        var received: [UInt8] = []
        var sent = false
        let message = randomBytes(5_000)
        for _ in 0..<8 {
            if let out = client.drainOutbound() {
                for byte in out.readableBytesView {
                    let r = try server.feed(ciphertext: ByteBuffer(bytes: [byte]))
                    if let p = r.plaintext { received += p.readableBytesView }
                }
            }
            if let out = server.drainOutbound() { _ = try client.feed(ciphertext: out) }
            if client.isHandshakeComplete && !sent {
                try client.write(plaintext: ByteBuffer(bytes: message))
                sent = true
            }
        }
        #expect(received == message)
    }

    @Test func closeNotifyIsSeenByThePeer() throws {
        let (client, server) = try Self.connectedPair()
        try client.write(plaintext: ByteBuffer(string: "last words"))
        client.close()
        #expect(client.isClosed)
        let r = try server.feed(ciphertext: try #require(client.drainOutbound()))
        #expect(r.plaintext.map { String(buffer: $0) } == "last words")
        #expect(r.receivedCloseNotify && server.receivedCloseNotify)
        #expect(throws: TLSError.self) { try client.write(plaintext: ByteBuffer(string: "more")) }
        // The exporter still works after close: AUTHENTICATE may be computed late.
        #expect(try client.exportKeyingMaterial(label: "x", context: [], length: 16)
            == server.exportKeyingMaterial(label: "x", context: [], length: 16))
    }

    @Test func operationsBeforeTheHandshakeAreRefused() throws {
        let client = try TLSEngine(context: try TLSContext.client())
        #expect(!client.isHandshakeComplete)
        #expect(client.peerCertificateDER == nil)
        let write = #expect(throws: TLSError.self) { try client.write(plaintext: ByteBuffer(string: "early")) }
        #expect(write?.kind == .handshakeNotComplete)
        let export = #expect(throws: TLSError.self) {
            try client.exportKeyingMaterial(label: TLSEngine.torAuth0003ExporterLabel, context: [], length: 32)
        }
        #expect(export?.kind == .handshakeNotComplete)
    }

    @Test func garbageFailsTheHandshakeWithAnAlert() throws {
        let cert = try TestCertificate.shared()
        let server = try TLSEngine(context: try cert.serverContext())
        try server.startHandshake()
        let error = #expect(throws: TLSError.self) {
            _ = try server.feed(ciphertext: ByteBuffer(string: "GET / HTTP/1.1\r\nHost: example\r\n\r\n"))
        }
        #expect(error?.kind == .handshake)
        #expect(error?.message.contains("http request") == true) // OpenSSL's own reason is passed through
        // The failure sticks: the engine refuses further input.
        #expect(throws: TLSError.self) { _ = try server.feed(ciphertext: ByteBuffer(string: "more")) }
    }

    @Test func aCorruptRecordIsAProtocolFailure() throws {
        let (client, server) = try Self.connectedPair()
        try client.write(plaintext: ByteBuffer(bytes: randomBytes(100)))
        var record = try #require(client.drainOutbound())
        let last = record.writerIndex - 1
        record.setInteger(record.getInteger(at: last, as: UInt8.self)! ^ 0x01, at: last) // breaks the AEAD tag
        let error = #expect(throws: TLSError.self) { _ = try server.feed(ciphertext: record) }
        #expect(error?.kind == .protocolFailure)
        #expect(server.drainOutbound() != nil) // a bad_record_mac alert for the peer
    }

    @Test func badKeyMaterialIsAConfigurationError() throws {
        let cert = try TestCertificate.shared()
        let garbage = #expect(throws: TLSError.self) {
            _ = try TLSContext.server(privateKeyPEM: "not a key", certificatePEM: cert.certificatePEM)
        }
        #expect(garbage?.kind == .configuration)
        let other = try TestCertificate.make(commonName: "other.example.net")
        let mismatch = #expect(throws: TLSError.self) {
            _ = try TLSContext.server(privateKeyPEM: other.keyPEM, certificatePEM: cert.certificatePEM)
        }
        #expect(mismatch?.kind == .configuration)
        #expect(mismatch?.message.contains("does not match") == true)
        let noCert = #expect(throws: TLSError.self) {
            _ = try TLSContext.server(privateKeyPEM: cert.keyPEM, certificatePEM: "")
        }
        #expect(noCert?.kind == .configuration)
    }
}
