import Foundation
import NIOCore
import NIOPosix
import OnionTransport
import TestSupport
import Testing

/// The WebSocket bridge transport (node-Tor's RFC 6455 binary frames carrying the link's TLS) on
/// 127.0.0.1.
@Suite struct WebSocketLinkTests {
    /// A bridge whose accepted connections run WebSocket → TLS server → a `TLSTestPeer`.
    static func bridge(group: EventLoopGroup, frameSize: Int,
                       makePeer: @escaping @Sendable (EventLoop) -> TLSTestPeer) async throws -> (Channel, PeerSlots) {
        let tls = try TestCertificate.shared().serverContext()
        let slots = PeerSlots()
        let channel = try await ServerBootstrap(group: group)
            .childChannelInitializer { child in
                WebSocketLink.configureServer(channel: child, maxOutboundFrameSize: frameSize) { upgraded in
                    let peer = makePeer(upgraded.eventLoop)
                    try upgraded.pipeline.syncOperations.addHandlers([try TLSLinkHandler(context: tls), peer])
                    slots.add(peer)
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return (channel, slots)
    }

    @Test func tlsOverWebSocketBothWaysWithUnalignedFrames() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let cert = try TestCertificate.shared()
        let size = 1 << 20
        let up = randomBytes(size), down = randomBytes(size)
        // Frame sizes unrelated to TLS records (≈16 KiB) or to each other.
        let (listener, serverSlots) = try await Self.bridge(group: group, frameSize: 1000) { loop in
            let peer = TLSTestPeer(eventLoop: loop, expected: size)
            peer.reply = ByteBuffer(bytes: down)
            return peer
        }
        let clientSlots = PeerSlots()
        let upgraded = group.next().makePromise(of: Void.self)
        let client = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                WebSocketLink.configureClient(channel: channel, host: "127.0.0.1", origin: "http://peersm.com",
                                              maxOutboundFrameSize: 777, upgraded: upgraded) { upgraded in
                    let peer = TLSTestPeer(eventLoop: upgraded.eventLoop, expected: size)
                    try upgraded.pipeline.syncOperations.addHandlers([try TLSLinkHandler(context: try TLSContext.client()), peer])
                    clientSlots.add(peer)
                }
            }
            .connect(host: "127.0.0.1", port: listener.localAddress!.port!).get()
        try await upgraded.futureResult.get(within: 10, "the WebSocket upgrade")
        let clientPeer = try await clientSlots.wait(0, seconds: 5)
        let clientEvent = try await clientPeer.handshake.futureResult.get(within: 10, "TLS over WebSocket")
        #expect(clientEvent.peerCertificateDER == cert.certificateDER)

        try await client.writeAndFlush(ByteBuffer(bytes: up))
        let serverPeer = try await serverSlots.wait(0, seconds: 5)
        let atServer = try await serverPeer.received.futureResult.get(within: 30, "1 MiB at the bridge")
        let atClient = try await clientPeer.received.futureResult.get(within: 30, "1 MiB at the client")
        #expect(Array(atServer.readableBytesView) == up)
        #expect(Array(atClient.readableBytesView) == down)

        let serverEvent = try await serverPeer.handshake.futureResult.get(within: 5, "bridge handshake")
        let identity = randomBytes(32)
        let label = TLSEngine.torAuth0003ExporterLabel
        let a = try await client.eventLoop.submit { try clientEvent.exporter.export(label: label, context: identity, length: 32) }.get()
        let b = try await serverPeer.channel.eventLoop.submit {
            try serverEvent.exporter.export(label: label, context: identity, length: 32)
        }.get()
        #expect(a == b)

        // close_notify, then a WebSocket close frame, then TCP close: the bridge side ends too.
        try await client.close()
        try await serverPeer.channel.closeFuture.get(within: 5, "the bridge connection to close")
        try await listener.close()
    }

    @Test func plainHTTPGetsUpgradeRequired() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let (listener, _) = try await Self.bridge(group: group, frameSize: 1000) { TLSTestPeer(eventLoop: $0, expected: 1) }
        let reply = try await rawExchange(group: group, port: listener.localAddress!.port!,
                                          send: Array("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))
        #expect(String(decoding: reply, as: UTF8.self).hasPrefix("HTTP/1.1 426 Upgrade Required"))
        try await listener.close()
    }

    @Test func bridgeRejectsUnmaskedClientFramesWithAnUnmaskedClose() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let (listener, slots) = try await Self.bridge(group: group, frameSize: 1000) { TLSTestPeer(eventLoop: $0, expected: 1) }
        let upgrade = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        let unmaskedFrame: [UInt8] = [0x82, 0x03, 0x61, 0x62, 0x63]
        let reply = try await rawExchange(group: group, port: listener.localAddress!.port!,
                                          send: Array(upgrade.utf8), thenAfterReply: unmaskedFrame)
        let text = String(decoding: reply, as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 101"))
        // RFC 6455 §1.3's sample key and its accept value.
        #expect(text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))
        let headerEnd = try #require(text.range(of: "\r\n\r\n"))
        let frames = Array(reply[text.utf8.distance(from: text.startIndex, to: headerEnd.upperBound)...])
        // A close frame, unmasked (server), status 1002 protocol error.
        #expect(frames == [0x88, 0x02, 0x03, 0xEA])
        let peer = try await slots.wait(0, seconds: 5)
        let error = try await peer.firstError.futureResult.get(within: 5, "the bridge's error")
        #expect(error as? WebSocketLinkError == .protocolViolation("unmasked frame from a client"))
        try await listener.close()
    }

    @Test func clientReportsARefusedUpgrade() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        // A plain HTTP server that says 200 to anything.
        let listener = try await ServerBootstrap(group: group)
            .childChannelInitializer { $0.pipeline.addHandler(CannedReply("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")) }
            .bind(host: "127.0.0.1", port: 0).get()
        let upgraded = group.next().makePromise(of: Void.self)
        let client = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                WebSocketLink.configureClient(channel: channel, host: "127.0.0.1", upgraded: upgraded) { _ in
                    Issue.record("stream handlers added after a refused upgrade")
                }
            }
            .connect(host: "127.0.0.1", port: listener.localAddress!.port!).get()
        let error = await #expect(throws: WebSocketLinkError.self) {
            try await upgraded.futureResult.get(within: 10, "the refusal")
        }
        #expect(error == .upgradeRefused(status: 200))
        try await client.closeFuture.get(within: 5, "client to close")
        try await listener.close()
    }
}

extension WebSocketLinkTests {
    /// A masked client frame (RFC 6455 §5.3), payload < 126 bytes.
    static func maskedFrame(opcode: UInt8, _ payload: [UInt8], mask: [UInt8] = [0x37, 0xfa, 0x21, 0x3d]) -> [UInt8] {
        [0x80 | opcode, 0x80 | UInt8(payload.count)] + mask + payload.enumerated().map { $1 ^ mask[$0 & 3] }
    }

    @Test func bridgeAnswersPingAndEchoesClose() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let (listener, _) = try await Self.bridge(group: group, frameSize: 1000) { TLSTestPeer(eventLoop: $0, expected: 1) }
        let upgrade = "GET /any/path HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        let frames = Self.maskedFrame(opcode: 0x9, Array("are you there".utf8))
            + Self.maskedFrame(opcode: 0x8, [0x03, 0xE8]) // close, 1000 normal
        let reply = try await rawExchange(group: group, port: listener.localAddress!.port!,
                                          send: Array(upgrade.utf8), thenAfterReply: frames)
        let text = String(decoding: reply, as: UTF8.self)
        let headerEnd = try #require(text.range(of: "\r\n\r\n"))
        let got = Array(reply[text.utf8.distance(from: text.startIndex, to: headerEnd.upperBound)...])
        // An unmasked pong with the ping's payload, then the close echoed, then EOF.
        #expect(got == [0x8A, 13] + Array("are you there".utf8) + [0x88, 0x02, 0x03, 0xE8])
        try await listener.close()
    }

    @Test func oneByteCloseBodyGetsAnEmptyClose() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let (listener, _) = try await Self.bridge(group: group, frameSize: 1000) { TLSTestPeer(eventLoop: $0, expected: 1) }
        let upgrade = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        let reply = try await rawExchange(group: group, port: listener.localAddress!.port!,
                                          send: Array(upgrade.utf8), thenAfterReply: Self.maskedFrame(opcode: 0x8, [0x03]))
        let text = String(decoding: reply, as: UTF8.self)
        let headerEnd = try #require(text.range(of: "\r\n\r\n"))
        let got = Array(reply[text.utf8.distance(from: text.startIndex, to: headerEnd.upperBound)...])
        // A close body must start with a 2-byte code (RFC 6455 §5.5.1): no 1-byte echo.
        #expect(got == [0x88, 0x00])
        try await listener.close()
    }

    @Test func silentPeersHitTheUpgradeTimeout() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        // A bridge that closes connections not upgraded within 200 ms…
        let bridge = try await ServerBootstrap(group: group)
            .childChannelInitializer { child in
                WebSocketLink.configureServer(channel: child, upgradeTimeout: .milliseconds(200)) { _ in
                    Issue.record("upgraded without a request")
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let silent = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: bridge.localAddress!.port!).get()
        try await silent.closeFuture.get(within: 5, "the bridge to drop a silent client")

        // …and a client that gives up on a server that never answers.
        let mute = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let upgraded = group.next().makePromise(of: Void.self)
        let client = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                WebSocketLink.configureClient(channel: channel, host: "127.0.0.1", upgradeTimeout: .milliseconds(200),
                                              upgraded: upgraded) { _ in Issue.record("upgraded without an answer") }
            }
            .connect(host: "127.0.0.1", port: mute.localAddress!.port!).get()
        let error = await #expect(throws: WebSocketLinkError.self) {
            try await upgraded.futureResult.get(within: 5, "the client's timeout")
        }
        #expect(error == .upgradeTimeout)
        try await client.closeFuture.get(within: 5, "the client to close")
        try await bridge.close()
        try await mute.close()
    }
}

/// Writes `send`, collects everything until EOF; if `thenAfterReply` is given, sends it once the
/// first reply bytes arrived.
func rawExchange(group: EventLoopGroup, port: Int, send: [UInt8], thenAfterReply: [UInt8]? = nil) async throws -> [UInt8] {
    let collector = RawCollector(followUp: thenAfterReply)
    let channel = try await ClientBootstrap(group: group)
        .channelInitializer { $0.pipeline.addHandler(collector) }
        .connect(host: "127.0.0.1", port: port).get()
    try await channel.writeAndFlush(ByteBuffer(bytes: send))
    try await channel.closeFuture.get(within: 10, "the peer to close")
    return try await channel.eventLoop.submit { collector.bytes }.get()
}

final class RawCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private(set) var bytes: [UInt8] = []
    private var followUp: [UInt8]?

    init(followUp: [UInt8]?) { self.followUp = followUp }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        bytes += unwrapInboundIn(data).readableBytesView
        if let followUp, String(decoding: bytes, as: UTF8.self).contains("\r\n\r\n") {
            self.followUp = nil
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: followUp)), promise: nil)
        }
    }
}

/// Answers the first bytes with a fixed reply, then closes.
final class CannedReply: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let reply: String
    private var answered = false
    init(_ reply: String) { self.reply = reply }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        answered = true
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: reply))).whenComplete { _ in context.close(promise: nil) }
    }
}
