import Foundation
import NIOCore
import NIOPosix
import OnionTransport
import TestSupport
import Testing

/// `TLSLinkHandler` on real loopback sockets (127.0.0.1 only), our client against our server.
@Suite struct TLSLinkHandlerTests {
    static let label = TLSEngine.torAuth0003ExporterLabel

    @Test func oneMebibyteEachWayExporterAndCertificates() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let cert = try TestCertificate.shared()
        let size = 1 << 20
        let up = randomBytes(size), down = randomBytes(size)

        let server = try await TLSTestServer(group: group, context: try cert.serverContext()) { loop in
            let peer = TLSTestPeer(eventLoop: loop, expected: size)
            peer.reply = ByteBuffer(bytes: down)
            return peer
        }
        let (client, clientPeer) = try await connectTLSClient(group: group, port: server.port,
                                                              context: try TLSContext.client()) { loop in
            TLSTestPeer(eventLoop: loop, expected: size)
        }
        try await client.writeAndFlush(ByteBuffer(bytes: up))
        let serverPeer = try await server.peer(0)

        let atServer = try await serverPeer.received.futureResult.get(within: 30, "1 MiB at the server")
        let atClient = try await clientPeer.received.futureResult.get(within: 30, "1 MiB at the client")
        #expect(Array(atServer.readableBytesView) == up)
        #expect(Array(atClient.readableBytesView) == down)

        let clientEvent = try await clientPeer.handshake.futureResult.get(within: 5, "client handshake")
        let serverEvent = try await serverPeer.handshake.futureResult.get(within: 5, "server handshake")
        #expect(clientEvent.peerCertificateDER == cert.certificateDER)
        #expect(serverEvent.localCertificateDER == cert.certificateDER)
        #expect(serverEvent.peerCertificateDER == nil)
        #expect(clientEvent.protocolVersion == serverEvent.protocolVersion)

        let identityA = randomBytes(32), identityB = randomBytes(32)
        func export(_ event: TLSHandshakeCompleted, on channel: Channel, _ context: [UInt8]) async throws -> [UInt8] {
            try await channel.eventLoop.submit {
                try event.exporter.export(label: Self.label, context: context, length: 32)
            }.get()
        }
        let clientA = try await export(clientEvent, on: client, identityA)
        let serverA = try await export(serverEvent, on: serverPeer.channel, identityA)
        let clientB = try await export(clientEvent, on: client, identityB)
        let serverB = try await export(serverEvent, on: serverPeer.channel, identityB)
        #expect(clientA == serverA)
        #expect(clientB == serverB)
        #expect(clientA != clientB)

        // A clean close: our close_notify reaches the server, which closes its side too.
        try await client.close()
        try await serverPeer.channel.closeFuture.get(within: 5, "server side to close after close_notify")
        await server.close()
    }

    @Test func writesBeforeTheHandshakeAreHeldAndSentInOrder() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await TLSTestServer(group: group, context: try TestCertificate.shared().serverContext()) { loop in
            TLSTestPeer(eventLoop: loop, expected: 6)
        }
        let handshake = group.next().makePromise(of: TLSHandshakeCompleted.self)
        // The handler is added to an active channel, then written to at once, with no wait for the
        // handshake: the writes must wait inside the handler.
        let channel = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: server.port).get()
        let first = channel.eventLoop.submit {
            try channel.pipeline.syncOperations.addHandler(
                TLSLinkHandler(context: try TLSContext.client(), handshakePromise: handshake))
            channel.write(ByteBuffer(string: "ab"), promise: nil)
            channel.write(ByteBuffer(string: "cd"), promise: nil)
            return channel.writeAndFlush(ByteBuffer(string: "ef"))
        }
        try await first.flatMap { $0 }.get(within: 10, "held writes to be sent")
        let event = try await handshake.futureResult.get(within: 5, "handshake promise")
        #expect(event.peerCertificateDER == (try TestCertificate.shared().certificateDER))
        let peer = try await server.peer(0)
        let got = try await peer.received.futureResult.get(within: 10, "held bytes at the server")
        #expect(String(buffer: got) == "abcdef")
        try await channel.close()
        await server.close()
    }

    @Test func garbageToTheServerFailsTheHandshakeAndClosesTheChannel() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await TLSTestServer(group: group, context: try TestCertificate.shared().serverContext()) { loop in
            TLSTestPeer(eventLoop: loop, expected: 1)
        }
        // A plain TCP client that sends random bytes (first byte not a TLS handshake record, so
        // OpenSSL cannot be left waiting for a long record that never comes).
        var garbage = randomBytes(4096)
        garbage[0] = 0x47
        let raw = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: server.port).get()
        try await raw.writeAndFlush(ByteBuffer(bytes: garbage))

        let peer = try await server.peer(0)
        let error = try await peer.firstError.futureResult.get(within: 10, "the server's error")
        let tlsError = try #require(error as? TLSError)
        #expect(tlsError.kind == .handshake)
        await #expect(throws: (any Error).self) { try await peer.handshake.futureResult.get(within: 5, "handshake") }
        try await peer.channel.closeFuture.get(within: 5, "server channel to close")
        try await raw.closeFuture.get(within: 5, "the garbage sender to see the close")

        // The server process is fine: a real client still gets through.
        let (client, clientPeer) = try await connectTLSClient(group: group, port: server.port,
                                                              context: try TLSContext.client()) { loop in
            TLSTestPeer(eventLoop: loop, expected: 1)
        }
        _ = try await clientPeer.handshake.futureResult.get(within: 10, "handshake after the garbage")
        try await client.close()
        await server.close()
    }

    @Test func serverClosingMidHandshakeIsACleanClientError() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        // A plain TCP server that closes as soon as the ClientHello arrives.
        let listener = try await ServerBootstrap(group: group)
            .childChannelInitializer { child in
                child.pipeline.addHandler(CloseOnFirstRead())
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let (client, peer) = try await connectTLSClient(group: group, port: listener.localAddress!.port!,
                                                        context: try TLSContext.client()) { loop in
            TLSTestPeer(eventLoop: loop, expected: 1)
        }
        let error = try await peer.firstError.futureResult.get(within: 10, "the client's error")
        #expect((error as? TLSError)?.kind == .closedDuringHandshake)
        await #expect(throws: TLSError.self) { try await peer.handshake.futureResult.get(within: 5, "handshake") }
        try await client.closeFuture.get(within: 5, "client channel to close")
        try await listener.close()
    }

    @Test func clientClosingMidHandshakeIsACleanServerError() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await TLSTestServer(group: group, context: try TestCertificate.shared().serverContext()) { loop in
            TLSTestPeer(eventLoop: loop, expected: 1)
        }
        // Half of a genuine ClientHello, then EOF.
        let engine = try TLSEngine(context: try TLSContext.client())
        try engine.startHandshake()
        let hello = try #require(engine.drainOutbound())
        let half = hello.getSlice(at: hello.readerIndex, length: hello.readableBytes / 2)!
        let raw = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: server.port).get()
        try await raw.writeAndFlush(half)
        let peer = try await server.peer(0)
        try await Task.sleep(for: .milliseconds(50))
        try await raw.close()

        let error = try await peer.firstError.futureResult.get(within: 10, "the server's error")
        #expect((error as? TLSError)?.kind == .closedDuringHandshake)
        try await peer.channel.closeFuture.get(within: 5, "server channel to close")
        await server.close()
    }
}

extension TLSLinkHandlerTests {
    @Test func aSilentPeerHitsTheHandshakeTimeout() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let tls = try TestCertificate.shared().serverContext()
        let slots = PeerSlots()
        let listener = try await ServerBootstrap(group: group)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    let peer = TLSTestPeer(eventLoop: child.eventLoop, expected: 1)
                    try child.pipeline.syncOperations.addHandlers(
                        [try TLSLinkHandler(context: tls, handshakeTimeout: .milliseconds(200)), peer])
                    slots.add(peer)
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        // Connects and says nothing.
        let silent = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: listener.localAddress!.port!).get()
        let peer = try await slots.wait(0, seconds: 5)
        let error = try await peer.firstError.futureResult.get(within: 5, "the timeout")
        #expect((error as? TLSError)?.kind == .handshakeTimeout)
        try await silent.closeFuture.get(within: 5, "the silent client to be disconnected")
        try await listener.close()
    }
}

/// Closes the connection on the first bytes received.
final class CloseOnFirstRead: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.close(promise: nil)
    }
}
