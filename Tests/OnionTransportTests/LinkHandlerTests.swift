import Foundation
import NIOCore
import NIOPosix
import OnionRouting
import OnionTransport
import TestSupport
import Testing
import TorCells
import TorCrypto

/// `LinkHandler` over `TLSLinkHandler` on real loopback sockets (127.0.0.1 only): our initiator
/// completes the Tor link handshake with our responder, using the real TLS certificate and exporter.
@Suite struct LinkHandlerTests {
    static let relay = Result { try RelayKeys.generate(now: Date()) }
    static let otherRelay = Result { try RelayKeys.generate(now: Date()) }

    @Test func clientOpensLinkAndCircuitCellsFlow() async throws {
        let keys = try Self.relay.get()
        let server = try await LinkTestServer(keys: keys)
        let expected = ExpectedPeerIdentity(rsaIdentity: keys.fingerprint, ed25519Identity: keys.edIdentity)
        let client = try await LinkTestClient.connect(port: server.port, endpoint: .client(expecting: expected))

        let atClient = try await client.opened.futureResult.get(within: 30, "client link open")
        #expect(atClient.identity?.rsaIdentity == keys.fingerprint)
        #expect(atClient.identity?.ed25519Identity == keys.edIdentity)
        #expect(atClient.netinfo.otherAddress == .ipv4(IPv4Address(127, 0, 0, 1)))
        let serverSide = try await server.recorder(0)
        let atServer = try await serverSide.opened.futureResult.get(within: 30, "server link open")
        #expect(atServer.identity == nil)  // a client

        let create = try ChannelCell(circuitID: 0x8000_0001, message: .createFast(CreateFast(keyMaterial: Array(repeating: 9, count: 20))))
        try await client.channel.writeAndFlush(create)
        let received = try await serverSide.firstCell.futureResult.get(within: 10, "CREATE_FAST at the server")
        #expect(received == create)

        let destroy = try ChannelCell(circuitID: 0x8000_0001, message: .destroy(.finished))
        try await serverSide.channel.writeAndFlush(destroy)
        #expect(try await client.recorder.firstCell.futureResult.get(within: 10, "DESTROY at the client") == destroy)

        try await client.channel.close()
        await server.close()
    }

    @Test func relayInitiatorAuthenticatesOverRealTLS() async throws {
        let keys = try Self.relay.get(), mine = try Self.otherRelay.get()
        let server = try await LinkTestServer(keys: keys)
        let expected = ExpectedPeerIdentity(rsaIdentity: keys.fingerprint)
        let client = try await LinkTestClient.connect(port: server.port, endpoint: .relayInitiator(mine, expecting: expected))
        _ = try await client.opened.futureResult.get(within: 30, "relay initiator link open")
        let atServer = try await server.recorder(0).opened.futureResult.get(within: 30, "server link open")
        // The responder verified AUTHENTICATE, including TLSSECRETS from this TLS session's exporter.
        #expect(atServer.identity?.rsaIdentity == mine.fingerprint)
        #expect(atServer.identity?.ed25519Identity == mine.edIdentity)
        try await client.channel.close()
        await server.close()
    }

    /// A TLS server that never speaks the Tor protocol must not hold our link open forever.
    @Test func silentResponderHitsTheLinkHandshakeTimeout() async throws {
        let keys = try Self.relay.get()
        let tls = try TLSContext.server(privateKeyPEM: String(decoding: try keys.linkKey.pem(), as: UTF8.self),
                                        certificatePEM: certificatePEM(keys.linkCert.der))
        let server = try await TLSTestServer(group: MultiThreadedEventLoopGroup.singleton, context: tls) { loop in
            TLSTestPeer(eventLoop: loop, expected: Int.max)
        }
        let client = try await LinkTestClient.connect(port: server.port, endpoint: .client(expecting: .any),
                                                      handshakeTimeout: .milliseconds(300))
        await #expect(throws: LinkHandler.HandshakeTimeout.self) {
            _ = try await client.opened.futureResult.get(within: 10, "the link handshake timeout")
        }
        try await client.channel.closeFuture.get(within: 10, "client channel to close")
        await server.close()
    }

    @Test func wrongIdentityClosesTheLink() async throws {
        let keys = try Self.relay.get(), other = try Self.otherRelay.get()
        let server = try await LinkTestServer(keys: keys)
        let client = try await LinkTestClient.connect(
            port: server.port, endpoint: .client(expecting: ExpectedPeerIdentity(rsaIdentity: other.fingerprint)))
        await #expect(throws: TorChannelError.self) {
            _ = try await client.opened.futureResult.get(within: 30, "client link refusal")
        }
        try await client.channel.closeFuture.get(within: 10, "client channel to close")
        await server.close()
    }
}

/// Records what a `LinkHandler` hands upward: the open event and circuit cells.
final class LinkRecorder: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ChannelCell
    typealias OutboundOut = ChannelCell

    let opened: EventLoopPromise<ChannelPeer>
    let firstCell: EventLoopPromise<ChannelCell>
    private(set) var channel: Channel!
    private var sawCell = false
    private var sawOpen = false

    init(eventLoop: EventLoop) {
        opened = eventLoop.makePromise()
        firstCell = eventLoop.makePromise()
    }

    func handlerAdded(context: ChannelHandlerContext) { channel = context.channel }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? LinkOpened, !sawOpen { sawOpen = true; opened.succeed(event.peer) }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let cell = unwrapInboundIn(data)
        if !sawCell { sawCell = true; firstCell.succeed(cell) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { finish(error) }

    func channelInactive(context: ChannelHandlerContext) {
        finish(ChannelError.eof)
        context.fireChannelInactive()
    }

    private func finish(_ error: Error) {
        if !sawOpen { sawOpen = true; opened.fail(error) }
        if !sawCell { sawCell = true; firstCell.fail(error) }
    }
}

/// PEM of a DER certificate, for `TLSContext.server`.
func certificatePEM(_ der: [UInt8]) -> String {
    let b64 = Data(der).base64EncodedString()
    var lines: [Substring] = []
    var rest = Substring(b64)
    while !rest.isEmpty { lines.append(rest.prefix(64)); rest = rest.dropFirst(64) }
    return "-----BEGIN CERTIFICATE-----\n" + lines.joined(separator: "\n") + "\n-----END CERTIFICATE-----\n"
}

/// Our relay's ORPort on 127.0.0.1: TLS with the relay's link certificate, then the responder handshake.
final class LinkTestServer: @unchecked Sendable {
    let channel: Channel
    private let recorders: RecorderSlots
    var port: Int { channel.localAddress!.port! }

    init(keys: RelayKeys) async throws {
        let tls = try TLSContext.server(privateKeyPEM: String(decoding: try keys.linkKey.pem(), as: UTF8.self),
                                        certificatePEM: certificatePEM(keys.linkCert.der))
        let config = ChannelConfiguration(endpoint: .responder(keys))
        let recorders = RecorderSlots()
        self.recorders = recorders
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    let recorder = LinkRecorder(eventLoop: child.eventLoop)
                    try child.pipeline.syncOperations.addHandlers([
                        try TLSLinkHandler(context: tls),
                        LinkHandler(configuration: config, localAddresses: [.ipv4(IPv4Address(127, 0, 0, 1))]),
                        recorder,
                    ])
                    recorders.add(recorder)
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    func recorder(_ index: Int, seconds: Int64 = 10) async throws -> LinkRecorder {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if let r = recorders.get(index) { return r }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TestTimeout(what: "accepted connection \(index)")
    }

    func close() async { try? await channel.close() }
}

/// Recorders of accepted connections, in order.
final class RecorderSlots: @unchecked Sendable {
    private let lock = NSLock()
    private var recorders: [LinkRecorder] = []
    func add(_ r: LinkRecorder) { lock.withLock { recorders.append(r) } }
    func get(_ index: Int) -> LinkRecorder? { lock.withLock { index < recorders.count ? recorders[index] : nil } }
}

struct LinkTestClient {
    let channel: Channel
    let opened: EventLoopPromise<ChannelPeer>
    let recorder: LinkRecorder

    static func connect(port: Int, endpoint: ChannelEndpoint,
                        handshakeTimeout: TimeAmount = .seconds(30)) async throws -> LinkTestClient {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let opened = loop.makePromise(of: ChannelPeer.self)
        let recorder = LinkRecorder(eventLoop: loop)
        let tls = try TLSContext.client()
        let config = ChannelConfiguration(endpoint: endpoint)
        let channel = try await ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        try TLSLinkHandler(context: tls),
                        LinkHandler(configuration: config, openPromise: opened, handshakeTimeout: handshakeTimeout),
                        recorder,
                    ])
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return LinkTestClient(channel: channel, opened: opened, recorder: recorder)
    }
}
